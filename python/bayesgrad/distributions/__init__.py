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

Layout: ``_base`` (the ``Distribution`` base class and shared helpers),
``locscale`` (Normal, LogNormal, Exponential, Uniform, Laplace, Gumbel,
StudentT), ``gamma`` (Gamma, Beta, Dirichlet), ``discrete`` (Bernoulli,
Categorical, Poisson; ``gumbel_top_k``, sampling without replacement), ``relaxed``
(RelaxedBernoulli, RelaxedCategorical), ``multivariate``
(MultivariateNormal) and ``kl`` (``kl_divergence`` and its registry). The
public names are all importable from ``bayesgrad.distributions``.
"""
from __future__ import annotations

from ._base import Distribution, digamma, lgamma  # noqa: F401 (public, outside __all__ as before the split)
from .discrete import Bernoulli, Categorical, Poisson, TopK, gumbel_top_k
from .relaxed import RelaxedBernoulli, RelaxedCategorical
from .gamma import Beta, Dirichlet, Gamma
from .kl import kl_divergence, register_kl
from .locscale import Exponential, Gumbel, Laplace, LogNormal, Normal, StudentT, Uniform
from .multivariate import MultivariateNormal

__all__ = [
    "Distribution", "Normal", "MultivariateNormal", "LogNormal", "Exponential", "Uniform", "Laplace",
    "Gumbel", "StudentT", "Gamma", "Beta", "Dirichlet", "Bernoulli", "Categorical", "Poisson",
    "RelaxedBernoulli", "RelaxedCategorical", "gumbel_top_k", "TopK", "kl_divergence", "register_kl",
]
