"""NumPy twin of the estimators kernels (cpp/src/estimators.cpp).

Same names, signatures and outputs: column means and unbiased (ddof = 1)
variances over the sample axis of per-sample gradient terms, accumulated in
float64 for both float types (the native core merges fixed blocks with Chan's
formula; here NumPy's pairwise sums give the same values to rounding).
"""
from __future__ import annotations

import numpy as np

from .._numerics import sigmoid
from ._arrays import _combine_args, _f64, _matrix, _out64, _softplus
from ._beam_search import categorical_set_terms, gumbel_beam_search, set_order_probabilities, set_outside_mass
from ._relax_categorical import relax_categorical_combine, relax_categorical_part, relax_categorical_sample

__all__ = ["column_mean_var", "score_accumulate", "pathwise_accumulate", "control_variate_accumulate",
           "control_coefficient", "quadratic_values", "vimco_signal", "relax_bernoulli_draws",
           "relax_bernoulli_sample",
           "relax_bernoulli_part", "concrete_bernoulli", "concrete_bernoulli_fd", "relax_bernoulli_part_fd",
           "relax_bernoulli_combine",
           "relax_categorical_sample", "relax_categorical_part", "relax_categorical_combine",
           "gumbel_beam_search", "pathwise_normal_accumulate",
           "score_normal_accumulate", "normal_multisample_terms", "gamma_weak_parts",
           "set_order_probabilities", "set_outside_mass", "categorical_set_terms", "normal_scores",
           "coordinate_points"]


def _check_out(mean_out, var_out, terms_out, n, p, dtype):
    for name, o, shape in (("mean_out", mean_out, (p,)), ("var_out", var_out, (p,)),
                           ("terms_out", terms_out, (n, p))):
        if o is None and name == "terms_out":
            continue
        if not isinstance(o, np.ndarray) or o.dtype != dtype or not o.flags.c_contiguous:
            raise TypeError(f"{name} must be a C-contiguous {dtype} array")
        if not o.flags.writeable:
            raise ValueError(f"{name} must be writeable")
        if o.shape != shape:
            raise ValueError(f"{name} must have shape {shape}")


def _finish(t, mean_out, var_out, terms_out):
    n = t.shape[0]
    # (the float32 outputs take values past their range as inf, as the kernel's casts do, without a warning)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if terms_out is not None:
            terms_out[...] = t
        m = t.mean(axis=0) if n > 0 else np.full(t.shape[1], np.nan)
        if n > 0:  # a sum past the largest double, of finite terms: their n-ths summed instead
            big = ~np.isfinite(m) & np.isfinite(t).all(axis=0)
            m[big] = (t[:, big] / n).sum(axis=0)
        if n > 1:  # the deviations scaled by their largest, so that only a variance past the range overflows
            fin = np.isfinite(m)
            m[fin] += (t[:, fin] - m[fin]).mean(axis=0)  # one refinement: exact for a constant column
            d = t - m
            s = np.abs(d).max(axis=0)
            s = np.where((s > 0) & np.isfinite(s), s, 1.0)
            v = s * s * ((d / s) ** 2).sum(axis=0) / (n - 1)
        else:
            v = np.full(t.shape[1], np.nan)
        mean_out[...] = m
        var_out[...] = v


def column_mean_var(x, mean_out, var_out):
    """Column means and ddof=1 variances of x (n, p) into mean_out, var_out (p,) (Welford, fixed chunking)."""
    x = _matrix(x, "x")
    _check_out(mean_out, var_out, None, x.shape[0], x.shape[1], x.dtype)
    _finish(x.astype(np.float64), mean_out, var_out, None)


def _check_signal(f, baseline, loo, n):
    """The checks of score-function kernels' f (n,), baseline (n,) or None, loo."""
    if f.shape != (n,):
        raise ValueError(f"f must have shape ({n},)")
    if baseline is not None and baseline.shape != (n,):
        raise ValueError(f"baseline must have shape ({n},)")
    if loo and baseline is not None:
        raise ValueError("pass either baseline or loo=True, not both")
    if loo and n < 2:
        raise ValueError("a leave-one-out baseline needs n >= 2 samples")


def _signal(f, baseline, loo):
    """f - b in float64: b the leave-one-out mean of f, the baseline, or 0."""
    f64 = f.astype(np.float64)
    if loo:
        return f64 - (f64.sum() - f64) / (f64.shape[0] - 1)
    return f64 - baseline.astype(np.float64) if baseline is not None else f64

