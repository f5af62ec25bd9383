"""Pools beyond one machine: acquisition scores, top-k picks, BatchBALD and exact
sums over a pool held as a Dask array (or a NumPy array scored block by block in
process).

Call shape::

    import dask.array as da
    X = da.from_zarr("pool.zarr")                       # (N, D), chunked along N
    res = bg.pools.score_pool(X, "batchbald", 100, model=posterior, n_samples=50,
                              columns=bg.acquisition.METHODS)
    res.indices, res.scores                             # the picks, best first
    res.columns["bald"]                                 # (N,) per-point uncertainty
    res.info["n_candidates"]                            # BatchBALD's M

The pool is either inputs ``(N, D)`` with a ``model`` (any posterior of this
package, or its ``Networks``), or log-probabilities ``(S, N, C)`` without one;
either way chunked along N only (other axes are made single chunks). Each block
is one task: the predictive of its points (the S sampled networks, one object
in the graph, so its weights travel to each worker once), the per-point scores
and the block's top-k; the top-k are merged in a tree (``split_every`` at a
time). BatchBALD runs in two stages: the top M points by BALD across the
cluster (``max_candidates``, default ``max(1000, 20 * batch_size)``), then
greedy BatchBALD on the gathered (S, M, C) candidates on the client; M is
``info["n_candidates"]``. Soft-rank ranks every point, so its BALD column is
gathered (N floats) and the draw is made on the client.

Determinism: a point's scores depend on its own log-probabilities only, the
random key of point i (random, power, softmax, soft-rank acquisition) is
element i of a Philox stream (``acquisition.point_uniforms``), ties go to the
lower pool index, and the sampled networks are drawn once on the client; so
the same seed gives the same scores and picks whatever the chunking, the
scheduler and the number of workers -- and the same as the in-memory
``bg.acquisition`` functions on the whole array.

Sums (``moments``, ``expectation``, ``log_likelihood``, ``elbo``) are exact:
each block returns its sums of x and x^2 as exact binary fractions (integers
per exponent; squares split exactly with Dekker's product), merged in exact
integer arithmetic and rounded once, so they are correctly rounded and
bit-identical for any chunking.

Dask is an optional dependency (``pip install "bayesgrad[dask]"``); NumPy pools
need none of it.
"""
from __future__ import annotations

import json
import math
import operator
from dataclasses import dataclass, field

import numpy as np

from . import _checks as C
from . import acquisition as A
from . import random as _random

__all__ = ["Networks", "networks", "score_pool", "PoolScores", "Moments", "moments", "expectation",
           "log_likelihood", "elbo", "from_zarr", "from_parquet", "from_csv", "load_posterior", "require_dask",
           "is_dask_array", "ACQUISITIONS"]

ACQUISITIONS = (*A.METHODS, "batchbald", "random", *A.STOCHASTIC_MODES)


# ---------------------------------------------------------------- dask, optional
def require_dask(what="this pool"):
    """Import dask and dask.array, or raise an ImportError saying how to install them."""
    try:
        import dask
        import dask.array as da
    except ImportError as exc:
        raise ImportError(f"{what} needs the optional dependency dask: pip install \"bayesgrad[dask]\" "
                          f"(dask[array] and distributed) [{exc}]") from exc
    return dask, da


def is_dask_array(x):
    """True for a ``dask.array.Array`` (checked without importing dask).

    Parameters
    ----------
    x : any object; an array of any shape, e.g. a pool (N, D)

    Returns
    -------
    bool
    """
    t = type(x)
    return t.__name__ == "Array" and t.__module__.startswith("dask.array")


def known_rows(x, name, axis=0):
    """The length of axis ``axis`` (the rows) of a Dask array; a ValueError naming ``name``
    when its chunk sizes are unknown (NaN, e.g. after boolean indexing), which the blocks'
    global row offsets need."""
    if any(math.isnan(c) for c in x.chunks[axis]):
        raise ValueError(f"{name} has unknown chunk sizes along its rows (NaN, e.g. after boolean indexing); "
                         f"call {name}.compute_chunk_sizes() first")
    return int(sum(x.chunks[axis]))


