"""The active-learning loop (bg.active) and the stochastic batch acquisitions."""
import numpy as np
import pytest
from scipy import stats

import bayesgrad as bg
from bayesgrad.nn import MLP


def _problem(n=240, seed=0):
    d = bg.datasets.three_class_2d(n=n, seed=seed)
    return d.X, d.y


def _fit(X, y, previous):
    q = previous or bg.dropout.MCDropout(MLP([2, 32, 3], "relu"), p=0.2, likelihood="categorical", lr=1e-2)
    return q.fit(X, y, epochs=30, verbose=0, theta0=None if previous is None else previous.theta_)


def test_loop_bookkeeping_history_and_determinism(tmp_path):
    X, y = _problem()
    test = (X[:60], y[:60])
    runs = []
    for _ in range(2):
        al = bg.active.ActiveLearner(_fit, X, y, n_classes=3, initial=np.arange(60, 66), acquisition="batchbald",
                                     batch_size=4, n_samples=20, n_configs=100, seed=5)
        al.run(3, test=test)
        runs.append(al)
    al = runs[0]
    assert al.labelled.size == 6 + 3 * 4 and np.unique(al.labelled).size == al.labelled.size
    assert np.intersect1d(al.labelled, al.unlabelled).size == 0 and al.labelled.size + al.unlabelled.size == 240
    np.testing.assert_array_equal(al.y_labelled, y[al.labelled])
    assert [h["n_labelled"] for h in al.history] == [6, 10, 14]
    assert all(0 <= h["accuracy"] <= 1 and h["nll"] > 0 for h in al.history)
    np.testing.assert_array_equal(runs[0].labelled, runs[1].labelled)  # same seed, same picks
    assert all(h["n_candidates"] == 240 - h["n_labelled"] for h in al.history)  # every unlabelled point
    # save and resume: the resumed loop continues exactly as the original does
    al.save(tmp_path / "al.npz")
    resumed = bg.active.ActiveLearner.load(tmp_path / "al.npz", _fit, X, y)
    np.testing.assert_array_equal(resumed.labelled, al.labelled)
    assert resumed.history == al.history
    np.testing.assert_array_equal(resumed.posterior.theta_, al.posterior.theta_)  # the warm start is saved too
    np.testing.assert_array_equal(resumed.step(), al.step())
    with pytest.raises(ValueError, match="saved for a pool of 240 points"):  # not the saved indices' message
        bg.active.ActiveLearner.load(tmp_path / "al.npz", _fit, X[:100], y[:100])
    if bg.plotting.available():
        assert (tmp_path / "lc.png").exists() is False
        al.plot(tmp_path / "lc.png")
        assert (tmp_path / "lc.png").stat().st_size > 1000


@pytest.mark.single_backend
@pytest.mark.parametrize("acq", bg.active.ACQUISITIONS)
def test_every_acquisition_runs_and_respects_the_budget(acq):
    X, y = _problem(n=90)
    oracle_calls = []

    def oracle(idx):
        oracle_calls.append(len(idx))
        return y[idx]

    al = bg.active.ActiveLearner(_fit, X, oracle, n_classes=3, initial=np.arange(6), acquisition=acq, batch_size=5,
                                 n_samples=8, n_configs=50, budget=14, seed=1)
    al.run(5)
    assert al.labelled.size == 14 and al.done and len(al.history) == 2  # 6 -> 11 -> 14 (the budget)
    assert oracle_calls == [6, 5, 3]
    with pytest.raises(RuntimeError, match="budget"):
        al.step()


