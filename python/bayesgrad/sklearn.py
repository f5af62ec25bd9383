"""scikit-learn estimators: Bayesian MLPs with predictive uncertainty.

``BayesianMLPRegressor`` and ``BayesianMLPClassifier`` wrap the package's
approximate posteriors over the weights of an MLP behind scikit-learn's API
(``fit``/``predict``/``predict_proba``/``score``, ``get_params``/``set_params``,
pipelines, ``clone``, grid search):

- ``method="mfvi"``: mean-field variational inference (Bayes by Backprop,
  ``bayesgrad.vi.MFVI``);
- ``method="mc_dropout"``: MC dropout (``bayesgrad.dropout.MCDropout``);
- ``method="laplace"``: MAP training with early stopping on a validation split
  (``bayesgrad.nn.train_map``) followed by a last-layer Laplace approximation
  (Kronecker, full for small heads) with its prior precision and noise fitted on
  the marginal likelihood (``bayesgrad.laplace.Laplace``), as Laplace Redux
  recommends; GLM predictive.

Inputs are standardised inside ``fit`` (and regression targets too; predictions
come back in the original units). ``predict_uncertainty(X)`` gives the split of
predictive uncertainty into total = aleatoric + epistemic: entropies in nats
for classification (predictive entropy, expected entropy, mutual information),
variances in squared target units for regression (total predictive variance,
noise variance, variance of the sampled means).

Predictions are deterministic: the MC draws of ``predict*`` use the seed fitted
in ``fit`` (``seed_``) on the ``"predict"`` stream, and one set of S parameter
draws is shared by every row, so a row's prediction does not depend on the
other rows of ``X``.

scikit-learn is an optional dependency: ``pip install "bayesgrad[sklearn]"``.
"""
from __future__ import annotations

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, column_or_1d
except ImportError as exc:  # pragma: no cover - the module is only importable with sklearn
    raise ImportError('bayesgrad.sklearn needs scikit-learn: pip install "bayesgrad[sklearn]"') from exc

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _sk_validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    _sk_validate_data = None

from ._models import DEFAULTS, METHODS, BayesianMLP, check_options
# predict_uncertainty's result type under the name this module has exported
from .uncertainty import Decomposition as Uncertainty

__all__ = ["BayesianMLPRegressor", "BayesianMLPClassifier", "Uncertainty", "METHODS"]


def _validate(est, X, y="no_validation", reset=True, **kw):
    kw.setdefault("dtype", np.float64)
    if _sk_validate_data is not None:
        return _sk_validate_data(est, X, y, reset=reset, **kw)
    return est._validate_data(X, y, reset=reset, **kw)  # pragma: no cover - scikit-learn < 1.6


_D = DEFAULTS


class _BayesianMLPBase(BaseEstimator):
    """Parameters, fitting and prediction shared by the two estimators."""

    _task = None

    def __init__(self, method=_D["method"], hidden_layer_sizes=_D["hidden_layer_sizes"],
                 activation=_D["activation"], epochs=_D["epochs"], lr=_D["lr"], batch_size=_D["batch_size"],
                 n_samples=_D["n_samples"], dropout_p=_D["dropout_p"], prior_precision=_D["prior_precision"],
                 laplace_structure=_D["laplace_structure"], laplace_subset=_D["laplace_subset"],
                 laplace_link=_D["laplace_link"], laplace_prior=_D["laplace_prior"],
                 validation_fraction=_D["validation_fraction"], n_models=_D["n_models"],
                 random_state=_D["random_state"], verbose=_D["verbose"]):
        self.method = method
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.n_samples = n_samples
        self.dropout_p = dropout_p
        self.prior_precision = prior_precision
        self.laplace_structure = laplace_structure
        self.laplace_subset = laplace_subset
        self.laplace_link = laplace_link
        self.laplace_prior = laplace_prior
        self.validation_fraction = validation_fraction
        self.n_models = n_models
        self.random_state = random_state
        self.verbose = verbose

    def _fit_model(self, X, y, n_classes=None):
        # Options are checked here, never in __init__/set_params (scikit-learn's convention).
        opts = check_options(**self.get_params())
        self.model_ = BayesianMLP(self._task, opts).fit(X, y, n_classes=n_classes)
        self.posterior_ = self.model_.posterior
        self.seed_ = opts["seed"]
        # MAP training for "laplace" stops early on its validation rows
        self.n_iter_ = getattr(self.model_, "epochs_run", opts["epochs"])
        return self

    def _x(self, X):
        check_is_fitted(self, "model_")
        return _validate(self, X, reset=False)

    def predict_uncertainty(self, X):
        """Total, aleatoric and epistemic uncertainty of each row: a
        ``bayesgrad.uncertainty.Decomposition`` (here also ``Uncertainty``) of
        three (N,) arrays, total = aleatoric + epistemic (classification: nats;
        regression: variances in squared target units)."""
        X = self._x(X)
        return self.model_.uncertainty(X)


