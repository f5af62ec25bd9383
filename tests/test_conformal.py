"""Split conformal prediction (bg.conformal): thresholds, the finite-sample
coverage guarantee over many random splits, and input checks."""
import math

import numpy as np
import pytest

import bayesgrad as bg

C = bg.conformal
pytestmark = pytest.mark.single_backend  # NumPy code apart from the Philox uniforms (tested in test_random)


def test_quantile_is_the_finite_sample_rank():
    s = np.arange(1.0, 101.0)  # 1..100 shuffled
    np.random.default_rng(0).shuffle(s)
    assert C.conformal_quantile(s, 0.1) == math.ceil(101 * 0.9)  # the 91st smallest
    assert C.conformal_quantile(s, 0.5) == 51
    assert C.conformal_quantile(s[:5], 0.1) == math.inf  # ceil(6 * 0.9) = 6 > 5
    with pytest.raises(ValueError, match="alpha"):
        C.conformal_quantile(s, 1.0)
    with pytest.raises(ValueError, match="NaN"):
        C.conformal_quantile([1.0, np.nan], 0.1)


def _coverage_bounds(covs, n_cal, alpha):
    """Mean coverage over splits and a 3-standard-error band (one-sided failure
    probability about 0.13% each way, for a normal mean over >= 200 splits)."""
    covs = np.asarray(covs)
    se = covs.std(ddof=1) / math.sqrt(covs.size)
    lo = 1 - alpha - 3 * se
    hi = 1 - alpha + 1 / (n_cal + 1) + 3 * se  # continuous scores: coverage < 1 - alpha + 1/(n+1)
    return covs.mean(), lo, hi


@pytest.mark.parametrize("score", ["absolute", "normalized"])
def test_regression_coverage_over_random_splits(score):
    rng = np.random.default_rng(1)
    n, n_cal, alpha, R = 400, 100, 0.1, 300
    covs, widths = [], []
    for _ in range(R):
        x = rng.uniform(-2, 2, n)
        y = np.sin(x) + (0.2 + 0.3 * np.abs(x)) * rng.normal(size=n)  # heteroscedastic
        mean, std = np.sin(x) + 0.1, 0.2 + 0.3 * np.abs(x)  # a biased model with a good std
        idx = rng.permutation(n)
        c, t = idx[:n_cal], idx[n_cal:]
        cal = C.calibrate_regression(y[c], mean[c], std[c] if score == "normalized" else None, alpha=alpha)
        iv = cal.interval(mean[t], std[t] if score == "normalized" else None)
        covs.append(C.coverage(iv, y[t]))
        widths.append(np.mean(iv[1] - iv[0]))
    mean_cov, lo, hi = _coverage_bounds(covs, n_cal, alpha)
    assert lo <= mean_cov <= hi, (mean_cov, lo, hi)


def _classification_problem(rng, n, K=6):
    logits = rng.normal(size=(n, K)) * 2
    p_true = np.exp(logits - logits.max(1, keepdims=True))
    p_true /= p_true.sum(1, keepdims=True)
    y = (rng.uniform(size=(n, 1)) > np.cumsum(p_true, 1)).sum(1)
    model = logits * 0.6 + rng.normal(size=(n, K)) * 0.5  # miscalibrated, imperfect
    probs = np.exp(model - model.max(1, keepdims=True))
    return probs / probs.sum(1, keepdims=True), np.minimum(y, K - 1)


