"""Gamma, Beta and Dirichlet: the gamma-derived families, reparameterised
implicitly (``rsample_vjp`` = ``-(dF/dparam) / p(x)`` from native CDF
derivatives) since their samplers are rejection-based.
"""
from __future__ import annotations

import numpy as np

from .. import _backend
from .. import _checks as C
from .._numerics import lgamma_corr
from ._base import (LOG_2PI, Distribution, digamma_tail, clamp_into_support, digamma, digamma_diff, lbeta,
                    lgamma, scalar_like, special_kernel)


def _xlogy(c, log_y, out=None):
    """c * log_y with 0 where c = 0 (a factor y^0 = 1, also at y = 0 where log_y = -inf); c is a
    parameter (small), so the check costs nothing when no c is 0. ``out``: written in place (log_y
    itself may be given)."""
    prod = np.multiply(c, log_y, out=out)
    zero = c == 0
    if not np.any(zero):
        return prod
    if out is None:
        return np.where(zero, 0.0, prod)
    np.copyto(out, 0.0, where=np.broadcast_to(zero, out.shape))
    return out


def _fits(v, *operands):
    """Whether an element-wise result of the array ``v`` with ``operands`` can be written into ``v``: it
    has v's dtype and shape (a fresh array of x's size cost more, in page faults, than its passes)."""
    return (isinstance(v, np.ndarray) and v.ndim > 0 and np.result_type(v, *operands) == v.dtype
            and np.broadcast_shapes(v.shape, *(np.shape(o) for o in operands)) == v.shape)


def _minus_plus(v, s, t):
    """v - s + t, in v's own buffer where it fits (_fits)."""
    if _fits(v, s, t):
        v -= s
        v += t
        return v
    return v - s + t


def log_multi_beta(a):
    """log B(a) = sum lgamma(a_i) - lgamma(sum a_i) over the last axis of a ``(..., K)``, float64, as the
    chain sum_j lbeta(a_1 + ... + a_(j-1), a_j) of stable two-argument log-betas (the direct form cancels
    at large concentrations as Beta's did)."""
    a = np.asarray(a, np.float64)
    c = np.cumsum(a, -1)
    return np.sum(lbeta(c[..., :-1], a[..., 1:]), -1)


