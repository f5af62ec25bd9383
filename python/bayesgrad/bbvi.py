"""Black-box variational inference for a model given as a log density.

Fit a Gaussian q(x) to an unnormalised posterior p(x) (x in R^D) by
maximising the evidence lower bound

    ELBO(q) = E_q[log p(x)] + H(q)   (nats),

with the expectation's gradient from any estimator of ``bg.estimators`` and the
entropy term and its gradient in closed form. Call shape::

    vi = bg.bbvi.BBVI(log_density, dim, family="meanfield", estimator="pathwise",
                      grad_log_density=grad)
    res = vi.fit(steps=2000, n_samples=16, seed=0)
    res.q            # Normal(loc (D,), scale (D,)) or MultivariateNormal(loc (D,), scale_tril (D, D))
    res.elbo         # (steps,) ELBO estimate at each step, res.elbo_stderr its standard error
    res.n_samples    # draws from q over the whole fit
    vi.elbo(res.q, n_samples=10_000, seed=1)   # (mean, stderr) of the ELBO of any q

``log_density`` maps ``(m, D) -> (m,)`` (vectorised over the sample axis);
``grad_log_density`` maps ``(m, D) -> (m, D)`` and is needed by the pathwise
estimator (and by ``iwae`` and ``dreg``). The multi-sample estimators
``"iwae"``, ``"dreg"`` (mean-field only) and ``"vimco"`` maximise the
importance-weighted bound L_K = E[log (1/K) sum_k p(x_k)/q(x_k)] instead
(``estimator_options={"k": K}``, default 8; ``n_samples`` then counts groups
of K draws); ``res.elbo`` then holds L_K. Errors raised while evaluating the
user's functions name them as passed (``log_density``, ``grad_log_density``).
Families: ``"meanfield"`` q = N(mu, diag(sigma^2)) with
sigma = softplus(rho) (or exp(rho)); ``"fullrank"`` q = N(mu, L L^T) with L lower
triangular, its diagonal through the same positive transform. The optimisation
runs through ``bg.stochastic_opt.minimize`` (Adam or Robbins-Monro SGD from
``bg.optim``, optional Polyak averaging, tqdm progress, Ctrl-C keeps the
parameters reached).
"""
from __future__ import annotations

import math

import numpy as np

from . import _checks as C
from . import estimators as _est
from . import random as _random
from . import stochastic_opt as _sopt
from .distributions import MultivariateNormal, Normal

__all__ = ["BBVI", "BBVIResult", "FAMILIES", "ESTIMATORS"]

FAMILIES = ("meanfield", "fullrank")
ESTIMATORS = ("pathwise", "score_function", "measure_valued", "iwae", "dreg", "vimco")
_BOUND_ESTIMATORS = ("iwae", "dreg", "vimco")  # maximise the IWAE bound L_K instead of the ELBO
_ALIASES = {"mean_field": "meanfield", "full_rank": "fullrank", "full": "fullrank", "diagonal": "meanfield"}
_LOG_2PI = math.log(2.0 * math.pi)


def _neg_entropy(q):
    """-H(q) and its gradient w.r.t. q's parameters (closed form).

    Mean-field: H = sum_d log sigma_d + D/2 (1 + log 2 pi), dH/dsigma = 1/sigma.
    Full rank: H = sum_d log L_dd + D/2 (1 + log 2 pi), dH/dL = diag(1/L_dd).
    """
    if isinstance(q, MultivariateNormal):
        d = np.diagonal(q.scale_tril).astype(np.float64)
        return -float(np.sum(q.entropy())), {"loc": np.zeros(d.size), "scale_tril": -np.diag(1.0 / d)}
    s = np.asarray(q.scale, dtype=np.float64)
    return -float(np.sum(q.entropy())), {"loc": np.zeros_like(s), "scale": -1.0 / s}


