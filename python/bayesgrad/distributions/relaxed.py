"""Continuous relaxations of the discrete families: RelaxedBernoulli and
RelaxedCategorical (the Concrete / Gumbel-softmax distributions, pathwise). Both
take a temperature and exactly one of ``logits`` and ``probs``.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _backend
from .._codes import LocScaleFamily
from .. import _checks as C
from .._numerics import log_softmax, sigmoid
from ._base import Distribution, clamp_into_support
from .discrete import _Logits


class RelaxedBernoulli(_Logits):
    """The binary Concrete (relaxed Bernoulli) distribution on (0, 1).

    The parameters broadcast together to ``batch_shape``.

    x = sigmoid((logits + L) / temperature), L standard logistic (element i of
    the stream), in (0, 1). Pathwise ``rsample_vjp`` in logits (or probs) and
    temperature, from x alone. No closed-form entropy, mean or variance.
    Draws are clamped into the open interval (the smallest positive normal
    number, the largest float below 1): at low temperatures they would round to
    exact 0 or 1, where the log-density and its gradients are NaN.

    Parameters
    ----------
    temperature : array_like of any shape, > 0
    logits : array_like of any shape, or
    probs : array_like of any shape, in [0, 1]; give exactly one of the two
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
        t = self.temperature
        out = self._sample_locscale("logistic", n, seed, stream, out, self.logits / t, 1.0 / t)
        out[...] = sigmoid(out)
        return clamp_into_support(out, 1)  # a low temperature rounds to exact 0 / 1

    def _parts(self, x):
        x = self._x(x)
        with np.errstate(divide="ignore", invalid="ignore"):  # outside (0, 1): masked by log_prob
            return x, np.log(x), np.log1p(-x)

    def log_prob(self, x):
        """Log density (nats) at ``x``; -inf outside the open interval (0, 1).

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape)`` array

        Returns
        -------
        ``(*sample_shape, *batch_shape)`` array
        """
        return self._kernel(self._x(x), False)

    def score(self, x):
        """Gradients of ``log_prob(x)`` with respect to each parameter.

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape)`` array

        Returns
        -------
        dict {param: ``(*sample_shape, *param.shape)``}, summed over the dimensions a parameter was broadcast along;
        at x = 0 / 1 the limits (temperature -inf, logits -1 / +1), beyond [0, 1] zero (the density vanishes)
        """
        x = self._x(x)
        n = self._lead(x)
        g = self._kernel(x, True)
        return {"temperature": self._reduce("temperature", g[0], n),
                self.prob_param: self._reduce(self.prob_param, self._dlogits(g[1]), n)}

    def _kernel(self, x, grads):
        """log p(x) (x's shape), or the (2, *x.shape) [d/d temperature, d/d logits] with ``grads``, from one
        kernel pass (relaxed_bernoulli_log_prob, in float64 for either dtype)."""
        out = _backend.empty(((2,) if grads else ()) + x.shape, self.dtype)  # (the output cache)
        if x.size:
            _backend.kernels().distributions.relaxed_bernoulli_log_prob(
                x, self._flat(self.temperature), self._flat(self.logits), None if grads else out,
                out if grads else None)
        return out

    def rsample_vjp(self, x, g):
        """Per-sample vector-Jacobian products ``g . dx/dparam`` at samples ``x``.

        The reparameterisation gradient used by ``bg.estimators.pathwise``;
        pathwise: x = sigmoid((logits + L) / temperature), from x alone.

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape)`` samples of this distribution
        g : array shaped like ``x``, the cotangent (e.g. df/dx at x)

        Returns
        -------
        dict {param: ``(*sample_shape, *param.shape)``}
        """
        x, lx, l1x = self._parts(x)
        g = self._check_g(x, g)
        n = self._lead(x)
        t = self.temperature
        gx = g * x * (1 - x) / t
        return {"temperature": self._reduce("temperature", -gx * (lx - l1x), n),
                self.prob_param: self._reduce(self.prob_param, self._dlogits(gx), n)}


