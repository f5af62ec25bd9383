"""NumPy twins of the log-density kernels with their own source files: studentt_log_prob (studentt.cpp),
relaxed_bernoulli_log_prob (relaxed_bernoulli.cpp), relaxed_categorical_log_prob (relaxed_categorical.cpp) and
bernoulli_log_prob (bernoulli.cpp); part of the twin's distributions module (same names, signatures and outputs as
the native core)."""
from __future__ import annotations

import numpy as np

from .._numerics import log1p_minus_series, sigmoid
from ._dist_checks import _batch, _check_out, _check_same, _f64


# --------------------------------------------------------------- Student t (studentt.cpp)
def _check_density_outs(x, logp, grads, k, what):
    """The outputs of a log-density kernel: logp x's size, grads (k, *x's shape) (``what`` its rows), each
    unless None."""
    if logp is not None:
        _check_out(logp, "logp")
        _check_same(logp, ("x", x))
    if grads is not None:
        _check_out(grads, "grads")
        if grads.size != k * np.size(x):
            raise ValueError(f"grads must have {k} times the size of x ({what})")


def _log1p_z2(z, df):
    """log(1 + z^2 / df), float64, also where z^2 or z^2 / df overflows (|z| above ~1e154, or a tiny df; log p
    still finite): there as 2 ln|z| - ln df + log1p(df / z^2) (studentt.cpp takes that form from |z| = 1e150)."""
    with np.errstate(over="ignore"):
        out = np.multiply(z, z)
        out /= df
        np.log1p(out, out=out)
    far = out == np.inf  # (z infinite too: the form gives inf)
    if far.any():
        zb, db = z[far], np.broadcast_to(df, z.shape)[far]
        out[far] = 2.0 * np.log(np.abs(zb)) - np.log(db) + np.log1p((np.sqrt(db) / zb) ** 2)
    return out


def _t_df_terms(w, lw, r, df):
    """-log1p(w) + (df + 1) r / df with w = z^2 / df, lw = log1p(w), r = w / (1 + w): below w = 1 as
    -(log1p(w) - w) - w^2 / (1 + w) + r / df, each small term whole (they cancel to O(1 / df^2)).
    Overwrites w (in place where it can: each fresh array of x's size costs its page faults)."""
    with np.errstate(over="ignore", invalid="ignore"):
        near = np.subtract(lw, w)  # log1p(w) - w ...
        small = w < 1e-2  # (w >= 0)
        if small.any():
            near[small] = log1p_minus_series(w[small])  # ... by its series where it cancels
        np.negative(near, out=near)
        far = w >= 1.0  # (NaN: neither form is used)
        t = np.add(1.0, w)
        np.divide(np.square(w, out=w), t, out=t)
        near -= t  # -(log1p(w) - w) - w^2 / (1 + w)
        np.subtract(r, lw, out=t)  # r - log1p(w)
        np.copyto(near, t, where=far)
        near += np.divide(r, df, out=t)
    return near