class Gamma(Distribution):
    """The gamma distribution, density x^(a-1) e^(-rate x) rate^a / Gamma(a) on x > 0.

    The parameters broadcast together to ``batch_shape``.

    Marsaglia-Tsang rejection on per-element sub-streams (word layout in
    cpp/include/bayesgrad/distributions.hpp), native and NumPy draws equal up
    to rounding. ``rsample_vjp``: implicit in the concentration
    (``-(dP/da)/p``), pathwise in the rate (x = X / rate).

    Draws are clamped into (0, inf): a draw below the smallest positive normal
    number of the dtype (likely for concentrations below about 1e-2) is returned
    as that number, not 0, so its log-density is finite; its pathwise gradient
    is that of the clamped value.

    Parameters
    ----------
    concentration : array_like of any shape, > 0, the shape a
    rate : array_like of any shape, > 0, default 1, the inverse scale
    """

    params = ("concentration", "rate")
    reparam = "implicit"

    def __init__(self, concentration, rate=1.0):
        concentration = C.as_array(concentration, "concentration")
        super().__init__(concentration=concentration, rate=scalar_like(rate, "rate", concentration))
        C.positive(self.concentration, "concentration")
        C.positive(self.rate, "rate")

    def sample(self, n, seed=0, stream=0, out=None):
        """Draw ``n`` samples from the Philox stream ``(seed, stream)``.

        Parameters
        ----------
        n : int >= 0
        seed : int in [0, 2**64) or None
        stream : int in [0, 2**63)
        out : optional array of the returned shape and dtype, written in place

        Returns
        -------
        ``(n, *batch_shape)`` array of the parameters' dtype
        """
        out = self._out(n, out)
        seed, stream = self._seed_stream(seed, stream)
        if out.size:
            # the kernel clamps into (0, inf) itself (no second pass over out)
            _backend.kernels().distributions.sample_gamma(out, self._flat(self.concentration), self._flat(self.rate), seed, stream)
        return out

    def _log_prob_all(self, x):
        outs = [_backend.empty(x.shape, self.dtype) for _ in range(3)]  # the output cache, as draws
        if x.size:
            _backend.kernels().distributions.gamma_log_prob(x, self._flat(self.concentration), self._flat(self.rate), *outs)
            at_inf = np.isinf(x)  # the density vanishes there; the formula gives inf - inf
            if at_inf.any():
                outs[0][at_inf] = -np.inf
                outs[1][at_inf] = outs[2][at_inf] = 0
        return outs

    def log_prob(self, x):
        """Log density (nats) at ``x``.

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape)`` array

        Returns
        -------
        ``(*sample_shape, *batch_shape)`` array
        """
        return self._log_prob_all(self._x(x))[0]

    def score(self, x):
        """Gradients of ``log_prob(x)`` with respect to each parameter.

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape)`` array

        Returns
        -------
        dict {param: ``(*sample_shape, *param.shape)``}, summed over the dimensions a parameter was broadcast along
        """
        x = self._x(x)
        n = self._lead(x)
        _, da, dr = self._log_prob_all(x)
        return {"concentration": self._reduce("concentration", da, n), "rate": self._reduce("rate", dr, n)}

    @property
    def mean(self):
        """The mean, ``(*batch_shape)`` array."""
        return self._batch(self.concentration / self.rate)

    @property
    def variance(self):
        """The variance, ``(*batch_shape)`` array."""
        return self._batch(self.concentration / self.rate / self.rate)  # rate^2 under/overflows first

    def entropy(self):
        """The differential entropy (nats), ``(*batch_shape)`` array."""
        a = self.concentration.astype(np.float64)
        h = np.array(a + lgamma(a) + (1.0 - a) * digamma(a), dtype=np.float64)
        big = a >= 10.0
        if big.any():
            # a + lgamma(a) + (1 - a) psi(a) cancels from ~a ln a to ~ln(a) / 2; with Stirling and psi's series
            # it is ln(2 pi a) / 2 + corr(a) + (a - 1) / (2a) - (a - 1) tail(a), tail = psi - ln a + 1/(2a)
            ab = a[big]
            h[big] = (0.5 * (LOG_2PI + np.log(ab)) + lgamma_corr(ab) + (ab - 1.0) / (2.0 * ab)
                      - (ab - 1.0) * digamma_tail(ab))
        return self._batch(h - np.log(self.rate))

    def rsample_vjp(self, x, g):
        """Per-sample vector-Jacobian products ``g . dx/dparam`` at samples ``x``.

        The reparameterisation gradient used by ``bg.estimators.pathwise``; implicit
        reparameterisation: dx/dparam = -(dF(x)/dparam) / p(x), F the Gamma CDF (pathwise in rate).

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape)`` samples of this distribution
        g : array shaped like ``x``, the cotangent (e.g. df/dx at x)

        Returns
        -------
        dict {param: ``(*sample_shape, *param.shape)``}
        """
        x = self._x(x)
        g = self._check_g(x, g)
        n = self._lead(x)
        dxa = special_kernel("gamma_dx_da", self.concentration, x * self.rate) / self.rate
        return {"concentration": self._reduce("concentration", g * dxa, n),
                "rate": self._reduce("rate", -g * x / self.rate, n)}


