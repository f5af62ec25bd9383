"""NumPy twin of the REBAR / RELAX Categorical kernels (cpp/src/relax_categorical.cpp), part of
``bayesgrad._numpy.estimators`` (its ``__all__`` names them).

D Categorical coordinates of K classes: a draw's p = D K values are laid out (D, K) row-major, and
every operation that couples classes (argmax, softmax, the Jacobians' projections) acts per row of K.
"""
from __future__ import annotations

import numpy as np

from ._arrays import _combine_args, _f64, _out64


def _dk(a, name):
    _f64(a, name)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must have shape (D, K) with D, K >= 1")
    return a.shape


def _draws(draws, p):
    _f64(draws, "draws")
    if draws.ndim != 3 or draws.shape[0] != 5 or draws.shape[2] != p:
        raise ValueError(f"draws must have shape (5, n, {p})")
    return draws.shape[1]


def _temps(lam, step, temps):
    if not (lam > 0 and np.isfinite(lam)):
        raise ValueError("lam must be positive and finite")
    if temps == 3 and not 0 < step < 1:
        raise ValueError("step must be in (0, 1)")
    return [lam, lam * np.exp(step), lam * np.exp(-step)][:temps]


def _softmax_rows(a, k, lam):
    """softmax per row of k of a (m, p) / lam, as exp((a - max) (1 / lam)) normalised: the shift before the
    scaling keeps the maximum's exponent exactly 0 at any lam (the kernel's order)."""
    a3 = a.reshape(a.shape[0], -1, k)
    m = np.max(a3, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    e = np.exp((a3 - m) * (1.0 / lam))
    return (e / e.sum(-1, keepdims=True)).reshape(a.shape)


def _rowsum(a, k):
    """sum per row of k of a (m, p), broadcast back to (m, p)."""
    return np.repeat(a.reshape(a.shape[0], -1, k).sum(-1), k, axis=1)


def relax_categorical_sample(lp, seed, stream_u, stream_v, lam, step, draws, y):
    """REBAR/RELAX draws for D Categorical coordinates of K classes, lp (D, K) their log-probabilities, into
    draws (5, n, D K) = [z, z~, r, b, score] (u, v the uniforms of random.uniform((n, D K), seed, stream_u /
    stream_v), z = lp - log(-log u), b the one-hot argmax per row of K, z~ the conditional Gumbel draw given b,
    r its Jacobian's diagonal, score = b - p), and the softmax relaxation of [z; z~] (2n, D K) per row of K:
    y (2n, D K) at lam, y (3, 2n, D K) at lam, lam e^step, lam e^-step, or None (float64)."""
    from . import random as _rnd

    d, k = _dk(lp, "lp")
    p = d * k
    n = _draws(draws, p)
    _out64(draws, "draws", draws.shape)
    if not (0 <= stream_u < 2 ** 63 and 0 <= stream_v < 2 ** 63):
        raise ValueError("stream_u and stream_v must be in [0, 2**63)")
    lams = []
    if y is not None:
        _f64(y, "y")
        if y.shape not in ((2 * n, p), (3, 2 * n, p)):
            raise ValueError("y must have shape (2n, p) or (3, 2n, p)")
        _out64(y, "y", y.shape)
        lams = _temps(lam, step, 3 if y.ndim == 3 else 1)
    u, v = np.empty((n, p)), np.empty((n, p))
    _rnd.fill_uniform(u, seed, stream_u, 0)
    _rnd.fill_uniform(v, seed, stream_v, 0)
    lpf = lp.reshape(-1)
    pr = np.exp(lpf)
    z = lpf - np.log(-np.log(u))
    idx = np.argmax(z.reshape(n, d, k), axis=-1)
    onehot = (idx[..., None] == np.arange(k)).reshape(n, p)
    e = -np.log(v)
    eb = np.repeat(np.take_along_axis(e.reshape(n, d, k), idx[..., None], axis=-1)[..., 0], k, axis=1)
    # z~_i = -log(E_i / p_i + E_b) = log p_i - log(E_i + E_b p_i), r_i = E_i / (E_i + E_b p_i): finite where
    # p_i underflows to 0
    w = np.where(onehot, eb, e + eb * pr)
    draws[0] = z
    draws[1] = np.where(onehot, 0.0, lpf) - np.log(w)
    draws[2] = np.where(onehot, 0.0, e / w)
    draws[3] = onehot
    draws[4] = onehot - pr
    zz = draws[:2].reshape(2 * n, p)
    for t, lt in enumerate(lams):
        (y[t] if y.ndim == 3 else y)[...] = _softmax_rows(zz, k, lt)


def _part(fv, gv, y, r, score, pr, n, k, lam, t):
    """The relaxed-f part at temperature lam from block t of fv, gv, y."""
    gz, gt = gv[2 * t * n:(2 * t + 1) * n], gv[(2 * t + 1) * n:(2 * t + 2) * n]
    yz, yt = y[2 * t * n:(2 * t + 1) * n], y[(2 * t + 1) * n:(2 * t + 2) * n]
    vz = yz * (gz - _rowsum(gz * yz, k)) / lam  # the softmax's VJP per row of K
    vt = yt * (gt - _rowsum(gt * yt, k)) / lam
    jz = vz - pr * _rowsum(vz, k)  # d z / d eta = 1 - p 1^T (transposed, per row)
    jt = vt * r - pr * _rowsum(vt * r, k)  # d z~ / d eta = diag(r) - p r^T
    return -fv[(2 * t + 1) * n:(2 * t + 2) * n, None] * score + jz - jt


def relax_categorical_part(fv, gv, y, draws, pr, lam, step, out):
    """REBAR/RELAX's relaxed-f part per unit scale for Categorical coordinates from f and grad_f (fv (T 2n,),
    gv (T 2n, p)) at the relaxation y (T 2n, p) of relax_categorical_sample, draws its (5, n, p) and pr (D, K)
    the probabilities: out (n, p) the part at lam (T = 1), or out (2, n, p) also the part at lam e^step minus
    the part at lam e^-step (T = 3; float64)."""
    d, k = _dk(pr, "pr")
    p = d * k
    n = _draws(draws, p)
    _f64(out, "out")
    if out.shape not in ((n, p), (2, n, p)):
        raise ValueError("out must have shape (n, p) or (2, n, p)")
    _out64(out, "out", out.shape)
    temps = 3 if out.ndim == 3 else 1
    _f64(fv, "fv", (2 * temps * n,))
    _f64(gv, "gv", (2 * temps * n, p))
    _f64(y, "y", (2 * temps * n, p))
    lams = _temps(lam, step, temps)
    r, score, prf = draws[2], draws[4], pr.reshape(-1)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite inputs propagate silently, as natively
        parts = [_part(fv, gv, y, r, score, prf, n, k, lt, t) for t, lt in enumerate(lams)]
    if temps == 1:
        out[...] = parts[0]
    else:
        out[0] = parts[0]
        out[1] = parts[1] - parts[2]


def relax_categorical_combine(fb, draws, pr, a_f, sc, r, gx, out, gs):
    """REBAR/RELAX per-draw terms for Categorical coordinates (n, p): g = (fb - r[n:]) score + sc a_f + Jz gx[:n] -
    Jt gx[n:] with Jz h = h - p sum h and Jt h = r h - p sum r h per row of K (score and r from draws (5, n, p),
    pr (D, K)); with the network's terms out (3, n, p) = [g; Jz^T g; Jt^T g] and gs (n,) = rowwise sum of
    g score, without them out (n, p) = g and gs None (float64); returns (sum g^2, sum g a_f[0], sum g a_f[1])."""
    d, k = _dk(pr, "pr")
    p = d * k
    n = _draws(draws, p)
    _f64(fb, "fb", (n,))
    a_f, a_d, net = _combine_args(a_f, r, gx, out, gs, n, p, 3)
    rr, score, prf = draws[2], draws[4], pr.reshape(-1)
    with np.errstate(invalid="ignore", over="ignore"):
        v = (fb if r is None else fb - r[n:])[:, None] * score
        if a_f is not None:
            v += sc * a_f
        if net:
            gz, gt = gx[:n], gx[n:]
            v += gz - prf * _rowsum(gz, k) - (gt * rr - prf * _rowsum(gt * rr, k))
            out[0] = v
            out[1] = v - _rowsum(v * prf, k)
            out[2] = rr * out[1]
            gs[...] = np.einsum("ij,ij->i", v, score)
        else:
            out[...] = v
        return (float(np.einsum("ij,ij->", v, v)), 0.0 if a_f is None else float(np.einsum("ij,ij->", v, a_f)),
                0.0 if a_d is None else float(np.einsum("ij,ij->", v, a_d)))
