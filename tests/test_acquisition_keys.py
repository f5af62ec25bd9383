"""Random keys of the stochastic acquisitions: per-point Philox uniforms and their checks."""
import numpy as np
import pytest

import bayesgrad as bg

A = bg.acquisition
R = bg.random


def _stream():
    return R.fold_in(5, "acquisition")


def test_point_uniforms_sparse_indices_are_the_stream_elements():
    # far-apart indices: each point's uniform is element index[i] of the stream, drawn on its own
    # (the range between them would need terabytes)
    idx = np.array([10 ** 13, 3, 2 ** 62 + 1, 10 ** 8, 3, 0, 2 ** 63 - 1], dtype=np.int64)
    u = A.point_uniforms(idx, 11, 5)
    ref = np.array([R.uniform(1, seed=11, stream=_stream(), offset=int(i))[0] for i in idx])
    np.testing.assert_array_equal(u, ref)


def test_point_uniforms_sparse_and_dense_paths_agree():
    rng = np.random.default_rng(0)
    idx = np.unique(rng.integers(0, 100_000, size=300))  # sparse: the per-block path
    dense = R.uniform(100_000, seed=2, stream=_stream())
    np.testing.assert_array_equal(A.point_uniforms(idx, 2, 5), dense[idx])
    np.testing.assert_array_equal(A.point_uniforms(idx[:50] // 100, 2, 5), dense[idx[:50] // 100])
    np.testing.assert_array_equal(A.point_uniforms(np.arange(7, 40), 2, 5), dense[7:40])


def test_stochastic_select_over_a_huge_index_range():
    s = np.array([0.5, 0.2, 0.9])
    idx = np.array([4, 10 ** 14, 10 ** 9])
    keys, sel = A.stochastic_select(s, 2, "softrank", 1.0, seed=3, stream=5, index=idx)
    u = np.array([R.uniform(1, seed=3, stream=_stream(), offset=int(i))[0] for i in idx])
    ref = A.stochastic_keys(np.array([2.0, 3.0, 1.0]), "softrank", 1.0, u)
    order = np.argsort(-ref)[:2]
    np.testing.assert_array_equal(sel, idx[order])
    np.testing.assert_array_equal(keys, ref[order])


@pytest.mark.parametrize("bad, exc", [(np.array([-1, 4]), ValueError), (np.array([0.5, 2.0]), TypeError)])
def test_point_uniforms_refuses_bad_index(bad, exc):
    with pytest.raises(exc, match="index"):
        A.point_uniforms(bad, 0, 0)


@pytest.mark.single_backend
def test_power_keys_of_agreeing_samples_are_the_same_on_every_backend():
    """Where the samples agree (S = 1, or S copies of one), BALD is 0 up to rounding that
    differs between backends (2.2e-16 natively, 0 in the twin); the power acquisition's
    log(BALD) made that rounding decide the picks (the native backend always took the
    point with 2.2e-16 first). BALD within rounding of the entropy is now 0, so the
    draw is uniform, and the same, on every backend."""
    from helpers import BACKENDS

    rng = np.random.default_rng(0)
    one = np.log(rng.dirichlet(np.ones(3) * 0.7, size=(1, 40)))
    for lp in (one, np.repeat(one, 3, axis=0), one.astype(np.float32)):
        picks = []
        for name in BACKENDS:
            with bg.use_backend(name):
                assert np.all(A.scores(lp, "bald") == 0)
                picks.append([A.stochastic_batch(lp, 4, "bald", "power", 1.0, seed=s).indices.tolist()
                              for s in range(5)])
                assert picks[-1] == [A.stochastic_batch(lp, 4, "bald", "power", 0.0, seed=s).indices.tolist()
                                     for s in range(5)]  # uniform, as beta = 0 draws
        assert all(p == picks[0] for p in picks)
