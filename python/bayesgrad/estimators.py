"""Monte Carlo gradients of expectations, grad_theta E_{q_theta}[f(x)].

Sampling x ~ q_theta and then differentiating the sample average as if the
samples were constants gives 0 for every parameter of q; the estimators here
are the correct ways. One call shape for all of them::

    est = estimator(f, dist, n_samples, seed=0, stream=0, **options)
    est.value            # mean of f over the samples
    est.grad["loc"]      # the gradient estimate, shaped like dist.loc
    est.stderr["loc"]    # its standard error: stderr**2 * n = single-sample variance
    est.variance["loc"]  # the single-sample variance (a diagnostic for picking estimators)
    est.per_sample       # {param: (n, *param.shape)} when per_sample=True, else None

``f`` is vectorised over axis 0: ``(m, *batch) -> (m,)`` (``m`` is not always
``n_samples``: the measure-valued estimator evaluates 4 D points per sample).
``grad_f`` likewise returns ``(m, *batch)``. Parameters are batched: a Normal
with D coordinates is a D-dimensional mean-field distribution.

Estimators: ``pathwise`` (reparameterisation, implicit for Gamma/Beta/Dirichlet
through ``rsample_vjp``), ``score_function`` (REINFORCE, with baselines and the
delta control variate), ``measure_valued`` (Normal), and for discrete
variables ``reinforce_loo``, ``arm``, ``disarm`` (Bernoulli) and
``gumbel_softmax`` (biased; its bias is measured by ``exact_gradient``).
Independent random uses inside one estimator (baseline samples, coefficient
samples, the measure-valued draws) get their own streams from
``bg.random.fold_in(stream, tag)``; the same ``seed`` gives common random numbers.
The accumulation over samples runs in the native kernels (``score_accumulate``,
``pathwise_accumulate``, ``column_mean_var``) or their NumPy twins.
"""
from __future__ import annotations

import math

import numpy as np

from . import _backend
from . import _checks as C
from . import _training as _tr
from . import optim as _optim
from . import random as _random
from .control_variates import DeltaControlVariate, MovingAverageBaseline, optimal_coefficient
from .distributions import Distribution, Normal
from .distributions._base import sum_to_shape as _sum_to

__all__ = [
    "Estimate", "expectation", "pathwise", "score_function", "measure_valued", "reinforce_loo", "arm",
    "disarm", "gumbel_softmax", "exact_gradient", "naive_gradient", "variance_curve", "plot_variance",
    "seed_example", "minimize", "MinimizeResult",
]

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_MV_CHUNK = 1 << 22  # elements per batch of measure-valued evaluation points


# ---------------------------------------------------------------- result
class Estimate:
    """A Monte Carlo gradient estimate.

    Attributes
    ----------
    estimator : str
    value : float
        Mean of f over the samples (``nan`` where the estimator does not evaluate f at q's samples).
    value_stderr : float
    grad : dict {param: ndarray of the parameter's shape}
    stderr : dict {param: ndarray}
        Standard error of ``grad`` (so ``stderr**2 * n_samples`` is the single-sample variance).
    n_samples : int
    n_evaluations : int
        Points at which f was evaluated (including independent baseline/coefficient samples).
    per_sample : dict {param: (n_samples, *param.shape)} or None
    seed : int
    info : dict
        Estimator-specific extras (control-variate coefficient, temperature, ...).
    """

    def __init__(self, estimator, value, value_stderr, grad, stderr, n_samples, n_evaluations, seed,
                 per_sample=None, info=None):
        self.estimator = estimator
        self.value = float(value)
        self.value_stderr = float(value_stderr)
        self.grad = grad
        self.stderr = stderr
        self.n_samples = int(n_samples)
        self.n_evaluations = int(n_evaluations)
        self.seed = seed
        self.per_sample = per_sample
        self.info = info or {}

    @property
    def variance(self):
        """Single-sample variance of each gradient coordinate: ``stderr**2 * n_samples``."""
        return {k: np.asarray(s, dtype=np.float64) ** 2 * self.n_samples for k, s in self.stderr.items()}

    def __repr__(self):
        parts = ", ".join(f"{k}={np.array2string(np.asarray(v), precision=4, threshold=6)}"
                          f"±{np.array2string(np.asarray(self.stderr[k]), precision=2, threshold=6)}"
                          for k, v in self.grad.items())
        return f"Estimate({self.estimator}, n={self.n_samples}, value={self.value:.6g}, grad: {parts})"


# ---------------------------------------------------------------- checks and helpers
def _setup(f, dist, n_samples, seed, stream, minimum=1):
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    if not isinstance(dist, Distribution):
        raise TypeError(f"dist must be a bayesgrad distribution, got {type(dist).__name__}")
    n = C.integer(n_samples, "n_samples", minimum)
    return n, _random.resolve_seed(seed), _random._stream(stream)


