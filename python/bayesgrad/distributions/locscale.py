"""Location-scale families: Normal, LogNormal, Exponential, Uniform, Laplace,
Gumbel (sampled and scored by the shared ``sample_locscale`` /
``locscale_log_prob`` kernels, pathwise x = loc + scale * e), and StudentT
(pathwise in loc and scale, implicit in df).
"""
from __future__ import annotations

import math

import numpy as np

from .. import _backend
from .. import _checks as C
from .._numerics import log1p_minus_series
from ._base import (EULER, LOG_2PI, Distribution, digamma_diff, digamma_tail, lbeta, lgamma_half_diff,
                    scalar_like, special_kernel)


def _log1p_minus(u):
    """log1p(u) - u, float64, by its series below |u| = 1e-2, where the difference cancels (-u^2 / 2 ...).

    Each form on its own elements, in place where it can be: the series' dozen temporaries over every
    element (each a fresh multi-megabyte array, page faults included) were most of StudentT.score's time.
    """
    u = np.asarray(u, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.log1p(u, out=np.empty_like(u))
        out -= u
        small = np.abs(u) < 1e-2
        if small.any():
            out[small] = log1p_minus_series(u[small])
    return out


def _psi_half_step_minus(df):
    """psi((df + 1) / 2) - psi(df / 2) - 1 / df, float64: O(1 / df^2), which the difference of its
    O(1 / df) terms loses for large df (StudentT(1e12).score's df gradient had the wrong sign)."""
    df = np.asarray(df, np.float64)
    out = np.asarray(digamma_diff(0.5 * df, 0.5) - 1.0 / df)
    big = 0.5 * df >= 10.0
    if big.any():
        # psi's series as in digamma_diff, with log1p(1 / (2x)) - 1 / (2x) summed as its series
        x = 0.5 * df[big]
        out[big] = _log1p_minus(0.5 / x) + 0.25 / (x * (x + 0.5)) + digamma_tail(x + 0.5) - digamma_tail(x)
    return out


class _LocScale(Distribution):
    """Shared code of the families sampled and scored by the loc-scale kernels.

    Subclasses name their ``family`` and map their parameters to the kernel's
    (loc, scale) in ``_kernel_params``; ``_kernel_grads`` maps the kernel's
    d/dloc, d/dscale back to their own parameters.
    """

    family = ""
    reparam = "pathwise"

    def _kernel_params(self):
        return self.loc, self.scale

    def _kernel_grads(self, x, d_loc, d_scale):
        return {"loc": d_loc, "scale": d_scale}

    def sample(self, n, seed=0, stream=0, out=None):
        """``(n, *batch_shape)`` draws; ``out`` (optional) is filled in place."""
        return self._sample_locscale(self.family, n, seed, stream, out, *self._kernel_params())

    def log_prob(self, x):
        x, lo, hi = self._x_range(x)
        return self._locscale_log_prob(self.family, x, (lo, hi), *self._kernel_params(), grads=False)[0]

    def score(self, x):
        x, lo, hi = self._x_range(x)
        n = self._lead(x)
        _, dl, ds = self._locscale_log_prob(self.family, x, (lo, hi), *self._kernel_params())
        return {k: self._reduce(k, v, n) for k, v in self._kernel_grads(x, dl, ds).items()}

    def rsample_vjp(self, x, g):
        # x = loc + scale * e: dx/dloc = 1, dx/dscale = e = (x - loc) / scale.
        x = self._x(x)
        g = self._check_g(x, g)
        n = self._lead(x)
        return {"loc": self._reduce("loc", g, n),
                "scale": self._reduce("scale", g * (x - self.loc) / self.scale, n)}


class Normal(_LocScale):
    """The normal distribution. Pathwise: x = loc + scale * z, z standard normal.

    The parameters broadcast together to ``batch_shape`` (e.g. ``loc`` of shape
    (N, D) and a scalar ``scale`` give batch shape (N, D)); their dtype (float32
    or float64) is the dtype of draws and densities.

    Parameters
    ----------
    loc : array_like of any shape, the mean
    scale : array_like of any shape, > 0, the standard deviation
    """

    params = ("loc", "scale")
    family = "normal"

    def __init__(self, loc, scale):
        super().__init__(loc=loc, scale=scale)
        C.positive(self.scale, "scale")

    @property
    def mean(self):
        """The mean, ``(*batch_shape)`` array."""
        return self._batch(self.loc)

    @property
    def variance(self):
        """The variance, ``(*batch_shape)`` array."""
        return self._batch(self.scale ** 2)

    def entropy(self):
        """The differential entropy (nats), ``(*batch_shape)`` array."""
        return self._batch(0.5 * (LOG_2PI + 1.0) + np.log(self.scale))


class LogNormal(_LocScale):
    """The log-normal distribution: log x ~ Normal(loc, scale). Pathwise: x = exp(loc + scale z).

    The parameters broadcast together to ``batch_shape``. Draws are clamped into (0, inf): one
    below the smallest positive normal number of the dtype (loc = -800) is returned as that number,
    not 0, so its log-density is finite (as Gamma's draws).

    Parameters
    ----------
    loc : array_like of any shape, the mean of log x
    scale : array_like of any shape, > 0, the standard deviation of log x
    """

    params = ("loc", "scale")
    family = "lognormal"

    def __init__(self, loc, scale):
        super().__init__(loc=loc, scale=scale)
        C.positive(self.scale, "scale")

    @property
    def mean(self):
        """The mean, ``(*batch_shape)`` array."""
        return self._batch(np.exp(self.loc + 0.5 * self.scale ** 2))

    @property
    def variance(self):
        """The variance, ``(*batch_shape)`` array."""
        # in logs: expm1(s^2) overflows from s ~ 26.6 while exp(2 loc + s^2) may underflow (loc = -1000, s = 30)
        s = self.scale.astype(np.float64)
        s2 = s * s
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # each branch used where it holds
            # ln expm1(s^2): s^2 + ln(1 - e^-s^2) for s^2 > 1; 2 ln s + ln(expm1(s^2) / s^2) below (s^2 may be 0)
            small = 2.0 * np.log(s) + np.log(np.where(s2 > 0, np.expm1(s2) / np.where(s2 > 0, s2, 1.0), 1.0))
            lem = np.where(s2 > 1.0, s2 + np.log1p(-np.exp(-s2)), small)
        with np.errstate(over="ignore"):
            return self._batch(np.exp(lem + 2.0 * self.loc.astype(np.float64) + s2))

    def entropy(self):
        """The differential entropy (nats), ``(*batch_shape)`` array."""
        return self._batch(self.loc + 0.5 + np.log(self.scale) + 0.5 * LOG_2PI)

    def rsample_vjp(self, x, g):
        """Per-sample vector-Jacobian products ``g . dx/dparam`` at samples ``x``.

        The reparameterisation gradient used by ``bg.estimators.pathwise``;
        pathwise: x = exp(loc + scale eps).

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
        gx = g * x
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (np.log(x) - self.loc) / self.scale
        return {"loc": self._reduce("loc", gx, n), "scale": self._reduce("scale", gx * z, n)}


class Exponential(_LocScale):
    """The exponential distribution, density rate e^(-rate x) on x >= 0. Pathwise: x = -log(u) / rate.

    Parameters
    ----------
    rate : array_like of any shape (the ``batch_shape``), > 0, the inverse mean
    """

    params = ("rate",)
    family = "exponential"

    def __init__(self, rate):
        super().__init__(rate=rate)
        C.positive(self.rate, "rate")

    def _kernel_params(self):
        return np.zeros((), self.dtype), 1.0 / self.rate

    def score(self, x):
        """Gradients of ``log_prob(x)`` with respect to the rate.

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape)`` array

        Returns
        -------
        dict {"rate": ``(*sample_shape, *rate.shape)``}, summed over the dimensions it was broadcast along
        """
        x, lo, hi = self._x_range(x)
        # d/drate (log rate - rate x) = 1 / rate - x directly (not the kernel's d/dscale: the chain rule
        # through scale = 1 / rate, d/dscale * (-1 / rate^2), gives inf * 0 or inf once rate^2 under- or
        # overflows); 0 outside the support
        g = _backend.empty(x.shape, self.dtype)
        with np.errstate(over="ignore"):
            np.subtract(1.0 / self.rate, x, out=g)
        if x.size and (lo < 0 or math.isinf(hi)):
            g[(x < 0) | np.isinf(x)] = 0
        return {"rate": self._reduce("rate", g, self._lead(x))}

    @property
    def mean(self):
        """The mean, ``(*batch_shape)`` array."""
        return self._batch(1.0 / self.rate)

    @property
    def variance(self):
        """The variance, ``(*batch_shape)`` array."""
        return self._batch(1.0 / self.rate ** 2)

    def entropy(self):
        """The differential entropy (nats), ``(*batch_shape)`` array."""
        return self._batch(1.0 - np.log(self.rate))

    def rsample_vjp(self, x, g):
        """Per-sample vector-Jacobian products ``g . dx/dparam`` at samples ``x``.

        The reparameterisation gradient used by ``bg.estimators.pathwise``; pathwise:
        x = -log(u) / rate.

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
        return {"rate": self._reduce("rate", -g * x / self.rate, self._lead(x))}