def studentt_log_prob(x, df, loc, scale, c, psi, logp, grads=None):
    """Student t(df, loc, scale) log p(x) for x (n, B) into logp and, with grads (3, n, B) (and psi), its
    derivatives in df, loc and scale; c = lgamma((df + 1) / 2) - lgamma(df / 2) - ln(pi df) / 2 - ln scale and
    psi = psi((df + 1) / 2) - psi(df / 2) - 1 / df per coordinate (float64, B)."""
    if (grads is None) != (psi is None):
        raise ValueError("psi and grads go together (both arrays or both None)")
    for name, a in (("loc", loc), ("scale", scale), ("c", c)) + ((("psi", psi),) if grads is not None else ()):
        if np.size(a) != np.size(df):
            raise ValueError(f"df and {name} must have the same size, got {np.size(df)} and {np.size(a)}")
    b = _batch(np.size(x), df, "df")
    _check_density_outs(x, logp, grads, 3, "d/d df, d/d loc, d/d scale")
    xi = np.asarray(x, dtype=np.float64).reshape(-1, b)
    f, m, s = _f64(df), _f64(loc), _f64(scale)
    with np.errstate(all="ignore"):
        z = np.subtract(xi, m)
        z /= s
        lw = _log1p_z2(z, f)
        t = np.multiply(lw, -0.5 * (f + 1.0))
        t += _f64(c)  # (-inf where x is: lw = inf)
        logp.reshape(-1, b)[...] = t
        if grads is None:
            return
        inf = np.isinf(z)  # the density vanishes there: gradients 0
        # r = z^2 / (df + z^2) and z / (df + z^2) in forms without z^2 (in place, into the outputs)
        g = grads.reshape(3, -1, b)
        r = np.divide(np.sqrt(f), z)
        np.square(r, out=r)
        r += 1.0
        np.divide(1.0, r, out=r)
        zq = np.divide(f, z)
        zq += z
        np.divide(f + 1.0, zq, out=zq)
        np.divide(zq, s, out=g[1], casting="unsafe")
        d_df = _t_df_terms(np.square(z, out=z) / f, lw, r, f)
        d_df += _f64(psi)
        d_df *= 0.5
        g[0] = d_df
        r *= f + 1.0
        r -= 1.0
        np.divide(r, s, out=g[2], casting="unsafe")
        if inf.any():
            g[:, inf] = 0.0


# --------------------------------------------------------------- RelaxedBernoulli (relaxed_bernoulli.cpp)
def relaxed_bernoulli_log_prob(x, temperature, logits, logp, grads=None):
    """RelaxedBernoulli(temperature, logits) log p(x) for x (n, B) into logp (-inf outside (0, 1)) and its
    derivatives in temperature and logits into grads (2, n, B), each unless None (not both)."""
    if logp is None and grads is None:
        raise ValueError("give logp, grads or both")
    if np.size(temperature) != np.size(logits):
        raise ValueError(f"temperature and logits must have the same size, got {np.size(temperature)} and "
                         f"{np.size(logits)}")
    b = _batch(np.size(x), temperature, "temperature")
    _check_density_outs(x, logp, grads, 2, "d/d temperature, d/d logits")
    xi = np.asarray(x, dtype=np.float64).reshape(-1, b)
    t, lg = _f64(temperature), _f64(logits)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        lx, l1x = np.log(xi), np.log1p(-xi)
        if logp is not None:
            lp = np.log(t) + lg - (t + 1) * (lx + l1x) - 2 * np.logaddexp(lg - t * lx, -t * l1x)
            if xi.size and not (xi.min() > 0 and xi.max() < 1):
                lp[~((xi > 0) & (xi < 1))] = -np.inf
            logp.reshape(-1, b)[...] = lp
        if grads is None:
            return
        # with D = log(1 - x) - log x and w = sigmoid(logits + t D): d/d logits = 1 - 2 w and
        # d/dt = 1/t - (log x + log(1 - x)) + 2 (w log x + (1 - w) log(1 - x)) = 1/t + D (1 - 2 w)
        d = np.subtract(l1x, lx, out=l1x)
        dl = sigmoid(d * t + lg)
        dl *= -2
        dl += 1
        g = grads.reshape(2, -1, b)
        g[1] = dl
        d *= dl
        d += 1.0 / t
        g[0] = d
        if xi.size and not (xi.min() >= 0 and xi.max() <= 1):
            g[:, (xi < 0) | (xi > 1)] = 0.0  # beyond [0, 1] the density vanishes (as Gamma's below 0)


