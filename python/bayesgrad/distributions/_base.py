"""The ``Distribution`` base class and the helpers every family module shares.

Internal to ``bayesgrad.distributions``: the public names are re-exported by
the package. Helpers other modules need (``sum_to_shape``, used by the
estimators and control variates too; the special-function wrappers; the
numerically safe ``sigmoid``/``softplus``/``log_softmax``) carry
non-underscore names here because they cross module boundaries.
"""
from __future__ import annotations

import abc
import math

import numpy as np

from .. import _backend
from .._codes import LocScaleFamily
from .._numerics import lgamma_corr
from .. import _checks as C
from .. import random as _random

LOG_2PI = math.log(2.0 * math.pi)
EULER = 0.57721566490153286061


def special_kernel(name, *args):
    """A special-function kernel of the active backend on broadcast float64 arrays."""
    arrs = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in args))
    shape = arrs[0].shape
    # the kernels are elementwise on flat arrays; flattening keeps 0-d (scalar) parameters
    # 0-d (np.ascontiguousarray would turn them into shape (1,))
    flat = [np.ascontiguousarray(a).reshape(-1) for a in arrs]
    out = np.empty(flat[0].shape, dtype=np.float64)
    getattr(_backend.kernels().distributions, name)(*flat, out)
    return out.reshape(shape)


def lgamma(x):
    """log Gamma(x) (x > 0), float64, on the active backend."""
    return special_kernel("lgamma", x)


def digamma(x):
    """Digamma psi(x) (x > 0), float64, on the active backend."""
    return special_kernel("digamma", x)


def trigamma(x):
    """Trigamma psi'(x) (x > 0), float64, on the active backend."""
    return special_kernel("trigamma", x)


def lbeta(a, b):
    """log B(a, b) = lgamma(a) + lgamma(b) - lgamma(a + b) (a, b > 0), float64, broadcast, on the active backend.

    From max(a, b) >= 8 the Stirling main terms are combined analytically (as special.cpp's lbeta does):
    the three log-gammas are each ~l ln l and cancel to ~s ln l (Beta(2, 1e17) lost all its digits).
    """
    a, b = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(b, np.float64))
    out = np.asarray(lgamma(a) + lgamma(b) - lgamma(a + b))
    big = np.maximum(a, b) >= 8.0
    if big.any():
        s, l = np.minimum(a, b)[big], np.maximum(a, b)[big]
        both = s >= 8.0
        # only l large: lgamma(s) - (l - 1/2) ln(1 + s/l) - s ln(s + l) + s + corr(l) - corr(s + l)
        r = (lgamma(s) - (l - 0.5) * np.log1p(s / l) - s * np.log(s + l) + s
             + lgamma_corr(l) - lgamma_corr(s + l))
        if both.any():
            sb, lb = s[both], l[both]
            q = np.log1p(lb / sb)
            r[both] = (0.5 * LOG_2PI - sb * q - lb * np.log1p(sb / lb) + 0.5 * (q - np.log(lb))
                       + lgamma_corr(sb) + lgamma_corr(lb) - lgamma_corr(sb + lb))
        out[big] = r
    return out


def digamma_tail(x):
    """psi(x) - (ln x - 1/(2x)) for x >= 10 (special.cpp's digamma series), float64."""
    r = 1.0 / x
    r2 = r * r
    return -r2 * (1.0 / 12 - r2 * (1.0 / 120 - r2 * (1.0 / 252 - r2 * (1.0 / 240 - r2 * (
        1.0 / 132 - r2 * (691.0 / 32760 - r2 * (1.0 / 12)))))))


def digamma_diff(x, d):
    """psi(x + d) - psi(x) (x, d > 0), float64, broadcast, on the active backend.

    From x >= 10 from the asymptotic series, log1p(d/x) + d / (2 x (x + d)) + tail(x + d) - tail(x), so that
    (x - 1) (psi(x + d) - psi(x)) in entropies keeps its digits when d << x (psi(1e17 + 2) - psi(1e17)).
    """
    x, d = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(d, np.float64))
    out = np.asarray(digamma(x + d) - digamma(x))
    big = x >= 10.0
    if big.any():
        xb, db = x[big], d[big]
        y = xb + db
        out[big] = np.log1p(db / xb) + 0.5 * db / xb / y + digamma_tail(y) - digamma_tail(xb)
    return out