# ---------------------------------------------------------------- sampled networks
_MLP_CACHE = {}
# Pool rows per forward call, aligned to the pool's row index (Networks.outputs): large
# enough that the per-call overhead is small next to a tile's GEMMs, small enough that
# a padded partial tile at a block's edges costs little.
ROW_TILE = 256


def _mlp(spec):
    """The MLP of a ``to_dict`` spec, built once per process (a worker rebuilds it once)."""
    from .nn import MLP

    key = json.dumps(spec, sort_keys=True)
    m = _MLP_CACHE.get(key)
    if m is None:
        m = _MLP_CACHE[key] = MLP(**spec)
    return m


class Networks:
    """S sampled networks of a posterior: plain arrays, cheap to send to workers.

    Parameters
    ----------
    mlp : bg.nn.MLP (kept as its ``to_dict`` spec)
    likelihood : str
    theta : (S, P) weight samples, or (P,) shared by every sample (MC dropout)
    masks : (S, H) dropout masks scaled by 1/(1-p), or None
    noise : gaussian noise sigma per output (gaussian likelihood), else None
    backend : the kernel backend the blocks run on (default: the active one)
    """

    def __init__(self, mlp, likelihood, theta, masks=None, noise=None, backend=None):
        from . import _backend
        from .nn import likelihood_name

        self.mlp = mlp.to_dict()
        self.likelihood = likelihood_name(likelihood)
        # float32 / float64 like every weight vector (integer weights made the forward's output
        # buffer the wrong dtype, an error about ``out``)
        self.theta = C.as_array(theta, "theta", min_ndim=1)
        if self.likelihood == "gaussian" and noise is None:
            raise ValueError("noise (the gaussian likelihood's sigma per output) is required for a gaussian "
                             "likelihood")
        self.masks = None if masks is None else np.ascontiguousarray(masks, dtype=self.theta.dtype)
        if self.theta.ndim == 1 and self.masks is None:
            self.theta = self.theta[None]
        self.noise = None if noise is None else np.asarray(noise, dtype=np.float64)
        self.backend = backend or _backend.get_backend()

    def __setstate__(self, state):
        # Unpickled on a worker, the weights can sit in the message frame at any byte
        # offset; NumPy multiplies misaligned arrays without BLAS, in another order, so
        # a worker's predictive would differ from the client's in the last bits.
        for k in ("theta", "masks"):
            if state.get(k) is not None:
                state[k] = np.require(state[k], requirements=["C", "A"])
        self.__dict__.update(state)

    @property
    def n_samples(self):
        return self.masks.shape[0] if self.theta.ndim == 1 else self.theta.shape[0]

    @property
    def n_inputs(self):
        return self.mlp["sizes"][0]

    def outputs(self, X, offset=0):
        """Network outputs F (S, n, K) at inputs X (n, D), the pool's rows offset..offset+n-1.

        The rows go through the network in tiles of ``ROW_TILE`` pool rows aligned
        to the pool's row index (a partial tile padded with zero rows), so every
        GEMM has the same shape and every row the same place in it however the
        pool is chunked: BLAS kernels round a row's dot products differently with
        the row count and the row's position (seen with OpenBLAS's AVX2 sgemm
        and dgemm), and the scores of a chunked pool would otherwise differ from
        the in-memory ones in the last bits."""
        from . import _backend

        m = _mlp(self.mlp)
        S, T = self.n_samples, ROW_TILE
        # (1, P) under S masks: one network, its first layer formed once per tile
        t = self.theta if self.theta.ndim == 2 else self.theta[None]
        X = np.ascontiguousarray(X, dtype=t.dtype)
        n = X.shape[0]
        out = np.empty((S, n, self.mlp["sizes"][-1]), dtype=t.dtype)
        pad = np.zeros((T, X.shape[1]), dtype=t.dtype)
        # one tile buffer for every call: Dask's workers return freed memory to the OS at
        # once (its nanny sets MALLOC_TRIM_THRESHOLD_), so a fresh array per tile would be
        # mapped and page-faulted each time (a third of a worker's time, measured)
        tile = np.empty((S, T, out.shape[2]), dtype=t.dtype)
        with _backend.use_backend(self.backend):
            for g0 in range(offset // T * T, offset + n, T):
                lo, hi = max(g0, offset), min(g0 + T, offset + n)
                if lo == g0 and hi == g0 + T:
                    xt = X[lo - offset:hi - offset]
                else:
                    pad[:] = 0
                    pad[lo - g0:hi - g0] = X[lo - offset:hi - offset]
                    xt = pad
                m.forward(t, xt, masks=self.masks, out=tile)
                out[:, lo - offset:hi - offset] = tile[:, lo - g0:hi - g0]
        return out

    def log_probs(self, X, offset=0):
        """Sampled class log-probabilities (S, n, C) at X (n, D), the pool's rows from
        ``offset`` (classification)."""
        from ._numerics import likelihood_log_probs

        if self.likelihood not in ("categorical", "bernoulli"):
            raise ValueError(f"log-probabilities need a classification likelihood, not {self.likelihood!r}")
        F = self.outputs(X, offset)
        if self.likelihood == "bernoulli":
            return likelihood_log_probs(self.likelihood, F)
        # in place on F (ours): no temporary of F's size (a worker's memory per block)
        from .uncertainty import log_softmax

        return log_softmax(F, overwrite=True)

    def point_log_likelihood(self, X, y, offset=0):
        """log p(y_n | x_n, theta_s) (S, n) in nats, per sample and point (rows from ``offset``)."""
        from ._numerics import likelihood_log_probs
        from .nn import prepare_targets

        F = self.outputs(X, offset)
        S, n, K = F.shape
        if self.likelihood in ("categorical", "bernoulli"):
            lp = likelihood_log_probs(self.likelihood, F)
            lab = prepare_targets(np.asarray(y).reshape(-1), "categorical", lp.shape[2], n, np.float64)
            return lp[:, np.arange(n), lab[:, 0].astype(np.int64)]
        D = K if self.likelihood == "gaussian" else K // 2
        yy = prepare_targets(y, self.likelihood, K, n, F.dtype)
        if self.likelihood == "gaussian":
            mu, logv = F, np.broadcast_to(2 * np.log(self.noise).astype(F.dtype), F.shape)
        else:
            mu, logv = F[..., :D], F[..., D:]
        return (-0.5 * ((yy[None] - mu) ** 2 * np.exp(-logv) + logv) - 0.5 * math.log(2 * math.pi)).sum(-1)

    def __repr__(self):
        return f"Networks({self.mlp['sizes']}, {self.likelihood!r}, n_samples={self.n_samples})"


def networks(posterior, n_samples=100, seed=0, stream=0):
    """The S sampled networks behind ``posterior.predict(X, n_samples, seed, stream)``.

    ``Networks.log_probs(X)`` equals that predictive's ``log_probs`` (to rounding: the
    pool's forward runs in row tiles aligned to the pool's index) for MC dropout
    (the consistent masks), MFVI, SWAG, MultiSWAG (the same weight draws), a deep
    ensemble (its first min(S, M) members) and SG-MCMC (the kept samples spread over
    the run); for Laplace it is the sampled-weights predictive
    (``predict(pred_type="nn")``, an MLP model over all its weights), since the GLM
    predictive's function-space draws are made per point. A scikit-learn estimator
    of this package gives its ``posterior_``'s networks.
    """
    from . import dropout, ensemble, sgmcmc, swag, vi
    from .nn import MLP

    if isinstance(posterior, Networks):
        return posterior
    if hasattr(posterior, "posterior_") and not hasattr(posterior, "sample_params"):
        posterior = posterior.posterior_
    S = C.integer(n_samples, "n_samples", 1)
    seed = _random.resolve_seed(seed)
    stream = _random.check_stream(stream)
    lik = getattr(posterior, "likelihood", None)
    if isinstance(posterior, dropout.MCDropout):
        if posterior.theta_ is None:
            raise RuntimeError("call fit() first")
        noise = posterior.noise_ if lik == "gaussian" else None
        return Networks(posterior.mlp, lik, posterior.theta_, posterior.sample_masks(S, seed, stream), noise)
    if isinstance(posterior, vi.MFVI):
        return Networks(posterior.mlp, lik, posterior.sample_params(S, seed, stream), None,
                        posterior.noise_ if lik == "gaussian" else None)
    if isinstance(posterior, ensemble.DeepEnsemble):
        M = min(S, posterior.n_models)
        posterior.sample_params(1)  # raises when not fitted
        noise = None
        if lik == "gaussian":
            noise = np.sqrt(np.mean(np.exp(2 * posterior.log_noise_[:M].astype(np.float64)), axis=0))
        return Networks(posterior.mlp, lik, posterior.thetas_[:M], None, noise)
    if isinstance(posterior, sgmcmc.SGMCMC):
        posterior.sample_params(1)
        total = posterior.samples_.shape[0]
        idx = np.unique(np.round(np.linspace(0, total - 1, min(S, total))).astype(np.int64))
        return Networks(posterior.mlp, lik, posterior.samples_[idx], None,
                        posterior.noise if lik == "gaussian" else None)
    if isinstance(posterior, (swag.SWAG, swag.MultiSWAG)):
        noise = None
        if lik == "gaussian":
            noise = (posterior.members[0] if isinstance(posterior, swag.MultiSWAG) else posterior).noise
        return Networks(posterior.mlp, lik, posterior.sample_params(S, seed, stream), None, noise)
    from .laplace import Laplace

    if isinstance(posterior, Laplace):
        mlp = getattr(posterior.model, "mlp", None)
        if not isinstance(mlp, MLP) or posterior.n_params != mlp.n_params:
            raise ValueError("a Laplace pool posterior must cover all the weights of an MLP (subset='all'); "
                             "score a last-layer or subnetwork Laplace in memory")
        thetas = posterior.sample(S, seed, _random.fold_in(stream, "laplace/predict"))
        noise = posterior.sigma_noise if lik == "gaussian" else None
        return Networks(mlp, lik, thetas, None, noise)
    raise TypeError("model must be a posterior of this package (MCDropout, MFVI, DeepEnsemble, SWAG, MultiSWAG, "
                    "SGMCMC, Laplace), its scikit-learn estimator, or bg.pools.Networks; got "
                    f"{type(posterior).__name__}")


def load_posterior(path):
    """Any posterior saved by this package's ``save`` (the file's metadata names its kind)."""
    from . import _training as _tr
    from . import dropout, ensemble, sgmcmc, swag, vi
    from .laplace import Laplace

    kinds = {"MCDropout": dropout.MCDropout, "MFVI": vi.MFVI, "DeepEnsemble": ensemble.DeepEnsemble,
             "SWAG": swag.SWAG, "MultiSWAG": swag.MultiSWAG, "SGMCMC": sgmcmc.SGMCMC, "Laplace": Laplace}
    p = _tr.npz_path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            blob = np.array(z["__meta__"]) if "__meta__" in z.files else None
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise ValueError(f"cannot read a bayesgrad model from {p!r}: {type(exc).__name__}: {exc}") from exc
    try:
        kind = json.loads(blob.tobytes().decode("utf-8")).get("kind")
    except Exception:  # noqa: BLE001
        kind = None
    if kind not in kinds:
        raise ValueError(f"{p!r} does not hold a posterior of this package (kind {kind!r}; "
                         f"expected one of {', '.join(kinds)})")
    return kinds[kind].load(p)


# ---------------------------------------------------------------- one block
@dataclass(frozen=True)
class _Spec:
    acquisition: str
    k: int  # picks (batchbald: candidates M)
    columns: tuple
    beta: float
    seed: int
    stream: int
    backend: str  # the client's kernel backend, used on the workers too


def _block(data, net, spec, span, exclude):
    from . import _backend

    with _backend.use_backend(spec.backend):
        return _block_scores(data, net, spec, span, exclude)


def _block_scores(data, net, spec, span, exclude):
    """Scores and local top-k of one block: ``data`` (n, D) inputs (with ``net``) or (S, n, C)
    log-probabilities of the points span = (start, stop) (global indices); ``exclude`` sorted
    indices never picked. Returns dict: cols (name -> (n,)), keys (m,), idx (m,) and, for
    BatchBALD, the candidates' lp (S, m, C) and cond (m,)."""
    from .uncertainty import check_log_probs

    start, stop = span
    index = np.arange(start, stop, dtype=np.int64)
    if net is not None:
        lp = net.log_probs(data, start)
    else:
        lp = check_log_probs(np.asarray(data), "pool")
    a = spec.acquisition
    need = set(spec.columns)
    if a in ("batchbald", *A.STOCHASTIC_MODES):
        need.add("bald")
    elif a in A.METHODS:
        need.add(a)
    cols = A.score_columns(lp, [m for m in A.METHODS if m in need], offset=start)
    keep = slice(None)  # every point: no copies of the block's arrays
    if exclude is not None and exclude.size:
        keep = ~np.isin(index, exclude)
    idx = index[keep]
    out = {"cols": {m: cols[m] for m in spec.columns}, "keys": None, "idx": idx, "lp": None, "cond": None}
    if a == "softrank":  # ranks are global: the client draws from the gathered BALD column
        out["keys"] = cols["bald"][keep]
        return out
    if a == "random":
        key = A.point_uniforms(idx, spec.seed, spec.stream)
    elif a in ("power", "softmax"):
        s = cols["bald"][keep].astype(np.float64)
        key = A.stochastic_keys(s, a, spec.beta, A.point_uniforms(idx, spec.seed, spec.stream))
    else:
        key = cols["bald" if a == "batchbald" else a][keep]
    order = np.lexsort((idx, -key.astype(np.float64)))[:spec.k]
    out["keys"], out["idx"] = key[order], idx[order]
    if a == "batchbald":
        pos = order if isinstance(keep, slice) else np.flatnonzero(keep)[order]
        out["lp"] = np.ascontiguousarray(lp[:, pos])
        out["cond"] = cols["aleatoric"][pos]
    return out


def _strip(part):
    """A block's result without its columns (what the top-k tree carries)."""
    return {k: v for k, v in part.items() if k != "cols"}


def _merge(parts, spec):
    """Top-k of several blocks' top-k (softrank: concatenation of the gathered scores)."""
    keys = np.concatenate([p["keys"] for p in parts])
    idx = np.concatenate([p["idx"] for p in parts])
    if spec.acquisition == "softrank":
        return {"keys": keys, "idx": idx, "lp": None, "cond": None}
    order = np.lexsort((idx, -keys.astype(np.float64)))[:spec.k]
    lp = cond = None
    if spec.acquisition == "batchbald":
        lp = np.concatenate([p["lp"] for p in parts], axis=1)[:, order]
        cond = np.concatenate([p["cond"] for p in parts])[order]
    return {"keys": keys[order], "idx": idx[order], "lp": lp, "cond": cond}


@dataclass
class PoolScores(A.Selection):
    """The picks of ``score_pool`` (``indices``, ``scores`` as ``bg.acquisition.Selection``)
    and the requested per-point ``columns`` (name -> (N,) array)."""

    columns: dict = field(default_factory=dict)


def _finish(top, spec, n_configs, n_pool, batch_size):
    """Selection from the merged top-k (greedy BatchBALD and soft-rank run here, on the client)."""
    a = spec.acquisition
    if top["idx"].size < batch_size:
        raise ValueError(f"batch_size ({batch_size}) exceeds the points that can be picked ({top['idx'].size})")
    info = {"seed": spec.seed, "pool_size": n_pool}
    if a == "softrank":
        keys, idx = A.stochastic_select(top["keys"], batch_size, "softrank", spec.beta, seed=spec.seed,
                                        stream=spec.stream, index=top["idx"])
        return keys, idx, f"stochastic_{a}", {**info, "method": "bald", "beta": spec.beta}
    if a == "batchbald":
        pos = np.argsort(top["idx"], kind="stable")  # candidates in pool order, as the in-memory path keeps them
        cand = top["idx"][pos]
        lp = top["lp"][:, pos]
        # the blocks' log-probabilities were checked when scored: the greedy stage takes them unchecked
        sel = A._greedy_batchbald(np.exp(lp.astype(np.float64)), top["cond"][pos].astype(np.float64), batch_size,
                                  n_configs, spec.seed, spec.stream)
        return (sel.scores.astype(lp.dtype), cand[sel.indices], "batchbald",
                {**info, **sel.info, "n_candidates": int(cand.size)})
    if a in ("power", "softmax"):
        return top["keys"], top["idx"], f"stochastic_{a}", {**info, "method": "bald", "beta": spec.beta}
    return top["keys"], top["idx"], a, info


def score_pool(pool, acquisition="bald", batch_size=1, *, model=None, n_samples=100, seed=0, stream=0,
               n_configs=1000, max_candidates=None, beta=1.0, columns=(), exclude=None, chunk_size=16384,
               split_every=8, scheduler=None) -> PoolScores:
    """Score a pool and pick ``batch_size`` points (see the module docstring).

    Parameters
    ----------
    pool : (N, D) inputs (with ``model``) or (S, N, C) log-probabilities; a
        ``dask.array.Array`` chunked along N, or a NumPy array scored in blocks
        of ``chunk_size`` points in process (no dask needed).
    acquisition : a name in ``ACQUISITIONS`` (single-point scores, "batchbald",
        "random", the stochastic "power", "softmax", "softrank" on BALD).
    batch_size : int, the points picked.
    model : a posterior of this package or ``Networks``; None for a log-probability pool.
        ``networks(model, n_samples, seed, stream)`` is drawn once.
    n_samples, seed, stream : the predictive's samples and the Philox stream of
        the networks, the random keys and BatchBALD's configurations.
    n_configs : BatchBALD's label configurations per greedy step.
    max_candidates : BatchBALD's M, the BALD top-M gathered for the greedy
        stage; default ``max(1000, 20 * batch_size)`` for a Dask pool, all
        points for a NumPy pool (exactly ``bg.acquisition.batchbald``).
    beta : temperature of the stochastic acquisitions.
    columns : names of ``bg.acquisition.METHODS`` returned per point (N,).
    exclude : global indices never picked (an active-learning loop's labelled set).
    chunk_size : points per block of a NumPy pool.
    split_every : blocks merged per task of the top-k tree.
    scheduler : passed to ``dask.compute`` (None: dask's default, a
        ``distributed.Client`` when one is active).

    Returns
    -------
    PoolScores: ``indices`` (batch_size,) global pool indices, best first;
    ``scores`` their scores (BatchBALD: the batch's mutual information after
    each pick; stochastic: the perturbed keys); ``columns``; ``info`` with
    ``n_candidates`` (BatchBALD's M), ``n_blocks``, ``pool_size``, ``seed``.
    """
    acquisition = C.option(acquisition, "acquisition", ACQUISITIONS)
    batch_size = C.integer(batch_size, "batch_size", 1)
    beta = float(C.real(beta, "beta"))
    if not (np.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be finite and >= 0, got {beta}")
    columns = _column_names(columns)
    seed = _random.resolve_seed(seed)
    stream = _random.check_stream(stream)
    n_configs = C.integer(n_configs, "n_configs", 1)
    split_every = C.integer(split_every, "split_every", 2)
    lazy = is_dask_array(pool)
    net = None if model is None else networks(model, n_samples, seed, stream)
    shape = tuple(pool.shape) if lazy else np.shape(pool)
    if net is None:
        if len(shape) != 3:
            raise ValueError(f"a pool without model must be log-probabilities (S, N, C), got shape {shape}")
        n_classes = shape[2]
    else:
        if len(shape) != 2 or shape[1] != net.n_inputs:
            raise ValueError(f"pool must be inputs (N, {net.n_inputs}) for this model, got shape {shape}")
        if net.likelihood not in ("categorical", "bernoulli"):
            raise ValueError(f"acquisition needs a classifier; the model's likelihood is {net.likelihood!r}")
        n_classes = net.mlp["sizes"][-1] if net.likelihood == "categorical" else 2
    axis = 1 if net is None else 0
    N = known_rows(pool, "pool", axis) if lazy else shape[axis]
    if N < 1:
        raise ValueError("pool is empty")
    if batch_size > N:
        raise ValueError(f"batch_size ({batch_size}) exceeds the pool size ({N})")
    if exclude is not None:
        exclude = _excluded(exclude, N)
        if N - exclude.size < batch_size:  # checked before the pool is scored
            raise ValueError(f"batch_size ({batch_size}) exceeds the points that can be picked "
                             f"({N - exclude.size}: {exclude.size} of {N} excluded)")
    if acquisition == "batchbald" and n_configs < n_classes:
        raise ValueError(f"n_configs ({n_configs}) must be >= the number of classes ({n_classes})")
    k = batch_size
    if acquisition == "batchbald":
        if max_candidates is None:
            k = N if not lazy else max(1000, 20 * batch_size)
        else:
            k = C.integer(max_candidates, "max_candidates", 1)
            if k < batch_size:
                raise ValueError(f"max_candidates ({k}) must be >= batch_size ({batch_size})")
    from . import _backend

    spec = _Spec(acquisition, k, columns, beta, seed, stream, _backend.get_backend())
    if lazy:
        top, cols, n_blocks = _score_dask(pool, net, spec, exclude, split_every, scheduler)
    else:
        top, cols, n_blocks = _score_numpy(pool, net, spec, exclude, N, chunk_size)
    keys, idx, method, info = _finish(top, spec, n_configs, N, batch_size)
    info["n_blocks"] = n_blocks
    return PoolScores(np.asarray(idx, dtype=np.int64), keys, method, info, cols)


def _column_names(columns):
    """The per-point columns asked for: a name, a sequence of names or None (none)."""
    if columns is None:
        return ()
    if isinstance(columns, str):  # one name (iterating it gave its letters)
        columns = (columns,)
    try:
        columns = tuple(columns)
    except TypeError:
        raise TypeError(f"columns must be a sequence of names of bg.acquisition.METHODS, got "
                        f"{type(columns).__name__}") from None
    return tuple(C.option(c, "columns", A.METHODS) for c in columns)


def _excluded(exclude, N):
    """Sorted distinct int64 pool indices of ``exclude``, checked: a 1-d integer array in [0, N).
    (Cast to int64 unchecked, a boolean mask excluded points 0 and 1, floats were truncated and
    indices out of range were ignored.)"""
    e = C.to_numpy(exclude, "exclude")
    if e.size == 0:
        return np.empty(0, dtype=np.int64)
    if e.ndim != 1:
        raise ValueError(f"exclude must be a 1-d array of pool indices, got shape {e.shape}")
    if e.dtype.kind not in "iu":
        hint = " (for a boolean mask pass np.flatnonzero(mask))" if e.dtype.kind == "b" else ""
        raise TypeError(f"exclude must hold integer pool indices, got dtype {e.dtype}{hint}")
    if e.min() < 0 or e.max() >= N:
        raise ValueError(f"exclude must hold pool indices in [0, {N}), got values in [{e.min()}, {e.max()}]")
    return np.unique(e.astype(np.int64))


def _score_numpy(pool, net, spec, exclude, N, chunk_size):
    chunk_size = C.integer(chunk_size, "chunk_size", 1)
    if net is None:
        from .uncertainty import check_log_probs

        pool = check_log_probs(pool, "pool")
    else:
        pool = C.as_array(pool, "pool", ndim=2)
    cols = {c: [] for c in spec.columns}
    top = None
    for i0 in range(0, N, chunk_size):
        i1 = min(N, i0 + chunk_size)
        blk = pool[i0:i1] if net is not None else pool[:, i0:i1]
        p = _block(blk, net, spec, (i0, i1), exclude)
        for c in spec.columns:
            cols[c].append(p["cols"][c])
        top = _merge([_strip(p)] if top is None else [top, _strip(p)], spec)  # memory: one block + the top-k
    return top, {c: np.concatenate(v) for c, v in cols.items()}, -(-N // chunk_size)


def _graph(pool, net, spec, exclude, split_every):
    """The delayed top-k tree and per-block columns of a Dask pool: (top, {name: [parts]}, n_blocks)."""
    dask, _ = require_dask("a Dask pool")
    if net is None:
        pool = pool.rechunk({0: -1, 2: -1})
        starts = np.concatenate([[0], np.cumsum(pool.chunks[1])])
    else:
        pool = pool.rechunk({1: -1})
        starts = np.concatenate([[0], np.cumsum(pool.chunks[0])])
    blocks = pool.to_delayed().reshape(-1)
    # One graph node each: a worker fetches the networks (and the excluded set) once, not per block.
    net_d = dask.delayed(net, pure=True, traverse=False) if net is not None else None
    excl_d = dask.delayed(exclude, pure=True, traverse=False) if exclude is not None else None
    block = dask.delayed(_block, pure=True)
    # a block of no rows (dask keeps empty chunks: compute_chunk_sizes() after a filter, an empty
    # partition of a table) has nothing to score; its checks refused it, and the whole pool with it
    parts = [block(b, net_d, spec, (int(starts[i]), int(starts[i + 1])), excl_d) for i, b in enumerate(blocks)
             if starts[i + 1] > starts[i]]
    strip = dask.delayed(_strip, pure=True)
    merge = dask.delayed(_merge, pure=True)
    level = [strip(p) for p in parts]
    while len(level) > 1:
        level = [merge(level[i:i + split_every], spec) for i in range(0, len(level), split_every)]
    getcol = dask.delayed(operator.getitem, pure=True)
    col_parts = {c: [getcol(getcol(p, "cols"), c) for p in parts] for c in spec.columns}
    return level[0], col_parts, len(parts)


def _score_dask(pool, net, spec, exclude, split_every, scheduler):
    import dask

    top, col_parts, n_blocks = _graph(pool, net, spec, exclude, split_every)
    kw = {} if scheduler is None else {"scheduler": scheduler}
    top, cols = dask.compute(top, col_parts, **kw)
    return top, {c: np.concatenate(v) for c, v in cols.items()}, n_blocks


# ---------------------------------------------------------------- readers
def _rows(arr, chunk_size):
    if chunk_size is not None:
        arr = arr.rechunk({0: C.integer(chunk_size, "chunk_size", 1)})
    return arr


def from_zarr(path, component=None, *, chunk_size=None):
    """A Dask array of a Zarr store (``component`` names an array in a group); rows
    re-chunked to ``chunk_size`` when given."""
    _, da = require_dask("a Zarr pool")
    return _rows(da.from_zarr(path, component=component), chunk_size)


def _table_columns(columns):
    """None (every column) or a list of column names; one name may be given as a string."""
    if columns is None:
        return None
    return [columns] if isinstance(columns, str) else list(columns)  # a string's letters are not its name


def _numeric(df, path):
    """The float64 Dask array of a Dask DataFrame whose columns are all numeric (or boolean):
    a text column is a ValueError naming it here, not a conversion error raised on a worker
    when the pool is scored."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    arr = df.to_dask_array(lengths=True)
    bad = [str(c) for c, t in df.dtypes.items() if not (is_numeric_dtype(t) or is_bool_dtype(t))]
    if bad and arr.shape[0]:  # (the columns of a file without rows have no type: an empty pool)
        raise ValueError(f"{path}: columns {bad} are not numeric; choose the input columns with columns=")
    return arr.astype(np.float64)


def from_parquet(path, columns=None, *, chunk_size=None):
    """A float64 Dask array (N, len(columns)) of Parquet file(s), rows in file order."""
    require_dask("a Parquet pool")
    try:
        import dask.dataframe as dd
    except ImportError as exc:
        raise ImportError(f"a Parquet pool needs dask.dataframe (pandas, pyarrow): pip install \"bayesgrad[dask]\" "
                          f"[{exc}]") from exc
    columns = _table_columns(columns)
    df = dd.read_parquet(path)
    if columns is not None:
        missing = [c for c in columns if c not in df.columns]
        if missing:  # (a KeyError from inside the reader)
            raise ValueError(f"columns {missing} are not in {path} (its columns: {list(df.columns)})")
        df = df[columns]
    return _rows(_numeric(df, path), chunk_size)


def from_csv(path, columns=None, *, chunk_size=None, blocksize="64MB"):
    """A float64 Dask array (N, len(columns)) of CSV file(s) with a header row, rows in file order."""
    require_dask("a CSV pool on Dask")
    import dask.dataframe as dd

    df = dd.read_csv(path, usecols=_table_columns(columns), blocksize=blocksize)
    return _rows(_numeric(df, path), chunk_size)


# The exact sums (moments, expectation, log_likelihood, elbo) live in _pool_sums; imported
# last because they use the names above, and re-exported here as bg.pools.*.
from ._pool_sums import Moments, elbo, expectation, log_likelihood, moments  # noqa: E402,F401
