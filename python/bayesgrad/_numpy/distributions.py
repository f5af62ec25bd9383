"""NumPy twin of the distributions kernels (cpp/src/{special,distributions}.cpp; the twins of studentt.cpp,
relaxed_bernoulli.cpp and bernoulli.cpp are in _densities.py, the shared checks in _dist_checks.py).

Same names, signatures and outputs as the native core. Special functions come
from SciPy; the shape derivatives of the incomplete gamma/beta functions (which
SciPy does not provide) are fourth-order (Richardson) central differences of
SciPy's functions, accurate to about 1e-9 relative, except where those fail and
the native kernel's series or expansions are used instead (gamma_dx_da for
x < 1; studentt_dt_ddf near t = 0, in the far tail and at large df; lgamma
below 1e-300, where SciPy's gammaln is inf). The Gamma sampler follows
the word layout documented in cpp/include/bayesgrad/distributions.hpp,
vectorised over the elements still pending in each rejection round, so that
draws equal the native ones up to libm rounding.
"""
from __future__ import annotations

import numpy as np
from scipy import special as sp

from .._codes import LocScaleFamily, from_int
from .._numerics import lgamma_corr
from ._densities import (bernoulli_log_prob, relaxed_bernoulli_log_prob, relaxed_categorical_log_prob,
                         studentt_log_prob)
from ._dist_checks import _batch, _check_out, _check_same, _f64
from .random import SUBSTREAM_BLOCKS, fill_normal, fill_uniform, substream_blocks, u01_f64

__all__ = [
    "lgamma", "digamma", "trigamma", "gammainc", "gammaincc", "betainc",
    "gamma_dx_da", "beta_dx_dab", "studentt_dt_ddf",
    "sample_locscale", "locscale_log_prob", "sample_gamma", "sample_beta", "sample_dirichlet",
    "gamma_log_prob", "studentt_log_prob", "relaxed_bernoulli_log_prob", "relaxed_categorical_log_prob",
    "bernoulli_log_prob",
    "sample_poisson",
    "categorical_from_uniform",
]

_TWO_PI = 2.0 * np.pi
_TWO_M32 = 2.0 ** -32  # one-word uniforms of the Gamma sampler: (w + 1/2) 2^-32
_HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)
_GAMMA_MAX_ITER = SUBSTREAM_BLOCKS // 2
_CHUNK = 1 << 18
_GAMMA_LARGE_SHAPE = 1e4  # distributions.cpp's kGammaLargeShape


# --------------------------------------------------------------- special
def lgamma(x, out):
    """log Gamma(x) into out (float64, x > 0)."""
    _check_out(out, dtype=np.float64)
    _check_same(out, ("x", x))
    x = _f64(x)
    with np.errstate(divide="ignore"):
        # SciPy's gammaln is inf for subnormal x; there lgamma(x) = -ln x - gamma x + O(x^2) = -ln x in float64
        out.reshape(-1)[:] = np.where(x < 1e-300, -np.log(x), sp.gammaln(x))


def digamma(x, out):
    """psi(x) into out (float64, x > 0)."""
    _check_out(out, dtype=np.float64)
    _check_same(out, ("x", x))
    out.reshape(-1)[:] = sp.digamma(_f64(x))


def trigamma(x, out):
    """psi'(x) into out (float64, x > 0)."""
    _check_out(out, dtype=np.float64)
    _check_same(out, ("x", x))
    out.reshape(-1)[:] = sp.polygamma(1, _f64(x))


def gammainc(a, x, out):
    """Regularised lower incomplete gamma P(a, x)."""
    _check_out(out, dtype=np.float64)
    _check_same(out, ("a", a), ("x", x))
    out.reshape(-1)[:] = sp.gammainc(_f64(a), _f64(x))


def gammaincc(a, x, out):
    """Regularised upper incomplete gamma Q(a, x)."""
    _check_out(out, dtype=np.float64)
    _check_same(out, ("a", a), ("x", x))
    out.reshape(-1)[:] = sp.gammaincc(_f64(a), _f64(x))


