"""Exact sums over pools and data held as Dask (or NumPy) arrays: ``moments``,
``expectation``, ``log_likelihood`` and ``elbo`` of ``bayesgrad.pools``.

Each block returns its sums of x and x^2 as exact binary fractions (integers per
exponent; squares split exactly with Dekker's product), merged in exact integer
arithmetic and rounded once, so the results are correctly rounded and
bit-identical for any chunking. Imported by ``bayesgrad.pools`` (after its own
definitions) and re-exported there; import it through ``bayesgrad.pools``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from . import _checks as C
from . import random as _random

def _p():
    """bayesgrad.pools, imported at call time: pools imports this module at its end, so a
    module-level import of pools here made ``import bayesgrad._pool_sums`` alone -- what a
    fresh Dask worker does to unpickle a block's function -- fail on the half-initialised
    cycle, and the computation hung while the workers retried."""
    from . import pools

    return pools


# A float64 x = m 2^e (frexp: 0.5 <= |m| < 1) is the integer M = m 2^53 times 2^(e-53).
# M splits into hi 2^27 + lo with |hi| <= 2^26, 0 <= lo < 2^27; summed per exponent over
# at most 2^25 values by bincount, every partial sum is an integer below 2^53, hence exact
# in float64. The per-exponent sums become Python integers, so blocks merge exactly.
_ROWS = 2 ** 25


def _exact_sums(x):
    """Exact column sums of finite float64 x (n, K): (E, [int per column]) with sum_k = int_k 2^E."""
    n, K = x.shape
    acc = [0] * K
    E = None
    for r0 in range(0, max(n, 1), _ROWS):
        xb = x[r0:r0 + _ROWS]
        if xb.size == 0:
            break
        m, e = np.frexp(xb)
        M = (m * 2.0 ** 53).astype(np.int64)
        hi, lo = M >> 27, M & ((1 << 27) - 1)
        emin = int(e.min())
        nb = int(e.max()) - emin + 1
        code = ((e - emin) * K + np.arange(K)).ravel()
        H = np.bincount(code, weights=hi.ravel().astype(np.float64), minlength=nb * K).reshape(nb, K)
        L = np.bincount(code, weights=lo.ravel().astype(np.float64), minlength=nb * K).reshape(nb, K)
        base = emin - 53
        for j in range(K):
            t = 0
            for b in range(nb - 1, -1, -1):  # Horner in powers of two, highest exponent first
                t = (t << 1) + (int(H[b, j]) << 27) + int(L[b, j])
            acc, E = _add_scaled(acc, E, j, t, base, K)
    return (0 if E is None else E), acc


def _add_scaled(acc, E, j, t, base, K):
    """acc[j] 2^E += t 2^base, keeping one common exponent E (the smaller one)."""
    if E is None:
        E = base
    if base < E:
        acc = [a << (E - base) for a in acc]
        E = base
    acc = list(acc)
    acc[j] += t << (base - E)
    return acc, E


def _two_square(x):
    """x^2 = p + err exactly (Dekker's product; no FMA in NumPy), for finite |x| < 2^500."""
    c = 134217729.0 * x  # 2^27 + 1: splits x into two 26-bit halves
    xh = c - (c - x)
    xl = x - xh
    p = x * x
    err = ((xh * xh - p) + 2 * xh * xl) + xl * xl
    return p, err


def _big_squares(s2, x, big):
    """s2 (E, [int per column]) plus the exact squares of the entries of x where ``big``: a
    value M 2^(e-53) (M an integer, |M| < 2^53) squares to M^2 2^(2e-106) in Python integers,
    where Dekker's split of a value >= 2^500 would overflow (few such values: a Python loop)."""
    E, acc = s2
    K = x.shape[1]
    for j in np.flatnonzero(big.any(axis=0)):
        terms = []
        for v in x[big[:, j], j].tolist():
            m, e = math.frexp(v)
            terms.append((int(m * 2.0 ** 53) ** 2, 2 * (e - 53)))
        base = min(b for _, b in terms)
        acc, E = _add_scaled(acc, E, int(j), sum(t << (b - base) for t, b in terms), base, K)
    return E, acc


def _block_moments(x):
    """Exact (n, sum x, sum x^2) of a block x (n,) or (n, K), as integers times powers of
    two; x^2's rounding error is kept (Dekker), so sum x^2 is exact too, and squares of
    values >= 2^500 (which Dekker's split would overflow) are formed in integers. Columns
    holding a non-finite value carry the IEEE sum of their non-finite values (``bad``),
    which decides their total (inf / nan)."""
    x = np.asarray(x, dtype=np.float64)
    ndim = x.ndim
    x = x.reshape(x.shape[0], math.prod(x.shape[1:]))  # (-1 is ambiguous for a block of 0 rows)
    bad = None
    fin = np.isfinite(x)
    if not fin.all():
        with np.errstate(invalid="ignore"):
            bad = (~fin).sum(axis=0), np.sum(np.where(fin, 0.0, x), axis=0)
        x = np.where(fin, x, 0.0)
    big = np.abs(x) >= 2.0 ** 500
    p, err = _two_square(np.where(big, 0.0, x) if big.any() else x)
    s1 = _exact_sums(x)
    s2 = _exact_sums(np.concatenate([p, err], axis=1))
    K = x.shape[1]
    s2 = (s2[0], [s2[1][j] + s2[1][K + j] for j in range(K)])
    if big.any():
        s2 = _big_squares(s2, x, big)
    return {"n": x.shape[0], "ndim": ndim, "s1": s1, "s2": s2, "bad": bad}


def _merge_moments(parts):
    parts = list(parts)
    K = len(parts[0]["s1"][1])
    # moments' blocks agree by construction; expectation's f may not (a shape that depends on the block)
    for p in parts[1:]:
        if len(p["s1"][1]) != K or p["ndim"] != parts[0]["ndim"]:
            shapes = sorted({("(n,)" if q["ndim"] == 1 else f"(n, {len(q['s1'][1])})") for q in parts})
            raise ValueError(f"f must return values of one shape, (n,) or (n, K) with the same K, for every block; "
                             f"got {' and '.join(shapes)}")

    def total(key):
        E = min(p[key][0] for p in parts)
        return E, [sum(p[key][1][j] << (p[key][0] - E) for p in parts) for j in range(K)]

    bads = [p["bad"] for p in parts if p["bad"] is not None]
    bad = None
    if bads:
        with np.errstate(invalid="ignore"):  # inf + -inf: nan, the total's value
            bad = tuple(np.sum([b[i] for b in bads], axis=0) for i in range(2))
    return {"n": sum(p["n"] for p in parts), "ndim": parts[0]["ndim"], "s1": total("s1"), "s2": total("s2"),
            "bad": bad}


@dataclass
class Moments:
    """Sample moments over the rows of an array, each correctly rounded from exact sums.

    ``n`` rows; ``total`` (the sum), ``mean``, ``var`` (unbiased, n-1) and
    ``sem`` = sqrt(var / n) per column (K,), or scalars for a 1-D input.
    """

    n: int
    total: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    sem: np.ndarray


def _rounded(q):
    """The float nearest the Fraction q, +-inf beyond the float range (float() raises there)."""
    try:
        return float(q)
    except OverflowError:
        return math.inf if q > 0 else -math.inf


def _moments_from(m):
    n = m["n"]
    E1, a1 = m["s1"]
    E2, a2 = m["s2"]
    K = len(a1)
    tot, mean, var = np.empty(K), np.full(K, np.nan), np.full(K, np.nan)
    for j in range(K):
        s1 = Fraction(a1[j]) * Fraction(2) ** E1
        s2 = Fraction(a2[j]) * Fraction(2) ** E2
        tot[j] = _rounded(s1)
        if n:
            mean[j] = _rounded(s1 / n)
        if n > 1:
            var[j] = _rounded((s2 - s1 * s1 / n) / (n - 1))
    if m["bad"] is not None:
        # an infinity outweighs any finite sum (nan for both signs or a nan); the variance is undefined
        cnt, b1 = m["bad"]
        for j in np.flatnonzero(cnt):
            tot[j] = mean[j] = b1[j]
            var[j] = np.nan
    with np.errstate(invalid="ignore"):
        sem = np.sqrt(var / n) if n else np.full(K, np.nan)
    if m["ndim"] == 1:
        return Moments(n, tot[0], mean[0], var[0], sem[0])
    return Moments(n, tot, mean, var, sem)


def _reduce(parts, split_every, fn):
    """Tree of ``fn`` over delayed ``parts``."""
    import dask

    f = dask.delayed(fn, pure=True)
    while len(parts) > 1:
        parts = [f(parts[i:i + split_every]) for i in range(0, len(parts), split_every)]
    return parts[0]


def moments(x, *, split_every=8, scheduler=None) -> Moments:
    """Exact moments over axis 0 of ``x`` (n,) or (n, K): NumPy, or a Dask array chunked
    along rows (per-block exact sums merged exactly; see the module docstring). The
    result is the correctly rounded value of the exact sum, mean and unbiased variance
    of the values (squares below 2^-969 lose their rounding error to underflow)."""
    split_every = C.integer(split_every, "split_every", 2)  # 1 would never shrink the tree
    if not _p().is_dask_array(x):
        a = C.as_array(x, "x", finite=False, min_ndim=1, allow_empty=True)
        return _moments_from(_block_moments(a))
    dask, _ = _p().require_dask("moments of a Dask array")
    if x.ndim > 2:
        x = x.reshape(x.shape[0], -1)
    if x.ndim == 2:
        x = x.rechunk({1: -1})
    parts = [dask.delayed(_block_moments, pure=True)(b) for b in x.to_delayed().reshape(-1)]
    kw = {} if scheduler is None else {"scheduler": scheduler}
    (m,) = dask.compute(_reduce(parts, split_every, _merge_moments), **kw)
    return _moments_from(m)


def _expect_block(xb, f, start, n_noise, seed, stream):
    # a Dask block as the NumPy path sees its data: finite, float32 or float64
    xb = C.as_array(xb, "data", min_ndim=1)
    eps = None
    if n_noise:
        eps = _random.normal((xb.shape[0], n_noise), seed=seed, stream=stream, offset=start * n_noise)
    v = np.asarray(f(xb, eps), dtype=np.float64)
    if v.ndim not in (1, 2) or v.shape[0] != xb.shape[0]:
        raise ValueError(f"f must return (n,) or (n, K) for a block of n = {xb.shape[0]} rows, got {v.shape}")
    return _block_moments(v)


def expectation(f, data, *, n_noise=0, seed=0, stream=0, split_every=8, scheduler=None) -> Moments:
    """Monte Carlo expectation of ``f`` over the rows of ``data``: the exact moments of
    ``f(x_block, eps_block)`` (one value (n,) or row (n, K) per data row).

    ``eps_block`` (n, n_noise) are float64 standard normals from row i's own Philox
    words (elements ``i n_noise`` .. ``(i + 1) n_noise - 1`` of stream ``stream``), None
    when ``n_noise`` is 0, so the estimate does not depend on the chunking. ``data`` is
    NumPy (one block) or a Dask array chunked along rows; ``mean`` is the estimate and
    ``sem`` its standard error.
    """
    n_noise = C.integer(n_noise, "n_noise", 0)
    split_every = C.integer(split_every, "split_every", 2)
    seed = _random.resolve_seed(seed)
    stream = _random.check_stream(stream)
    if not callable(f):
        raise TypeError("f must be a callable f(x_block, eps_block) -> (n,) or (n, K)")
    if not _p().is_dask_array(data):
        a = C.as_array(data, "data", min_ndim=1)
        return _moments_from(_expect_block(a, f, 0, n_noise, seed, stream))
    dask, _ = _p().require_dask("an expectation over a Dask array")
    if data.ndim < 1 or _p().known_rows(data, "data") == 0:
        raise ValueError(f"data must have at least one row, got shape {data.shape}")
    d = data.rechunk({i: -1 for i in range(1, data.ndim)}) if data.ndim > 1 else data
    starts = np.concatenate([[0], np.cumsum(d.chunks[0])])
    f_d = dask.delayed(f, pure=True, traverse=False)
    blk = dask.delayed(_expect_block, pure=True)
    parts = [blk(b, f_d, int(starts[i]), n_noise, seed, stream) for i, b in enumerate(d.to_delayed().reshape(-1))
             if starts[i + 1] > starts[i]]  # (an empty chunk: f would be called on no rows, refused as data)
    kw = {} if scheduler is None else {"scheduler": scheduler}
    (m,) = dask.compute(_reduce(parts, split_every, _merge_moments), **kw)
    return _moments_from(m)


def _loglik_block(xb, yb, net, start):
    # rows = points, columns = samples; start: the block's first row (the forward's tiles align to it)
    return _block_moments(net.point_log_likelihood(xb, yb, start).T)


def log_likelihood(model, X, y, *, n_samples=64, seed=0, stream=0, split_every=8, scheduler=None):
    """Log-likelihood sums sum_n log p(y_n | x_n, theta_s) (S,) in nats of the S sampled
    networks (``networks(model, n_samples, seed, stream)``) over data X (N, D), y (N,) or
    (N, Dy): NumPy, or Dask arrays chunked along rows; exact per-block sums merged exactly."""
    net = _p().networks(model, n_samples, seed, stream)
    split_every = C.integer(split_every, "split_every", 2)
    if not _p().is_dask_array(X):
        Xa = C.as_array(X, "X", ndim=2)
        m = _loglik_block(Xa, np.asarray(y), net, 0)
        return _moments_from(m).total
    dask, da = _p().require_dask("a log-likelihood over a Dask array")
    if X.ndim != 2:
        raise ValueError(f"X must have 2 dimensions (N, D), got shape {X.shape}")
    X = X.rechunk({1: -1})
    y = y if _p().is_dask_array(y) else da.from_array(np.asarray(y))
    if _p().known_rows(X, "X") == 0:  # as the NumPy path refuses it (no block would be left to sum)
        raise ValueError(f"X must not be empty, got shape {X.shape}")
    if y.ndim < 1 or _p().known_rows(y, "y") != _p().known_rows(X, "X"):
        raise ValueError(f"y must have one target per row of X ({X.shape[0]}), got shape {y.shape}")
    y = y.rechunk((X.chunks[0],) + tuple((s,) for s in y.shape[1:]))
    net_d = dask.delayed(net, pure=True, traverse=False)
    blk = dask.delayed(_loglik_block, pure=True)
    starts = np.concatenate([[0], np.cumsum(X.chunks[0])])
    parts = [blk(xb, yb, net_d, int(starts[i]))
             for i, (xb, yb) in enumerate(zip(X.to_delayed().reshape(-1), y.to_delayed().reshape(-1)))
             if starts[i + 1] > starts[i]]  # (an empty chunk's targets were refused as empty)
    kw = {} if scheduler is None else {"scheduler": scheduler}
    (m,) = dask.compute(_reduce(parts, split_every, _merge_moments), **kw)
    return _moments_from(m).total


def _mfvi_kl(q, thetas):
    """KL(q || prior) in nats: closed form (gaussian prior) or the MC estimate over ``thetas``
    (S, P) of log q - log p (scale-mixture prior), as MFVI's objective defines it."""
    mu = q.mu_.astype(np.float64)
    sig = q.sigma_.astype(np.float64)
    if q.prior == "gaussian":
        s2 = q.prior_sigma ** 2
        return float(np.sum(np.log(q.prior_sigma / sig) + (sig ** 2 + mu ** 2) / (2 * s2) - 0.5))
    from scipy.special import logsumexp

    pi, s1, s2 = q.mixture
    t = thetas.astype(np.float64)
    logq = np.sum(-0.5 * ((t - mu) / sig) ** 2 - np.log(sig), axis=1)
    comp = np.stack([math.log(pi) - 0.5 * (t / s1) ** 2 - math.log(s1),
                     math.log1p(-pi) - 0.5 * (t / s2) ** 2 - math.log(s2)])
    logp = np.sum(logsumexp(comp, axis=0), axis=1)
    return float(np.mean(logq - logp))


def elbo(q, X, y, *, n_samples=64, seed=0, stream=0, split_every=8, scheduler=None):
    """ELBO of an MFVI posterior ``q`` on data too large for one machine.

    Parameters
    ----------
    q : bg.vi.MFVI, fitted
    X : (N, D) NumPy array, or Dask array chunked along rows
    y : (N,) or (N, Dy) array, NumPy or Dask (re-chunked like ``X``)
    n_samples : int
        S, the weight samples of ``q``.
    seed, stream : int
        The Philox key of the weight samples (``networks``).
    split_every : int
        Fan-in of the tree reduction of per-block sums.
    scheduler : optional
        Passed to ``dask.compute`` (None: Dask's default).

    Returns
    -------
    dict of floats, nats: ``elbo``, ``expected_loglik`` (the mean over the S
    weight samples of the exact log-likelihood sums of ``log_likelihood``) and
    ``kl`` (closed form for the gaussian prior, the MC estimate over the same
    samples for the scale mixture).
    """
    from .vi import MFVI

    if not isinstance(q, MFVI):
        raise TypeError(f"q must be a fitted bg.vi.MFVI, got {type(q).__name__}")
    split_every = C.integer(split_every, "split_every", 2)
    net = _p().networks(q, n_samples, seed, stream)
    ll = log_likelihood(net, X, y, split_every=split_every, scheduler=scheduler)
    ell = float(np.mean(ll))
    kl = _mfvi_kl(q, net.theta)
    return {"elbo": ell - kl, "expected_loglik": ell, "kl": kl}
