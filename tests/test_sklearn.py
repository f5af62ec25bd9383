"""scikit-learn estimators: check_estimator and the uncertainty API."""
import pickle

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")  # the [sklearn] extra; part of the [test] extra

from sklearn.base import clone  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from bayesgrad import datasets  # noqa: E402
from bayesgrad.sklearn import BayesianMLPClassifier, BayesianMLPRegressor  # noqa: E402

# Small but real training runs, so that the ~50 checks per estimator stay fast;
# check_classifiers_train still needs > 83% accuracy and check_regressors_train R^2 > 0.5.
FAST = dict(hidden_layer_sizes=(16,), epochs=30, n_samples=20, random_state=0)

CHECKED = [cls(method=m, **FAST, **({"n_models": 2} if m in ("ensemble", "multiswag") else {}))
           for cls in (BayesianMLPRegressor, BayesianMLPClassifier)
           for m in ("mfvi", "mc_dropout", "laplace", "ensemble", "swag", "multiswag", "sghmc")]


@parametrize_with_checks(CHECKED)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_defaults_and_params():
    r = BayesianMLPRegressor()
    p = r.get_params()
    assert p["method"] == "mfvi" and p["hidden_layer_sizes"] == (50,) and p["random_state"] is None
    r.set_params(method="laplace", epochs=3)
    assert clone(r).get_params()["method"] == "laplace"
    # bad values are accepted by set_params (scikit-learn's convention) and rejected by fit, by name
    X, y = np.random.default_rng(0).standard_normal((20, 2)), np.arange(20.0)
    for bad, err, msg in [(dict(method="hmc"), ValueError, "method"), (dict(epochs=0), ValueError, "epochs"),
                          (dict(lr=-1.0), ValueError, "lr"), (dict(dropout_p=1.0), ValueError, "dropout_p"),
                          (dict(hidden_layer_sizes=(4, 0)), ValueError, "hidden_layer_sizes"),
                          (dict(hidden_layer_sizes="50"), TypeError, "hidden_layer_sizes"),
                          (dict(laplace_structure="tree"), ValueError, "laplace_structure"),
                          (dict(n_samples=1), ValueError, "n_samples"), (dict(activation="elu"), ValueError, "activation")]:
        with pytest.raises(err, match=msg):
            BayesianMLPRegressor(**bad).fit(X, y)


@pytest.mark.parametrize("method", ["mfvi", "mc_dropout", "laplace"])
def test_regression_units_and_decomposition(method):
    d = datasets.regression_1d_gap(n=80, seed=0)
    kw = dict(method=method, hidden_layer_sizes=(20,), epochs=40, n_samples=30, random_state=1)
    a = BayesianMLPRegressor(**kw).fit(d.X, d.y)
    # Inputs and targets are standardised inside fit: an affine change of units
    # trains the same network, and the predictions follow the units.
    b = BayesianMLPRegressor(**kw).fit(3.0 * d.X - 2.0, 1000.0 * d.y + 7.0)
    Xq = np.linspace(-6, 6, 13)[:, None]
    ma, sa = a.predict(Xq, return_std=True)
    mb, sb = b.predict(3.0 * Xq - 2.0, return_std=True)
    np.testing.assert_allclose(mb, 1000.0 * ma + 7.0, rtol=1e-6, atol=1e-6 * 1000)
    np.testing.assert_allclose(sb, 1000.0 * sa, rtol=1e-6)
    u = a.predict_uncertainty(Xq)
    np.testing.assert_allclose(u.total, u.aleatoric + u.epistemic, rtol=1e-12)
    np.testing.assert_allclose(np.sqrt(u.total), sa, rtol=1e-12)
    assert np.all(u.aleatoric > 0) and np.all(u.epistemic >= 0)
    np.testing.assert_array_equal(a.predict(Xq), ma)  # deterministic predictions


@pytest.mark.parametrize("method", ["mfvi", "mc_dropout", "laplace"])
def test_classifier_uncertainty_regions(method):
    """On the demo's 1-D problem the three kinds of point are told apart: the
    unambiguous point is the least uncertain, the overlapping region is
    aleatoric, the empty region carries more epistemic uncertainty than the
    unambiguous one."""
    d = datasets.binary_1d(seed=0)
    labels = np.array(["neg", "pos"])[d.y]
    act = "tanh" if method == "laplace" else "relu"  # the demo's choices
    clf = BayesianMLPClassifier(method=method, hidden_layer_sizes=(50, 50), activation=act, epochs=150,
                                n_samples=100, random_state=0).fit(d.X, labels)
    assert list(clf.classes_) == ["neg", "pos"] and clf.n_features_in_ == 1
    P = np.stack([d.points[k] for k in ("confident", "ambiguous", "unseen")])
    u = clf.predict_uncertainty(P)
    np.testing.assert_allclose(u.total, u.aleatoric + u.epistemic, atol=1e-12)
    conf, amb, unseen = 0, 1, 2
    assert u.total[conf] < u.total[amb] and u.total[conf] < u.total[unseen]
    assert u.aleatoric[amb] > 0.5 and u.aleatoric[amb] > u.epistemic[amb]  # ln 2 = 0.693 is a coin flip
    assert u.epistemic[unseen] > u.epistemic[conf]
    proba = clf.predict_proba(P)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-12)
    assert clf.predict(P[:1])[0] == "pos"
    s = clf.sample_proba(P)
    assert s.shape == (100, 3, 2)
    np.testing.assert_allclose(s.sum(-1), 1, rtol=1e-6)