class Uniform(_LocScale):
    """The continuous uniform distribution on (low, high). Pathwise: x = low + (high - low) u.

    The parameters broadcast together to ``batch_shape``.

    Parameters
    ----------
    low : array_like of any shape
    high : array_like of any shape, > low
    """

    params = ("low", "high")
    family = "uniform"

    def __init__(self, low, high):
        super().__init__(low=low, high=high)
        if np.any(self.high <= self.low):
            raise ValueError("high must be greater than low")

    def _kernel_params(self):
        with np.errstate(over="ignore"):
            return self.low, self.high - self.low

    def _kernel_grads(self, x, d_loc, d_scale):
        # loc = low, scale = high - low
        return {"low": d_loc - d_scale, "high": d_scale}

    def _half_width(self):
        """(high - low) / 2, which does not overflow (high - low does from a width of ~1.8e308), or None
        when every width is finite (the common case, left to the kernels)."""
        with np.errstate(over="ignore"):
            wide = np.isinf(self.high - self.low)
        return 0.5 * self.high - 0.5 * self.low if np.any(wide) else None

    def sample(self, n, seed=0, stream=0, out=None):
        """``(n, *batch_shape)`` draws; ``out`` (optional) is filled in place."""
        hw = self._half_width()
        if hw is None:
            return super().sample(n, seed, stream, out)
        # the same uniforms (loc 0, scale 1: the same words), then low + 2 hw u in two finite steps
        zero, one = np.zeros((), self.dtype), np.ones((), self.dtype)
        out = self._sample_locscale(self.family, n, seed, stream, out, zero, one)
        t = hw * out
        out[...] = self.low + t + t
        return out

    def log_prob(self, x):
        hw = self._half_width()
        if hw is None:
            return super().log_prob(x)
        x = self._x(x)
        inside = (x >= self.low) & (x <= self.high)
        return np.where(inside, -(np.log(hw) + math.log(2.0)), -np.inf).astype(self.dtype)

    @property
    def mean(self):
        """The mean, ``(*batch_shape)`` array."""
        return self._batch(0.5 * self.low + 0.5 * self.high)  # low + high may overflow

    @property
    def variance(self):
        """The variance, ``(*batch_shape)`` array."""
        return self._batch((self.high - self.low) ** 2 / 12.0)

    def entropy(self):
        """The differential entropy (nats), ``(*batch_shape)`` array."""
        return self._batch(np.log(0.5 * self.high - 0.5 * self.low) + math.log(2.0))  # the width may overflow

    def rsample_vjp(self, x, g):
        """Per-sample vector-Jacobian products ``g . dx/dparam`` at samples ``x``.

        The reparameterisation gradient used by ``bg.estimators.pathwise``;
        pathwise: x = low + (high - low) u.

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
        w = self.high - self.low
        return {"low": self._reduce("low", g * (self.high - x) / w, n),
                "high": self._reduce("high", g * (x - self.low) / w, n)}


class Laplace(_LocScale):
    """The Laplace (double exponential) distribution. Pathwise: x = loc + scale * e, e standard Laplace.

    The parameters broadcast together to ``batch_shape``.

    Parameters
    ----------
    loc : array_like of any shape, the location (mean and median)
    scale : array_like of any shape, > 0, the scale (the variance is 2 scale^2)
    """

    params = ("loc", "scale")
    family = "laplace"

    def __init__(self, loc, scale):
        super().__init__(loc=loc, scale=scale)
        C.positive(self.scale, "scale")

    @property
    def mean(self):
        """The mean, ``(*batch_shape)`` array."""
        return self._batch(self.loc)

    @property
    def variance(self):
        """The variance, ``(*batch_shape)`` array."""
        return self._batch(2.0 * self.scale ** 2)

    def entropy(self):
        """The differential entropy (nats), ``(*batch_shape)`` array."""
        return self._batch(1.0 + np.log(2.0 * self.scale))


class Gumbel(_LocScale):
    """The Gumbel distribution of maxima. Pathwise: x = loc - scale * log(-log u).

    The parameters broadcast together to ``batch_shape``.

    Parameters
    ----------
    loc : array_like of any shape, the location (mode)
    scale : array_like of any shape, > 0
    """

    params = ("loc", "scale")
    family = "gumbel"

    def __init__(self, loc, scale):
        super().__init__(loc=loc, scale=scale)
        C.positive(self.scale, "scale")

    @property
    def mean(self):
        """The mean, ``(*batch_shape)`` array."""
        return self._batch(self.loc + EULER * self.scale)

    @property
    def variance(self):
        """The variance, ``(*batch_shape)`` array."""
        return self._batch(math.pi ** 2 / 6.0 * self.scale ** 2)

    def entropy(self):
        """The differential entropy (nats), ``(*batch_shape)`` array."""
        return self._batch(np.log(self.scale) + EULER + 1.0)


class StudentT(Distribution):
    """Student's t distribution with ``df`` degrees of freedom, location and scale.

    The parameters broadcast together to ``batch_shape``. Sampled as
    loc + scale * z * sqrt(df / (2 G)) with z the normal of element i of
    ``stream`` and G ~ Gamma(df / 2) from element i's sub-stream.
    ``rsample_vjp``: pathwise in loc and scale, implicit in df
    (``-(dF/d df) / p``, native incomplete-beta derivatives).

    Parameters
    ----------
    df : array_like of any shape, > 0, the degrees of freedom
    loc : array_like of any shape, default 0
    scale : array_like of any shape, > 0, default 1
    """

    params = ("df", "loc", "scale")
    reparam = "pathwise"

    def __init__(self, df, loc=0.0, scale=1.0):
        df = C.as_array(df, "df")
        super().__init__(df=df, loc=scalar_like(loc, "loc", df), scale=scalar_like(scale, "scale", df))
        C.positive(self.df, "df")
        C.positive(self.scale, "scale")

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
        if out.size == 0:
            return out
        k = _backend.kernels()
        # (in place, in cached arrays: the operations of loc + scale z sqrt(df / 2 / g))
        g = _backend.empty(out.shape, np.float64)
        k.distributions.sample_gamma(g, self._flat(0.5 * self.df).astype(np.float64), np.ones(g[0].size), seed, stream)
        z = _backend.empty(out.shape, np.float64)
        k.random.fill_normal(z, seed, stream, 0)
        np.divide(0.5 * self.df.astype(np.float64), g, out=g)
        z *= np.sqrt(g, out=g)
        z *= self.scale
        z += self.loc
        out[...] = z
        return out

    def _z(self, x):
        shape, dtype = np.broadcast_shapes(np.shape(x), self.loc.shape), np.result_type(x, self.loc)
        z = np.subtract(x, self.loc, out=_backend.empty(shape, dtype))
        z /= self.scale
        return z

    def log_prob(self, x):
        """Log density (nats) at ``x``.

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape)`` array

        Returns
        -------
        ``(*sample_shape, *batch_shape)`` array
        """
        return self._log_prob_all(self._x(x), False)[0]

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
        g = self._log_prob_all(x, True)[1]
        return {k: self._reduce(k, g[i], n) for i, k in enumerate(self.params)}

    def _log_prob_all(self, x, grads):
        """(log p(x), None) or (log p(x), (3, *x.shape) [d/d df, d/d loc, d/d scale]) from one kernel pass
        (studentt_log_prob; arithmetic in float64 for either dtype: z^2 overflows float32 from |z| ~ 2e19
        while log p is still finite). The special functions of df once per coordinate, here."""
        lp = _backend.empty(x.shape, self.dtype)  # (the output cache)
        g = _backend.empty((3,) + x.shape, self.dtype) if grads else None
        if x.size:
            df = self._flat(self.df).astype(np.float64)
            c = np.asarray(lgamma_half_diff(0.5 * df) - 0.5 * np.log(df * math.pi)
                           - np.log(self._flat(self.scale).astype(np.float64)), dtype=np.float64)
            psi = _psi_half_step_minus(df) if grads else None
            _backend.kernels().distributions.studentt_log_prob(
                x, self._flat(self.df), self._flat(self.loc), self._flat(self.scale), c, psi, lp, g)
        return lp, g

    @property
    def mean(self):
        """The mean, ``(*batch_shape)`` array."""
        return self._batch(np.where(self.df > 1, self.loc, np.nan))

    @property
    def variance(self):
        """The variance, ``(*batch_shape)`` array."""
        df = self.df
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(df > 2, self.scale ** 2 * df / (df - 2), np.where(df > 1, np.inf, np.nan))
        return self._batch(v)

    def entropy(self):
        """The differential entropy (nats), ``(*batch_shape)`` array."""
        df = self.df.astype(np.float64)
        h = (0.5 * (df + 1) * digamma_diff(0.5 * df, 0.5) + 0.5 * np.log(df)
             + lbeta(0.5 * df, 0.5) + np.log(self.scale))
        return self._batch(h)

    def rsample_vjp(self, x, g):
        """Per-sample vector-Jacobian products ``g . dx/dparam`` at samples ``x``.

        The reparameterisation gradient used by ``bg.estimators.pathwise``; loc and scale
        pathwise; df implicit, -(dF/d df) / p of the standard t.

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
        t = self._z(x)
        dt = special_kernel("studentt_dt_ddf", self.df, t)
        return {"df": self._reduce("df", g * self.scale * dt, n),
                "loc": self._reduce("loc", g, n),
                "scale": self._reduce("scale", g * t, n)}
