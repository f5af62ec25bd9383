"""scikit-learn estimators: Bayesian MLPs with predictive uncertainty.

``BayesianMLPRegressor`` and ``BayesianMLPClassifier`` wrap the package's
approximate posteriors over the weights of an MLP behind scikit-learn's API
(``fit``/``predict``/``predict_proba``/``score``, ``get_params``/``set_params``,
pipelines, ``clone``, grid search):

- ``method="mfvi"``: mean-field variational inference (Bayes by Backprop,
  ``bayesgrad.vi.MFVI``); for classification with the first layer's prior scaled by its
  fan-in, N(0, 1/(prior_precision * n_features)), and a cold posterior (the KL term
  weighted by a temperature of 0.1, as SG-HMC's), see docs/design.md;
- ``method="mc_dropout"``: MC dropout (``bayesgrad.dropout.MCDropout``);
- ``method="laplace"``: MAP training with early stopping on a validation split
  (``bayesgrad.nn.train_map``, Adam at 0.003 unless ``lr`` is given) followed by a last-layer Laplace approximation
  (Kronecker, full for small heads) with its prior precision and noise fitted on
  the marginal likelihood (``bayesgrad.laplace.Laplace``), as Laplace Redux
  recommends (for classification sharpened, see ``laplace_prior``); GLM predictive;
- ``"ensemble"``, ``"swag"``, ``"multiswag"``, ``"sghmc"``: deep ensembles,
  SWAG / MultiSWAG and SG-HMC, the last three from an early-stopped MAP solution.

As in ``MLPClassifier``: ``early_stopping`` (``"auto"``: on for every method but
MFVI classification) holds out
``validation_fraction`` of the rows and stops after ``n_iter_no_change`` epochs
without a fall of the validation NLL by more than ``tol`` nats per row, keeping
the best epoch; ``fit(X, y, sample_weight=...)`` weights each row's likelihood
term (integer weights give the fit of the data set with rows repeated);
``warm_start`` and ``partial_fit`` continue a fitted model; the classifier's
``classes`` lists every label in advance, so that a training set that lacks a
class still gives a probability column for it. ``set_output(transform="pandas")``
(or ``sklearn.set_config(transform_output="pandas")``) makes ``predict_proba``
and ``predict_uncertainty`` return DataFrames with named columns.

Inputs are standardised inside ``fit`` (each feature by its standard deviation, floored at
an eighth of its training range so that a near-constant feature cannot turn a test value
into an input of tens of standard deviations; regression targets too, and predictions
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
    import sklearn
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, column_or_1d
except ImportError as exc:  # pragma: no cover - the module is only importable with sklearn
    raise ImportError('bayesgrad.sklearn needs scikit-learn: pip install "bayesgrad[sklearn]"') from exc

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _sk_validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    _sk_validate_data = None

from ._models import DEFAULTS, METHODS, WARM_START_METHODS, BayesianMLP, check_options, options_for_task
# predict_uncertainty's result type under the name this module has exported
from .uncertainty import Decomposition as Uncertainty

__all__ = ["BayesianMLPRegressor", "BayesianMLPClassifier", "Uncertainty", "METHODS"]


def _validate(est, X, y="no_validation", reset=True, **kw):
    kw.setdefault("dtype", np.float64)
    if _sk_validate_data is not None:
        return _sk_validate_data(est, X, y, reset=reset, **kw)
    return est._validate_data(X, y, reset=reset, **kw)  # pragma: no cover - scikit-learn < 1.6


_D = DEFAULTS
_OUTPUTS = ("default", "pandas")


def _warm_startable(est):
    """partial_fit exists for the methods that continue a fit (scikit-learn's available_if)."""
    return est.method in WARM_START_METHODS


class _BayesianMLPBase(BaseEstimator):
    """Parameters, fitting and prediction shared by the two estimators."""

    _task = None

    def __init__(self, method=_D["method"], hidden_layer_sizes=_D["hidden_layer_sizes"],
                 activation=_D["activation"], epochs=_D["epochs"], lr=_D["lr"], batch_size=_D["batch_size"],
                 n_samples=_D["n_samples"], dropout_p=_D["dropout_p"], prior_precision=_D["prior_precision"],
                 laplace_structure=_D["laplace_structure"], laplace_subset=_D["laplace_subset"],
                 laplace_link=_D["laplace_link"], laplace_prior=_D["laplace_prior"],
                 mfvi_estimator=_D["mfvi_estimator"], mfvi_prior=_D["mfvi_prior"],
                 early_stopping=_D["early_stopping"], validation_fraction=_D["validation_fraction"],
                 n_iter_no_change=_D["n_iter_no_change"], tol=_D["tol"], n_models=_D["n_models"],
                 warm_start=False, random_state=_D["random_state"], verbose=_D["verbose"]):
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
        self.mfvi_estimator = mfvi_estimator
        self.mfvi_prior = mfvi_prior
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.n_models = n_models
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose

    def _options(self):
        # Options are checked here, never in __init__/set_params (scikit-learn's convention).
        params = {k: v for k, v in self.get_params(deep=False).items() if k in DEFAULTS}
        return check_options(**params)

    def _continues(self, opts):
        """Whether this fit continues the fitted model (warm_start)."""
        if not (self.warm_start and hasattr(self, "model_")):
            return False
        if opts["method"] not in WARM_START_METHODS:
            raise ValueError(f"warm_start continues methods {', '.join(WARM_START_METHODS)}, "
                             f"not method={opts['method']!r}")
        return True

    def _continues_partial(self):
        method = self.model_.options["method"]
        if method not in WARM_START_METHODS:
            raise ValueError(f"partial_fit continues methods {', '.join(WARM_START_METHODS)}, not method={method!r}")

    def _fit_model(self, X, y, n_classes=None, sample_weight=None, warm=False, epochs=None):
        if warm:
            model = self.model_
            opts = self._options()
            for k in ("method", "hidden", "activation"):
                if opts[k] != model.options[k]:
                    raise ValueError(f"warm_start / partial_fit: {k} changed since the fit it continues "
                                     f"({model.options[k]!r} -> {opts[k]!r})")
            if self.random_state is None:
                opts["seed"] = model.seed  # the continued run keeps its seed
            # the schedule (epochs, lr, early stopping, ...) as set now, "auto" resolved for the task
            model.options = options_for_task(opts, model.task)
        else:
            opts = self._options()
            model = BayesianMLP(self._task, opts)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
        model.fit(X, y, n_classes=n_classes, sample_weight=sample_weight, warm_start=warm, epochs=epochs)
        self.model_ = model
        self.posterior_ = model.posterior
        self.seed_ = model.seed
        self.n_iter_ = model.epochs_run
        self.n_features_in_ = X.shape[1]
        return self

    def _x(self, X):
        check_is_fitted(self, "model_")
        return _validate(self, X, reset=False)

    # ---------------------------------------------------------------- pandas output
    def set_output(self, *, transform=None):
        """Output container of ``predict_proba`` and ``predict_uncertainty``,
        scikit-learn's ``set_output`` convention.

        Parameters
        ----------
        transform : {"default", "pandas"} or None, default None
            ``"pandas"``: DataFrames with named columns (and the index of a
            DataFrame ``X``); ``"default"``: NumPy arrays; None: unchanged.
            Without a call, ``sklearn.get_config()["transform_output"]`` decides.

        Returns
        -------
        self
        """
        if transform is None:
            return self
        if transform not in _OUTPUTS:
            raise ValueError(f"transform must be one of {', '.join(map(repr, _OUTPUTS))} or None, got {transform!r}")
        # scikit-learn's attribute for it: clone (so GridSearchCV, cross_val_score) keeps it
        self._sklearn_output_config = dict(getattr(self, "_sklearn_output_config", {}), transform=transform)
        return self

    def _pandas_out(self, as_frame=None):
        if as_frame is not None:
            if not isinstance(as_frame, (bool, np.bool_)):  # "x" was taken as True
                raise TypeError(f"as_frame must be True, False or None, got {as_frame!r}")
            return bool(as_frame)
        out = (getattr(self, "_sklearn_output_config", {}).get("transform")
               or sklearn.get_config().get("transform_output", "default"))
        return out == "pandas"

    @staticmethod
    def _frame(data, columns, X):
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas is an optional extra
            raise ImportError('pandas output needs pandas: pip install "bayesgrad[pandas]"') from exc
        index = X.index if isinstance(X, pd.DataFrame) else None
        return pd.DataFrame(data, columns=columns, index=index)

    def predict_uncertainty(self, X, as_frame=None):
        """Total, aleatoric and epistemic uncertainty of each row.

        Parameters
        ----------
        X : array-like (N, D)
        as_frame : bool or None, default None
            True: a pandas DataFrame with columns ``total``, ``aleatoric``,
            ``epistemic`` (the index of a DataFrame ``X``); False: the
            Decomposition; None: as ``set_output`` (or scikit-learn's
            ``transform_output`` config) says.

        Returns
        -------
        Uncertainty (``bayesgrad.uncertainty.Decomposition``) of three (N,)
        arrays, total = aleatoric + epistemic (classification: entropies in
        nats; regression: variances in squared target units), or a DataFrame.
        """
        Xv = self._x(X)
        u = self.model_.uncertainty(Xv)
        if self._pandas_out(as_frame):
            return self._frame({"total": u.total, "aleatoric": u.aleatoric, "epistemic": u.epistemic},
                               ["total", "aleatoric", "epistemic"], X)
        return u


def _check_sample_weight(sample_weight, X, dtype):
    w = np.asarray(sample_weight, dtype=dtype)
    if w.ndim == 0:  # scikit-learn accepts a scalar: every row the same weight
        w = np.full(X.shape[0], float(w), dtype=dtype)
    return w


_PARAMS_DOC = """
    Parameters
    ----------
    method : {"mfvi", "mc_dropout", "laplace", "ensemble", "swag", "multiswag", "sghmc"}, default "mfvi"
        The approximate posterior.
    hidden_layer_sizes : int or tuple of int, default (50,)
        Widths of the hidden layers.
    activation : {"relu", "tanh", "gelu", "sigmoid", "identity"}, default "relu"
    epochs : int or None, default None
        Most passes over the training data (MAP training for the MAP-based methods);
        fewer when early stopping ends training. None: 200, and for "mfvi" regression as
        many as make 10 000 Adam steps on the training rows, up to 1000 (on small data 200
        epochs are too few steps for its ELBO).
    lr : float or None, default None
        Adam learning rate. None: 0.003 for "laplace" (the Laplace approximation expands
        about the MAP solution, which should be a mode rather than a noisy early-stopped
        iterate), 0.01 for the other methods.
    batch_size : int, default 32
        Minibatch size (capped at the number of samples).
    n_samples : int >= 2, default 100
        MC samples per prediction.
    dropout_p : float in (0, 1), default 0.1
        Dropout probability ("mc_dropout" only).
    prior_precision : float > 0, default 1.0
        Precision of the Gaussian prior on the weights (MFVI prior N(0, 1/prior_precision),
        N(0, 1/(prior_precision * n_features)) on the first layer's weights;
        MC dropout and MAP weight decay; Laplace's starting value for the marginal-likelihood fit).
    laplace_structure : {"auto", "diag", "kron", "full"}, default "auto"
        Hessian structure ("laplace" only; "auto": full for a covered part of at most 2000
        parameters, else Kronecker).
    laplace_subset : {"last_layer", "all"}, default "last_layer"
        The weights the Laplace approximation covers.
    laplace_link : {"probit", "mc", "bridge", "bridge_norm"}, default "probit"
        The GLM predictive's link (classification); predict_proba is the mean of the
        n_samples GLM samples, whose closed-form approximation the link gives.
    laplace_prior : {"auto", "marglik", "gridsearch", "fixed"}, default "auto"
        Prior precision (and noise σ for regression) fitted on the Laplace marginal
        likelihood, chosen on a grid by the NLL of the early-stopping validation rows, or
        kept at prior_precision. "auto": regression the marginal likelihood with the last
        layer as Bayesian linear regression on the features (its posterior mean, its
        closed-form evidence); classification the marginal likelihood's precision times 30 (the
        evidence's own is underconfident on nearly separable data; see docs/design.md).
    mfvi_estimator : {"weight_space", "local_reparam", "flipout"}, default "weight_space"
        MFVI's gradient estimator: a weight sample per minibatch, the local
        reparameterisation trick (Kingma et al. 2015), or flipout.
    mfvi_prior : {"gaussian", "scale_mixture"}, default "gaussian"
        MFVI's prior: N(0, 1/prior_precision) (closed-form KL) or Blundell et al.'s scale
        mixture (Monte Carlo KL).
    early_stopping : bool or "auto", default "auto"
        Hold out ``validation_fraction`` of the rows and stop when their NLL has not
        fallen by more than ``tol`` nats per row for ``n_iter_no_change`` epochs; the
        best epoch's parameters are kept. "auto": on (when validation_fraction > 0) for every
        method but "mfvi" classification, whose KL term already regularises (measured:
        bench/sklearn_defaults.py, bench/laplace_defaults.py).
    validation_fraction : float in [0, 1), default 0.1
        Share of the rows held out for early stopping (a Philox split of the seed).
    n_iter_no_change : int >= 1 or None, default None
        Epochs without improvement before training stops. None: 20, and for "mfvi" regression as
        many as make 1000 Adam steps, up to 100 (measured: bench/regression_defaults.py).
    tol : float >= 0, default 1e-4
        The fall of the validation NLL (nats per row) that counts as an improvement.
    n_models : int >= 1, default 5
        Members of "ensemble" and "multiswag".
    warm_start : bool, default False
        ``fit`` continues the fitted model ("mfvi", "mc_dropout", "laplace") -- the same
        input standardisation, its parameters as the start -- instead of starting anew.
    random_state : int or None, default None
        Philox seed of training and prediction (None: fresh entropy, kept in ``seed_``).
    verbose : int, default 0
        0 silences progress output; 1 shows a progress bar (tqdm, on a terminal).

    Attributes
    ----------
    posterior_ : the fitted posterior (``bayesgrad.vi.MFVI``, ``bayesgrad.dropout.MCDropout``,
        ``bayesgrad.laplace.Laplace``, ``bayesgrad.ensemble.DeepEnsemble``, ``bayesgrad.swag.SWAG``
        / ``MultiSWAG`` or ``bayesgrad.sgmcmc.SGMCMC``), on standardised inputs
    seed_ : int, the seed used
    n_features_in_ : int
    n_iter_ : int, epochs run by the last fit (fewer than ``epochs`` when it stopped early)
"""


class BayesianMLPRegressor(RegressorMixin, _BayesianMLPBase):
    __doc__ = "A Bayesian MLP for regression: Gaussian likelihood with learned noise.\n" + _PARAMS_DOC

    _task = "regression"

    def _data(self, X, y, reset):
        X, y = _validate(self, X, y, y_numeric=True, reset=reset)
        y = column_or_1d(y, warn=True).astype(np.float64)
        if X.shape[0] < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 samples, got n_samples={X.shape[0]}")
        return X, y

    def fit(self, X, y, sample_weight=None):
        """Fit the model.

        Parameters
        ----------
        X : array-like (N, D)
        y : array-like (N,), real targets
        sample_weight : array-like (N,) or None, default None
            Finite non-negative weights of the rows' likelihood terms (and of the
            standardisation); integer weights fit the data set with rows repeated.

        Returns
        -------
        self
        """
        warm = self._continues(self._options())
        X, y = self._data(X, y, reset=not warm)
        return self._fit_model(X, y, sample_weight=sample_weight, warm=warm)

    @available_if(_warm_startable)
    def partial_fit(self, X, y, sample_weight=None):
        """Train for ``epochs`` more epochs (early stopping as configured),
        continuing the fitted model with its input and target standardisation;
        the first call fits anew. Only for the methods that continue a fit
        ("mfvi", "mc_dropout", "laplace").

        Parameters
        ----------
        X : array-like (N, D)
        y : array-like (N,), real targets
        sample_weight : array-like (N,) or None, default None, as in ``fit``

        Returns
        -------
        self
        """
        warm = hasattr(self, "model_")
        if warm:
            self._continues_partial()
        X, y = self._data(X, y, reset=not warm)
        return self._fit_model(X, y, sample_weight=sample_weight, warm=warm)

    def predict(self, X, return_std=False):
        """Predictive mean and, optionally, standard deviation.

        Parameters
        ----------
        X : array-like (N, D)
        return_std : bool, default False
            Also return the total predictive standard deviation.

        Returns
        -------
        mean : ndarray (N,), in the units of y
        std : ndarray (N,), sqrt(aleatoric + epistemic variance), only with ``return_std``
        """
        X = self._x(X)
        mean, alea, epi = self.model_.moments(X)
        return (mean, np.sqrt(alea + epi)) if return_std else mean

    def conformalize(self, X_cal, y_cal, alpha=0.1, score="normalized"):
        """Split-conformal calibration on held-out rows (``bayesgrad.conformal``): score
        "normalized" (``|y - mean| / std``) or "absolute"; sets ``conformal_``. Returns self."""
        from .conformal import conformalize_estimator
        return conformalize_estimator(self, X_cal, y_cal, alpha, score=score)

    def predict_interval(self, X):
        """Conformal interval ``(lo, hi)``, each (N,), covering y with probability >= 1 - alpha."""
        from .conformal import estimator_interval
        return estimator_interval(self, X)


class BayesianMLPClassifier(ClassifierMixin, _BayesianMLPBase):
    __doc__ = ("A Bayesian MLP classifier: softmax (categorical) likelihood.\n" + _PARAMS_DOC.replace(
        "    warm_start : bool", """    classes : array-like (C,) or None, default None
        Every class label, in advance: ``predict_proba`` then has a column for each
        (a training set that lacks a class still gives it a small probability);
        None: the labels present in ``y``.
    warm_start : bool""") + "    classes_ : ndarray (C,), the class labels\n")

    _task = "classification"

    def __init__(self, method=_D["method"], hidden_layer_sizes=_D["hidden_layer_sizes"],
                 activation=_D["activation"], epochs=_D["epochs"], lr=_D["lr"], batch_size=_D["batch_size"],
                 n_samples=_D["n_samples"], dropout_p=_D["dropout_p"], prior_precision=_D["prior_precision"],
                 laplace_structure=_D["laplace_structure"], laplace_subset=_D["laplace_subset"],
                 laplace_link=_D["laplace_link"], laplace_prior=_D["laplace_prior"],
                 mfvi_estimator=_D["mfvi_estimator"], mfvi_prior=_D["mfvi_prior"],
                 early_stopping=_D["early_stopping"], validation_fraction=_D["validation_fraction"],
                 n_iter_no_change=_D["n_iter_no_change"], tol=_D["tol"], n_models=_D["n_models"],
                 classes=None, warm_start=False, random_state=_D["random_state"], verbose=_D["verbose"]):
        super().__init__(method=method, hidden_layer_sizes=hidden_layer_sizes, activation=activation,
                         epochs=epochs, lr=lr, batch_size=batch_size, n_samples=n_samples, dropout_p=dropout_p,
                         prior_precision=prior_precision, laplace_structure=laplace_structure,
                         laplace_subset=laplace_subset, laplace_link=laplace_link, laplace_prior=laplace_prior,
                         mfvi_estimator=mfvi_estimator, mfvi_prior=mfvi_prior, early_stopping=early_stopping,
                         validation_fraction=validation_fraction, n_iter_no_change=n_iter_no_change, tol=tol,
                         n_models=n_models, warm_start=warm_start, random_state=random_state, verbose=verbose)
        self.classes = classes

    def _labels(self, y, classes):
        """(classes_ (C,), codes (N,) int64) of labels y against ``classes`` or the labels of y."""
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if classes is None:
            enc = LabelEncoder().fit(y)
            cl = enc.classes_
        else:
            cl = np.asarray(classes)
            if cl.ndim != 1:
                raise ValueError(f"classes must be a 1-D list of labels, got shape {cl.shape}")
            cl = np.unique(cl)
            missing = np.setdiff1d(np.unique(y), cl)
            if missing.size:
                raise ValueError(f"y has labels that are not in classes: {missing[:10].tolist()}")
        if cl.size < 2:
            raise ValueError("Classifier can't train when only one class is present "
                             f"(got only {cl[0]!r}).")
        return cl, np.searchsorted(cl, y).astype(np.int64)

    def fit(self, X, y, sample_weight=None):
        """Fit the model.

        Parameters
        ----------
        X : array-like (N, D)
        y : array-like (N,), class labels (any of ``classes`` when it is given)
        sample_weight : array-like (N,) or None, default None
            Finite non-negative weights of the rows' likelihood terms (and of the
            standardisation); integer weights fit the data set with rows repeated.

        Returns
        -------
        self
        """
        warm = self._continues(self._options())
        X, y = _validate(self, X, y, reset=not warm)
        if warm:
            cl, codes = self._labels(y, self.classes_)
        else:
            cl, codes = self._labels(y, self.classes)
            self.classes_ = cl
        return self._fit_model(X, codes, n_classes=cl.size, sample_weight=sample_weight, warm=warm)

    @available_if(_warm_startable)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Train on (X (N, D), y (N,)) for ``epochs`` more epochs (early stopping
        as configured), continuing the fitted model; for rounds of new labels.
        Only for the methods that continue a fit ("mfvi", "mc_dropout", "laplace").

        Parameters
        ----------
        X : array-like (N, D)
        y : array-like (N,)
        classes : array-like (C,) or None
            Every label; needed on the first call unless the ``classes`` parameter
            or ``y`` has them all (scikit-learn's partial_fit convention); later
            calls may repeat it.
        sample_weight : array-like (N,) or None, as in ``fit``

        Returns
        -------
        self
        """
        warm = hasattr(self, "model_")
        if warm:
            self._continues_partial()
            if classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
                raise ValueError(f"classes {np.unique(np.asarray(classes)).tolist()} differ from those of the "
                                 f"first partial_fit {self.classes_.tolist()}")
        X, y = _validate(self, X, y, reset=not warm)
        if warm:
            cl, codes = self._labels(y, self.classes_)
        else:
            cl, codes = self._labels(y, classes if classes is not None else self.classes)
            self.classes_ = cl
        return self._fit_model(X, codes, n_classes=cl.size, sample_weight=sample_weight, warm=warm)

    def predict_proba(self, X):
        """Predictive class probabilities.

        Parameters
        ----------
        X : array-like (N, D)

        Returns
        -------
        ndarray (N, C), columns in the order of ``classes_``, rows summing to 1;
        under pandas output (``set_output``) a DataFrame with the class labels as
        columns (and the index of a DataFrame ``X``).
        """
        Xv = self._x(X)
        p = self.model_.probs(Xv)
        if self._pandas_out():
            return self._frame(p, list(self.classes_), X)
        return p

    def predict(self, X):
        """The most probable class of each row.

        Parameters
        ----------
        X : array-like (N, D)

        Returns
        -------
        ndarray (N,) of labels from ``classes_``
        """
        Xv = self._x(X)
        return self.classes_[np.argmax(self.model_.probs(Xv), axis=1)]

    def sample_proba(self, X):
        """Class probabilities of each Monte Carlo sample of the posterior.

        Parameters
        ----------
        X : array-like (N, D)

        Returns
        -------
        ndarray (S, N, C), S = ``n_samples``; their mean over S is ``predict_proba``
        """
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
