"""Dask is optional: without it, NumPy pools still score, exact moments still work, and
every Dask entry point says how to install it (runs whether or not dask is installed)."""
import sys

import numpy as np
import pytest
from scipy import special

import bayesgrad as bg

P = bg.pools
A = bg.acquisition


class _Blocked:
    """A meta-path finder that refuses dask and distributed, as a missing install does."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("dask", "distributed"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


@pytest.fixture
def no_dask(monkeypatch):
    """Make ``import dask`` (and its parts, distributed) fail as if not installed."""
    for name in list(sys.modules):
        if name.split(".")[0] in ("dask", "distributed"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_Blocked(), *sys.meta_path])


@pytest.mark.single_backend
def test_clear_error_without_dask(no_dask, tmp_path, capsys):
    with pytest.raises(ImportError, match=r"bayesgrad\[dask\]"):
        P.require_dask()
    with pytest.raises(ImportError, match=r"Zarr pool needs the optional dependency dask: pip install"):
        P.from_zarr(str(tmp_path / "pool.zarr"))
    with pytest.raises(ImportError, match=r"bayesgrad\[dask\]"):
        P.from_parquet(str(tmp_path / "pool.parquet"))
    # NumPy pools and sums need no dask
    rng = np.random.default_rng(0)
    lp = special.log_softmax(rng.normal(size=(8, 300, 3)) * 2, axis=-1)
    res = P.score_pool(lp, "batchbald", 3, n_configs=100, chunk_size=50)
    np.testing.assert_array_equal(res.indices, bg.acquisition.batchbald(lp, 3, 100).indices)
    assert P.moments(np.arange(10.0)).mean == 4.5
    # the command line turns it into a one-line usage error
    (tmp_path / "pool.zarr").mkdir()
    q = bg.dropout.MCDropout(bg.nn.MLP([2, 8, 3]), p=0.2, likelihood="categorical")
    d = bg.datasets.three_class_2d(n=60, seed=0)
    q.fit(d.X, d.y, epochs=2, verbose=0).save(tmp_path / "m.npz")
    from bayesgrad import cli

    rc = cli.main(["score", str(tmp_path / "pool.zarr"), "--model", str(tmp_path / "m.npz")])
    err = capsys.readouterr().err
    assert rc == 1 and "bayesgrad[dask]" in err and "Traceback" not in err


def _posteriors(X, y):
    mlp = bg.nn.MLP([2, 8, 3])
    q = bg.dropout.MCDropout(mlp, p=0.2, likelihood="categorical").fit(X, y, epochs=2, verbose=0)
    yield q, {}
    yield bg.vi.MFVI(mlp, "categorical").fit(X, y, epochs=2, verbose=0), {}
    yield bg.ensemble.DeepEnsemble(mlp, "categorical", n_models=3).fit(X, y, epochs=2), {}
    yield bg.swag.SWAG(mlp, "categorical", rank=3).fit(X, y, epochs=3, map_epochs=2, verbose=0), {}
    yield bg.swag.MultiSWAG(mlp, "categorical", n_models=2, rank=3).fit(X, y, epochs=3, map_epochs=2, verbose=0), {}
    yield bg.sgmcmc.SGMCMC(mlp, "categorical", lr=1e-3).fit(X, y, n_steps=200, thin=10, verbose=0), {}
    yield bg.laplace.Laplace(mlp, q.theta_, "categorical", structure="diag").fit(X, y), {"pred_type": "nn"}


def test_networks_reproduce_each_posteriors_predictive():
    """The sampled networks a pool is scored with are those of the posterior's own
    predict (Laplace: its sampled-weights predictive)."""
    d = bg.datasets.three_class_2d(n=80, seed=1)
    for post, extra in _posteriors(d.X, d.y):
        net = P.networks(post, 6, seed=3, stream=5)
        ref = post.predict(d.X, n_samples=6, seed=3, stream=5, **extra).log_probs
        # to rounding: the pool's forward runs in row tiles aligned to the pool's index
        lp = net.log_probs(d.X)
        np.testing.assert_allclose(lp, ref, rtol=0, atol=1e-12 if lp.dtype == np.float64 else 2e-5,
                                   err_msg=type(post).__name__)
    with pytest.raises(TypeError, match="posterior of this package"):
        P.networks(object(), 4)


def test_log_likelihood_sums_gaussian_and_heteroscedastic():
    """Exact per-sample sums of the point log-likelihoods equal the engine's own nll sums."""
    d = bg.datasets.regression_1d_gap(n=90, seed=2)
    for lik, out in (("gaussian", 1), ("heteroscedastic_gaussian", 2)):
        mlp = bg.nn.MLP([1, 12, out])
        q = bg.vi.MFVI(mlp, lik, learn_noise=lik == "gaussian").fit(d.X, d.y, epochs=3, verbose=0)
        net = P.networks(q, 5, seed=1)
        ll = P.log_likelihood(q, d.X, d.y, n_samples=5, seed=1)
        noise = q.noise_ if lik == "gaussian" else 1.0
        ref = -mlp.nll(net.theta, d.X, d.y, lik, noise=noise)
        np.testing.assert_allclose(ll, ref, rtol=1e-10 if ll.dtype == np.float64 else 1e-4)


