"""Shared machinery of the training loops (MAP, MFVI, MC dropout): Philox
minibatch shuffles, KL weighting schedules, the epoch loop with progress bar,
early stopping and Ctrl-C, and .npz persistence without pickle.
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
import warnings

import numpy as np

from . import _checks as C
from . import random as _random
from ._files import replacing

ADAM_DEFAULTS = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}


def adam_options(lr, betas=(0.9, 0.999), eps=1e-8):
    """Checked Adam hyper-parameters as the keyword arguments of the kernels'
    ``optim.AdamConfig`` (errors name the user's arguments: lr, betas, eps)."""
    lr = C.real(lr, "lr")
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    b1, b2 = (C.real(b, "betas") for b in betas)
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr}")
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise ValueError(f"betas must be in [0, 1), got {betas}")
    eps = C.real(eps, "eps")
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be positive, got {eps}")
    return {"lr": lr, "beta1": b1, "beta2": b2, "eps": eps}


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
    frac = C.real(validation, "validation")
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


def watched(stream=None):
    """Whether someone watches this process's progress: ``stream`` (default stderr) is a terminal, or the
    code runs in a Jupyter kernel (where tqdm.auto draws a widget). Off both, a bar's carriage-return
    updates would only fill a log file or a pipe with lines."""
    isatty = getattr(sys.stderr if stream is None else stream, "isatty", None)
    try:
        if isatty is not None and isatty():
            return True
    except (ValueError, OSError):  # a closed or detached stream
        return False
    get_ipython = getattr(sys.modules.get("IPython"), "get_ipython", None)
    return get_ipython is not None and type(get_ipython()).__name__ == "ZMQInteractiveShell"


def progress(total, verbose, desc, unit="epoch"):
    """A tqdm bar over ``total`` epochs (advanced by fractions of an epoch; or other ``unit``s), or
    None: verbose 0, or tqdm not installed, or (verbose 1) nobody watching (``watched``); verbose >= 2
    draws the bar wherever stderr goes and leaves it there when done."""
    verbose = int(verbose) if isinstance(verbose, (bool, np.bool_)) else C.integer(verbose, "verbose", 0)
    if not verbose or (verbose < 2 and not watched()):
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional
        return None
    return tqdm(total=total, desc=desc, leave=verbose > 1, unit=unit)


#: Target wall time of one native call in a sliced epoch (seconds): the latency of Ctrl-C.
SLICE_SECONDS = 0.1


class _DeferredInterrupt:
    """SIGINT recorded instead of raised while a fit runs, so that KeyboardInterrupt
    is raised only at a slice boundary, where the parameters, Adam moments, step
    count and history describe the same point (a KeyboardInterrupt landing between a
    kernel's return and the bookkeeping after it would split them). Installed only
    in the main thread and only over Python's default handler; elsewhere an
    interrupt is raised where it lands and the epoch is rolled back instead."""

    def __init__(self):
        self.requested = False
        self._prev = None

    def __enter__(self):
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._prev = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._prev is not None:
            signal.signal(signal.SIGINT, self._prev)
        return False

    def check(self):
        if self.requested:
            raise KeyboardInterrupt


class EpochSlices:
    """Splits an epoch's minibatches into slices of about ``SLICE_SECONDS`` each.

    ``for i0, i1 in ctl.slices(M): kernel(batches i0..i1-1)``: the first slice
    of a fit is one minibatch; its wall time sets the next slice's length
    (grown at most 4x per slice, so one slow batch after a fast one cannot
    make a long call). Before each slice a pending Ctrl-C raises
    KeyboardInterrupt; after it the progress bar advances by its share of the
    epoch. The results do not depend on the slicing: the kernels continue the
    same step count and minibatch order.
    """

    def __init__(self, interrupt, bar, target=SLICE_SECONDS):
        self.interrupt, self.bar, self.target = interrupt, bar, target
        self.seconds_per_batch = None
        self.n_calls = 0

    def slices(self, n_batches):
        i0, n = 0, 1
        while i0 < n_batches:
            self.interrupt.check()
            if self.seconds_per_batch is not None:
                n = int(min(4 * n, max(1.0, self.target / max(self.seconds_per_batch, 1e-9))))
            i1 = min(n_batches, i0 + max(1, n))
            t0 = time.perf_counter()
            yield i0, i1
            self.seconds_per_batch = (time.perf_counter() - t0) / (i1 - i0)
            self.n_calls += 1
            if self.bar is not None:
                self.bar.update((i1 - i0) / n_batches)
            n, i0 = i1 - i0, i1