class BBVIResult:
    """A BBVI fit.

    Attributes
    ----------
    q : Normal (mean-field, batch (D,)) or MultivariateNormal (full rank, event (D,))
    elbo, elbo_stderr : (steps,) float64
        ELBO estimate (nats) at each step, before its update, and its standard error
        (the IWAE bound L_K for the multi-sample estimators).
    n_samples : int, draws from q over the fit
    n_evaluations : int, evaluations of the log density over the fit
    steps : int, steps done
    interrupted : bool, True when Ctrl-C stopped the fit (q holds the parameters reached)
    estimator, family, seed
    """

    def __init__(self, q, res, family):
        self.q = q
        self.elbo = -res.trace
        self.elbo_stderr = res.trace_stderr
        self.n_samples = res.n_samples
        self.n_evaluations = res.n_evaluations
        self.steps = res.steps
        self.interrupted = res.interrupted
        self.estimator = res.estimator
        self.family = family
        self.seed = res.seed

    @property
    def mean(self):
        """(D,) mean of q."""
        return np.asarray(self.q.mean, dtype=np.float64)

    @property
    def covariance(self):
        """(D, D) covariance of q."""
        if isinstance(self.q, MultivariateNormal):
            return np.asarray(self.q.covariance_matrix, dtype=np.float64)
        return np.diag(np.asarray(self.q.variance, dtype=np.float64))

    def __repr__(self):
        last = f"{self.elbo[-1]:.6g}" if self.steps else "n/a"
        return (f"BBVIResult({self.family}, {self.estimator}, steps={self.steps}, last ELBO={last}, "
                f"n_samples={self.n_samples})")


