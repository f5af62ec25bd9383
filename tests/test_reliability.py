"""Regression tests of issue 13 (reliability): each test failed before its fix."""
import sys

import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad import _backend

from helpers import BACKENDS

TOP = 2 ** 64 - 1


# ---------------------------------------------------------------- 1. RNG offsets near 2^64

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["uniform", "normal"])
def test_rng_offset_past_2_64_is_refused(kind, dtype):
    draw = getattr(bg.random, kind)
    o = np.full(5, 7.0, dtype=dtype)
    with pytest.raises(ValueError, match="offset"):
        draw(None, seed=3, offset=2 ** 64 - 2, out=o, dtype=dtype)
    np.testing.assert_array_equal(o, 7.0)
    for off, n in ((2 ** 64, 1), (2 ** 64 - 1, 3), (2 ** 70, 2)):
        with pytest.raises(ValueError, match="offset"):
            draw(n, seed=3, offset=off, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["uniform", "normal"])
def test_rng_last_elements_below_2_64_agree(kind, dtype):
    # a draw ending exactly at element 2^64 - 1 is allowed and the same in pieces and on every backend
    draw = getattr(bg.random, kind)
    n = 200  # crosses an 8-block group boundary near the top
    whole = draw(n, seed=3, stream=5, offset=2 ** 64 - n, dtype=dtype)
    assert np.all(np.isfinite(whole))
    if kind == "uniform":
        assert np.all((whole > 0) & (whole < 1))
    tol = dict(rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)  # SIMD vs scalar normals
    last = draw(1, seed=3, stream=5, offset=TOP, dtype=dtype)
    np.testing.assert_allclose(last[0], whole[-1], **tol)
    piece = draw(7, seed=3, stream=5, offset=2 ** 64 - 150, dtype=dtype)
    np.testing.assert_allclose(piece, whole[50:57], **tol)
    for name in BACKENDS:
        with bg.use_backend(name):
            other = draw(n, seed=3, stream=5, offset=2 ** 64 - n, dtype=dtype)
        np.testing.assert_allclose(other, whole, **tol)


@pytest.mark.single_backend
@pytest.mark.skipif(not _backend.native_available(), reason="native core not built")
def test_rng_kernels_refuse_overflow_directly():
    # a direct kernel call cannot leave its output unwritten either
    from bayesgrad import _core, _numpy
    for mod in (_core.random, _numpy.random):
        for fn in (mod.fill_uniform, mod.fill_normal):
            o = np.full(5, 7.0)
            with pytest.raises(ValueError, match="offset"):
                fn(o, 3, 0, 2 ** 64 - 2)
            np.testing.assert_array_equal(o, 7.0)


# ---------------------------------------------------------------- 2, 5. persistence

def _fitted_models(rng):
    """One small fitted model of each kind that saves."""
    X = rng.normal(size=(20, 2))
    y = X[:, :1] - X[:, 1:]
    q = bg.vi.MFVI(bg.nn.MLP([2, 4, 1], "tanh"), noise=0.5, batch_size=10).fit(X, y, 2, verbose=0)
    d = bg.dropout.MCDropout(bg.nn.MLP([2, 4, 1], "tanh"), 0.1).fit(X, y, 2, verbose=0)
    mlp = bg.nn.MLP([2, 3, 1], "tanh")
    la = bg.laplace.Laplace(mlp, mlp.init(seed=1), "gaussian", structure="diag").fit(X, y[:, 0])
    return {"MFVI": q, "MCDropout": d, "Laplace": la}


def _loader(kind):
    return {"MFVI": bg.vi.MFVI, "MCDropout": bg.dropout.MCDropout, "Laplace": bg.laplace.Laplace}[kind]


@pytest.mark.parametrize("kind", ["MFVI", "MCDropout", "Laplace"])
def test_failed_save_keeps_the_old_file(kind, rng, tmp_path, monkeypatch):
    model = _fitted_models(rng)[kind]
    path = tmp_path / "model.npz"
    model.save(path)
    good = path.read_bytes()

    def enospc(file, *args, **kwargs):  # a disk that fills up half-way through the write
        file.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", enospc)
    with pytest.raises(OSError, match="No space"):
        model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]  # no temporary file left
    _loader(kind).load(path)


