"""One Bayesian MLP for the high-level front ends (``bayesgrad.sklearn``, the
``bayesgrad`` command and its demo), without any scikit-learn dependency.

:class:`BayesianMLP` checks its options, standardises inputs (and regression
targets), trains one of the posteriors -- ``"mfvi"`` (``bayesgrad.vi.MFVI``),
``"mc_dropout"`` (``bayesgrad.dropout.MCDropout``), ``"laplace"``
(``bayesgrad.nn.train_map`` + ``bayesgrad.laplace.Laplace`` with the prior
precision fitted on the marginal likelihood; see ``laplace_prior="auto"``), ``"ensemble"``
(``bayesgrad.ensemble.DeepEnsemble``, heteroscedastic for regression),
``"swag"`` / ``"multiswag"`` (``bayesgrad.swag``) or ``"sghmc"``
(``bayesgrad.sgmcmc.SGMCMC``), the last three from a MAP solution trained with
early stopping -- and turns its ``Predictive``
into arrays in the user's units. This is the only place that calls the
posterior modules, so the front ends stay thin.
"""
from __future__ import annotations

import inspect
import numbers

import numpy as np

from . import _checks as C
from . import random as _random

METHODS = ("mfvi", "mc_dropout", "laplace", "ensemble", "swag", "multiswag", "sghmc")
TASKS = ("regression", "classification")
ACTIVATIONS = ("relu", "tanh", "gelu", "sigmoid", "identity")
LAPLACE_STRUCTURES = ("auto", "diag", "kron", "full")
LAPLACE_SUBSETS = ("last_layer", "all")
LAPLACE_LINKS = ("probit", "mc", "bridge", "bridge_norm")
LAPLACE_PRIORS = ("auto", "marglik", "gridsearch", "fixed")
# laplace_prior="auto" for classification: the evidence-optimal prior precision times this
# (see _fit_posterior for why); regression keeps the evidence's (_last_layer_evidence_mode)
_AUTO_SHARPEN = 30.0
# laplace_structure="auto": the full posterior for heads up to this many parameters, else Kronecker
_AUTO_FULL_MAX_PARAMS = 2000
MFVI_ESTIMATORS = ("weight_space", "local_reparam", "flipout")
MFVI_PRIORS = ("gaussian", "scale_mixture")
#: lr=None: Adam's step size by method. Laplace expands the log posterior about the MAP
#: solution, which should be a mode: at 0.01 the early-stopped iterate is a noisy one. Measured
#: (bench/laplace_defaults.py, splits 0-19; docs/design.md): load_digits split 2 at accuracy
#: 0.965 and test NLL 0.130 at 0.01, the worst split's NLL 0.092 and accuracy 0.972 at 0.003
#: (about twice the epochs); load_diabetes split 18 0.164 nats below BayesianRidge at 0.01 (one
#: fold overfit, mean predictive sd 37 against BayesianRidge's 55), 0.046 at 0.003; the worst of
#: splits 0-9 went from 0.064 to 0.082. The other methods keep 0.01.
_LR = 1e-2
AUTO_LR = {"laplace": 3e-3}


# epochs=None, n_iter_no_change=None: at most 200 epochs, 20 without a better validation loss
_EPOCHS, _PATIENCE = 200, 20
#: epochs=None / n_iter_no_change=None by (method, task) where not _EPOCHS, _PATIENCE: (Adam steps,
#: steps without improvement), as epochs of the training rows within [_EPOCHS, 1000] and
#: [_PATIENCE, 100] (_schedule). MFVI regression stopped after 88 of 200 epochs on the demo's sine
#: (test NLL 0.23 nats, now -0.46); MC dropout's 5-fold load_diabetes overfit with 1000 / 100
#: (bench/regression_defaults.py, bench/laplace_defaults.py; docs/design.md "Regression defaults").
AUTO_EPOCHS = {("mfvi", "regression"): (10_000, 1_000)}
_MAX_AUTO_EPOCHS, _MAX_AUTO_PATIENCE = 1000, 100
#: early_stopping="auto": whether each method stops early on validation_fraction of the rows,
#: by task. The MAP-based methods always do (a fixed epoch count overfits small data sets).
#: Measured (bench/sklearn_defaults.py, bench/laplace_defaults.py): MC dropout's test NLL
#: improves with it on digits, breast_cancer, wine and diabetes; MFVI's improves on diabetes
#: (test log-likelihood 0.13-0.18 nats below BayesianRidge's without it, 0.04-0.05 with it:
#: the ELBO's noise sigma absorbs the weight noise when every epoch runs) and breast_cancer but
#: worsens on digits and wine (its KL term already regularises, the held-out rows are missed),
#: so MFVI classification trains all epochs on every row unless asked.
AUTO_EARLY_STOPPING = {"mfvi": {"classification": False, "regression": True}, "mc_dropout": True, "laplace": True,
                       "ensemble": True, "swag": True, "multiswag": True, "sghmc": True}


def _auto_early(method, task):
    return rule[task] if isinstance(rule := AUTO_EARLY_STOPPING[method], dict) else rule