class BBVI:
    """Black-box VI with a Gaussian q; see the module docstring.

    Parameters
    ----------
    log_density : callable ``(m, D) -> (m,)``, log p(x) up to a constant (nats)
    dim : int >= 1, D
    family : "meanfield" | "fullrank"
    estimator : "pathwise" | "score_function" | "measure_valued" (mean-field only) | "iwae" | "dreg"
        (mean-field only; the IWAE bound) | "vimco" (the IWAE bound, any family)
    grad_log_density : callable ``(m, D) -> (m, D)``; required for "pathwise", "iwae" and "dreg"
    estimator_options : dict for the estimator; the score function defaults to
        ``{"baseline": "loo"}`` (without a baseline its variance grows with ``|log p|``)
    scale_transform : "softplus" | "exp", how the scales are kept positive
    init_loc : (D,) starting mean (default 0); its dtype (float32/float64) is the fit's
    init_scale : float > 0, starting standard deviation of every coordinate
    dtype : float32 or float64 when ``init_loc`` is not given
    """

    def __init__(self, log_density, dim, family="meanfield", estimator="pathwise", grad_log_density=None, *,
                 estimator_options=None, scale_transform="softplus", init_loc=None, init_scale=1.0,
                 dtype=np.float64):
        if not callable(log_density):
            raise TypeError(f"log_density must be callable, got {type(log_density).__name__}")
        self.dim = C.integer(dim, "dim", 1)
        self.family = C.option(family, "family", FAMILIES, _ALIASES)
        # q's parameters (a full-rank q's (D, D) factor): dim = 10**12 reached np.zeros' MemoryError
        C.check_allocation(C.n_bytes((self.dim, self.dim if self.family == "fullrank" else 3)),
                           f"dim={self.dim}: q's parameters")
        self.estimator = C.option(estimator, "estimator", ESTIMATORS)
        if grad_log_density is not None and not callable(grad_log_density):
            raise TypeError("grad_log_density must be callable")
        if self.estimator in ("pathwise", "iwae", "dreg") and grad_log_density is None:
            raise TypeError(f"estimator={self.estimator!r} needs grad_log_density, the gradient of log_density")
        if self.estimator in ("measure_valued", "iwae", "dreg") and self.family != "meanfield":
            raise ValueError(f"estimator={self.estimator!r} is implemented for family='meanfield' only")
        self.log_density = log_density
        self.grad_log_density = grad_log_density
        if estimator_options is not None and not isinstance(estimator_options, dict):
            raise TypeError("estimator_options must be a dict of keyword options, got "
                            f"{type(estimator_options).__name__}")
        opts = dict(estimator_options or {})
        if self.estimator == "score_function" and "baseline" not in opts and "control_variate" not in opts:
            opts["baseline"] = "loo"
        if self.estimator in _BOUND_ESTIMATORS:
            opts.setdefault("k", 8)
        self.estimator_options = opts
        self.scale_transform = C.option(scale_transform, "scale_transform", ("softplus", "exp"))
        if init_loc is None:
            self.dtype = C.float_dtype(dtype)
            self.init_loc = np.zeros(self.dim, dtype=self.dtype)
        else:
            loc = C.as_array(init_loc, "init_loc", ndim=1)
            if loc.shape != (self.dim,):
                raise ValueError(f"init_loc must have shape ({self.dim},), got {loc.shape}")
            self.dtype = loc.dtype
            self.init_loc = np.ascontiguousarray(loc)
        s0 = C.scalar(init_scale, "init_scale")
        if s0 <= 0:
            raise ValueError(f"init_scale must be positive, got {s0}")
        self.init_scale = s0

    @staticmethod
    def _checked(fn, x, name, shape):
        """fn(x) as a finite float64 array of ``shape``; errors name the user's argument."""
        try:
            y = C.returned_real(fn(x), name)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must return a real array") from exc
        if y.shape != shape:
            raise ValueError(f"{name} must map (m, {x.shape[-1]}) inputs to shape {shape} (m = {x.shape[0]}), "
                             f"got shape {y.shape}")
        if not np.isfinite(y).all():
            raise ValueError(f"{name} returned NaN or inf")
        return y

    def _logp(self, x):
        return self._checked(self.log_density, x, "log_density", (x.shape[0],))

    def _grad_logp(self, x):
        return self._checked(self.grad_log_density, x, "grad_log_density", tuple(x.shape))

    # the ELBO is maximised as a minimisation: f = -log p, penalty = -H(q)
    def _f(self, x):
        return -self._logp(x)

    def _grad_f(self, x):
        return -self._grad_logp(x)

    def _bound_estimator(self):
        """The IWAE-bound estimator as a minimisation estimator: value and gradients of -L_K."""
        fn = getattr(_est, self.estimator)
        takes_grad = self.estimator != "vimco"

        def estimate(f, q, n_samples, seed=0, stream=0, **options):
            if takes_grad:
                options["grad_f"] = self._grad_logp
            e = fn(self._logp, q, n_samples, seed=seed, stream=stream, **options)
            e.value = -e.value
            e.grad = {k: -v for k, v in e.grad.items()}
            return e

        estimate.__name__ = self.estimator
        return estimate

    def initial_q(self):
        """The starting q: mean ``init_loc``, covariance ``init_scale**2 I``."""
        if self.family == "meanfield":
            return Normal(self.init_loc, np.full(self.dim, self.init_scale, dtype=self.dtype))
        return MultivariateNormal(self.init_loc, self.init_scale * np.eye(self.dim, dtype=self.dtype))

    def fit(self, steps=2000, n_samples=16, seed=0, stream=0, *, optimizer="adam", lr=0.05,
            optimizer_options=None, average=0.0, q0=None, verbose=0, callback=None):
        """Maximise the ELBO (the IWAE bound for "iwae", "dreg", "vimco"); returns a ``BBVIResult``.

        Parameters
        ----------
        steps : int >= 1
        n_samples : int >= 1, draws of q per step (the measure-valued estimator
            evaluates the density 4 D + 1 times per draw)
        seed, stream : step t draws from stream ``fold_in(stream, t)``
        optimizer, lr, optimizer_options, average : see ``bg.stochastic_opt.minimize``
            (e.g. ``optimizer="sgd", lr=a0, optimizer_options={"t0": 100, "kappa": 0.7}, average=0.5``)
        q0 : a Normal / MultivariateNormal to start from (default ``initial_q()``)
        verbose : 0 silent, 1 a tqdm progress bar on a terminal (tqdm installed), 2 wherever stderr goes
        callback : ``(t, q, estimate) -> bool``; True stops the fit
        """
        q = self.initial_q() if q0 is None else self._check_q(q0)
        bound = self.estimator in _BOUND_ESTIMATORS
        res = _sopt.minimize(self._f, q, self._bound_estimator() if bound else self.estimator, steps, n_samples,
                             seed, stream,
                             grad_f=self._grad_f if self.grad_log_density is not None and not bound else None,
                             optimizer=optimizer, lr=lr, optimizer_options=optimizer_options, average=average,
                             positive=self.scale_transform, penalty=None if bound else _neg_entropy,
                             estimator_options=self.estimator_options, verbose=verbose, callback=callback)
        return BBVIResult(res.dist, res, self.family)

    def _check_q(self, q):
        want = Normal if self.family == "meanfield" else MultivariateNormal
        if not isinstance(q, want):
            raise TypeError(f"q0 must be a {want.__name__} for family={self.family!r}, got {type(q).__name__}")
        if tuple(q.mean.shape) != (self.dim,):
            raise ValueError(f"q0 must have mean shape ({self.dim},), got {q.mean.shape}")
        return q

    def elbo(self, q, n_samples=10_000, seed=0, stream=0):
        """Monte Carlo ELBO of q: ``(mean, stderr)`` in nats (entropy in closed form).

        The same seed gives common random numbers across different q, so ELBOs
        of two fits can be compared more precisely than their standard errors suggest.
        """
        q = self._check_q(q)
        m, se = _est.expectation(self._logp, q, n_samples,
                                 seed=seed, stream=_random.fold_in(stream, "elbo"))
        return m + float(np.sum(q.entropy())), se
