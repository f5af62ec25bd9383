"""NumPy twin of the metrics kernels (cpp/src/metrics.cpp, cpp/src/acquisition.cpp).

Same names, signatures and results (within rounding) as the native core.
"""
from __future__ import annotations

import numpy as np

__all__ = ["decompose", "point_scores", "joint_entropy", "batch_configs"]

_ROWS = 4096  # points per slice, to bound temporaries


def _check3(a, name):
    if a.ndim != 3 or min(a.shape) < 1:
        raise ValueError(f"{name} must be a non-empty (S, N, C) array")


def _check_out(out, shape, dtype, name="out"):
    if not isinstance(out, np.ndarray) or out.dtype != dtype or not out.flags.c_contiguous:
        raise TypeError(f"{name} must be a C-contiguous {np.dtype(dtype)} array")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writeable")


def _slices(N):
    for a in range(0, N, _ROWS):
        yield slice(a, min(N, a + _ROWS))


def _deviation(e):
    d = np.abs(e.sum(axis=-1, dtype=np.float64) - 1.0)
    return float(np.max(d))  # NaN propagates


def _merge(worst, d):
    if worst != worst or d != d:
        return float("nan")
    return max(worst, d)


def decompose(log_probs, total, aleatoric, epistemic):
    """Entropy decomposition of log_probs (S, N, C) into total/aleatoric/epistemic (N,) in nats;
    returns the largest |sum_c p - 1| (NaN if any input is NaN)."""
    lp = np.ascontiguousarray(log_probs)
    _check3(lp, "log_probs")
    S, N, _ = lp.shape
    for o in (total, aleatoric, epistemic):
        _check_out(o, (N,), lp.dtype)
    worst = 0.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for sl in _slices(N):
            x = lp[:, sl]
            e = np.exp(x)
            worst = _merge(worst, _deviation(e))
            ent = np.where(e > 0, e * x, 0).sum(axis=(0, 2)) / S
            pm = e.mean(axis=0)
            h = -np.where(pm > 0, pm * np.log(pm), 0).sum(axis=-1)
            a = -ent
            total[sl] = h
            aleatoric[sl] = a
            epistemic[sl] = np.maximum(h - a, 0)
    return worst


def point_scores(log_probs, kind, out):
    """Acquisition scores of log_probs (S, N, C) into out (N,): kind 0 variation ratios, 1 mean std,
    2 margin; returns the largest |sum_c p - 1|."""
    lp = np.ascontiguousarray(log_probs)
    _check3(lp, "log_probs")
    S, N, C = lp.shape
    if kind not in (0, 1, 2):
        raise ValueError("kind must be 0 (variation ratios), 1 (mean std) or 2 (margin)")
    _check_out(out, (N,), lp.dtype)
    worst = 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        for sl in _slices(N):
            x = lp[:, sl]
            e = np.exp(x)
            worst = _merge(worst, _deviation(e))
            if kind == 0:
                counts = np.zeros((x.shape[1], C), dtype=lp.dtype)
                am = np.argmax(x, axis=-1)
                for s in range(S):
                    np.add.at(counts, (np.arange(x.shape[1]), am[s]), 1)
                out[sl] = 1 - counts.max(axis=-1) / S
            elif kind == 1:
                m = e.mean(axis=0)
                v = np.maximum((e * e).mean(axis=0) - m * m, 0)
                out[sl] = np.sqrt(v).mean(axis=-1)
            else:
                m = e.mean(axis=0)
                if C == 1:
                    out[sl] = 0
                else:
                    top = np.sort(m, axis=-1)
                    out[sl] = 1 - (top[:, -1] - top[:, -2])
    return worst


def joint_entropy(probs, P, weights, out):
    """Joint entropy of the batch configurations P (S, M) (weights (M,)) with each candidate of
    probs (S, N, C) into out (N,)."""
    pr = np.ascontiguousarray(probs)
    _check3(pr, "probs")
    S, N, C = pr.shape
    P = np.ascontiguousarray(P, dtype=pr.dtype)
    if P.ndim != 2 or P.shape[0] != S or P.shape[1] < 1:
        raise ValueError("P must have shape (S, M) with M >= 1")
    M = P.shape[1]
    w = np.ascontiguousarray(weights, dtype=pr.dtype)
    if w.shape != (M,):
        raise ValueError(f"weights must have shape ({M},)")
    _check_out(out, (N,), pr.dtype)
    nb = max(1, min(N, (1 << 20) // (M * C)))
    flat = pr.reshape(S, N * C)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i0 in range(0, N, nb):
            i1 = min(N, i0 + nb)
            q = (P.T @ flat[:, i0 * C:i1 * C]).astype(np.float64) / S  # (M, cnt*C)
            q = q.reshape(M, i1 - i0, C)
            hm = -np.where(q > 0, q * np.log(q), 0).sum(axis=-1)  # (M, cnt)
            out[i0:i1] = w.astype(np.float64) @ hm


def batch_configs(probs, u, P):
    """Sampled label configurations of the batch probs (S, K, C) from uniforms u (M, K+1); writes P (S, M)."""
    pr = np.ascontiguousarray(probs)
    _check3(pr, "probs")
    S, K, C = pr.shape
    u = np.ascontiguousarray(u, dtype=pr.dtype)
    if u.ndim != 2 or u.shape[1] != K + 1 or u.shape[0] < 1:
        raise ValueError("u must have shape (M, K + 1)")
    M = u.shape[0]
    _check_out(P, (S, M), pr.dtype, "P")
    s = np.minimum(S - 1, (u[:, 0].astype(np.float64) * S).astype(np.int64))
    cdf = np.cumsum(pr[s].astype(np.float64), axis=-1)  # (M, K, C)
    # first class whose CDF exceeds u; the last class takes any rounding remainder
    y = np.minimum((cdf[:, :, :-1] <= u[:, 1:, None].astype(np.float64)).sum(axis=-1), C - 1)  # (M, K)
    picked = pr[:, np.arange(K)[None, :], y].astype(np.float64)  # (S, M, K)
    P[...] = picked.prod(axis=-1)