def score_accumulate(score, f, baseline, loo, mean_out, var_out, terms_out=None):
    """Mean/var over samples of score (n, p) * (f - b) (n,), b = baseline, leave-one-out mean, or 0."""
    score = _matrix(score, "score")
    n, p = score.shape
    _check_signal(f, baseline, loo, n)
    _check_out(mean_out, var_out, terms_out, n, p, score.dtype)
    r = _signal(f, baseline, loo)
    _finish(score.astype(np.float64) * r[:, None], mean_out, var_out, terms_out)


def pathwise_accumulate(g, jac, mean_out, var_out, terms_out=None):
    """Mean/var over samples of g (n, p) * jac (n, p) (jac None: ones), the pathwise chain rule."""
    g = _matrix(g, "g")
    if jac is not None and jac.shape != g.shape:
        raise ValueError("jac must have the shape of g")
    _check_out(mean_out, var_out, terms_out, g.shape[0], g.shape[1], g.dtype)
    t = g.astype(np.float64)
    if jac is not None:
        t = t * jac
    _finish(t, mean_out, var_out, terms_out)


def _check_pair_out(mean_out, var_out, terms_out, n, p, dtype):
    for name, o, shape in (("mean_out", mean_out, (2, p)), ("var_out", var_out, (2, p)),
                           ("terms_out", terms_out, (2, n, p))):
        if o is None and name == "terms_out":
            continue
        if not isinstance(o, np.ndarray) or o.dtype != dtype or not o.flags.c_contiguous:
            raise TypeError(f"{name} must be a C-contiguous {dtype} array")
        if not o.flags.writeable:
            raise ValueError(f"{name} must be writeable")
        if o.shape != shape:
            raise ValueError(f"{name} must have shape {shape}")


def _vec(a, name, p):
    if not isinstance(a, np.ndarray) or a.shape != (p,):
        raise ValueError(f"{name} must have shape ({p},)")
    return a


def pathwise_normal_accumulate(g, x, loc, scale, mean_out, var_out, terms_out=None):
    """Pathwise terms of a Normal(loc, scale) (p,) at x (n, p): mean/var (2, p) of g (loc) and g (x - loc) / scale
    (scale)."""
    g = _matrix(g, "g")
    n, p = g.shape
    if not isinstance(x, np.ndarray) or x.shape != g.shape:
        raise ValueError("x must have the shape of g")
    _vec(loc, "loc", p)
    _vec(scale, "scale", p)
    _check_pair_out(mean_out, var_out, terms_out, n, p, g.dtype)
    eps = (x - loc) / scale  # in the dtype of x, as the kernel
    for part, t in enumerate((g.astype(np.float64), g.astype(np.float64) * eps)):
        _finish(t, mean_out[part], var_out[part], None if terms_out is None else terms_out[part])


def score_normal_accumulate(x, loc, scale, f, baseline, loo, mean_out, var_out, terms_out=None):
    """Score-function terms of a Normal(loc, scale) (p,) at x (n, p) times f - b: mean/var (2, p) of the loc and
    scale scores' terms."""
    x = _matrix(x, "x")
    n, p = x.shape
    _vec(loc, "loc", p)
    _vec(scale, "scale", p)
    _check_signal(f, baseline, loo, n)
    _check_pair_out(mean_out, var_out, terms_out, n, p, x.dtype)
    r = _signal(f, baseline, loo)
    s = scale.astype(np.float64)
    z = (x.astype(np.float64) - loc.astype(np.float64)) / s
    # the scores as the distributions' kernel stores them (in the dtype of x), products in float64
    for part, sc in enumerate((z / s, (z * z - 1.0) / s)):
        t = sc.astype(x.dtype).astype(np.float64) * r[:, None]
        _finish(t, mean_out[part], var_out[part], None if terms_out is None else terms_out[part])


# ---------------------------------------------------------------- float64-only kernels (issue 16)
def control_variate_accumulate(score, f, h, beta, eg, shift, mean_out, var_out, terms_out=None):
    """Mean/var over samples of scale * score * ((f - f_shift) - beta (h - h_shift)) + beta eg, with shift =
    (scale, f_shift, h_shift) (float64)."""
    score = _matrix(_f64(score, "score"), "score")
    n, p = score.shape
    _f64(f, "f", (n,))
    _f64(h, "h", (n,))
    _f64(beta, "beta", (p,))
    _f64(eg, "eg", (p,))
    _f64(shift, "shift", (3,))
    scale, f_shift, h_shift = (float(a) for a in shift)
    _check_out(mean_out, var_out, terms_out, n, p, np.float64)
    t = scale * score * ((f - f_shift)[:, None] - beta * (h - h_shift)[:, None]) + beta * eg
    _finish(t, mean_out, var_out, terms_out)


