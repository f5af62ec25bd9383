"""The ``bayesgrad`` command, the demo data sets, the plots and the quick bench."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad import cli, datasets, plotting, _quickbench
from bayesgrad._models import DEFAULTS
from bayesgrad._table import DataError, read_csv

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(argv, capsys):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def write(path, text):
    path.write_text(text)
    return path


# -- data sets ---------------------------------------------------------------

def test_binary_1d_regions():
    d = datasets.binary_1d(n=3000, seed=3)
    x, y = d.X[:, 0], d.y
    assert d.X.shape == (3000, 1) and y.dtype == np.int64
    assert x.min() >= -9 and x.max() <= 5
    assert not np.any((x > -2) & (x < 2)), "the middle region must be empty"
    clean0, clean1, overlap = (x > -5) & (x < 0), x > 0, x < -5
    assert np.all(y[clean0] == 0) and np.all(y[clean1] == 1)
    # The overlapping region is a fair coin: |mean - 1/2| > 4.5 sd has probability < 1e-5.
    assert abs(y[overlap].mean() - 0.5) < 4.5 * np.sqrt(0.25 / overlap.sum())
    lo, hi = d.bounds[0]
    for p in d.points.values():
        assert lo < p[0] < hi
    assert d.points["unseen"][0] == 0.0 and -9 < d.points["ambiguous"][0] < -5 and d.points["confident"][0] > 2


def test_regression_1d_gap():
    d = datasets.regression_1d_gap(n=400, noise=0.2, seed=1)
    x = d.X[:, 0]
    assert np.all(np.diff(x) >= 0) and np.all(np.abs(x) >= 1.5) and x.min() >= -5 and x.max() <= 4
    assert np.sum(x < 0) == 240  # 60% on the left: the gap's centre is not the mean of x
    resid = d.y - (np.sin(x) + 0.1 * x)
    # sample sd of 400 N(0, 0.2^2) residuals is within 15% of 0.2 with probability > 1 - 1e-4
    assert abs(resid.std() / 0.2 - 1) < 0.15
    assert abs(resid.mean()) < 4 * 0.2 / np.sqrt(400)
    with pytest.raises(ValueError, match="noise"):
        datasets.regression_1d_gap(noise=-1)


def test_three_class_2d():
    d = datasets.three_class_2d(n=3000, seed=2)
    assert np.array_equal(np.bincount(d.y), [1000, 1000, 1000])
    for k, (centre, sd) in enumerate(datasets._THREE_CLASS):
        Xk = d.X[d.y == k]
        assert np.all(np.abs(Xk.mean(0) - centre) < 4 * sd / np.sqrt(1000))
        assert np.all(np.abs(Xk.std(0) / sd - 1) < 0.1)


def test_datasets_deterministic_and_bad_input():
    a, b, c = datasets.binary_1d(seed=5), datasets.binary_1d(seed=5), datasets.binary_1d(seed=6)
    assert np.array_equal(a.X, b.X) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)
    with pytest.raises(ValueError, match="n"):
        datasets.three_class_2d(n=2)
    with pytest.raises(TypeError, match="n"):
        datasets.binary_1d(n=10.5)
    with pytest.raises(ValueError, match="1-D"):
        datasets.three_class_2d().grid()


@pytest.mark.single_backend
def test_datasets_seed_none_is_one_seed_and_sizes_are_checked():
    """seed=None drew fresh entropy for each draw (x, then y or the noise), so last_seed
    did not reproduce the data; a huge n was a MemoryError (or the OOM killer) from
    np.arange before any check; noise near the float maximum gave targets of inf."""
    for make in (datasets.binary_1d, datasets.regression_1d_gap, datasets.three_class_2d):
        d = make(n=30, seed=None)
        again = make(n=30, seed=bg.random.last_seed)
        np.testing.assert_array_equal(d.X, again.X)
        np.testing.assert_array_equal(d.y, again.y)
        with pytest.raises(ValueError, match=r"n=10000000000000: the data set would need"):
            make(n=10 ** 13)
    with pytest.raises(ValueError, match="the grid would need"):
        datasets.binary_1d(n=3).grid(10 ** 13)
    with pytest.raises(ValueError, match="noise .* is too large"):
        datasets.regression_1d_gap(n=30, noise=1.7e308)


@pytest.mark.single_backend
def test_datasets_same_on_every_backend():
    from helpers import BACKENDS

    ref = None
    for name in BACKENDS:
        with bg.use_backend(name):
            d = datasets.regression_1d_gap(seed=4)
        if ref is None:
            ref = d
        else:
            np.testing.assert_allclose(d.y, ref.y, rtol=0, atol=1e-12)
            np.testing.assert_array_equal(d.X, ref.X)


# -- plots ---------------------------------------------------------------------

def _is_png(path):
    with open(path, "rb") as fh:
        return fh.read(8) == PNG_MAGIC


@pytest.mark.single_backend
def test_plots_write_pngs(tmp_path):
    pytest.importorskip("matplotlib")  # an optional extra; the test extra installs it
    x = np.linspace(-3, 3, 50)
    curves = {m: {"total": np.full(50, 0.6), "aleatoric": np.full(50, 0.4), "epistemic": np.full(50, 0.2)}
              for m in ("A", "B")}
    p1 = plotting.uncertainty_curves(x, curves, tmp_path / "u.png", data=(x, x > 0), points={"p": 0.0},
                                     probs={"A": np.full(50, 0.5)}, title="t")
    bands = {"A": {"mean": np.sin(x), "std": np.full(50, 0.3), "epistemic_std": np.full(50, 0.1)}}
    p2 = plotting.predictive_bands(x, bands, tmp_path / "sub" / "b.png", data=(x, np.sin(x)), truth=np.sin(x))
    s = np.random.default_rng(0).dirichlet(np.ones(3), size=(2, 30))
    p3 = plotting.simplex({"A": {"a": s[0], "b": s[1]}, "B": {"a": s[1], "b": s[0]}}, tmp_path / "s.png")
    for p in (p1, p2, p3):
        assert os.path.getsize(p) > 1000 and _is_png(p)
    with pytest.raises(ValueError, match="50"):
        plotting.uncertainty_curves(x, {"A": {"total": x[:3], "aleatoric": x, "epistemic": x}}, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"\(S, 3\)"):
        plotting.simplex({"A": {"a": s[0][:, :2]}}, tmp_path / "y.png")


@pytest.mark.single_backend
def test_plots_check_their_arguments(tmp_path):
    """A path without an extension was written as <path>.png and returned without it; empty
    dicts, missing keys, ragged point names, no metrics and the like were matplotlib errors,
    KeyErrors, an IndexError or a ZeroDivisionError naming nothing the caller passed."""
    pytest.importorskip("matplotlib")
    x = np.linspace(-1, 1, 5)
    curves = {"A": {"total": x, "aleatoric": x, "epistemic": x}}
    p = plotting.uncertainty_curves(x, curves, tmp_path / "noext")
    assert p == str(tmp_path / "noext.png") and _is_png(p)
    third = np.full((4, 3), 1 / 3)
    for call, err, match in [
            (lambda: plotting.uncertainty_curves(x, {}, tmp_path / "a.png"), ValueError, "curves must name at least"),
            (lambda: plotting.uncertainty_curves(x, {"A": {"total": x}}, tmp_path / "a.png"), ValueError,
             r"curves\['A'\] lacks \['aleatoric', 'epistemic'\]"),
            (lambda: plotting.uncertainty_curves(x, [x], tmp_path / "a.png"), TypeError, "curves must be a dict"),
            (lambda: plotting.uncertainty_curves(x, curves, tmp_path / "a.png", points={"p": []}), ValueError,
             r"points\['p'\] must be one x value"),
            (lambda: plotting.uncertainty_curves("abc", curves, tmp_path / "a.png"), TypeError, "x must be numbers"),
            (lambda: plotting.predictive_bands(x, {"A": {"mean": x}}, tmp_path / "b.png"), ValueError,
             r"bands\['A'\] lacks \['std'\]"),
            (lambda: plotting.simplex({}, tmp_path / "s.png"), ValueError, "samples must name at least"),
            (lambda: plotting.simplex({"A": {"a": third}, "B": {"b": third}}, tmp_path / "s.png"), ValueError,
             "the same point names"),
            (lambda: plotting.plot_reliability({"A": third}, tmp_path / "r.png"), TypeError, "must be a pair"),
            (lambda: plotting.plot_comparison(["A"], [], np.ones((1, 0)), np.ones((1, 0)), {}, tmp_path / "c.png"),
             ValueError, "methods and metrics must each name at least one"),
            (lambda: plotting.plot_comparison(["A"], ["rmse"], np.ones((1, 1)), np.ones((1, 1)), None,
                                              tmp_path / "c.png"), TypeError, "best must be a dict")]:
        with pytest.raises(err, match=match):
            call()
    assert sorted(os.listdir(tmp_path)) == ["noext.png"]  # nothing written for a refused call


@pytest.mark.single_backend
def test_plots_without_matplotlib(monkeypatch, tmp_path):
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import now fails
    assert not plotting.available()
    with pytest.raises(ImportError, match=r'pip install "bayesgrad\[plot\]"'):
        plotting.simplex({"A": {"a": np.full((2, 3), 1 / 3)}}, tmp_path / "s.png")


# -- CSV input -----------------------------------------------------------------

BAD_FILES = {
    "empty": ("", "is empty"),
    "blank": ("\n\n  \n", "is empty"),
    "header_only": ("a,b,y\n", "no data rows"),
    "non_numeric": ("a,b,y\n1,2,3\n4,abc,5\n", "line 3, column 'b': 'abc' is not a number"),
    "nan": ("a,b,y\n1,2,3\n4,NaN,5\n", "line 3, column 'b': missing value"),
    "empty_cell": ("a,b,y\n1,,3\n4,5,5\n", "line 2, column 'b': missing value"),
    "inf": ("a,b,y\n1,inf,3\n4,5,5\n", "column 'b': 'inf' is not finite"),
    "ragged": ("a,b,y\n1,2,3\n4,5\n", "line 3: 2 fields, but the header has 3"),
    "dup_header": ("a,a,y\n1,2,3\n", "duplicate column"),
    "nan_target": ("a,b,y\n1,2,0.5\n4,5,nan\n", "column 'y': missing value"),
}


@pytest.mark.single_backend
@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_fit_bad_file_one_line_error(case, tmp_path, capsys):
    text, msg = BAD_FILES[case]
    f = write(tmp_path / "data.csv", text)
    rc, out, err = run_cli(["fit", f, "--target", "y", "--task", "regression"], capsys)
    assert rc == 1
    assert err.count("\n") == 1 and err.startswith("bayesgrad: error: ") and msg in err
    assert "Traceback" not in err + out


@pytest.mark.single_backend
def test_fit_missing_things(tmp_path, capsys):
    f = write(tmp_path / "d.csv", "a,b,y\n1,2,3\n4,5,6\n")
    for argv, msg in [
        (["fit", tmp_path / "nope.csv", "--target", "y"], "no such file"),
        (["fit", tmp_path, "--target", "y"], "is a directory"),
        (["fit", f, "--target", "z"], "no column 'z' (columns: a, b, y)"),
        (["fit", f, "--target", "y", "--features", "a,q"], "no column 'q'"),
        (["fit", f, "--target", "y", "--features", "a,y"], "must not contain the target"),
        (["fit", f, "--target", "y", "--epochs", "0", "--task", "regression"], "epochs must be >= 1"),
    ]:
        rc, out, err = run_cli(argv, capsys)
        assert rc == 1 and msg in err and err.count("\n") == 1, (argv, err)
    g = write(tmp_path / "one.csv", "a,y\n1,cat\n2,cat\n")
    rc, _, err = run_cli(["fit", g, "--target", "y"], capsys)
    assert rc == 1 and "single class ('cat')" in err
    h = write(tmp_path / "only.csv", "y\n1\n2\n")
    rc, _, err = run_cli(["fit", h, "--target", "y"], capsys)
    assert rc == 1 and "no feature columns" in err
    # a continuous target asked to be classes (it trained one class per distinct value)
    c = write(tmp_path / "cont.csv", "a,y\n1,0.5\n2,1.25\n3,2\n")
    rc, _, err = run_cli(["fit", c, "--target", "y", "--task", "classification"], capsys)
    assert rc == 1 and "is continuous" in err and "--task regression" in err


@pytest.mark.single_backend
def test_fit_bad_file_no_traceback_subprocess(tmp_path):
    f = write(tmp_path / "d.csv", "a,y\n1,2\nx,3\n")
    # the bayesgrad this test imported (installed, or the source tree with an in-place build)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(bg.__file__)))
    r = subprocess.run([sys.executable, "-m", "bayesgrad", "fit", str(f), "--target", "y"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"bayesgrad: error: {f} line 3, column 'a': 'x' is not a number"]


def test_read_csv_strips_and_keeps_lines(tmp_path):
    f = write(tmp_path / "d.csv", "\ufeff a , b\n1,2\n\n3,4\n")
    t = read_csv(f)
    assert t.columns == ["a", "b"] and t.lines == [2, 4]
    np.testing.assert_array_equal(t.numeric(["b", "a"]), [[2, 1], [4, 3]])
    with pytest.raises(DataError, match="no column 'c'"):
        t.numeric(["c"])


def test_task_inference_and_labels():
    assert cli._infer_task(["a", "b"])[0] == "classification"
    assert cli._infer_task(["0", "1", "2", "1"])[0] == "classification"
    assert cli._infer_task(["0.5", "1", "2"])[0] == "regression"
    assert cli._infer_task([str(i) for i in range(cli._MAX_AUTO_CLASSES + 1)])[0] == "regression"
    classes, idx = cli._class_labels(["10", "9", " 10", "2"])
    assert classes == ["2", "9", "10"] and idx.tolist() == [2, 1, 2, 0]


def test_split_is_a_seeded_partition():
    tr, va = cli._split(100, 0.2, seed=7)
    assert va.size == 20 and np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(100))
    tr2, va2 = cli._split(100, 0.2, seed=7)
    assert np.array_equal(va, va2)
    assert not np.array_equal(va, cli._split(100, 0.2, seed=8)[1])
    assert cli._split(2, 0.2, seed=0)[1].size == 0  # too few rows to hold any out
    assert cli._split(50, 0.0, seed=0)[1].size == 0


def test_cli_usage_errors(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["fit", "x.csv", "--target", "y", "--hidden", "0"])
    assert e.value.code == 2
    for argv in (["fit", "x.csv", "--target", "y", "--val-fraction", "1.5"],
                 ["fit", "x.csv", "--target", "y", "--seed", "-1"],
                 ["demo", "--seed", "x"],
                 ["bench", "--repeats", "0"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2, argv
    assert cli.main([]) == 2
    capsys.readouterr()


def test_fit_defaults_are_the_front_ends_defaults():
    args = cli.build_parser().parse_args(["fit", "x.csv", "--target", "y"])
    given = dict(method=args.method, hidden_layer_sizes=args.hidden, epochs=args.epochs, lr=args.lr,
                 batch_size=args.batch_size, n_samples=args.samples)
    assert given == {k: DEFAULTS[k] for k in given}
    assert cli.build_parser().parse_args(["bench"]).repeats == _quickbench.REPEATS


@pytest.mark.single_backend
def test_fit_bad_option_values_one_line(tmp_path, capsys):
    f = write(tmp_path / "d.csv", "a,y\n1,2\n3,4\n5,6\n")
    for opt, msg in [(["--lr", "0"], "lr must be in (0"), (["--samples", "1"], "n_samples must be >= 2"),
                     (["--batch-size", "0"], "batch_size must be >= 1")]:
        rc, out, err = run_cli(["fit", f, "--target", "y", *opt], capsys)
        assert rc == 1 and err.count("\n") == 1 and msg in err, (opt, err)
        assert "Traceback" not in err and "trained in" not in out
    rc, out, err = run_cli(["fit", write(tmp_path / "one.csv", "a,y\n1,2\n"), "--target", "y"], capsys)
    assert rc == 1 and "training needs at least 2 data rows, got 1" in err and err.count("\n") == 1


@pytest.mark.single_backend
def test_fit_checks_the_predict_file_before_training(tmp_path, capsys):
    f = write(tmp_path / "d.csv", "a,b,y\n1,2,3\n4,5,6\n7,8,9\n")
    bad = write(tmp_path / "new.csv", "a\n1\n")
    rc, out, err = run_cli(["fit", f, "--target", "y", "--predict", bad], capsys)
    assert rc == 1 and "new.csv: no column 'b'" in err and err.count("\n") == 1
    assert "trained in" not in out


@pytest.mark.single_backend
def test_fit_unwritable_out_one_line(tmp_path, capsys):
    f = write(tmp_path / "d.csv", "a,y\n1,2\n3,4\n5,6\n")
    rc, out, err = run_cli(["fit", f, "--target", "y", "--epochs", "1", "--quiet", "--out", tmp_path], capsys)
    # (after the warnings that 3 rows are few)
    assert rc == 1 and err.splitlines()[-1] == f"bayesgrad: error: {tmp_path}: Is a directory"
    assert all(ln.startswith("bayesgrad: warning: ") for ln in err.splitlines()[:-1])


@pytest.mark.single_backend
def test_user_error_traceback_with_debug(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BAYESGRAD_DEBUG", "1")
    with pytest.raises(cli.UsageError, match="no such file"):
        cli.main(["fit", str(tmp_path / "nope.csv"), "--target", "y"])


@pytest.mark.single_backend
@pytest.mark.parametrize("target, exc", [("_infer_task", TypeError), ("_split", ValueError),
                                         ("_metrics_report", OSError), ("_class_labels", ImportError)])
def test_programming_errors_are_not_swallowed(target, exc, tmp_path, capsys, monkeypatch):
    """Only mistakes in the user's input become one-line errors: an exception from
    the package itself (a stand-in for a bug, also inside the input-reading code)
    propagates with its traceback, whatever its type."""
    def broken(*args, **kwargs):
        raise exc("a bug inside bayesgrad")

    monkeypatch.setattr(cli, target, broken)
    f = write(tmp_path / "d.csv", "a,y\n1,0\n2,1\n3,0\n4,1\n5,0\n")
    with pytest.raises(exc, match="a bug inside bayesgrad"):
        cli.main(["fit", str(f), "--target", "y", "--epochs", "1", "--quiet"])


@pytest.mark.single_backend
def test_plot_errors(tmp_path):
    ctx = {"dir": str(tmp_path), "written": []}

    def raising(exc):
        def fn(*args, **kwargs):
            raise exc
        return fn

    denied = PermissionError(13, "Permission denied", str(tmp_path / "p.png"))
    with pytest.raises(cli.UsageError, match=r"p\.png: Permission denied"):
        cli._plot(ctx, raising(denied), "p.png")
    with pytest.raises(cli.UsageError, match=r'pip install "bayesgrad\[plot\]"'):
        cli._plot(ctx, raising(ImportError(plotting.PLOT_HINT)), "p.png")
    with pytest.raises(ImportError, match="no module named 'nope'"):  # not the install hint: a bug
        cli._plot(ctx, raising(ImportError("no module named 'nope'")), "p.png")


# -- fit, end to end -------------------------------------------------------------

def _regression_csv(path, n=120):
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, (n, 2))
    y = 3.0 * x[:, 0] - x[:, 1] + 0.1 * rng.standard_normal(n) + 10
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["x1", "x2", "price"])
        w.writerows(np.column_stack([x, y]).tolist())
    return path


@pytest.mark.parametrize("method", ["mfvi", "mc_dropout", "laplace"])
def test_fit_regression_writes_predictions(method, tmp_path, capsys):
    data = _regression_csv(tmp_path / "d.csv")
    out = tmp_path / "preds.csv"
    rc, stdout, err = run_cli(["fit", data, "--target", "price", "--method", method, "--epochs", "60",
                               "--hidden", "16", "--quiet", "--out", out], capsys)
    assert rc == 0, err
    assert "task: regression" in stdout and "validation: RMSE" in stdout
    t = read_csv(out)
    assert t.columns == ["x1", "x2", "price", "split", "mean", "std", "total_var", "aleatoric_var", "epistemic_var"]
    assert len(t) == 120 and t.strings("split").count("validation") == 24
    v = t.numeric(["price", "mean", "std", "total_var", "aleatoric_var", "epistemic_var"])
    np.testing.assert_allclose(v[:, 3], v[:, 4] + v[:, 5], rtol=1e-5)
    np.testing.assert_allclose(v[:, 2] ** 2, v[:, 3], rtol=1e-4)
    assert np.all(v[:, 4:] >= 0)
    # the mean is in the target's units (not standardised): R^2 well above 0
    resid = v[:, 0] - v[:, 1]
    assert 1 - resid.var() / v[:, 0].var() > 0.8


def test_fit_classification_predict_new(tmp_path, capsys):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((150, 2))
    lab = np.where(x[:, 0] + x[:, 1] > 0, "yes", "no")
    with open(tmp_path / "d.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["f1", "f2", "label"])
        w.writerows([[a, b, c] for (a, b), c in zip(x.tolist(), lab)])
    write(tmp_path / "new.csv", "id,f2,f1\nr1,3,3\nr2,-3,-3\n")
    out = tmp_path / "p.csv"
    rc, stdout, err = run_cli(["fit", tmp_path / "d.csv", "--target", "label", "--features", "f1,f2",
                               "--epochs", "60", "--quiet", "--predict", tmp_path / "new.csv", "--out", out], capsys)
    assert rc == 0, err
    assert "task: classification" in stdout and "validation: accuracy" in stdout
    t = read_csv(out)
    assert t.columns == ["id", "f2", "f1", "predicted", "p_no", "p_yes", "total_nats", "aleatoric_nats",
                         "epistemic_nats"]
    assert t.strings("predicted") == ["yes", "no"]
    p = t.numeric(["p_no", "p_yes"])
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)
    u = t.numeric(["total_nats", "aleatoric_nats", "epistemic_nats"])
    np.testing.assert_allclose(u[:, 0], u[:, 1] + u[:, 2], atol=1e-5)
    # --predict file missing a feature column
    write(tmp_path / "bad.csv", "f1\n1\n")
    rc, _, err = run_cli(["fit", tmp_path / "d.csv", "--target", "label", "--epochs", "5", "--quiet",
                          "--predict", tmp_path / "bad.csv"], capsys)
    assert rc == 1 and "bad.csv: no column 'f2'" in err


# -- demo and bench --------------------------------------------------------------

@pytest.mark.single_backend
@pytest.mark.parametrize("plots", [True, False])
def test_demo_tables_and_plots(plots, tmp_path, capsys, monkeypatch):
    if plots:
        pytest.importorskip("matplotlib")
    else:
        monkeypatch.setattr(plotting, "available", lambda: False)
    # The same demo with fewer epochs: this checks its wiring, not its accuracy.
    monkeypatch.setattr(cli, "_DEMO_TRAINING", dict(cli._DEMO_TRAINING, epochs=20, n_samples=20))
    monkeypatch.setattr(cli, "_DEMO_GRID", 15)
    rc, out, err = run_cli(["demo", "--out", tmp_path / "plots"], capsys)
    assert rc == 0, err
    for heading in ("1. Gradient of an expectation", "2. 1-D binary classification", "3. 1-D regression with a gap",
                    "4. 3-class problem"):
        assert heading in out
    for method in ("MFVI", "MC dropout", "Laplace"):
        assert out.count(method) >= 3
    names = ["binary_uncertainty.png", "regression_bands.png", "simplex.png"]
    if plots:
        assert f"plots written to {tmp_path / 'plots'}" in out
        for n in names:
            assert _is_png(tmp_path / "plots" / n)
    else:
        assert 'pip install "bayesgrad[plot]"' in out and not (tmp_path / "plots").exists()


@pytest.mark.single_backend
def test_quick_bench_reports_ratios():
    lines = []
    res = _quickbench.run(repeats=1, out=lines.append)
    if not bg._backend.native_available():
        assert "not available" in lines[-1]
        return
    assert not [ln for ln in lines if "failed" in ln or "not in this build" in ln], lines
    assert len(res) == len(_quickbench.CASES)
    assert [r["baseline"] for r in res[1:3]] == ["numpy default_rng", "numpy formula"]
    for r in res:
        assert r["native_s"] > 0 and r["baseline_s"] > 0
        assert r["ratio"] == pytest.approx(r["baseline_s"] / r["native_s"])
    assert any("x" in ln and "normal sampling" in ln for ln in lines)


def test_fit_laplace_options(tmp_path, capsys, monkeypatch):
    """--laplace-structure / --laplace-subset / --laplace-link / --laplace-prior reach the Laplace
    fit; a bad choice is argparse's usage error."""
    from bayesgrad import _models

    seen = {}
    real = _models._fit_posterior

    def spy(p, *a, **k):
        out = real(p, *a, **k)  # (posterior, MAP theta, epochs run)
        seen.update(structure=out[0].structure, subset=out[0].subset, prior=p["prior"], link=p["link"])
        return out

    monkeypatch.setattr(_models, "_fit_posterior", spy)
    data = _regression_csv(tmp_path / "d.csv")
    rc, _, err = run_cli(["fit", data, "--target", "price", "--method", "laplace", "--epochs", "10", "--hidden", "8",
                          "--quiet", "--laplace-structure", "diag", "--laplace-subset", "all",
                          "--laplace-prior", "fixed", "--laplace-link", "mc"], capsys)
    assert rc == 0, err
    assert seen == dict(structure="diag", subset="all", prior="fixed", link="mc")
    with pytest.raises(SystemExit):
        run_cli(["fit", data, "--target", "price", "--laplace-structure", "tree"], capsys)


