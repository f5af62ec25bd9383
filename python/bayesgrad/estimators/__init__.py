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
variables ``reinforce_loo``, ``arm``, ``disarm`` (Bernoulli),
``gumbel_softmax`` (biased; its bias is measured by ``exact_gradient``) and
``rebar`` / ``relax`` (Bernoulli, Categorical; unbiased, with a learned
``RelaxSurrogate`` control variate on the Concrete relaxation); from sets of
``k`` distinct configurations drawn without replacement (Categorical,
``bg.distributions.gumbel_top_k``): ``unordered_set`` and ``reinforce_wor``
(``n_samples`` then counts sets). Multi-sample
objectives (``f`` is then the log joint density and ``n_samples`` counts groups
of ``k`` draws): ``iwae``, ``dreg`` (IWAE and RWS) and ``vimco``.
Independent random uses inside one estimator (baseline samples, coefficient
samples, the measure-valued draws) get their own streams from
``bg.random.fold_in(stream, tag)``; the same ``seed`` gives common random numbers.
The accumulation over samples runs in the native kernels (``score_accumulate``,
``pathwise_accumulate``, ``column_mean_var``) or their NumPy twins.

Layout: ``generic`` (expectation, pathwise, score_function, measure_valued),
``discrete`` (reinforce_loo, arm, disarm, gumbel_softmax, exact_gradient),
``relax`` (rebar, relax), ``without_replacement`` (unordered_set,
reinforce_wor), ``multisample`` (iwae, dreg, vimco),
``diagnostics`` (naive_gradient, variance_curve, seed_example), ``_base``
(``Estimate`` and shared helpers) and ``_registry`` (the estimators by name).
``minimize`` and ``MinimizeResult`` live in ``bayesgrad.stochastic_opt`` and
are re-exported here, imported on first use; ``plot_variance`` lives in
``bayesgrad.plotting``.
"""
from __future__ import annotations

import importlib as _importlib

# DeltaControlVariate ... Normal: the single-module version exposed them through its own
# imports, so they stay importable from here.
from ..control_variates import (DeltaControlVariate, MovingAverageBaseline, RelaxSurrogate,  # noqa: F401
                                optimal_coefficient)
from ..distributions import Distribution, Normal  # noqa: F401
from ..plotting import plot_variance
from ._base import Estimate
from .diagnostics import naive_gradient, seed_example, variance_curve
from .discrete import arm, disarm, exact_gradient, gumbel_softmax, reinforce_loo
from .generic import expectation, measure_valued, pathwise, score_function
from .multisample import dreg, iwae, vimco
from .relax import rebar, relax
from .without_replacement import reinforce_wor, unordered_set

__all__ = [
    "Estimate", "RelaxSurrogate", "expectation", "pathwise", "score_function", "measure_valued", "reinforce_loo", "arm",
    "disarm", "gumbel_softmax", "rebar", "relax", "unordered_set", "reinforce_wor", "iwae", "dreg", "vimco", "exact_gradient", "naive_gradient",
    "variance_curve", "plot_variance",
    "seed_example", "minimize", "MinimizeResult",
]

# stochastic_opt imports this package (the registry, the helpers), so it is
# imported lazily here rather than at the top, which would be circular.
_LAZY = {"minimize": "..stochastic_opt", "MinimizeResult": "..stochastic_opt"}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