def control_coefficient(score, f, h, beta_out):
    """Per-column Cov(score f, score h) / Var(score h) into beta_out (p,) (0 where the variance is at the values'
    rounding: below n 1e-28 of the largest squared |score h|; float64)."""
    score = _matrix(_f64(score, "score"), "score")
    n, p = score.shape
    _f64(f, "f", (n,))
    _f64(h, "h", (n,))
    _out64(beta_out, "beta_out", (p,))
    if n < 2:
        raise ValueError("control_coefficient needs n >= 2 samples")
    a = score * f[:, None]
    c = score * h[:, None]

    def unit(v):  # 1 / the column's largest |value| (1 where that is 0 or not finite, 2^1023 where the
        m = np.abs(v).max(0)  # reciprocal of a subnormal overflows: the kernel's column_unit)
        with np.errstate(divide="ignore", over="ignore"):
            inv = 1.0 / np.where(m > 0, m, 1.0)
        return np.where((m > 0) & np.isfinite(m), np.where(np.isfinite(inv), inv, 2.0 ** 1023), 1.0)

    ua, uc = unit(a), unit(c)
    # deviations in units of each column's largest |value| (products of 1e160 stay in range); a spread
    # at the rounding of the values (variance below n 1e-28 in those units) counts as none
    ac = (a - a.sum(0) / n) * ua
    cc = (c - c.sum(0) / n) * uc
    vc = (cc * cc).sum(0)
    cov = (ac * cc).sum(0)
    beta_out[...] = np.divide(cov * (uc / ua), vc, out=np.zeros(p), where=vc > n * 1e-28)


def quadratic_values(x, mu, g, h, f0, out):
    """f0 + sum_j g_j d_ij + h_j d_ij^2 / 2 with d = x - mu, per row of x (n, p) into out (n,) (float64)."""
    x = _matrix(_f64(x, "x"), "x")
    n, p = x.shape
    for name, a in (("mu", mu), ("g", g), ("h", h)):
        _f64(a, name, (p,))
    _out64(out, "out", (n,))
    d = x - mu
    out[...] = f0 + (d * (g + 0.5 * h * d)).sum(1)


def vimco_signal(logw, out):
    """VIMCO's per-draw learning signal L - L_{-j} - w~_j for log-weights (n, k) into out (n, k) (float64)."""
    logw = _matrix(_f64(logw, "logw"), "logw")
    n, k = logw.shape
    if k < 2:
        raise ValueError("vimco_signal needs k >= 2 draws per row")
    _out64(out, "out", (n, k))
    mx = logw.max(1, keepdims=True)
    e = np.exp(logw - mx)
    tot = e.sum(1, keepdims=True)
    bound = np.log(tot) + mx - np.log(k)
    others = (logw.sum(1, keepdims=True) - logw) / (k - 1)
    m = np.maximum(mx, others)
    t = tot * np.exp(mx - m) - np.exp(logw - m) + np.exp(others - m)
    loo = np.log(np.maximum(t, np.finfo(float).tiny)) + m - np.log(k)
    out[...] = bound - loo - e / tot


def relax_bernoulli_draws(eta, u, v, z, zt, dzt, b, score):
    """REBAR/RELAX Bernoulli draws: z, the conditional z~, dz~/deta, b and the score b - p from eta (p,) and
    uniforms u, v (n, p)."""
    u = _matrix(_f64(u, "u"), "u")
    n, p = u.shape
    _f64(eta, "eta", (p,))
    _f64(v, "v", (n, p))
    for name, a in (("z", z), ("zt", zt), ("dzt", dzt), ("b", b), ("score", score)):
        _out64(a, name, (n, p))
    pr = sigmoid(eta)
    q = 1.0 - pr
    one = u < pr
    b[...] = one
    score[...] = b - pr
    z[...] = eta + np.log1p(-u) - np.log(u)
    log_p, log_q = -_softplus(-eta), -_softplus(eta)
    lw = np.where(one, np.log1p(-pr * (1.0 - v)), log_q + np.log(v))
    l1w = np.where(one, log_p + np.log1p(-v), np.log1p(-q * v))
    zt[...] = eta + lw - l1w
    pq = pr * q
    dzt[...] = np.where(one, pr - pq * (1.0 - v) / np.exp(lw), q - pq * v / np.exp(l1w))


