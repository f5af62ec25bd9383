"""NumPy twin of the acquisition kernels (cpp/src/acquisition.cpp, cpp/src/metrics.cpp):
single-point scores and the BatchBALD joint entropies."""
from __future__ import annotations

import numpy as np

from .._codes import PointScore, from_int
from .metrics import check3, check_out, exp_floored, merge_deviation, row_slices, sum_deviation

__all__ = ["point_scores", "joint_entropy", "batch_configs"]


def point_scores(log_probs, kind, out):
    """Acquisition scores of log_probs (S, N, C) into out (N,), kind a PointScore code; returns the largest
    |sum_c p - 1|."""
    kind = from_int(PointScore, kind, "kind")
    lp = np.ascontiguousarray(log_probs)
    check3(lp, "log_probs")
    S, N, C = lp.shape
    check_out(out, (N,), lp.dtype)
    worst = 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        for sl in row_slices(N):
            x = lp[:, sl]
            e = exp_floored(x)
            worst = merge_deviation(worst, sum_deviation(e))
            if kind == PointScore.variation_ratios:
                counts = np.zeros((x.shape[1], C), dtype=lp.dtype)
                am = np.argmax(x, axis=-1)
                for s in range(S):
                    np.add.at(counts, (np.arange(x.shape[1]), am[s]), 1)
                out[sl] = 1 - counts.max(axis=-1) / S
            elif kind == PointScore.mean_std:
                # shifted by the first sample, in float64, as the native kernel
                # (metrics.hpp, mean_std_accumulate: E[p^2] - E[p]^2 of the raw p cancels)
                d = e.astype(np.float64) - e[0].astype(np.float64)
                m = d.sum(axis=0) * (1.0 / S)
                v = np.maximum((d * d).sum(axis=0) * (1.0 / S) - m * m, 0)
                out[sl] = np.sqrt(v).sum(axis=-1) / C
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
    check3(pr, "probs")
    S, N, C = pr.shape
    P = np.ascontiguousarray(P, dtype=pr.dtype)
    if P.ndim != 2 or P.shape[0] != S or P.shape[1] < 1:
        raise ValueError("P must have shape (S, M) with M >= 1")
    M = P.shape[1]
    w = np.ascontiguousarray(weights, dtype=pr.dtype)
    if w.shape != (M,):
        raise ValueError(f"weights must have shape ({M},)")
    check_out(out, (N,), pr.dtype)
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
    check3(pr, "probs")
    S, K, C = pr.shape
    u = np.ascontiguousarray(u, dtype=pr.dtype)
    if u.ndim != 2 or u.shape[1] != K + 1 or u.shape[0] < 1:
        raise ValueError("u must have shape (M, K + 1)")
    M = u.shape[0]
    check_out(P, (S, M), pr.dtype, "P")
    s = np.minimum(S - 1, (u[:, 0].astype(np.float64) * S).astype(np.int64))
    cdf = np.cumsum(pr[s].astype(np.float64), axis=-1)  # (M, K, C)
    # first class whose CDF exceeds u; the last class takes any rounding remainder
    y = np.minimum((cdf[:, :, :-1] <= u[:, 1:, None].astype(np.float64)).sum(axis=-1), C - 1)  # (M, K)
    picked = pr[:, np.arange(K)[None, :], y].astype(np.float64)  # (S, M, K)
    P[...] = picked.prod(axis=-1)