@pytest.mark.parametrize("kind", ["MFVI", "MCDropout", "Laplace"])
def test_save_and_load_the_same_path_round_trip(kind, rng, tmp_path):
    model = _fitted_models(rng)[kind]
    model.save(str(tmp_path / "p"))  # np.savez would have written p.npz
    assert (tmp_path / "p.npz").exists()
    back = _loader(kind).load(str(tmp_path / "p"))
    assert type(back) is type(model)
    back = _loader(kind).load(tmp_path / "p")
    assert type(back) is type(model)
    # a file of another name: the .npz path it read is named, with why (it said only "No such file")
    (tmp_path / "p.npz").rename(tmp_path / "g.bin")
    with pytest.raises(ValueError, match=r"'.*g\.bin' exists, but models are saved with \.npz appended"):
        _loader(kind).load(tmp_path / "g.bin")


def test_a_failed_table_or_figure_write_keeps_the_old_file(tmp_path):
    # the CSV / Parquet tables (compare.to_csv, the CLI's --out) and figures were written in place: a
    # failure half-way left the previous file truncated
    from bayesgrad import plotting
    from bayesgrad._cli_score import _write_table
    from bayesgrad._table import write_csv

    def rows():
        yield [2.0]
        raise RuntimeError("a row that fails")

    path = tmp_path / "t.csv"
    write_csv(path, ["a"], [[1.0]])
    good = path.read_bytes()
    with pytest.raises(RuntimeError, match="a row that fails"):
        write_csv(path, ["a"], rows())
    with pytest.raises(ValueError):  # a string column that savetxt cannot format as a number
        _write_table(path, ["a", "b"], [np.array([1.0]), np.array(["x"])], ValueError)
    assert path.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]
    if plotting.available():
        fig, _ = plotting._figure(1, 1)
        png = plotting._save(fig, tmp_path / "f.png")
        good = open(png, "rb").read()
        fig.savefig = lambda *a, **k: (open(a[0], "wb").write(b"\x89PNG partial"), 1 / 0)
        with pytest.raises(ZeroDivisionError):
            plotting._save(fig, tmp_path / "f.png")
        assert open(png, "rb").read() == good and sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "t.csv"]
    from bayesgrad._quickbench import write_results  # the bench/ scripts' results
    (tmp_path / "results").mkdir()
    res = write_results({"a": 1}, str(tmp_path / "b.py"), "r.json")
    good = open(res, "rb").read()
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_results({"a": np.float32(1)}, str(tmp_path / "b.py"), "r.json")
    assert open(res, "rb").read() == good and [p.name for p in (tmp_path / "results").iterdir()] == ["r.json"]


def test_save_into_a_missing_folder_names_the_folder(tmp_path, rng):
    # the error named the temporary file ('.../no/.m.npz.bt9vdg1x.tmp'), a name the caller never gave
    model = _fitted_models(rng)["MFVI"]
    with pytest.raises(FileNotFoundError, match=r"cannot write .*m\.npz.*no such directory") as info:
        model.save(tmp_path / "no" / "m.npz")
    assert ".tmp" not in str(info.value)


def _rewrite(src, dst, meta_over=None, **arrays_over):
    import json
    with np.load(src) as z:
        files = {k: z[k] for k in z.files}
    meta = json.loads(files.pop("__meta__").tobytes())
    meta.update(meta_over or {})
    files.update(arrays_over)
    files = {k: v for k, v in files.items() if v is not None}
    np.savez(dst, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **files)
    return dst


