"""Shared machinery of the training loops (MAP, MFVI, MC dropout): Philox
minibatch shuffles, KL weighting schedules, the epoch loop with progress bar,
early stopping and Ctrl-C, and .npz persistence without pickle.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import warnings

import numpy as np

from . import _checks as C
from . import random as _random

ADAM_DEFAULTS = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}


def adam_options(lr, betas=(0.9, 0.999), eps=1e-8):
    """Checked Adam hyper-parameters as the keyword arguments of the kernels'
    ``optim.AdamConfig`` (errors name the user's arguments: lr, betas, eps)."""
    lr = float(lr)
    b1, b2 = (float(b) for b in betas)
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr}")
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ValueError(f"betas must be in [0, 1), got {betas}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    return {"lr": lr, "beta1": b1, "beta2": b2, "eps": float(eps)}


def permutation(N, seed, stream, epoch):
    """The minibatch order of an epoch: argsort of Philox uniforms from
    ``fold_in(fold_in(stream, "shuffle"), epoch)`` (the same on every backend)."""
    s = _random.fold_in(_random.fold_in(stream, "shuffle"), epoch)
    u = _random.uniform(N, seed=seed, stream=s, dtype=np.float64)
    return np.argsort(u, kind="stable").astype(np.int64)


def batch_sizes(N, batch_size):
    B = min(batch_size, N)
    M = -(-N // B)
    sizes = np.full(M, B, dtype=np.int64)
    sizes[-1] = N - B * (M - 1)
    return sizes


KL_WEIGHTINGS = ("proportional", "blundell", "annealed")


def kl_weights(scheme, sizes, N, epoch, anneal_epochs):
    """Weights w_i of the full KL in minibatch i's term nll_i + w_i KL.

    ``proportional``: w_i = B_i / N (a ragged last batch gets its share);
    ``blundell``: w_i = 2^(M-i) / (2^M - 1), i = 1..M (Blundell et al. 2015, eq. 9);
    ``annealed``: B_i / N times beta rising linearly from 1/anneal_epochs to 1
    over the first ``anneal_epochs`` epochs. Proportional and blundell weights
    sum to 1 over an epoch, so an epoch's terms add up to the full KL.
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    M = sizes.size
    if scheme == "proportional":
        return sizes / N
    if scheme == "blundell":
        i = np.arange(1, M + 1, dtype=np.float64)
        # 2^(M-i)/(2^M-1) = 2^-i / (1 - 2^-M), safe for any M
        return np.exp2(-i) / -np.expm1(-M * math.log(2.0))
    beta = min(1.0, (epoch + 1) / max(1, anneal_epochs))
    return beta * sizes / N


def split_validation(N, validation, seed, stream):
    """Indices (train, val) of a Philox-shuffled split; validation is a fraction in [0, 1)."""
    frac = float(validation)
    if not 0 <= frac < 1:
        raise ValueError(f"validation must be a fraction in [0, 1), got {validation}")
    n_val = int(round(frac * N))
    if n_val == 0:
        return np.arange(N), None
    if n_val >= N:
        raise ValueError("validation leaves no training rows")
    u = _random.uniform(N, seed=seed, stream=_random.fold_in(stream, "split"), dtype=np.float64)
    order = np.argsort(u, kind="stable")
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def progress(iterable, verbose, desc):
    if verbose:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is optional
            return iterable, None
        bar = tqdm(iterable, desc=desc, leave=verbose > 1)
        return bar, bar
    return iterable, None


def run_epochs(epochs, one_epoch, *, verbose=1, desc="training", validate=None, patience=None,
               snapshot=None, restore=None):
    """Call ``one_epoch(e) -> dict`` for e < epochs; returns (history, interrupted).

    With ``validate() -> float`` (lower is better) the best state (``snapshot()``)
    is kept and restored at the end (``restore(s)``); training stops after
    ``patience`` epochs without improvement. Ctrl-C stops after the running
    native call and keeps what was trained (the best state when validating).
    """
    epochs = C.integer(epochs, "epochs", 1)
    history = []
    best, best_state, since = math.inf, None, 0
    interrupted = False
    it, bar = progress(range(epochs), verbose, desc)
    try:
        for e in it:
            rec = dict(one_epoch(e))
            rec["epoch"] = e
            if validate is not None:
                val = float(validate())
                rec["val_loss"] = val
                if val < best:
                    best, best_state, since = val, snapshot(), 0
                else:
                    since += 1
            history.append(rec)
            if bar is not None:
                bar.set_postfix({k: f"{v:.4g}" for k, v in rec.items() if k != "epoch"}, refresh=False)
            if patience is not None and validate is not None and since >= patience:
                break
    except KeyboardInterrupt:
        interrupted = True
        warnings.warn("training interrupted (Ctrl-C); keeping the parameters trained so far", RuntimeWarning,
                      stacklevel=3)
    finally:
        if bar is not None:
            bar.close()
    if best_state is not None:
        restore(best_state)
    return history, interrupted


# ---------------------------------------------------------------- persistence

def npz_path(path):
    """The file ``save_npz`` writes for ``path`` and ``load_npz`` reads: a str or
    os.PathLike with ``.npz`` appended when it lacks it (NumPy's own rule for
    ``np.savez``), so ``save("p")`` and ``load("p")`` name the same file p.npz;
    file objects pass through."""
    if isinstance(path, (str, os.PathLike)):
        p = os.fspath(path)
        if isinstance(p, bytes):
            p = os.fsdecode(p)
        return p if p.endswith(".npz") else p + ".npz"
    return path


def save_npz(path, meta, arrays):
    """Arrays plus JSON metadata in one .npz (no pickle anywhere), written atomically.

    The file is written to a temporary file in the destination's directory,
    flushed and fsync'ed, then renamed over ``path`` (``os.replace``, atomic on
    POSIX and Windows): a failure at any point (a full disk, Ctrl-C) leaves the
    previous file intact and removes the temporary one. A file object is
    written to directly. Returns the path written (``npz_path(path)``).
    """
    blob = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    target = npz_path(path)
    if not isinstance(target, str):
        np.savez(target, __meta__=blob, **arrays)
        return target
    folder = os.path.dirname(os.path.abspath(target))
    if os.path.isdir(target):
        raise ValueError(f"path {target!r} is a directory")
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, __meta__=blob, **arrays)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; give it the mode a plain open() would have
        os.chmod(tmp, _new_file_mode(target))
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)  # the rename itself survives a crash once the directory is synced
    return target


def _new_file_mode(target):
    try:
        return os.stat(target).st_mode & 0o777  # overwriting keeps the old file's permissions
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_dir(folder):
    try:
        dfd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible everywhere (Windows); the data itself is already synced
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def check_history(meta, path):
    """``meta["history"]`` as a list of dicts of numbers (ValueError otherwise)."""
    h = meta.get("history", [])
    ok = isinstance(h, list) and all(
        isinstance(r, dict) and all(isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
                                    for k, v in r.items())
        for r in h)
    if not ok:
        raise ValueError(f"{path!r}: malformed history (a list of per-epoch dicts of numbers)")
    return [dict(r) for r in h]


def load_npz(path, kind, required):
    """(meta, arrays) of a file written by ``save_npz``; ValueError for anything malformed."""
    path = npz_path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            files = {k: np.array(z[k]) for k in z.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"cannot read a bayesgrad model from {path!r}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - zipfile/format errors of a hostile file
        raise ValueError(f"cannot read a bayesgrad model from {path!r}: {type(exc).__name__}: {exc}") from exc
    blob = files.pop("__meta__", None)
    if blob is None or blob.dtype != np.uint8 or blob.ndim != 1:
        raise ValueError(f"{path!r} has no bayesgrad metadata")
    try:
        meta = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path!r}: malformed metadata") from exc
    if not isinstance(meta, dict) or meta.get("kind") != kind:
        raise ValueError(f"{path!r} does not hold a {kind} model")
    for k in required:
        if k not in files:
            raise ValueError(f"{path!r} lacks the array {k!r}")
        a = files[k]
        if a.dtype not in (np.float32, np.float64) or not np.all(np.isfinite(a)):
            raise ValueError(f"{path!r}: array {k!r} must be finite float32/float64")
    return meta, files
