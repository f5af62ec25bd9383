"""CSV input and output for ``bayesgrad fit`` (standard library only, no pandas).

Every problem with a user's file -- missing, empty, ragged rows, a missing
column, a non-numeric value, NaN or inf -- raises :class:`DataError` with a
one-line message naming the file, the line and the column.
"""
from __future__ import annotations

import csv
import math
import os

import numpy as np

from ._files import replacing

_MISSING = {"", "na", "n/a", "nan", "null", "none", "-nan", "+nan"}


class DataError(ValueError):
    """A problem with the user's data file (one-line message)."""


class Table:
    """A CSV file held as strings: ``columns`` (list of str), ``rows`` (list of
    lists of str) and ``lines`` (the file line of each row, for messages)."""

    def __init__(self, path, columns, rows, lines):
        self.path, self.columns, self.rows, self.lines = path, columns, rows, lines

    def __len__(self):
        return len(self.rows)

    def index(self, column):
        """The position of ``column`` in the header; DataError naming the columns if absent."""
        try:
            return self.columns.index(column)
        except ValueError:
            shown = ", ".join(self.columns[:12]) + (", ..." if len(self.columns) > 12 else "")
            raise DataError(f"{self.path}: no column {column!r} (columns: {shown})") from None

    def strings(self, column):
        """The cells of ``column`` as a list of N strings (as read, unstripped)."""
        j = self.index(column)
        return [r[j] for r in self.rows]

    def numeric(self, columns):
        """The named columns as a float64 array (N, len(columns))."""
        idx = [self.index(c) for c in columns]
        out = np.empty((len(self.rows), len(idx)), dtype=np.float64)
        for i, (row, line) in enumerate(zip(self.rows, self.lines)):
            for k, j in enumerate(idx):
                out[i, k] = parse_number(row[j], self.path, line, self.columns[j])
        return out


def parse_number(text, path, line, column):
    """A finite float from one CSV cell, or :class:`DataError`."""
    s = text.strip()
    if s.lower() in _MISSING:
        raise DataError(f"{path} line {line}, column {column!r}: missing value ({text!r}); "
                        "remove or fill the row")
    try:
        v = float(s)
    except ValueError:
        raise DataError(f"{path} line {line}, column {column!r}: {text!r} is not a number") from None
    if not math.isfinite(v):
        raise DataError(f"{path} line {line}, column {column!r}: {text!r} is not finite")
    return v


def is_number(text):
    """Whether a cell holds a finite number (surrounding spaces allowed)."""
    try:
        return math.isfinite(float(text.strip()))
    except ValueError:
        return False


#: the separators ``read_csv`` tries when none is given, in order of preference
SEPARATORS = (",", ";", "\t", "|")
_SNIFF_LINES = 50


def is_missing(text):
    """Whether a cell is empty or a missing-value marker (NA, NaN, null, ...)."""
    return text.strip().lower() in _MISSING


def sniff_separator(lines):
    """The separator of a CSV from its first lines (list of str): the first of
    :data:`SEPARATORS` that splits the header into more than one column and
    gives every non-blank line the header's number of fields; "," when none does."""
    lines = [ln for ln in lines if ln.strip()]
    for sep in SEPARATORS:
        try:
            rows = list(csv.reader(lines, delimiter=sep))
        except csv.Error:
            continue
        if rows and len(rows[0]) > 1 and all(len(r) == len(rows[0]) for r in rows):
            return sep
    return ","


def read_csv(path, sep=None):
    """Read a CSV file with a header row into a :class:`Table`.

    ``sep``: the field separator (one character); None (default) sniffs it
    from the first lines among :data:`SEPARATORS`."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, not a CSV file")
    if sep is not None and (not isinstance(sep, str) or len(sep) != 1 or sep in "\r\n\"'"):
        raise DataError(f"the separator must be one character (not a quote or newline), got {sep!r}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            if sep is None:
                head = [fh.readline() for _ in range(_SNIFF_LINES)]
                sep = sniff_separator(head)
                fh.seek(0)
                if fh.read(1) != "\ufeff":  # utf-8-sig removes a BOM only at the very start
                    fh.seek(0)
            reader = csv.reader(fh, delimiter=sep)
            records = [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from None
    records = [(n, r) for n, r in records if any(c.strip() for c in r)]  # blank lines carry nothing
    if not records:
        raise DataError(f"{path}: the file is empty")
    _, header = records[0]
    columns = [c.strip() for c in header]
    if len(columns) == 1:
        other = [c for c in SEPARATORS if c != sep and c in columns[0]]
        if other:
            raise DataError(f"{path}: the header has one column ({columns[0][:60]!r}): is the separator "
                            f"{other[0]!r}? (--sep {other[0]!r})")
    if any(not c for c in columns):
        raise DataError(f"{path}: the header has an empty column name")
    dup = sorted({c for c in columns if columns.count(c) > 1})
    if dup:
        raise DataError(f"{path}: duplicate column name(s) in the header: {', '.join(dup)}")
    rows, lines = [], []
    for n, r in records[1:]:
        if len(r) != len(columns):
            raise DataError(f"{path} line {n}: {len(r)} fields, but the header has {len(columns)}")
        rows.append(r)
        lines.append(n)
    if not rows:
        raise DataError(f"{path}: no data rows after the header")
    return Table(path, columns, rows, lines)


def write_csv(path, columns, rows):
    """Write ``rows`` (iterables of values) under ``columns``; floats with 6 significant digits."""
    path = os.fspath(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    # atomically: a row that fails half-way (or Ctrl-C) left the previous file truncated
    with replacing(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for r in rows:
            w.writerow([f"{v:.6g}" if isinstance(v, (float, np.floating)) else v for v in r])
    return path
