"""One Bayesian MLP for the high-level front ends (``bayesgrad.sklearn``, the
``bayesgrad`` command and its demo), without any scikit-learn dependency.

:class:`BayesianMLP` checks its options, standardises inputs (and regression
targets), trains one of the posteriors -- ``"mfvi"`` (``bayesgrad.vi.MFVI``),
``"mc_dropout"`` (``bayesgrad.dropout.MCDropout``), ``"laplace"``
(``bayesgrad.nn.train_map`` + ``bayesgrad.laplace.Laplace`` with the prior
precision fitted on the marginal likelihood), ``"ensemble"``
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
LAPLACE_PRIORS = ("marglik", "gridsearch", "fixed")
# laplace_structure="auto": the full posterior for heads up to this many parameters, else Kronecker
_AUTO_FULL_MAX_PARAMS = 2000

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


def check_options(method="mfvi", hidden_layer_sizes=(50,), activation="relu", epochs=200, lr=1e-2,
                  batch_size=32, n_samples=100, dropout_p=0.1, prior_precision=1.0,
                  laplace_structure="auto", laplace_subset="last_layer", laplace_link="probit",
                  laplace_prior="marglik", validation_fraction=0.1, n_models=5, random_state=None, verbose=0):
    """Validated options (ValueError/TypeError naming the bad one); the seed
    resolved (``None`` -> fresh OS entropy). The defaults here are those of
    every front end (see :data:`DEFAULTS`)."""
    if isinstance(random_state, np.random.RandomState):
        # scikit-learn utilities may hand over a RandomState: take one seed from it.
        random_state = int(random_state.randint(0, 2 ** 62))
    return dict(
        method=C.option(method, "method", METHODS),
        hidden=_hidden_sizes(hidden_layer_sizes),
        activation=C.option(activation, "activation", ACTIVATIONS),
        epochs=C.integer(epochs, "epochs", 1),
        lr=_real(lr, "lr"),
        batch_size=C.integer(batch_size, "batch_size", 1),
        n_samples=C.integer(n_samples, "n_samples", 2),
        dropout_p=_real(dropout_p, "dropout_p", 0.0, 1.0),
        prior_precision=_real(prior_precision, "prior_precision"),
        structure=C.option(laplace_structure, "laplace_structure", LAPLACE_STRUCTURES),
        subset=C.option(laplace_subset, "laplace_subset", LAPLACE_SUBSETS),
        link=C.option(laplace_link, "laplace_link", LAPLACE_LINKS),
        prior=C.option(laplace_prior, "laplace_prior", LAPLACE_PRIORS),
        validation=_real(validation_fraction, "validation_fraction", 0.0, 1.0, open_low=False),
        n_models=C.integer(n_models, "n_models", 1),
        seed=_random.resolve_seed(random_state),
        verbose=C.integer(verbose, "verbose", 0),
    )


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
        self.options = options

    @property
    def seed(self):
        return self.options["seed"]

    def fit(self, X, y, n_classes=None):
        """Train on ``X`` (N, D) finite floats and ``y``: (N,) floats (regression)
        or int labels in ``[0, n_classes)`` (classification). Returns self."""
        X = C.as_array(X, "X", np.float64, ndim=2)
        if X.shape[0] < 2:
            raise ValueError(f"training needs at least 2 samples, got n_samples={X.shape[0]}")
        mean = X.mean(axis=0)
        sd = X.std(axis=0)
        self.x_mean, self.x_scale = mean, np.where(sd > 0, sd, 1.0)
        Xs = self._xs(X)
        if self.task == "regression":
            y = C.as_array(y, "y", np.float64, ndim=1)
            self.y_mean = float(y.mean())
            sd = float(y.std())
            self.y_scale = sd if sd > 0 else 1.0
            targets, n_out, likelihood = ((y - self.y_mean) / self.y_scale)[:, None], 1, "gaussian"
        else:
            y = np.asarray(y)
            n_out = C.integer(n_classes, "n_classes", 2)
            if y.ndim != 1 or y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= n_out:
                raise ValueError(f"y must be (N,) integer labels in [0, {n_out})")
            targets, likelihood = y.astype(np.int64), "categorical"
        if targets.shape[0] != X.shape[0]:
            raise ValueError(f"X and y must have the same number of rows, got {X.shape[0]} and {targets.shape[0]}")
        self.n_features = X.shape[1]
        self.n_outputs = n_out
        self.posterior = _fit_posterior(self.options, Xs, targets, n_out, likelihood)
        if hasattr(self.posterior, "map_epochs_"):
            self.epochs_run = self.posterior.map_epochs_
        return self

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


def _fit_posterior(p, X, y, n_out, likelihood):
    """Train ``p["method"]`` on standardised ``X`` (N, D) and targets ``y``
    ((N, 1) float for "gaussian", (N,) int64 labels for "categorical").

    The prior is N(0, 1/prior_precision) on every weight for all three methods
    (MFVI's prior, MC dropout's and MAP's weight decay); the Gaussian noise is
    learned (a point estimate) and, for Laplace, refitted on the marginal
    likelihood together with the prior precision."""
    from . import nn

    mlp = nn.MLP([X.shape[1], *p["hidden"], n_out], activation=p["activation"])
    gaussian = likelihood == "gaussian"
    batch = min(p["batch_size"], X.shape[0])
    fit = dict(epochs=p["epochs"], seed=p["seed"], verbose=p["verbose"])
    if p["method"] == "mfvi":
        from . import vi

        q = vi.MFVI(mlp, likelihood=likelihood, prior_sigma=p["prior_precision"] ** -0.5, learn_noise=gaussian,
                    lr=p["lr"], batch_size=batch)
        return q.fit(X, y, **fit)
    if p["method"] == "mc_dropout":
        from . import dropout

        m = dropout.MCDropout(mlp, p=p["dropout_p"], likelihood=likelihood, weight_decay=p["prior_precision"],
                              lr=p["lr"], batch_size=batch)
        return m.fit(X, y, **fit)
    if p["method"] in ("ensemble", "swag", "multiswag", "sghmc"):
        return _fit_sample_posterior(p, mlp, X, y, likelihood, batch, fit)
    from . import laplace

    # Laplace Redux's recipe (Daxberger et al. 2021): MAP with early stopping on a validation
    # split (a fixed number of epochs overfits small data sets), then a last-layer Laplace,
    # Kronecker or full for a small head, with the prior precision and σ on the marginal
    # likelihood.
    theta, info = nn.train_map(mlp, X, y, likelihood=likelihood, weight_decay=p["prior_precision"],
                               learn_noise=gaussian, lr=p["lr"], batch_size=batch, return_info=True,
                               validation=p["validation"], patience=_PATIENCE, **fit)
    sigma = float(np.mean(info["noise"])) if gaussian else 1.0
    structure = p["structure"]
    if structure == "auto":
        n = (mlp.sizes[-2] + 1) * n_out if p["subset"] == "last_layer" else mlp.n_params
        structure = "full" if n <= _AUTO_FULL_MAX_PARAMS else "kron"
    la = laplace.Laplace(mlp, theta, likelihood=likelihood, structure=structure, subset=p["subset"],
                         prior_precision=p["prior_precision"], sigma_noise=sigma).fit(X, y)
    la.map_epochs_ = len(info["history"])   # epochs MAP training ran (early stopping)
    # Measured (bench/laplace_defaults.py, bench/results/laplace_defaults.json): on
    # load_diabetes the evidence-optimal prior and σ match BayesianRidge; on load_digits the
    # early-stopped MAP is already calibrated and the evidence-optimal prior gives an
    # underconfident GLM predictive (ECE 0.14), while "gridsearch" on the validation NLL picks
    # the grid's largest precision (a near-MAP predictive with almost no epistemic part).
    prior = p["prior"]
    if prior == "marglik":
        la.optimize_prior_precision(optimize_sigma=gaussian)
    elif prior == "gridsearch":
        from . import _training

        # the rows train_map held out for early stopping (its split: same seed, stream 0)
        _, val = _training.split_validation(X.shape[0], p["validation"], p["seed"], 0)
        if val is None:
            raise ValueError("laplace_prior='gridsearch' needs validation_fraction > 0")
        la.optimize_prior_precision(method="gridsearch", val=(X[val], y[val]),
                                    link=p["link"] if not gaussian else "probit", n_samples=p["n_samples"])
    return la


# epochs without a better validation loss before MAP training stops
_PATIENCE = 20
# SWAG: collected epochs and the rank of its deviation matrix; SGHMC: steps after the MAP
# solution, of which the first quarter is burn-in, and every 10th state kept
_SWAG_EPOCHS, _SWAG_RANK, _SGHMC_STEPS = 30, 20, 4000


def _fit_sample_posterior(p, mlp, X, y, likelihood, batch, fit):
    """Deep ensembles, SWAG, MultiSWAG and SGHMC with the front ends' options: the
    prior precision on every weight, MAP training (Adam, early stopping on the
    validation split, learned noise for regression) where a method starts from one."""
    from . import ensemble, nn, sgmcmc, swag

    gaussian = likelihood == "gaussian"
    if p["method"] == "ensemble":
        lik = "heteroscedastic_gaussian" if gaussian else likelihood  # the paper's choice for regression
        net = nn.MLP(list(mlp.sizes[:-1]) + [2 if gaussian else mlp.sizes[-1]], activation=mlp.activation)
        ens = ensemble.DeepEnsemble(net, lik, n_models=p["n_models"], weight_decay=p["prior_precision"], lr=p["lr"],
                                    batch_size=batch, validation=p["validation"], patience=_PATIENCE)
        ens.fit(X, y, p["epochs"], seed=p["seed"], verbose=p["verbose"])
        ens.map_epochs_ = max(len(h) for h in ens.history_)
        return ens

    def map_solution(stream):
        theta, info = nn.train_map(mlp, X, y, likelihood=likelihood, weight_decay=p["prior_precision"],
                                   learn_noise=gaussian, lr=p["lr"], batch_size=batch, return_info=True,
                                   validation=p["validation"], patience=_PATIENCE, stream=stream, **fit)
        return theta, (float(np.mean(info["noise"])) if gaussian else 1.0), len(info["history"])

    if p["method"] == "sghmc":
        theta, noise, epochs = map_solution(0)
        # step eta in units of the whole-data-set potential: small against its curvature (~N)
        q = sgmcmc.SGMCMC(mlp, likelihood, method="sghmc", lr=0.01 / X.shape[0], friction=0.1,
                          prior_precision=p["prior_precision"], noise=noise, batch_size=batch)
        q.fit(X, y, _SGHMC_STEPS, burn_in=_SGHMC_STEPS // 4, thin=10, theta0=theta, seed=p["seed"],
              verbose=p["verbose"])
        q.map_epochs_ = epochs
        return q
    members = []
    for m in range(p["n_models"] if p["method"] == "multiswag" else 1):
        theta, noise, epochs = map_solution(m)
        s = swag.SWAG(mlp, likelihood, rank=min(_SWAG_RANK, _SWAG_EPOCHS), lr=p["lr"],
                      prior_precision=p["prior_precision"], noise=noise, batch_size=batch)
        s.fit(X, y, _SWAG_EPOCHS, theta0=theta, seed=p["seed"], stream=m, verbose=p["verbose"])
        members.append(s)
    if p["method"] == "swag":
        members[0].map_epochs_ = epochs
        return members[0]
    multi = swag.MultiSWAG.from_members(members)  # each from its own MAP solution
    multi.map_epochs_ = epochs
    return multi