@pytest.mark.parametrize("kind", ["MFVI", "MCDropout"])
def test_malformed_files_are_value_errors_at_load(kind, rng, tmp_path):
    model = _fitted_models(rng)[kind]
    good = tmp_path / "good.npz"
    model.save(good)
    bad = [
        _rewrite(good, tmp_path / "h1.npz", {"history": 5}),
        _rewrite(good, tmp_path / "h2.npz", {"history": [1, 2]}),
        _rewrite(good, tmp_path / "h3.npz", {"history": [{"elbo": "x"}]}),
        _rewrite(good, tmp_path / "mlp.npz", {"mlp": 3}),
        _rewrite(good, tmp_path / "mlp2.npz", {"mlp": {"sizes": "abc"}}),
        _rewrite(good, tmp_path / "lr.npz", {"lr": None}),
    ]
    if kind == "MCDropout":
        bad.append(_rewrite(good, tmp_path / "noise.npz", log_noise=np.zeros(3)))
        bad.append(_rewrite(good, tmp_path / "noise2.npz", log_noise=np.zeros((1, 1))))
    for path in bad:
        with pytest.raises(ValueError):
            _loader(kind).load(path)


# ---------------------------------------------------------------- 3. scalar parameters

SCALAR_FAMILIES = {
    "Normal": (0.5, 1.5), "LogNormal": (0.1, 0.7), "Exponential": (2.0,), "Uniform": (-1.0, 2.0),
    "Laplace": (0.3, 1.2), "Gumbel": (0.0, 2.0), "StudentT": (3.0,), "Gamma": (2.0, 1.0), "Beta": (2.0, 3.0),
}


@pytest.mark.parametrize("name", sorted(SCALAR_FAMILIES))
def test_scalar_parameters_give_scalar_answers(name):
    D = bg.distributions
    d = getattr(D, name)(*SCALAR_FAMILIES[name])
    for attr in ("entropy", "mean", "variance"):
        r = getattr(d, attr)
        r = r() if callable(r) else r
        assert np.shape(r) == (), (attr, np.shape(r))
        arr = getattr(D, name)(*(np.array([v]) for v in SCALAR_FAMILIES[name]))
        ra = getattr(arr, attr)
        ra = ra() if callable(ra) else ra
        np.testing.assert_allclose(r, np.asarray(ra)[0], rtol=1e-12)
    if name != "StudentT":
        assert np.shape(D.kl_divergence(d, d)) == ()
        assert abs(float(D.kl_divergence(d, d))) < 1e-12
    assert np.shape(d.log_prob(d.sample(1, seed=1)[0])) == ()


def test_scalar_gamma_kl_shape():
    D = bg.distributions
    kl = D.kl_divergence(D.Gamma(2.0, 1.0), D.Gamma(1.0, 1.0))
    assert np.shape(kl) == ()
    assert float(kl) == pytest.approx(0.42278433509846713, rel=1e-12)  # 1 - (digamma(2) - 1)... closed form
    assert np.shape(D.kl_divergence(D.Beta(2.0, 3.0), D.Beta(1.0, 1.0))) == ()


# ---------------------------------------------------------------- 6. BatchBALD ties

@pytest.mark.single_backend
def test_batchbald_ties_go_to_the_lower_index_on_every_backend():
    lp = np.array([-1.172, -0.371, -0.693, -0.693, -0.693, -0.693, -3.895, -0.021]).reshape(1, 4, 2)
    lp = lp - np.logaddexp.reduce(lp, axis=-1, keepdims=True)
    picks = {}
    for name in BACKENDS:
        with bg.use_backend(name):
            picks[name] = (bg.acquisition.batchbald(lp, 1).indices.tolist(),
                           bg.acquisition.batchbald(lp, 3).indices.tolist(),
                           bg.acquisition.bald(lp, 1).indices.tolist())
    for name, (one, three, bald) in picks.items():
        assert one == [0] and bald == [0], (name, one, bald)
        assert three == [0, 1, 2], (name, three)  # every mutual information is 0: pool order


# ---------------------------------------------------------------- 7. Ctrl-C during a fit