def relax_bernoulli_sample(eta, seed, stream_u, stream_v, lam, step, draws, y):
    """relax_bernoulli_draws into draws (5, n, p) = [z, z~, dz~/deta, b, score] with u, v (n, p) the uniforms of
    random.uniform((n, p), seed, stream_u / stream_v), generated inside the pass (the same values), and the
    relaxation of [z; z~] (2n, p) in the same pass: y (2n, p) concrete_bernoulli at lam, y (3, 2n, p)
    concrete_bernoulli_fd at lam, step, or None (step is read only for the latter; float64)."""
    from . import random as _rnd

    _f64(draws, "draws")
    if draws.ndim != 3 or draws.shape[0] != 5:
        raise ValueError("draws must have shape (5, n, p)")
    _out64(draws, "draws", draws.shape)
    n, p = draws.shape[1:]
    _f64(eta, "eta", (p,))
    if not (0 <= stream_u < 2 ** 63 and 0 <= stream_v < 2 ** 63):
        raise ValueError("stream_u and stream_v must be in [0, 2**63)")
    if y is not None:
        _f64(y, "y")
        if y.shape not in ((2 * n, p), (3, 2 * n, p)):
            raise ValueError("y must have shape (2n, p) or (3, 2n, p)")
        _out64(y, "y", y.shape)
        if not (lam > 0 and np.isfinite(lam)):
            raise ValueError("lam must be positive and finite")
        if y.ndim == 3 and not 0 < step < 1:
            raise ValueError("step must be in (0, 1)")
    u, v = np.empty((n, p)), np.empty((n, p))
    _rnd.fill_uniform(u, seed, stream_u, 0)
    _rnd.fill_uniform(v, seed, stream_v, 0)
    relax_bernoulli_draws(eta, u, v, *draws)
    if y is not None:
        zz = draws[:2].reshape(2 * n, p)
        if y.ndim == 3:
            concrete_bernoulli_fd(zz, lam, step, y)
        else:
            concrete_bernoulli(zz, lam, y)


def relax_bernoulli_part(fzt, gz, gzt, y, yt, dzt, score, lam, out):
    """REBAR's relaxed-f part per unit scale for Bernoulli coordinates (n, p) from the relaxations y, y~ into out
    (float64)."""
    y = _matrix(_f64(y, "y"), "y")
    n, p = y.shape
    _f64(fzt, "fzt", (n,))
    for name, a in (("gz", gz), ("gzt", gzt), ("yt", yt), ("dzt", dzt), ("score", score)):
        _f64(a, name, (n, p))
    _out64(out, "out", (n, p))
    if not lam > 0:
        raise ValueError("lam must be positive")
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite inputs propagate silently, as natively
        out[...] = -fzt[:, None] * score + (gz * y * (1.0 - y) - gzt * yt * (1.0 - yt) * dzt) / lam


def relax_bernoulli_part_fd(fv, gv, y, dzt, score, lam, step, out):
    """relax_bernoulli_part at lam, lam e^step, lam e^-step in one pass: out[0] the part at lam, out[1] the part at
    lam e^step minus the part at lam e^-step (fv (6n,), gv and y (6n, p) in concrete_bernoulli_fd's order;
    float64)."""
    dzt = _matrix(_f64(dzt, "dzt"), "dzt")
    n, p = dzt.shape
    _f64(fv, "fv", (6 * n,))
    _f64(gv, "gv", (6 * n, p))
    _f64(y, "y", (6 * n, p))
    _f64(score, "score", (n, p))
    _out64(out, "out", (2, n, p))
    if not (lam > 0 and np.isfinite(lam)):
        raise ValueError("lam must be positive and finite")
    if not 0 < step < 1:
        raise ValueError("step must be in (0, 1)")
    parts = [out[0], np.empty((n, p)), np.empty((n, p))]
    for k, lk in enumerate((lam, lam * np.exp(step), lam * np.exp(-step))):
        z, t = slice(2 * k * n, (2 * k + 1) * n), slice((2 * k + 1) * n, (2 * k + 2) * n)
        relax_bernoulli_part(fv[t], gv[z], gv[t], y[z], y[t], dzt, score, lk, parts[k])
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite inputs propagate silently, as natively
        np.subtract(parts[1], parts[2], out=out[1])


