"""Writing files so that a failure never leaves a damaged one: every file the package writes (saved
models, CSV and Parquet tables, figures) goes through ``replacing``.

The content goes to a temporary file in the destination's folder, which is flushed to disk and then
renamed over the destination (``os.replace``, atomic on POSIX and Windows): an error or Ctrl-C at any
point leaves the previous file as it was and removes the temporary one.
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile


@contextlib.contextmanager
def replacing(path):
    """Context manager yielding the temporary path (str) to write instead of ``path``; on a normal exit
    it replaces ``path`` with what was written there.

    The temporary name ends with ``path``'s extension, so writers that infer a format from the name
    (matplotlib's ``savefig``) see the same one. A missing folder is a FileNotFoundError naming it (the
    temporary file's name in the message was a name the caller never gave), a directory at ``path`` an
    IsADirectoryError as from ``open``.
    """
    target = os.fspath(path)
    if isinstance(target, bytes):
        target = os.fsdecode(target)
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, f"cannot write {target!r}: no such directory", folder)
    if os.path.isdir(target):  # what open(target, "w") raises
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), target)
    base = os.path.basename(target)
    fd, tmp = tempfile.mkstemp(prefix="." + base + ".", suffix=".tmp" + os.path.splitext(base)[1], dir=folder)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "r+b") as fh:  # the content on disk before the rename makes it visible
            os.fsync(fh.fileno())
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
