import itertools
import math

import numpy as np
import pytest
from scipy import special

import bayesgrad as bg

from helpers import BACKENDS, on_simd_path

A = bg.acquisition


def pool_lp(rng, S=12, N=200, C=4, scale=2.0, dtype=np.float64):
    return special.log_softmax(rng.normal(size=(S, N, C)) * scale, axis=-1).astype(dtype)


def ref_scores(lp):
    p = np.exp(lp.astype(np.float64))
    S, N, C = p.shape
    pm = p.mean(0)
    h = -np.sum(pm * np.log(pm), -1)
    a = -np.mean(np.sum(p * lp, -1), 0)
    am = lp.argmax(-1)
    vr = np.array([1 - np.bincount(am[:, n], minlength=C).max() / S for n in range(N)])
    ms = p.std(0).mean(-1)
    top = np.sort(pm, -1)
    return {"bald": h - a, "max_entropy": h, "variation_ratios": vr, "mean_std": ms,
            "margin": 1 - (top[:, -1] - top[:, -2])}


@pytest.mark.parametrize("method", A.METHODS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_single_point_scores_and_top_k(rng, method, dtype):
    lp = pool_lp(rng, dtype=dtype)
    ref = ref_scores(lp)[method]
    tol = 1e-12 if dtype == np.float64 else 3e-6
    np.testing.assert_allclose(A.scores(lp, method), ref, atol=tol)
    sel = getattr(A, method)(lp, batch_size=7)
    assert sel.indices.shape == (7,) and sel.scores.dtype == dtype
    np.testing.assert_allclose(sel.scores, ref[sel.indices], atol=tol)
    # the selection is the top 7 (up to rounding at the boundary)
    assert sel.scores.min() >= np.sort(ref)[-7] - 2 * tol
    assert np.all(np.diff(sel.scores) <= 0)
    assert len(set(sel.indices.tolist())) == 7


def test_variation_ratios_ties_and_classes():
    # 4 samples: argmax 0, 0, 1, 2 -> mode count 2 -> 1 - 2/4
    lp = np.log(np.array([[[0.6, 0.3, 0.1]], [[0.5, 0.4, 0.1]], [[0.2, 0.7, 0.1]], [[0.1, 0.2, 0.7]]]))
    assert A.scores(lp, "variation_ratios")[0] == pytest.approx(0.5)
    # margin of the mean (0.35, 0.4, 0.25): 1 - (0.4 - 0.35)
    assert A.scores(lp, "margin")[0] == pytest.approx(0.95)


def test_ties_go_to_lower_index():
    lp = np.log(np.full((3, 6, 2), 0.5))
    assert A.max_entropy(lp, 3).indices.tolist() == [0, 1, 2]


def test_batchbald_batch_size_one_is_bald_top(rng):
    lp = pool_lp(rng, N=150)
    bb = A.batchbald(lp, batch_size=1)
    b = A.bald(lp, batch_size=1)
    assert bb.indices[0] == b.indices[0]
    assert bb.scores[0] == pytest.approx(b.scores[0], abs=1e-12)


def brute_joint_entropy(lp, idx):
    p = np.exp(lp[:, idx, :].astype(np.float64))  # (S, K, C)
    S, K, C = p.shape
    h = 0.0
    for ys in itertools.product(range(C), repeat=K):
        q = np.mean(np.prod(p[:, np.arange(K), ys], axis=1))
        h -= q * math.log(q)
    return h


def test_exact_joint_entropy_brute_force(rng):
    lp = pool_lp(rng, S=7, N=10, C=3)
    idx = [2, 5, 7, 1]
    assert A.joint_entropy(lp, idx) == pytest.approx(brute_joint_entropy(lp, idx), abs=1e-12)
    # one point: the predictive entropy
    h = A.scores(lp, "max_entropy")
    assert A.joint_entropy(lp, [4]) == pytest.approx(h[4], abs=1e-12)


def test_sampled_joint_entropy_agrees_with_exact(rng):
    lp = pool_lp(rng, S=10, N=8, C=3, scale=1.0)
    idx = np.array([0, 1, 2, 3, 4])  # 3^4 = 81 configurations of the first four points
    exact = A.joint_entropy(lp, idx)
    est = np.array([A.joint_entropy(lp, idx, n_configs=20, seed=1, stream=r) for r in range(24)])
    # The importance-weighted estimator is unbiased for the entropy; with
    # 24 independent replicates the mean's t-statistic exceeds 5 with
    # probability < 1e-4.
    se = est.std(ddof=1) / math.sqrt(len(est))
    assert se > 0
    assert abs(est.mean() - exact) < 5 * se
    # and the replicates are individually within a few percent
    assert np.all(np.abs(est - exact) < 0.1 * exact)


def test_batchbald_avoids_duplicates_where_bald_does_not():
    # 4 posterior samples, 2 classes. Point A splits the samples {0,1} | {2,3};
    # it is repeated three times. Point B splits {0,2} | {1,3}, slightly less
    # confidently (lower BALD). Knowing y_A makes a copy of A uninformative,
    # while B still halves the remaining uncertainty.
    a = np.array([[0.99, 0.01], [0.99, 0.01], [0.01, 0.99], [0.01, 0.99]])
    b = np.array([[0.97, 0.03], [0.03, 0.97], [0.97, 0.03], [0.03, 0.97]])
    noise = np.full((4, 2), 0.5)
    p = np.stack([a, noise, a, b, a, noise], axis=1)
    lp = np.log(p)
    bald = A.bald(lp, batch_size=2)
    assert set(bald.indices.tolist()) <= {0, 2, 4}        # two copies of A
    bb = A.batchbald(lp, batch_size=2)
    assert bb.indices.tolist() == [0, 3]                   # A, then B
    assert bb.scores[1] > bb.scores[0] + 0.5               # ~log 4 vs ~log 2


@pytest.mark.parametrize("n_configs", [1000, 16])   # exact throughout / sampled from step 3
def test_batchbald_scores_match_direct_computation(rng, n_configs):
    lp = pool_lp(rng, S=8, N=30, C=3)
    sel = A.batchbald(lp, batch_size=4, n_configs=n_configs, seed=3)
    cond = -np.mean(np.sum(np.exp(lp) * lp, -1), 0)
    for j in range(4):
        idx = sel.indices[:j + 1]
        if sel.info["exact"][j]:
            h = brute_joint_entropy(lp, idx)
            assert sel.scores[j] == pytest.approx(h - cond[idx].sum(), abs=1e-10)
    assert sel.info["exact"] == [True, True, n_configs >= 9, n_configs >= 27]
    assert len(set(sel.indices.tolist())) == 4


def chunks_of(lp, sizes):
    start = 0
    for n in sizes:
        yield lp[:, start:start + n]
        start += n


@pytest.mark.parametrize("method", ["bald", "margin"])
def test_streaming_equals_in_memory(rng, method):
    lp = pool_lp(rng, N=257)
    mem = getattr(A, method)(lp, batch_size=9)
    gen = getattr(A, method)(chunks_of(lp, [100, 57, 100]), batch_size=9)
    fn = getattr(A, method)(lambda a, b: lp[:, a:b], batch_size=9, pool_size=257, chunk_size=31)
    for s in (gen, fn):
        np.testing.assert_array_equal(s.indices, mem.indices)
        np.testing.assert_array_equal(s.scores, mem.scores)


def test_batchbald_streaming_equals_in_memory(rng):
    lp = pool_lp(rng, S=8, N=120, C=3)
    mem = A.batchbald(lp, batch_size=5, n_configs=30, seed=2)
    gen = A.batchbald(chunks_of(lp, [50, 50, 20]), batch_size=5, n_configs=30, seed=2)
    np.testing.assert_array_equal(gen.indices, mem.indices)
    np.testing.assert_allclose(gen.scores, mem.scores, rtol=1e-12)
    # pre-filtered to the top-40 BALD points, streamed or not
    m1 = A.batchbald(lp, batch_size=5, n_configs=30, seed=2, max_candidates=40)
    m2 = A.batchbald(lambda a, b: lp[:, a:b], batch_size=5, n_configs=30, seed=2, max_candidates=40,
                     pool_size=120, chunk_size=16)
    np.testing.assert_array_equal(m1.indices, m2.indices)
    top40 = set(A.bald(lp, 40).indices.tolist())
    assert set(m1.indices.tolist()) <= top40


def test_random_selection(rng):
    lp = pool_lp(rng, N=50)
    r1 = A.random(lp, batch_size=10, seed=4)
    r2 = A.random(pool_size=50, batch_size=10, seed=4, chunk_size=7)
    np.testing.assert_array_equal(r1.indices, r2.indices)
    assert len(set(r1.indices.tolist())) == 10 and r1.indices.max() < 50
    assert not np.array_equal(A.random(pool_size=50, batch_size=10, seed=5).indices, r1.indices)
    # each point is chosen with probability k/N: over 400 seeds the count of
    # point 0 is Binomial(400, 0.2) (sd 8); |count - 80| < 40 fails w.p. < 1e-6
    hits = sum(0 in A.random(pool_size=50, batch_size=10, seed=s).indices for s in range(400))
    assert abs(hits - 80) < 40


def test_acquisition_bad_input(rng):
    lp = pool_lp(rng, N=20)
    with pytest.raises(ValueError, match="batch_size"):
        A.bald(lp, batch_size=21)
    with pytest.raises(ValueError, match="batch_size"):
        A.batchbald(lp, batch_size=21)
    with pytest.raises(ValueError, match="batch_size"):
        A.bald(lp, batch_size=0)
    with pytest.raises(ValueError, match="normalised"):
        A.bald(lp + 1.0)
    with pytest.raises(ValueError, match="normalised"):
        A.batchbald(lp * 2)
    with pytest.raises(ValueError, match="method"):
        A.scores(lp, "entropy_of_doom")
    with pytest.raises(ValueError, match="share S and C"):
        A.bald([lp[:, :10], lp[:6, 10:]])
    with pytest.raises(ValueError, match="pool_size"):
        A.bald(lambda a, b: lp[:, a:b])
    with pytest.raises(ValueError, match="returned"):
        A.bald(lambda a, b: lp[:, :1], pool_size=20, chunk_size=5)
    with pytest.raises(ValueError, match="n_configs"):
        A.batchbald(lp, batch_size=2, n_configs=3)
    with pytest.raises(ValueError, match="max_candidates"):
        A.batchbald(lp, batch_size=5, max_candidates=3)
    with pytest.raises(ValueError, match="empty"):
        A.bald(iter([]))
    with pytest.raises(TypeError, match="pool must be"):
        A.bald(3.5)
    with pytest.raises(ValueError, match="3 dimension"):
        A.bald(lp[0])
    with pytest.raises(ValueError, match="indices"):
        A.joint_entropy(lp, [0, 25])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mean_std_when_samples_nearly_agree(dtype):
    # E[p^2] - E[p]^2 cancelled: a float32 spread of 1e-4 scored 0, identical samples 1.5e-4, and
    # float64 had a 1e-8 noise floor; the sums are now shifted by a sample and kept in float64
    eps = 1e-4 if dtype == np.float32 else 1e-9
    p = np.array([[[0.5, 0.5], [0.3, 0.7]], [[0.5 + eps, 0.5 - eps], [0.3, 0.7]]])
    lp = np.log(p).astype(dtype)
    got = A.scores(lp, "mean_std")
    ref = np.exp(lp.astype(np.float64)).std(axis=0).mean(axis=-1)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=2 * np.finfo(dtype).eps)
    assert got[0] > 0.9 * eps / 2 and got[1] == 0
    same = np.log(np.tile([0.3, 0.7], (8, 1, 1))).astype(dtype)
    assert A.scores(same, "mean_std")[0] == 0
    # several chunks of several row blocks each (the first sample's exps kept per block)
    big = pool_lp(np.random.default_rng(3), S=3, N=100_000, C=3, dtype=dtype)
    ref = np.exp(big.astype(np.float64)).std(axis=0).mean(axis=-1)
    tol = 1e-12 if dtype == np.float64 else 2e-7
    np.testing.assert_allclose(A.scores(big, "mean_std"), ref, rtol=0, atol=tol)
    if bg.get_backend() == "cpu":  # the scalar loop (libm's exp)
        np.testing.assert_allclose(on_simd_path("scalar", lambda: A.scores(big, "mean_std")), ref, rtol=0, atol=tol)


