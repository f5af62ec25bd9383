"""REBAR (Tucker et al. 2017) and RELAX (Grathwohl et al. 2018) for Bernoulli and
Categorical logits: unbiased, with a control variate on the Concrete
relaxation of the discrete sample. Call shape: see ``bayesgrad.estimators``.

For one draw, with z a relaxed sample whose hard threshold H(z) is b, and z~
a draw of z given b (the conditional relaxation),

    g = [f(b) - c(z~)] d log q(b)/d eta + d c(z)/d eta - d c(z~)/d eta,

where d c(z~)/d eta differentiates through z~(eta, v, b) with b held fixed.
c is a ``RelaxSurrogate``: REBAR's ``scale * f(relax_lambda(z))`` or RELAX's
``scale * f(relax_lambda(z)) + r_rho(z)`` / ``r_rho(z)``; each call takes one Adam
step on its parameters down the gradient of sum_p E[g_p^2] (the variance plus a
term independent of them), after forming the estimate with the old ones.

Bernoulli(sigmoid(eta)): z = eta + logit(w), b = 1[z > 0] with w = 1 - u and u
the uniform of ``dist.sample`` (so b is the sample ``dist.sample`` draws); given
b, w~ is uniform on (1 - p, 1) (b = 1) or (0, 1 - p) (b = 0), z~ = eta + logit(w~).
Categorical(softmax(eta)) over K classes: z = log p + G (Gumbel), b = argmax z;
given b, with E = -log v: z~_b = -log E_b and z~_i = -log(E_i / p_i + E_b)
(Gumbel truncated below z~_b), the Gumbel-max construction of the RELAX paper's
appendix.

For a single Bernoulli coordinate the REINFORCE term depends on b alone and
E[g | b] = (f(b) - scale * f(relax_lambda(0))) d log q(b)/d eta: the relaxed-f
control variate then acts only as the constant baseline scale * f(1/2) and adds
zero-mean noise besides (README, toy-problem table). Its gains come from f's
dependence on the other coordinates and from a network term (RELAX).

f sees ``(m, *batch)`` floats in {0, 1} / (0, 1) for a Bernoulli and one-hot /
simplex points ``(m, *batch, K)`` for a Categorical, so that one f serves
both the discrete sample and its relaxation; ``grad_f`` is shaped like its input.
Arrays handed to f, grad_f or a surrogate's ``network`` may come from buffers the
estimator reuses on later calls, but only once nothing refers to them: a callable
may keep its input.
"""
from __future__ import annotations

import numpy as np

from .. import _backend
from .. import _scratch
from .. import _checks as C
from .. import random as _random
from ..control_variates import RelaxSurrogate
from .._numerics import log_softmax
from ._base import check_finite, eval_f, eval_like, mean_stderr, per_sample_size, setup
from .discrete import _discrete_estimate, _family

_LOG_LAMBDA_STEP = 1e-4  # central difference in log lambda for d g / d log lambda


class _Draws:
    """Per-sample quantities of one call, flattened to (n, P) over the logits' coordinates (P = D K values for
    D Categorical coordinates of K classes); with ``relax = (lam, fd)`` also the relaxation ``y`` of [z; z~]
    (``_relaxed_parts``).

    u = random.uniform((n, *shape), seed, stream) and v the same on the stream folded with
    "relax/conditional", generated inside the draws' pass of the family's sample kernel (the same
    values). Bernoulli: z = eta + logit(1 - u), b = 1[u < p] = 1[z > 0]; given b, w~ = 1 - p + p v
    (b = 1) or (1 - p) v (b = 0), z~ = eta + logit(w~), and d z~ / d eta with b and v fixed (stable log
    forms there). Categorical: z = log p - log(-log u), b the one-hot argmax per row of K; with
    E = -log v, z~_b = -log E_b, z~_i = -log(E_i / p_i + E_b) = log p_i - log(E_i + E_b p_i) and
    r_i = E_i / (E_i + E_b p_i) (0 at b; the forms without 1 / p_i, finite where p_i underflows),
    d z~ / d eta = diag(r) - p r^T. All five per-sample arrays [z, z~, dz~/deta or r, b,
    score] in one scratch buffer (f gets b itself: the pool reuses a buffer only once nothing refers to
    it), z and z~ its first two rows, so that [z; z~] is one (2n, P) array for the relaxation and the
    surrogate network; the relaxation at one temperature, or at three for the temperature's finite
    difference, in the same pass (y: f's and grad_f's input, a scratch buffer too)."""

    def __init__(self, fam, dist, n, seed, stream, pool=None, relax=None):
        self.fam = fam
        pool = _scratch.fresh() if pool is None else pool
        eta = np.asarray(dist.logits, dtype=np.float64)
        ke = _backend.kernels().estimators
        if fam == "bernoulli":
            self.shape = tuple(dist.batch_shape)
            eta = np.ascontiguousarray(np.broadcast_to(eta, self.shape).reshape(-1), dtype=np.float64)
            P = eta.size
        else:
            self.shape = tuple(np.broadcast_shapes(eta.shape, tuple(dist.batch_shape) + eta.shape[-1:]))
            self.K = K = self.shape[-1]
            lp = np.ascontiguousarray(log_softmax(np.broadcast_to(eta, self.shape)).reshape(-1, K))
            self.p = np.exp(lp)  # (D, K)
            P = lp.size
        self.draws = draws = pool.array("relax/draws", (5, n, P))
        self.zz = draws[:2].reshape(2 * n, P)
        self.z, self.zt = self.zz[:n], self.zz[n:]
        b, self.score = draws[3], draws[4]
        if fam == "bernoulli":
            self.dzt = draws[2]
        else:
            self.r = draws[2]
        self.y, lam, step = None, 1.0, _LOG_LAMBDA_STEP
        if relax is not None:
            lam, fd = relax
            self.y = pool.array("relax/y", (3, 2 * n, P) if fd else (2 * n, P))
        sample = ke.relax_bernoulli_sample if fam == "bernoulli" else ke.relax_categorical_sample
        sample(eta if fam == "bernoulli" else lp, seed, stream, _random.fold_in(stream, "relax/conditional"),
               float(lam), step, draws, self.y)
        self.points = b.reshape((n,) + self.shape)


