"""The estimators that share the call shape ``(f, dist, n_samples, seed=,
stream=, **options) -> Estimate``, by name: what ``minimize`` and
``variance_curve`` accept as strings. Internal; defined once here.
"""
from __future__ import annotations

from .discrete import arm, disarm, gumbel_softmax, reinforce_loo
from .generic import measure_valued, pathwise, score_function
from .relax import rebar, relax
from .without_replacement import reinforce_wor, unordered_set

ESTIMATORS = {
    "pathwise": pathwise,
    "score_function": score_function,
    "measure_valued": measure_valued,
    "reinforce_loo": reinforce_loo,
    "arm": arm,
    "disarm": disarm,
    "gumbel_softmax": gumbel_softmax,
    "rebar": rebar,
    "relax": relax,
    "unordered_set": unordered_set,
    "reinforce_wor": reinforce_wor,
}
