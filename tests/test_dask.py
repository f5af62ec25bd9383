"""Pools on Dask (bg.pools): a distributed.LocalCluster of 2 worker processes on the
loopback interface, started once for the module; equality with the in-memory
acquisition, independence of chunking and worker count, a worker killed mid-run,
exact sums, Zarr / Parquet / CSV pools and ``bayesgrad score``."""
import os
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction

import numpy as np
import pytest
from scipy import special

import bayesgrad as bg

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

A = bg.acquisition
P = bg.pools


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None, silence_logs=40)
    c = distributed.Client(cluster, set_as_default=False)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


@pytest.fixture(scope="module")
def problem():
    """An MC-dropout classifier with 8 inputs and 4 classes, and a pool of 2000 points."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 8))
    w = rng.normal(size=(8, 4))
    y = np.argmax(X @ w + rng.gumbel(size=(2000, 4)), axis=1)
    q = bg.dropout.MCDropout(bg.nn.MLP([8, 24, 4]), p=0.3, likelihood="categorical", lr=1e-2)
    q.fit(X[:200], y[:200], epochs=15, verbose=0)
    return X, y, q


def _reference(lp, acq, k, seed, M):
    if acq in A.METHODS:
        return getattr(A, acq)(lp, k)
    if acq == "batchbald":
        return A.batchbald(lp, k, 200, seed=seed, max_candidates=M)
    if acq == "random":
        return A.random(lp, k, seed=seed)
    return A.stochastic_batch(lp, k, "bald", acq, 2.0, seed=seed)


@pytest.mark.parametrize("acq", ["bald", "margin", "batchbald", "random", "power", "softrank"])
def test_cluster_equals_in_memory(client, problem, acq):
    """Inputs on the cluster (predictive per block) give the in-memory picks and columns exactly."""
    X, _, q = problem
    # the pool's own forward (row tiles aligned to the pool's index); the predictive's
    # forward tiles its rows differently, so it agrees to rounding (BLAS kernels)
    lp = P.networks(q, 16, seed=7).log_probs(X)
    np.testing.assert_allclose(lp, q.predict(X, 16, seed=7).log_probs, rtol=0, atol=1e-12)
    ref = _reference(lp, acq, 6, 7, 150)
    res = P.score_pool(da.from_array(X, chunks=(333, 8)), acq, 6, model=q, n_samples=16, seed=7, beta=2.0,
                       n_configs=200, max_candidates=150, columns=A.METHODS, scheduler=client)
    np.testing.assert_array_equal(res.indices, ref.indices)
    np.testing.assert_array_equal(res.scores, ref.scores)
    for m in A.METHODS:
        np.testing.assert_array_equal(res.columns[m], A.scores(lp, m))
    if acq == "batchbald":
        assert res.info["n_candidates"] == 150 and res.info["n_blocks"] == 7


@pytest.mark.single_backend
def test_independent_of_chunking_and_workers(client, problem):
    """One seed, any chunking, 2 workers, 1 worker, threads or in process: identical
    picks, scores and columns (bit for bit)."""
    X, _, q = problem
    net = P.networks(q, 16, seed=3)
    lp = net.log_probs(X)
    one = [w for w in client.scheduler_info()["workers"]][:1]
    runs = []
    for chunks, sched in [(2000, "synchronous"), (97, client), (500, client), (211, "threads")]:
        for pool, model in [(da.from_array(X, chunks=(chunks, 8)), net),
                            (da.from_array(lp, chunks=(16, chunks, 4)), None)]:
            runs.append(P.score_pool(pool, "batchbald", 5, model=model, seed=3, n_configs=200, max_candidates=120,
                                     columns=("bald", "variation_ratios"), scheduler=sched))
    with dask.annotate(workers=one, allow_other_workers=False):  # every block on one worker
        runs.append(P.score_pool(da.from_array(X, chunks=(400, 8)), "batchbald", 5, model=net, seed=3,
                                 n_configs=200, max_candidates=120, columns=("bald", "variation_ratios"),
                                 scheduler=client))
    runs.append(P.score_pool(X, "batchbald", 5, model=net, seed=3, n_configs=200, max_candidates=120,
                             columns=("bald", "variation_ratios"), chunk_size=129))
    for r in runs[1:]:
        np.testing.assert_array_equal(r.indices, runs[0].indices)
        np.testing.assert_array_equal(r.scores, runs[0].scores)
        for c in ("bald", "variation_ratios"):
            np.testing.assert_array_equal(r.columns[c], runs[0].columns[c])
    other = P.score_pool(da.from_array(X, chunks=(500, 8)), "batchbald", 5, model=net, seed=4, n_configs=200,
                         max_candidates=120, scheduler=client)
    assert not np.array_equal(other.scores, runs[0].scores)  # the seed matters (BatchBALD's sampled configs)


@pytest.mark.single_backend
def test_worker_killed_mid_computation(client, problem):
    """SIGKILL one worker while blocks are running: the nanny restarts it, Dask recomputes
    the lost tasks, and the picks are those of the in-memory computation."""
    X, _, q = problem
    lp = P.networks(q, 16, seed=1).log_probs(X)
    ref = A.bald(lp, 8)

    def slow(b):  # a local function: shipped to the workers by value
        time.sleep(0.15)
        return b

    pool = da.from_array(lp, chunks=(16, 100, 4)).map_blocks(slow, dtype=lp.dtype)
    pids = client.run(os.getpid)
    out = {}
    t = threading.Thread(target=lambda: out.update(res=P.score_pool(pool, "bald", 8, scheduler=client)))
    t.start()
    deadline = time.monotonic() + 20
    while not any(client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    victim = sorted(pids)[0]
    assert t.is_alive(), "the computation finished before a worker could be killed"
    os.kill(pids[victim], signal.SIGKILL)
    t.join(timeout=60)
    assert not t.is_alive()
    np.testing.assert_array_equal(out["res"].indices, ref.indices)
    np.testing.assert_array_equal(out["res"].scores, ref.scores)
    client.wait_for_workers(2, timeout=30)
    assert pids[victim] not in client.run(os.getpid).values()  # the killed process was replaced


@pytest.mark.single_backend
def test_weights_are_one_graph_node(problem):
    """The sampled networks are one task of the graph, whatever the number of blocks: each
    worker fetches them once."""
    X, _, q = problem
    net = P.networks(q, 16, seed=0)
    spec = P._Spec("bald", 3, (), 1.0, 0, 0, bg.get_backend())
    top, cols, n_blocks = P._graph(da.from_array(X, chunks=(100, 8)), net, spec, None, 8)
    graph = dict(top.__dask_graph__())
    holders = [k for k, v in graph.items() if _holds(v, net)]
    assert n_blocks == 20 and len(holders) == 1


def _holds(v, obj):
    if v is obj:
        return True
    if isinstance(v, (tuple, list)):
        return any(_holds(x, obj) for x in v)
    inner = getattr(v, "value", None)  # dask's DataNode / Task wrappers
    if inner is not None and inner is not v:
        return _holds(inner, obj)
    args = getattr(v, "args", None)
    return isinstance(args, (tuple, list)) and any(_holds(x, obj) for x in args)


@pytest.mark.single_backend
def test_score_pool_checks_exclude_and_options_first():
    """exclude was cast to int64 unchecked: a boolean mask excluded points 0 and 1, floats
    were truncated, out-of-range indices ignored; too few pickable points, n_configs below
    C and unknown chunk sizes surfaced only after the scoring (or as 'cannot convert float
    NaN to integer'); columns=None and a single name were iteration errors."""
    rng = np.random.default_rng(1)
    lp = special.log_softmax(rng.normal(size=(4, 30, 3)), axis=-1)
    lazy = da.from_array(lp, chunks=(4, 7, 3))
    for pool in (lp, lazy):
        with pytest.raises(TypeError, match="exclude must hold integer pool indices.*flatnonzero"):
            P.score_pool(pool, "bald", 2, exclude=np.arange(30) < 5, scheduler="synchronous")
        with pytest.raises(TypeError, match="exclude must hold integer"):
            P.score_pool(pool, "bald", 2, exclude=[1.5, 2.0], scheduler="synchronous")
        for bad in ([-1], [30], [[1, 2]]):
            with pytest.raises(ValueError, match="exclude must"):
                P.score_pool(pool, "bald", 2, exclude=bad, scheduler="synchronous")
        with pytest.raises(ValueError, match=r"exceeds the points that can be picked \(2: 28 of 30 excluded\)"):
            P.score_pool(pool, "bald", 3, exclude=np.arange(28), scheduler="synchronous")
        with pytest.raises(ValueError, match=r"n_configs \(2\) must be >= the number of classes \(3\)"):
            P.score_pool(pool, "batchbald", 2, n_configs=2, scheduler="synchronous")
    ref = P.score_pool(lp, "bald", 3, exclude=[4, 4, 9], columns=["margin"])
    res = P.score_pool(lazy, "bald", 3, exclude=np.array([9, 4], dtype=np.uint64), columns="margin",
                       scheduler="synchronous")
    np.testing.assert_array_equal(res.indices, ref.indices)
    assert list(res.columns) == ["margin"] and not {4, 9} & set(res.indices.tolist())
    assert P.score_pool(lp, "bald", 3, columns=None).columns == {}
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        P.score_pool(lazy[:, da.from_array(lp[0, :, 0], chunks=7) < -1], "bald", 1, scheduler="synchronous")
    X = da.from_array(rng.normal(size=(30, 2)), chunks=(7, 2))
    with pytest.raises(ValueError, match="X_pool has unknown chunk sizes"):  # was 'oracle must hold nan labels'
        bg.active.ActiveLearner(lambda *a: None, X[X[:, 0] > -100], np.arange(30) % 3, n_classes=3, initial=[0, 1])
    with pytest.raises(ValueError, match="acquisition needs a classifier"):  # before any block (was on the first)
        P.score_pool(np.zeros((5, 2)), "bald", 1, model=P.Networks(bg.nn.MLP([2, 3, 1]), "gaussian",
                                                                   np.zeros((2, 13)), noise=[1.0]))
    with pytest.raises(ValueError, match="noise .* is required for a gaussian"):  # was a TypeError when used
        P.Networks(bg.nn.MLP([2, 3, 1]), "gaussian", np.zeros((2, 13)))
    mlp = bg.nn.MLP([2, 3, 2])
    net = P.Networks(mlp, "categorical", np.zeros((2, mlp.n_params), dtype=np.int64))  # an error about out
    assert net.theta.dtype == np.float64 and net.log_probs(np.zeros((4, 2))).shape == (2, 4, 2)


@pytest.mark.single_backend
def test_empty_chunks_are_skipped(problem):
    """Dask keeps chunks of no rows (compute_chunk_sizes() after a filter, an empty table
    partition): their block was checked like a pool and refused ('must not be empty'), so
    score_pool, the active loop, expectation and log_likelihood failed on a valid pool."""
    X, y, q = problem
    X, y = X[:300], y[:300]
    chunks = ((100, 0, 150, 0, 50), (8,))
    net = P.networks(q, 8, seed=1)
    for acq in ("bald", "batchbald", "softrank"):
        res = P.score_pool(da.from_array(X, chunks=chunks), acq, 4, model=net, n_configs=100, columns=("bald",),
                           scheduler="synchronous")
        ref = P.score_pool(X, acq, 4, model=net, n_configs=100, columns=("bald",))
        np.testing.assert_array_equal(res.indices, ref.indices)
        np.testing.assert_array_equal(res.columns["bald"], ref.columns["bald"])
    xs = da.from_array(X, chunks=chunks)
    assert P.expectation(lambda b, e: b[:, 0], xs, scheduler="synchronous").total == P.moments(X[:, 0]).total
    np.testing.assert_array_equal(P.log_likelihood(net, xs, y, scheduler="synchronous"), P.log_likelihood(net, X, y))
    with pytest.raises(ValueError, match="X must not be empty"):  # no block at all: refused as in memory
        P.log_likelihood(net, da.from_array(X[:0], chunks=((0,), (8,))), y[:0], scheduler="synchronous")


@pytest.mark.single_backend
def test_table_pools_refuse_text_columns(tmp_path):
    """A text column was accepted and failed as 'could not convert string to float' on a
    worker when scored; a Parquet column that is missing was a KeyError; a column name
    given as a string was split into its letters."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "ab": [4, 5, 6], "name": ["a", "b", "c"]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    for read, f in ((P.from_csv, "t.csv"), (P.from_parquet, "t.parquet")):
        with pytest.raises(ValueError, match=r"columns \['name'\] are not numeric"):
            read(str(tmp_path / f))
        np.testing.assert_array_equal(read(str(tmp_path / f), "ab").compute(), [[4.0], [5.0], [6.0]])
        assert read(str(tmp_path / f), ["x", "ab"]).shape == (3, 2)
    with pytest.raises(ValueError, match=r"columns \['zz'\] are not in"):
        P.from_parquet(str(tmp_path / "t.parquet"), ["x", "zz"])
    (tmp_path / "empty.csv").write_text("x,ab\n")
    assert P.from_csv(str(tmp_path / "empty.csv")).shape == (0, 2)  # no rows: an empty pool, not a text column


# ---------------------------------------------------------------- exact sums
def _frac_moments(col):
    n = len(col)
    s1 = sum(Fraction(float(v)) for v in col)
    s2 = sum(Fraction(float(v)) ** 2 for v in col)
    return float(s1), float(s1 / n), float((s2 - s1 * s1 / n) / (n - 1))


@pytest.mark.single_backend
def test_moments_exact_and_chunk_independent(client):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3001, 2)) * 10.0 ** rng.integers(-8, 8, size=(3001, 2)) + 1e6
    m = P.moments(x)
    for j in range(2):
        tot, mean, var = _frac_moments(x[:, j])
        assert (m.total[j], m.mean[j], m.var[j]) == (tot, mean, var)
        assert m.sem[j] == np.sqrt(var / 3001)
    for chunks, sched in [(7, "synchronous"), (1000, client), (3001, "threads")]:
        md = P.moments(da.from_array(x, chunks=(chunks, 1)), scheduler=sched)
        for f in ("total", "mean", "var", "sem"):
            np.testing.assert_array_equal(getattr(md, f), getattr(m, f))
    # a naive float sum is order-dependent here; the exact one is not
    assert P.moments(x[::-1]).total.tolist() == m.total.tolist()
    m1 = P.moments(np.array([1.0, np.inf, 2.0]))
    assert m1.total == np.inf and np.isnan(m1.var)


@pytest.mark.single_backend
def test_expectation_per_point_streams(client):
    """E[(x + eps)^2] with eps ~ N(0, 1) per row: chunk-independent to the bit, and within
    5 standard errors of mean(x^2) + 1 (failure probability < 1e-6)."""
    x = np.linspace(-1, 1, 20000)

    def f(xb, eps):
        return (xb + eps[:, 0]) ** 2

    ref = P.expectation(f, x, n_noise=1, seed=11)
    for chunks, sched in [(999, client), (4096, "synchronous")]:
        m = P.expectation(f, da.from_array(x, chunks=chunks), n_noise=1, seed=11, scheduler=sched)
        assert (m.mean, m.var, m.n) == (ref.mean, ref.var, ref.n)
    assert abs(ref.mean - (np.mean(x ** 2) + 1)) < 5 * ref.sem
    assert P.expectation(f, x, n_noise=1, seed=12).mean != ref.mean


def test_log_likelihood_and_elbo(client, problem):
    X, y, _ = problem
    q = bg.vi.MFVI(bg.nn.MLP([8, 16, 4]), "categorical", lr=1e-2).fit(X[:300], y[:300], epochs=5, verbose=0)
    net = P.networks(q, 8, seed=2)
    ref = -bg.nn.MLP([8, 16, 4]).nll(net.theta, X, y, "categorical")
    ll = P.log_likelihood(q, X, y, n_samples=8, seed=2)
    np.testing.assert_allclose(ll, ref, rtol=1e-11 if net.theta.dtype == np.float64 else 1e-5)
    lld = P.log_likelihood(q, da.from_array(X, chunks=(301, 8)), da.from_array(y, chunks=77), n_samples=8, seed=2,
                           scheduler=client)
    np.testing.assert_array_equal(lld, ll)
    e = P.elbo(q, da.from_array(X, chunks=(500, 8)), y, n_samples=8, seed=2, scheduler="synchronous")
    assert e["expected_loglik"] == pytest.approx(float(np.mean(ll)), rel=1e-15)
    assert e["kl"] == pytest.approx(q.elbo(X[:10], y[:10])["kl"], rel=1e-9)
    assert e["elbo"] == e["expected_loglik"] - e["kl"]


@pytest.mark.single_backend
def test_sums_module_imports_on_its_own():
    """A fresh worker unpickles moments' block function by importing bayesgrad._pool_sums
    before bayesgrad.pools: that failed on the circular import (pools imports it at its
    end), and moments / expectation / log_likelihood on a new cluster hung."""
    root = os.path.dirname(os.path.dirname(bg.__file__))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", "import bayesgrad._pool_sums as s; s._block_moments"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


@pytest.mark.single_backend
def test_moments_of_empty_and_huge_values():
    """Empty arrays have n = 0 (was a reshape error); values >= 2^500 are summed and squared
    exactly (were IEEE sums: a total of inf for 1e308 + 1e308 - 1e308, a variance of nan)."""
    for x in (np.zeros(0), np.zeros((0, 3)), da.zeros((0, 3), chunks=(1, 3))):
        m = P.moments(x, scheduler="synchronous")
        assert m.n == 0 and np.all(m.total == 0) and np.all(np.isnan(m.mean))
    for x, total, mean, var in [([1e308, 1e308, -1e308], 1e308, 1e308 / 3, np.inf),
                                ([2.0 ** 1023, 2.0 ** 1023], np.inf, 2.0 ** 1023, 0.0),
                                ([2.0 ** 600, 1.0], 2.0 ** 600 + 1, 2.0 ** 599, np.inf),
                                ([2.0 ** 510, -2.0 ** 510, 0.0], 0.0, 0.0, 2.0 ** 1020)]:
        for arr in (np.array(x), da.from_array(np.array(x), chunks=1)):
            m = P.moments(arr, scheduler="synchronous")
            assert (m.total, m.mean, m.var) == (total, mean, var), x
    m = P.moments(np.array([1e308, 1e308, -np.inf]))  # an infinity outweighs the finite sum (was nan)
    assert m.total == -np.inf and np.isnan(m.var)


@pytest.mark.single_backend
def test_sums_check_their_arguments_before_the_work(problem):
    """split_every=1 hung (the tree never shrank), 0 and -1 failed inside; a Dask pool's
    bad data surfaced as dask or NumPy errors that named nothing, or not at all (NaN data
    was refused in memory only; a shape that f varies by block was merged silently)."""
    X, y, q = problem
    x = da.from_array(np.arange(20.0).reshape(10, 2), chunks=(3, 2))
    for bad in (1, 0, -1):
        with pytest.raises(ValueError, match="split_every"):
            P.moments(x, split_every=bad, scheduler="synchronous")
        with pytest.raises(ValueError, match="split_every"):
            P.expectation(lambda b, e: b[:, 0], x, split_every=bad, scheduler="synchronous")
        with pytest.raises(ValueError, match="split_every"):
            P.log_likelihood(q, X[:10], y[:10], n_samples=2, split_every=bad, scheduler="synchronous")
    with pytest.raises(ValueError, match="data must be finite"):  # as the NumPy path says
        P.expectation(lambda b, e: b[:, 0], da.from_array(np.array([[1.0], [np.nan]]), chunks=1),
                      scheduler="synchronous")
    with pytest.raises(ValueError, match="data must have at least one row"):
        P.expectation(lambda b, e: b[:, 0], da.zeros((0, 2)), scheduler="synchronous")
    with pytest.raises(ValueError, match="same K, for every block"):
        P.expectation(lambda b, e: np.ones((len(b), 1 + int(b[0, 0] > 5))), x, scheduler="synchronous")
    with pytest.raises(ValueError, match="same K, for every block"):
        P.expectation(lambda b, e: np.ones(len(b)) if b[0, 0] > 5 else np.ones((len(b), 1)), x,
                      scheduler="synchronous")
    seen = []
    P.expectation(lambda b, e: seen.append(b.dtype) or b[:, 0], x.astype(np.int64), scheduler="synchronous")
    assert set(seen) == {np.dtype(np.float64)}  # f sees float data, as in memory
    with pytest.raises(ValueError, match="X must have 2 dimensions"):
        P.log_likelihood(q, da.from_array(X[:, 0]), y, n_samples=2, scheduler="synchronous")
    with pytest.raises(ValueError, match="y must have one target per row of X"):
        P.log_likelihood(q, da.from_array(X, chunks=(500, 8)), y[:-1], n_samples=2, scheduler="synchronous")
    lazy = da.from_array(X, chunks=(500, 8))
    unknown = lazy[da.from_array(X[:, 0], chunks=500) > 0]  # chunk sizes NaN
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        P.log_likelihood(q, unknown, y[X[:, 0] > 0], n_samples=2, scheduler="synchronous")
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        P.expectation(lambda b, e: b[:, 0], unknown, scheduler="synchronous")


# ---------------------------------------------------------------- the loop on Dask
@pytest.mark.single_backend
@pytest.mark.parametrize("acq", ["batchbald", "power"])
def test_active_loop_on_dask_pool(client, acq):
    d = bg.datasets.three_class_2d(n=300, seed=0)

    def fit(X, y, previous):
        q = bg.dropout.MCDropout(bg.nn.MLP([2, 16, 3]), p=0.2, likelihood="categorical", lr=1e-2)
        return q.fit(X, y, epochs=10, verbose=0)

    runs = []
    for pool, sched in [(d.X, None), (da.from_array(d.X, chunks=(70, 2)), client)]:
        al = bg.active.ActiveLearner(fit, pool, d.y, n_classes=3, initial=np.arange(6), acquisition=acq, batch_size=4,
                                     n_samples=10, n_configs=100, max_candidates=50, scheduler=sched, seed=2)
        al.run(2)
        runs.append(al)
    np.testing.assert_array_equal(runs[0].labelled, runs[1].labelled)
    assert np.intersect1d(runs[1].labelled[:6], runs[1].labelled[6:]).size == 0


# ---------------------------------------------------------------- files and the command line
@pytest.mark.single_backend
def test_zarr_parquet_csv_pools_and_score_command(client, problem, tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    pytest.importorskip("zarr")
    X, _, q = problem
    X = X[:700]
    q.save(tmp_path / "m.npz")
    cols = [f"x{i}" for i in range(8)]
    pd.DataFrame(X, columns=cols).assign(id=np.arange(700)).to_csv(tmp_path / "pool.csv", index=False)
    pd.DataFrame(X, columns=cols).assign(id=np.arange(700)).to_parquet(tmp_path / "pool.parquet")
    da.from_array(X, chunks=(128, 8)).to_zarr(str(tmp_path / "pool.zarr"))
    ref = P.score_pool(X, "batchbald", 4, model=q, n_samples=20, n_configs=300, max_candidates=100,
                       columns=A.METHODS)
    for pool in (P.from_zarr(str(tmp_path / "pool.zarr"), chunk_size=150),
                 P.from_parquet(str(tmp_path / "pool.parquet"), cols, chunk_size=150),
                 P.from_csv(str(tmp_path / "pool.csv"), cols, chunk_size=150)):
        r = P.score_pool(pool, "batchbald", 4, model=q, n_samples=20, n_configs=300, max_candidates=100,
                         scheduler=client)
        np.testing.assert_array_equal(r.indices, ref.indices)
    from bayesgrad import cli

    feats = ",".join(cols)
    for name, extra in [("pool.csv", ["--features", feats]), ("pool.parquet", ["--features", feats]),
                        ("pool.zarr", ["--scheduler", client.scheduler.address])]:
        out = tmp_path / f"scores_{name}.parquet"
        rc = cli.main(["score", str(tmp_path / name), "--model", str(tmp_path / "m.npz"), "--batch-size", "4",
                       "--samples", "20", "--n-configs", "300", "--max-candidates", "100", "--chunk-size", "150",
                       "--out", str(out), *extra])
        assert rc == 0
        printed = capsys.readouterr().out.strip().splitlines()
        assert printed[0] == "rank,row,score"
        assert [int(line.split(",")[1]) for line in printed[1:]] == ref.indices.tolist()
        table = pd.read_parquet(out)
        np.testing.assert_array_equal(table["bald"].to_numpy(), ref.columns["bald"])
        assert table.loc[table.picked > 0].sort_values("picked")["row"].tolist() == ref.indices.tolist()
    rc = cli.main(["score", str(tmp_path / "pool.csv"), "--model", str(tmp_path / "m.npz")])
    assert rc == 1 and "takes 8 inputs" in capsys.readouterr().err  # the id column makes 9: a usage error
    rc = cli.main(["score", str(tmp_path / "nope.zarr"), "--model", str(tmp_path / "m.npz")])
    assert rc == 1 and "no such file" in capsys.readouterr().err
    rc = cli.main(["score", str(tmp_path / "pool.csv"), "--model", str(tmp_path / "m.npz"), "--features", feats,
                   "--component", "X"])
    assert rc == 1 and "--component names an array inside a Zarr group" in capsys.readouterr().err  # was ignored
    # CSV outputs: the per-point columns and the picks
    rc = cli.main(["score", str(tmp_path / "pool.csv"), "--model", str(tmp_path / "m.npz"), "--features", feats,
                   "--batch-size", "4", "--samples", "20", "--n-configs", "300", "--max-candidates", "100",
                   "--out", str(tmp_path / "s.csv"), "--picks", str(tmp_path / "p.csv")])
    assert rc == 0 and capsys.readouterr().out == ""
    table = pd.read_csv(tmp_path / "s.csv")
    np.testing.assert_allclose(table["bald"].to_numpy(), ref.columns["bald"], rtol=1e-8)  # "%.9g"
    assert pd.read_csv(tmp_path / "p.csv")["row"].tolist() == ref.indices.tolist()


def test_elbo_scale_mixture_kl_is_the_monte_carlo_kl(problem):
    """The scale-mixture prior's KL is an MC mean of log q - log p over the ELBO's weight samples: with both
    components equal (the mixture a Gaussian) its mean is the closed-form Gaussian KL; over 4000 samples of a
    few hundred weights the estimate's standard error is ~0.2 nats, checked at 6 of them (false alarm < 1e-8)."""
    X, y, _ = problem
    q = bg.vi.MFVI(bg.nn.MLP([8, 6, 4]), "categorical", prior="scale_mixture", mixture=(0.3, 1.5, 1.5),
                   lr=1e-2).fit(X[:200], y[:200], epochs=3, verbose=0)
    mu, sig = q.mu_.astype(np.float64), q.sigma_.astype(np.float64)
    closed = float(np.sum(np.log(1.5 / sig) + (sig ** 2 + mu ** 2) / (2 * 1.5 ** 2) - 0.5))
    t = P.networks(q, 4000, seed=3).theta.astype(np.float64)
    terms = (-0.5 * ((t - mu) / sig) ** 2 - np.log(sig)).sum(1) - (-0.5 * (t / 1.5) ** 2 - np.log(1.5)).sum(1)
    se = terms.std(ddof=1) / np.sqrt(len(terms))
    e = P.elbo(q, X[:50], y[:50], n_samples=4000, seed=3, scheduler="synchronous")
    assert e["kl"] == pytest.approx(float(terms.mean()), rel=1e-9)
    assert abs(e["kl"] - closed) < 6 * se