@pytest.fixture
def _interrupt_after():
    """start(seconds): SIGINT as the main thread sees it after ``seconds``, under Python's default
    handler (what a user at a terminal has), whatever handler an earlier test left."""
    import _thread
    import signal
    import threading

    prev = signal.signal(signal.SIGINT, signal.default_int_handler)
    timers = []

    def start(seconds):
        t = threading.Timer(seconds, _thread.interrupt_main)
        t.start()
        timers.append(t)
        return t

    yield start
    for t in timers:
        t.cancel()
    signal.signal(signal.SIGINT, prev)


def test_interrupt_stops_a_long_epoch_promptly(rng, _interrupt_after):
    """One epoch here takes far longer than 2 s on any backend (8k minibatches of a 70k-parameter
    net); the interrupt must land within a couple of native slices (~0.1 s each)."""
    import time
    X = rng.normal(size=(256_000, 8))
    y = X[:, :1] ** 2
    q = bg.vi.MFVI(bg.nn.MLP([8, 256, 256, 1], "relu"), batch_size=32)
    delay = 0.5
    t0 = time.perf_counter()
    timer = _interrupt_after(delay)
    try:
        with pytest.warns(RuntimeWarning, match="interrupted"):
            q.fit(X, y, epochs=2, verbose=0)
    finally:
        timer.cancel()
    latency = time.perf_counter() - t0 - delay
    assert q.interrupted_
    assert latency < 2.0, latency  # measured ~0.1 s (the bound is generous for loaded machines)
    # the unfinished first epoch was undone: the initial state, no Adam step, no history
    fresh = bg.vi.MFVI(bg.nn.MLP([8, 256, 256, 1], "relu"), batch_size=32)
    P = fresh.mlp.n_params
    np.testing.assert_array_equal(q.mu_, fresh.mlp.init(seed=0, stream=0))
    assert q.history_ == [] and q._step == 0 and not q._m.any() and not q._v.any()
    assert P == q.mu_.size


@pytest.mark.parametrize("kind", ["MFVI", "MAP"])
def test_interrupted_fit_state_is_that_of_its_completed_epochs(kind, rng, _interrupt_after):
    """After Ctrl-C the parameters, Adam moments, step count and history equal those of an
    uninterrupted fit of as many epochs as the history records."""
    X = rng.normal(size=(300, 3))
    y = X[:, :1] - X[:, 1:2]
    mlp = bg.nn.MLP([3, 16, 1], "tanh")
    timer = _interrupt_after(0.4)
    try:
        with pytest.warns(RuntimeWarning, match="interrupted"):
            if kind == "MFVI":
                q = bg.vi.MFVI(mlp, batch_size=16).fit(X, y, epochs=10 ** 6, verbose=0)
                done, state, step, hist = len(q.history_), q.state_, q._step, q.history_
                moments = (q._m, q._v)
            else:
                theta, info = bg.nn.train_map(mlp, X, y, epochs=10 ** 6, batch_size=16, return_info=True)
                done, state, step, hist = len(info["history"]), theta, info["n_steps"], info["history"]
    finally:
        timer.cancel()
    assert done >= 1
    assert step == done * 19  # ceil(300 / 16) minibatches per completed epoch
    assert [h["epoch"] for h in hist] == list(range(done))
    if kind == "MFVI":
        ref = bg.vi.MFVI(mlp, batch_size=16).fit(X, y, epochs=done, verbose=0)
        np.testing.assert_array_equal(state, ref.state_)
        np.testing.assert_array_equal(moments[0], ref._m)
        np.testing.assert_array_equal(moments[1], ref._v)
        assert ref.history_ == hist
    else:
        ref, rinfo = bg.nn.train_map(mlp, X, y, epochs=done, batch_size=16, return_info=True)
        np.testing.assert_array_equal(state, ref)
        assert rinfo["history"] == hist