@pytest.mark.single_backend
def test_bad_input_names_the_argument():
    X, y = _problem(n=30)
    with pytest.raises(ValueError, match="acquisition"):
        bg.active.ActiveLearner(_fit, X, y, n_classes=3, initial=[0, 1], acquisition="coreset")
    with pytest.raises(ValueError, match="initial"):
        bg.active.ActiveLearner(_fit, X, y, n_classes=3, initial=[0, 0])
    with pytest.raises(ValueError, match="oracle"):
        bg.active.ActiveLearner(_fit, X, y + 5, n_classes=3, initial=[0, 1])
    with pytest.raises(TypeError, match="fit"):
        bg.active.ActiveLearner(None, X, y, n_classes=3, initial=[0, 1])
    with pytest.raises(ValueError, match="budget"):  # was accepted; step() then said the budget was reached
        bg.active.ActiveLearner(_fit, X, y, n_classes=3, initial=[0, 1, 2, 3, 4], budget=2)
    al = bg.active.ActiveLearner(_fit, X, y, n_classes=3, initial=[0, 1, 2])
    with pytest.raises(TypeError, match="test must be a pair"):  # was an unpacking error
        al.step(test=(X,))
    al_none = bg.active.ActiveLearner(lambda X, y, prev: None, X, y, n_classes=3, initial=[0, 1, 2])
    with pytest.raises(TypeError, match="fit must return the fitted posterior"):  # was an AttributeError
        al_none.step()
    assert al_none.posterior is None and not al_none.history  # nothing recorded


@pytest.mark.single_backend
def test_options_refused_before_the_first_fit(tmp_path):
    """beta < 0, BatchBALD's n_configs below n_classes and max_candidates below batch_size
    were accepted, then refused by the acquisition after the first round's fit; a saved
    file's fractional indices were truncated to other points and a malformed history was
    reported as a pool of another size; plot(metric='picked') was a matplotlib TypeError."""
    X, y = _problem(n=30)
    calls = []

    def fit(Xl, yl, previous):
        calls.append(len(yl))
        return _fit(Xl, yl, previous)

    for kw, match in [(dict(beta=-1.0, acquisition="bald"), "beta must be >= 0"),
                      (dict(n_configs=2), r"n_configs \(2\) must be >= n_classes \(3\)"),
                      (dict(max_candidates=2, batch_size=3), r"max_candidates \(2\) must be >= batch_size \(3\)")]:
        with pytest.raises(ValueError, match=match):
            bg.active.ActiveLearner(fit, X, y, n_classes=3, initial=[0, 1, 2], **kw)
    assert calls == []
    al = bg.active.ActiveLearner(fit, X, y, n_classes=3, initial=[0, 1, 2], acquisition="bald", batch_size=2,
                                 n_samples=4)
    al.run(1)
    with pytest.raises(ValueError, match="metric must name a number per round"):
        al.plot(tmp_path / "lc.png", metric="picked")
    path = al.save(tmp_path / "al.npz")
    import json

    with np.load(path) as z:
        files = {k: np.array(z[k]) for k in z.files}
    meta = json.loads(files["__meta__"].tobytes().decode())
    for name, arrays, m, match in [
            ("frac.npz", {"labelled": files["labelled"] + 0.5}, meta, "labelled indices"),
            ("hist.npz", {}, {**meta, "history": "x"}, "malformed history"),
            ("items.npz", {}, {**meta, "history": [1, 2]}, "malformed history")]:
        blob = np.frombuffer(json.dumps(m).encode(), dtype=np.uint8)
        np.savez(tmp_path / name, **{**files, **arrays, "__meta__": blob})
        with pytest.raises(ValueError, match=match):
            bg.active.ActiveLearner.load(tmp_path / name, fit, X, y)