# -- issue 18: bayesgrad fit as users expect it ----------------------------------

def _numeric_csv(path, n=60, sep=",", target=True, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    y = X[:, 0] - 0.5 * X[:, 1] + 0.1 * rng.normal(size=n)
    rows = [sep.join(["a", "b"] + (["target"] if target else []))]
    rows += [sep.join([f"{u:.4f}", f"{v:.4f}"] + ([f"{t:.4f}"] if target else [])) for (u, v), t in zip(X, y)]
    return write(path, "\n".join(rows) + "\n")


FAST_FIT = ["--epochs", "5", "--samples", "10", "--hidden", "8"]


@pytest.mark.single_backend
def test_fit_empty_target_cell_is_an_error(tmp_path, capsys):
    """One empty target cell among numbers used to make a ~60-class classifier that
    reported 'accuracy 0.0%' and exited 0."""
    f = _numeric_csv(tmp_path / "d.csv")
    lines = f.read_text().splitlines()
    lines[7] = lines[7].rsplit(",", 1)[0] + ","
    lines[9] = lines[9].rsplit(",", 1)[0] + ",NA"
    write(f, "\n".join(lines) + "\n")
    rc, out, err = run_cli(["fit", f, "--target", "target", *FAST_FIT], capsys)
    assert rc == 1 and err.count("\n") == 1 and err.startswith("bayesgrad: error: ")
    assert "d.csv line 8, column 'target': missing value (2 empty target cell(s), line(s) 8, 10" in err
    assert "the other 58 values make it a regression target" in err
    assert "trained in" not in out


@pytest.mark.single_backend
def test_fit_separator_sniffed_or_given(tmp_path, capsys):
    f = _numeric_csv(tmp_path / "semi.csv", sep=";")
    rc, out, err = run_cli(["fit", f, "--target", "target", *FAST_FIT], capsys)
    assert rc == 0 and "data: 60 rows, 2 features" in out, err
    rc, out, err = run_cli(["fit", f, "--target", "target", "--sep", ",", *FAST_FIT], capsys)
    assert rc == 1 and err.count("\n") == 1
    assert "the header has one column ('a;b;target'): is the separator ';'?" in err
    rc, out, err = run_cli(["fit", f, "--target", "target", "--sep", ";", *FAST_FIT], capsys)
    assert rc == 0
    t = _numeric_csv(tmp_path / "tab.csv", sep="\t")
    rc, out, err = run_cli(["fit", t, "--target", "target", "--sep", "tab", *FAST_FIT], capsys)
    assert rc == 0 and "data: 60 rows, 2 features" in out
    with pytest.raises(SystemExit) as e:
        cli.main(["fit", str(f), "--target", "target", "--sep", ";;"])
    assert e.value.code == 2
    capsys.readouterr()


def test_sniff_separator():
    from bayesgrad._table import sniff_separator

    assert sniff_separator(["a;b;c\n", "1;2;3\n"]) == ";"
    assert sniff_separator(["a,b\n", "1,2\n"]) == ","
    # a comma inside a quoted field does not make the file comma-separated
    assert sniff_separator(['name;x\n', '"Smith, J";1\n']) == ";"
    assert sniff_separator(["a\tb\n", "1\t2\n"]) == "\t"
    assert sniff_separator(["just_one_column\n", "1\n"]) == ","


@pytest.mark.single_backend
def test_fit_predict_file_checked_first_and_scored(tmp_path, capsys):
    f = _numeric_csv(tmp_path / "d.csv")
    new = _numeric_csv(tmp_path / "new.csv", n=20, seed=1)
    rc, out, err = run_cli(["fit", f, "--target", "target", "--predict", new, *FAST_FIT], capsys)
    assert rc == 0, err
    test_line = [ln for ln in out.splitlines() if ln.startswith("test (")]
    assert len(test_line) == 1 and "20 rows): RMSE" in test_line[0] and "NLL" in test_line[0]
    assert "95% interval coverage" in test_line[0]
    # without the target column: predictions only
    bare = _numeric_csv(tmp_path / "bare.csv", n=5, target=False)
    rc, out, _ = run_cli(["fit", f, "--target", "target", "--predict", bare, *FAST_FIT], capsys)
    assert rc == 0 and "test (" not in out and "first 5 of 5 predictions" in out
    # classification: accuracy, NLL, ECE; a label the training data lacks is an error before training
    c = write(tmp_path / "c.csv", "a,b,y\n" + "".join(f"{i % 7},{i % 3},{'yes' if i % 7 > 3 else 'no'}\n"
                                                      for i in range(40)))
    cn = write(tmp_path / "cn.csv", "a,b,y\n1,0,no\n5,1,yes\n6,2,yes\n")
    rc, out, err = run_cli(["fit", c, "--target", "y", "--predict", cn, *FAST_FIT], capsys)
    assert rc == 0, err
    line = [ln for ln in out.splitlines() if ln.startswith("test (")][0]
    assert "3 rows): accuracy" in line and "NLL" in line and "ECE" in line
    bad = write(tmp_path / "bad.csv", "a,b,y\n1,0,maybe\n")
    rc, out, err = run_cli(["fit", c, "--target", "y", "--predict", bad, *FAST_FIT], capsys)
    assert rc == 1 and "label(s) the training data lacks: 'maybe'" in err and "trained in" not in out


@pytest.mark.single_backend
def test_fit_no_progress_bars_off_a_terminal(tmp_path, capsys):
    """capsys's stderr is not a terminal: no bar fragments even without --quiet."""
    f = _numeric_csv(tmp_path / "d.csv")
    for method in ("mfvi", "laplace"):
        rc, out, err = run_cli(["fit", f, "--target", "target", "--method", method, *FAST_FIT], capsys)
        assert rc == 0 and err == "", err

    class Tty:
        def isatty(self):
            return True

    args = cli.build_parser().parse_args(["fit", "x.csv", "--target", "y"])
    assert cli._verbosity(args, Tty()) == 1 and cli._verbosity(args, open(os.devnull, "w")) == 0
    args.quiet = True
    assert cli._verbosity(args, Tty()) == 0


@pytest.mark.single_backend
def test_fit_warns_about_too_few_rows(tmp_path, capsys):
    tiny = write(tmp_path / "tiny.csv", "a,b,y\n1,2,75\n3,4,141\n5,6,151\n")
    rc, out, err = run_cli(["fit", tiny, "--target", "y", *FAST_FIT], capsys)
    assert rc == 0
    assert "bayesgrad: warning: few training rows for class(es)" in err and "fewer than 5 per class" in err
    assert "fewer than 5 per feature" in err
    f = _numeric_csv(tmp_path / "d.csv")
    rc, out, err = run_cli(["fit", f, "--target", "target", "--val-fraction", "0.9", *FAST_FIT], capsys)
    assert rc == 0 and "6 training rows for 2 feature(s): fewer than 5 per feature" in err
    rc, out, err = run_cli(["fit", f, "--target", "target", *FAST_FIT], capsys)
    assert rc == 0 and "warning" not in err


@pytest.mark.single_backend
def test_fit_posterior_options_reach_the_model(tmp_path, capsys, monkeypatch):
    from bayesgrad import _models

    seen = {}
    real = _models._fit_posterior

    def spy(p, *a, **k):
        seen.update(p)
        return real(p, *a, **k)

    monkeypatch.setattr(_models, "_fit_posterior", spy)
    f = _numeric_csv(tmp_path / "d.csv")
    rc, _, err = run_cli(["fit", f, "--target", "target", *FAST_FIT, "--mfvi-estimator", "flipout", "--mfvi-prior",
                          "scale_mixture", "--prior-precision", "4", "--early-stopping", "off"], capsys)
    assert rc == 0, err
    assert (seen["mfvi_estimator"], seen["mfvi_prior"], seen["prior_precision"], seen["early_stopping"]) == \
        ("flipout", "scale_mixture", 4.0, False)
    rc, _, err = run_cli(["fit", f, "--target", "target", *FAST_FIT, "--method", "mc_dropout", "--dropout-p", "0.3",
                          "--early-stopping", "on"], capsys)
    assert rc == 0 and seen["dropout_p"] == 0.3 and seen["early_stopping"] is True
    rc, _, err = run_cli(["fit", f, "--target", "target", "--dropout-p", "1.5"], capsys)
    assert rc == 1 and "dropout_p must be in (0, 1)" in err


@pytest.mark.single_backend
def test_score_refuses_bad_files_and_models_in_one_line(tmp_path, capsys):
    """`bayesgrad score`'s checks before any scoring: the pool's format and existence, the --out format,
    the model file, a regression model (acquisition needs class probabilities), a batch larger than the pool."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 3))
    pool = write(tmp_path / "pool.csv", "a,b,c\n" + "\n".join(",".join(f"{v:.4f}" for v in r) for r in X) + "\n")
    clf = bg.dropout.MCDropout(bg.nn.MLP([3, 4, 2]), likelihood="categorical").fit(X, (X[:, 0] > 0).astype(int),
                                                                                  epochs=2, verbose=0)
    clf.save(tmp_path / "clf.npz")
    bg.vi.MFVI(bg.nn.MLP([3, 4, 1])).fit(X, X[:, 0], epochs=2, verbose=0).save(tmp_path / "reg.npz")
    write(tmp_path / "junk.npz", "not a model")
    cases = [
        ([tmp_path / "pool.txt", "--model", tmp_path / "clf.npz"], "unknown pool format"),
        ([tmp_path / "none.csv", "--model", tmp_path / "clf.npz"], "none.csv: no such file or directory"),
        ([pool, "--model", tmp_path / "clf.npz", "--out", tmp_path / "s.json"], "give a .csv or .parquet file"),
        ([pool, "--model", tmp_path / "junk.npz"], "junk.npz"),
        ([pool, "--model", tmp_path / "reg.npz"], "acquisition needs a classifier"),
        ([pool, "--model", tmp_path / "clf.npz", "--batch-size", "31"], "exceeds the pool's 30 rows"),
    ]
    for argv, msg in cases:
        rc, out, err = run_cli(["score", *argv], capsys)
        assert rc == 1 and len(err.strip().splitlines()) == 1 and msg in err, (argv, err)
    rc, out, err = run_cli(["score", pool, "--model", tmp_path / "clf.npz", "--batch-size", "3"], capsys)
    assert rc == 0 and out.splitlines()[0] == "rank,row,score" and len(out.splitlines()) == 4