def _relaxed_parts(f, grad_f, dr, lam, fd, dtype, pool):
    """A_f = -f(y~) score + jz(d f(y)/dz) - jt(d f(y~)/dz~), the relaxed-f term per unit scale (n, P) at
    temperature lam, or with ``fd`` the (2, n, P) array [A_f; A_f at lam e^{step} minus A_f at lam e^{-step}]
    (step = _LOG_LAMBDA_STEP; the temperature's central difference); f(y~) at lam; and grad_f's values, whose
    finiteness the caller checks only when the sums it forms from them are not finite (a non-finite value
    reaches them: inf * 0 and NaN * 0 are NaN)."""
    n = dr.z.shape[0]
    # the relaxations at every temperature came with the draws (relax_*_sample), f and grad_f once on
    # all of them (2n points per temperature), then the parts in one native pass
    ke = _backend.kernels().estimators
    m = 2 * n * (3 if fd else 1)
    y = dr.y.reshape(m, -1)
    yd = y.reshape((m,) + dr.shape).astype(dtype, copy=False)
    fv = eval_f(f, yd, np.float64)  # contiguous
    gv = eval_like(grad_f, yd, np.float64, "grad_f", finite=False).reshape(m, -1)
    out = pool.array("relax/a_f", ((2,) if fd else ()) + dr.z.shape)
    if dr.fam == "categorical":
        ke.relax_categorical_part(fv, gv, y, dr.draws, dr.p, float(lam), _LOG_LAMBDA_STEP, out)
    elif fd:  # [A_f; the difference] in one (2, n, P) array, as relax_bernoulli_combine takes it
        ke.relax_bernoulli_part_fd(fv, gv, y, dr.dzt, dr.score, float(lam), _LOG_LAMBDA_STEP, out)
    else:
        ke.relax_bernoulli_part(fv[n:], gv[:n], gv[n:], y[:n], y[n:], dr.dzt, dr.score, float(lam), out)
    return out, fv[n:2 * n], gv


def _estimate(*args):
    with _scratch.session() as pool:
        return _estimate_in(pool, *args)