def lgamma_half_diff(x):
    """lgamma(x + 1/2) - lgamma(x) (x > 0), float64, on the active backend.

    From x >= 8 by Stirling, ln(x)/2 + (x log1p(1/(2x)) - 1/2) + corr(x + 1/2) - corr(x): the difference is
    O(ln x) while the log-gammas are ~x ln x (StudentT(1e17) lost all its digits).
    """
    x = np.asarray(x, np.float64)
    out = np.asarray(lgamma(x + 0.5) - lgamma(x))
    big = x >= 8.0
    if big.any():
        xb = x[big]
        out[big] = 0.5 * np.log(xb) + (xb * np.log1p(0.5 / xb) - 0.5) + lgamma_corr(xb + 0.5) - lgamma_corr(xb)
    return out


def scalar_like(value, name, ref):
    """A scalar parameter (Python or NumPy) checked by name in the float dtype of ``ref`` (an array from
    ``C.as_array``), so that a default such as ``rate=1.0`` keeps a float32 distribution float32; arrays
    pass through to ``Distribution.__init__``, which checks them by name."""
    if not np.isscalar(value):
        return value
    a = C.as_array(value, name)
    if a.dtype != ref.dtype:
        with np.errstate(over="ignore"):
            a = a.astype(ref.dtype)
        if not np.isfinite(a):
            raise ValueError(f"{name} = {value!r} is out of the range of {ref.dtype}, "
                             "the dtype of the other parameters")
    return a


def clamp_into_support(x, upper=None):
    """Clamp draws in place into the open support (0, upper): below the smallest
    positive normal number of the dtype a draw would round to 0 (Gamma(1e-8),
    Beta(1e-8, b), a relaxed sample at temperature 1e-8), where the log-density is
    infinite or NaN. ``upper=1`` also keeps draws below 1 (the largest float < 1)."""
    fi = np.finfo(x.dtype)
    np.maximum(x, fi.tiny, out=x)
    if upper is not None:
        np.minimum(x, np.nextafter(x.dtype.type(upper), x.dtype.type(0)), out=x)
    return x


