"""MAP (and MC-dropout) training of a ``bg.nn.MLP`` with native epochs: the loop
shared by ``train_map``, ``MCDropout``, the Laplace fits and online
marginal-likelihood training (``fit_point``), per-row likelihood weights
(``sample_weights``) and the training dtype rule.

Imported by ``bayesgrad.nn`` (after its own definitions) and re-exported there;
import it through ``bayesgrad.nn``.
"""
from __future__ import annotations

import numpy as np

from . import _backend
from . import _checks as C
from . import _training as _tr
from . import random as _random
from .nn import LIKELIHOODS, Predictive, likelihood_name, log_noise_vector, prepare_targets

def training_dtype(X, theta0, dtype):
    """The dtype a fit trains in: ``dtype`` if given, else that of the initial
    parameters, else float32 for float32 inputs and float64 otherwise
    (shared by the MAP, MC-dropout and MFVI fits)."""
    if dtype is not None:
        return C.float_dtype(dtype)
    if theta0 is not None:
        t = C.to_numpy(theta0, "theta0")
        return C.float_dtype(t.dtype) if t.dtype.kind == "f" else np.dtype(np.float64)
    return np.dtype(np.float32) if C.to_numpy(X, "X").dtype == np.float32 else np.dtype(np.float64)


def _training_data(mlp, X, y, lik, dt):
    Xa = mlp.check_inputs(X, dt)
    ya = prepare_targets(y, lik, mlp.sizes[-1], Xa.shape[0], dt)
    return Xa, ya


def _check_split_weights(w_train, w_val):
    """ValueError when either part of a validation split has only zero weights (nothing to fit,
    or a validation loss that never changes)."""
    for w, part in ((w_train, "training"), (w_val, "validation")):
        if not np.any(w > 0):
            raise ValueError(f"the sample weights of the {part} rows are all zero; use another seed, a "
                             "different validation fraction or no validation split")


def _targets_for(y, lik):
    """Kernel targets (N, Dy) as ``Predictive.log_likelihood`` takes them."""
    return y.reshape(-1) if lik in ("categorical", "bernoulli") else y


def sample_weights(sample_weight, N, dtype):
    """Per-row likelihood weights: None, or (N,) finite non-negative floats of ``dtype``
    with a positive sum (ValueError/TypeError naming ``sample_weight`` otherwise)."""
    if sample_weight is None:
        return None
    w = C.as_array(sample_weight, "sample_weight", dtype, ndim=1)
    if w.shape != (N,):
        raise ValueError(f"sample_weight must have shape ({N},), got {w.shape}")
    if not np.all(np.isfinite(w) & (w >= 0)):
        raise ValueError("sample_weight must be finite and >= 0")
    if not w.sum() > 0:
        raise ValueError("sample_weight must contain at least one non-zero weight (all are zero)")
    return np.ascontiguousarray(w)


