"""The README's Python examples run as written, so that a renamed function or argument cannot leave
them wrong. They leave their data to the reader (X, y, X_test, ...): each block runs in a fresh
namespace holding small synthetic stand-ins of the shapes the README implies, in a temporary folder
(the examples write files). Two lines are left out, each for a stated reason (EXCLUDED)."""
import pathlib
import re

import numpy as np
import pytest

import bayesgrad as bg

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)

# lines not run here: a remote scheduler (the README says "or none"; no network in tests) and PyTorch,
# which is not a dependency (tests/test_interop.py tests from_torch where PyTorch is installed)
EXCLUDED = ('client = Client("tcp://scheduler:8786")', "bg.nn.MLP.from_torch(torch_sequential)")

N, D, C = 96, 13, 3


def _rng(k):
    return np.random.default_rng(k)


def _regression():
    X = _rng(0).standard_normal((N, D))
    y = X @ _rng(1).standard_normal(D) / 4 + 0.1 * _rng(2).standard_normal(N)
    return X, y


def _labels(X, c=C):
    return (X[:, :c] + 0.3 * _rng(3).standard_normal((len(X), c))).argmax(1)


def _fit_dropout(X, y, previous=None, c=C):
    q = previous or bg.dropout.MCDropout(bg.nn.MLP([X.shape[1], 16, c]), p=0.1, likelihood="categorical")
    return q.fit(X, y, epochs=5, verbose=0, seed=0)


def _common():
    X, y = _regression()
    X_test = _rng(4).standard_normal((24, D))
    return {"np": np, "bg": bg, "X": X, "y": y, "X_test": X_test, "labels": _labels(X)}


def _estimators():
    ns = _common()
    ns.update(log_density=lambda z: -0.5 * (z * z).sum(-1), grad=lambda z: -z)
    return ns


def _posteriors():
    ns = _common()
    X = ns["X"]
    ns.update(W=_rng(5).standard_normal((C, 8)), b=np.zeros(C), w=_rng(6).uniform(0.5, 2.0, N),
              g_out=_rng(7).standard_normal((N, 1)), V=_rng(8).standard_normal(X.shape),
              g_dot=_rng(9).standard_normal((N, 1)))
    return ns


def _uncertainty():
    ns = _common()
    X, labels, X_test = ns["X"], ns["labels"], ns["X_test"]
    m = _fit_dropout(X, labels)
    pred = m.predict(X_test, n_samples=20)
    X_pool = _rng(10).standard_normal((200, D))
    val = m.predict(X, n_samples=20).probs
    ns.update(pred=pred, y_test=_labels(X_test), is_ood=np.arange(len(X_test)) % 2 == 0,
              pool_log_probs=m.predict(X_pool[:60], n_samples=20).log_probs, train_features=X,
              train_labels=labels, fit=lambda X, y, prev: _fit_dropout(X, y, prev, 10), X_pool=X_pool,
              y_pool=_labels(X_pool, 10),
              idx0=np.arange(12), probs_cal=val, y_cal=labels, probs_test=pred.probs,
              mean_cal=ns["y"], std_cal=np.full(N, 0.5), mean_test=np.zeros(24), std_test=np.ones(24),
              logits_val=np.log(val), y_val=labels)
    return ns


def _pools(tmp_path):
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("distributed")
    ns = _common()
    X_pool = _rng(11).standard_normal((300, D))
    zarr.save_array(str(tmp_path / "pool.zarr"), X_pool)
    labels10 = _labels(X_pool, 10)
    X, y = ns["X"], ns["y"]
    mfvi = bg.vi.MFVI(bg.nn.MLP([D, 8, 1]), likelihood="gaussian").fit(X, y, epochs=3, seed=0, verbose=0)
    ns.update(posterior=_fit_dropout(X_pool, labels10, c=10), fit=lambda X, y, prev: _fit_dropout(X, y, prev, 10),
              oracle=labels10, idx0=np.arange(20), values=_rng(12).standard_normal(1000), mfvi=mfvi,
              X_big=X, y_big=y)
    return ns


def _sklearn():
    pytest.importorskip("sklearn")
    ns = _common()
    ns.update(X_cal=ns["X"][:40], y_cal=ns["y"][:40], labels_cal=ns["labels"][:40])
    return ns


# each block by a line of its own, with the names it leaves to the reader; block 6 continues block 5
NAMESPACES = {
    "bg.random.normal((1000, 3)": lambda tmp: {"np": np, "bg": bg},
    "bg.estimators.pathwise(f, d": lambda tmp: _estimators(),
    "bg.vi.MFVI(mlp, likelihood=": lambda tmp: _posteriors(),
    "bg.uncertainty.decompose(": lambda tmp: _uncertainty(),
    "bg.pools.from_zarr(": _pools,
    "from bayesgrad.sklearn import": lambda tmp: _sklearn(),
}


def _namespace(block, tmp_path):
    for key, make in NAMESPACES.items():
        if key in block:
            return make(tmp_path)
    raise AssertionError(f"README block without a namespace here (add its names to NAMESPACES):\n{block[:200]}")


def _runnable(block):
    lines = [line for line in block.splitlines() if not any(x in line for x in EXCLUDED)]
    return "\n".join(lines)


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_block_runs(i, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    block = BLOCKS[i]
    if "reg.conformalize(" in block and "from bayesgrad.sklearn" not in block:
        # the conformal lines continue the scikit-learn block's reg and clf
        prev = next(b for b in BLOCKS[:i][::-1] if "from bayesgrad.sklearn import" in b)
        ns = _namespace(prev, tmp_path)
        exec(compile(_runnable(prev), f"README block {i - 1}", "exec"), ns)
    else:
        ns = _namespace(block, tmp_path)
    exec(compile(_runnable(block), f"README block {i}", "exec"), ns)


def test_every_excluded_line_is_in_the_readme():
    # an exclusion whose line left the README would hide nothing, silently: keep the list true
    text = "\n".join(BLOCKS)
    assert all(x in text for x in EXCLUDED)