def _estimate_in(pool, name, f, dist, n_samples, seed, stream, grad_f, surrogate, train, baseline, per_sample):
    n, seed, stream = setup(f, dist, n_samples, seed, stream, per_sample=per_sample)
    fam = _family(dist, ("bernoulli", "categorical"))
    loo = C.option("none" if baseline is None else baseline, "baseline", ("none", "loo")) == "loo"
    if loo and n < 2:
        raise ValueError("baseline='loo' needs n_samples >= 2")
    if surrogate.relaxed_f and (grad_f is None or not callable(grad_f)):
        raise TypeError(f"{name} with a relaxed-f control variate needs grad_f, the gradient of f on the "
                        "relaxed space (or a RelaxSurrogate(relaxed_f=False) for RELAX)")
    if not isinstance(train, (bool, np.bool_)):
        raise TypeError("train must be True or False")
    # with the temperature tuned, its finite difference in log lambda needs the parts at
    # lambda e^{+-step} too: the relaxation at all three temperatures comes with the draws
    fd = bool(train and surrogate.tune_temperature)
    # the per-sample arrays of a call, (n, P) each: 5 draws, the relaxation at 1 or 3 temperatures on 2n
    # points, grad_f's values there, A_f and up to 3 of g (setup's 4 let K = 20000 classes ask for 37 GiB)
    copies = 8 + (2 + 2 + 1) * (3 if fd else 1) if surrogate.relaxed_f else 8
    C.check_allocation(C.n_bytes((n, per_sample_size(dist)), np.float64, copies=copies),
                       f"n_samples={n}: {name}'s per-sample arrays")
    dr = _Draws(fam, dist, n, seed, stream, pool, (surrogate.temperature, fd) if surrogate.relaxed_f else None)
    surrogate.bind(dr.z.shape[1])
    dt = dist.dtype
    # f gets b itself (a scratch buffer the pool reuses only once nothing refers to it; nothing reads
    # it after f), converted only for a float32 distribution
    fb = eval_f(f, dr.points.astype(dt, copy=False), np.float64)
    lam, sc = surrogate.temperature, surrogate.scale
    n_eval = n
    a_f, f_t, g_vals = 0.0, 0.0, None
    if surrogate.relaxed_f:  # all three temperatures from one call of f and grad_f
        a_f, f_t, g_vals = _relaxed_parts(f, grad_f, dr, lam, fd, dt, pool)
        n_eval += 2 * n * (3 if fd else 1)
    net = surrogate.mlp is not None
    rt, r, gx = 0.0, None, None
    if net:  # r and its input gradient at z and z~ in one engine call
        r, gx = surrogate.network(dr.zz)
        rt = r[n:]
    ke = _backend.kernels().estimators
    # g in one pass, with its sums of squares and of products with A_f and the temperature difference
    # (the training step's), and with a network also the transposed Jacobians applied to g and the rows'
    # sums of g score (the network gradient's inputs): Bernoulli [g; g dz~/d eta], Categorical [g; Jz^T g; Jt^T g]
    cat = fam == "categorical"
    gg = pool.array("relax/g", (((3,) if cat else (2,)) if net else ()) + dr.z.shape)
    gs = pool.array("relax/gs", (n,)) if net else None
    a_in = a_f if surrogate.relaxed_f else None
    if cat:
        sums = ke.relax_categorical_combine(fb, dr.draws, dr.p, a_in, sc, r, gx, gg, gs)
    else:
        sums = ke.relax_bernoulli_combine(fb, dr.score, a_in, sc, r, gx, dr.dzt, gg, gs)
    if g_vals is not None and not np.isfinite(sums).all():
        check_finite(g_vals, "grad_f")  # else the terms overflowed (the update reports it when training)
    objective = sums[0] / n
    g = gg[0] if net else gg
    if train:
        grad = np.zeros_like(surrogate.params)
        if surrogate.relaxed_f:
            grad[0] = 2.0 * sums[1] / n
            if surrogate.tune_temperature:
                grad[1] = 2.0 * sc * sums[2] / n / (2.0 * _LOG_LAMBDA_STEP)
        if net:
            # d/d rho of sum_p E[g_p^2]: the weight w = 2 g / n on each term's network part, i.e.
            # -r(z~) (g . score) 2 / n, plus the input gradients' derivatives along Jz^T w at z and
            # -Jt^T w at z~: one forward-over-reverse pass of the network on [z; z~] (exact)
            dirs = (gg[1:] if cat else gg).reshape(2 * n, -1)  # [Jz^T g; Jt^T g], contiguous
            c, e = pool.array("relax/c", (2 * n,)), pool.array("relax/e", (2 * n,))
            c[:n], e[:n], e[n:] = 0.0, 2.0 / n, -2.0 / n
            np.multiply(gs, -2.0 / n, out=c[n:])
            grad[2:] = surrogate.network_mixed_vjp(dr.zz, dirs, c, e)
        surrogate.update(grad, objective)
    if loo:
        # the residual f(b) - c(z~) of the other samples, independent of sample i: unbiased
        resid = fb - sc * f_t - rt
        g = g - ((resid.sum() - resid) / (n - 1))[:, None] * dr.score
    terms = g.reshape((n,) + dr.shape)
    value, value_se = mean_stderr(fb)
    info = {"surrogate": surrogate, "temperature": lam, "scale": sc, "second_moment": objective,
            "trained": bool(train), "baseline": "loo" if loo else "none"}
    return _discrete_estimate(name, dist, terms, n, n_eval, seed, value, value_se, per_sample, info)