def check_finite_epoch(e, lr, *arrays):
    """FloatingPointError saying that training diverged in epoch ``e`` when any of
    ``arrays`` (the epoch's statistics, the parameters) is not finite; ``run_epochs``
    then rolls the epoch back."""
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise FloatingPointError(
            f"training diverged in epoch {e} (the loss or the parameters became NaN or inf); the parameters are "
            f"kept from the end of the last finite epoch; try a smaller lr than {lr:g}")


def run_epochs(epochs, one_epoch, *, verbose=1, desc="training", validate=None, patience=None,
               snapshot=None, restore=None, checkpoint=None, rollback=None, sliced=False, history=None,
               min_delta=0.0):
    """Call ``one_epoch(e) -> dict`` for e < epochs; returns (history, interrupted).

    With ``sliced``, ``one_epoch(e, ctl)`` runs its minibatches in the slices of
    ``ctl.slices(n_batches)`` (an ``EpochSlices``), about 0.1 s each, so Ctrl-C
    stops within about that time at any data size. With ``validate() -> float``
    (lower is better) the best state (``snapshot()``) is kept and restored at
    the end (``restore(s)``); training stops after ``patience`` epochs without
    improvement, an improvement being a validation loss below the best by more
    than ``min_delta`` (default 0, in the units of ``validate``).

    Ctrl-C keeps what was trained in whole epochs: ``checkpoint()`` is taken
    before each epoch and an interrupted epoch is undone with
    ``rollback(token)``, so the parameters, optimiser moments, step count and
    history describe the end of the last completed epoch (the best one when
    validating). The work of the interrupted epoch is discarded, at most one
    epoch; the alternative, a partial epoch in the history, would leave a
    warm-started fit with no way to finish that epoch's minibatch order. Any
    other exception in an epoch (``check_finite_epoch``'s FloatingPointError
    when training diverges) rolls it back too and propagates; ``history``, a
    list given by the caller, then holds the completed epochs.
    """
    epochs = C.integer(epochs, "epochs", 1)
    history = [] if history is None else history
    best, best_state, since = math.inf, None, 0
    interrupted = False
    bar = progress(epochs, verbose, desc)
    with _DeferredInterrupt() as intr:
        ctl = EpochSlices(intr, bar)
        try:
            for e in range(epochs):
                token = checkpoint() if checkpoint is not None else None
                try:
                    rec = dict(one_epoch(e, ctl) if sliced else one_epoch(e))
                except BaseException:
                    if token is not None:
                        rollback(token)
                    raise
                rec["epoch"] = e
                if validate is not None:
                    val = float(validate())
                    rec["val_loss"] = val
                    if val < best - min_delta:
                        best, best_state, since = val, snapshot(), 0
                    else:
                        since += 1
                history.append(rec)
                if bar is not None:
                    if not sliced:
                        bar.update(1)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in rec.items() if k != "epoch"}, refresh=False)
                if patience is not None and validate is not None and since >= patience:
                    break
                intr.check()
        except KeyboardInterrupt:
            interrupted = True
            warnings.warn(f"training interrupted (Ctrl-C); keeping the {len(history)} completed epoch(s)",
                          RuntimeWarning, stacklevel=3)
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
    flushed and fsync'ed, then renamed over ``path`` (``bayesgrad._files.replacing``):
    a failure at any point (a full disk, Ctrl-C) leaves the previous file intact
    and removes the temporary one. A file object is written to directly.
    Returns the path written (``npz_path(path)``).
    """
    blob = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    target = npz_path(path)
    if not isinstance(target, str):
        np.savez(target, __meta__=blob, **arrays)
        return target
    if os.path.isdir(target):
        raise ValueError(f"path {target!r} is a directory")
    with replacing(target) as tmp, open(tmp, "wb") as f:
        np.savez(f, __meta__=blob, **arrays)
    return target


def check_log_noise(log_noise, path):
    """Stored log noise sigmas whose exp is a positive finite sigma (ValueError otherwise:
    a finite log sigma of -1e308 loads but makes every prediction fail)."""
    with np.errstate(over="ignore", under="ignore"):
        s = np.exp(np.asarray(log_noise, dtype=np.float64))
    if not np.all(np.isfinite(s) & (s > 0)):
        raise ValueError(f"{path!r}: log_noise must give positive finite noise sigmas (|log sigma| < ~700)")
    return log_noise


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
    given, path = path, npz_path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            files = {k: np.array(z[k]) for k in z.files}
    except (OSError, ValueError, EOFError) as exc:
        hint = ""
        if (isinstance(exc, FileNotFoundError) and isinstance(path, str) and path != os.fspath(given)
                and os.path.isfile(given)):  # "g.bin" exists; save("g.bin") writes g.bin.npz
            hint = f" ({os.fspath(given)!r} exists, but models are saved with .npz appended: pass the .npz file)"
        raise ValueError(f"cannot read a bayesgrad model from {path!r}: {exc}{hint}") from exc
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