def _eval_f(f, x, dtype, name="f"):
    """f(x) checked to be a finite (m,) array."""
    m = x.shape[0]
    y = f(x)
    try:
        y = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must return a real array") from exc
    if y.shape != (m,):
        raise ValueError(f"{name} must map (m, ...) inputs to shape (m,) (m = {m}), got shape {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError(f"{name} returned NaN or inf")
    return np.ascontiguousarray(y, dtype=dtype)


def _eval_like(fn, x, dtype, name):
    """fn(x) checked to be a finite array shaped like x."""
    y = fn(x)
    try:
        y = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must return a real array") from exc
    if y.shape != x.shape:
        raise ValueError(f"{name} must return the shape of its input {x.shape}, got {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError(f"{name} returned NaN or inf")
    return np.ascontiguousarray(y, dtype=dtype)


def _outputs(p, dtype):
    return np.empty(p, dtype=dtype), np.empty(p, dtype=dtype)


def _mean_var(terms):
    """Column mean and ddof=1 variance of terms (n, p) through the active kernels."""
    t = np.ascontiguousarray(terms)
    mean, var = _outputs(t.shape[1], t.dtype)
    _backend.kernels().column_mean_var(t, mean, var)
    return mean, var


def _value(fx):
    mean, var = _mean_var(fx.reshape(-1, 1))
    n = fx.shape[0]
    return float(mean[0]), float(np.sqrt(var[0] / n)) if n > 1 else float("nan")


def _collect(dist, name, mean, var, n, terms, grad, stderr, per):
    shape = dist._param_shapes[name]
    grad[name] = mean.reshape(shape)
    stderr[name] = np.sqrt(np.maximum(var, 0) / n).astype(mean.dtype).reshape(shape)
    if per is not None:
        per[name] = terms.reshape((n,) + tuple(shape))


def _grads_from_terms(dist, terms, n, per_sample):
    """Estimate dict from per-sample terms {param: (n, *param.shape)}."""
    grad, stderr = {}, {}
    per = {} if per_sample else None
    for name, t in terms.items():
        t2 = np.ascontiguousarray(t, dtype=dist.dtype).reshape(n, -1)
        mean, var = _mean_var(t2)
        _collect(dist, name, mean, var, n, t2, grad, stderr, per)
    return grad, stderr, per


def _elementwise(dist):
    """Parameters not broadcast: each has the full batch shape (fused kernels apply)."""
    return all(tuple(s) == tuple(dist.batch_shape) for s in dist._param_shapes.values())


def _flat(a, n):
    return np.ascontiguousarray(a).reshape(n, -1)


# ---------------------------------------------------------------- expectation
def _reflect(dist, x):
    """The antithetic partner of x for symmetric families, else None."""
    name = type(dist).__name__
    if name in ("Normal", "Laplace", "StudentT", "Cauchy", "Logistic", "MultivariateNormal") and hasattr(dist, "loc"):
        loc = dist.loc if name != "MultivariateNormal" else dist.loc
        return (2.0 * loc - x).astype(dist.dtype)
    if name == "Uniform" and hasattr(dist, "low") and hasattr(dist, "high"):
        return (dist.low + dist.high - x).astype(dist.dtype)
    return None


def expectation(f, dist, n_samples, seed=0, stream=0, antithetic=None):
    """Monte Carlo estimate of E_q[f(x)] with its standard error.

    Parameters
    ----------
    f : callable ``(m, *batch, *event) -> (m,)``
    dist : Distribution
    n_samples : int >= 1
        Evaluations of f. With antithetic sampling, ``ceil(n/2)`` draws x and
        their reflections through the centre of q are averaged in pairs.
    seed, stream : the Philox stream (the same seed gives common random numbers).
    antithetic : bool or None
        None: on for symmetric families (Normal, Laplace, StudentT, Uniform, ...).

    Returns
    -------
    (mean, stderr) : floats
    """
    n, seed, stream = _setup(f, dist, n_samples, seed, stream)
    symmetric = _reflect(dist, dist.sample(0, seed=seed, stream=stream)) is not None
    if antithetic is None:
        antithetic = symmetric
    elif antithetic and not symmetric:
        raise ValueError(f"antithetic=True needs a symmetric family, got {type(dist).__name__}")
    if not antithetic:
        return _value(_eval_f(f, dist.sample(n, seed=seed, stream=stream), dist.dtype))
    m = (n + 1) // 2
    x = dist.sample(m, seed=seed, stream=stream)
    pair = 0.5 * (_eval_f(f, x, np.float64) + _eval_f(f, _reflect(dist, x), np.float64))
    return _value(pair)


# ---------------------------------------------------------------- pathwise
def pathwise(f, dist, n_samples, seed=0, stream=0, *, grad_f=None, per_sample=False):
    """Pathwise (reparameterisation) gradient: E[grad_f(x) . dx/dtheta].

    Works for every distribution with ``rsample_vjp`` (location-scale families
    explicitly; Gamma, Beta, Dirichlet by implicit reparameterisation). For an
    unbroadcast Normal the chain rule is fused into one native accumulation.

    Parameters
    ----------
    f : callable ``(m, *batch) -> (m,)``; only used for ``value``.
    dist : Distribution with ``reparam`` not None
    n_samples : int >= 1
    grad_f : callable ``(m, *batch) -> (m, *batch)`` (required)
    per_sample : bool
        Keep the per-sample gradients in ``est.per_sample``.
    """
    n, seed, stream = _setup(f, dist, n_samples, seed, stream)
    if getattr(dist, "reparam", None) is None:
        raise TypeError(f"{type(dist).__name__} has no reparameterisation gradient; "
                        "use score_function (or a discrete estimator)")
    if grad_f is None or not callable(grad_f):
        raise TypeError("pathwise needs grad_f, the gradient of f: (m, *batch) -> (m, *batch)")
    x = dist.sample(n, seed=seed, stream=stream)
    fx = _eval_f(f, x, dist.dtype)
    g = _eval_like(grad_f, x, dist.dtype, "grad_f")
    if isinstance(dist, Normal) and _elementwise(dist):
        # x = loc + scale * eps: dx/dloc = 1, dx/dscale = eps.
        eps = _flat((x - dist.loc) / dist.scale, n)
        g2 = _flat(g, n)
        grad, stderr = {}, {}
        per = {} if per_sample else None
        for name, jac in (("loc", None), ("scale", eps)):
            mean, var = _outputs(g2.shape[1], dist.dtype)
            terms = np.empty_like(g2) if per_sample else None
            _backend.kernels().pathwise_accumulate(g2, jac, mean, var, terms)
            _collect(dist, name, mean, var, n, terms, grad, stderr, per)
    else:
        grad, stderr, per = _grads_from_terms(dist, dist.rsample_vjp(x, g), n, per_sample)
    value, value_se = _value(fx)
    return Estimate("pathwise", value, value_se, grad, stderr, n, n, seed, per,
                    {"reparam": dist.reparam})


# ---------------------------------------------------------------- score function
_BASELINES = ("none", "mean", "loo")


def score_function(f, dist, n_samples, seed=0, stream=0, *, baseline=None, control_variate=None,
                   grad_f=None, hess_f=None, n_control=None, per_sample=False):
    """Score-function (REINFORCE) gradient: E[(f(x) - b) d log q(x) / dtheta].

    Parameters
    ----------
    f : callable ``(m, *batch) -> (m,)``
    dist : Distribution with ``score``
    n_samples : int >= 1 (>= 2 for ``baseline="loo"``)
    baseline : None | "mean" | "loo" | MovingAverageBaseline
        "mean": mean of f on ``n_control`` independent samples (stream
        ``fold_in(stream, "baseline")``); "loo": for sample i the mean of the
        other n - 1 (unbiased; the standard error treats the terms as
        independent, which they are to O(1/n)); a MovingAverageBaseline uses
        its value from before this call and is then updated.
    control_variate : None | "delta"
        Second-order Taylor expansion of f at the mean (Normal only; needs
        ``grad_f`` and ``hess_f``), coefficient per coordinate estimated on
        ``n_control`` independent samples (stream ``fold_in(stream, "control_variate")``).
    n_control : int, default n_samples
    per_sample : bool
    """
    n, seed, stream = _setup(f, dist, n_samples, seed, stream)
    if isinstance(baseline, MovingAverageBaseline):
        mode = "moving"
    elif baseline is None:
        mode = "none"
    else:
        mode = C.option(baseline, "baseline", _BASELINES)
    if control_variate is not None:
        C.option(control_variate, "control_variate", ("delta",))
        if mode != "none":
            raise ValueError("use either a baseline or control_variate='delta', not both")
    if mode == "loo" and n < 2:
        raise ValueError("baseline='loo' needs n_samples >= 2")
    n_ctl = n if n_control is None else C.integer(n_control, "n_control", 2)
    cv = DeltaControlVariate(f, grad_f, hess_f, dist) if control_variate else None
    if type(dist).score is Distribution.score:
        raise TypeError(f"{type(dist).__name__} has no score function")

    x = dist.sample(n, seed=seed, stream=stream)
    fx = _eval_f(f, x, dist.dtype)
    scores = dist.score(x)
    n_eval = n
    b = None
    info = {"baseline": mode if mode != "moving" else repr(baseline)}
    if mode == "mean":
        xb = dist.sample(n_ctl, seed=seed, stream=_random.fold_in(stream, "baseline"))
        b = np.full(n, _eval_f(f, xb, np.float64).mean(), dtype=dist.dtype)
        n_eval += n_ctl
        info["baseline_value"] = float(b[0])
    elif mode == "moving":
        b = np.full(n, baseline.value, dtype=dist.dtype)
        info["baseline_value"] = baseline.value

    if cv is None:
        grad, stderr = {}, {}
        per = {} if per_sample else None
        k = _backend.kernels()
        for name in dist.params:
            s2 = _flat(np.asarray(scores[name], dtype=dist.dtype), n)
            mean, var = _outputs(s2.shape[1], dist.dtype)
            terms = np.empty_like(s2) if per_sample else None
            k.score_accumulate(s2, fx, b, mode == "loo", mean, var, terms)
            _collect(dist, name, mean, var, n, terms, grad, stderr, per)
    else:
        # beta from independent samples, so that it does not correlate with x.
        xc = dist.sample(n_ctl, seed=seed, stream=_random.fold_in(stream, "control_variate"))
        fc = _eval_f(f, xc, np.float64)
        sc = dist.score(xc)
        hc = cv.values(xc)
        h = cv.values(x)
        eg = cv.expectation_grad()
        terms = {}
        beta = {}
        for name in dist.params:
            s_c = np.asarray(sc[name], dtype=np.float64).reshape(n_ctl, -1)
            bt = optimal_coefficient(s_c * fc[:, None], s_c * hc[:, None])
            s = np.asarray(scores[name], dtype=np.float64).reshape(n, -1)
            terms[name] = s * fx[:, None].astype(np.float64) - bt * (s * h[:, None]) + bt * eg[name].reshape(-1)
            beta[name] = bt.reshape(dist._param_shapes[name])
        grad, stderr, per = _grads_from_terms(dist, terms, n, per_sample)
        n_eval += n_ctl
        info.update(control_variate="delta", beta=beta)
    if mode == "moving":
        baseline.update(float(fx.mean()))
    value, value_se = _value(fx)
    return Estimate("score_function", value, value_se, grad, stderr, n, n_eval, seed, per, info)


def reinforce_loo(f, dist, n_samples, seed=0, stream=0, *, per_sample=False):
    """REINFORCE with the leave-one-out baseline (RLOO; Kool et al. 2019), e.g. for
    Bernoulli or Categorical: ``score_function(..., baseline="loo")``."""
    est = score_function(f, dist, n_samples, seed, stream, baseline="loo", per_sample=per_sample)
    est.estimator = "reinforce_loo"
    return est


# ---------------------------------------------------------------- measure-valued
def measure_valued(f, dist, n_samples, seed=0, stream=0, *, coupling=True, per_sample=False):
    """Measure-valued gradient for a (mean-field) Normal.

    For coordinate d, with the other coordinates at the sample x:

    * loc: ``(f(x with x_d = mu + sigma W) - f(x with x_d = mu - sigma W')) / (sigma sqrt(2 pi))``,
      W, W' ~ Rayleigh(1); coupled: W' = W.
    * scale: ``(f(x with x_d = mu + sigma M) - f(x with x_d = mu + sigma Z)) / sigma``,
      M ~ double-sided Maxwell, Z ~ N(0, 1); coupled: Z = M U with U ~ Uniform(0, 1).

    That is 2 D evaluations of f per sample for each parameter group (4 D in
    all, plus n for ``value``). Draws use streams ``fold_in(stream, tag)``.
    """
    n, seed, stream = _setup(f, dist, n_samples, seed, stream)
    if not isinstance(dist, Normal):
        raise TypeError(f"measure_valued is implemented for Normal, got {type(dist).__name__}")
    if not isinstance(coupling, (bool, np.bool_)):
        raise TypeError("coupling must be True or False")
    dt = dist.dtype
    shape = tuple(dist.batch_shape)
    D = int(np.prod(shape, dtype=np.int64))
    x = dist.sample(n, seed=seed, stream=stream)
    fx = _eval_f(f, x, dt)
    mu = np.broadcast_to(dist.loc, shape).reshape(-1).astype(np.float64)
    sig = np.broadcast_to(dist.scale, shape).reshape(-1).astype(np.float64)

    def unif(tag, extra=()):
        return _random.uniform(extra + (n, D), seed=seed, stream=_random.fold_in(stream, tag))

    w = np.sqrt(-2.0 * np.log(unif("mvd_rayleigh")))
    w2 = w if coupling else np.sqrt(-2.0 * np.log(unif("mvd_rayleigh_2")))
    z3 = _random.normal((3, n, D), seed=seed, stream=_random.fold_in(stream, "mvd_maxwell"))
    # |(z1, z2, z3)| ~ Maxwell; the sign of z1 is independent of the radius.
    mx = np.copysign(np.sqrt((z3 * z3).sum(axis=0)), z3[0])
    if coupling:
        zn = mx * unif("coupling")
    else:
        zn = _random.normal((n, D), seed=seed, stream=_random.fold_in(stream, "mvd_normal"))
    pts = {"loc": (mu + sig * w, mu - sig * w2), "scale": (mu + sig * mx, mu + sig * zn)}
    weight = {"loc": _INV_SQRT_2PI / sig, "scale": 1.0 / sig}
    xf = x.reshape(n, D)
    rows = max(1, _MV_CHUNK // max(1, 2 * D * D))
    terms = {}
    for name in ("loc", "scale"):
        plus, minus = pts[name]
        diff = np.empty((n, D))
        for i0 in range(0, n, rows):
            i1 = min(n, i0 + rows)
            m = i1 - i0
            X = np.repeat(xf[i0:i1, None, :], 2 * D, axis=1)  # (m, 2D, D)
            idx = np.arange(D)
            X[:, idx, idx] = plus[i0:i1]
            X[:, D + idx, idx] = minus[i0:i1]
            fv = _eval_f(f, X.reshape((m * 2 * D,) + shape).astype(dt), np.float64).reshape(m, 2 * D)
            diff[i0:i1] = fv[:, :D] - fv[:, D:]
        per_coord = (diff * weight[name]).reshape((n,) + shape)
        terms[name] = _sum_to(per_coord, 1, dist._param_shapes[name])
    grad, stderr, per = _grads_from_terms(dist, terms, n, per_sample)
    value, value_se = _value(fx)
    return Estimate("measure_valued", value, value_se, grad, stderr, n, n * (1 + 4 * D), seed, per,
                    {"coupling": bool(coupling)})


# ---------------------------------------------------------------- discrete
def _family(dist, allowed):
    name = type(dist).__name__
    fam = "bernoulli" if name == "Bernoulli" else "categorical" if name == "Categorical" else None
    if fam is None or fam not in allowed:
        raise TypeError(f"this estimator needs a {' or '.join(a.capitalize() for a in allowed)} "
                        f"distribution, got {name}")
    if "logits" not in dist.params:
        raise TypeError(f"the {name} must be parameterised by logits (construct it with logits=...)")
    return fam


def _bernoulli_setup(f, dist, n_samples, seed, stream):
    n, seed, stream = _setup(f, dist, n_samples, seed, stream)
    _family(dist, ("bernoulli",))
    shape = tuple(dist.batch_shape)
    eta = np.broadcast_to(np.asarray(dist.logits, dtype=np.float64), shape)
    u = _random.uniform((n,) + shape, seed=seed, stream=stream, dtype=np.float64)
    return n, seed, eta, u


def _sigmoid(a):
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def _discrete_estimate(name, dist, terms, n, n_eval, seed, value, value_se, per_sample, info=None):
    t = {"logits": _sum_to(terms, 1, dist._param_shapes["logits"])}
    grad, stderr, per = _grads_from_terms(dist, t, n, per_sample)
    return Estimate(name, value, value_se, grad, stderr, n, n_eval, seed, per, info)


def arm(f, dist, n_samples, seed=0, stream=0, *, per_sample=False):
    """ARM (Yin & Zhou 2019) for independent Bernoulli(sigmoid(logits)) coordinates.

    ``(f(1[u > sigmoid(-eta)]) - f(1[u < sigmoid(eta)])) (u - 1/2)``, u ~ Uniform(0,1)^D:
    two evaluations of f per sample. ``value`` is the mean of f at the two points.
    """
    n, seed, eta, u = _bernoulli_setup(f, dist, n_samples, seed, stream)
    dt = dist.dtype
    b1 = (u > _sigmoid(-eta)).astype(dt)
    b2 = (u < _sigmoid(eta)).astype(dt)
    f1, f2 = _eval_f(f, b1, np.float64), _eval_f(f, b2, np.float64)
    terms = (f1 - f2).reshape((n,) + (1,) * eta.ndim) * (u - 0.5)
    value, value_se = _value(0.5 * (f1 + f2))
    return _discrete_estimate("arm", dist, terms, n, 2 * n, seed, value, value_se, per_sample)


def disarm(f, dist, n_samples, seed=0, stream=0, *, per_sample=False):
    """DisARM (Dong, Mnih & Tucker 2020) for independent Bernoulli(sigmoid(logits)).

    b = 1[u < sigmoid(eta)], b~ = 1[1 - u < sigmoid(eta)] (antithetic);
    ``1/2 (f(b) - f(b~)) (-1)^b~ 1[b != b~] sigmoid(|eta|)``: two evaluations per sample.
    """
    n, seed, eta, u = _bernoulli_setup(f, dist, n_samples, seed, stream)
    dt = dist.dtype
    p = _sigmoid(eta)
    b = (u < p).astype(dt)
    bt = (1.0 - u < p).astype(dt)
    f1, f2 = _eval_f(f, b, np.float64), _eval_f(f, bt, np.float64)
    sign = np.where(bt > 0, -1.0, 1.0) * (b != bt) * _sigmoid(np.abs(eta))
    terms = 0.5 * (f1 - f2).reshape((n,) + (1,) * eta.ndim) * sign
    value, value_se = _value(0.5 * (f1 + f2))
    return _discrete_estimate("disarm", dist, terms, n, 2 * n, seed, value, value_se, per_sample)


def gumbel_softmax(f, dist, n_samples, seed=0, stream=0, *, temperature=1.0, grad_f=None,
                   straight_through=False, per_sample=False):
    """Gumbel-softmax (concrete) gradient for Bernoulli or Categorical logits. BIASED.

    The discrete sample is replaced by its relaxation at ``temperature`` tau:
    Categorical ``y = softmax((logits + G) / tau)`` (f sees ``(m, *batch, K)``
    points of the simplex), Bernoulli ``y = sigmoid((logits + L) / tau)`` with
    logistic L (f sees ``(m, *batch)`` in (0, 1)). The estimate is the exact
    pathwise gradient of the *relaxed* objective E[f(y)], not of E[f(b)]; the
    bias shrinks as tau falls while the variance grows. ``exact_gradient``
    gives the unbiased target on small problems, so the bias can be measured.

    straight_through : bool
        f and grad_f are evaluated at the hard sample (one-hot argmax /
        1[y > 1/2]) and the gradient flows through the relaxation's Jacobian.
    grad_f : callable (required), shaped like its input.
    """
    n, seed, stream = _setup(f, dist, n_samples, seed, stream)
    fam = _family(dist, ("bernoulli", "categorical"))
    tau = C.scalar(temperature, "temperature")
    if tau <= 0:
        raise ValueError(f"temperature must be positive, got {tau}")
    if grad_f is None or not callable(grad_f):
        raise TypeError("gumbel_softmax needs grad_f, the gradient of f on the relaxed space")
    dt = dist.dtype
    logits = np.asarray(dist.logits, dtype=np.float64)
    if fam == "bernoulli":
        shape = tuple(dist.batch_shape)
        eta = np.broadcast_to(logits, shape)
        u = _random.uniform((n,) + shape, seed=seed, stream=stream)
        y = _sigmoid((eta + np.log(u) - np.log1p(-u)) / tau)
        hard = (y > 0.5).astype(np.float64)
        point = (hard if straight_through else y).astype(dt)
        fx = _eval_f(f, point, np.float64)
        g = _eval_like(grad_f, point, np.float64, "grad_f")
        terms = g * y * (1.0 - y) / tau
    else:
        shape = tuple(np.broadcast_shapes(logits.shape, tuple(dist.batch_shape) + logits.shape[-1:]))
        lg = np.broadcast_to(logits, shape)
        u = _random.uniform((n,) + shape, seed=seed, stream=stream)
        a = (lg - np.log(-np.log(u))) / tau
        a -= a.max(axis=-1, keepdims=True)
        y = np.exp(a)
        y /= y.sum(axis=-1, keepdims=True)
        hard = (a == 0.0).astype(np.float64)  # the argmax (ties have probability 0)
        point = (hard if straight_through else y).astype(dt)
        fx = _eval_f(f, point, np.float64)
        g = _eval_like(grad_f, point, np.float64, "grad_f")
        terms = y * (g - (g * y).sum(axis=-1, keepdims=True)) / tau
    value, value_se = _value(fx)
    return _discrete_estimate("gumbel_softmax", dist, terms, n, n, seed, value, value_se, per_sample,
                              {"temperature": tau, "straight_through": bool(straight_through), "biased": True})


def exact_gradient(f, dist, max_configurations=1 << 16):
    """Exact E[f(b)] and its gradient by enumerating a small discrete support.

    ``sum_b q(b) f(b)`` and ``sum_b q(b) f(b) score(b)`` over every
    configuration of a Bernoulli ({0, 1}^D, f sees ``(M, *batch)`` floats) or a
    Categorical (category indices, f sees ``(M, *batch)`` integers). The
    reference for the discrete estimators' bias; ``stderr`` is 0.
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    fam = _family(dist, ("bernoulli", "categorical"))
    shape = tuple(dist.batch_shape)
    D = int(np.prod(shape, dtype=np.int64))
    K = 2 if fam == "bernoulli" else int(np.shape(dist.logits)[-1])
    M = K ** D
    if M > max_configurations:
        raise ValueError(f"{M} configurations exceed max_configurations={max_configurations}")
    codes = np.arange(M)[:, None] // (K ** np.arange(D - 1, -1, -1))[None, :] % K  # (M, D)
    X = codes.reshape((M,) + shape)
    X = X.astype(dist.dtype) if fam == "bernoulli" else X.astype(np.int64)
    lp = np.asarray(dist.log_prob(X), dtype=np.float64).reshape(M, -1).sum(axis=1)
    p = np.exp(lp)
    fx = _eval_f(f, X, np.float64)
    sc = dist.score(X)
    grad = {k: np.tensordot(p * fx, np.asarray(v, dtype=np.float64), axes=(0, 0)).astype(dist.dtype)
            for k, v in sc.items()}
    stderr = {k: np.zeros_like(v) for k, v in grad.items()}
    return Estimate("exact", float(p @ fx), 0.0, grad, stderr, M, M, None, None, {"total_probability": float(p.sum())})


# ---------------------------------------------------------------- naive (wrong) and diagnostics
def naive_gradient(f, dist, n_samples, seed=0, stream=0, *, h=1e-4):
    """The wrong answer, for comparison: central finite differences of the sample
    average (1/n) sum f(x_i) with the drawn samples x_i held fixed as constants.

    The average does not depend on the parameters once the samples are fixed, so
    the result is 0: the samples' dependence on theta is exactly what the
    estimators in this module account for.
    """
    n, seed, stream = _setup(f, dist, n_samples, seed, stream)
    x = dist.sample(n, seed=seed, stream=stream)
    grad, stderr = {}, {}
    for name in dist.params:
        p0 = np.asarray(getattr(dist, name), dtype=np.float64)
        g = np.zeros(p0.shape)
        for idx in np.ndindex(p0.shape):
            # The fixed-sample estimate at theta +- h e_idx: x is a constant, so
            # nothing in it moves with theta.
            vals = [_eval_f(f, x, np.float64).mean() for _ in (1.0, -1.0)]
            g[idx] = (vals[0] - vals[1]) / (2.0 * h)
        grad[name] = g.astype(dist.dtype)
        stderr[name] = np.zeros_like(grad[name])
    value, value_se = _value(_eval_f(f, x, dist.dtype))
    return Estimate("naive", value, value_se, grad, stderr, n, n, seed)


_ESTIMATORS = {"pathwise": pathwise, "score_function": score_function, "measure_valued": measure_valued}


def variance_curve(make_f, ks, dist, estimators=("pathwise", "score_function", "measure_valued"),
                   n_samples=2000, seed=0, options=None):
    """Single-sample variance of each estimator as a parameter k of f varies.

    In the style of Figs 2-3 of Mohamed, Rosca, Figurnov & Mnih (2020, JMLR):
    e.g. ``make_f = lambda k: (lambda x: np.cos(k * x).sum(-1) ..., grad_f)``.

    Parameters
    ----------
    make_f : callable k -> (f, grad_f)
    ks : 1-D array of k values
    estimators : names among "pathwise", "score_function", "measure_valued"
    options : {name: dict of keyword options} (e.g. {"score_function": {"baseline": "loo"}})

    Returns
    -------
    dict: ``"k"`` -> ks; for each estimator name ``{param: (len(ks), *param.shape)}``.
    """
    ks = C.as_array(ks, "ks", dtype=np.float64, ndim=1)
    options = options or {}
    out = {"k": ks}
    for name in estimators:
        C.option(name, "estimators", tuple(_ESTIMATORS))
        rows = []
        for k in ks:
            f, df = make_f(float(k))
            kw = dict(options.get(name, {}))
            if name == "pathwise":
                kw["grad_f"] = df
            rows.append(_ESTIMATORS[name](f, dist, n_samples, seed=seed, **kw).variance)
        out[name] = {p: np.stack([r[p] for r in rows]) for p in dist.params}
    return out


def plot_variance(curve, param="loc", index=(), ax=None):
    """Plot ``variance_curve`` output (log scale), one line per estimator; needs matplotlib.

    Returns the matplotlib Axes.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # optional dependency
        raise ImportError("plot_variance needs matplotlib (pip install bayesgrad[plot])") from exc
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    for name, per in curve.items():
        if name == "k":
            continue
        if param not in per:
            raise ValueError(f"param must be one of {sorted(per)}, got {param!r}")
        ax.semilogy(curve["k"], per[param][(slice(None),) + tuple(index)], label=name)
    ax.set_xlabel("k")
    ax.set_ylabel(f"single-sample variance of d/d{param}")
    ax.legend()
    return ax


def seed_example(n_samples=100_000, seed=0, loc=0.0, scale=1.0):
    """The motivating example: L(mu, sigma) = E_{N(mu, sigma^2)}[W + W^2] = mu + mu^2 + sigma^2.

    Returns a list of rows ``{"method", "d_loc", "se_loc", "d_scale", "se_scale"}``:
    the naive derivative of a fixed-sample estimate (0, 0), the pathwise,
    score-function (leave-one-out baseline) and coupled measure-valued
    estimates with their standard errors, and the closed form (1 + 2 mu, 2 sigma).
    """
    d = Normal(np.array([float(loc)]), np.array([float(scale)]))  # batch (1,)

    def f(x):
        return (x + x * x)[:, 0]

    def df(x):
        return 1.0 + 2.0 * x

    ests = [
        ("naive (samples held fixed)", naive_gradient(f, d, n_samples, seed=seed)),
        ("pathwise", pathwise(f, d, n_samples, seed=seed, grad_f=df)),
        ("score function (LOO baseline)", score_function(f, d, n_samples, seed=seed, baseline="loo")),
        ("measure-valued (coupled)", measure_valued(f, d, n_samples, seed=seed)),
    ]
    rows = [{"method": m, "d_loc": float(e.grad["loc"][0]), "se_loc": float(e.stderr["loc"][0]),
             "d_scale": float(e.grad["scale"][0]), "se_scale": float(e.stderr["scale"][0])} for m, e in ests]
    rows.append({"method": "closed form", "d_loc": 1.0 + 2.0 * float(loc), "se_loc": 0.0,
                 "d_scale": 2.0 * float(scale), "se_scale": 0.0})
    return rows


# ---------------------------------------------------------------- stochastic optimisation
_POSITIVE_PARAMS = ("scale", "rate", "concentration", "concentration1", "concentration0", "df", "temperature")
_TRANSFORMS = ("softplus", "exp")
_MINIMIZE_ESTIMATORS = ("pathwise", "score_function", "measure_valued", "reinforce_loo", "arm", "disarm",
                        "gumbel_softmax")
_TAKES_GRAD_F = ("pathwise", "score_function", "gumbel_softmax")


def _positive_fwd(r, how):
    """(x, dx/dr) of the positive transform x = softplus(r) or exp(r)."""
    if how == "exp":
        x = np.exp(r)
        return x, x
    return np.logaddexp(0.0, r), _sigmoid(r)


def _positive_inv(x, how):
    x = np.asarray(x, dtype=np.float64)
    return np.log(x) if how == "exp" else x + np.log(-np.expm1(-x))


class _Unconstrained:
    """The map between a distribution's parameters and one flat real vector.

    Positive parameters (scale, rate, concentrations, df, temperature) go
    through ``softplus`` or ``exp``; ``scale_tril`` is packed row by row over
    its lower triangle with the diagonal through the same positive transform;
    ``loc``, ``logits``, ``low``, ``high`` are unconstrained. ``grad`` applies
    the chain rule d/draw = d/dparam * dparam/draw.
    """

    def __init__(self, dist, names, transform):
        self.type = type(dist)
        self.transform = transform
        self.fixed = {k: np.asarray(getattr(dist, k)) for k in dist.params}
        self.dtype = dist.dtype
        self.blocks = []  # (name, kind, shape, offset, size)
        off = 0
        raw = []
        for name in names:
            if name == "probs":
                raise TypeError("minimize optimises logits: construct the distribution with logits=...")
            v = np.asarray(getattr(dist, name), dtype=np.float64)
            if name == "scale_tril":
                k = v.shape[-1]
                if v.ndim != 2:
                    raise ValueError("minimize supports an unbatched scale_tril (k, k)")
                rows, cols = np.tril_indices(k)
                r = v[rows, cols].copy()
                diag = rows == cols
                r[diag] = _positive_inv(r[diag], transform)
                kind = ("tril", rows, cols, diag)
            elif name in _POSITIVE_PARAMS:
                r = _positive_inv(v, transform).reshape(-1)
                kind = ("positive",)
            else:
                r = v.reshape(-1)
                kind = ("real",)
            self.blocks.append((name, kind, v.shape, off, r.size))
            raw.append(r)
            off += r.size
        self.size = off
        self.x0 = np.concatenate(raw).astype(self.dtype)

    def params(self, raw):
        """({name: constrained value}, {name: dparam/draw packed like raw})."""
        raw = np.asarray(raw, dtype=np.float64)
        vals, jac = {}, {}
        for name, kind, shape, off, n in self.blocks:
            r = raw[off:off + n]
            if kind[0] == "real":
                vals[name], jac[name] = r.reshape(shape), np.ones(n)
            elif kind[0] == "positive":
                x, d = _positive_fwd(r, self.transform)
                vals[name], jac[name] = x.reshape(shape), d
            else:
                _, rows, cols, diag = kind
                x, d = r.copy(), np.ones(n)
                x[diag], d[diag] = _positive_fwd(r[diag], self.transform)
                L = np.zeros(shape)
                L[rows, cols] = x
                vals[name], jac[name] = L, d
        return vals, jac

    def dist(self, raw):
        vals, _ = self.params(raw)
        kw = {k: vals.get(k, self.fixed[k]) for k in self.fixed}
        return self.type(**{k: np.asarray(v, dtype=self.dtype) for k, v in kw.items()})

    def grad(self, raw, grads):
        """Chain rule: the gradient w.r.t. raw from {name: d/dparam} (parameter-shaped)."""
        _, jac = self.params(raw)
        out = np.zeros(self.size, dtype=np.float64)
        for name, kind, shape, off, n in self.blocks:
            g = np.asarray(grads[name], dtype=np.float64)
            if g.shape != tuple(shape):
                g = _sum_to(np.broadcast_to(g, np.broadcast_shapes(g.shape, shape)), 0, shape)
            gflat = g[kind[1], kind[2]] if kind[0] == "tril" else g.reshape(-1)
            out[off:off + n] = gflat * jac[name]
        return out


class MinimizeResult:
    """What ``minimize`` returns.

    Attributes
    ----------
    dist : Distribution
        The distribution at the final parameters (the Polyak average when ``average > 0``).
    raw : (P,) ndarray
        The final unconstrained parameter vector.
    trace, trace_stderr : (steps_done,) float64
        The objective estimate ``E_q[f] (+ penalty)`` at each step, before its update, and its standard error.
    n_samples : int
        Draws from q over all steps (``steps_done * n_samples``).
    n_evaluations : int
        Points at which f was evaluated over all steps (the measure-valued and
        discrete estimators evaluate f more than once per draw).
    steps : int
        Steps done (fewer than asked when interrupted).
    interrupted : bool
        True when Ctrl-C stopped the loop; ``dist`` holds the parameters reached.
    estimator, seed
    """

    def __init__(self, dist, raw, trace, trace_stderr, n_samples, n_evaluations, steps, interrupted, estimator,
                 seed):
        self.dist = dist
        self.raw = raw
        self.trace = trace
        self.trace_stderr = trace_stderr
        self.n_samples = int(n_samples)
        self.n_evaluations = int(n_evaluations)
        self.steps = int(steps)
        self.interrupted = bool(interrupted)
        self.estimator = estimator
        self.seed = seed

    def __repr__(self):
        last = f"{self.trace[-1]:.6g}" if self.steps else "n/a"
        return (f"MinimizeResult({self.estimator}, steps={self.steps}, last value={last}, "
                f"n_samples={self.n_samples}, dist={self.dist!r})")


def _make_optimizer(optimizer, x, lr, options):
    if callable(optimizer) and not isinstance(optimizer, str):
        opt = optimizer(x)
        if not callable(getattr(opt, "step", None)):
            raise TypeError("optimizer(params) must return an object with a step(grad) method")
        return opt
    name = C.option(optimizer, "optimizer", ("adam", "sgd"))
    cls = _optim.Adam if name == "adam" else _optim.SGD
    return cls(x, lr=lr, **(options or {}))


def minimize(f, dist, estimator="pathwise", steps=1000, n_samples=16, seed=0, stream=0, *, grad_f=None,
             params=None, optimizer="adam", lr=0.05, optimizer_options=None, average=0.0, positive="softplus",
             penalty=None, estimator_options=None, verbose=0, callback=None):
    """Minimise ``E_{q_theta}[f(x)] (+ penalty(q))`` over the parameters of ``q = dist``.

    Each step draws ``n_samples`` points from stream ``fold_in(stream, t)``
    (t = 1, 2, ...), estimates the gradient with ``estimator`` and takes one
    optimiser step on the unconstrained parameters (see below). Progress is
    shown with tqdm (when installed and ``verbose``); Ctrl-C stops after the
    running step and keeps the parameters reached.

    Parameters
    ----------
    f : callable ``(m, *batch, *event) -> (m,)``
    dist : Distribution, the starting point (its type and its fixed parameters are kept)
    estimator : str or callable
        "pathwise", "score_function", "measure_valued", "reinforce_loo", "arm",
        "disarm", "gumbel_softmax", or a function with the estimators' call shape
        ``(f, dist, n_samples, seed=, stream=, **options) -> Estimate``.
    steps : int >= 1
    n_samples : int >= 1, draws per step
    grad_f : callable ``(m, ...) -> (m, ...)``; needed by "pathwise" and "gumbel_softmax"
    params : names of the parameters to optimise (default: all of ``dist.params``)
    optimizer : "adam" | "sgd" | callable ``(x) -> object with step(grad)``
        ``x`` is the float vector of unconstrained parameters, updated in place.
    lr : float, the step size (Adam) or the Robbins-Monro numerator a0 (SGD)
    optimizer_options : dict, more keywords for ``bg.optim.Adam``/``SGD`` (e.g. t0, kappa)
    average : float in [0, 1)
        Fraction of the final steps whose iterates are averaged (Polyak-Ruppert,
        in the unconstrained space); 0 keeps the last iterate.
    positive : "softplus" | "exp"
        Transform of positive parameters (scale, rate, concentrations, df,
        temperature, the diagonal of scale_tril) from the real line.
    penalty : callable ``(q) -> (value, {param: d value / d param})``, optional
        A deterministic term added to the objective (e.g. minus the entropy in BBVI).
    estimator_options : dict of keywords for the estimator (e.g. {"baseline": "loo"})
    callback : callable ``(t, q, estimate) -> bool``; True stops the loop

    Returns
    -------
    MinimizeResult
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    if not isinstance(dist, Distribution):
        raise TypeError(f"dist must be a bayesgrad distribution, got {type(dist).__name__}")
    steps = C.integer(steps, "steps", 1)
    n = C.integer(n_samples, "n_samples", 1)
    seed, stream = _random.resolve_seed(seed), _random._stream(stream)
    if isinstance(estimator, str):
        est_name = C.option(estimator, "estimator", _MINIMIZE_ESTIMATORS)
        est_fn = globals()[est_name]
    elif callable(estimator):
        est_name, est_fn = getattr(estimator, "__name__", "custom"), estimator
    else:
        raise TypeError("estimator must be an estimator name or a callable")
    opts = dict(estimator_options or {})
    if grad_f is not None:
        if not callable(grad_f):
            raise TypeError("grad_f must be callable")
        if not isinstance(estimator, str) or est_name in _TAKES_GRAD_F:
            opts["grad_f"] = grad_f
    if est_name in ("pathwise", "gumbel_softmax") and grad_f is None:
        raise TypeError(f"estimator={est_name!r} needs grad_f")
    names = tuple(dist.params) if params is None else tuple(params)
    if not names:
        raise ValueError("params must name at least one parameter")
    for name in names:
        if name not in dist.params:
            raise ValueError(f"params: {name!r} is not a parameter of {type(dist).__name__} {dist.params}")
    transform = C.option(positive, "positive", _TRANSFORMS)
    avg_frac = C.scalar(average, "average")
    if not 0 <= avg_frac < 1:
        raise ValueError(f"average must be a fraction in [0, 1), got {avg_frac}")
    if penalty is not None and not callable(penalty):
        raise TypeError("penalty must be callable")
    if callback is not None and not callable(callback):
        raise TypeError("callback must be callable")

    u = _Unconstrained(dist, names, transform)
    x = u.x0.copy()
    opt = _make_optimizer(optimizer, x, lr, optimizer_options)
    avg_start = steps - int(math.ceil(avg_frac * steps)) if avg_frac > 0 else steps
    avg = _optim.PolyakAverage(x.size) if avg_frac > 0 else None
    trace = np.full(steps, np.nan)
    trace_se = np.full(steps, np.nan)
    counts = {"done": 0, "samples": 0, "evals": 0}

    class _Stop(Exception):
        pass

    def one_step(i):
        q = u.dist(x)
        est = est_fn(f, q, n, seed=seed, stream=_random.fold_in(stream, i + 1), **opts)
        grads = {k: np.asarray(est.grad[k], dtype=np.float64) for k in names}
        value = est.value
        if penalty is not None:
            pv, pg = penalty(q)
            value += float(pv)
            for k in names:
                if k in pg:
                    grads[k] = grads[k] + np.asarray(pg[k], dtype=np.float64)
        g = u.grad(x, grads)
        if not np.isfinite(g).all():
            raise FloatingPointError(f"non-finite gradient at step {i + 1}; lower lr or change the start")
        opt.step(g.astype(x.dtype))
        trace[i], trace_se[i] = value, est.value_stderr
        counts["done"] = i + 1
        counts["samples"] += est.n_samples
        counts["evals"] += est.n_evaluations
        if avg is not None and i >= avg_start:
            avg.update(x)
        if callback is not None and callback(i + 1, q, est):
            raise _Stop
        return {"value": value}

    try:
        _, interrupted = _tr.run_epochs(steps, one_step, verbose=verbose, desc=f"minimize ({est_name})")
    except _Stop:
        interrupted = False
    final = avg.mean.astype(x.dtype) if avg is not None and avg.count else x
    done = counts["done"]
    return MinimizeResult(u.dist(final), final.copy(), trace[:done], trace_se[:done], counts["samples"],
                          counts["evals"], done, interrupted, est_name, seed)
