"""bayesgrad._scratch: reused per-thread buffers, fresh ones when a session is nested, and the
estimators that use it giving the same results when a user's f runs an estimator itself."""
import threading

import numpy as np

import bayesgrad as bg
from bayesgrad import _scratch


def test_session_reuses_memory_by_name():
    with _scratch.session() as pool:
        a = pool.array("t/a", (10, 3))
        b = pool.array("t/b", (10, 3))
        assert not np.shares_memory(a, b)
        a[...] = 1.0
    with _scratch.session() as pool:
        # `a` is still alive here: its buffer is not handed out again
        a2 = pool.array("t/a", (5, 2))
        assert not np.shares_memory(a, a2)
        np.testing.assert_array_equal(a, 1.0)
        keep = a2.__array_interface__["data"][0]
        del a, a2
        a3 = pool.array("t/a", (4, 2))  # nothing refers to the buffer any more: a prefix of it
        assert a3.__array_interface__["data"][0] == keep and a3.shape == (4, 2) and a3.flags.c_contiguous
        del a3
        big = pool.array("t/a", (100, 3), np.float32)
        assert big.shape == (100, 3) and big.dtype == np.float32


def test_nested_session_and_other_threads_get_fresh_arrays():
    with _scratch.session() as outer:
        a = outer.array("t/x", (64,))
        with _scratch.session() as inner:
            assert not np.shares_memory(a, inner.array("t/x", (64,)))
        seen = []
        th = threading.Thread(target=lambda: seen.append(_run_in_session("t/x")))
        th.start()
        th.join()
        assert not np.shares_memory(a, seen[0])


def _run_in_session(name):
    with _scratch.session() as pool:
        return pool.array(name, (64,))


def test_estimators_unchanged_when_f_runs_an_estimator():
    """REBAR and the unordered set estimator hold scratch buffers across their calls to f; an f that
    calls estimators (the same ones) inside must not disturb them: identical results."""
    E = bg.estimators
    db = bg.distributions.Bernoulli(logits=np.linspace(-1, 1, 6))
    dc = bg.distributions.Categorical(logits=np.linspace(-1, 1, 12).reshape(3, 4))

    def ft(b):
        return ((b - 0.45) ** 2).sum(-1)

    def ft_nested(b):
        E.rebar(ft, db, 50, seed=9, grad_f=lambda x: 2.0 * (x - 0.45))
        E.unordered_set(lambda X: X.sum(-1).astype(float), dc, 20, seed=9, k=3)
        return ft(b)

    res = [E.rebar(fn, db, 200, seed=1, grad_f=lambda x: 2.0 * (x - 0.45), train=False).grad["logits"]
           for fn in (ft, ft_nested)]
    np.testing.assert_array_equal(res[0], res[1])

    def fc(X):
        return (X * np.arange(3)).sum(-1).astype(float)

    def fc_nested(X):
        E.rebar(ft, db, 50, seed=9, grad_f=lambda x: 2.0 * (x - 0.45))
        E.unordered_set(fc, dc, 20, seed=9, k=3)
        return fc(X)

    res = [E.unordered_set(fn, dc, 100, seed=2, k=3).grad["logits"] for fn in (fc, fc_nested)]
    np.testing.assert_array_equal(res[0], res[1])


def test_inputs_handed_to_f_are_never_reused():
    """What f and grad_f receive is theirs to keep: a later call must not overwrite it."""
    E = bg.estimators
    db = bg.distributions.Bernoulli(logits=np.linspace(-1, 1, 6))
    kept = []

    def f(b):
        kept.append((b, b.copy()))
        return ((b - 0.45) ** 2).sum(-1)

    def grad_f(x):
        kept.append((x, x.copy()))
        return 2.0 * (x - 0.45)

    for seed in (1, 2, 3):
        E.rebar(f, db, 64, seed=seed, grad_f=grad_f)
        E.relax(f, db, 64, seed=seed, grad_f=grad_f)
    assert len(kept) >= 12
    for arr, snapshot in kept:
        np.testing.assert_array_equal(arr, snapshot)