@pytest.mark.parametrize("method,randomized", [("lac", False), ("aps", True), ("aps", False), ("raps", True)])
def test_classification_coverage_over_random_splits(method, randomized):
    rng = np.random.default_rng(2)
    n, n_cal, alpha, R = 500, 200, 0.1, 200
    covs, sizes = [], []
    for r in range(R):
        probs, y = _classification_problem(rng, n)
        c, t = np.arange(n_cal), np.arange(n_cal, n)
        cal = C.calibrate_classification(probs[c], y[c], alpha=alpha, method=method, randomized=randomized,
                                         seed=r, stream=1)
        sets = cal.predict_sets(probs[t], seed=r, stream=2)
        covs.append(C.coverage(sets, y[t]))
        sizes.append(C.set_size(sets).mean())
    mean_cov, lo, hi = _coverage_bounds(covs, n_cal, alpha)
    assert mean_cov >= lo, (mean_cov, lo)
    if method == "lac" or randomized:  # exact-size scores; deterministic APS is conservative by design
        assert mean_cov <= hi, (mean_cov, hi)
    assert 1 <= np.mean(sizes) < 6  # informative sets


def test_lac_sets_are_the_probability_threshold_and_smallest():
    rng = np.random.default_rng(3)
    probs, y = _classification_problem(rng, 2000)
    lac = C.calibrate_classification(probs[:1000], y[:1000], alpha=0.2, method="lac")
    sets = lac.predict_sets(probs[1000:])
    np.testing.assert_array_equal(sets, probs[1000:] >= 1 - lac.quantile)
    aps = C.calibrate_classification(probs[:1000], y[:1000], alpha=0.2, method="aps", randomized=False)
    assert C.set_size(sets).mean() <= C.set_size(aps.predict_sets(probs[1000:])).mean()


def test_aps_set_is_a_top_k_prefix_and_raps_penalises_rank():
    p = np.array([[0.5, 0.3, 0.15, 0.05]])
    y = np.array([0])
    # calibrate on one point by hand: threshold q; deterministic APS includes classes
    # in probability order while the mass above them is below q
    cal = C.ClassificationConformal(quantile=0.8, alpha=0.1, method="aps", randomized=False, k_reg=1, lam=0.0,
                                    n_calibration=1)
    np.testing.assert_array_equal(cal.predict_sets(p), [[True, True, False, False]])  # 0.5, 0.8 <= 0.8
    raps = C.ClassificationConformal(quantile=0.8, alpha=0.1, method="raps", randomized=False, k_reg=1, lam=0.1,
                                     n_calibration=1)
    np.testing.assert_array_equal(raps.predict_sets(p), [[True, False, False, False]])  # 0.8 + 0.1 > 0.8
    assert C.coverage(cal.predict_sets(p), y) == 1.0