def betainc(a, b, x, out):
    """Regularised incomplete beta I_x(a, b)."""
    _check_out(out, dtype=np.float64)
    _check_same(out, ("a", a), ("b", b), ("x", x))
    out.reshape(-1)[:] = sp.betainc(_f64(a), _f64(b), _f64(x))


def _richardson(f, p):
    """d f / d p by fourth-order central differences (step scaled to p's own spread)."""
    h = np.minimum(1e-3 * p, 2e-3 * np.sqrt(p))
    d1 = (f(p + h) - f(p - h)) / (2 * h)
    d2 = (f(p + h / 2) - f(p - h / 2)) / h
    return (4 * d2 - d1) / 3


def _cdf_derivative(lower, upper, p):
    """dF/dp from whichever of F (lower) and 1 - F (upper) is smaller, for accuracy."""
    small = lower(p) < 0.5
    return np.where(small, _richardson(lower, p), -_richardson(upper, p))


def gamma_dx_da(a, x, out):
    """Implicit reparameterisation dX/da = -(dP/da)/p(x) of X ~ Gamma(a, 1)."""
    _check_out(out, dtype=np.float64)
    _check_same(out, ("a", a), ("x", x))
    a, x = _f64(a), _f64(x)
    with np.errstate(all="ignore"):
        dp = _cdf_derivative(lambda s: sp.gammainc(s, x), lambda s: sp.gammaincc(s, x), a)
        logpdf = (a - 1) * np.log(x) - x - sp.gammaln(a)
        r = -dp / np.exp(logpdf)
        # from a = 1e6 (natively from 1e8, where its series stop converging): Wilson-Hilferty x = a w^3,
        # w = 1 - 1 / (9 a) + z / (3 sqrt(a)), differentiated at fixed z, relative error 1.7e-10 at 1e6
        # falling as a^-3/2, where SciPy's differences lose more (3e-7 at 1e8, 3e-6 at 1e10)
        w = np.cbrt(x / a)
        z = (w - 1.0 + 1.0 / (9.0 * a)) * 3.0 * np.sqrt(a)
        wh = w ** 3 + 3.0 * a * w * w * (1.0 / (9.0 * a * a) - z / (6.0 * a * np.sqrt(a)))
        r = np.where(a >= 1e6, wh, r)
        small = (x > 0) & (x < 1.0)
        if small.any():
            r[small] = _gamma_dx_da_series(a[small], x[small])
    out.reshape(-1)[:] = np.where(x > 0, r, 0.0)


def _gamma_dx_da_series(a, x):
    """dX/da for x < 1 from P's power series, as the native kernel: P = x^a e^-x S / Gamma(a + 1) with
    S = sum_n x^n / ((a+1)...(a+n)), so dX/da = -(x / a) (S (ln x - psi(a + 1)) + dS/da). Differences of
    P lose everything once x^a underflows (P(1.5, 1e-300) = 0); x < 1 bounds term n by 1/n!."""
    term = np.ones_like(x)
    s = np.ones_like(x)
    ds = np.zeros_like(x)
    h = np.zeros_like(x)  # sum_k 1 / (a + k): d ln(term_n) / da = -h
    for n in range(1, 30):
        term = term * x / (a + n)
        h = h + 1.0 / (a + n)
        s += term
        ds -= term * h
    return -(x / a) * (s * (np.log(x) - sp.digamma(a + 1.0)) + ds)