class RelaxedCategorical(Distribution):
    """The Concrete (Gumbel-softmax, relaxed categorical) distribution on the simplex.

    x = softmax((logits + G) / temperature) over the last axis (K), G standard
    Gumbel (elements of the stream); samples ``(n, *batch_shape, K)`` on the
    simplex. Pathwise ``rsample_vjp`` in logits (or probs, through
    logits = log probs) and temperature, from x alone. ``temperature`` has the
    batch shape (or broadcasts to it). Coordinates of a draw are at least the
    smallest positive normal number of the dtype: at low temperatures (1e-8) they
    would round to an exact one-hot vector, where the log-density and its
    temperature gradient are NaN; clamped, they are finite.

    Parameters
    ----------
    temperature : array_like of any shape broadcasting with ``batch_shape``, > 0
    logits : array_like, shape ``(*batch_shape, K)`` with K >= 2, or
    probs : array_like, shape ``(*batch_shape, K)``; give exactly one of the two
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
        t = self._t()
        out = self._sample_locscale("gumbel", n, seed, stream, out, self.logits / t,
                                    np.broadcast_to(1.0 / t, self.shape))
        out[...] = np.exp(log_softmax(out.astype(np.float64)))
        return clamp_into_support(out)  # a low temperature rounds to an exact one-hot vector

    def _sample_locscale(self, family, n, seed, stream, out, loc, scale):
        out = self._out(n, out)
        seed, stream = self._seed_stream(seed, stream)
        if out.size:
            _backend.kernels().distributions.sample_locscale(out, self._flat(loc, self.shape), self._flat(scale, self.shape),
                                               LocScaleFamily[family], seed, stream)
        return out

    def _parts(self, x):
        x = self._x(x)
        with np.errstate(divide="ignore", invalid="ignore"):  # outside the support: masked by log_prob
            return x, np.log(x)

    def _dlogits(self, d):
        if self.prob_param == "logits":
            return d
        with np.errstate(divide="ignore", invalid="ignore"):
            return d / self.probs

    def log_prob(self, x):
        """Log density (nats) at ``x``; -inf where a coordinate of x is not positive and finite.

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape, K)`` array

        Returns
        -------
        ``(*sample_shape, *batch_shape)`` array
        """
        return self._log_prob_all(self._x(x), False)[0]

    def _log_prob_all(self, x, grads):
        """(log p(x), None, None) or (log p(x), d/d temperature, d/d logits) from one kernel pass
        (relaxed_categorical_log_prob, in float64 for either dtype): c - (t + 1) sum ln x - K logsumexp(logits -
        t ln x), c = lgamma(K) + (K - 1) ln t + sum logits per coordinate, here."""
        lp = _backend.empty(x.shape[:-1], self.dtype)  # (the output cache)
        g_t = _backend.empty(x.shape[:-1], self.dtype) if grads else None
        g_l = _backend.empty(x.shape, self.dtype) if grads else None
        if x.size:
            k = self.event_shape[0]
            t = self._flat(self.temperature)
            lg = self._flat(self.logits, self.shape)
            c = (math.lgamma(k) + (k - 1) * np.log(t.astype(np.float64))
                 + lg.astype(np.float64).reshape(-1, k).sum(-1))
            _backend.kernels().distributions.relaxed_categorical_log_prob(x, t, lg, c, lp, g_t, g_l)
        return lp, g_t, g_l

    def score(self, x):
        """Gradients of ``log_prob(x)`` with respect to each parameter (NaN for a draw with a coordinate that is
        not positive and finite, where the density vanishes).

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape, K)`` array

        Returns
        -------
        dict {param: ``(*sample_shape, *param.shape)``}, summed over the dimensions a parameter was broadcast along
        """
        x = self._x(x)
        n = self._lead(x)
        _, d_t, d_l = self._log_prob_all(x, True)  # (NaN where the density vanishes)
        return {"temperature": self._reduce("temperature", d_t, n),
                self.prob_param: self._reduce(self.prob_param, self._dlogits(d_l), n)}

    def rsample_vjp(self, x, g):
        """Per-sample vector-Jacobian products ``g . dx/dparam`` at samples ``x``.

        The reparameterisation gradient used by ``bg.estimators.pathwise``;
        pathwise: x = softmax((logits + G) / temperature), from x alone.

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape, K)`` samples of this distribution
        g : array shaped like ``x``, the cotangent (e.g. df/dx at x)

        Returns
        -------
        dict {param: ``(*sample_shape, *param.shape)``}
        """
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