@pytest.mark.single_backend
def test_epoch_slices_match_one_call():
    """An epoch run in slices of minibatches gives exactly the one-call result (both backends)."""
    from bayesgrad import _numpy, _training
    mods = [_numpy] + ([bg._backend._core] if _backend.native_available() else [])
    X = np.random.default_rng(0).normal(size=(50, 2))
    y = X[:, :1].copy()
    mlp = bg.nn.MLP([2, 5, 1], "tanh")
    for k in mods:
        q = bg.vi.MFVI(mlp, batch_size=8)
        cfg = q.kernel_config(k, seed=1, stream=2)
        perm = _training.permutation(50, 1, 2, 0)
        w = np.full(7, 1 / 7)
        init = np.concatenate([mlp.init(seed=1), np.full(mlp.n_params, -3.0), [0.0]])
        a = [init.copy(), np.zeros_like(init), np.zeros_like(init)]
        b = [init.copy(), np.zeros_like(init), np.zeros_like(init)]
        s1, st1 = k.vi.vi_epoch(cfg, *a, 0, X, y, perm, w)
        s2, st2a = k.vi.vi_epoch(cfg, *b, 0, X, y, perm[:16], w[:2])
        s2, st2b = k.vi.vi_epoch(cfg, *b, s2, X, y, perm[16:], w[2:])
        assert s1 == s2 == 7
        np.testing.assert_array_equal(np.concatenate([st2a, st2b]), st1)
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
        pp = np.zeros(mlp.n_params)
        mc = k.optim.MapConfig(mlp.net_config(k), 0, batch_size=8)
        a = [init[:mlp.n_params + 1].copy(), np.zeros(mlp.n_params + 1), np.zeros(mlp.n_params + 1)]
        b = [x.copy() for x in a]
        k.optim.map_epoch(mc, *a, 0, X, y, perm, pp)
        s, _ = k.optim.map_epoch(mc, *b, 0, X, y, perm[:24], pp)
        k.optim.map_epoch(mc, *b, s, X, y, perm[24:], pp)
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


# ---------------------------------------------------------------- 9. messages

def test_diverging_fit_says_so(rng):
    X = rng.normal(size=(100, 3))
    y = 100 * X[:, :1]
    q = bg.vi.MFVI(bg.nn.MLP([3, 16, 1], "relu"), lr=1e3)
    with pytest.raises(FloatingPointError, match=r"diverged in epoch \d+.*smaller lr"):
        q.fit(X, y, 50, verbose=0)
    # the state is the last finite epoch's, consistent with the history
    assert np.all(np.isfinite(q.state_)) and q._step == len(q.history_) * 4


@pytest.mark.parametrize("make, name", [
    (lambda: bg.vi.MFVI(bg.nn.MLP([2, 1]), prior_sigma="big"), "prior_sigma"),
    (lambda: bg.vi.MFVI(bg.nn.MLP([2, 1]), lr=[1e-3, 1e-2]), "lr"),
    (lambda: bg.vi.MFVI(bg.nn.MLP([2, 1]), rho_init=None), "rho_init"),
    (lambda: bg.vi.MFVI(bg.nn.MLP([2, 1]), mixture=(0.5, "x", 1.0)), "mixture"),
    (lambda: bg.dropout.MCDropout(bg.nn.MLP([2, 3, 1]), p="0.1"), "p"),
    (lambda: bg.dropout.MCDropout(bg.nn.MLP([2, 3, 1]), tau=1j), "tau"),
    (lambda: bg.dropout.MCDropout(bg.nn.MLP([2, 3, 1]), length_scale=object()), "length_scale"),
    (lambda: bg.nn.train_map(bg.nn.MLP([2, 1]), np.ones((3, 2)), np.ones(3), lr="fast"), "lr"),
    (lambda: bg.nn.train_map(bg.nn.MLP([2, 1]), np.ones((3, 2)), np.ones(3), validation="some"), "validation"),
])
def test_conversions_name_the_argument(make, name):
    with pytest.raises(TypeError, match=name):
        make()


# ---------------------------------------------------------------- 4. sizes checked before allocation