def beta_dx_dab(a, b, x, out_a, out_b):
    """Implicit reparameterisation dX/da, dX/db = -(dI_x/da, dI_x/db)/p(x) of X ~ Beta(a, b)."""
    _check_out(out_a, "out_a", np.float64)
    _check_out(out_b, "out_b", np.float64)
    _check_same(out_a, ("a", a), ("b", b), ("x", x))
    _check_same(out_b, ("x", x))
    a, b, x = _f64(a), _f64(b), _f64(x)
    with np.errstate(all="ignore"):
        pdf = np.exp((a - 1) * np.log(x) + (b - 1) * np.log1p(-x) - sp.betaln(a, b))
        da = _cdf_derivative(lambda s: sp.betainc(s, b, x), lambda s: sp.betaincc(s, b, x), a)
        db = _cdf_derivative(lambda s: sp.betainc(a, s, x), lambda s: sp.betaincc(a, s, x), b)
    inside = (x > 0) & (x < 1)
    out_a.reshape(-1)[:] = np.where(inside, -da / pdf, 0.0)
    out_b.reshape(-1)[:] = np.where(inside, -db / pdf, 0.0)


def studentt_dt_ddf(df, t, out):
    """Implicit reparameterisation dT/d(df) = -(dF/d df)/p(t) of a standard Student t."""
    _check_out(out, dtype=np.float64)
    _check_same(out, ("df", df), ("t", t))
    df, t = _f64(df), _f64(t)
    with np.errstate(all="ignore"):
        # The smaller tail is F(-|t|); dT/d df is odd in t.
        dF = _richardson(lambda s: sp.stdtr(s, -np.abs(t)), df)
        logpdf = (sp.gammaln((df + 1) / 2) - sp.gammaln(df / 2) - 0.5 * np.log(df * np.pi)
                  - (df + 1) / 2 * np.log1p(t * t / df))
        r = np.sign(t) * dF / np.exp(logpdf)
        # the native kernel's two expansions (special.cpp): |t| small against sqrt(df), where differences
        # of F vanish, and the far tail, where they and the density underflow
        t2 = t * t
        near = t2 < 1e-17 * df
        far = t2 > 1e17 * df * (df + 1.0)
        big_df = (df >= 1e4) & (t2 <= 1e-4 * df)  # the native kernel's Cornish-Fisher form (special.cpp)
        if big_df.any():
            e = 1.0 / df
            w = t2 * e
            B = (t2 + 1.0 - w * (t2 - 1.0) / 3.0 + (w * w * t2 - w * w - w * e - 3.0 * e * e) / 6.0
                 - w * (t2 + 1.0) * (3.0 * w * w - 6.0 * w * e + 5.0 * e * e) / 30.0)
            r = np.where(big_df, -(0.25 * t * e) * (B * e), r)
            near &= ~big_df
        if near.any() or far.any():
            h = 0.5 * df
            r = np.where(near, -0.5 * t * (sp.digamma(h + 0.5) - sp.digamma(h) - 1.0 / df), r)
            c = 0.5 * (sp.digamma(h + 0.5) - sp.digamma(h + 1.0)) + 0.5 * np.log(df) + 0.5
            r = np.where(far, (t / df) * (c - np.log(np.abs(t))), r)
    out.reshape(-1)[:] = np.where(t != 0, r, 0.0)


# --------------------------------------------------------------- samplers
def sample_locscale(out, loc, scale, family, seed, stream):
    """Location-scale draws into out (n, B): loc + scale * base(family); loc, scale (B,)."""
    _check_out(out)
    family = from_int(LocScaleFamily, family, "family").name
    if np.size(loc) != np.size(scale):
        raise ValueError("loc and scale must have the same size")
    b = _batch(out.size, loc, "loc")
    dt = out.dtype
    m = np.ascontiguousarray(loc, dtype=dt).reshape(-1)
    s = np.ascontiguousarray(scale, dtype=dt).reshape(-1)
    flat = out.reshape(-1, b)
    if family in ("normal", "lognormal"):
        fill_normal(out, seed, stream, 0)
    else:
        fill_uniform(out, seed, stream, 0)
    e = flat.astype(np.float64)
    with np.errstate(divide="ignore"):
        if family == "normal" or family == "uniform":
            flat *= s
            flat += m
            return
        if family == "lognormal":
            # clamped into (0, inf) as the native kernel does (samplers.hpp locscale_transform)
            flat[:] = np.exp((m + s * flat).astype(np.float64))
            np.maximum(flat, np.finfo(dt).tiny, out=flat)
            return
        if family == "exponential":
            base = -np.log(e)
        elif family == "laplace":
            base = np.where(e > 0.5, -np.log(2.0 * (1.0 - e)), np.log(2.0 * e))  # (samplers.hpp: exact arguments)
        elif family == "gumbel":
            base = -np.log(-np.log(e))
        else:  # logistic
            base = np.log(e) - np.log(1.0 - e)
    flat[:] = m + s * base.astype(dt)