def rebar(f, dist, n_samples, seed=0, stream=0, *, grad_f=None, temperature=0.5, scale=1.0, surrogate=None,
          train=True, lr=0.01, baseline=None, per_sample=False):
    """REBAR (Tucker et al. 2017) for Bernoulli or Categorical logits. Unbiased.

    The control variate is ``scale * f(relax_lambda(z))`` (module docstring);
    scale (eta in the paper) and the temperature lambda are tuned online to
    minimise the estimator's variance: pass the same ``surrogate`` to
    successive calls (e.g. ``minimize(..., estimator_options={"surrogate": s})``).

    Parameters
    ----------
    f : callable ``(m, *batch) -> (m,)`` (Bernoulli) or ``(m, *batch, K) -> (m,)`` (Categorical)
    dist : Bernoulli or Categorical with ``logits``
    n_samples : int >= 1
    grad_f : callable, the gradient of f on the relaxed space, shaped like its input (required)
    temperature, scale : floats, the starting lambda and eta of a new surrogate
    surrogate : RelaxSurrogate with ``hidden=None`` and ``relaxed_f=True``, or None (a new one,
        ``RelaxSurrogate(hidden=None, temperature=temperature, scale=scale, lr=lr)``)
    train : bool, take one Adam step on (scale, log lambda) after the estimate
    lr : float, Adam's step size of a new surrogate
    baseline : None | "loo"
        "loo": the residual f(b_i) - c(z~_i) minus the mean of the other samples'
        residuals (a baseline together with the control variate; n_samples >= 2).
        The surrogate is still tuned on the single-sample estimator without it.
    per_sample : bool

    Returns
    -------
    Estimate; ``info``: surrogate, temperature, scale (those used), second_moment
    (sum over coordinates of the mean of g^2, the quantity the tuning lowers), trained.
    """
    if surrogate is None:
        surrogate = RelaxSurrogate(hidden=None, relaxed_f=True, temperature=temperature, scale=scale, lr=lr)
    elif not isinstance(surrogate, RelaxSurrogate):
        raise TypeError(f"surrogate must be a RelaxSurrogate, got {type(surrogate).__name__}")
    elif surrogate.hidden is not None or not surrogate.relaxed_f:
        raise ValueError("rebar's surrogate is the relaxed f alone: RelaxSurrogate(hidden=None, relaxed_f=True); "
                         "use relax for a network")
    return _estimate("rebar", f, dist, n_samples, seed, stream, grad_f, surrogate, train, baseline, per_sample)


def relax(f, dist, n_samples, seed=0, stream=0, *, grad_f=None, surrogate=None, hidden=(10,), train=True,
          lr=0.01, baseline=None, per_sample=False):
    """RELAX (Grathwohl et al. 2018) for Bernoulli or Categorical logits. Unbiased.

    The control variate ``c_phi(z) = scale * f(relax_lambda(z)) + r_rho(z)``
    (the first term only when ``grad_f`` is given) with ``r_rho`` a small
    ``bg.nn.MLP`` on the flattened relaxed sample, all of phi trained online to
    minimise the estimator's variance (module docstring; the network's
    gradients through the native engine). Pass the same ``surrogate`` to
    successive calls so that it keeps learning.

    Parameters
    ----------
    f : callable ``(m, *batch) -> (m,)`` (Bernoulli) or ``(m, *batch, K) -> (m,)`` (Categorical)
    dist : Bernoulli or Categorical with ``logits``
    n_samples : int >= 1
    grad_f : callable or None, the gradient of f on the relaxed space (enables the relaxed-f term)
    surrogate : RelaxSurrogate or None
        None: a new one, ``RelaxSurrogate(hidden=hidden, relaxed_f=grad_f is not None, lr=lr)``.
    hidden : tuple of int, the hidden widths of a new surrogate's network
    train : bool, take one Adam step on phi after the estimate
    lr : float, Adam's step size of a new surrogate
    baseline : None | "loo"
        "loo": the residual f(b_i) - c(z~_i) minus the mean of the other samples'
        residuals (a baseline together with the control variate; n_samples >= 2).
        The surrogate is still tuned on the single-sample estimator without it.
    per_sample : bool

    Returns
    -------
    Estimate; ``info`` as for ``rebar``.
    """
    if surrogate is None:
        surrogate = RelaxSurrogate(hidden=hidden, relaxed_f=grad_f is not None, lr=lr)
    elif not isinstance(surrogate, RelaxSurrogate):
        raise TypeError(f"surrogate must be a RelaxSurrogate, got {type(surrogate).__name__}")
    return _estimate("relax", f, dist, n_samples, seed, stream, grad_f, surrogate, train, baseline, per_sample)