def concrete_bernoulli(z, lam, y):
    """sigmoid(z / lam) elementwise into y (the Bernoulli Concrete relaxation; float64)."""
    _f64(z, "z")
    _out64(y, "y", z.shape)
    if not lam > 0:
        raise ValueError("lam must be positive")
    y[...] = sigmoid(z / lam)


def concrete_bernoulli_fd(z, lam, step, y):
    """sigmoid(z / lam_k) for lam_k = lam, lam e^step, lam e^-step into y (3, *z.shape) (float64)."""
    _f64(z, "z")
    _out64(y, "y", (3,) + z.shape)
    if not (lam > 0 and np.isfinite(lam)):
        raise ValueError("lam must be positive and finite")
    if not 0 < step < 1:
        raise ValueError("step must be in (0, 1)")
    for k, lk in enumerate((lam, lam * np.exp(step), lam * np.exp(-step))):
        y[k] = sigmoid(z / lk)


def relax_bernoulli_combine(fb, score, a_f, sc, r, gx, dzt, out, gs):
    """REBAR/RELAX per-draw terms for Bernoulli coordinates (n, p): g = (fb - r[n:]) score + sc a_f + gx[:n] -
    gx[n:] dzt (a_f, or the network's r (2n,) and gx (2n, p) at [z; z~], may be None; a_f (2, n, p): a_f[0] the
    part, a_f[1] a second array dotted with g); with the network's terms out (2, n, p) = [g; g dzt] and gs (n,) =
    rowwise sum of g score, without them out (n, p) = g and gs None (float64); returns (sum g^2, sum g a_f[0],
    sum g a_f[1]), 0.0 for what is absent."""
    score = _matrix(_f64(score, "score"), "score")
    n, p = score.shape
    _f64(fb, "fb", (n,))
    _f64(dzt, "dzt", (n, p))
    a_f, a_d, net = _combine_args(a_f, r, gx, out, gs, n, p, 2)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite inputs propagate silently, as natively
        v = (fb if r is None else fb - r[n:])[:, None] * score
        if a_f is not None:
            v += sc * a_f
        if net:
            v += gx[:n] - gx[n:] * dzt
            out[0] = v
            np.multiply(v, dzt, out=out[1])
            gs[...] = np.einsum("ij,ij->i", v, score)
        else:
            out[...] = v
        return (float(np.einsum("ij,ij->", v, v)), 0.0 if a_f is None else float(np.einsum("ij,ij->", v, a_f)),
                0.0 if a_d is None else float(np.einsum("ij,ij->", v, a_d)))


_HALF_LOG_2PI = 0.91893853320467274178032973640562


def normal_multisample_terms(z, fz, g, loc, scale, mode, terms, wt, bound):
    """IWAE-bound estimators for a Normal q: groups z (n, k, p), log joint fz (n, k), grad g (n, k, p) or None ->
    per-group loc/scale terms (2, n, p), normalised weights wt (n, k) and bound (n,); mode 0 iwae, 1 dreg,
    2 dreg rws, 3 vimco (float64)."""
    _f64(z, "z")
    if z.ndim != 3:
        raise ValueError("z must have shape (n, k, p)")
    n, k, p = z.shape
    mode = int(mode)
    if not 0 <= mode <= 3:
        raise ValueError("mode must be 0 (iwae), 1 (dreg), 2 (dreg rws) or 3 (vimco)")
    if mode < 3 and g is None:
        raise ValueError("g is required for modes 0-2")
    if mode == 3 and k < 2:
        raise ValueError("vimco needs k >= 2 draws per group")
    _f64(fz, "fz", (n, k))
    if g is not None:
        _f64(g, "g", z.shape)
    _f64(loc, "loc", (p,))
    _f64(scale, "scale", (p,))
    _out64(terms, "terms", (2, n, p))
    _out64(wt, "wt", (n, k))
    _out64(bound, "bound", (n,))
    e = (z - loc) / scale
    c0 = -(np.log(scale) + _HALF_LOG_2PI).sum()
    logw = fz - (c0 - 0.5 * (e * e).sum(-1))
    mx = logw.max(1, keepdims=True)
    ex = np.exp(logw - mx)
    tot = ex.sum(1, keepdims=True)
    bound[...] = np.log(tot[:, 0]) + mx[:, 0] - np.log(k)
    wt[...] = ex / tot
    inv_s = 1.0 / scale
    if mode == 3:
        c = np.empty((n, k))
        vimco_signal(np.ascontiguousarray(logw), c)
        c = c[..., None]
        terms[0] = (c * (e * inv_s)).sum(1)
        terms[1] = (c * ((e * e - 1.0) * inv_s)).sum(1)
        return
    c = (wt if mode == 0 else wt * wt if mode == 1 else wt - wt * wt)[..., None]
    if mode == 0:
        terms[0] = (c * g).sum(1)
        terms[1] = (c * (g * e + inv_s)).sum(1)
    else:
        a = g + e * inv_s
        terms[0] = (c * a).sum(1)
        terms[1] = (c * a * e).sum(1)