def locscale_log_prob(x, loc, scale, family, logp, d_loc, d_scale):
    """log p(x) and d/dloc, d/dscale elementwise for x (n, B); loc, scale (B,); d_loc and d_scale None
    together: log p only."""
    if (d_loc is None) != (d_scale is None):
        raise ValueError("d_loc and d_scale must both be given or both be None")
    for name, o in (("logp", logp), ("d_loc", d_loc), ("d_scale", d_scale)):
        if o is None:
            continue
        _check_out(o, name)
        _check_same(o, ("x", x))
    family = from_int(LocScaleFamily, family, "family").name
    if np.size(loc) != np.size(scale):
        raise ValueError("loc and scale must have the same size")
    b = _batch(np.size(x), loc, "loc")
    xi = np.asarray(x, dtype=np.float64).reshape(-1, b)
    m = _f64(loc)
    s = _f64(scale)
    ls = np.log(s)
    zero = np.zeros_like(xi)
    with np.errstate(all="ignore"):
        if family in ("normal", "lognormal"):
            y, jac, ok = xi, 0.0, np.ones(xi.shape, bool)
            if family == "lognormal":
                ok = xi > 0
                y = np.log(np.where(ok, xi, 1.0))
                jac = y
            z = (y - m) / s
            lp = -0.5 * z * z - ls - _HALF_LOG_2PI - jac
            gl, gs = z / s, (z * z - 1.0) / s
        elif family == "uniform":
            ok = (xi >= m) & (xi <= m + s)
            lp = zero - ls
            gl, gs = zero, zero - 1.0 / s
        elif family == "exponential":
            ok = xi >= m
            z = (xi - m) / s
            lp = -z - ls
            gl, gs = zero + 1.0 / s, (z - 1.0) / s
        elif family == "laplace":
            ok = np.ones(xi.shape, bool)
            z = (xi - m) / s
            a = np.abs(z)
            lp = -a - ls - np.log(2.0)
            gl, gs = np.sign(z) / s, (a - 1.0) / s
        elif family == "gumbel":
            ok = np.ones(xi.shape, bool)
            z = (xi - m) / s
            e = np.exp(-z)
            lp = -(z + e) - ls
            gl, gs = (1.0 - e) / s, (z - z * e - 1.0) / s
            # z below about -709: e = inf dominates (z + e and z - z e would be inf - inf)
            big = e == np.inf
            if big.any():
                lp[big], gl[big], gs[big] = -np.inf, -np.inf, np.inf
        else:  # logistic
            ok = np.ones(xi.shape, bool)
            z = (xi - m) / s
            a = np.abs(z)
            lp = -a - 2.0 * np.log1p(np.exp(-a)) - ls
            th = np.tanh(0.5 * z)
            gl, gs = th / s, (z * th - 1.0) / s
    logp.reshape(-1)[:] = np.where(ok, lp, -np.inf).reshape(-1)
    if d_loc is not None:
        d_loc.reshape(-1)[:] = np.where(ok, gl, 0.0).reshape(-1)
        d_scale.reshape(-1)[:] = np.where(ok, gs, 0.0).reshape(-1)