@pytest.mark.single_backend
def test_kernel_parity(rng):
    if len(BACKENDS) < 2:
        pytest.skip("only one backend available")
    from bayesgrad import _core, _numpy
    for dt, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
        lp = pool_lp(rng, S=9, N=333, C=5, dtype=dt)
        p = np.exp(lp)
        P = rng.uniform(size=(9, 17)).astype(dt)
        w = rng.uniform(size=17).astype(dt)
        outs = []
        for k in (_core, _numpy):
            o = np.empty(333, dtype=dt)
            k.acquisition.joint_entropy(p, P, w, o)
            outs.append(o)
        np.testing.assert_allclose(outs[0], outs[1], rtol=tol)
        u = bg.random.uniform((40, 4), seed=1, dtype=dt)
        outs = []
        for k in (_core, _numpy):
            o = np.empty((9, 40), dtype=dt)
            k.acquisition.batch_configs(np.ascontiguousarray(p[:, :3]), u, o)
            outs.append(o)
        np.testing.assert_allclose(outs[0], outs[1], rtol=tol)
        for kind in (0, 1, 2):
            outs = []
            for k in (_core, _numpy):
                o = np.empty(333, dtype=dt)
                k.acquisition.point_scores(lp, kind, o)
                outs.append(o)
            np.testing.assert_allclose(outs[0], outs[1], atol=tol)
        # mean std of nearly agreeing samples: both shift by the first sample and sum in float64
        near = np.log(np.array([[[0.5, 0.5]], [[0.5001, 0.4999]], [[0.49995, 0.50005]]])).astype(dt)
        outs = []
        for k in (_core, _numpy):
            o = np.empty(1, dtype=dt)
            k.acquisition.point_scores(near, 1, o)
            outs.append(o)
        np.testing.assert_allclose(outs[0], outs[1], rtol=1e-3 if dt == np.float32 else 1e-9)
    sels = []
    lp = pool_lp(rng, S=8, N=60, C=3)
    for be in ("cpu", "numpy"):
        with bg.use_backend(be):
            sels.append(A.batchbald(lp, batch_size=6, n_configs=20, seed=9))
    np.testing.assert_array_equal(sels[0].indices, sels[1].indices)
    np.testing.assert_allclose(sels[0].scores, sels[1].scores, rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_scores_do_not_depend_on_chunking(rng, dtype):
    """Every point's scores, and so the picks, are bit-identical whether the pool is one
    array, streamed in chunks of any size, or scored in blocks by bg.pools."""
    lp = pool_lp(rng, S=9, N=700, C=5, dtype=dtype)
    for method in A.METHODS:
        whole = A.scores(lp, method)
        for size in (1, 37, 128, 300):
            chunks = (lp[:, i:i + size] for i in range(0, 700, size))
            np.testing.assert_array_equal(A.scores(chunks, method), whole)
        np.testing.assert_array_equal(bg.pools.score_pool(lp, method, 5, columns=(method,), chunk_size=61)
                                      .columns[method], whole)
    ref = A.batchbald(lp, 4, 200, seed=1, max_candidates=90)
    for size in (50, 129):
        sel = A.batchbald((lp[:, i:i + size] for i in range(0, 700, size)), 4, 200, seed=1, max_candidates=90)
        np.testing.assert_array_equal(sel.indices, ref.indices)
        np.testing.assert_array_equal(sel.scores, ref.scores)


def test_greedy_stage_is_batchbald_on_the_candidates(rng):
    lp = pool_lp(rng, S=10, N=60, C=3)
    ref = A.batchbald(lp, 5, 100, seed=4)
    cond = A.score_columns(lp, ["bald"])["aleatoric"]
    sel = A.greedy_batchbald(np.exp(lp), cond, 5, 100, seed=4)
    np.testing.assert_array_equal(sel.indices, ref.indices)
    np.testing.assert_array_equal(sel.scores, ref.scores)
    with pytest.raises(ValueError, match="cond"):
        A.greedy_batchbald(np.exp(lp), cond[:5], 5, 100)


@pytest.mark.parametrize("probs, cond, batch_size, exc, match", [
    (np.full((2, 3, 2), np.nan), np.zeros(3), 1, ValueError, "probs must be finite"),  # scored [0.]
    (-np.ones((2, 3, 2)), np.zeros(3), 2, ValueError, r"probs must be probabilities in \[0, 1\]"),
    (np.full((2, 3, 2), 0.6), np.zeros(3), 1, ValueError, "probs rows .* sum to one"),
    (np.full((3, 2), 0.5), np.zeros(3), 1, ValueError, "probs must have 3 dimension"),
    (np.full((2, 3, 2), 0.5), np.zeros(3), 0, ValueError, "batch_size must be >= 1"),  # selected nothing
    (np.full((2, 3, 2), 0.5), np.full(3, np.nan), 1, ValueError, "cond must be finite"),
    ("abc", np.zeros(3), 1, TypeError, "probs"),
])
def test_greedy_batchbald_refuses_bad_input_by_name(probs, cond, batch_size, exc, match):
    with pytest.raises(exc, match=match):
        A.greedy_batchbald(probs, cond, batch_size)


def test_greedy_batchbald_accepts_float32_rounded_probabilities(rng):
    # rows of float32 probabilities sum to 1 only within float32 rounding: the tolerance is float32's
    lp = pool_lp(rng, S=6, N=30, C=7, dtype=np.float32)
    cond = A.score_columns(lp, ["bald"])["aleatoric"]
    sel = A.greedy_batchbald(np.exp(lp), cond, 3, 100, seed=4)
    ref = A.batchbald(lp, 3, 100, seed=4)
    np.testing.assert_array_equal(sel.indices, ref.indices)


@pytest.mark.single_backend
@pytest.mark.parametrize("acq", ["bald", "random", "softmax"])
def test_pool_exclusion_picks_the_best_of_the_rest(rng, acq):
    lp = pool_lp(rng, S=6, N=300, C=3)
    first = bg.pools.score_pool(lp, acq, 10, seed=2)
    rest = bg.pools.score_pool(lp, acq, 5, seed=2, exclude=first.indices[:5], chunk_size=70)
    np.testing.assert_array_equal(rest.indices, first.indices[5:])  # per-point keys: the order is kept