def test_sizes_are_checked_before_allocation(rng, monkeypatch):
    from bayesgrad import _checks
    import tracemalloc
    F = rng.normal(size=(30, 3))
    y = rng.integers(0, 3, 30)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="n_classes"):
            bg.ddu.DDU().fit(F, y, n_classes=10 ** 9)
        with pytest.raises(ValueError, match="n_classes"):
            bg.ddu.DDU().fit(F, np.r_[y[:-1], 10 ** 9])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 ** 28  # the 7.5 GiB bincount is never attempted (imports may count here)

    X = rng.normal(size=(40, 2))
    yr = X[:, :1]
    q = bg.vi.MFVI(bg.nn.MLP([2, 4, 1], "tanh")).fit(X, yr, 1, verbose=0)
    d = bg.dropout.MCDropout(bg.nn.MLP([2, 4, 1], "tanh")).fit(X, yr, 1, verbose=0)
    mlp = bg.nn.MLP([2, 3, 2], "tanh")
    la = bg.laplace.Laplace(mlp, mlp.init(seed=1), "categorical", structure="diag").fit(X, (X[:, 0] > 0) * 1.0)
    for call in (lambda: q.predict(X, n_samples=10 ** 12), lambda: d.predict(X, n_samples=10 ** 12),
                 lambda: q.sample_params(10 ** 13), lambda: la.predict(X, link="mc", n_samples=10 ** 12),
                 lambda: la.predict(X, pred_type="nn", n_samples=10 ** 12),
                 lambda: bg.distributions.Normal(np.zeros(10), 1.0).sample(10 ** 13),
                 lambda: bg.random.normal((10 ** 7, 10 ** 7))):
        with pytest.raises(ValueError, match=r"(n_samples|n|shape)=\S+.* would need [\d.,]+ [KMGT]iB"):
            call()
    # a moderate request with a small limit: refused with the same message, nothing allocated
    monkeypatch.setattr(_checks, "MAX_ALLOCATION_BYTES", 10 ** 6)
    with pytest.raises(ValueError, match="n_samples=10000000"):
        q.predict(X, n_samples=10 ** 7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_chunked_predictions_equal_one_chunk(rng, monkeypatch, dtype):
    """Predictions made in parameter chunks equal those made at once (P = 21 is odd, so
    a chunk boundary s0 * P is on a SIMD group boundary only because s0 is a multiple
    of the group size in elements)."""
    from bayesgrad import nn
    X = rng.normal(size=(7, 2)).astype(dtype)
    yr = X[:, :1]
    q = bg.vi.MFVI(bg.nn.MLP([2, 5, 1], "tanh")).fit(X, yr, 1, verbose=0)
    d = bg.dropout.MCDropout(bg.nn.MLP([2, 5, 1], "tanh")).fit(X, yr, 1, verbose=0)
    whole = (q.predict(X, 100, seed=4).samples_mean, d.predict(X, 100, seed=4).samples_mean)
    np.testing.assert_array_equal(q.predict(X, 100, seed=4).samples_mean[:, :, 0].T.shape, (7, 100))
    monkeypatch.setattr(nn, "PARAM_CHUNK_BYTES", 1)  # 64 samples per chunk
    np.testing.assert_array_equal(q.predict(X, 100, seed=4).samples_mean, whole[0])
    np.testing.assert_array_equal(d.predict(X, 100, seed=4).samples_mean, whole[1])
    np.testing.assert_array_equal(q.sample_params(100, seed=4), q.sample_params(100, seed=4))


# ---------------------------------------------------------------- 8. extremes

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_low_temperature_relaxed_draws_stay_in_the_support(dtype):
    D = bg.distributions
    lg = np.array([0.3, -1.0, 2.0], dtype=dtype)
    for d in (D.RelaxedCategorical(dtype(1e-8), lg), D.RelaxedBernoulli(dtype(1e-8), logits=lg)):
        x = d.sample(20, seed=1)
        assert x.dtype == dtype and np.all(x > 0) and np.all(x <= 1)
        assert np.all(np.isfinite(d.log_prob(x)))
        for v in list(d.rsample_vjp(x, np.ones_like(x)).values()) + list(d.score(x).values()):
            assert np.all(np.isfinite(v))


@pytest.mark.parametrize("make", [lambda D: D.Gamma(1e-8), lambda D: D.Beta(1e-8, 2.0),
                                  lambda D: D.Gamma(np.float32(1e-8)), lambda D: D.Dirichlet([1e-8, 1.0])])
def test_tiny_concentration_draws_are_positive(make):
    d = make(bg.distributions)
    x = d.sample(200, seed=1)
    assert np.all(x > 0) and np.all(x == np.maximum(x, np.finfo(x.dtype).tiny))
    assert np.all(np.isfinite(d.log_prob(x)))
    if not isinstance(d, bg.distributions.Dirichlet):
        for v in d.rsample_vjp(x, np.ones_like(x)).values():
            assert np.all(np.isfinite(v))


def test_one_sample_standard_error_is_inf_not_nan():
    D = bg.distributions
    d = D.Normal(np.zeros(2), 1.0)
    assert bg.estimators.expectation(lambda x: x.sum(-1), d, 1)[1] == np.inf
    e = bg.estimators.score_function(lambda x: (x ** 2).sum(-1), d, 1)
    assert e.value_stderr == np.inf and all(np.all(s == np.inf) for s in e.stderr.values())
    assert np.isfinite(bg.estimators.expectation(lambda x: x.sum(-1), d, 4)[1])


def test_laplace_sample_and_temperature_checks_name_their_argument():
    import bayesgrad as bg

    rng = np.random.default_rng(0)
    mlp = bg.nn.MLP([2, 3, 2], "tanh")
    X = rng.normal(size=(20, 2))
    y = rng.integers(0, 2, 20)
    theta = mlp.init(seed=0)
    la = bg.laplace.Laplace(mlp, theta, "categorical", structure="diag").fit(X, y)
    with pytest.raises(ValueError, match="n_samples=10000000000000"):
        la.sample(10 ** 13)
    with pytest.raises(TypeError, match="temperature"):
        bg.laplace.Laplace(mlp, theta, "categorical", temperature="warm")


@pytest.mark.single_backend
def test_progress_bars_only_where_someone_watches(monkeypatch):
    """verbose=1 (every fit's default) draws a bar only on a terminal (or in a Jupyter kernel): a bar's
    carriage-return updates would fill a log file or a pipe; verbose=2 draws it anywhere."""
    pytest.importorskip("tqdm")
    import io

    from bayesgrad import _training

    class Tty(io.StringIO):
        def isatty(self):
            return True

    for stream, shown in ((io.StringIO(), False), (Tty(), True)):
        monkeypatch.setattr("sys.stderr", stream)
        bar = _training.progress(10, 1, "x")
        assert (bar is not None) == shown
        forced = _training.progress(10, 2, "x")
        assert forced is not None
        for b in (bar, forced):
            if b is not None:
                b.close()
        assert _training.progress(10, 0, "x") is None
    with pytest.raises(TypeError, match="verbose must be an integer"):  # "x" < 2: an unnamed TypeError
        _training.progress(10, "x", "x")
    with pytest.raises(ValueError, match="verbose must be >= 0"):
        _training.progress(10, -1, "x")
    # in a Jupyter kernel (stderr a pipe there) tqdm.auto draws a widget: shown at verbose=1
    import types

    monkeypatch.setattr("sys.stderr", io.StringIO())
    kernel = type("ZMQInteractiveShell", (), {})()
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: kernel))
    assert _training.watched()
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: None))  # a plain shell
    assert not _training.watched()
    # a fit's default, off a terminal: nothing on stderr
    log = io.StringIO()
    monkeypatch.setattr("sys.stderr", log)
    X = np.linspace(-1, 1, 40)[:, None]
    bg.vi.MFVI(bg.nn.MLP([1, 4, 1]), likelihood="gaussian").fit(X, X[:, 0], epochs=2, seed=0)
    assert log.getvalue() == ""