def _gamma_draw(alpha, elements, seed, stream, log_out):
    """Marsaglia-Tsang draws (or their logs) for gamma elements, float64 (distributions.hpp)."""
    alpha = np.asarray(alpha, dtype=np.float64)
    boost = alpha < 1.0
    d = np.where(boost, alpha + 1.0, alpha) - 1.0 / 3.0
    c = 1.0 / np.sqrt(9.0 * d)
    res = np.empty(alpha.shape, dtype=np.float64)
    pending = np.arange(alpha.size)
    with np.errstate(all="ignore"):
        for k in range(_GAMMA_MAX_ITER):
            if pending.size == 0:
                break
            el = elements[pending]
            w = substream_blocks(seed, stream, el, 2 * k)
            u1 = u01_f64(w[:, 0], w[:, 1])
            u2 = (w[:, 2].astype(np.float64) + 0.5) * _TWO_M32
            z = np.sqrt(-2.0 * np.log(u1)) * np.cos(_TWO_PI * u2)
            dp = d[pending]
            t = 1.0 + c[pending] * z
            v = t * t * t
            ua = (w[:, 3].astype(np.float64) + 0.5) * _TWO_M32
            z2 = z * z
            acc = (t > 0.0) & ((ua < 1.0 - 0.0331 * (z2 * z2)) | (np.log(ua) < 0.5 * z2 + dp * (1.0 - v + np.log(v))))
            idx = pending[acc]
            x = dp[acc] * v[acc]
            bst = boost[idx]
            # the boost uniform: block 2k+1, read by accepted draws of shapes below 1 only
            lb = np.zeros(idx.size)
            if bst.any():
                q = substream_blocks(seed, stream, el[acc][bst], 2 * k + 1)
                lb[bst] = np.log(u01_f64(q[:, 0], q[:, 1])) / alpha[idx[bst]]
            if log_out:
                val = np.log(x) + lb
            else:
                val = np.where(bst, x * np.exp(lb), x)
            res[idx] = val
            pending = pending[~acc]
    if pending.size:  # the documented cap (never reached in practice)
        res[pending] = np.log(d[pending]) if log_out else d[pending]
    return res


def _chunks(total, size=_CHUNK):
    for lo in range(0, total, size):
        yield lo, min(total, lo + size)


def sample_gamma(out, alpha, rate, seed, stream):
    """Gamma(alpha, rate) draws into out (n, B) from per-element sub-streams."""
    _check_out(out)
    if np.size(alpha) != np.size(rate):
        raise ValueError("alpha and rate must have the same size")
    b = _batch(out.size, alpha, "alpha")
    a = _f64(alpha)
    r = _f64(rate)
    flat = out.reshape(-1)
    for lo, hi in _chunks(flat.size):
        i = np.arange(lo, hi, dtype=np.uint64)
        j = np.arange(lo, hi) % b
        # clamped into (0, inf) as the native kernel does: below the smallest normal number of the dtype
        flat[lo:hi] = np.maximum(_gamma_draw(a[j], i, seed, stream, False) / r[j], np.finfo(out.dtype).tiny)


def sample_beta(out, a, b, seed, stream):
    """Beta(a, b) draws into out (n, B): gamma elements 2i and 2i+1, log space."""
    _check_out(out)
    if np.size(a) != np.size(b):
        raise ValueError("a and b must have the same size")
    nb = _batch(out.size, a, "a")
    a, b = _f64(a), _f64(b)
    flat = out.reshape(-1)
    for lo, hi in _chunks(flat.size):
        i = np.arange(lo, hi, dtype=np.uint64)
        j = np.arange(lo, hi) % nb
        la = _gamma_draw(a[j], 2 * i, seed, stream, True)
        lb = _gamma_draw(b[j], 2 * i + np.uint64(1), seed, stream, True)
        with np.errstate(over="ignore"):
            r = np.exp(np.minimum(la, lb) - np.maximum(la, lb))
        flat[lo:hi] = np.where(la >= lb, 1.0 / (1.0 + r), r / (1.0 + r))