def options_for_task(options, task):
    """``options`` from :func:`check_options` with early_stopping="auto" (AUTO_EARLY_STOPPING),
    epochs=None and n_iter_no_change=None (AUTO_EPOCHS) resolved for ``task`` (check_options
    resolves them for classification)."""
    out = dict(options)
    if options.get("auto_early"):
        early = _auto_early(options["method"], task) and options["validation_fraction"] > 0
        out.update(early_stopping=early, validation=options["validation_fraction"] if early else 0.0)
    rule = out["step_rule"] = AUTO_EPOCHS.get((options["method"], task))
    if options.get("auto_epochs"):  # a step rule's upper bound (_schedule sizes it to the data)
        out["epochs"] = _MAX_AUTO_EPOCHS if rule else _EPOCHS
    if options.get("auto_patience"):
        out["patience"] = _MAX_AUTO_PATIENCE if rule else _PATIENCE
    return out


def _schedule(p, n_rows, batch):
    """(epochs, patience) on ``n_rows`` training rows in batches of ``batch``: the options', or the
    epochs that make AUTO_EPOCHS' steps (epochs=None / n_iter_no_change=None), within the bounds."""
    epochs, patience, rule = p["epochs"], p["patience"], p.get("step_rule")
    if rule:
        per_epoch = -(-n_rows // max(1, min(batch, n_rows)))
        if p.get("auto_epochs"):
            epochs = min(epochs, max(_EPOCHS, -(-rule[0] // per_epoch)))
        if p.get("auto_patience"):
            patience = min(patience, max(_PATIENCE, -(-rule[1] // per_epoch)))
    return epochs, patience


def _real(value, name, low=0.0, high=np.inf, *, open_low=True, open_high=True):
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    ok = np.isfinite(v) and (v > low if open_low else v >= low) and (v < high if open_high else v <= high)
    if not ok:
        raise ValueError(f"{name} must be in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
                         f", got {value!r}")
    return v


def _hidden_sizes(h):
    if isinstance(h, (numbers.Integral, np.integer)) and not isinstance(h, bool):
        h = (h,)
    if isinstance(h, str):
        raise TypeError(f"hidden_layer_sizes must be an int or a sequence of ints, got {h!r}")
    try:
        return tuple(C.integer(s, "hidden_layer_sizes", 1) for s in h)
    except TypeError as exc:
        raise TypeError(f"hidden_layer_sizes must be an int or a sequence of ints, got {h!r}") from exc


def check_options(method="mfvi", hidden_layer_sizes=(50,), activation="relu", epochs=None, lr=None,
                  batch_size=32, n_samples=100, dropout_p=0.1, prior_precision=1.0,
                  laplace_structure="auto", laplace_subset="last_layer", laplace_link="probit",
                  laplace_prior="auto", mfvi_estimator="weight_space", mfvi_prior="gaussian",
                  early_stopping="auto", validation_fraction=0.1, n_iter_no_change=None, tol=1e-4,
                  n_models=5, random_state=None, verbose=0):
    """Validated options (ValueError/TypeError naming the bad one); the seed
    resolved (``None`` -> fresh OS entropy); ``early_stopping="auto"``, ``epochs=None`` and
    ``n_iter_no_change=None`` resolved for the method (see :data:`AUTO_EARLY_STOPPING`,
    :data:`AUTO_EPOCHS`; for classification here, :func:`options_for_task` resolves them again
    for the task) and ``lr=None`` to the method's step (:data:`AUTO_LR`). The defaults
    here are those of every front end (see :data:`DEFAULTS`)."""
    if isinstance(random_state, np.random.RandomState):
        # scikit-learn utilities may hand over a RandomState: take one seed from it.
        random_state = int(random_state.randint(0, 2 ** 62))
    method = C.option(method, "method", METHODS)
    validation = _real(validation_fraction, "validation_fraction", 0.0, 1.0, open_low=False)
    if isinstance(early_stopping, str):
        if early_stopping != "auto":
            raise ValueError(f"early_stopping must be True, False or 'auto', got {early_stopping!r}")
        early = False  # resolved below for classification (BayesianMLP: by task)
    elif isinstance(early_stopping, (bool, np.bool_)):
        early = bool(early_stopping)
        if early and validation == 0:
            raise ValueError("early_stopping=True needs validation_fraction > 0 (the rows it validates on)")
    else:
        raise TypeError(f"early_stopping must be True, False or 'auto', got {early_stopping!r}")
    options = dict(
        method=method,
        hidden=_hidden_sizes(hidden_layer_sizes),
        activation=C.option(activation, "activation", ACTIVATIONS),
        epochs=None if epochs is None else C.integer(epochs, "epochs", 1),
        auto_epochs=epochs is None,
        lr=AUTO_LR.get(method, _LR) if lr is None else _real(lr, "lr"),
        batch_size=C.integer(batch_size, "batch_size", 1),
        n_samples=C.integer(n_samples, "n_samples", 2),
        dropout_p=_real(dropout_p, "dropout_p", 0.0, 1.0),
        prior_precision=_real(prior_precision, "prior_precision"),
        structure=C.option(laplace_structure, "laplace_structure", LAPLACE_STRUCTURES),
        subset=C.option(laplace_subset, "laplace_subset", LAPLACE_SUBSETS),
        link=C.option(laplace_link, "laplace_link", LAPLACE_LINKS),
        prior=C.option(laplace_prior, "laplace_prior", LAPLACE_PRIORS),
        mfvi_estimator=C.option(mfvi_estimator, "mfvi_estimator", MFVI_ESTIMATORS),
        mfvi_prior=C.option(mfvi_prior, "mfvi_prior", MFVI_PRIORS),
        early_stopping=early,
        # the held-out share: used only when stopping early (else every row trains)
        validation=validation if early else 0.0,
        auto_early=isinstance(early_stopping, str),
        validation_fraction=validation,
        patience=None if n_iter_no_change is None else C.integer(n_iter_no_change, "n_iter_no_change", 1),
        auto_patience=n_iter_no_change is None,
        tol=_real(tol, "tol", 0.0, open_low=False),
        n_models=C.integer(n_models, "n_models", 1),
        seed=_random.resolve_seed(random_state, "random_state"),
        verbose=C.integer(verbose, "verbose", 0),
    )
    return options_for_task(options, "classification")


#: Default options of every front end: the sklearn estimators' ``__init__``
#: and the ``bayesgrad fit`` options read them from here, so that the
#: signature of :func:`check_options` is their only definition.
DEFAULTS = {name: p.default for name, p in inspect.signature(check_options).parameters.items()}


class BayesianMLP:
    """A Bayesian MLP on standardised data.

    Parameters
    ----------
    task : {"regression", "classification"}
    options : dict from :func:`check_options`
    """

    def __init__(self, task, options):
        self.task = C.option(task, "task", TASKS)
        self.options = options_for_task(options, self.task)
        self.posterior = self.map_theta = None

    @property
    def seed(self):
        """int: the Philox seed of training and prediction (resolved by :func:`check_options`)."""
        return self.options["seed"]

    @property
    def fitted(self):
        """bool: whether :meth:`fit` has trained a posterior."""
        return getattr(self, "posterior", None) is not None

    def fit(self, X, y, n_classes=None, sample_weight=None, warm_start=False, epochs=None):
        """Train on ``X`` (N, D) finite floats and ``y``: (N,) floats (regression)
        or int labels in ``[0, n_classes)`` (classification). Returns self.

        ``sample_weight`` (N,), default None: finite non-negative weights of the
        rows' likelihood terms; the input (and target) standardisation is weighted
        the same way, so integer weights fit exactly the data set with rows
        repeated. ``warm_start`` (default False): continue from the fitted
        posterior -- same standardisation, the parameters (MFVI: also its Adam
        state and step count) as the start -- instead of a fresh one ("mfvi",
        "mc_dropout", "laplace"). ``epochs`` overrides the option for this call.
        """
        X = C.as_array(X, "X", np.float64, ndim=2)
        if X.shape[0] < 2:
            raise ValueError(f"training needs at least 2 samples, got n_samples={X.shape[0]}")
        from .nn import sample_weights

        w = sample_weights(sample_weight, X.shape[0], np.float64)
        warm = bool(warm_start) and self.fitted
        if warm and self.options["method"] not in WARM_START_METHODS:
            raise ValueError(f"warm_start / partial_fit continue methods {', '.join(WARM_START_METHODS)}; "
                             f"method={self.options['method']!r} trains from scratch (set warm_start=False)")
        if warm and X.shape[1] != self.n_features:
            raise ValueError(f"X has {X.shape[1]} features, but the model was trained with {self.n_features}")
        if not warm:
            mean, sd = _weighted_moments(X, w)
            self.x_mean, self.x_scale = mean, _input_scale(X, w, sd) * _first_layer_prior_scale(
                self.options["method"], self.task, X.shape[1])
        Xs = self._xs(X)
        if self.task == "regression":
            y = C.as_array(y, "y", np.float64, ndim=1)
            if y.shape[0] != X.shape[0]:
                raise ValueError(f"X and y must have the same number of rows, got {X.shape[0]} and {y.shape[0]}")
            if not warm:
                with np.errstate(over="ignore", invalid="ignore"):
                    m, sd = _weighted_moments(y[:, None], w)
                    var = sd[0] * sd[0]
                if not np.isfinite(var):  # the predictive variances in y's units would be inf (and the fit NaN)
                    raise ValueError("y spreads too widely: its variance overflows float64 (the predictive variances "
                                     "are reported in y's units); rescale y")
                self.y_mean = float(m[0])
                self.y_scale = float(sd[0]) if sd[0] > 0 else 1.0
            targets, n_out, likelihood = ((y - self.y_mean) / self.y_scale)[:, None], 1, "gaussian"
        else:
            y = np.asarray(y)
            n_out = C.integer(n_classes, "n_classes", 2)
            if y.ndim != 1 or y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= n_out:
                raise ValueError(f"y must be (N,) integer labels in [0, {n_out})")
            if warm and n_out != self.n_outputs:
                raise ValueError(f"warm_start: the model has {self.n_outputs} classes, got n_classes={n_out}")
            targets, likelihood = y.astype(np.int64), "categorical"
        if targets.shape[0] != X.shape[0]:
            raise ValueError(f"X and y must have the same number of rows, got {X.shape[0]} and {targets.shape[0]}")
        self.n_features = X.shape[1]
        self.n_outputs = n_out
        opts = self.options if epochs is None else dict(self.options, epochs=C.integer(epochs, "epochs", 1),
                                                        auto_epochs=False)
        self.posterior, self.map_theta, self.epochs_run = _fit_posterior(
            opts, Xs, targets, n_out, likelihood, w, self.state() if warm else None)
        return self

    def state(self):
        """What a warm start continues from: (posterior, MAP parameters or None)."""
        return self.posterior, self.map_theta

    def _xs(self, X):
        return (X - self.x_mean) / self.x_scale

    def predictive(self, X):
        """The posterior's ``Predictive`` for raw ``X`` (N, D), with
        ``n_samples`` MC draws on the ``"predict"`` stream of the fitted seed,
        shared by all rows."""
        X = C.as_array(X, "X", np.float64, ndim=2)
        if X.shape[1] != self.n_features:
            raise ValueError(f"X has {X.shape[1]} features, but the model was trained with {self.n_features}")
        kw = {"link": self.options["link"]} if self.options["method"] == "laplace" else {}
        pred = self.posterior.predict(self._xs(X), n_samples=self.options["n_samples"], seed=self.seed,
                                      stream=_random.fold_in(0, "predict"), **kw)
        # Laplace may hand back a plain dict with the Predictive's field names.
        return _Fields(pred) if isinstance(pred, dict) else pred

    def evaluate(self, X):
        """Everything the front ends show, from one predictive pass over raw ``X`` (N, D).

        Returns a dict: ``uncertainty`` (a ``bayesgrad.uncertainty.Decomposition``
        of float64 arrays: nats for classification, squared units of y for
        regression) and, for regression, ``mean``, ``aleatoric_var``,
        ``epistemic_var`` (N,) in the units of y; for classification ``probs``
        (N, C) and ``sample_probs`` (S, N, C).
        """
        from .uncertainty import Decomposition, decompose

        pred = self.predictive(X)
        if self.task == "regression":
            s2 = self.y_scale ** 2
            mean = np.asarray(pred.mean, dtype=np.float64).reshape(-1) * self.y_scale + self.y_mean
            alea = np.asarray(pred.aleatoric_var, dtype=np.float64).reshape(-1) * s2
            epi = np.asarray(pred.epistemic_var, dtype=np.float64).reshape(-1) * s2
            return dict(mean=mean, aleatoric_var=alea, epistemic_var=epi,
                        uncertainty=Decomposition(alea + epi, alea, epi))
        probs = np.asarray(pred.probs, dtype=np.float64)
        u = decompose(pred.log_probs)
        return dict(probs=probs / probs.sum(axis=1, keepdims=True),
                    sample_probs=np.exp(np.asarray(pred.log_probs, dtype=np.float64)),
                    uncertainty=Decomposition(*(np.asarray(a, dtype=np.float64) for a in u)))

    def moments(self, X):
        """Regression: predictive mean, noise variance and epistemic variance, each (N,), in the units of y."""
        e = self.evaluate(X)
        return e["mean"], e["aleatoric_var"], e["epistemic_var"]

    def probs(self, X):
        """Classification: predictive probabilities (N, C)."""
        return self.evaluate(X)["probs"]

    def sample_probs(self, X):
        """Classification: probabilities of each MC sample (S, N, C)."""
        return self.evaluate(X)["sample_probs"]

    def uncertainty(self, X):
        """Total, aleatoric and epistemic uncertainty of each row of X
        (``bayesgrad.uncertainty.Decomposition``; see :meth:`evaluate`)."""
        return self.evaluate(X)["uncertainty"]


class _Fields:
    """Attribute access to a dict-shaped predictive."""

    def __init__(self, d):
        self.__dict__.update(d)

    def __getattr__(self, name):  # a field the predictive did not give
        return None


def _input_scale(X, w, sd):
    """Per-feature divisor of the standardisation: the standard deviation, floored at an
    eighth of the feature's range over the (weighted) training rows, and 1 for constant
    features. A near-constant feature (a pixel almost always 0) has a tiny standard
    deviation: a test value just beyond its rare training values became an input of 50 sd,
    which every method turned into a confident wrong prediction (load_digits, split 6: one
    point at 17-29 nats, test NLL 0.12-0.14 instead of 0.06-0.09). With the floor no training
    row lies more than about 8 scales from the mean; features spread like a Gaussian
    (range about 6.5 sd at 1000 rows) keep their standard deviation."""
    rows = X if w is None else X[w > 0]
    scale = np.maximum(sd, (rows.max(axis=0) - rows.min(axis=0)) / 8.0)
    return np.where(scale > 0, scale, 1.0)


def _first_layer_prior_scale(method, task, n_features):
    """The extra divisor of the standardised inputs: sqrt(D) for MFVI, else 1.

    Dividing the inputs by sqrt(D) is the same model as the first layer's weights having the
    prior N(0, 1/(prior_precision * D)) (W (x / c) = (W / c) x, and the mean-field family is
    closed under that rescaling): the fan-in scaled prior of Neal (1996) and of the NNGP limit,
    under which a first-layer pre-activation has prior variance ~1/prior_precision whatever D.
    With N(0, 1) on each of load_digits' 64 inputs' weights the weights MFVI leaves at the prior
    (sigma ~0.8) give pre-activations of sd ~6 and logits of sd ~30 in every weight sample, so
    each sample is one-hot and a few test digits get no vote for their class (16-24 nats each,
    test NLL up to 0.145 on splits 0-19). With this prior (and _MFVI_TEMPERATURE) the worst
    split's NLL is 0.109. Regression too (bench/regression_defaults.py, at T = 1): load_diabetes test
    NLL median 5.466 -> 5.437 nats (BayesianRidge 5.416), make_friedman1 2.23 -> 2.08."""
    return float(np.sqrt(n_features)) if method == "mfvi" else 1.0


def _weighted_moments(A, w):
    """Column means and (population) standard deviations of A (N, D), weighted by w (N,) or not."""
    if w is None:
        return A.mean(axis=0), A.std(axis=0)
    p = w / w.sum()
    mean = p @ A
    return mean, np.sqrt(np.maximum(p @ (A - mean) ** 2, 0.0))


#: methods whose fit continues from a fitted posterior (warm_start, partial_fit)
WARM_START_METHODS = ("mfvi", "mc_dropout", "laplace")


def _fit_posterior(p, X, y, n_out, likelihood, w=None, prev=None):
    """Train ``p["method"]`` on standardised ``X`` (N, D) and targets ``y``
    ((N, 1) float for "gaussian", (N,) int64 labels for "categorical") with row
    weights ``w`` (N,) or None; ``prev`` (posterior, MAP theta) continues a fit.
    Returns (posterior, MAP theta or None, epochs run).

    The prior is N(0, 1/prior_precision) on every weight for all methods
    (MFVI's prior, MC dropout's and MAP's weight decay); the Gaussian noise is
    learned (a point estimate) and, for Laplace, refitted on the marginal
    likelihood together with the prior precision. With early stopping the
    rows of ``validation`` (a Philox split of the fit's seed) are held out and
    the epoch with the lowest validation NLL is kept."""
    from . import nn

    mlp = nn.MLP([X.shape[1], *p["hidden"], n_out], activation=p["activation"])
    gaussian = likelihood == "gaussian"
    batch = min(p["batch_size"], X.shape[0])
    fit = dict(epochs=p["epochs"], seed=p["seed"], verbose=p["verbose"])
    stop = dict(validation=p["validation"], patience=p["patience"], tol=p["tol"])
    if p["method"] == "mfvi":
        return _fit_mfvi(p, mlp, X, y, likelihood, batch, w, prev)
    if p["method"] == "mc_dropout":
        from . import dropout

        m = prev[0] if prev is not None else dropout.MCDropout(
            mlp, p=p["dropout_p"], likelihood=likelihood, weight_decay=p["prior_precision"], lr=p["lr"],
            batch_size=batch)
        m.lr = p["lr"]  # a warm start takes the schedule as set now
        m.fit(X, y, theta0=None if prev is None else m.theta_, sample_weight=w, **stop, **fit)
        return m, None, len(m.history_)
    if p["method"] in ("ensemble", "swag", "multiswag", "sghmc"):
        post = _fit_sample_posterior(p, mlp, X, y, likelihood, batch, fit, w)
        return post, None, post.map_epochs_
    from . import laplace

    # Laplace Redux's recipe (Daxberger et al. 2021): MAP with early stopping on a validation
    # split (a fixed number of epochs overfits small data sets), then a last-layer Laplace,
    # Kronecker or full for a small head, with the prior precision and σ on the marginal
    # likelihood.
    theta, info = nn.train_map(mlp, X, y, likelihood=likelihood, weight_decay=p["prior_precision"],
                               learn_noise=gaussian, lr=p["lr"], batch_size=batch, return_info=True,
                               theta0=None if prev is None else prev[1], sample_weight=w, **stop, **fit)
    sigma = float(np.mean(info["noise"])) if gaussian else 1.0
    structure = p["structure"]
    if structure == "auto":
        n = (mlp.sizes[-2] + 1) * n_out if p["subset"] == "last_layer" else mlp.n_params
        structure = "full" if n <= _AUTO_FULL_MAX_PARAMS else "kron"
    la = laplace.Laplace(mlp, theta, likelihood=likelihood, structure=structure, subset=p["subset"],
                         prior_precision=p["prior_precision"], sigma_noise=sigma).fit(X, y, sample_weight=w)
    prior = p["prior"]
    if prior in ("marglik", "auto"):
        la.optimize_prior_precision(optimize_sigma=gaussian)
    if prior == "auto" and gaussian and p["subset"] == "last_layer":
        # (the trained weights stay what a warm start continues from)
        la = _last_layer_evidence_mode(la, mlp, theta, X, y, w, structure)
    if prior == "auto" and not gaussian:
        # laplace_prior="auto", classification: the evidence-optimal precision times
        # _AUTO_SHARPEN (regression: the head's closed-form evidence above). Why, measured on
        # load_digits (bench/laplace_defaults.py --seeds 0,1,2,3,4 --laplace-variants,
        # bench/results/laplace_defaults.json; 10 splits in the session's exploration):
        # given the features a Gaussian likelihood makes the head's posterior exactly
        # Gaussian, so there the evidence is exact. A categorical likelihood on nearly
        # separable data makes it one-sided (a larger margin keeps the likelihood) while the
        # Laplace Gaussian is symmetric about the mode; confident rows add almost no
        # curvature, so in their directions the posterior has the prior's width and the GLM
        # predictive is underconfident: ECE 0.14-0.24, mutual information ~0.5 nats, logit
        # variance ~16-26 (MAP: ECE 0.011-0.017). Every evidence-based variant measured stays
        # at ECE 0.07-0.35: per-layer or per-weight (ARD) priors, last-layer kron / diag or the
        # whole network, the head refitted to its mode at the evidence-optimal precision to
        # MacKay's fixed point (0.10), online marginal-likelihood training (Immer et al. 2021;
        # 0.07-0.15), the links (closed-form probit 0.12; the bridge's 0.013 is a Dirichlet
        # mean that ignores the variance's scale, not this GLM predictive). The validation grid
        # search ("gridsearch") ends at its largest precision on most splits (its rows chose
        # MAP's epoch) and at a low one on others (ECE up to 0.047); limited to
        # [p_ml, 100 p_ml] it still picked 10 p_ml on one split in ten (ECE 0.036). The fixed
        # factor 30 gave ECE <= 0.026 on all ten splits, NLL better than MAP's where MAP's is
        # worst, and keeps a posterior (mutual information 0.015-0.023 nats, logit variance
        # ~1.4; MAP 0). It bites in the prior-dominated directions (where the data's curvature
        # is large the prior term matters little). It is a tempering, not a Bayesian choice:
        # laplace_prior="marglik" keeps the evidence's precision.
        la.prior_precision = la.prior_precision * _AUTO_SHARPEN
    elif prior == "gridsearch":
        _gridsearch_prior(la, p, X, y)
    return la, theta, len(info["history"])


def _last_layer_evidence_mode(la, mlp, theta, X, y, w, structure):
    """Gaussian likelihood, last layer: the posterior mean and the evidence-optimal prior
    precision and σ together. Given the features the last layer is Bayesian linear regression,
    whose evidence with the mean at its posterior mean (the ridge solution, not the
    early-stopped weights, which are not its mode) has a closed form (MacKay 1992), maximised
    from ``la``'s values in the eigenbasis of ΦᵀΦ. Returns a Laplace
    at that mean and those hyper-parameters (for a full head its evidence is this one)."""
    from . import laplace

    Phi = la.model.features(X).astype(np.float64)
    Phi = np.hstack([Phi, np.ones((Phi.shape[0], 1))])
    N, P = Phi.shape
    O = mlp.sizes[-1]
    Y = y.reshape(N, O).astype(np.float64)
    wr = np.ones(N) if w is None else np.asarray(w, np.float64)
    lam, U = np.linalg.eigh((Phi * wr[:, None]).T @ Phi)
    lam = np.maximum(lam, 0.0)
    Ub = U.T @ ((Phi * wr[:, None]).T @ Y)          # (P, O): Φᵀ W y in the eigenbasis
    yy, nw = float(np.sum(wr[:, None] * Y * Y)), float(wr.sum())

    def mean_eig(alpha, beta):
        return beta * Ub / (alpha + beta * lam)[:, None]

    # MacKay's updates, the evidence's stationarity conditions (as sklearn's BayesianRidge), run
    # to round-off so that equivalent data (units, repeated rows) give the same answer
    alpha, beta = float(la.prior_precision.mean()), la.sigma_noise ** -2
    for _ in range(100_000):
        m = mean_eig(alpha, beta)
        gamma = O * float(np.sum(beta * lam / (alpha + beta * lam)))
        rss = max(yy - 2.0 * float(np.sum(m * Ub)) + float(np.sum(lam[:, None] * m * m)), 1e-300)
        # kept within the bounds the Laplace's own optimiser uses (e^±30)
        a_new = min(max(gamma / max(float(np.sum(m * m)), 1e-300), 1e-13), 1e13)
        b_new = min(max(max(O * nw - gamma, 1e-300) / rss, 1e-13), 1e13)
        done = abs(a_new - alpha) <= 1e-13 * alpha and abs(b_new - beta) <= 1e-13 * beta
        alpha, beta = a_new, b_new
        if done:
            break
    M = U @ mean_eig(alpha, beta)                    # (P, O): [Wᵀ; b]
    theta = theta.copy()
    theta[mlp.offsets[-1][0]:] = np.concatenate([M[:-1].T.ravel(), M[-1]]).astype(theta.dtype)
    return laplace.Laplace(mlp, theta, likelihood="gaussian", structure=structure, subset="last_layer",
                           prior_precision=alpha, sigma_noise=beta ** -0.5).fit(X, y, sample_weight=w)


def _gridsearch_prior(la, p, X, y):
    """The prior precision of ``la`` on the default grid by the NLL of its GLM predictive on the
    rows ``train_map`` held out for early stopping (its split: the fit's seed, stream 0)."""
    from . import _training

    _, val = _training.split_validation(X.shape[0], p["validation"], p["seed"], 0)
    if val is None:
        raise ValueError("laplace_prior='gridsearch' needs early stopping with validation_fraction > 0 "
                         "(its validation rows)")
    link = p["link"] if la.likelihood != "gaussian" else "probit"
    la.optimize_prior_precision(method="gridsearch", val=(X[val], y[val]), link=link, n_samples=p["n_samples"])


# MFVI's posterior temperature (classification, regression): the KL weight of the ELBO, as
# _SGHMC_TEMPERATURE for SGHMC. With the fan-in prior of _first_layer_prior_scale the
# classification posterior at T = 1 is underconfident (load_digits ECE 0.064-0.096, NLL
# 0.139-0.184, splits 0-19); over T in {0.05, 0.08, 0.1, 0.12, 0.15, 0.2} the worst split's ECE
# rose (0.022 ... 0.037) and its NLL fell (0.134 ... 0.111) with T; T = 0.1 gave ECE <= 0.028,
# NLL <= 0.109, accuracy >= 0.974 (bench/laplace_defaults.py; docs/design.md). Regression
# (bench/regression_defaults.py --variants, splits 0-9): T = 1 underfits where the signal is strong
# (the demo's sine: test NLL -0.35 nats, true model -1.38), colder is sharper there but loses coverage
# on make_friedman1; T = 0.5 is best there (table in docs/design.md "Regression defaults").
_MFVI_TEMPERATURE = {False: 0.1, True: 0.5}


def _fit_mfvi(p, mlp, X, y, likelihood, batch, w, prev):
    """MFVI (Bayes by Backprop) with the front ends' options; with early stopping one
    epoch at a time on the training rows, the validation NLL of the predictive (16
    weight samples, the same draws every epoch) after each, and the best epoch's
    variational state kept."""
    from . import _training, vi

    gaussian = likelihood == "gaussian"
    q = prev[0] if prev is not None else vi.MFVI(
        mlp, likelihood=likelihood, prior=p["mfvi_prior"], prior_sigma=p["prior_precision"] ** -0.5,
        estimator=p["mfvi_estimator"], learn_noise=gaussian, lr=p["lr"], batch_size=batch,
        temperature=_MFVI_TEMPERATURE[gaussian])
    warm = prev is not None
    q.lr = p["lr"]  # a warm start takes the schedule as set now
    e0 = len(q.history_) if warm else 0
    # too few rows to hold one out: all epochs on every row (as train_map does)
    tr, val = _training.split_validation(X.shape[0], p["validation"], p["seed"], 0)
    epochs, patience = _schedule(p, X.shape[0] if val is None or not p["early_stopping"] else tr.size, batch)
    if not p["early_stopping"] or val is None:
        q.fit(X, y, epochs, seed=p["seed"], verbose=p["verbose"], warm_start=warm, sample_weight=w)
        return q, None, len(q.history_) - e0
    Xt, yt, Xv, yv = X[tr], y[tr], X[val], y[val]
    wt = None if w is None else w[tr]
    wv = np.ones(val.size) if w is None else w[val]
    if w is not None:
        from .nn import _check_split_weights

        _check_split_weights(wt, wv)
    min_delta = p["tol"] * float(wv.sum())
    val_stream = _random.fold_in(0, "split")

    def val_nll():
        pred = q.predict(Xv, n_samples=16, seed=p["seed"], stream=val_stream)
        return -float(np.dot(wv, np.asarray(pred.log_likelihood(yv if not gaussian else yv[:, 0]), np.float64)))

    best, best_state, since = np.inf, None, 0
    bar = _training.progress(epochs, p["verbose"], "MFVI")
    try:
        for e in range(epochs):
            q.fit(Xt, yt, 1, seed=p["seed"], verbose=0, warm_start=warm or e > 0, sample_weight=wt)
            if q.interrupted_:
                break
            v = val_nll()
            q.history_[-1]["val_loss"] = v
            if bar is not None:
                bar.update(1)
            if v < best - min_delta:
                best, since = v, 0
                best_state = (q.state_.copy(), q._m.copy(), q._v.copy(), q._step)
            else:
                since += 1
                if since >= patience:
                    break
    finally:
        if bar is not None:
            bar.close()
    if best_state is not None:
        q.state_[...], q._m[...], q._v[...] = best_state[:3]
        q._step = best_state[3]
    return q, None, len(q.history_) - e0


# SWAG: collected epochs and the rank of its deviation matrix; SGHMC: steps after the MAP
# solution, of which the first quarter is burn-in, and every 10th state kept
_SWAG_EPOCHS, _SWAG_RANK, _SGHMC_STEPS = 30, 20, 4000
# SGHMC's posterior temperature (classification, regression). The Bayes posterior (T = 1)
# of a classifier with an N(0, 1) prior per weight underfits (the cold posterior effect,
# Wenzel et al. 2020): load_digits accuracy 0.95-0.967, NLL 0.14-0.20 over splits 5-9; at
# T = 0.1 accuracy 0.969-0.978 and NLL 0.08-0.10. Regression on load_diabetes is best at
# T = 1 (RMSE 1.02-1.08x BayesianRidge's; 1.15-1.18x at T = 0.1). bench/laplace_defaults.py.
_SGHMC_TEMPERATURE = {False: 0.1, True: 1.0}


def _held_out_rms(mlp, theta, X, y, w, validation, seed, stream):
    """Root mean squared residual of the MAP network on train_map's validation rows (0 without
    them). SWAG keeps the noise its MAP fit learned on the training rows, which an overfit fit
    underestimates: load_diabetes split 18 (bench/laplace_defaults.py) was 0.144 nats below
    BayesianRidge with it, 0.099 with the noise floored at this held-out value (splits 4, 6, 11,
    12, 14, 15: 0.068-0.084, each within 0.01 of before or better). SGHMC, whose samples spread
    more, got worse with the floor (split 6: 0.095 -> 0.100) and keeps the learned noise."""
    from . import _training as _tr

    _, val = _tr.split_validation(X.shape[0], validation, seed, stream)
    if val is None:
        return 0.0
    f = np.asarray(mlp.forward(theta, np.asarray(X)[val]), np.float64).reshape(val.size, -1)[:, 0]
    r2 = (np.asarray(y, np.float64).reshape(-1)[val] - f) ** 2
    return float(np.sqrt(np.average(r2, weights=None if w is None else np.asarray(w)[val])))


def _weighted_fit(obj, method, w):
    """``{"sample_weight": w}`` for ``obj.fit`` when it takes one; None adds nothing."""
    if w is None:
        return {}
    if "sample_weight" not in inspect.signature(obj.fit).parameters:
        raise ValueError(f"sample_weight is not supported by method={method!r} in this build "
                         f"({type(obj).__name__}.fit takes no sample_weight)")
    return {"sample_weight": w}


def _fit_sample_posterior(p, mlp, X, y, likelihood, batch, fit, w=None):
    """Deep ensembles, SWAG, MultiSWAG and SGHMC with the front ends' options: the
    prior precision on every weight, MAP training (Adam, early stopping on the
    validation split, learned noise for regression) where a method starts from one."""
    from . import ensemble, nn, sgmcmc, swag

    cls = {"ensemble": ensemble.DeepEnsemble, "swag": swag.SWAG, "multiswag": swag.SWAG, "sghmc": sgmcmc.SGMCMC}
    _weighted_fit(cls[p["method"]], p["method"], w)  # before any training: a clear error, at once
    gaussian = likelihood == "gaussian"
    if p["method"] == "ensemble":
        lik = "heteroscedastic_gaussian" if gaussian else likelihood  # the paper's choice for regression
        net = nn.MLP(list(mlp.sizes[:-1]) + [2 if gaussian else mlp.sizes[-1]], activation=mlp.activation)
        ens = ensemble.DeepEnsemble(net, lik, n_models=p["n_models"], weight_decay=p["prior_precision"], lr=p["lr"],
                                    batch_size=batch, validation=p["validation"], patience=p["patience"])
        ens.fit(X, y, p["epochs"], seed=p["seed"], verbose=p["verbose"], **_weighted_fit(ens, "ensemble", w))
        ens.map_epochs_ = max(len(h) for h in ens.history_)
        return ens

    def map_solution(stream):
        theta, info = nn.train_map(mlp, X, y, likelihood=likelihood, weight_decay=p["prior_precision"],
                                   learn_noise=gaussian, lr=p["lr"], batch_size=batch, return_info=True,
                                   validation=p["validation"], patience=p["patience"], tol=p["tol"],
                                   stream=stream, sample_weight=w, **fit)
        noise = float(np.mean(info["noise"])) if gaussian else 1.0
        if gaussian and p["method"] == "swag":
            noise = max(noise, _held_out_rms(mlp, theta, X, y, w, p["validation"], info["seed"], stream))
        return theta, noise, len(info["history"])

    if p["method"] == "sghmc":
        theta, noise, epochs = map_solution(0)
        # step eta in units of the whole-data-set potential: small against its curvature (~N)
        q = sgmcmc.SGMCMC(mlp, likelihood, method="sghmc", lr=0.01 / X.shape[0], friction=0.1,
                          temperature=_SGHMC_TEMPERATURE[likelihood == "gaussian"],
                          prior_precision=p["prior_precision"], noise=noise, batch_size=batch)
        q.fit(X, y, _SGHMC_STEPS, burn_in=_SGHMC_STEPS // 4, thin=10, theta0=theta, seed=p["seed"],
              verbose=p["verbose"], **_weighted_fit(q, "sghmc", w))
        q.map_epochs_ = epochs
        return q
    members = []
    for m in range(p["n_models"] if p["method"] == "multiswag" else 1):
        theta, noise, epochs = map_solution(m)
        s = swag.SWAG(mlp, likelihood, rank=min(_SWAG_RANK, _SWAG_EPOCHS), lr=p["lr"],
                      prior_precision=p["prior_precision"], noise=noise, batch_size=batch)
        s.fit(X, y, _SWAG_EPOCHS, theta0=theta, seed=p["seed"], stream=m, verbose=p["verbose"],
              **_weighted_fit(s, p["method"], w))
        members.append(s)
    if p["method"] == "swag":
        members[0].map_epochs_ = epochs
        return members[0]
    multi = swag.MultiSWAG.from_members(members)  # each from its own MAP solution
    multi.map_epochs_ = epochs
    return multi
