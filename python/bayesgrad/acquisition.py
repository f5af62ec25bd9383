"""Active-learning acquisition: pick the pool points whose labels would teach
the model most.

Call shape shared by every function::

    sel = bg.acquisition.<method>(pool, batch_size=1, ...)
    sel.indices  # (batch_size,) pool indices, best first
    sel.scores   # (batch_size,) their scores (higher = more informative)

``pool`` is one of

* an array of log-probabilities ``(S, N, C)`` (sample axis first);
* an iterable of such chunks ``(S, n_chunk, C)`` (a generator streams: only
  one chunk is held at a time; indices count points across the chunks);
* a callable ``pool(start, stop) -> (S, stop - start, C)`` together with
  ``pool_size=N``; it is called on slices of ``chunk_size`` points.

Single-point scores (BALD, max entropy, variation ratios, mean std, margin)
stream with a running top-``batch_size`` selection, so memory is one chunk
plus the selection; ties are broken by the lower pool index. A point's scores
are bit-identical however the pool is chunked (the kernels run on aligned
groups of ``_GROUP`` pool indices), and the random keys of ``random`` and
``stochastic_batch`` belong to pool indices (``point_uniforms``), so the
picks do not depend on the chunking either; ``bg.pools`` scores Dask pools
with the same functions.

BatchBALD (Kirsch et al., 2019) needs the candidates' predictions at every
greedy step, so the candidates are held in memory: all pool points by
default, or, with ``max_candidates=M``, only the M points of highest BALD
score, kept while streaming (the usual pre-filter for large pools: BatchBALD's
score of a point never exceeds its BALD score plus the batch's joint
information, and in practice its picks lie far inside the BALD top-M for M a
few hundred times the batch size). Joint label probabilities are products of
up to ``batch_size`` probabilities, so BatchBALD works in float64 whatever
the input dtype.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import _backend
from ._codes import PointScore
from . import _checks as C
from . import random as _random
from .uncertainty import _prob_tol, check_normalised, check_log_probs

__all__ = ["Selection", "bald", "max_entropy", "variation_ratios", "mean_std", "margin", "random",
           "batchbald", "joint_entropy", "scores", "score_columns", "top_k", "point_uniforms", "stochastic_keys",
           "stochastic_select", "stochastic_batch", "greedy_batchbald", "STOCHASTIC_MODES", "METHODS"]

METHODS = ("bald", "max_entropy", "variation_ratios", "mean_std", "margin")


@dataclass
class Selection:
    """Selected pool points: ``indices`` (k,) best first and their ``scores`` (k,).

    For BatchBALD ``scores[j]`` is the estimated mutual information between
    the labels of the first j+1 points and the parameters; ``exact[j]`` says
    whether the joint entropy of step j was enumerated (True) or sampled.
    """

    indices: np.ndarray
    scores: np.ndarray
    method: str
    info: dict = field(default_factory=dict)


# ---------------------------------------------------------------- pools
def _is_array(pool):
    """One array of any library (an exporter ``C.to_numpy`` converts: NumPy, DLPack or the
    array interface), as opposed to an iterable of chunks or a callable pool."""
    return isinstance(pool, np.ndarray) or any(
        hasattr(pool, a) for a in ("__array__", "__array_interface__", "__array_struct__", "__dlpack__"))


def _iter_pool(pool, pool_size, chunk_size):
    """Yield (offset, log_probs chunk (S, n, C)) with consistent S and C."""
    chunk_size = C.integer(chunk_size, "chunk_size", 1)
    shape = None
    offset = 0

    def checked(a):
        nonlocal shape
        a = check_log_probs(a, "pool chunk")
        if shape is None:
            shape = (a.shape[0], a.shape[2])
        elif (a.shape[0], a.shape[2]) != shape:
            raise ValueError(f"pool chunks must share S and C: expected (S={shape[0]}, *, C={shape[1]}), "
                             f"got {a.shape}")
        return a

    if _is_array(pool):
        if pool_size is not None:
            raise ValueError("pool_size is only used with a callable pool")
        a = checked(pool)
        yield 0, a
        return
    if callable(pool):
        if pool_size is None:
            raise ValueError("a callable pool needs pool_size (the number of pool points)")
        n = C.integer(pool_size, "pool_size", 1)
        for start in range(0, n, chunk_size):
            stop = min(n, start + chunk_size)
            a = checked(pool(start, stop))
            if a.shape[1] != stop - start:
                raise ValueError(f"pool({start}, {stop}) returned {a.shape[1]} points, expected {stop - start}")
            yield start, a
        return
    if pool_size is not None:
        raise ValueError("pool_size is only used with a callable pool")
    try:
        it = iter(pool)
    except TypeError:
        raise TypeError("pool must be an (S, N, C) array, an iterable of chunks or a callable "
                        f"pool(start, stop); got {type(pool).__name__}") from None
    any_chunk = False
    for chunk in it:
        a = checked(chunk)
        any_chunk = True
        yield offset, a
        offset += a.shape[1]
    if not any_chunk:
        raise ValueError("pool is empty")


#: Points per kernel call of the single-point scores. The kernels' rounding depends on a
#: point's position in the call and on the call's size (SIMD lanes and tails, reduction
#: order), so every call covers one aligned range [g G, (g + 1) G) of global pool indices,
#: padded with uniform points where the pool or its block ends: each point is then always
#: computed in the same position of a call of the same size, and its scores are
#: bit-identical however the pool is chunked, streamed or split across workers.
_GROUP = 128


def _aligned(a, offset, fn):
    """Apply ``fn(group (S, G, C)) -> tuple of (G,) arrays`` to the aligned groups of the
    points offset..offset+n-1 of ``a`` (S, n, C); returns the tuple of (n,) arrays."""
    S, n, Cn = a.shape
    lead = offset % _GROUP
    outs = None
    pos = 0  # next point of a to cover
    while pos < n:
        g0 = pos - lead if pos == 0 else pos  # the group's first point, relative to a (may be < 0)
        g1 = g0 + _GROUP
        lo, hi = max(g0, 0), min(g1, n)
        if lo == g0 and hi == g1:
            grp = a[:, lo:hi]
        else:
            grp = np.full((S, _GROUP, Cn), -math.log(Cn), dtype=a.dtype)
            grp[:, lo - g0:hi - g0] = a[:, lo:hi]
        res = fn(np.ascontiguousarray(grp))
        if outs is None:
            outs = tuple(np.empty(n, dtype=r.dtype) for r in res)
        for o, r in zip(outs, res):
            o[lo:hi] = r[lo - g0:hi - g0]
        pos = hi
    return outs


#: BALD values at most this many units of rounding of the point's entropy are rounding (see _decompose).
_BALD_RTOL = {np.dtype(d): 64 * np.finfo(d).eps for d in (np.float32, np.float64)}


def _decompose(a, offset):
    """(total, aleatoric, epistemic) entropies (n,) of checked log-probabilities a (S, n, C)
    whose first point has global index ``offset`` (computed in aligned groups)."""
    k = _backend.kernels()

    def one(g):
        t, al, ep = (np.empty(g.shape[1], dtype=g.dtype) for _ in range(3))
        check_normalised(lambda: k.metrics.decompose(g, t, al, ep), g, "pool")
        # BALD is a difference of entropies: where the samples agree (S = 1, a deterministic
        # posterior) it is rounding, different on each backend, and the power acquisition's
        # log(BALD) turned that rounding into picks (1e-16 outweighed 0 by e^32). Within
        # rounding of the entropy it is 0, on every backend.
        ep[ep <= _BALD_RTOL[g.dtype] * t] = 0
        return t, al, ep

    return _aligned(a, offset, one)


def _point_score(method, a, offset):
    k = _backend.kernels()
    kind = PointScore[method]

    def one(g):
        out = np.empty(g.shape[1], dtype=g.dtype)
        check_normalised(lambda: k.acquisition.point_scores(g, kind, out), g, "pool")
        return (out,)

    return _aligned(a, offset, one)[0]


def _chunk_scores(method, a, offset=0):
    if method in ("bald", "max_entropy"):
        t, _, ep = _decompose(a, offset)
        return ep if method == "bald" else t
    return _point_score(method, a, offset)


def score_columns(log_probs, methods, offset=0):
    """Single-point scores of checked log-probabilities (S, n, C) whose first point has
    global pool index ``offset``, for each name in ``methods`` (of ``METHODS``): dict
    name -> (n,) array of the pool's dtype, plus ``"aleatoric"`` (the mean entropy,
    BatchBALD's conditional term) whenever BALD or max entropy is asked for (one pass of
    the entropy decomposition gives all three). A point's scores are bit-identical
    whichever block holds it (see ``_GROUP``)."""
    log_probs = check_log_probs(log_probs, "log_probs")
    methods = [C.option(m, "methods", METHODS) for m in methods]
    out = {}
    if "bald" in methods or "max_entropy" in methods:
        out["max_entropy"], out["aleatoric"], out["bald"] = _decompose(log_probs, offset)
    for m in methods:
        if m not in out:
            out[m] = _point_score(m, log_probs, offset)
    return out


def top_k(scores, idx, k):
    """The k best of ``scores`` (n,) with pool indices ``idx`` (n,): (scores (k,), idx (k,)),
    score descending, lower pool index first on ties -- an order that does not depend on how
    the pool was split, so top-k of blocks' top-k is the top-k of the pool."""
    scores, idx = np.asarray(scores), np.asarray(idx)
    if scores.ndim != 1 or idx.shape != scores.shape:
        raise ValueError(f"scores and idx must be 1-d of one length, got shapes {scores.shape} and {idx.shape}")
    k = C.integer(k, "k", 0)
    order = np.lexsort((idx, -scores.astype(np.float64)))[:k]
    return scores[order], idx[order]


