"""Multi-sample objectives: gradients of the importance-weighted bound

    L_K = E[log (1/K) sum_k w_k],   w_k = p(x, z_k) / q(z_k),  z_1..z_K ~ q iid

(Burda et al. 2016) with respect to the parameters of q (the encoder):
``iwae`` (its plain pathwise gradient), ``dreg`` (doubly reparameterised,
Tucker et al. 2019, for the IWAE bound and for the reweighted wake-sleep
(RWS) encoder update) and ``vimco`` (score function with the leave-one-out
geometric-mean baselines of Mnih & Rezende 2016; any q with a score,
discrete included). Call shape: see ``bayesgrad.estimators``; ``f`` is the
log joint density log p(x, z) (nats) as a function of z, ``(m, *batch) ->
(m,)``, and ``n_samples`` counts independent groups of ``k`` draws: the
estimate averages the n groups' gradients and its standard error is their
spread. ``value`` is the bound's estimate, the mean over groups of
log (1/K) sum_k w_k.

Pathwise forms need a mean-field ``Normal`` q (z = loc + scale eps) and
``grad_f``; with ``a_k = d log w_k / dz_k = grad_f(z_k) + eps_k / scale`` and
the normalised weights ``wt_k = w_k / sum_j w_j``:

* ``iwae``: ``sum_k wt_k (a_k dz_k/dtheta - d log q(z_k(theta)) / dtheta)``,
  i.e. loc: ``sum_k wt_k grad_f(z_k)``, scale: ``sum_k wt_k (grad_f(z_k) eps_k + 1/scale)``;
* ``dreg`` (IWAE): ``sum_k wt_k^2 a_k dz_k/dtheta``;
* ``dreg`` (RWS): ``sum_k (wt_k - wt_k^2) a_k dz_k/dtheta``, the doubly
  reparameterised form of the wake-phase direction ``E[sum_k wt_k d log q(z_k)/dtheta]``
  (z fixed), which RWS *ascends*; it is not a gradient of L_K.
"""
from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from .. import _backend
from .. import _checks as C
from ..distributions import Distribution, Normal
from ..distributions._base import sum_to_shape
from ._base import Estimate, eval_f, eval_like, grads_from_terms, per_sample_size, setup


def _groups(f, dist, n_samples, k, seed, stream, minimum_k=1, per_sample=False):
    n, seed, stream = setup(f, dist, n_samples, seed, stream, per_sample=per_sample)
    k = C.integer(k, "k", minimum_k)
    C.check_allocation(C.n_bytes((n * k, per_sample_size(dist)), np.float64, copies=4),
                       f"n_samples={n}, k={k}: the n k draws and per-draw terms")
    z = dist.sample(n * k, seed=seed, stream=stream)
    fz = eval_f(f, z, np.float64, "f (the log joint density)")
    lq = np.asarray(dist.log_prob(z), dtype=np.float64).reshape(n * k, -1).sum(1)
    logw = (fz - lq).reshape(n, k)
    bound = logsumexp(logw, axis=1) - np.log(k)  # (n,)
    wt = np.exp(logw - logsumexp(logw, axis=1, keepdims=True))  # (n, k)
    return n, k, seed, z, logw, bound, wt


def _bound_stats(bound):
    n = bound.shape[0]
    return float(bound.mean()), float(bound.std(ddof=1) / np.sqrt(n)) if n > 1 else np.inf


_MODES = {"iwae": 0, "dreg": 1, "dreg_rws": 2, "vimco": 3}


def _normal_groups(f, dist, n_samples, k, seed, stream, grad_f, mode, per_sample, name, info, minimum_k=1):
    """The Normal-q estimators in one native pass (``estimators.normal_multisample_terms``): log q,
    the weights, the bound and the per-group terms from the draws, f and grad_f."""
    n, seed, stream = setup(f, dist, n_samples, seed, stream, per_sample=per_sample)
    k = C.integer(k, "k", minimum_k)
    C.check_allocation(C.n_bytes((n * k, per_sample_size(dist)), np.float64, copies=4),
                       f"n_samples={n}, k={k}: the n k draws and per-draw terms")
    shape = tuple(dist.batch_shape)
    z = dist.sample(n * k, seed=seed, stream=stream)
    fz = eval_f(f, z, np.float64, "f (the log joint density)")
    g = None if grad_f is None else eval_like(grad_f, z, np.float64, "grad_f").reshape(n, k, -1)
    p = g.shape[2] if g is not None else int(np.prod(shape, dtype=np.int64))
    mu = np.ascontiguousarray(np.broadcast_to(np.asarray(dist.loc, dtype=np.float64), shape)).reshape(-1)
    sig = np.ascontiguousarray(np.broadcast_to(np.asarray(dist.scale, dtype=np.float64), shape)).reshape(-1)
    terms, wt, bound = np.empty((2, n, p)), np.empty((n, k)), np.empty(n)
    _backend.kernels().estimators.normal_multisample_terms(
        np.ascontiguousarray(z, dtype=np.float64).reshape(n, k, p), fz.reshape(n, k), g, mu, sig, _MODES[mode],
        terms, wt, bound)
    t = {"loc": sum_to_shape(terms[0].reshape((n,) + shape), 1, dist._param_shapes["loc"]),
         "scale": sum_to_shape(terms[1].reshape((n,) + shape), 1, dist._param_shapes["scale"])}
    grad, stderr, per = grads_from_terms(dist, t, n, per_sample)
    value, value_se = _bound_stats(bound)
    info = dict(info, k=k, ess=float((1.0 / (wt * wt).sum(1)).mean()))
    return Estimate(name, value, value_se, grad, stderr, n, n * k, seed, per, info)