class Beta(Distribution):
    """The beta distribution on (0, 1), density x^(a-1) (1-x)^(b-1) / B(a, b).

    The parameters broadcast together to ``batch_shape``.

    Drawn as G_a / (G_a + G_b) from gamma elements 2i and 2i+1 in log space, so
    small a, b give 0 < x < 1 without 0/0 down to about 2e-307; below that both
    logs can overflow to -inf (ln u / a) and the draw is NaN (a known limit). ``rsample_vjp``: implicit,
    ``-(dI_x/da, dI_x/db) / p(x)`` with native incomplete-beta derivatives.

    Parameters
    ----------
    concentration1 : array_like of any shape, > 0, a
    concentration0 : array_like of any shape, > 0, b
    """

    params = ("concentration1", "concentration0")
    reparam = "implicit"

    def __init__(self, concentration1, concentration0):
        super().__init__(concentration1=concentration1, concentration0=concentration0)
        C.positive(self.concentration1, "concentration1")
        C.positive(self.concentration0, "concentration0")

    def sample(self, n, seed=0, stream=0, out=None):
        """Draw ``n`` samples from the Philox stream ``(seed, stream)``.

        Parameters
        ----------
        n : int >= 0
        seed : int in [0, 2**64) or None
        stream : int in [0, 2**63)
        out : optional array of the returned shape and dtype, written in place

        Returns
        -------
        ``(n, *batch_shape)`` array of the parameters' dtype
        """
        out = self._out(n, out)
        seed, stream = self._seed_stream(seed, stream)
        if out.size:
            _backend.kernels().distributions.sample_beta(out, self._flat(self.concentration1), self._flat(self.concentration0),
                                           seed, stream)
            clamp_into_support(out, 1)
        return out

    def _logs(self, x):
        """log x and log(1 - x), fresh arrays of x's dtype (-x and its log1p in one buffer)."""
        with np.errstate(divide="ignore", invalid="ignore"):  # x outside [0, 1]: masked by the callers
            if x.ndim == 0:  # (NumPy scalars, which take no out=)
                return np.log(x), np.log1p(-x)
            l1x = np.negative(x)
            return np.log(x), np.log1p(l1x, out=l1x)

    def log_prob(self, x):
        """Log density (nats) at ``x``.

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape)`` array

        Returns
        -------
        ``(*sample_shape, *batch_shape)`` array
        """
        x, lo, hi = self._x_range(x)
        a, b = self.concentration1, self.concentration0
        lx, l1x = self._logs(x)
        with np.errstate(invalid="ignore"):
            # a = 1 (b = 1) drops the x (1 - x) factor, also at the edge where its log is -inf (0 * -inf)
            if _fits(lx, a, b):  # the same operations in place in lx and l1x
                lp = _xlogy(a - 1, lx, out=lx)
                lp += _xlogy(b - 1, l1x, out=l1x)
                lp -= lbeta(a, b)
            else:
                lp = _xlogy(a - 1, lx) + _xlogy(b - 1, l1x) - lbeta(a, b)
        if x.size and lo >= 0 and hi <= 1:  # every x in [0, 1] (x's range, read once): no mask to apply
            return lp.astype(self.dtype, copy=False)
        return np.where((x >= 0) & (x <= 1), lp, -np.inf).astype(self.dtype)

    def score(self, x):
        """Gradients of ``log_prob(x)`` with respect to each parameter.

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape)`` array

        Returns
        -------
        dict {param: ``(*sample_shape, *param.shape)``}, summed over the dimensions a parameter was broadcast along
        """
        x = self._x(x)
        n = self._lead(x)
        a, b = self.concentration1, self.concentration0
        lx, l1x = self._logs(x)
        pab = digamma(a + b)
        return {"concentration1": self._reduce("concentration1", _minus_plus(lx, digamma(a), pab), n),
                "concentration0": self._reduce("concentration0", _minus_plus(l1x, digamma(b), pab), n)}

    @property
    def mean(self):
        """The mean, ``(*batch_shape)`` array."""
        a, b = self.concentration1, self.concentration0
        return self._batch(a / (a + b))

    @property
    def variance(self):
        """The variance, ``(*batch_shape)`` array."""
        a, b = self.concentration1, self.concentration0
        s = a + b
        return self._batch((a / s) * (b / s) / (s + 1))  # s * s underflows for tiny a, b (0 / 0)

    def entropy(self):
        """The differential entropy (nats), ``(*batch_shape)`` array."""
        a = self.concentration1.astype(np.float64)
        b = self.concentration0.astype(np.float64)
        # -(a-1) psi(a) - (b-1) psi(b) + (a+b-2) psi(a+b) regrouped into differences that keep their digits
        return self._batch(lbeta(a, b) + (a - 1) * digamma_diff(a, b) + (b - 1) * digamma_diff(b, a))

    def rsample_vjp(self, x, g):
        """Per-sample vector-Jacobian products ``g . dx/dparam`` at samples ``x``.

        The reparameterisation gradient used by ``bg.estimators.pathwise``; implicit reparameterisation:
        dx/d(a, b) = -(dF(x)/d(a, b)) / p(x), F the Beta CDF (native incomplete-beta derivatives).

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape)`` samples of this distribution
        g : array shaped like ``x``, the cotangent (e.g. df/dx at x)

        Returns
        -------
        dict {param: ``(*sample_shape, *param.shape)``}
        """
        x = self._x(x)
        g = self._check_g(x, g)
        n = self._lead(x)
        arrs = [np.ascontiguousarray(v) for v in np.broadcast_arrays(
            *(np.asarray(v, np.float64) for v in (self.concentration1, self.concentration0, x)))]
        da, db = np.empty(x.shape), np.empty(x.shape)
        _backend.kernels().distributions.beta_dx_dab(*arrs, da, db)
        return {"concentration1": self._reduce("concentration1", g * da, n),
                "concentration0": self._reduce("concentration0", g * db, n)}


