"""bg.compare and `bayesgrad compare`: K-fold cross-validation of every posterior (issue 20, item 5).

Small data and a few epochs: these tests check the folds, the standardisation
inside them, the metrics' units and the table, not the methods' quality
(bench/results/compare_*.csv holds full runs)."""
import csv

import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad import _models
from bayesgrad.cli import main
from bayesgrad.compare import BEST, METRICS, Comparison, compare, kfold

FAST = dict(epochs=3, hidden_layer_sizes=(8,), n_samples=8, n_models=2, batch_size=16)


def _regression(n=60, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X @ np.array([1.0, -2.0, 0.5][:d]) + 0.3 * rng.normal(size=n)
    return X, y


def _blobs(n=60, seed=0, labels=(0, 1, 2)):
    rng = np.random.default_rng(seed)
    k = np.arange(n) % 3
    X = rng.normal(size=(n, 2)) * 0.3 + np.array([[0, 4], [4, 0], [-4, -4]])[k]
    return X, np.asarray(labels)[k]


@pytest.mark.single_backend
@pytest.mark.parametrize("n,k", [(10, 2), (11, 3), (50, 5), (7, 7)])
def test_kfold_partitions_the_rows(n, k):
    folds = kfold(n, k, seed=3)
    assert len(folds) == k
    allrows = np.concatenate(folds)
    np.testing.assert_array_equal(np.sort(allrows), np.arange(n))   # disjoint and covering
    sizes = [f.size for f in folds]
    assert max(sizes) - min(sizes) <= 1
    assert all(np.all(np.diff(f) > 0) for f in folds)
    again = kfold(n, k, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again))
    if n >= 10:   # another seed, another split (a chance of 1/C(n, n/k) to coincide)
        assert not all(np.array_equal(a, b) for a, b in zip(folds, kfold(n, k, seed=4)))


def test_kfold_is_the_same_on_both_backends():
    with bg.use_backend("numpy"):
        ref = kfold(37, 4, seed=11)
    got = kfold(37, 4, seed=11)
    assert all(np.array_equal(a, b) for a, b in zip(ref, got))


def test_models_see_only_their_training_rows(monkeypatch):
    """Each fit gets the raw training rows of its fold (the model standardises them
    itself), never a test row; each prediction gets exactly the held-out rows."""
    X, y = _regression(30)
    X[:, 0] += np.arange(30) * 1000.0   # row i identifiable by its first feature
    fits, preds = [], []
    fit, evaluate = _models.BayesianMLP.fit, _models.BayesianMLP.evaluate

    def spy_fit(self, Xt, yt, n_classes=None):
        fits.append(np.round(Xt[:, 0] / 1000.0).astype(int))
        return fit(self, Xt, yt, n_classes=n_classes)

    def spy_eval(self, Xe):
        preds.append(np.round(Xe[:, 0] / 1000.0).astype(int))
        return evaluate(self, Xe)

    monkeypatch.setattr(_models.BayesianMLP, "fit", spy_fit)
    monkeypatch.setattr(_models.BayesianMLP, "evaluate", spy_eval)
    compare(X, y, methods=("mfvi", "laplace"), n_folds=3, seed=5, **FAST)
    folds = kfold(30, 3, seed=5)
    assert len(fits) == len(preds) == 6
    for i, (tr, te) in enumerate(zip(fits, preds)):
        np.testing.assert_array_equal(te, folds[i % 3])
        np.testing.assert_array_equal(tr, np.setdiff1d(np.arange(30), folds[i % 3]))


def test_metrics_follow_the_units_of_y():
    """Standardisation inside the folds makes a fit blind to affine changes of X and y:
    with y -> c y + b the RMSE scales by c, the Gaussian NLL shifts by log c (nats), and
    coverage and calibration error are unchanged (up to rounding)."""
    X, y = _regression(40)
    methods = ("mfvi", "laplace", "ensemble")
    a = compare(X, y, methods=methods, n_folds=2, seed=1, **FAST)
    c, b = 250.0, -30.0
    t = compare(3.0 * X - 7.0, c * y + b, methods=methods, n_folds=2, seed=1, **FAST)
    j = {m: i for i, m in enumerate(a.metrics)}
    np.testing.assert_allclose(t.scores[..., j["rmse"]], c * a.scores[..., j["rmse"]], rtol=1e-6)
    np.testing.assert_allclose(t.scores[..., j["nll"]], a.scores[..., j["nll"]] + np.log(c), rtol=1e-6)
    for m in ("coverage90", "calibration_error"):
        np.testing.assert_allclose(t.scores[..., j[m]], a.scores[..., j[m]], atol=1e-9)