def test_pickle_pipeline_and_grid_search():
    d = datasets.three_class_2d(n=90, seed=0)
    clf = BayesianMLPClassifier(**FAST).fit(d.X, d.y)
    clf2 = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clf2.predict_proba(d.X), clf.predict_proba(d.X))
    pipe = make_pipeline(StandardScaler(), BayesianMLPClassifier(**FAST)).fit(d.X, d.y)
    assert pipe.score(d.X, d.y) > 0.6
    gs = GridSearchCV(BayesianMLPClassifier(**FAST), {"hidden_layer_sizes": [(4,), (16,)]}, cv=2).fit(d.X, d.y)
    assert gs.best_params_["hidden_layer_sizes"] in [(4,), (16,)]


def test_seed_recorded_when_none():
    d = datasets.regression_1d_gap(n=30, seed=0)
    r = BayesianMLPRegressor(hidden_layer_sizes=(8,), epochs=5, n_samples=5).fit(d.X, d.y)
    assert isinstance(r.seed_, int)
    again = BayesianMLPRegressor(hidden_layer_sizes=(8,), epochs=5, n_samples=5, random_state=r.seed_).fit(d.X, d.y)
    np.testing.assert_array_equal(again.predict(d.X), r.predict(d.X))


def test_laplace_classifier_is_one_distribution():
    """predict_proba is the mean of sample_proba, and the decomposition's total is the entropy
    of predict_proba (issue 12: they used to come from two different approximations)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    clf = BayesianMLPClassifier(method="laplace", hidden_layer_sizes=(8,), epochs=20, n_samples=30,
                                random_state=0).fit(X, y)
    p = clf.predict_proba(X[:25])
    np.testing.assert_allclose(clf.sample_proba(X[:25]).mean(axis=0), p, rtol=1e-10)
    u = clf.predict_uncertainty(X[:25])
    np.testing.assert_allclose(u.total, -np.sum(p * np.log(p), axis=1), rtol=1e-8, atol=1e-12)


def test_laplace_defaults_follow_laplace_redux():
    """method="laplace" defaults: last layer, full for a small head (kron for a large one), prior
    and σ on the marginal likelihood, MAP stopped early on a validation split. On one fold of
    load_diabetes (seed-fixed, loose bounds; bench/laplace_defaults.py measures 5-fold) the test
    log-likelihood is within 0.15 nats of BayesianRidge's and the RMSE within 12%."""
    from scipy.stats import norm
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import BayesianRidge

    X, y = load_diabetes(return_X_y=True)
    idx = np.random.default_rng(0).permutation(len(y))
    te, tr = idx[:88], idx[88:]
    reg = BayesianMLPRegressor(method="laplace", random_state=0).fit(X[tr], y[tr])
    la = reg.posterior_
    assert (la.subset, la.structure, la.n_params) == ("last_layer", "full", 51)
    assert la.prior_precision[0] != 1.0 and la.sigma_noise != 1.0   # both fitted
    assert 1 <= reg.n_iter_ < 200                                      # stopped early
    m, s = reg.predict(X[te], return_std=True)
    br = BayesianRidge().fit(X[tr], y[tr])
    mb, sb = br.predict(X[te], return_std=True)
    assert norm.logpdf(y[te], m, s).mean() > norm.logpdf(y[te], mb, sb).mean() - 0.15
    assert np.sqrt(np.mean((m - y[te]) ** 2)) < 1.12 * np.sqrt(np.mean((mb - y[te]) ** 2))
    # a head of more than 2000 parameters: Kronecker
    big = BayesianMLPClassifier(method="laplace", hidden_layer_sizes=(700,), epochs=2, random_state=0)
    big.fit(X[:60], (y[:60] > 140).astype(int) + (y[:60] > 200))
    assert (big.posterior_.structure, big.posterior_.n_params) == ("kron", 701 * 3)


@pytest.mark.parametrize("opts", [dict(laplace_prior="gridsearch"), dict(laplace_prior="fixed"),
                                  dict(laplace_subset="all", laplace_structure="kron", laplace_link="bridge")])
def test_laplace_options_reach_the_posterior(opts):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 3))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    clf = BayesianMLPClassifier(method="laplace", hidden_layer_sizes=(6,), epochs=15, n_samples=10,
                                random_state=0, **opts).fit(X, y)
    la = clf.posterior_
    assert la.subset == opts.get("laplace_subset", "last_layer")
    if "laplace_structure" in opts:
        assert la.structure == opts["laplace_structure"]
    if opts.get("laplace_prior") == "fixed":
        np.testing.assert_array_equal(la.prior_precision, [1.0])
    p = clf.predict_proba(X[:5])
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-12)
    with pytest.raises(ValueError, match="laplace_prior"):
        BayesianMLPClassifier(method="laplace", laplace_prior="cv").fit(X, y)