class Dirichlet(Distribution):
    """The Dirichlet distribution on the (K-1)-simplex.

    Drawn from K Gammas per row (gamma element (s B + b) K + j), normalised in
    log space. ``rsample_vjp``: implicit. Raising a_i moves x_i along its
    marginal Beta(a_i, a_0 - a_i) (``D_i = -(dI/da)/p``) and rescales the other
    components, whose conditional law given x_i does not involve a_i:
    ``vjp_i = D_i (g_i - sum_j g_j x_j) / (1 - x_i)``.

    Parameters
    ----------
    concentration : array_like, shape ``(*batch_shape, K)`` with K >= 2, > 0
    """

    params = ("concentration",)
    reparam = "implicit"
    event_ndim = 1

    def __init__(self, concentration):
        c = C.as_array(concentration, "concentration", min_ndim=1)
        if c.shape[-1] < 2:
            raise ValueError(f"concentration must have at least 2 components on its last axis, got shape {c.shape}")
        super().__init__(concentration=c)
        C.positive(self.concentration, "concentration")

    def sample(self, n, seed=0, stream=0, out=None):
        """Draw ``n`` samples from the Philox stream ``(seed, stream)``.

        Parameters
        ----------
        n : int >= 0
        seed : int in [0, 2**64) or None
        stream : int in [0, 2**63)
        out : optional array of the returned shape and dtype, written in place

        Returns
        -------
        ``(n, *batch_shape, K)`` array of the parameters' dtype
        """
        out = self._out(n, out)
        seed, stream = self._seed_stream(seed, stream)
        if out.size:
            k = self.event_shape[0]
            alpha = np.ascontiguousarray(np.broadcast_to(self.concentration, self.shape)).reshape(-1, k)
            _backend.kernels().distributions.sample_dirichlet(out, alpha, seed, stream)
            clamp_into_support(out, 1)
        return out

    def log_prob(self, x):
        """Log density (nats) at ``x``; -inf where a coordinate of x is negative or infinite.

        On the boundary (a coordinate 0) the term (a_k - 1) log x_k is 0 for a_k = 1,
        -inf for a_k > 1 and +inf for a_k < 1; when both infinities meet, the
        vanishing factor wins (-inf).

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape, K)`` array, points of the simplex

        Returns
        -------
        ``(*sample_shape, *batch_shape)`` array
        """
        x, lo, hi = self._x_range(x)
        a = self.concentration
        lb = log_multi_beta(a)
        if x.size and lo > 0 and hi < np.inf:  # no boundary, negative or infinite coordinate (x's range)
            lx = np.log(x)
            terms = _xlogy(a - 1, lx, out=lx if _fits(lx, a) else None)  # (a = 1: 0, as below)
            return (np.sum(terms, axis=-1) - lb).astype(self.dtype, copy=False)
        outside = np.any((x < 0) | np.isinf(x), axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(a == 1, 0.0, (a - 1) * np.log(np.where((x < 0) | np.isinf(x), 1, x)))
        outside |= np.any(terms == -np.inf, axis=-1)
        with np.errstate(invalid="ignore"):
            t = np.sum(np.where(terms == -np.inf, 0.0, terms), axis=-1)
        return np.where(outside, -np.inf, t - lb).astype(self.dtype)

    def score(self, x):
        """Gradients of ``log_prob(x)`` with respect to each parameter.

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape, K)`` array

        Returns
        -------
        dict {param: ``(*sample_shape, *param.shape)``}, summed over the dimensions a parameter was broadcast along
        """
        x = self._x(x)
        n = self._lead(x)
        a = self.concentration
        with np.errstate(divide="ignore"):
            d = _minus_plus(np.log(x), digamma(a), digamma(np.sum(a, axis=-1, keepdims=True, dtype=np.float64)))
        return {"concentration": self._reduce("concentration", d, n)}

    @property
    def mean(self):
        """The mean, ``(*batch_shape, K)`` array."""
        a = np.broadcast_to(self.concentration, self.shape)
        return (a / a.sum(-1, keepdims=True)).astype(self.dtype)

    @property
    def variance(self):
        """The marginal variance, ``(*batch_shape, K)`` array."""
        a = np.broadcast_to(self.concentration, self.shape)
        a0 = a.sum(-1, keepdims=True)
        return ((a / a0) * ((a0 - a) / a0) / (a0 + 1)).astype(self.dtype)  # a0 * a0 underflows for tiny a

    @property
    def covariance_matrix(self):
        """The covariance ``(diag(m) - m m^T) / (a_0 + 1)`` with m the mean, ``(*batch_shape, K, K)`` array."""
        a = np.broadcast_to(self.concentration, self.shape).astype(np.float64)
        a0 = a.sum(-1, keepdims=True)
        m = a / a0
        cov = (np.eye(a.shape[-1]) * m[..., None] - m[..., :, None] * m[..., None, :]) / (a0[..., None] + 1.0)
        return cov.astype(self.dtype)

    def entropy(self):
        """The differential entropy (nats), ``(*batch_shape)`` array."""
        a = np.broadcast_to(self.concentration, self.shape).astype(np.float64)
        k = a.shape[-1]
        a0 = a.sum(-1)
        # (a0 - k) psi(a0) - sum (a - 1) psi(a) = sum (a_i - 1)(psi(a0) - psi(a_i)), each difference with the
        # rest sum_{j != i} a_j summed directly (a0 - a_i loses it when a_i dominates)
        rest = np.sum(np.where(np.eye(k, dtype=bool), 0.0, a[..., None, :]), -1)
        h = log_multi_beta(a) + np.sum((a - 1) * digamma_diff(a, rest), -1)
        return h.astype(self.dtype)

    def rsample_vjp(self, x, g):
        """Per-sample vector-Jacobian products ``g . dx/dparam`` at samples ``x``.

        The reparameterisation gradient used by ``bg.estimators.pathwise``; implicit reparameterisation
        through each coordinate's Beta(a_j, sum(a) - a_j) marginal CDF (Figurnov et al. 2018).

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape, K)`` samples of this distribution
        g : array shaped like ``x``, the cotangent (e.g. df/dx at x)

        Returns
        -------
        dict {param: ``(*sample_shape, *param.shape)``}
        """
        x = self._x(x)
        g = self._check_g(x, g)
        n = self._lead(x)
        a = self.concentration.astype(np.float64)
        rest = a.sum(-1, keepdims=True) - a
        arrs = [np.ascontiguousarray(v) for v in np.broadcast_arrays(a, rest, x.astype(np.float64))]
        da, db = np.empty(x.shape), np.empty(x.shape)
        _backend.kernels().distributions.beta_dx_dab(*arrs, da, db)
        proj = g - np.sum(g * x, axis=-1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(x < 1, da * proj / (1.0 - x), 0.0)
        return {"concentration": self._reduce("concentration", v, n)}
