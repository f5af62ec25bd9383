"""Probability distributions with batched parameters, sample axis first.

Every distribution shares one call shape:

``d.sample(n, seed=0, stream=0)``
    ``(n, *batch_shape, *event_shape)`` draws from the Philox stream.
``d.log_prob(x)``
    ``x`` of shape ``(*sample_shape, *batch_shape, *event_shape)`` ->
    ``(*sample_shape, *batch_shape)``.
``d.score(x)``
    ``{param: d log p(x) / d param}``, each ``(*sample_shape, *param.shape)``
    (summed over the dimensions a parameter was broadcast along).
``d.rsample_vjp(x, g)``
    Per-sample ``g . dx/dparam`` at samples ``x`` (``g`` shaped like ``x``),
    each ``(*sample_shape, *param.shape)``: pathwise for location-scale
    families, implicit reparameterisation ``-(dF/dparam)/p(x)`` otherwise.
``d.entropy()``, ``d.mean``, ``d.variance``
    ``batch_shape`` (``+ event_shape`` for mean/variance), where closed-form.

Parameters are checked when the distribution is built (finite, in range,
broadcastable) and keep the dtype they are given: float32 if all are float32,
else float64.
"""
from __future__ import annotations

import abc

import math

import numpy as np

from . import _backend
from ._codes import LocScaleFamily
from . import _checks as C
from . import random as _random

__all__ = [
    "Distribution", "Normal", "MultivariateNormal", "LogNormal", "Exponential", "Uniform", "Laplace",
    "Gumbel", "StudentT", "Gamma", "Beta", "Dirichlet", "Bernoulli", "Categorical",
    "RelaxedBernoulli", "RelaxedCategorical", "kl_divergence", "register_kl",
]

_LOG_2PI = math.log(2.0 * math.pi)
_EULER = 0.57721566490153286061


def _special(name, *args):
    """A special-function kernel of the active backend on broadcast float64 arrays."""
    arrs = [np.ascontiguousarray(a) for a in np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in args))]
    out = np.empty(arrs[0].shape, dtype=np.float64)
    getattr(_backend.kernels().distributions, name)(*arrs, out)
    return out


def lgamma(x):
    """log Gamma(x) (x > 0), float64, on the active backend."""
    return _special("lgamma", x)


def digamma(x):
    """Digamma psi(x) (x > 0), float64, on the active backend."""
    return _special("digamma", x)


def _lbeta(a, b):
    return lgamma(a) + lgamma(b) - lgamma(np.asarray(a, np.float64) + b)


def _softplus(x):
    return np.logaddexp(0.0, x)


