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

import math

import numpy as np

from . import _checks as C
from . import random as _random

__all__ = ["Distribution", "Normal", "kl_divergence", "register_kl"]

_LOG_2PI = math.log(2.0 * math.pi)


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


class Distribution:
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
            setattr(self, name, np.ascontiguousarray(a, dtype=self.dtype))
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

    # -- interface -----------------------------------------------------------
    def sample(self, n, seed=0, stream=0):
        raise NotImplementedError  # every concrete family overrides it

    def log_prob(self, x):
        raise NotImplementedError

    def score(self, x):
        raise NotImplementedError

    def entropy(self):
        raise NotImplementedError

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


class Normal(Distribution):
    """Normal(loc, scale), scale > 0. Pathwise: x = loc + scale * z."""

    params = ("loc", "scale")
    reparam = "pathwise"

    def __init__(self, loc, scale):
        super().__init__(loc=loc, scale=scale)
        C.positive(self.scale, "scale")

    def sample(self, n, seed=0, stream=0):
        z = self._normals(n, seed, stream)
        z *= self.scale
        z += self.loc
        return z

    @property
    def mean(self):
        return np.broadcast_to(self.loc, self.batch_shape).copy()

    @property
    def variance(self):
        return np.broadcast_to(self.scale ** 2, self.batch_shape).copy()

    def log_prob(self, x):
        x = self._x(x)
        z = (x - self.loc) / self.scale
        return -0.5 * z * z - np.log(self.scale) - 0.5 * _LOG_2PI

    def score(self, x):
        x = self._x(x)
        n = self._lead(x)
        z = (x - self.loc) / self.scale
        return {"loc": self._reduce("loc", z / self.scale, n),
                "scale": self._reduce("scale", (z * z - 1.0) / self.scale, n)}

    def entropy(self):
        return np.broadcast_to(0.5 * (_LOG_2PI + 1.0) + np.log(self.scale), self.batch_shape).copy()

    def rsample_vjp(self, x, g):
        x = self._x(x)
        g = self._check_g(x, g)
        n = self._lead(x)
        return {"loc": self._reduce("loc", g, n),
                "scale": self._reduce("scale", g * (x - self.loc) / self.scale, n)}


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
    vr = (p.scale / q.scale) ** 2
    t = ((p.loc - q.loc) / q.scale) ** 2
    return 0.5 * (vr + t - 1.0 - np.log(vr))