def sum_to_shape(a, n_lead, shape):
    """Sum ``a`` of shape ``(*lead, *b)`` down to ``(*lead, *shape)``, b broadcast from shape."""
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
        """``(*batch_shape, *event_shape)``: the shape of one draw (tuple)."""
        return tuple(self.batch_shape) + tuple(self.event_shape)

    def _n(self, n):
        n = C.integer(n, "n", 0)
        # a sampler holds its output and about two temporaries of the same size
        C.check_allocation(C.n_bytes((n,) + self.shape, np.float64, copies=3), f"n={n}: the samples")
        return n

    def _x(self, x, name="x"):
        return self._x_range(x, name)[0]

    def _x_range(self, x, name="x", integers=False):
        """x checked (no NaN, the distribution's shape at the end), and its (min, max), or (x, None, None)
        when it is empty: one pass for both (C.value_range); with ``integers`` (x, min, max, every value
        an integer), the last True when x is empty (C.integer_range, the same pass)."""
        a = C.as_array(x, name, dtype=self.dtype, allow_empty=True, finite=False)
        lo = hi = None
        whole = True
        if a.size:
            lo, hi, *rest = C.integer_range(a) if integers else C.value_range(a)
            whole = rest[0] if integers else whole
            if math.isnan(lo):
                raise ValueError(f"{name} must not contain NaN")
        nd = len(self.shape)
        if a.ndim < nd or tuple(a.shape[a.ndim - nd:]) != self.shape:
            raise ValueError(f"{name} must have shape (..., {', '.join(map(str, self.shape))}), got {a.shape}")
        return (a, lo, hi, whole) if integers else (a, lo, hi)

    def _lead(self, x):
        return x.ndim - len(self.shape)

    def _reduce(self, name, a, n_lead):
        return sum_to_shape(np.asarray(a, dtype=self.dtype), n_lead, self._param_shapes[name])

    def _normals(self, n, seed, stream):
        return _random.normal((self._n(n),) + self.shape, seed=seed, stream=stream, dtype=self.dtype)

    def _uniforms(self, n, seed, stream):
        return _random.uniform((self._n(n),) + self.shape, seed=seed, stream=stream, dtype=self.dtype)

    def _out(self, n, out):
        """The ``(n, *shape)`` output array: ``out`` checked, or a new one."""
        shape = (self._n(n),) + self.shape
        if out is None:
            return _backend.empty(shape, self.dtype)
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
        return _random.resolve_seed(seed), _random.check_stream(stream)

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
            _backend.kernels().distributions.sample_locscale(out, self._flat(loc), self._flat(scale),
                                                             LocScaleFamily[family], seed, stream)
        return out

    def _locscale_log_prob(self, family, x, x_range, loc, scale, grads=True):
        """log p, d/dloc, d/dscale at x (same shape as x), from the native/twin kernel; without
        ``grads`` only [log p] (the kernel then writes one array, not three). ``x_range``: x's (min, max)
        from ``_x_range``."""
        # (large outputs from the core's output cache, as draws: a repeated call skips the page faults)
        outs = [_backend.empty(x.shape, self.dtype) for _ in range(3 if grads else 1)]
        if x.size:
            _backend.kernels().distributions.locscale_log_prob(x, self._flat(loc), self._flat(scale),
                                                               LocScaleFamily[family], *outs,
                                                               *([] if grads else [None, None]))
            # every family's density vanishes at +-inf; the formulas give inf - inf there (Gumbel)
            lo, hi = x_range
            if math.isinf(lo) or math.isinf(hi):
                at_inf = np.isinf(x)
                outs[0][at_inf] = -np.inf
                for g in outs[1:]:
                    g[at_inf] = 0
        return outs

    # -- interface -----------------------------------------------------------
    @abc.abstractmethod
    def sample(self, n, seed=0, stream=0, out=None):
        """``(n, *batch_shape, *event_shape)`` draws."""

    @abc.abstractmethod
    def log_prob(self, x):
        """``(*sample_shape, *batch_shape)`` log densities (nats)."""

    @abc.abstractmethod
    def score(self, x):
        """{param: ``(*sample_shape, *param.shape)``} gradients of log p."""

    def entropy(self):
        """The entropy (nats), ``batch_shape``; the base class raises ``TypeError`` (no closed form)."""
        raise TypeError(
            f"{type(self).__name__} has no closed-form entropy; estimate it by Monte Carlo, e.g. "
            "bg.estimators.expectation(lambda x: -d.log_prob(x), d, n_samples)")

    def rsample_vjp(self, x, g):
        """Per-sample vector-Jacobian products ``g . dx/dparam`` at samples ``x``.

        The reparameterisation gradient used by ``bg.estimators.pathwise``;
        the base class raises ``TypeError`` (no reparameterisation).

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape)`` samples of this distribution
        g : array shaped like ``x``, the cotangent (e.g. df/dx at x)

        Returns
        -------
        dict {param: ``(*sample_shape, *param.shape)``}
        """
        raise TypeError(f"{type(self).__name__} has no reparameterisation gradient")

    def _check_g(self, x, g):
        ga = C.as_array(g, "g", dtype=self.dtype, allow_empty=True)
        if ga.shape != x.shape:
            raise ValueError(f"g must have the shape of x {x.shape}, got {ga.shape}")
        return ga

    def __repr__(self):
        ps = ", ".join(f"{k}={np.array2string(np.asarray(getattr(self, k)), threshold=6)}" for k in self.params)
        return f"{type(self).__name__}({ps})"