_PARAMS_DOC = """
    Parameters
    ----------
    method : {"mfvi", "mc_dropout", "laplace"}, the approximate posterior
    hidden_layer_sizes : int or tuple of int, widths of the hidden layers
    activation : {"relu", "tanh", "gelu", "sigmoid", "identity"}
    epochs : int, passes over the training data (MAP training for "laplace")
    lr : float, Adam learning rate
    batch_size : int, minibatch size (capped at the number of samples)
    n_samples : int >= 2, MC samples per prediction
    dropout_p : float in (0, 1), dropout probability ("mc_dropout" only)
    prior_precision : float > 0, precision of the Gaussian prior on the weights
        (MFVI prior N(0, 1/prior_precision); MC dropout and MAP weight decay;
        Laplace's starting value for the marginal-likelihood fit)
    laplace_structure : {"auto", "diag", "kron", "full"}, Hessian structure ("laplace" only;
        "auto": full for a head of at most 2000 parameters, else Kronecker)
    laplace_subset : {"last_layer", "all"}, the weights the Laplace approximation covers
    laplace_link : {"probit", "mc", "bridge", "bridge_norm"}, the GLM predictive's link (classification);
        predict_proba is the mean of the n_samples GLM samples, whose closed-form
        approximation the link gives
    laplace_prior : {"marglik", "gridsearch", "fixed"}, prior precision (and noise σ for
        regression) fitted on the Laplace marginal likelihood, chosen on a grid by the NLL of
        the early-stopping validation rows, or kept at prior_precision
    validation_fraction : float in [0, 1), rows held out for early stopping of the MAP
        training ("laplace", "ensemble", "swag", "multiswag", "sghmc"; 0 trains for all
        epochs on every row)
    n_models : int >= 1, members of "ensemble" and "multiswag"
    random_state : int or None, Philox seed of training and prediction (None:
        fresh entropy, kept in ``seed_``)
    verbose : int, 0 silences progress output

    Attributes
    ----------
    posterior_ : the fitted posterior (``bayesgrad.vi.MFVI``, ``bayesgrad.dropout.MCDropout``,
        ``bayesgrad.laplace.Laplace``, ``bayesgrad.ensemble.DeepEnsemble``, ``bayesgrad.swag.SWAG``
        / ``MultiSWAG`` or ``bayesgrad.sgmcmc.SGMCMC``), on standardised inputs
    seed_ : int, the seed used
    n_features_in_ : int
    n_iter_ : int, epochs run (fewer than ``epochs`` when "laplace" stopped early)
"""


class BayesianMLPRegressor(RegressorMixin, _BayesianMLPBase):
    __doc__ = "A Bayesian MLP for regression: Gaussian likelihood with learned noise.\n" + _PARAMS_DOC

    _task = "regression"

    def fit(self, X, y):
        """Fit to ``X`` (N, D) and ``y`` (N,). Returns self."""
        X, y = _validate(self, X, y, y_numeric=True)
        y = column_or_1d(y, warn=True).astype(np.float64)
        if X.shape[0] < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 samples, got n_samples={X.shape[0]}")
        return self._fit_model(X, y)

    def predict(self, X, return_std=False):
        """Predictive mean (N,); with ``return_std=True`` also the total predictive std (N,)."""
        X = self._x(X)
        mean, alea, epi = self.model_.moments(X)
        return (mean, np.sqrt(alea + epi)) if return_std else mean

    def conformalize(self, X_cal, y_cal, alpha=0.1, score="normalized"):
        """Split-conformal calibration on held-out rows (``bayesgrad.conformal``): score
        "normalized" (|y - mean| / std) or "absolute"; sets ``conformal_``. Returns self."""
        from .conformal import conformalize_estimator
        return conformalize_estimator(self, X_cal, y_cal, alpha, score=score)

    def predict_interval(self, X):
        """Conformal interval ``(lo, hi)``, each (N,), covering y with probability >= 1 - alpha."""
        from .conformal import estimator_interval
        return estimator_interval(self, X)


class BayesianMLPClassifier(ClassifierMixin, _BayesianMLPBase):
    __doc__ = ("A Bayesian MLP classifier: softmax (categorical) likelihood.\n" + _PARAMS_DOC
               + "    classes_ : ndarray (C,), the class labels\n")

    _task = "classification"

    def fit(self, X, y):
        """Fit to ``X`` (N, D) and class labels ``y`` (N,). Returns self."""
        X, y = _validate(self, X, y)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        enc = LabelEncoder().fit(y)
        self.classes_ = enc.classes_
        if self.classes_.size < 2:
            raise ValueError("Classifier can't train when only one class is present "
                             f"(got only {self.classes_[0]!r}).")
        return self._fit_model(X, enc.transform(y).astype(np.int64), n_classes=self.classes_.size)

    def predict_proba(self, X):
        """Predictive class probabilities (N, C), columns in the order of ``classes_``."""
        X = self._x(X)
        return self.model_.probs(X)

    def predict(self, X):
        """The most probable class of each row (N,)."""
        proba = self.predict_proba(X)  # checks that the model is fitted
        return self.classes_[np.argmax(proba, axis=1)]

    def sample_proba(self, X):
        """Class probabilities of each MC sample (S, N, C), S = ``n_samples``."""
        X = self._x(X)
        return self.model_.sample_probs(X)

    def conformalize(self, X_cal, y_cal, alpha=0.1, method="aps", randomized=True, k_reg=1, lam=0.01):
        """Split-conformal calibration on held-out rows (``bayesgrad.conformal``; method
        "aps", "lac" or "raps"); sets ``conformal_``. Returns self."""
        from .conformal import conformalize_estimator
        return conformalize_estimator(self, X_cal, y_cal, alpha, method=method, randomized=randomized,
                                      k_reg=k_reg, lam=lam)

    def predict_set(self, X, seed=None):
        """Conformal prediction sets (N, C) bool, columns in ``classes_`` order, holding the
        label with probability >= 1 - alpha (randomized scores: ``seed``, default ``seed_``)."""
        from .conformal import estimator_sets
        return estimator_sets(self, X, seed)