def gamma_weak_parts(alpha, eps, psi, sign, seed, stream, max_rounds, out):
    """Rejection draws (n, p) of the Gamma shape's weak-derivative part p+ (sign 1) / p- (sign -1) into out:
    proposals Gamma(alpha, 1), acceptance e eps sign t exp(-sign eps t), t = log x - psi (float64)."""
    from .._codes import STREAM_TAGS
    from . import distributions as _dist
    from . import random as _rnd

    if not isinstance(out, np.ndarray) or out.ndim != 2:
        raise ValueError("out must have shape (n, p)")
    n, p = out.shape
    _out64(out, "out", (n, p))
    for name, a in (("alpha", alpha), ("eps", eps), ("psi", psi)):
        _f64(a, name, (p,))
    if not np.all(alpha > 0):
        raise ValueError("alpha must be positive")
    if sign not in (1, -1, 1.0, -1.0):
        raise ValueError("sign must be 1 or -1")
    if int(max_rounds) < 1:
        raise ValueError("max_rounds must be >= 1")
    tiny = np.finfo(np.float64).tiny
    pending = np.ones((n, p), dtype=bool)
    for r in range(int(max_rounds)):
        rows, cols = np.nonzero(pending)
        if rows.size == 0:
            return
        s = _rnd.fold_in(stream, r)
        # the proposal's log (exact where the draw itself underflows: log x ~ -1/a at shapes a << 1)
        logx = _dist._gamma_draw(np.ascontiguousarray(alpha[cols]), np.arange(cols.size, dtype=np.uint64), seed, s,
                                 True)
        with np.errstate(under="ignore"):
            prop = np.maximum(np.exp(logx), tiny)
        u = np.empty(cols.size)
        _rnd.fill_uniform(u, seed, _rnd.fold_in(s, STREAM_TAGS["mvd_accept"]), 0)
        logt = logx - psi[cols]
        e = eps[cols]
        acc = np.where(sign * logt > 0, np.e * e * sign * logt * np.exp(-sign * e * logt), 0.0)
        ok = u < acc
        out[rows[ok], cols[ok]] = prop[ok]
        pending[rows[ok], cols[ok]] = False
    if pending.any():
        raise RuntimeError("rejection sampling of the Gamma shape's weak derivative did not finish")


def normal_scores(x, loc, scale, out):
    """The scores (2, n, p) of a Normal(loc, scale) (p,) at x (n, p): d log q / d loc and d log q / d scale
    (float64)."""
    x = _matrix(_f64(x, "x"), "x")
    n, p = x.shape
    _f64(loc, "loc", (p,))
    _f64(scale, "scale", (p,))
    _out64(out, "out", (2, n, p))
    z = (x - loc) / scale
    out[0] = z / scale
    out[1] = (z * z - 1.0) / scale


def coordinate_points(x, values, out):
    """Measure-valued evaluation points: out[i, (j,) d, :] = x[i, :] with coordinate d replaced by
    values[i, (j,) d]; x (m, D), values (m, D) or (m, parts, D) float64, out (m, (parts,) D, D)."""
    x = _matrix(np.asarray(x, dtype=np.float64), "x")
    values = np.asarray(values, dtype=np.float64)
    m, d = x.shape
    if values.ndim not in (2, 3) or values.shape[0] != m or values.shape[-1] != d:
        raise ValueError("values must have shape (m, D) or (m, parts, D) with x (m, D)")
    if not isinstance(out, np.ndarray) or not out.flags.writeable:
        raise ValueError("out must be writeable")
    if out.shape != values.shape[:-1] + (d, d):
        raise ValueError(f"out must have shape {values.shape[:-1] + (d, d)}")
    if out.dtype not in (np.float32, np.float64) or not out.flags.c_contiguous:
        raise TypeError("out must be a C-contiguous float32 or float64 array")
    out[...] = x.reshape((m,) + (1,) * (values.ndim - 1) + (d,))
    idx = np.arange(d)
    out[..., idx, idx] = values