def fit_point(mlp, X, y, lik, *, theta0, prior_prec, dropout_p, noise, learn_noise, epochs, batch_size, lr,
              validation, patience, seed, stream, verbose, desc, dtype=None, sample_weight=None, tol=0.0,
              epoch_hook=None):
    """The MAP / MC-dropout loop (native epochs). Returns a dict with theta,
    log_noise, history, interrupted, seed. ``sample_weight`` (N,) weights each
    row's likelihood term (None: unweighted). Early stopping counts an epoch as an
    improvement when the validation NLL falls by more than ``tol`` nats per
    validation row (per unit of validation weight).

    ``epoch_hook(e, state, prior_prec) -> dict`` runs after each epoch's minibatches
    with the live arrays (``state`` = θ (P,) then log σ, ``prior_prec`` (P,)), which it
    may change in place (online marginal-likelihood training tunes the prior and σ
    there); what it returns joins the epoch's history record."""
    dt = training_dtype(X, theta0, dtype)
    Xa, ya = _training_data(mlp, X, y, lik, dt)
    wa = sample_weights(sample_weight, Xa.shape[0], dt)
    seed = _random.resolve_seed(seed)
    stream = _random.check_stream(stream)
    batch_size = C.integer(batch_size, "batch_size", 1)
    if patience is not None:  # None: no early stopping (no validation split); 0 stopped after one epoch
        patience = C.integer(patience, "patience", 1)
    adam = _tr.adam_options(lr)
    if theta0 is None:
        theta = mlp.init(seed=seed, stream=stream, dtype=dt)
    else:
        theta = mlp.check_params(theta0, "theta0").astype(dt)
        if theta.ndim != 1:
            raise ValueError(f"theta0 must have shape ({mlp.n_params},)")
    ln = log_noise_vector(noise, lik, mlp.sizes[-1], dt)
    state = np.ascontiguousarray(np.concatenate([theta, ln]), dtype=dt)
    m, v = np.zeros_like(state), np.zeros_like(state)
    pp = np.array(np.broadcast_to(np.asarray(prior_prec, dtype=dt), (mlp.n_params,)))  # writable: epoch_hook
    tr_idx, val_idx = _tr.split_validation(Xa.shape[0], validation, seed, stream)
    Xt, yt = (Xa, ya) if val_idx is None else (Xa[tr_idx], ya[tr_idx])
    wt = wa if wa is None or val_idx is None else np.ascontiguousarray(wa[tr_idx])
    if wa is not None and val_idx is not None:
        _check_split_weights(wt, wa[val_idx])
    N = Xt.shape[0]
    drop_stream = _random.fold_in(stream, "dropout")
    k = _backend.kernels()
    net = mlp.net_config(k)
    # the kernel uses min(batch_size, N) anyway; clamped here it also fits its int64
    cfg = k.optim.MapConfig(net, LIKELIHOODS[lik], learn_noise=bool(learn_noise), dropout_p=float(dropout_p),
                            seed=seed, dropout_stream=drop_stream, batch_size=min(batch_size, N),
                            adam=k.optim.AdamConfig(**adam))
    P = mlp.n_params
    counter = {"step": 0}

    B = int(min(batch_size, N))
    n_batches = -(-N // B)

    def one_epoch(e, ctl):
        perm = _tr.permutation(N, seed, stream, e)
        parts = []
        for i0, i1 in ctl.slices(n_batches):  # ~0.1 s per native call: Ctrl-C stops promptly
            step, stats = (k.optim.map_epoch(cfg, state, m, v, counter["step"], Xt, yt, perm[i0 * B:i1 * B], pp)
                           if wt is None else
                           k.optim.map_epoch(cfg, state, m, v, counter["step"], Xt, yt, perm[i0 * B:i1 * B], pp,
                                             wt))
            counter["step"] = int(step)
            parts.append(stats)
        stats = np.concatenate(parts)
        _tr.check_finite_epoch(e, adam["lr"], stats, state)
        nll_sum = float(stats[:, 0].sum(dtype=np.float64))
        rec = {"loss": float(stats[:, 1].mean(dtype=np.float64)), "nll": nll_sum}
        if epoch_hook is not None:
            rec.update(epoch_hook(e, state, pp) or {})
        return rec

    def checkpoint():
        return state.copy(), m.copy(), v.copy(), counter["step"]

    def rollback(token):
        state[...], m[...], v[...] = token[:3]
        counter["step"] = token[3]

    validate = snapshot = restore = None
    tol = C.real(tol, "tol")
    if not (np.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite number >= 0, got {tol}")
    min_delta = 0.0
    if val_idx is not None:
        min_delta = tol * (val_idx.size if wa is None else float(wa[val_idx].sum()))
        Xv, yv = Xa[val_idx], ya[val_idx]
        wv = None if wa is None else wa[val_idx]

        def validate():
            if wv is None:
                out = np.empty(1, dtype=dt)
                k.mlp.mlp_nll_grad(net, LIKELIHOODS[lik], state[None, :P], Xv, yv, state[P:], out)
                return float(out[0])
            # the weighted validation NLL, row by row (rows of weight 0 do not count)
            F = mlp.forward(state[:P], Xv)
            per = Predictive.from_outputs(F[None], lik, np.exp(state[P:])).log_likelihood(_targets_for(yv, lik))
            return float(-np.dot(wv.astype(np.float64), np.asarray(per, np.float64).reshape(-1)))

        def snapshot():
            return state.copy()

        def restore(s):
            state[...] = s

    history, interrupted = _tr.run_epochs(epochs, one_epoch, verbose=verbose, desc=desc, validate=validate,
                                          patience=patience, snapshot=snapshot, restore=restore, sliced=True,
                                          checkpoint=checkpoint, rollback=rollback, min_delta=min_delta)
    return {"theta": state[:P].copy(), "log_noise": state[P:].copy(), "history": history,
            "interrupted": interrupted, "seed": seed, "n_steps": counter["step"]}


def train_map(mlp, X, y, likelihood="gaussian", *, theta0=None, epochs=100, batch_size=32, lr=1e-3,
              weight_decay=0.0, noise=1.0, learn_noise=False, validation=0.0, patience=10, seed=0, stream=0,
              dtype=None, verbose=0, return_info=False, sample_weight=None, tol=0.0):
    """MAP training with Adam (fused native update), Philox-shuffled minibatches.

    Minimises the whole-data-set negative log joint in nats,
    ``sum_n nll_n + 0.5 * weight_decay * |theta|^2`` (weight_decay is the
    precision of a Gaussian prior), each minibatch term rescaled by N/B.

    Parameters
    ----------
    mlp : MLP
    X : (N, d_in) array; y : targets (N,) or (N, Dy) (integer labels for categorical)
    likelihood : str
    theta0 : (P,) initial parameters (default ``mlp.init(seed)``)
    epochs, batch_size, lr : training schedule (native calls of about 0.1 s, slices of an
        epoch's minibatches; Ctrl-C stops at the next slice and undoes the unfinished epoch,
        so theta, the Adam state and the history describe the last completed epoch; a
        diverging fit raises FloatingPointError naming the epoch)
    weight_decay : float >= 0 or (P,) array of prior precisions
    noise : gaussian noise sigma (scalar or per output); learned when ``learn_noise``
    validation : fraction of rows held out (Philox split); the parameters with
        the lowest validation NLL are returned and training stops after
        ``patience`` epochs without improvement
    seed, stream : RNG (seed=None draws OS entropy, reported in the info)
    verbose : 0 silent, 1 a tqdm progress bar on a terminal (tqdm installed), 2 wherever stderr goes
    return_info : also return a dict with history (per epoch: loss, nll,
        val_loss), noise, seed, interrupted
    sample_weight : None or (N,) finite non-negative weights of the rows' likelihood
        terms, ``sum_n w_n nll_n`` (integer weights: the fit on rows repeated that many
        times); default None, unweighted. The validation loss is weighted the same way.
    tol : float >= 0, default 0: an epoch improves on the best validation NLL when it
        lowers it by more than ``tol`` nats per validation row

    Returns
    -------
    theta : (P,) array, or (theta, info)
    """
    lik = likelihood_name(likelihood)
    wd = C.as_array(weight_decay, "weight_decay")
    C.non_negative(wd, "weight_decay")
    if wd.ndim > 1 or (wd.ndim == 1 and wd.shape[0] != mlp.n_params):
        raise ValueError(f"weight_decay must be a scalar or have shape ({mlp.n_params},)")
    res = fit_point(mlp, X, y, lik, theta0=theta0, prior_prec=wd, dropout_p=0.0, noise=noise,
                    learn_noise=learn_noise, epochs=epochs, batch_size=batch_size, lr=lr, validation=validation,
                    patience=patience, seed=seed, stream=stream, verbose=verbose, desc="MAP", dtype=dtype,
                    sample_weight=sample_weight, tol=tol)
    if not return_info:
        return res["theta"]
    info = {k: res[k] for k in ("history", "interrupted", "seed", "n_steps")}
    info["noise"] = np.exp(res["log_noise"]) if lik == "gaussian" else None
    return res["theta"], info