def _normal_pathwise(name, f, dist, n_samples, seed, stream, k, grad_f, mode, per_sample, info):
    if not isinstance(dist, Normal):
        raise TypeError(f"{name} needs a mean-field Normal q (its pathwise form), got {type(dist).__name__}; "
                        "vimco works with any q that has a score")
    if grad_f is None or not callable(grad_f):
        raise TypeError(f"{name} needs grad_f, the gradient of the log joint density f: (m, *batch) -> (m, *batch)")
    return _normal_groups(f, dist, n_samples, k, seed, stream, grad_f, mode, per_sample, name, info)


def iwae(f, dist, n_samples, seed=0, stream=0, *, k=8, grad_f=None, per_sample=False):
    """The pathwise gradient of the IWAE bound L_K for a mean-field Normal q (module docstring).

    Parameters
    ----------
    f : callable ``(m, *batch) -> (m,)``, log p(x, z) in nats
    dist : Normal, q(z)
    n_samples : int >= 1, independent groups of k draws
    k : int >= 1, importance samples per group (k = 1: the ELBO's pathwise gradient)
    grad_f : callable ``(m, *batch) -> (m, *batch)``, d f / dz (required)
    per_sample : bool, keep the per-group terms

    Returns
    -------
    Estimate (value: the bound, nats); ``info``: k, ess (mean effective sample size of the groups' weights)
    """
    return _normal_pathwise("iwae", f, dist, n_samples, seed, stream, k, grad_f, "iwae", per_sample, {})


def dreg(f, dist, n_samples, seed=0, stream=0, *, k=8, grad_f=None, objective="iwae", per_sample=False):
    """Doubly reparameterised gradients (DReG; Tucker, Lawson, Gu & Maddison 2019) for a mean-field Normal q.

    ``objective="iwae"``: an unbiased estimate of dL_K/dtheta with lower variance
    than ``iwae`` as K grows (its signal-to-noise ratio does not vanish);
    ``objective="rws"``: the wake-phase encoder direction of reweighted
    wake-sleep (module docstring).

    Parameters
    ----------
    f, dist, n_samples, k, grad_f, per_sample : as for ``iwae``
    objective : "iwae" | "rws"

    Returns
    -------
    Estimate; ``info``: k, ess, objective
    """
    obj = C.option(objective, "objective", ("iwae", "rws"))
    return _normal_pathwise("dreg", f, dist, n_samples, seed, stream, k, grad_f, "dreg" if obj == "iwae" else "dreg_rws",
                            per_sample, {"objective": obj})


def vimco(f, dist, n_samples, seed=0, stream=0, *, k=8, per_sample=False):
    """VIMCO (Mnih & Rezende 2016): the score-function gradient of L_K with per-draw baselines.

    For draw j of a group, the learning signal is ``Lhat - Lhat_{-j}`` where
    ``Lhat = log (1/K) sum_i w_i`` and ``Lhat_{-j}`` replaces w_j by the
    geometric mean of the other K - 1 weights; the estimate is
    ``sum_j (Lhat - Lhat_{-j} - wt_j) d log q(z_j) / dtheta`` (the last term is
    the bound's own dependence on q through log w_j = log p - log q).
    Unbiased for any q with a score (Bernoulli, Categorical, Normal, ...).

    Parameters
    ----------
    f : callable ``(m, *batch) -> (m,)``, log p(x, z) in nats
    dist : Distribution with ``score``
    n_samples : int >= 1, independent groups of k draws
    k : int >= 2
    per_sample : bool

    Returns
    -------
    Estimate (value: the bound); ``info``: k, ess
    """
    if isinstance(dist, Distribution) and type(dist).score is Distribution.score:
        raise TypeError(f"{type(dist).__name__} has no score function")
    if isinstance(dist, Normal):  # log q, the signal and the scores in one native pass
        return _normal_groups(f, dist, n_samples, k, seed, stream, None, "vimco", per_sample, "vimco", {},
                              minimum_k=2)
    n, k, seed, z, logw, bound, wt = _groups(f, dist, n_samples, k, seed, stream, minimum_k=2, per_sample=per_sample)
    # L - L_{-j} - w~_j, L_{-j} with w_j replaced by the geometric mean of the others (native kernel)
    signal = np.empty((n, k))
    _backend.kernels().estimators.vimco_signal(np.ascontiguousarray(logw, dtype=np.float64), signal)
    terms = {}
    for name, sc in dist.score(z).items():
        s = np.asarray(sc, dtype=np.float64)
        s = s.reshape((n, k) + s.shape[1:])
        terms[name] = (signal.reshape((n, k) + (1,) * (s.ndim - 2)) * s).sum(1)
    grad, stderr, per = grads_from_terms(dist, terms, n, per_sample)
    value, value_se = _bound_stats(bound)
    return Estimate("vimco", value, value_se, grad, stderr, n, n * k, seed, per,
                    {"k": k, "ess": float((1.0 / (wt * wt).sum(1)).mean())})
