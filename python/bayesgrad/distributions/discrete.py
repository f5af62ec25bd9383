"""Discrete families: Bernoulli, Categorical (score only; Gumbel-top-k sampling
without replacement), Poisson. Bernoulli and Categorical take exactly one of
``logits`` and ``probs``; their continuous relaxations are in ``relaxed``.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _backend
from .. import _scratch
from .. import _checks as C
from .. import random as _random
from .._numerics import log_softmax, sigmoid, softplus
from ._base import Distribution, lgamma

_POISSON_MAX_RATE = 1e10  # the samplers' limit (cpp/include/bayesgrad/samplers.hpp kPoissonMaxRate)
_FACTORIAL_TABLE = 1024  # log k! looked up below this count
_log_factorials = {}  # backend name -> lgamma(k + 1) for k < _FACTORIAL_TABLE


def _log_factorial(x, hi=None):
    """log x! = lgamma(x + 1) of non-negative integer counts x (float64; hi: their maximum if known), the
    same values as lgamma's: counts below _FACTORIAL_TABLE from a table of lgamma's own values (a lookup
    instead of a lgamma per element, which was most of log_prob's time)."""
    if x.size == 0 or (x.max() if hi is None else hi) >= _FACTORIAL_TABLE:
        return lgamma(x + 1.0)
    backend = _backend.get_backend()
    table = _log_factorials.get(backend)
    if table is None:
        table = _log_factorials[backend] = lgamma(np.arange(1.0, _FACTORIAL_TABLE + 1.0))
    idx = _backend.empty(x.shape, np.intp)
    np.copyto(idx, x, casting="unsafe")
    return table.take(idx, out=_backend.empty(x.shape, np.float64))


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
    """The Bernoulli distribution: x in {0, 1} (as the parameters' float dtype).

    ``sample``: x = 1[u < p] with u the uniform of element i of the stream.
    ``score``: w.r.t. the parameter given (logits: x - sigmoid(logits)).

    Parameters
    ----------
    logits : array_like of any shape (the ``batch_shape``), log(p / (1 - p)), or
    probs : array_like of any shape, p = P(x = 1) in [0, 1]; give exactly one of the two
    """

    reparam = None

    def __init__(self, logits=None, probs=None):
        self._init_logits(logits, probs, 0)
        if self.prob_param == "logits":
            self.probs = sigmoid(self.logits).astype(self.dtype)

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
            u = _random.uniform(out.shape, seed=seed, stream=stream, dtype=self.dtype)
            np.less(u, self.probs, out=u)
            out[...] = u
        return out

    def _xb(self, x):
        x, lo, hi = self._x_range(x)
        if x.size and (lo < 0 or hi > 1):
            raise ValueError("x must be in [0, 1]")
        return x

    def log_prob(self, x):
        """Log probability (nats) at ``x``.

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape)`` array

        Returns
        -------
        ``(*sample_shape, *batch_shape)`` array
        """
        x = self._xb(x)
        lg = self.logits
        with np.errstate(invalid="ignore"):
            lp1, lp0 = -softplus(-lg), -softplus(lg)  # log p, log(1 - p)
        # x log p + (1 - x) log(1 - p) in one kernel pass, exactly log p at x = 1 and log(1 - p) at x = 0 (also
        # where the other is -inf)
        out = _backend.empty(x.shape, self.dtype)  # (the output cache)
        if x.size:
            _backend.kernels().distributions.bernoulli_log_prob(x, self._flat(lp1), self._flat(lp0), out)
        return out

    def score(self, x):
        """Gradients of ``log_prob(x)`` with respect to each parameter.

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape)`` array

        Returns
        -------
        dict {param: ``(*sample_shape, *param.shape)``}, summed over the dimensions a parameter was broadcast along
        """
        x = self._xb(x)
        n = self._lead(x)
        if self.prob_param == "logits":
            # (into an array from the output cache: a fresh one of x's size costs its page faults)
            d = np.subtract(x, sigmoid(self.logits).astype(self.dtype), out=_backend.empty(x.shape, self.dtype))
            return {"logits": self._reduce("logits", d, n)}
        p = self.probs
        with np.errstate(divide="ignore", invalid="ignore"):
            # each term only where its indicator is non-zero: x = 1 at p = 1 has score 1, not 1 - 0 / 0
            d = np.where(x == 0, 0.0, x / p) - np.where(x == 1, 0.0, (1 - x) / (1 - p))
        return {"probs": self._reduce("probs", d.astype(self.dtype, copy=False), n)}

    @property
    def mean(self):
        """The mean, ``(*batch_shape)`` array."""
        return self._batch(self.probs)

    @property
    def variance(self):
        """The variance, ``(*batch_shape)`` array."""
        p = self.probs
        return self._batch(p * (1 - p))

    def entropy(self):
        """The entropy (nats), ``(*batch_shape)`` array."""
        # symmetric in the logit: softplus(-|l|) + |l| sigmoid(-|l|), where the direct form cancels
        # (softplus(40) - 40 sigmoid(40)) for |l| >~ 20
        m = np.abs(self.logits)
        with np.errstate(invalid="ignore"):
            h = softplus(-m) + m * sigmoid(-m)
        return self._batch(np.nan_to_num(h, nan=0.0))


class Categorical(_Logits):
    """The categorical distribution over K classes (the last axis).

    Samples are int64 class indices ``(n, *batch_shape)``, drawn by inverse CDF
    from the uniform of element i of the stream. ``score``: w.r.t. the
    parameter given (logits: onehot(x) - softmax(logits); probs:
    onehot(x) / p_x - 1 / sum(p), the gradient of log(p_x / sum p), since
    log_prob renormalises), ``(*sample, *batch, K)``.

    Parameters
    ----------
    logits : array_like, shape ``(*batch_shape, K)``, unnormalised log-probabilities, or
    probs : array_like, shape ``(*batch_shape, K)``, probabilities summing to one
        along the last axis; give exactly one of the two
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
        return log_softmax(self.logits.astype(np.float64)).astype(self.dtype)

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
        ``(n, *batch_shape)`` int64 class indices
        """
        n = self._n(n)
        shape = (n,) + self.batch_shape
        if out is None:
            out = np.empty(shape, dtype=np.int64)
        elif not isinstance(out, np.ndarray) or out.dtype != np.int64 or out.shape != shape:
            raise TypeError(f"out must be an int64 array of shape {shape}")
        seed, stream = self._seed_stream(seed, stream)
        if out.size:
            u = _random.uniform(shape, seed=seed, stream=stream, dtype=self.dtype)
            k = self.n_classes
            rows = math.prod(self.batch_shape)
            cdf = np.ascontiguousarray(np.cumsum(np.exp(self.log_probs), axis=-1)[..., :-1].reshape(rows, k - 1))
            # the count of partial sums below u, per class (no (n, *batch, K - 1) temporary)
            dst = out if out.flags.c_contiguous else np.empty(shape, dtype=np.int64)
            _backend.kernels().distributions.categorical_from_uniform(u, cdf, dst)
            if dst is not out:
                out[...] = dst
        return out

    def sample_without_replacement(self, n, k, seed=0, stream=0):
        """n samples of k distinct joint configurations (Gumbel-top-k; see ``gumbel_top_k``).

        Parameters
        ----------
        n : int >= 1
        k : int, at most the K^D configurations of the joint support
        seed : int or None
        stream : int

        Returns
        -------
        TopK: samples ``(n, k, *batch_shape)`` int64 in the order drawn, their joint log_prob
        (n, k), perturbed log-probabilities (n, k) and the threshold (n,)
        """
        return gumbel_top_k(self, k, n, seed, stream)

    def _xc(self, x):
        if x is None:
            raise TypeError("x must be an array of class indices, got None")
        a = C.to_numpy(x, "x")
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
        """Log probability (nats) at ``x``.

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape)`` array of class indices

        Returns
        -------
        ``(*sample_shape, *batch_shape)`` array
        """
        x = self._xc(x)
        lp = np.broadcast_to(self.log_probs, x.shape + (self.n_classes,))
        return np.take_along_axis(lp, x[..., None], axis=-1)[..., 0]

    def score(self, x):
        """Gradients of ``log_prob(x)`` with respect to each parameter.

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape)`` array of class indices

        Returns
        -------
        dict {param: ``(*sample_shape, *param.shape)``}, summed over the dimensions a parameter was broadcast along
        """
        x = self._xc(x)
        n = self._lead(x)
        onehot = (x[..., None] == np.arange(self.n_classes)).astype(self.dtype)
        if self.prob_param == "logits":
            return {"logits": self._reduce("logits", onehot - self.probs, n)}
        with np.errstate(divide="ignore", invalid="ignore"):
            # onehot / probs only at the drawn class: a class of probability 0 not drawn adds 0, not 0 / 0
            d = np.where(onehot > 0, onehot / self.probs, 0.0) - 1.0 / np.sum(self.probs, -1, keepdims=True)
            d = d.astype(self.dtype, copy=False)
        return {"probs": self._reduce("probs", d, n)}

    def entropy(self):
        """The entropy (nats), ``(*batch_shape)`` array."""
        lp = np.broadcast_to(self.log_probs, self.batch_shape + (self.n_classes,))
        p = np.exp(lp)
        return -np.sum(np.where(p > 0, p * lp, 0.0), axis=-1).astype(self.dtype)


class Poisson(Distribution):
    """The Poisson distribution: counts x in {0, 1, 2, ...} (as the rate's float dtype).

    ``sample``: the kernel ``sample_poisson`` (native, or its NumPy twin; the
    same draws): element i reads its own Philox sub-stream, inversion by
    sequential search for rates below 10 and Hoermann's PTRS rejection at and
    above 10 (cpp/include/bayesgrad/distributions.hpp); rates up to 1e10. ``score``:
    d log p / d rate = x / rate - 1. No reparameterisation; ``measure_valued``
    uses its weak derivative (p(x - 1) - p(x): the sample shifted by one).

    Parameters
    ----------
    rate : array_like of any shape (the ``batch_shape``), in (0, 1e10], the mean count
    """

    params = ("rate",)
    reparam = None

    def __init__(self, rate):
        super().__init__(rate=rate)
        C.positive(self.rate, "rate")
        if np.any(self.rate > _POISSON_MAX_RATE):
            # the sampler's limit (distributions.hpp: PTRS's float64 log-pmf rounding)
            raise ValueError(f"rate must be at most {_POISSON_MAX_RATE:g}")

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
        ``(n, *batch_shape)`` array of counts, the rate's dtype
        """
        out = self._out(n, out)
        seed, stream = self._seed_stream(seed, stream)
        if out.size:
            _backend.kernels().distributions.sample_poisson(out, self._flat(self.rate), seed, stream)
        return out

    def _xp(self, x):
        """x checked (finite non-negative integer counts) and its maximum (None when empty)."""
        x, lo, hi, whole = self._x_range(x, integers=True)
        if x.size and (lo < 0 or math.isinf(hi) or not whole):
            raise ValueError("x must hold finite non-negative integer counts")
        return x, hi

    def log_prob(self, x):
        """Log probability (nats) at ``x``.

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape)`` array of counts

        Returns
        -------
        ``(*sample_shape, *batch_shape)`` array
        """
        x, hi = self._xp(x)
        lam = self.rate.astype(np.float64)
        x64 = x.astype(np.float64, copy=False)
        lp = np.multiply(x64, np.log(lam), out=_backend.empty(x.shape, np.float64))
        lp -= lam
        lp -= _log_factorial(x64, hi)
        return lp.astype(self.dtype, copy=False)

    def score(self, x):
        """Gradients of ``log_prob(x)`` with respect to the rate.

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape)`` array of counts

        Returns
        -------
        dict {"rate": ``(*sample_shape, *rate.shape)``}, summed over the dimensions it was broadcast along
        """
        x, _ = self._xp(x)
        d = np.divide(x, self.rate, out=_backend.empty(x.shape, self.dtype))
        d -= 1.0
        return {"rate": self._reduce("rate", d, self._lead(x))}

    @property
    def mean(self):
        """The mean, ``(*batch_shape)`` array."""
        return self._batch(self.rate)

    @property
    def variance(self):
        """The variance, ``(*batch_shape)`` array."""
        return self._batch(self.rate)


class TopK:
    """The result of ``gumbel_top_k``: a sample without replacement from a Categorical's joint support.

    Attributes
    ----------
    samples : ``(n, k, *batch_shape)`` int64, each row's k distinct configurations in the order
        drawn (decreasing perturbed log-probability: the order of sequential sampling
        without replacement)
    log_prob : (n, k) float64, the joint log-probability (nats) of each configuration
    perturbed : (n, k) float64, its Gumbel-perturbed log-probability, decreasing along axis 1
    threshold : (n,) float64, the (k+1)-th largest perturbed log-probability (kappa of
        priority sampling); -inf when the support has exactly k configurations
    """

    def __init__(self, samples, log_prob, perturbed, threshold):
        self.samples = samples
        self.log_prob = log_prob
        self.perturbed = perturbed
        self.threshold = threshold

    def __repr__(self):
        n, k = self.log_prob.shape
        return f"TopK(n={n}, k={k}, batch_shape={self.samples.shape[2:]})"


def gumbel_top_k(dist, k, n, seed=0, stream=0):
    """k configurations without replacement from a Categorical's joint support, n times.

    The Gumbel-top-k trick (Kool, van Hoof & Welling 2019): perturb every joint
    log-probability with an independent standard Gumbel and keep the k largest;
    they are a sample without replacement, in the order of sequential sampling.
    The joint support of a Categorical with ``batch_shape`` (D coordinates, K
    classes) has K^D configurations, so they are not enumerated: stochastic beam
    search builds the perturbed values coordinate by coordinate, each child's
    Gumbel conditioned on its parent's maximum (the top-down construction),
    keeping the k + 1 largest partial configurations; the (k+1)-th gives the
    threshold of priority sampling. With ``batch_shape == ()`` it is the
    plain Gumbel-top-k over the K classes.

    Parameters
    ----------
    dist : Categorical
    k : int, 1 <= k <= the number of joint configurations K^D
    n : int >= 1, independent samples of k
    seed : int or None
    stream : int; the Gumbels of all n rows come from one draw of this stream

    Returns
    -------
    TopK (samples ``(n, k, *batch_shape)``, log_prob (n, k), perturbed (n, k), threshold (n,))
    """
    if not isinstance(dist, Categorical):
        raise TypeError(f"dist must be a Categorical, got {type(dist).__name__}")
    k = C.integer(k, "k", 1)
    n = C.integer(n, "n", 1)
    batch = tuple(dist.batch_shape)
    K = int(dist.n_classes)
    D = int(np.prod(batch, dtype=np.int64))
    if D * math.log(K) < math.log(k) - 1e-9:
        raise ValueError(f"k={k} exceeds the {K ** D} configurations of the support")
    m = k + 1 if D * math.log(K) > math.log(k + 1) - 1e-9 else k  # beams: k draws and the threshold
    C.check_allocation(C.n_bytes((n, D * m * K + 1), np.float64, copies=3),
                       f"n={n}, k={k}: the Gumbel draws of the beam search")
    seed, stream = _random.resolve_seed(seed), _random.check_stream(stream)
    lp = np.ascontiguousarray(np.broadcast_to(log_softmax(np.asarray(dist.logits, dtype=np.float64)),
                                              batch + (K,)).reshape(D, K))
    conf = np.empty((n, m, D), dtype=np.int64)
    phi, G = np.empty((n, m)), np.empty((n, m))
    with _scratch.session() as pool:  # the uniforms stay inside the call: a reused buffer
        u = _random.uniform((n, 1 + D * m * K), seed=seed, stream=stream,
                            out=pool.array("gumbel_top_k/u", (n, 1 + D * m * K)))
        # the beam search (estimators.gumbel_beam_search: native kernel or NumPy twin)
        _backend.kernels().estimators.gumbel_beam_search(lp, u, conf, phi, G)
    thr = G[:, k] if m > k else np.full(n, -np.inf)
    return TopK(conf[:, :k].reshape((n, k) + batch), phi[:, :k], G[:, :k], thr)