def point_uniforms(index, seed, stream):
    """One float64 uniform per pool point: element ``index[i]`` of the Philox stream
    ``fold_in(stream, "acquisition")`` (``index`` (n,) int64 global pool indices >= 0), so a
    point's random key is the same whichever block or subset it is drawn in. Cost O(n): a
    sparse ``index`` (say the merged top-k of a huge pool) is drawn block by block, never
    through the whole range between its smallest and largest index."""
    st = _random.fold_in(stream, "acquisition")
    index = np.asarray(index)
    if index.dtype.kind not in "iu":
        raise TypeError(f"index must hold integer pool indices, got dtype {index.dtype}")
    index = index.astype(np.int64)
    if index.size == 0:
        return np.empty(index.shape)
    lo, hi = int(index.min()), int(index.max()) + 1
    if lo < 0:
        raise ValueError(f"index must hold pool indices >= 0, got {lo}")
    if hi - lo <= 2 * index.size + 256:
        # dense enough that one vectorised draw of the range costs about as much as the points
        return _random.uniform(hi - lo, seed=seed, stream=st, offset=lo)[index - lo]
    return _uniforms_at(index, _random.resolve_seed(seed), st)


def _uniforms_at(index, seed, stream):
    """float64 uniforms of the stream elements ``index`` (any shape, int64 >= 0), bit-identical
    to ``random.uniform``'s: float64 element i is words (2 (i mod 2), 2 (i mod 2) + 1) of
    Philox block i // 2 of (seed, stream) (docs/design.md, "RNG"), so each element needs only
    its own block."""
    from ._numpy.random import u01_f64  # the word-pair -> float64 map of every backend

    flat = index.reshape(-1)
    blk = (flat // 2).astype(np.uint64)
    ctr = np.empty((flat.size, 4), dtype=np.uint32)
    ctr[:, 0], ctr[:, 1] = blk & np.uint64(0xFFFFFFFF), blk >> np.uint64(32)
    ctr[:, 2], ctr[:, 3] = stream & 0xFFFFFFFF, stream >> 32
    w = _random.philox4x32(ctr, np.array([seed & 0xFFFFFFFF, seed >> 32], dtype=np.uint32))
    rows, j = np.arange(flat.size), 2 * (flat % 2)
    return u01_f64(w[rows, j], w[rows, j + 1]).reshape(index.shape)


def stochastic_keys(s, mode, beta, u):
    """Gumbel-perturbed log-weights of the stochastic batch acquisitions: points with the
    largest keys are a draw without replacement with probabilities proportional to the
    weights. ``s`` (n,) float64 scores ("power", "softmax") or ranks, 1 = best
    ("softrank"); ``u`` (n,) the points' uniforms (``point_uniforms``)."""
    mode = C.option(mode, "mode", STOCHASTIC_MODES)
    gumbel = -np.log(-np.log(u))
    if mode == "power":
        return beta * np.log(np.maximum(s, 1e-30)) + gumbel
    if mode == "softmax":
        return beta * s + gumbel
    return -beta * np.log(s) + gumbel


def stochastic_select(s, batch_size, mode, beta, *, seed, stream, index=None):
    """Stochastic batch selection from scores ``s`` (n,) of the points ``index`` (n,)
    (default 0..n-1): (keys (k,), index (k,)), best first. Soft-rank ranks the points
    among those given."""
    mode = C.option(mode, "mode", STOCHASTIC_MODES)
    s = np.asarray(s, dtype=np.float64)
    n = s.shape[0]
    index = np.arange(n, dtype=np.int64) if index is None else np.asarray(index, dtype=np.int64)
    if mode == "softrank":
        rank = np.empty(n)
        rank[np.lexsort((index, -s))] = np.arange(1, n + 1)
        s = rank
    return top_k(stochastic_keys(s, mode, beta, point_uniforms(index, seed, stream)), index, batch_size)


def scores(pool, method="bald", *, pool_size=None, chunk_size=65536):
    """Score every pool point with a single-point method (``METHODS``); (N,) array."""
    method = C.option(method, "method", METHODS)
    return np.concatenate([_chunk_scores(method, a, off) for off, a in _iter_pool(pool, pool_size, chunk_size)])


def _select(method, pool, batch_size, pool_size, chunk_size):
    method = C.option(method, "method", METHODS)
    batch_size = C.integer(batch_size, "batch_size", 1)
    best_s = best_i = None
    n_seen = 0
    for off, a in _iter_pool(pool, pool_size, chunk_size):
        s = _chunk_scores(method, a, off)
        i = np.arange(off, off + a.shape[1], dtype=np.int64)
        n_seen = max(n_seen, off + a.shape[1])
        if best_s is not None:
            s, i = np.concatenate([best_s, s]), np.concatenate([best_i, i])
        best_s, best_i = top_k(s, i, batch_size)
    if batch_size > n_seen:
        raise ValueError(f"batch_size ({batch_size}) exceeds the pool size ({n_seen})")
    return Selection(best_i, best_s, method)


def _single_doc(name, what):
    return f"""{what}

    Parameters
    ----------
    pool : (S, N, C) log-probabilities, an iterable of chunks, or a callable
        ``pool(start, stop)`` (see the module docstring).
    batch_size : int
        Number of points to select (the top scores; ties to the lower index).
    pool_size : int, optional
        Number of points of a callable pool.
    chunk_size : int
        Points per call of a callable pool.

    Returns
    -------
    Selection with ``indices`` and ``scores`` (batch_size,), best first.
    """


def bald(pool, batch_size=1, *, pool_size=None, chunk_size=65536) -> Selection:
    return _select("bald", pool, batch_size, pool_size, chunk_size)


def max_entropy(pool, batch_size=1, *, pool_size=None, chunk_size=65536) -> Selection:
    return _select("max_entropy", pool, batch_size, pool_size, chunk_size)


def variation_ratios(pool, batch_size=1, *, pool_size=None, chunk_size=65536) -> Selection:
    return _select("variation_ratios", pool, batch_size, pool_size, chunk_size)


def mean_std(pool, batch_size=1, *, pool_size=None, chunk_size=65536) -> Selection:
    return _select("mean_std", pool, batch_size, pool_size, chunk_size)


def margin(pool, batch_size=1, *, pool_size=None, chunk_size=65536) -> Selection:
    return _select("margin", pool, batch_size, pool_size, chunk_size)


bald.__doc__ = _single_doc("bald", "BALD: mutual information between label and parameters, "
                           "H[mean_s p_s] - mean_s H[p_s] (nats) (Houlsby et al., 2011).")
max_entropy.__doc__ = _single_doc("max_entropy", "Max entropy: predictive entropy H[mean_s p_s] (nats).")
variation_ratios.__doc__ = _single_doc(
    "variation_ratios", "Variation ratios 1 - f_mode / S, f_mode the number of samples whose argmax "
    "is the most frequent class (Freeman, 1965).")
mean_std.__doc__ = _single_doc(
    "mean_std", "Mean standard deviation: mean over classes of the population std over samples of "
    "p_c (Kampffmeyer et al., 2016).")
margin.__doc__ = _single_doc(
    "margin", "Margin score 1 - (p_(1) - p_(2)) of the mean prediction's two largest probabilities.")


def random(pool=None, batch_size=1, *, pool_size=None, chunk_size=65536, seed=0, stream=0) -> Selection:
    """Uniformly random points without replacement: the ``batch_size`` points
    with the largest Philox uniforms (element i of stream
    ``fold_in(stream, "acquisition")`` belongs to pool point i).

    Parameters
    ----------
    pool : (S, N, C) log-probabilities, an iterable of chunks, a callable
        ``pool(start, stop)`` (see the module docstring), or None; only its
        size N is used
    batch_size : int
        Number of points to select.
    pool_size : int, optional
        Number of points of a callable pool, or of the pool when ``pool`` is None.
    chunk_size : int
        Points per call of a callable pool, and per block of uniforms.
    seed, stream : int
        The Philox key of the draws.

    Returns
    -------
    Selection with ``indices`` (batch_size,) and their uniforms as ``scores``
    (batch_size,), largest first.
    """
    batch_size = C.integer(batch_size, "batch_size", 1)
    seed = _random.resolve_seed(seed)
    st = _random.fold_in(stream, "acquisition")
    if pool is None:
        if pool_size is None:
            raise ValueError("random needs a pool or pool_size")
        n = C.integer(pool_size, "pool_size", 1)
    elif isinstance(pool, np.ndarray) and pool_size is None:
        n = check_log_probs(pool, "pool").shape[1]
    else:
        n = sum(a.shape[1] for _, a in _iter_pool(pool, pool_size, chunk_size))
    if batch_size > n:
        raise ValueError(f"batch_size ({batch_size}) exceeds the pool size ({n})")
    best_s = best_i = None
    step = C.integer(chunk_size, "chunk_size", 1)
    for off in range(0, n, step):
        m = min(step, n - off)
        u = _random.uniform(m, seed=seed, stream=st, offset=off)
        i = np.arange(off, off + m, dtype=np.int64)
        if best_s is not None:
            u, i = np.concatenate([best_s, u]), np.concatenate([best_i, i])
        best_s, best_i = top_k(u, i, batch_size)
    return Selection(best_i, best_s, "random", {"seed": seed})


# ---------------------------------------------------------------- BatchBALD
def _configs(probs_sel, n_configs, seed, stream, step):
    """Sampled configurations of the selected points: P (S, M) and weights 1/(M p(m))."""
    S = probs_sel.shape[0]
    K = probs_sel.shape[1]
    u = _random.uniform((n_configs, K + 1), seed=seed, stream=_random.fold_in(stream, step))
    P = np.empty((S, n_configs), dtype=np.float64)
    _backend.kernels().acquisition.batch_configs(np.ascontiguousarray(probs_sel), u, P)
    pm = np.maximum(P.mean(axis=0), np.finfo(np.float64).tiny)
    return P, 1.0 / (n_configs * pm)


def _exact_configs(probs_sel):
    """All C^K configurations of the selected points: P (S, C^K), unit weights."""
    S = probs_sel.shape[0]
    P = np.ones((S, 1))
    for j in range(probs_sel.shape[1]):
        P = (P[:, :, None] * probs_sel[:, j, None, :]).reshape(S, -1)
    return P, np.ones(P.shape[1])


def _batch_P(probs_sel, n_configs, seed, stream, step):
    K, Cn = probs_sel.shape[1], probs_sel.shape[2]
    if K == 0:
        return np.ones((probs_sel.shape[0], 1)), np.ones(1), True
    if K * math.log(Cn) <= math.log(n_configs) + 1e-9:
        return (*_exact_configs(probs_sel), True)
    return (*_configs(probs_sel, n_configs, seed, stream, step), False)


def _joint_with(probs, P, w):
    out = np.empty(probs.shape[1], dtype=np.float64)
    _backend.kernels().acquisition.joint_entropy(probs, P, w, out)
    return out


#: Scores within this many units of rounding (relative to the terms they are differences
#: of) count as ties. A mutual information is a difference of entropies, so candidates
#: with equal true scores differ by rounding, and differently on each backend.
_TIE_RTOL = 64 * np.finfo(np.float64).eps


def _first_best(score, magnitude):
    """Position of the best score, the first (lowest pool index: candidates are in pool
    order) among those within rounding of it, so every backend breaks ties alike."""
    best = np.max(score)
    tol = _TIE_RTOL * np.max(np.where(np.isfinite(score), magnitude, 0.0))
    return int(np.flatnonzero(score >= best - tol)[0])


def batchbald(pool, batch_size=10, n_configs=1000, *, seed=0, stream=0, max_candidates=None, pool_size=None,
              chunk_size=65536) -> Selection:
    """BatchBALD (Kirsch, van Amersfoort & Gal, 2019), greedy.

    Step j adds the candidate i maximising
    ``H(y_1..y_{j-1}, y_i) - sum_{b in batch+i} mean_s H[p_s(y_b)]``,
    the mutual information between the batch's joint label and the
    parameters. The joint entropy of the already selected points is
    enumerated exactly while ``C^(j-1) <= n_configs``; beyond, ``n_configs``
    label configurations are drawn from the joint predictive (sample s
    uniformly, then each label from p_s) with Philox uniforms of stream
    ``fold_in(fold_in(stream, "acquisition"), j)``, and weighted by 1/p(config)
    (importance weights turning the draws into an estimate of the entropy).
    The candidate's own label is always summed exactly. With
    ``batch_size=1`` this is BALD's top point.

    Parameters
    ----------
    pool : (S, N, C) log-probabilities, an iterable of chunks or a callable
    batch_size : int, <= number of candidates
    n_configs : int
        Budget of label configurations per step (>= C).
    seed, stream : the Philox stream of the sampled configurations.
    max_candidates : int, optional
        Keep only this many highest-BALD points while streaming (see module
        docstring); default all points.

    Returns
    -------
    Selection: ``indices`` (batch_size,) in the greedy order, ``scores`` the
    batch's mutual information after each addition (nats, non-decreasing up
    to sampling error); ``info["exact"]`` per step.
    """
    batch_size = C.integer(batch_size, "batch_size", 1)
    n_configs = C.integer(n_configs, "n_configs", 1)
    if max_candidates is not None:
        max_candidates = C.integer(max_candidates, "max_candidates", 1)
        if max_candidates < batch_size:
            raise ValueError(f"max_candidates ({max_candidates}) must be >= batch_size ({batch_size})")
    seed = _random.resolve_seed(seed)

    # Gather candidates: probabilities (float64), conditional entropies, BALD, pool index.
    keep_p, keep_h, keep_b, keep_i = [], [], [], []
    dtype = None
    for off, a in _iter_pool(pool, pool_size, chunk_size):
        dtype = a.dtype
        N = a.shape[1]
        _, al, ep = _decompose(a, off)
        keep_p.append(np.exp(a.astype(np.float64)))
        keep_h.append(al.astype(np.float64))
        keep_b.append(ep.astype(np.float64))
        keep_i.append(np.arange(off, off + N, dtype=np.int64))
        if max_candidates is not None:
            b = np.concatenate(keep_b)
            if b.shape[0] > max_candidates:
                i = np.concatenate(keep_i)
                _, top = top_k(b, i, max_candidates)
                sel = np.searchsorted(i, np.sort(top))  # i is increasing: keep pool order
                p = np.concatenate(keep_p, axis=1)[:, sel]
                keep_p, keep_h = [p], [np.concatenate(keep_h)[sel]]
                keep_b, keep_i = [b[sel]], [i[sel]]
    probs = np.ascontiguousarray(np.concatenate(keep_p, axis=1))
    cond = np.concatenate(keep_h)
    idx = np.concatenate(keep_i)
    # the candidates' probabilities come from the checked pool: the greedy stage needs no second check
    sel = _greedy_batchbald(probs, cond, batch_size, n_configs, seed, stream)
    return Selection(idx[sel.indices], sel.scores.astype(dtype), "batchbald", {**sel.info, "n_candidates": idx.size})


def greedy_batchbald(probs, cond, batch_size, n_configs=1000, *, seed=0, stream=0) -> Selection:
    """BatchBALD's greedy stage on gathered candidates (the loop of ``batchbald``).

    Parameters
    ----------
    probs : (S, M, C) probabilities of the M candidates, in pool order (ties go
        to the earlier candidate): finite, in [0, 1], each (s, m) row summing
        to 1 within the tolerance of the other metrics for the array's dtype
        (computed in float64)
    cond : (M,) finite mean entropies mean_s H[p_s(y_m)] of the candidates, nats
        (``score_columns(...)["aleatoric"]``)
    batch_size, n_configs, seed, stream : as ``batchbald``

    Returns
    -------
    Selection with ``indices`` into the M candidates.
    """
    p = C.as_array(probs, "probs", ndim=3)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("probs must be probabilities in [0, 1]")
    tol = _prob_tol(p.dtype, p.shape[2])
    dev = float(np.abs(p.sum(axis=2, dtype=np.float64) - 1.0).max())
    if dev > tol:
        raise ValueError(f"probs rows (over the last axis) must sum to one within {tol:.2g}; "
                         f"found a deviation of {dev:.3g}")
    cond = C.as_array(cond, "cond", dtype=np.float64, ndim=1)
    batch_size = C.integer(batch_size, "batch_size", 1)
    n_configs = C.integer(n_configs, "n_configs", 1)
    return _greedy_batchbald(np.ascontiguousarray(p, dtype=np.float64), cond, batch_size, n_configs, seed, stream)


def _greedy_batchbald(probs, cond, batch_size, n_configs, seed, stream) -> Selection:
    """greedy_batchbald on probabilities the caller has checked (float64 (S, M, C))."""
    S, Nc, Cn = probs.shape
    if cond.shape != (Nc,):
        raise ValueError(f"cond must have shape ({Nc},), got {cond.shape}")
    if batch_size > Nc:
        raise ValueError(f"batch_size ({batch_size}) exceeds the number of candidates ({Nc})")
    if n_configs < Cn:
        raise ValueError(f"n_configs ({n_configs}) must be >= the number of classes ({Cn})")
    seed = _random.resolve_seed(seed)
    st = _random.fold_in(stream, "acquisition")
    chosen, vals, exact = [], [], []
    cond_sum = 0.0
    for j in range(batch_size):
        P, w, is_exact = _batch_P(probs[:, chosen, :], n_configs, seed, st, j)
        je = _joint_with(probs, P, w)
        score = je - (cond_sum + cond)
        score[chosen] = -np.inf
        i = _first_best(score, np.abs(je) + cond_sum + np.abs(cond))
        chosen.append(i)
        vals.append(score[i])
        exact.append(is_exact)
        cond_sum += cond[i]
    return Selection(np.asarray(chosen, dtype=np.int64), np.asarray(vals), "batchbald",
                     {"exact": exact, "seed": seed, "n_candidates": Nc})


def joint_entropy(log_probs, indices, n_configs=None, *, seed=0, stream=0) -> float:
    """Entropy (nats) of the joint predictive label distribution of the points
    ``indices`` of ``log_probs`` (S, N, C): exact enumeration when ``n_configs``
    is None or C^(K-1) <= n_configs, else the importance-weighted estimate
    BatchBALD uses (configurations of the first K-1 points sampled, the last
    point's label summed exactly)."""
    a = check_log_probs(log_probs)
    idx = np.asarray(indices)
    if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
        raise ValueError("indices must be a non-empty 1-d integer array")
    if idx.min() < 0 or idx.max() >= a.shape[1]:
        raise ValueError(f"indices must be in [0, {a.shape[1]})")
    t, al, ep = (np.empty(a.shape[1], dtype=a.dtype) for _ in range(3))
    check_normalised(lambda: _backend.kernels().metrics.decompose(a, t, al, ep), a, "log_probs")
    probs = np.exp(a[:, idx, :].astype(np.float64))
    K = idx.size
    big = n_configs is None
    n_configs = a.shape[2] ** (K - 1) if big else C.integer(n_configs, "n_configs", 1)
    seed = _random.resolve_seed(seed)
    P, w, _ = _batch_P(probs[:, :K - 1, :], n_configs, seed, _random.fold_in(stream, "acquisition"), K - 1)
    return float(_joint_with(np.ascontiguousarray(probs[:, K - 1:, :]), P, w)[0])


# ---------------------------------------------------------------- stochastic batches
STOCHASTIC_MODES = ("power", "softmax", "softrank")


def stochastic_batch(pool, batch_size=10, method="bald", mode="power", beta=1.0, *, seed=0, stream=0,
                     pool_size=None, chunk_size=65536) -> Selection:
    """Stochastic batch acquisition (Kirsch, Farquhar, Atighehchian, Jesson,
    Branchaud-Charron & Gal, 2023): ``batch_size`` points drawn without
    replacement with probabilities proportional to ``score^beta`` (``"power"``,
    scores clipped at 1e-30), ``exp(beta score)`` (``"softmax"``) or
    ``rank^-beta`` (``"softrank"``, rank 1 = the best score), by Gumbel-top-k.

    As cheap as one single-point scoring pass and, per the paper, about as
    good as BatchBALD. The Gumbel noise of pool point i comes from element i
    of stream ``fold_in(stream, "acquisition")``, so the picks do not depend
    on how the pool is chunked. ``scores`` of the result are the perturbed
    keys that ranked the picks.

    Parameters
    ----------
    pool : (S, N, C) log-probabilities, an iterable of chunks, or a callable
        ``pool(start, stop)`` (see the module docstring).
    batch_size : int
        Number of points to draw.
    method : str
        The single-point score (``METHODS``) the probabilities are built from.
    mode : {"power", "softmax", "softrank"}
    beta : float >= 0
        The inverse temperature; 0 draws uniformly.
    seed, stream : int
        The Philox key of the Gumbel noise.
    pool_size : int, optional
        Number of points of a callable pool.
    chunk_size : int
        Points per call of a callable pool.

    Returns
    -------
    Selection with ``indices`` (batch_size,) in the order drawn and ``scores``
    (batch_size,), the perturbed keys.
    """
    mode = C.option(mode, "mode", STOCHASTIC_MODES)
    beta = float(C.scalar(beta, "beta"))
    if not (np.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be finite and >= 0, got {beta}")
    batch_size = C.integer(batch_size, "batch_size", 1)
    s = scores(pool, method, pool_size=pool_size, chunk_size=chunk_size).astype(np.float64)
    n = s.shape[0]
    if batch_size > n:
        raise ValueError(f"batch_size ({batch_size}) exceeds the pool size ({n})")
    seed = _random.resolve_seed(seed)
    best_s, best_i = stochastic_select(s, batch_size, mode, beta, seed=seed, stream=stream)
    return Selection(best_i, best_s, f"stochastic_{mode}", {"seed": seed, "method": method, "beta": beta})