def test_too_few_calibration_points_give_full_sets_and_unbounded_intervals():
    probs = np.full((3, 4), 0.25)
    cal = C.calibrate_classification(probs, [0, 1, 2], alpha=0.05, method="lac")
    assert cal.quantile == math.inf and cal.predict_sets(probs).all()
    reg = C.calibrate_regression([0.0, 1.0], [0.0, 0.0], alpha=0.05)
    lo, hi = reg.interval([0.0])
    assert lo[0] == -math.inf and hi[0] == math.inf


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="method"):
        C.calibrate_classification(np.full((2, 2), 0.5), [0, 1], method="thr")
    with pytest.raises(ValueError, match="std"):
        C.calibrate_regression([1.0, 2.0], [1.0, 2.0], std=[1.0, -1.0])
    with pytest.raises(ValueError, match="std is required"):
        C.calibrate_regression([1.0, 2.0], [1.0, 2.0], score="normalized")
    with pytest.raises(ValueError, match="y must"):
        C.calibrate_regression([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="sum to one"):
        C.calibrate_classification(np.full((2, 2), 0.7), [0, 1])
    with pytest.raises(ValueError, match="class labels"):
        C.calibrate_classification(np.full((2, 2), 0.5), [0, 2])
    with pytest.raises(ValueError, match="lam"):
        C.calibrate_classification(np.full((2, 2), 0.5), [0, 1], method="raps", lam=-1)
    with pytest.raises(TypeError, match="boolean"):
        C.set_size(np.zeros((2, 2)))


def _pool_coverage(predict, y_pool, calibrate, n_cal, R, seed):
    """Coverage of ``predict`` on the test part of R random calibration/test splits of a
    fixed pool; given the pool, a uniformly random split makes calibration and test rows
    exchangeable, so the guarantee holds on average over the splits."""
    rng = np.random.default_rng(seed)
    covs = []
    for _ in range(R):
        idx = rng.permutation(y_pool.shape[0])
        cal, test = idx[:n_cal], idx[n_cal:]
        covs.append(calibrate(cal, test))
    return covs


def test_estimators_conformal_coverage_over_random_splits():
    """conformalize / predict_interval / predict_set on fitted scikit-learn estimators:
    mean coverage over 150 random splits of held-out rows >= 1 - alpha (3 standard errors)."""
    pytest.importorskip("sklearn")
    from bayesgrad.sklearn import BayesianMLPClassifier, BayesianMLPRegressor

    rng = np.random.default_rng(2)
    X = rng.uniform(-2, 2, size=(500, 2))
    y = np.sin(2 * X[:, 0]) + 0.3 * (1 + np.abs(X[:, 1])) * rng.normal(size=500)
    reg = BayesianMLPRegressor(method="ensemble", hidden_layer_sizes=(16,), epochs=30, n_models=2,
                               validation_fraction=0.0, random_state=0).fit(X[:200], y[:200])
    Xp, yp = X[200:], y[200:]
    alpha, n_cal = 0.1, 100
    with pytest.raises(RuntimeError, match="conformalize"):
        reg.predict_interval(Xp)

    def cover(cal, test):
        reg.conformalize(Xp[cal], yp[cal], alpha)
        lo, hi = reg.predict_interval(Xp[test])
        assert np.all(lo < hi)
        return C.coverage((lo, hi), yp[test])

    mean, lo, hi = _coverage_bounds(_pool_coverage(None, yp, cover, n_cal, 150, 0), n_cal, alpha)
    assert lo <= mean <= hi
    assert isinstance(reg.conformal_, C.RegressionConformal) and reg.conformal_.score == "normalized"

    labels = np.array(["a", "b", "c"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)]
    clf = BayesianMLPClassifier(method="ensemble", hidden_layer_sizes=(16,), epochs=20, n_models=2,
                                validation_fraction=0.0, random_state=0).fit(X[:200], labels[:200])
    lp = labels[200:]

    def cover_sets(cal, test):
        clf.conformalize(Xp[cal], lp[cal], alpha, method="aps")
        sets = clf.predict_set(Xp[test])
        assert sets.shape == (test.size, 3)
        return C.coverage(sets, np.searchsorted(clf.classes_, lp[test]))

    mean, lo, _ = _coverage_bounds(_pool_coverage(None, lp, cover_sets, n_cal, 150, 1), n_cal, alpha)
    assert lo <= mean  # the guarantee (the upper bound needs tie-free scores; these probabilities saturate)
    with pytest.raises(ValueError, match="classes_"):
        clf.conformalize(Xp[:50], np.full(50, "z"), alpha)
    clf.fit(X[:100], labels[:100])
    with pytest.raises(RuntimeError, match="refitted"):
        clf.predict_set(Xp)


@pytest.mark.single_backend
def test_conformal_quantile_rank_of_decimal_alphas():
    # (n + 1)(1 - alpha) in floating point sat just above an integer for decimal alphas: alpha=0.7,
    # n=9 took the 4th smallest score instead of the 3rd; alpha=0.95, n=19 the 2nd instead of the 1st
    from fractions import Fraction

    assert bg.conformal.conformal_quantile(np.arange(1.0, 10.0), 0.7) == 3.0
    assert bg.conformal.conformal_quantile(np.arange(1.0, 20.0), 0.95) == 1.0
    for n in range(1, 120):
        s = np.arange(1.0, n + 1)[::-1].copy()
        for a in range(1, 100):
            k = math.ceil((n + 1) * (1 - Fraction(a, 100)))  # the rank of the decimal alpha, exactly
            want = math.inf if k > n else float(k)
            assert bg.conformal.conformal_quantile(s, a / 100) == want, (n, a)
