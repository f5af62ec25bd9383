"""Dask is optional: without it, NumPy pools still score, exact moments still work, and
every Dask entry point says how to install it (runs whether or not dask is installed)."""
import sys

import numpy as np
import pytest
from scipy import special

import bayesgrad as bg

P = bg.pools


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