@pytest.mark.single_backend   # every method, SGHMC's 4000 steps included: once is enough
def test_regression_table():
    X, y = _regression(45)
    r = compare(X, y, n_folds=3, seed=0, **FAST)   # every method
    assert r.task == "regression" and r.methods == _models.METHODS and r.metrics == METRICS["regression"]
    assert r.scores.shape == (7, 3, 6) and np.all(np.isfinite(r.scores))
    j = {m: i for i, m in enumerate(r.metrics)}
    assert np.all(r.scores[..., j["coverage90"]] >= 0) and np.all(r.scores[..., j["coverage90"]] <= 1)
    assert np.all((r.scores[..., j["calibration_error"]] >= 0) & (r.scores[..., j["calibration_error"]] <= 0.5))
    assert np.all(r.scores[..., j["fit_time"]] > 0) and np.all(r.scores[..., j["predict_time"]] > 0)
    # the RMSE of each fold against the definition, for one method refitted by hand
    folds = kfold(45, 3, seed=0)
    test = folds[1]
    train = np.setdiff1d(np.arange(45), test)
    opts = _models.check_options(method="laplace", random_state=0, **FAST)
    mean = _models.BayesianMLP("regression", opts).fit(X[train], y[train]).moments(X[test])[0]
    i = r.methods.index("laplace")
    np.testing.assert_allclose(r.scores[i, 1, j["rmse"]], np.sqrt(np.mean((y[test] - mean) ** 2)), rtol=1e-12)


def test_classification_labels_of_any_kind():
    X, y = _blobs()
    methods = ("mc_dropout", "laplace", "swag")
    kw = dict(methods=methods, n_folds=3, seed=2, **dict(FAST, epochs=30))
    r = compare(X, y, **kw)
    assert r.task == "classification" and r.metrics == METRICS["classification"]
    j = {m: i for i, m in enumerate(r.metrics)}
    # well separated blobs (4 units apart, sd 0.3): every method near-perfect
    assert np.all(r.scores[..., j["accuracy"]] >= 0.9)
    assert np.all((r.scores[..., j["ece"]] >= 0) & (r.scores[..., j["ece"]] <= 1))
    for labels in ((3, 7, 9), ("cat", "dog", "eel")):
        other = compare(X, _blobs(labels=labels)[1], **kw)
        assert other.task == "classification"
        np.testing.assert_array_equal(other.scores[..., :3], r.scores[..., :3])


def test_task_auto():
    X, y = _regression(30)
    assert compare(X, np.round(30 * y), methods="laplace", n_folds=2, **FAST).task == "regression"  # > 20 values
    assert compare(X, (y > 0).astype(float), methods="laplace", n_folds=2, **FAST).task == "classification"
    assert compare(X, (y > 0).astype(float), task="regression", methods="laplace", n_folds=2,
                   **FAST).task == "regression"