@pytest.mark.single_backend
def test_score_command_lists_every_acquisition():
    from bayesgrad import _cli_score

    assert _cli_score.ACQUISITIONS == P.ACQUISITIONS


def _misaligned(a):
    """A copy of ``a`` at an odd byte offset (as a Dask worker may receive it)."""
    buf = np.empty(a.nbytes + 1, np.uint8)
    m = buf[1:].view(a.dtype).reshape(a.shape)
    m[...] = a
    assert not m.flags.aligned
    return m


@pytest.mark.parametrize("kernels", ["numpy", "cpu"])
def test_misaligned_weights_and_blocks_score_as_aligned(kernels):
    """A worker unpickles the networks (and receives its block) at any byte offset;
    NumPy multiplies misaligned weights without BLAS (another summation order), which
    made a Dask pool's scores differ from the in-memory ones in the last bits (seen on
    a Zen 4 EPYC). Misaligned blocks must score as aligned ones too."""
    if kernels == "cpu" and not bg.backend_info()["native"]:
        pytest.skip("native core not built")
    d = bg.datasets.three_class_2d(n=800, seed=2)
    with bg.use_backend(kernels):
        q = bg.dropout.MCDropout(bg.nn.MLP([2, 24, 3]), p=0.3, likelihood="categorical").fit(
            d.X, d.y, epochs=2, verbose=0)
        net = P.networks(q, 8, seed=1)
        state = dict(net.__dict__)
        state["theta"], state["masks"] = _misaligned(net.theta), _misaligned(net.masks)
        moved = P.Networks.__new__(P.Networks)
        moved.__setstate__(state)  # what unpickling on a worker calls
        assert moved.theta.flags.aligned and moved.masks.flags.aligned
        np.testing.assert_array_equal(moved.log_probs(d.X), net.log_probs(d.X))
        spec = P._Spec("bald", 5, tuple(A.METHODS), 1.0, 0, 0, kernels)
        # whole row tiles (256), which the forward reads in place, and a log-probability pool
        X = np.ascontiguousarray(d.X[256:768])
        lp = net.log_probs(X, 256)
        for blk, nt in ((X, net), (lp, None)):
            ref = P._block(blk, nt, spec, (256, 768), None)
            got = P._block(_misaligned(blk), nt, spec, (256, 768), None)
            for m in A.METHODS:
                np.testing.assert_array_equal(got["cols"][m], ref["cols"][m], err_msg=m)
            np.testing.assert_array_equal(got["idx"], ref["idx"])