@pytest.mark.single_backend
@pytest.mark.parametrize("mode", ["power", "softmax", "softrank"])
def test_stochastic_batch_draws_with_the_stated_probabilities(mode):
    """With batch_size 1, point i is drawn with probability ∝ s_i^beta, exp(beta s_i)
    or rank_i^-beta: a chi-square test over 2000 seeds (false-alarm probability 1e-4)."""
    rng = np.random.default_rng(0)
    lp = np.log(rng.dirichlet(np.ones(3) * 0.7, size=(30, 6)))
    s = bg.acquisition.scores(lp, "bald").astype(np.float64)
    beta = 2.0
    if mode == "power":
        w = s ** beta
    elif mode == "softmax":
        w = np.exp(beta * (s - s.max()))
    else:
        rank = np.empty(6)
        rank[np.argsort(-s, kind="stable")] = np.arange(1, 7)
        w = rank ** -beta
    p = w / w.sum()
    picks = [bg.acquisition.stochastic_batch(lp, 1, "bald", mode, beta, seed=k).indices[0] for k in range(2000)]
    counts = np.bincount(picks, minlength=6)
    chi2 = ((counts - 2000 * p) ** 2 / (2000 * p)).sum()
    assert chi2 < stats.chi2.ppf(1 - 1e-4, df=5), (counts, 2000 * p)
    sel = bg.acquisition.stochastic_batch(lp, 4, "bald", mode, beta, seed=3)
    assert np.unique(sel.indices).size == 4
    with pytest.raises(ValueError, match="beta"):
        bg.acquisition.stochastic_batch(lp, 1, mode=mode, beta=-1)


@pytest.mark.single_backend
def test_fit_may_return_a_scikit_learn_estimator():
    pytest.importorskip("sklearn")
    X, y = _problem(n=120)

    def fit(Xl, yl, previous):
        return bg.sklearn.BayesianMLPClassifier(method="mc_dropout", hidden_layer_sizes=(16,), epochs=20,
                                                random_state=0, verbose=0).fit(Xl, yl)

    init = np.concatenate([np.flatnonzero(y == c)[:2] for c in range(3)])
    al = bg.active.ActiveLearner(fit, X, y, n_classes=3, initial=init, acquisition="bald", batch_size=3,
                                 n_samples=8, seed=0)
    al.run(2, test=(X, y))
    assert al.labelled.size == 12 and all(0 <= h["accuracy"] <= 1 for h in al.history)
    # the picks are the BALD top-3 of the unlabelled points under the estimator's posterior
    st = bg.random.fold_in(bg.random.fold_in(0, 1), 2)
    lp = al.posterior.posterior_.predict(X, 8, seed=0, stream=st).log_probs
    s = bg.acquisition.scores(lp, "bald")
    s[al.labelled[:9]] = -np.inf
    assert set(al.labelled[9:].tolist()) == set(np.argsort(-s)[:3].tolist())


def test_a_failed_save_keeps_the_saved_pair(tmp_path):
    # the posterior was written over <path>.posterior.npz before the state file: a save that then failed
    # left the old state beside the newer posterior, and load combined them without a word
    X, y = _problem(n=60)

    def fit(Xl, yl, previous):
        return bg.dropout.MCDropout(MLP([2, 4, 3], "tanh"), p=0.1, likelihood="categorical").fit(Xl, yl, 1,
                                                                                                 verbose=0)
    al = bg.active.ActiveLearner(fit, X, y, n_classes=3, initial=np.arange(6), acquisition="bald", batch_size=2,
                                 n_samples=4)
    al.step()
    path = tmp_path / "al.npz"
    al.save(path)
    saved = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    first = al.posterior.theta_.copy()
    al.step()
    al.history[-1]["note"] = object()  # metadata JSON cannot hold: the state file's save fails
    with pytest.raises(TypeError, match="JSON serializable"):
        al.save(path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == saved
    del al.history[-1]["note"]
    back = bg.active.ActiveLearner.load(path, fit, X, y)
    assert back.labelled.size == 8
    np.testing.assert_array_equal(back.posterior.theta_, first)  # the posterior saved with that state
    al.save(path)  # a later save: the other posterior name, the first one removed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["al.npz", "al.posterior.1.npz"]
    back = bg.active.ActiveLearner.load(path, fit, X, y)
    assert back.labelled.size == 10
    np.testing.assert_array_equal(back.posterior.theta_, al.posterior.theta_)
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):  # was "not subscriptable"
        al.save(__import__("io").BytesIO())