def test_best_marks_and_outputs(tmp_path):
    scores = np.zeros((3, 2, 6))
    scores[..., 0] = [[3.0, 3.0], [1.0, 2.0], [2.0, 2.0]]          # rmse: b (1.5)
    scores[..., 1] = [[0.5, 0.5], [0.6, 0.6], [0.4, 0.8]]          # nll: a (0.5) beats c (0.6) on the mean
    scores[..., 2] = [[0.95, 0.95], [0.8, 0.8], [0.88, 0.9]]      # coverage90: closest to 0.9 is c
    scores[..., 3] = [[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]
    scores[..., 4] = [[5.0, 5.0], [1.0, 1.0], [2.0, 2.0]]
    scores[..., 5] = [[1.0, 1.0], [1.0, 1.0], [0.5, 0.5]]
    r = Comparison("regression", ("a", "b", "c"), METRICS["regression"], scores, 10, 0, {})
    assert r.best == {"rmse": "b", "nll": "a", "coverage90": "c", "calibration_error": "a", "fit_time": "b",
                      "predict_time": "c"}
    np.testing.assert_allclose(r.stderr[1, 0], np.std([1.0, 2.0], ddof=1) / np.sqrt(2))   # std (ddof 1) / sqrt(K)
    lines = r.format().splitlines()
    assert lines[2].startswith("b") and "1.5 ± 0.5*" in lines[2]
    path = r.to_csv(tmp_path / "t.csv")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [x["method"] for x in rows] == ["a", "b", "c"]
    assert float(rows[1]["rmse"]) == 1.5 and rows[1]["rmse_best"] == "True" and rows[0]["rmse_best"] == "False"
    assert set(BEST) >= set(r.metrics)
    pytest.importorskip("matplotlib")
    png = r.plot(tmp_path / "t.png")
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments():
    X, y = _regression(20)
    with pytest.raises(ValueError, match=r"y must have shape \(20,\)"):
        compare(X, y[:-1], **FAST)
    with pytest.raises(ValueError, match="methods must be one of"):
        compare(X, y, methods=("mfvi", "bnn"), **FAST)
    with pytest.raises(ValueError, match="n_folds must be at most"):
        compare(X, y, n_folds=21, **FAST)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        compare(X, y, **dict(FAST, epochs=0))
    with pytest.raises(TypeError, match="methods= and seed="):
        compare(X, y, method="mfvi")
    with pytest.raises(TypeError, match="X must be a real numeric array"):
        compare(np.array([["a"]] * 20), y)
    with pytest.raises(TypeError, match="methods must be a method name or a sequence"):  # was about NoneType
        compare(X, y, methods=None, **FAST)


def test_callable_module_and_foreign_arrays():
    pd = pytest.importorskip("pandas")
    X, y = _regression(24)
    a = bg.compare(X, y, methods="laplace", n_folds=2, **FAST)
    b = bg.compare.compare(pd.DataFrame(X), pd.Series(y), methods="laplace", n_folds=2, **FAST)
    np.testing.assert_array_equal(a.scores[..., :4], b.scores[..., :4])


@pytest.mark.single_backend
def test_command(tmp_path, capsys):
    X, y = _blobs(30, labels=("u", "v", "w"))
    data = tmp_path / "d.csv"
    with open(data, "w") as f:
        f.write("a,b,label\n" + "".join(f"{p:.6f},{q:.6f},{c}\n" for (p, q), c in zip(X, y)))
    out = tmp_path / "table.csv"
    rc = main(["compare", str(data), "--target", "label", "--methods", "mfvi,laplace", "--folds", "3",
               "--epochs", "3", "--hidden", "8", "--samples", "8", "--out", str(out), "--no-plot", "--quiet"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "task classification" in text and "accuracy" in text and "* best per metric" in text
    with open(out, newline="") as f:
        assert [r["method"] for r in csv.DictReader(f)] == ["mfvi", "laplace"]
    assert main(["compare", str(data), "--target", "nope"]) == 1
    assert "no column 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", str(data), "--target", "label", "--methods", "mfvi,bnn"])
    assert main(["compare", str(data), "--target", "label", "--folds", "31"]) == 1
    assert "at least 31 rows" in capsys.readouterr().err


def test_comparison_records_each_methods_resolved_options():
    # the defaults resolved per method and task: MFVI regression trains up to 1000 epochs with
    # early stopping, MC dropout 200; Laplace's MAP step is 0.003
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    y = X[:, 0] + 0.1 * rng.normal(size=40)
    c = bg.compare(X, y, methods=("mfvi", "mc_dropout", "laplace"), n_folds=2, hidden_layer_sizes=(4,), epochs=None,
                   n_samples=4, n_iter_no_change=2)
    assert set(c.options) == {"mfvi", "mc_dropout", "laplace"}
    assert c.options["mfvi"]["epochs"] == 1000 and c.options["mfvi"]["early_stopping"] is True
    assert c.options["mc_dropout"]["epochs"] == 200 and c.options["mc_dropout"]["patience"] == 2
    assert c.options["laplace"]["lr"] == 3e-3