def _sigmoid(x):
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _log_softmax(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return x - m - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


def _sum_to(a, n_lead, shape):
    """Sum ``a`` of shape (*lead, *b) down to (*lead, *shape), b broadcast from shape."""
    lead = a.shape[:n_lead]
    rest = a.shape[n_lead:]
    extra = len(rest) - len(shape)
    if extra > 0:
        a = a.sum(axis=tuple(range(n_lead, n_lead + extra)))
        rest = rest[extra:]
    axes = tuple(n_lead + i for i, (r, s) in enumerate(zip(rest, shape)) if s == 1 and r != 1)
    if axes:
        a = a.sum(axis=axes, keepdims=True)
    return a.reshape(lead + tuple(shape))


class Distribution(abc.ABC):
    """Base class: batched parameters, sample axis first (see module docstring)."""

    #: names of the differentiable parameters, in order
    params: tuple = ()
    #: "pathwise", "implicit" or None (no reparameterisation)
    reparam = None
    event_ndim = 0

    def __init__(self, **params):
        named = {}
        for name, value in params.items():
            named[name] = C.as_array(value, name, allow_empty=False)
        self.dtype = C.result_dtype(*named.values())
        for name, a in named.items():
            setattr(self, name, np.asarray(a, dtype=self.dtype, order="C"))
        self._param_shapes = {k: np.shape(getattr(self, k)) for k in named}
        full = C.broadcast_shapes({k: getattr(self, k) for k in named})
        self.event_shape = full[len(full) - self.event_ndim:] if self.event_ndim else ()
        self.batch_shape = full[: len(full) - self.event_ndim]

    # -- helpers -------------------------------------------------------------
    @property
    def shape(self):
        return tuple(self.batch_shape) + tuple(self.event_shape)

    def _n(self, n):
        return C.integer(n, "n", 0)

    def _x(self, x, name="x"):
        a = C.as_array(x, name, dtype=self.dtype, allow_empty=True, finite=False)
        if np.isnan(a).any():
            raise ValueError(f"{name} must not contain NaN")
        nd = len(self.shape)
        if a.ndim < nd or tuple(a.shape[a.ndim - nd:]) != self.shape:
            raise ValueError(f"{name} must have shape (..., {', '.join(map(str, self.shape))}), got {a.shape}")
        return a

    def _lead(self, x):
        return x.ndim - len(self.shape)

    def _reduce(self, name, a, n_lead):
        return _sum_to(np.asarray(a, dtype=self.dtype), n_lead, self._param_shapes[name])

    def _normals(self, n, seed, stream):
        return _random.normal((self._n(n),) + self.shape, seed=seed, stream=stream, dtype=self.dtype)

    def _uniforms(self, n, seed, stream):
        return _random.uniform((self._n(n),) + self.shape, seed=seed, stream=stream, dtype=self.dtype)

    def _out(self, n, out):
        """The (n, *shape) output array: ``out`` checked, or a new one."""
        shape = (self._n(n),) + self.shape
        if out is None:
            return np.empty(shape, dtype=self.dtype)
        if not isinstance(out, np.ndarray):
            raise TypeError("out must be a NumPy array")
        if out.dtype != self.dtype:
            raise TypeError(f"out must have dtype {self.dtype}, got {out.dtype}")
        if tuple(out.shape) != shape:
            raise ValueError(f"out must have shape {shape}, got {out.shape}")
        if not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError("out must be C-contiguous and writeable")
        return out

    @staticmethod
    def _seed_stream(seed, stream):
        return _random.resolve_seed(seed), _random._stream(stream)

    def _flat(self, a, shape=None):
        """A parameter (or expression) broadcast to the batch shape, flat and contiguous."""
        shape = self.batch_shape if shape is None else shape
        return np.ascontiguousarray(np.broadcast_to(np.asarray(a, dtype=self.dtype), shape)).reshape(-1)

    def _batch(self, a):
        """A parameter expression broadcast to the batch shape (a new array)."""
        return np.broadcast_to(np.asarray(a, dtype=self.dtype), self.batch_shape).copy()

    def _sample_locscale(self, family, n, seed, stream, out, loc, scale):
        out = self._out(n, out)
        seed, stream = self._seed_stream(seed, stream)
        if out.size:
            _backend.kernels().distributions.sample_locscale(out, self._flat(loc), self._flat(scale), LocScaleFamily[family],
                                                             seed, stream)
        return out

    def _locscale_log_prob(self, family, x, loc, scale):
        """log p, d/dloc, d/dscale at x (same shape as x), from the native/twin kernel."""
        outs = [np.empty(x.shape, dtype=self.dtype) for _ in range(3)]
        if x.size:
            _backend.kernels().distributions.locscale_log_prob(x, self._flat(loc), self._flat(scale),
                                                               LocScaleFamily[family], *outs)
        return outs

    # -- interface -----------------------------------------------------------
    @abc.abstractmethod
    def sample(self, n, seed=0, stream=0, out=None):
        """(n, *batch_shape, *event_shape) draws."""

    @abc.abstractmethod
    def log_prob(self, x):
        """(*sample_shape, *batch_shape) log densities (nats)."""

    @abc.abstractmethod
    def score(self, x):
        """{param: (*sample_shape, *param.shape)} gradients of log p."""

    def entropy(self):
        raise TypeError(
            f"{type(self).__name__} has no closed-form entropy; estimate it by Monte Carlo, e.g. "
            "bg.estimators.expectation(lambda x: -d.log_prob(x), d, n_samples)")

    def rsample_vjp(self, x, g):
        raise TypeError(f"{type(self).__name__} has no reparameterisation gradient")

    def _check_g(self, x, g):
        ga = C.as_array(g, "g", dtype=self.dtype, allow_empty=True)
        if ga.shape != x.shape:
            raise ValueError(f"g must have the shape of x {x.shape}, got {ga.shape}")
        return ga

    def __repr__(self):
        ps = ", ".join(f"{k}={np.array2string(np.asarray(getattr(self, k)), threshold=6)}" for k in self.params)
        return f"{type(self).__name__}({ps})"


# ------------------------------------------------------- location-scale families
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
        x = self._x(x)
        return self._locscale_log_prob(self.family, x, *self._kernel_params())[0]

    def score(self, x):
        x = self._x(x)
        n = self._lead(x)
        _, dl, ds = self._locscale_log_prob(self.family, x, *self._kernel_params())
        return {k: self._reduce(k, v, n) for k, v in self._kernel_grads(x, dl, ds).items()}

    def rsample_vjp(self, x, g):
        # x = loc + scale * e: dx/dloc = 1, dx/dscale = e = (x - loc) / scale.
        x = self._x(x)
        g = self._check_g(x, g)
        n = self._lead(x)
        return {"loc": self._reduce("loc", g, n),
                "scale": self._reduce("scale", g * (x - self.loc) / self.scale, n)}


class Normal(_LocScale):
    """Normal(loc, scale), scale > 0. Pathwise: x = loc + scale * z."""

    params = ("loc", "scale")
    family = "normal"

    def __init__(self, loc, scale):
        super().__init__(loc=loc, scale=scale)
        C.positive(self.scale, "scale")

    @property
    def mean(self):
        return self._batch(self.loc)

    @property
    def variance(self):
        return self._batch(self.scale ** 2)

    def entropy(self):
        return self._batch(0.5 * (_LOG_2PI + 1.0) + np.log(self.scale))


class LogNormal(_LocScale):
    """LogNormal(loc, scale): log x ~ Normal(loc, scale). Pathwise: x = exp(loc + scale z)."""

    params = ("loc", "scale")
    family = "lognormal"

    def __init__(self, loc, scale):
        super().__init__(loc=loc, scale=scale)
        C.positive(self.scale, "scale")

    @property
    def mean(self):
        return self._batch(np.exp(self.loc + 0.5 * self.scale ** 2))

    @property
    def variance(self):
        s2 = self.scale ** 2
        return self._batch(np.expm1(s2) * np.exp(2 * self.loc + s2))

    def entropy(self):
        return self._batch(self.loc + 0.5 + np.log(self.scale) + 0.5 * _LOG_2PI)

    def rsample_vjp(self, x, g):
        x = self._x(x)
        g = self._check_g(x, g)
        n = self._lead(x)
        gx = g * x
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (np.log(x) - self.loc) / self.scale
        return {"loc": self._reduce("loc", gx, n), "scale": self._reduce("scale", gx * z, n)}


class Exponential(_LocScale):
    """Exponential(rate), rate > 0. Pathwise: x = -log(u) / rate."""

    params = ("rate",)
    family = "exponential"

    def __init__(self, rate):
        super().__init__(rate=rate)
        C.positive(self.rate, "rate")

    def _kernel_params(self):
        return np.zeros((), self.dtype), 1.0 / self.rate

    def _kernel_grads(self, x, d_loc, d_scale):
        # scale = 1 / rate: d/drate = d/dscale * (-1 / rate^2)
        return {"rate": d_scale * (-1.0 / self.rate ** 2)}

    @property
    def mean(self):
        return self._batch(1.0 / self.rate)

    @property
    def variance(self):
        return self._batch(1.0 / self.rate ** 2)

    def entropy(self):
        return self._batch(1.0 - np.log(self.rate))

    def rsample_vjp(self, x, g):
        x = self._x(x)
        g = self._check_g(x, g)
        return {"rate": self._reduce("rate", -g * x / self.rate, self._lead(x))}


class Uniform(_LocScale):
    """Uniform(low, high), low < high. Pathwise: x = low + (high - low) u."""

    params = ("low", "high")
    family = "uniform"

    def __init__(self, low, high):
        super().__init__(low=low, high=high)
        if np.any(self.high <= self.low):
            raise ValueError("high must be greater than low")

    def _kernel_params(self):
        return self.low, self.high - self.low

    def _kernel_grads(self, x, d_loc, d_scale):
        # loc = low, scale = high - low
        return {"low": d_loc - d_scale, "high": d_scale}

    @property
    def mean(self):
        return self._batch(0.5 * (self.low + self.high))

    @property
    def variance(self):
        return self._batch((self.high - self.low) ** 2 / 12.0)

    def entropy(self):
        return self._batch(np.log(self.high - self.low))

    def rsample_vjp(self, x, g):
        x = self._x(x)
        g = self._check_g(x, g)
        n = self._lead(x)
        w = self.high - self.low
        return {"low": self._reduce("low", g * (self.high - x) / w, n),
                "high": self._reduce("high", g * (x - self.low) / w, n)}


class Laplace(_LocScale):
    """Laplace(loc, scale). Pathwise: x = loc + scale * e, e standard Laplace."""

    params = ("loc", "scale")
    family = "laplace"

    def __init__(self, loc, scale):
        super().__init__(loc=loc, scale=scale)
        C.positive(self.scale, "scale")

    @property
    def mean(self):
        return self._batch(self.loc)

    @property
    def variance(self):
        return self._batch(2.0 * self.scale ** 2)

    def entropy(self):
        return self._batch(1.0 + np.log(2.0 * self.scale))


class Gumbel(_LocScale):
    """Gumbel(loc, scale) (maxima). Pathwise: x = loc - scale * log(-log u)."""

    params = ("loc", "scale")
    family = "gumbel"

    def __init__(self, loc, scale):
        super().__init__(loc=loc, scale=scale)
        C.positive(self.scale, "scale")

    @property
    def mean(self):
        return self._batch(self.loc + _EULER * self.scale)

    @property
    def variance(self):
        return self._batch(math.pi ** 2 / 6.0 * self.scale ** 2)

    def entropy(self):
        return self._batch(np.log(self.scale) + _EULER + 1.0)


# ------------------------------------------------------------------ Student t
class StudentT(Distribution):
    """StudentT(df, loc=0, scale=1).

    Sampled as loc + scale * z * sqrt(df / (2 G)) with z the normal of element
    i of ``stream`` and G ~ Gamma(df / 2) from element i's sub-stream.
    ``rsample_vjp``: pathwise in loc and scale, implicit in df
    (``-(dF/d df) / p``, native incomplete-beta derivatives).
    """

    params = ("df", "loc", "scale")
    reparam = "pathwise"

    def __init__(self, df, loc=0.0, scale=1.0):
        loc = np.asarray(loc, dtype=np.asarray(df).dtype) if np.isscalar(loc) else loc
        scale = np.asarray(scale, dtype=np.asarray(df).dtype) if np.isscalar(scale) else scale
        super().__init__(df=df, loc=loc, scale=scale)
        C.positive(self.df, "df")
        C.positive(self.scale, "scale")

    def sample(self, n, seed=0, stream=0, out=None):
        out = self._out(n, out)
        seed, stream = self._seed_stream(seed, stream)
        if out.size == 0:
            return out
        k = _backend.kernels()
        g = np.empty(out.shape, dtype=np.float64)
        k.distributions.sample_gamma(g, self._flat(0.5 * self.df).astype(np.float64), np.ones(g[0].size), seed, stream)
        z = np.empty(out.shape, dtype=np.float64)
        k.random.fill_normal(z, seed, stream, 0)
        t = z * np.sqrt(0.5 * self.df.astype(np.float64) / g)
        out[...] = self.loc + self.scale * t
        return out

    def _z(self, x):
        return (x - self.loc) / self.scale

    def log_prob(self, x):
        x = self._x(x)
        df = self.df.astype(np.float64)
        z = self._z(x)
        c = lgamma(0.5 * (df + 1)) - lgamma(0.5 * df) - 0.5 * np.log(df * math.pi) - np.log(self.scale)
        return (c - 0.5 * (df + 1) * np.log1p(z * z / df)).astype(self.dtype)

    def score(self, x):
        x = self._x(x)
        n = self._lead(x)
        df = self.df
        z = self._z(x)
        z2 = z * z
        q = df + z2
        d_df = 0.5 * (digamma(0.5 * (df + 1)) - digamma(0.5 * df) - 1.0 / df - np.log1p(z2 / df)
                      + (df + 1) * z2 / (df * q))
        return {"df": self._reduce("df", d_df, n),
                "loc": self._reduce("loc", (df + 1) * z / (self.scale * q), n),
                "scale": self._reduce("scale", ((df + 1) * z2 / q - 1.0) / self.scale, n)}

    @property
    def mean(self):
        return self._batch(np.where(self.df > 1, self.loc, np.nan))

    @property
    def variance(self):
        df = self.df
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(df > 2, self.scale ** 2 * df / (df - 2), np.where(df > 1, np.inf, np.nan))
        return self._batch(v)

    def entropy(self):
        df = self.df.astype(np.float64)
        h = (0.5 * (df + 1) * (digamma(0.5 * (df + 1)) - digamma(0.5 * df)) + 0.5 * np.log(df)
             + _lbeta(0.5 * df, 0.5) + np.log(self.scale))
        return self._batch(h)

    def rsample_vjp(self, x, g):
        x = self._x(x)
        g = self._check_g(x, g)
        n = self._lead(x)
        t = self._z(x)
        dt = _special("studentt_dt_ddf", self.df, t)
        return {"df": self._reduce("df", g * self.scale * dt, n),
                "loc": self._reduce("loc", g, n),
                "scale": self._reduce("scale", g * t, n)}


# ------------------------------------------------------------- Gamma and Beta
class Gamma(Distribution):
    """Gamma(concentration, rate), density x^(a-1) e^(-rate x) rate^a / Gamma(a).

    Marsaglia-Tsang rejection on per-element sub-streams (word layout in
    cpp/include/bayesgrad/distributions.hpp), native and NumPy draws equal up
    to rounding. ``rsample_vjp``: implicit in the concentration
    (``-(dP/da)/p``), pathwise in the rate (x = X / rate).
    """

    params = ("concentration", "rate")
    reparam = "implicit"

    def __init__(self, concentration, rate=1.0):
        if np.isscalar(rate):
            rate = np.asarray(rate, dtype=np.asarray(concentration).dtype if
                              np.asarray(concentration).dtype == np.float32 else np.float64)
        super().__init__(concentration=concentration, rate=rate)
        C.positive(self.concentration, "concentration")
        C.positive(self.rate, "rate")

    def sample(self, n, seed=0, stream=0, out=None):
        out = self._out(n, out)
        seed, stream = self._seed_stream(seed, stream)
        if out.size:
            _backend.kernels().distributions.sample_gamma(out, self._flat(self.concentration), self._flat(self.rate), seed, stream)
        return out

    def _log_prob_all(self, x):
        outs = [np.empty(x.shape, dtype=self.dtype) for _ in range(3)]
        if x.size:
            _backend.kernels().distributions.gamma_log_prob(x, self._flat(self.concentration), self._flat(self.rate), *outs)
        return outs

    def log_prob(self, x):
        return self._log_prob_all(self._x(x))[0]

    def score(self, x):
        x = self._x(x)
        n = self._lead(x)
        _, da, dr = self._log_prob_all(x)
        return {"concentration": self._reduce("concentration", da, n), "rate": self._reduce("rate", dr, n)}

    @property
    def mean(self):
        return self._batch(self.concentration / self.rate)

    @property
    def variance(self):
        return self._batch(self.concentration / self.rate ** 2)

    def entropy(self):
        a = self.concentration.astype(np.float64)
        return self._batch(a - np.log(self.rate) + lgamma(a) + (1.0 - a) * digamma(a))

    def rsample_vjp(self, x, g):
        x = self._x(x)
        g = self._check_g(x, g)
        n = self._lead(x)
        dxa = _special("gamma_dx_da", self.concentration, x * self.rate) / self.rate
        return {"concentration": self._reduce("concentration", g * dxa, n),
                "rate": self._reduce("rate", -g * x / self.rate, n)}


class Beta(Distribution):
    """Beta(concentration1, concentration0) (a = concentration1, b = concentration0).

    Drawn as G_a / (G_a + G_b) from gamma elements 2i and 2i+1 in log space, so
    small a, b give 0 < x < 1 without 0/0. ``rsample_vjp``: implicit,
    ``-(dI_x/da, dI_x/db) / p(x)`` with native incomplete-beta derivatives.
    """

    params = ("concentration1", "concentration0")
    reparam = "implicit"

    def __init__(self, concentration1, concentration0):
        super().__init__(concentration1=concentration1, concentration0=concentration0)
        C.positive(self.concentration1, "concentration1")
        C.positive(self.concentration0, "concentration0")

    def sample(self, n, seed=0, stream=0, out=None):
        out = self._out(n, out)
        seed, stream = self._seed_stream(seed, stream)
        if out.size:
            _backend.kernels().distributions.sample_beta(out, self._flat(self.concentration1), self._flat(self.concentration0),
                                           seed, stream)
        return out

    def _logs(self, x):
        with np.errstate(divide="ignore"):
            return np.log(x), np.log1p(-x)

    def log_prob(self, x):
        x = self._x(x)
        a, b = self.concentration1, self.concentration0
        lx, l1x = self._logs(x)
        inside = (x >= 0) & (x <= 1)
        with np.errstate(invalid="ignore"):
            lp = (a - 1) * lx + (b - 1) * l1x - _lbeta(a, b)
        return np.where(inside, lp, -np.inf).astype(self.dtype)

    def score(self, x):
        x = self._x(x)
        n = self._lead(x)
        a, b = self.concentration1, self.concentration0
        lx, l1x = self._logs(x)
        pab = digamma(a + b)
        return {"concentration1": self._reduce("concentration1", lx - digamma(a) + pab, n),
                "concentration0": self._reduce("concentration0", l1x - digamma(b) + pab, n)}

    @property
    def mean(self):
        a, b = self.concentration1, self.concentration0
        return self._batch(a / (a + b))

    @property
    def variance(self):
        a, b = self.concentration1, self.concentration0
        s = a + b
        return self._batch(a * b / (s * s * (s + 1)))

    def entropy(self):
        a = self.concentration1.astype(np.float64)
        b = self.concentration0.astype(np.float64)
        return self._batch(_lbeta(a, b) - (a - 1) * digamma(a) - (b - 1) * digamma(b)
                           + (a + b - 2) * digamma(a + b))

    def rsample_vjp(self, x, g):
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
    """Dirichlet(concentration), concentration (*batch, K) with K >= 2.

    Drawn from K Gammas per row (gamma element (s B + b) K + j), normalised in
    log space. ``rsample_vjp``: implicit. Raising a_i moves x_i along its
    marginal Beta(a_i, a_0 - a_i) (``D_i = -(dI/da)/p``) and rescales the other
    components, whose conditional law given x_i does not involve a_i:
    ``vjp_i = D_i (g_i - sum_j g_j x_j) / (1 - x_i)``.
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
        out = self._out(n, out)
        seed, stream = self._seed_stream(seed, stream)
        if out.size:
            k = self.event_shape[0]
            alpha = np.ascontiguousarray(np.broadcast_to(self.concentration, self.shape)).reshape(-1, k)
            _backend.kernels().distributions.sample_dirichlet(out, alpha, seed, stream)
        return out

    def log_prob(self, x):
        x = self._x(x)
        a = self.concentration
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.sum((a - 1) * np.log(x), axis=-1)
        lb = np.sum(lgamma(a), axis=-1) - lgamma(np.sum(a, axis=-1, dtype=np.float64))
        return (t - lb).astype(self.dtype)

    def score(self, x):
        x = self._x(x)
        n = self._lead(x)
        a = self.concentration
        with np.errstate(divide="ignore"):
            d = np.log(x) - digamma(a) + digamma(np.sum(a, axis=-1, keepdims=True, dtype=np.float64))
        return {"concentration": self._reduce("concentration", d, n)}

    @property
    def mean(self):
        a = np.broadcast_to(self.concentration, self.shape)
        return (a / a.sum(-1, keepdims=True)).astype(self.dtype)

    @property
    def variance(self):
        a = np.broadcast_to(self.concentration, self.shape)
        a0 = a.sum(-1, keepdims=True)
        return (a * (a0 - a) / (a0 * a0 * (a0 + 1))).astype(self.dtype)

    def entropy(self):
        a = np.broadcast_to(self.concentration, self.shape).astype(np.float64)
        k = a.shape[-1]
        a0 = a.sum(-1)
        h = (np.sum(lgamma(a), -1) - lgamma(a0) + (a0 - k) * digamma(a0) - np.sum((a - 1) * digamma(a), -1))
        return h.astype(self.dtype)

    def rsample_vjp(self, x, g):
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


# ------------------------------------------------------------- discrete families
class _Logits(Distribution):
    """Families parameterised by ``logits`` or ``probs`` (exactly one)."""

    def _init_logits(self, logits, probs, event_axis, **extra):
        if (logits is None) == (probs is None):
            raise ValueError("give exactly one of logits and probs")
        if probs is not None:
            p = C.as_array(probs, "probs", min_ndim=event_axis)
            C.probability(p, "probs")
            if event_axis:
                # a dtype-aware tolerance; log_probs renormalise what is left
                tol = 1e-4 if p.dtype == np.float32 else 1e-6
                s = p.sum(-1)
                if np.any(np.abs(s - 1.0) > tol * p.shape[-1]):
                    raise ValueError("probs must sum to one along the last axis")
            self.prob_param = "probs"
            super().__init__(probs=p, **extra)
            with np.errstate(divide="ignore"):
                lg = np.log(self.probs) if event_axis else np.log(self.probs) - np.log1p(-self.probs)
            self.logits = lg.astype(self.dtype)
        else:
            lg = C.as_array(logits, "logits", min_ndim=event_axis)
            self.prob_param = "logits"
            super().__init__(logits=lg, **extra)
        self.params = tuple(extra) + (self.prob_param,)


class Bernoulli(_Logits):
    """Bernoulli(logits=None, probs=None): x in {0, 1} (as the parameters' float dtype).

    ``sample``: x = 1[u < p] with u the uniform of element i of the stream.
    ``score``: w.r.t. the parameter given (logits: x - sigmoid(logits)).
    """

    reparam = None

    def __init__(self, logits=None, probs=None):
        self._init_logits(logits, probs, 0)
        if self.prob_param == "logits":
            self.probs = _sigmoid(self.logits).astype(self.dtype)

    def sample(self, n, seed=0, stream=0, out=None):
        out = self._out(n, out)
        seed, stream = self._seed_stream(seed, stream)
        if out.size:
            u = _random.uniform(out.shape, seed=seed, stream=stream, dtype=self.dtype)
            np.less(u, self.probs, out=u)
            out[...] = u
        return out

    def _xb(self, x):
        x = self._x(x)
        if np.any((x < 0) | (x > 1)):
            raise ValueError("x must be in [0, 1]")
        return x

    def log_prob(self, x):
        x = self._xb(x)
        lg = self.logits
        with np.errstate(invalid="ignore"):
            # x log p + (1 - x) log(1 - p) with log p = -softplus(-l)
            lp = -x * _softplus(-lg) - (1 - x) * _softplus(lg)
            lp = np.where(x == 1, -_softplus(-lg), np.where(x == 0, -_softplus(lg), lp))
        return lp.astype(self.dtype)

    def score(self, x):
        x = self._xb(x)
        n = self._lead(x)
        if self.prob_param == "logits":
            return {"logits": self._reduce("logits", x - _sigmoid(self.logits), n)}
        p = self.probs
        with np.errstate(divide="ignore", invalid="ignore"):
            d = x / p - (1 - x) / (1 - p)
        return {"probs": self._reduce("probs", d, n)}

    @property
    def mean(self):
        return self._batch(self.probs)

    @property
    def variance(self):
        p = self.probs
        return self._batch(p * (1 - p))

    def entropy(self):
        lg = self.logits
        p = _sigmoid(lg)
        with np.errstate(invalid="ignore"):
            h = p * _softplus(-lg) + (1 - p) * _softplus(lg)
        return self._batch(np.nan_to_num(h, nan=0.0))


class Categorical(_Logits):
    """Categorical(logits=None, probs=None) over the last axis (K classes).

    Samples are int64 class indices ``(n, *batch_shape)``, drawn by inverse CDF
    from the uniform of element i of the stream. ``score``: w.r.t. the
    parameter given (logits: onehot(x) - softmax(logits); probs:
    onehot(x) / p_x - 1 / sum(p), the gradient of log(p_x / sum p), since
    log_prob renormalises), ``(*sample, *batch, K)``.
    """

    reparam = None

    def __init__(self, logits=None, probs=None):
        self._init_logits(logits, probs, 1)
        full = np.shape(getattr(self, self.prob_param))
        self.n_classes = full[-1]
        self.batch_shape = full[:-1]
        self.event_shape = ()
        if self.prob_param == "logits":
            self.probs = np.exp(self.log_probs)

    @property
    def log_probs(self):
        """Normalised log-probabilities ``(*batch_shape, K)``."""
        return _log_softmax(self.logits.astype(np.float64)).astype(self.dtype)

    def sample(self, n, seed=0, stream=0, out=None):
        n = self._n(n)
        shape = (n,) + self.batch_shape
        if out is None:
            out = np.empty(shape, dtype=np.int64)
        elif not isinstance(out, np.ndarray) or out.dtype != np.int64 or out.shape != shape:
            raise TypeError(f"out must be an int64 array of shape {shape}")
        seed, stream = self._seed_stream(seed, stream)
        if out.size:
            u = _random.uniform(shape, seed=seed, stream=stream, dtype=self.dtype)
            cdf = np.cumsum(np.exp(self.log_probs), axis=-1)[..., :-1]
            out[...] = np.sum(cdf < u[..., None], axis=-1)
        return out

    def _xc(self, x):
        if x is None:
            raise TypeError("x must be an array of class indices, got None")
        a = np.asarray(x)
        if a.dtype.kind not in "biuf":
            raise TypeError(f"x must be an array of class indices, got dtype {a.dtype}")
        if a.dtype.kind == "f" and np.any(a != np.round(a)):
            raise ValueError("x must hold integer class indices")
        nd = len(self.batch_shape)
        if a.ndim < nd or tuple(a.shape[a.ndim - nd:]) != tuple(self.batch_shape):
            raise ValueError(f"x must have shape (..., {', '.join(map(str, self.batch_shape))}), got {a.shape}")
        if a.size and (a.min() < 0 or a.max() >= self.n_classes):
            raise ValueError(f"x must hold class indices in [0, {self.n_classes})")
        return a.astype(np.int64)

    def _lead(self, x):
        return x.ndim - len(self.batch_shape)

    def log_prob(self, x):
        x = self._xc(x)
        lp = np.broadcast_to(self.log_probs, x.shape + (self.n_classes,))
        return np.take_along_axis(lp, x[..., None], axis=-1)[..., 0]

    def score(self, x):
        x = self._xc(x)
        n = self._lead(x)
        onehot = (x[..., None] == np.arange(self.n_classes)).astype(self.dtype)
        if self.prob_param == "logits":
            return {"logits": self._reduce("logits", onehot - self.probs, n)}
        with np.errstate(divide="ignore", invalid="ignore"):
            d = onehot / self.probs - 1.0 / np.sum(self.probs, -1, keepdims=True)
        return {"probs": self._reduce("probs", d, n)}

    def entropy(self):
        lp = np.broadcast_to(self.log_probs, self.batch_shape + (self.n_classes,))
        p = np.exp(lp)
        return -np.sum(np.where(p > 0, p * lp, 0.0), axis=-1).astype(self.dtype)


class RelaxedBernoulli(_Logits):
    """RelaxedBernoulli(temperature, logits=None, probs=None): the binary Concrete.

    x = sigmoid((logits + L) / temperature), L standard logistic (element i of
    the stream), in (0, 1). Pathwise ``rsample_vjp`` in logits (or probs) and
    temperature, from x alone. No closed-form entropy, mean or variance.
    """

    reparam = "pathwise"

    def __init__(self, temperature, logits=None, probs=None):
        t = C.as_array(temperature, "temperature")
        C.positive(t, "temperature")
        self._init_logits(logits, probs, 0, temperature=t)
        self.params = ("temperature", self.prob_param)

    def _dlogits(self, d):
        """Map a gradient w.r.t. logits to the parameter given (probs: dl/dp = 1/(p(1-p)))."""
        if self.prob_param == "logits":
            return d
        p = self.probs
        with np.errstate(divide="ignore"):
            return d / (p * (1 - p))

    def sample(self, n, seed=0, stream=0, out=None):
        t = self.temperature
        out = self._sample_locscale("logistic", n, seed, stream, out, self.logits / t, 1.0 / t)
        out[...] = _sigmoid(out)
        return out

    def _parts(self, x):
        x = self._x(x)
        with np.errstate(divide="ignore"):
            return x, np.log(x), np.log1p(-x)

    def log_prob(self, x):
        x, lx, l1x = self._parts(x)
        t, lg = self.temperature, self.logits
        lp = np.log(t) + lg - (t + 1) * (lx + l1x) - 2 * np.logaddexp(lg - t * lx, -t * l1x)
        return lp.astype(self.dtype)

    def score(self, x):
        x, lx, l1x = self._parts(x)
        n = self._lead(x)
        t, lg = self.temperature, self.logits
        w = _sigmoid(lg - t * lx + t * l1x)
        d_t = 1.0 / t - (lx + l1x) + 2 * (w * lx + (1 - w) * l1x)
        return {"temperature": self._reduce("temperature", d_t, n),
                self.prob_param: self._reduce(self.prob_param, self._dlogits(1.0 - 2.0 * w), n)}

    def rsample_vjp(self, x, g):
        x, lx, l1x = self._parts(x)
        g = self._check_g(x, g)
        n = self._lead(x)
        t = self.temperature
        gx = g * x * (1 - x) / t
        return {"temperature": self._reduce("temperature", -gx * (lx - l1x), n),
                self.prob_param: self._reduce(self.prob_param, self._dlogits(gx), n)}


class RelaxedCategorical(Distribution):
    """RelaxedCategorical(temperature, logits=None, probs=None): the Concrete / Gumbel-softmax.

    x = softmax((logits + G) / temperature) over the last axis (K), G standard
    Gumbel (elements of the stream); samples ``(n, *batch_shape, K)`` on the
    simplex. Pathwise ``rsample_vjp`` in logits (or probs, through
    logits = log probs) and temperature, from x alone. ``temperature`` has the
    batch shape (or broadcasts to it).
    """

    reparam = "pathwise"
    event_ndim = 1

    def __init__(self, temperature, logits=None, probs=None):
        if (logits is None) == (probs is None):
            raise ValueError("give exactly one of logits and probs")
        t = C.as_array(temperature, "temperature")
        C.positive(t, "temperature")
        name = "logits" if probs is None else "probs"
        lg = C.as_array(logits if probs is None else probs, name, min_ndim=1)
        if lg.shape[-1] < 2:
            raise ValueError(f"{name} must have at least 2 classes on its last axis, got shape {lg.shape}")
        if probs is not None:
            C.probability(lg, "probs")
        self.dtype = C.result_dtype(t, lg)
        self.temperature = np.asarray(t, dtype=self.dtype, order="C")
        setattr(self, name, np.asarray(lg, dtype=self.dtype, order="C"))
        self.prob_param = name
        self.params = ("temperature", name)
        self._param_shapes = {"temperature": t.shape, name: lg.shape}
        try:
            self.batch_shape = np.broadcast_shapes(t.shape, lg.shape[:-1])
        except ValueError as exc:
            raise ValueError(f"parameter shapes do not broadcast: temperature {t.shape}, {name} {lg.shape}") from exc
        self.event_shape = (lg.shape[-1],)
        with np.errstate(divide="ignore"):
            self.logits = (np.log(self.probs) if name == "probs" else self.logits).astype(self.dtype)

    def _t(self):
        return self.temperature[..., None]

    def sample(self, n, seed=0, stream=0, out=None):
        t = self._t()
        out = self._sample_locscale("gumbel", n, seed, stream, out, self.logits / t,
                                    np.broadcast_to(1.0 / t, self.shape))
        out[...] = np.exp(_log_softmax(out.astype(np.float64)))
        return out

    def _sample_locscale(self, family, n, seed, stream, out, loc, scale):
        out = self._out(n, out)
        seed, stream = self._seed_stream(seed, stream)
        if out.size:
            _backend.kernels().distributions.sample_locscale(out, self._flat(loc, self.shape), self._flat(scale, self.shape),
                                                             LocScaleFamily[family], seed, stream)
        return out

    def _parts(self, x):
        x = self._x(x)
        with np.errstate(divide="ignore"):
            return x, np.log(x)

    def _dlogits(self, d):
        if self.prob_param == "logits":
            return d
        with np.errstate(divide="ignore", invalid="ignore"):
            return d / self.probs

    def log_prob(self, x):
        x, lx = self._parts(x)
        t = self._t()
        k = self.event_shape[0]
        y = self.logits - t * lx
        m = np.max(y, axis=-1, keepdims=True)
        lse = (m + np.log(np.sum(np.exp(y - m), axis=-1, keepdims=True)))[..., 0]
        lp = (math.lgamma(k) + (k - 1) * np.log(self.temperature)
              + np.sum(self.logits - (t + 1) * lx, axis=-1) - k * lse)
        return lp.astype(self.dtype)

    def score(self, x):
        x, lx = self._parts(x)
        n = self._lead(x)
        t = self._t()
        k = self.event_shape[0]
        s = np.exp(_log_softmax(self.logits - t * lx))
        d_t = (k - 1) / self.temperature - np.sum(lx, -1) + k * np.sum(s * lx, -1)
        return {"temperature": self._reduce("temperature", d_t, n),
                self.prob_param: self._reduce(self.prob_param, self._dlogits(1.0 - k * s), n)}

    def rsample_vjp(self, x, g):
        x, lx = self._parts(x)
        g = self._check_g(x, g)
        n = self._lead(x)
        t = self._t()
        gx = g * x
        d_l = (gx - x * np.sum(gx, -1, keepdims=True)) / t
        with np.errstate(invalid="ignore"):
            xl = np.where(x > 0, x * lx, 0.0)
            d_t = -np.sum(gx * (lx - np.sum(xl, -1, keepdims=True)), -1) / self.temperature
        return {"temperature": self._reduce("temperature", d_t, n),
                self.prob_param: self._reduce(self.prob_param, self._dlogits(d_l), n)}


# -------------------------------------------------------- multivariate normal
def _tri_solve(L, v, batch, trans=False):
    """L^-1 v (or L^-T v) for v (*lead, *batch, k) and lower-triangular L (*batch, k, k)."""
    from scipy.linalg import solve_triangular

    k = v.shape[-1]
    n_lead = v.ndim - len(batch) - 1
    lead = v.shape[:n_lead]
    v2 = v.reshape((-1,) + tuple(batch) + (k,))
    if not batch:
        sol = solve_triangular(L, v2.T, lower=True, trans=1 if trans else 0, check_finite=False).T
        return sol.reshape(v.shape)
    Lb = np.broadcast_to(L, tuple(batch) + (k, k))
    if trans:
        Lb = np.swapaxes(Lb, -1, -2)
    rhs = np.moveaxis(v2, 0, -1)  # (*batch, k, N)
    sol = np.linalg.solve(Lb, rhs)
    return np.moveaxis(sol, -1, 0).reshape(lead + tuple(batch) + (k,))


class MultivariateNormal(Distribution):
    """MultivariateNormal(loc, scale_tril): loc (*batch, k), scale_tril (*batch, k, k).

    ``scale_tril`` is lower triangular with a positive diagonal (covariance
    L L^T). Pathwise: x = loc + L z. ``score``/``rsample_vjp`` w.r.t.
    ``scale_tril`` are lower triangular.
    """

    params = ("loc", "scale_tril")
    reparam = "pathwise"
    event_ndim = 1

    def __init__(self, loc, scale_tril):
        m = C.as_array(loc, "loc", min_ndim=1)
        L = C.as_array(scale_tril, "scale_tril", min_ndim=2)
        k = m.shape[-1]
        if L.shape[-2:] != (k, k):
            raise ValueError(f"scale_tril must have shape (..., {k}, {k}) to match loc {m.shape}, got {L.shape}")
        if np.any(np.triu(L, 1) != 0):
            raise ValueError("scale_tril must be lower triangular")
        if np.any(np.diagonal(L, axis1=-2, axis2=-1) <= 0):
            raise ValueError("scale_tril must have a positive diagonal")
        self.dtype = C.result_dtype(m, L)
        self.loc = np.asarray(m, dtype=self.dtype, order="C")
        self.scale_tril = np.asarray(L, dtype=self.dtype, order="C")
        self._param_shapes = {"loc": m.shape, "scale_tril": L.shape}
        try:
            self.batch_shape = np.broadcast_shapes(m.shape[:-1], L.shape[:-2])
        except ValueError as exc:
            raise ValueError(f"parameter shapes do not broadcast: loc {m.shape}, scale_tril {L.shape}") from exc
        self.event_shape = (k,)

    def sample(self, n, seed=0, stream=0, out=None):
        out = self._out(n, out)
        seed, stream = self._seed_stream(seed, stream)
        if out.size:
            z = np.empty(out.shape, dtype=self.dtype)
            _backend.kernels().random.fill_normal(z, seed, stream, 0)
            np.add(self.loc, np.einsum("...ij,...j->...i", self.scale_tril, z), out=out)
        return out

    def _w(self, x):
        return _tri_solve(self.scale_tril, x - self.loc, self.batch_shape)

    def _logdiag(self):
        return np.log(np.diagonal(self.scale_tril, axis1=-2, axis2=-1))

    def log_prob(self, x):
        x = self._x(x)
        w = self._w(x)
        k = self.event_shape[0]
        return (-0.5 * np.sum(w * w, -1) - np.sum(self._logdiag(), -1) - 0.5 * k * _LOG_2PI).astype(self.dtype)

    def score(self, x):
        x = self._x(x)
        n = self._lead(x)
        w = self._w(x)
        u = _tri_solve(self.scale_tril, w, self.batch_shape, trans=True)  # Sigma^-1 (x - loc)
        dL = np.tril(u[..., :, None] * w[..., None, :])
        k = self.event_shape[0]
        dL = dL - np.eye(k) / np.diagonal(self.scale_tril, axis1=-2, axis2=-1)[..., None, :]
        return {"loc": self._reduce("loc", u, n), "scale_tril": self._reduce("scale_tril", dL, n)}

    @property
    def mean(self):
        return np.broadcast_to(self.loc, self.shape).copy()

    @property
    def covariance_matrix(self):
        L = self.scale_tril
        return np.broadcast_to(L @ np.swapaxes(L, -1, -2), self.batch_shape + self.event_shape * 2).copy()

    @property
    def variance(self):
        return np.broadcast_to(np.sum(self.scale_tril ** 2, -1), self.shape).copy()

    def entropy(self):
        k = self.event_shape[0]
        h = 0.5 * k * (1.0 + _LOG_2PI) + np.sum(self._logdiag(), -1)
        return np.broadcast_to(h, self.batch_shape).astype(self.dtype)

    def rsample_vjp(self, x, g):
        x = self._x(x)
        g = self._check_g(x, g)
        n = self._lead(x)
        w = self._w(x)
        return {"loc": self._reduce("loc", g, n),
                "scale_tril": self._reduce("scale_tril", np.tril(g[..., :, None] * w[..., None, :]), n)}


# ---------------------------------------------------------------------- KL
_KL = {}


def register_kl(p_type, q_type):
    """Decorator registering ``fn(p, q)`` as KL(p || q) for the two types."""

    def deco(fn):
        _KL[(p_type, q_type)] = fn
        return fn

    return deco


def kl_divergence(p, q):
    """KL(p || q) in nats, closed form, shape ``broadcast(p.batch_shape, q.batch_shape)``."""
    fn = _KL.get((type(p), type(q)))
    if fn is None:
        raise TypeError(f"no closed-form KL divergence for {type(p).__name__} || {type(q).__name__}")
    return fn(p, q)


@register_kl(Normal, Normal)
def _kl_normal_normal(p, q):
    """KL between two normals (also used for two log-normals)."""
    vr = (p.scale / q.scale) ** 2
    t = ((p.loc - q.loc) / q.scale) ** 2
    return 0.5 * (vr + t - 1.0 - np.log(vr))


@register_kl(LogNormal, LogNormal)
def _kl_lognormal_lognormal(p, q):
    return _kl_normal_normal(p, q)


@register_kl(MultivariateNormal, MultivariateNormal)
def _kl_mvn_mvn(p, q):
    if p.event_shape != q.event_shape:
        raise ValueError(f"event shapes differ: {p.event_shape} and {q.event_shape}")
    batch = np.broadcast_shapes(p.batch_shape, q.batch_shape)
    k = p.event_shape[0]
    Lp = np.broadcast_to(p.scale_tril, batch + (k, k))
    Lq = np.broadcast_to(q.scale_tril, batch + (k, k))
    M = np.linalg.solve(Lq, Lp)
    d = np.linalg.solve(Lq, (np.broadcast_to(q.loc - p.loc, batch + (k,)))[..., None])[..., 0]
    logdet = np.sum(np.log(np.diagonal(Lq, axis1=-2, axis2=-1)) - np.log(np.diagonal(Lp, axis1=-2, axis2=-1)), -1)
    return 0.5 * (np.sum(M * M, axis=(-2, -1)) + np.sum(d * d, -1) - k) + logdet


@register_kl(Exponential, Exponential)
def _kl_exp_exp(p, q):
    r = q.rate / p.rate
    return r - 1.0 - np.log(r)


@register_kl(Uniform, Uniform)
def _kl_uniform_uniform(p, q):
    inside = (q.low <= p.low) & (p.high <= q.high)
    with np.errstate(divide="ignore"):
        return np.where(inside, np.log((q.high - q.low) / (p.high - p.low)), np.inf)


@register_kl(Laplace, Laplace)
def _kl_laplace_laplace(p, q):
    d = np.abs(p.loc - q.loc)
    return np.log(q.scale / p.scale) + d / q.scale + p.scale / q.scale * np.exp(-d / p.scale) - 1.0


@register_kl(Gumbel, Gumbel)
def _kl_gumbel_gumbel(p, q):
    r = p.scale / q.scale
    return (-np.log(r) + (p.loc - q.loc) / q.scale + _EULER * r
            + np.exp((q.loc - p.loc) / q.scale + lgamma(1.0 + r)) - 1.0 - _EULER).astype(p.dtype)


@register_kl(Gamma, Gamma)
def _kl_gamma_gamma(p, q):
    a1, r1 = p.concentration, p.rate
    a2, r2 = q.concentration, q.rate
    kl = ((a1 - a2) * digamma(a1) - lgamma(a1) + lgamma(a2) + a2 * (np.log(r1) - np.log(r2))
          + a1 * (r2 - r1) / r1)
    return kl.astype(np.result_type(p.dtype, q.dtype))


@register_kl(Exponential, Gamma)
def _kl_exp_gamma(p, q):
    return _kl_gamma_gamma(Gamma(np.ones_like(p.rate), p.rate), q)


@register_kl(Gamma, Exponential)
def _kl_gamma_exp(p, q):
    return _kl_gamma_gamma(p, Gamma(np.ones_like(q.rate), q.rate))


@register_kl(Beta, Beta)
def _kl_beta_beta(p, q):
    a1, b1 = p.concentration1, p.concentration0
    a2, b2 = q.concentration1, q.concentration0
    kl = (_lbeta(a2, b2) - _lbeta(a1, b1) + (a1 - a2) * digamma(a1) + (b1 - b2) * digamma(b1)
          + (a2 - a1 + b2 - b1) * digamma(a1 + b1))
    return kl.astype(np.result_type(p.dtype, q.dtype))


@register_kl(Dirichlet, Dirichlet)
def _kl_dirichlet_dirichlet(p, q):
    a, b = p.concentration.astype(np.float64), q.concentration.astype(np.float64)
    a0, b0 = a.sum(-1), b.sum(-1)
    kl = (lgamma(a0) - np.sum(lgamma(a), -1) - lgamma(b0) + np.sum(lgamma(b), -1)
          + np.sum((a - b) * (digamma(a) - digamma(a0)[..., None]), -1))
    return kl.astype(np.result_type(p.dtype, q.dtype))


@register_kl(Bernoulli, Bernoulli)
def _kl_bernoulli_bernoulli(p, q):
    lp, lq = p.logits.astype(np.float64), q.logits.astype(np.float64)
    pp = _sigmoid(lp)
    # p log(p/q) + (1-p) log((1-p)/(1-q)) with log p = -softplus(-l), log(1-p) = -softplus(l)
    with np.errstate(invalid="ignore"):
        t1 = np.where(pp > 0, pp * (_softplus(-lq) - _softplus(-lp)), 0.0)
        t0 = np.where(pp < 1, (1 - pp) * (_softplus(lq) - _softplus(lp)), 0.0)
    return (t1 + t0).astype(np.result_type(p.dtype, q.dtype))


@register_kl(Categorical, Categorical)
def _kl_categorical_categorical(p, q):
    if p.n_classes != q.n_classes:
        raise ValueError(f"numbers of classes differ: {p.n_classes} and {q.n_classes}")
    lp, lq = p.log_probs.astype(np.float64), q.log_probs.astype(np.float64)
    pp = np.exp(lp)
    with np.errstate(invalid="ignore"):
        t = np.where(pp > 0, pp * (lp - lq), 0.0)
    return np.sum(t, -1).astype(np.result_type(p.dtype, q.dtype))