# --------------------------------------------------------------- RelaxedCategorical (relaxed_categorical.cpp)
def relaxed_categorical_log_prob(x, temperature, logits, c, logp, d_t=None, d_logits=None):
    """RelaxedCategorical(temperature, logits) log p(x) for x (n, B, K) into logp (n, B): c - (t + 1) sum_k ln x_k
    - K (m + ln S), S = sum_k exp(y_k - m), with y = logits - t ln x and m its row maximum, -inf where a value of
    the row is not positive and finite; temperature (B,), logits (B, K), c = lgamma(K) + (K - 1) ln t +
    sum_k logits_k (float64, B). With d_t (n, B) and d_logits (n, B, K) also the gradients (K - 1) / t -
    sum_k ln x_k + K sum_k s_k ln x_k and 1 - K s, s = exp(y - m) / S (NaN where the density vanishes)."""
    if (d_t is None) != (d_logits is None):
        raise ValueError("d_t and d_logits go together (both arrays or both None)")
    b = np.size(temperature)
    if b == 0 or np.size(logits) % b or np.size(logits) // b < 1:
        raise ValueError("logits must have K times the size of temperature (K classes per coordinate)")
    if np.size(c) != b:
        raise ValueError(f"temperature and c must have the same size, got {b} and {np.size(c)}")
    _batch(np.size(x), logits, "logits")
    k = np.size(logits) // b
    _check_out(logp, "logp")
    if logp.size * k != np.size(x):
        raise ValueError("logp must have the size of x over K (one value per row of K classes)")
    if d_t is not None:
        _check_out(d_t, "d_t")
        _check_out(d_logits, "d_logits")
        if d_t.size != logp.size:
            raise ValueError(f"logp and d_t must have the same size, got {logp.size} and {d_t.size}")
        if d_logits.size != np.size(x):
            raise ValueError(f"x and d_logits must have the same size, got {np.size(x)} and {d_logits.size}")
    xi = np.asarray(x, dtype=np.float64).reshape(-1, b, k)
    t, lg = _f64(temperature)[:, None], _f64(logits).reshape(b, k)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inside = ((xi > 0) & (xi < np.inf)).all(-1)
        lx = np.log(xi if inside.all() else np.where(inside[..., None], xi, 1.0))
        y = lg - t * lx
        m = y.max(-1)
        y -= m[..., None]
        e = np.exp(y, out=y)
        s = e.sum(-1)
        slx = lx.sum(-1)
        lp = _f64(c) - (t[:, 0] + 1.0) * slx - k * (m + np.log(s))
        if d_t is not None:
            e /= s[..., None]  # the softmax
            gt = (k - 1) / t[:, 0] - slx + k * (e * lx).sum(-1)
            gl = 1.0 - k * e
    if not inside.all():
        lp[~inside] = -np.inf
        if d_t is not None:
            gt[~inside] = np.nan
            gl[~inside] = np.nan
    logp.reshape(-1, b)[...] = lp
    if d_t is not None:
        d_t.reshape(-1, b)[...] = gt
        d_logits.reshape(-1, b, k)[...] = gl


# --------------------------------------------------------------- Bernoulli (bernoulli.cpp)
def bernoulli_log_prob(x, lp1, lp0, out):
    """Bernoulli log probability x lp1 + (1 - x) lp0 for x (n, B) in [0, 1] into out, lp1 = ln p and
    lp0 = ln(1 - p) (B,): exactly lp1 at x = 1 and lp0 at x = 0."""
    if np.size(lp1) != np.size(lp0):
        raise ValueError(f"lp1 and lp0 must have the same size, got {np.size(lp1)} and {np.size(lp0)}")
    b = _batch(np.size(x), lp1, "lp1")
    _check_out(out, "out")
    _check_same(out, ("x", x))
    dt = out.dtype
    xi = np.asarray(x, dtype=dt).reshape(-1, b)
    a, c = np.asarray(lp1, dtype=dt).reshape(-1), np.asarray(lp0, dtype=dt).reshape(-1)
    o = out.reshape(-1, b)
    with np.errstate(invalid="ignore"):
        if np.isfinite(a).all() and np.isfinite(c).all():  # x lp1 + (1 - x) lp0 in place: exact at 0 and 1
            np.multiply(xi, a, out=o)
            t = np.subtract(1, xi, dtype=dt)
            t *= c
            o += t
        else:  # p = 0 or 1 somewhere: the ends chosen, not multiplied (0 * -inf)
            o[...] = np.where(xi == 1, a, np.where(xi == 0, c, xi * a + (1 - xi) * c))