def sample_dirichlet(out, alpha, seed, stream):
    """Dirichlet(alpha) draws into out (n, B, K); alpha (B, K)."""
    _check_out(out)
    alpha = np.asarray(alpha, dtype=np.float64)
    if alpha.ndim != 2:
        raise ValueError("alpha must have shape (B, K)")
    nb, k = alpha.shape
    _batch(out.size, alpha, "alpha")
    rows = out.size // k
    flat = out.reshape(rows, k)
    a = alpha.reshape(-1)
    per = max(1, _CHUNK // k)
    for lo, hi in _chunks(rows, per):
        el = np.arange(lo * k, hi * k, dtype=np.uint64)
        j = (np.arange(lo, hi)[:, None] % nb) * k + np.arange(k)
        lg = _gamma_draw(a[j.reshape(-1)], el, seed, stream, True).reshape(hi - lo, k)
        e = np.exp(lg - lg.max(axis=1, keepdims=True))
        flat[lo:hi] = e / e.sum(axis=1, keepdims=True)


def gamma_log_prob(x, alpha, rate, logp, d_alpha, d_rate):
    """Gamma(alpha, rate) log p(x) and d/dalpha, d/drate for x (n, B)."""
    for name, o in (("logp", logp), ("d_alpha", d_alpha), ("d_rate", d_rate)):
        _check_out(o, name)
        _check_same(o, ("x", x))
    if np.size(alpha) != np.size(rate):
        raise ValueError("alpha and rate must have the same size")
    b = _batch(np.size(x), alpha, "alpha")
    xi = np.asarray(x, dtype=np.float64).reshape(-1, b)
    a, r = _f64(alpha), _f64(rate)
    pos = xi > 0
    with np.errstate(all="ignore"):
        lr = np.log(r)
        lx = np.log(np.where(pos, xi, 1.0))
        lp = a * lr + (a - 1.0) * lx - r * xi - sp.gammaln(a)
        large = a >= _GAMMA_LARGE_SHAPE
        if large.any():
            # the native kernel's Stirling form: a ln r + (a-1) ln x and lgamma(a) cancel to O(ln a)
            y = r * xi
            use = large & (y >= np.finfo(np.float64).tiny) & (y < np.inf)
            u = y / a - 1.0
            l = np.where((u > -0.5) & (u < 1.0), np.log1p(u), np.log(y) - np.log(a))
            rem = 0.5 * np.log(a) - _HALF_LOG_2PI - lgamma_corr(np.maximum(a, 8.0))
            lp = np.where(use, a * (l - u) + rem - lx, lp)
        edge = np.where((xi == 0) & (a == 1.0), lr, np.where((xi == 0) & (a < 1.0), np.inf, -np.inf))
        logp.reshape(-1)[:] = np.where(pos, lp, edge).reshape(-1)
        d_alpha.reshape(-1)[:] = np.where(pos, lr + lx - sp.digamma(a), 0.0).reshape(-1)
        d_rate.reshape(-1)[:] = np.where(pos, a / r - xi, 0.0).reshape(-1)


# --------------------------------------------------------------- Poisson
# distributions.hpp documents the layout; samplers.hpp's poisson_draw is the scalar code
# this vectorises (same words, same float64 operations in the same order).
_POISSON_PTRS_MIN = 10.0
_POISSON_MAX_RATE = 1e10
_POISSON_MAX_ITER = SUBSTREAM_BLOCKS


def _poisson_inversion(lam, elements, seed, stream):
    """Sequential search from 0 for rates < 10: all elements step together while u > F."""
    w = substream_blocks(seed, stream, elements, 0)
    u = u01_f64(w[:, 0], w[:, 1])
    p = np.exp(-lam)
    F = p.copy()
    x = np.zeros_like(lam)
    act = np.nonzero(u > F)[0]
    while act.size:
        xa = x[act] + 1.0
        x[act] = xa
        pa = p[act] * (lam[act] / xa)
        p[act] = pa
        Fo = F[act]
        Fn = Fo + pa
        F[act] = Fn
        act = act[(Fn != Fo) & (u[act] > Fn)]
    return x


def _poisson_ptrs(lam, elements, seed, stream):
    """Hoermann's PTRS for rates >= 10, one block per round, over the pending elements."""
    loglam = np.log(lam)
    b = 0.931 + 2.53 * np.sqrt(lam)
    a = -0.059 + 0.02483 * b
    lia = np.log(1.1239 + 1.1328 / (b - 3.4))
    vr = 0.9277 - 3.6224 / (b - 2.0)
    res = np.empty_like(lam)
    pending = np.arange(lam.size)
    for j in range(_POISSON_MAX_ITER):
        if pending.size == 0:
            break
        w = substream_blocks(seed, stream, elements[pending], j)
        U = u01_f64(w[:, 0], w[:, 1]) - 0.5
        V = u01_f64(w[:, 2], w[:, 3])
        us = 0.5 - np.abs(U)
        ap, bp, lp = a[pending], b[pending], lam[pending]
        k = np.floor((2.0 * ap / us + bp) * U + lp + 0.43)
        acc = (us >= 0.07) & (V <= vr[pending])
        test = np.nonzero(~acc & (k >= 0.0) & ~((us < 0.013) & (V > us)))[0]
        if test.size:
            pt = pending[test]
            ut, kt = us[test], k[test]
            lhs = np.log(V[test]) + lia[pt] - np.log(ap[test] / (ut * ut) + bp[test])
            acc[test] = lhs <= -lam[pt] + kt * loglam[pt] - sp.gammaln(kt + 1.0)
        res[pending[acc]] = k[acc]
        pending = pending[~acc]
    res[pending] = np.floor(lam[pending])  # the documented cap (never reached in practice)
    return res


def sample_poisson(out, rate, seed, stream):
    """Poisson(rate) draws into out (n, B) from per-element sub-streams: inversion below rate 10, PTRS above."""
    _check_out(out)
    nb = _batch(out.size, rate, "rate")
    r = _f64(rate)
    bad = ~((r >= 0.0) & (r <= _POISSON_MAX_RATE))
    if bad.any():
        j = int(np.argmax(bad))
        raise ValueError(f"rate must be finite and in [0, 1e10]; index {j} is not")
    flat = out.reshape(-1)
    for lo, hi in _chunks(flat.size):
        i = np.arange(lo, hi, dtype=np.uint64)
        lam = r[np.arange(lo, hi) % nb]
        x = np.empty(hi - lo)
        small = lam < _POISSON_PTRS_MIN
        if small.all():
            x = _poisson_inversion(lam, i, seed, stream)
        elif not small.any():
            x = _poisson_ptrs(lam, i, seed, stream)
        else:
            x[small] = _poisson_inversion(lam[small], i[small], seed, stream)
            x[~small] = _poisson_ptrs(lam[~small], i[~small], seed, stream)
        flat[lo:hi] = x


def categorical_from_uniform(u, cdf, out):
    """Categorical draws by inversion: out[i] = #{cdf row (i % B) entries < u[i]} (int64) for uniforms u (n, B)
    and cdf (B, K - 1), the probabilities' partial sums (cpp/include/bayesgrad/distributions.hpp)."""
    cdf = np.asarray(cdf)
    if cdf.ndim != 2:
        raise ValueError("cdf must be a (B, K - 1) array")
    b = cdf.shape[0]
    if b < 1:
        raise ValueError("cdf must have at least one row")
    u = np.asarray(u, dtype=cdf.dtype)
    if out.size != u.size:
        raise ValueError("out must have the size of u")
    if u.size % b:
        raise ValueError("u's size must be a multiple of cdf's rows")
    if out.dtype != np.int64:
        raise TypeError("out must be an int64 array")
    flat = out.reshape(-1, b)
    uu = u.reshape(-1, b)
    flat[...] = 0
    for q in range(cdf.shape[1]):  # one class at a time: no (n, B, K - 1) temporary
        flat += cdf[:, q] < uu
