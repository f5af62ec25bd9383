"""Predictives of a Laplace approximation at inputs X (N, D) that the caller has
checked: the GLM (linearised) output distribution ``f ~ N(f(θ*), J P⁻¹ Jᵀ)`` with
its link approximations (probit, Monte Carlo, Laplace bridge), and the NN-sampling
predictive (the network run per posterior sample). ``glm``, ``nn_sampling`` and
``from_samples`` return the keyword arguments of a ``bg.nn.Predictive``.
"""
from __future__ import annotations

import numpy as np

from .. import _backend
from .. import nn as _nn
from .. import random as _random
from .._codes import Activation
from .._numerics import likelihood_log_probs as _log_probs
from .curvature import LinearHead, _LastLayerNet, _MLPNet, _SubnetNet

_IDENTITY = int(Activation.identity)
# activations of the sampling predictive's S-sample forward per row chunk (elements)
_NN_CHUNK_ELEMS = 1 << 24

__all__ = ["LINKS", "functional_variance", "glm", "nn_sampling", "from_samples"]

LINKS = ("probit", "mc", "bridge", "bridge_norm")


def functional_variance(curv, post, X):
    """GLM output mean f (N, C) and covariance f_var (N, C, C) = J P⁻¹ Jᵀ, float64, for the
    model and θ* of ``curv`` (a ``Curvature``) and a factorised posterior ``post``.

    Diagonal and Kronecker posteriors go through the native layer-by-layer kernel
    (``curvature.mlp_glm_fvar``: the C output directions back-propagated, no Jacobians);
    a last layer's features are computed once per chunk. Full and low-rank posteriors
    multiply Jacobian chunks (native for a whole MLP) of at most 2**25 elements, or for
    a linear head use the dense covariance once. Memory is bounded at any N."""
    model = curv.model
    # a subnetwork has no layers of its own: Jacobian chunks whatever the structure
    factors = None if isinstance(model, _SubnetNet) else post.glm_factors()
    if factors is not None:
        return _factored_functional_variance(model, curv.theta, factors, X)
    if isinstance(model, LinearHead) and len(X) * model.n_outputs > model.n_params:
        return _head_functional_variance(model, curv.theta, post, X)
    fs, vs = [], []
    for f, J in curv._jacobians(X):
        vs.append(post.functional_variance(J))
        fs.append(f)
    return np.concatenate(fs).astype(np.float64), np.concatenate(vs)


def _factored_functional_variance(model, theta, factors, X):
    """f, f_var through ``curvature.mlp_glm_fvar`` for P⁻¹ given by ``Posterior.glm_factors``:
    a whole MLP on X, a linear head (one linear layer) on its features."""
    k = _backend.kernels()
    structure, rot, var = factors
    dt = model.dtype
    rot, var = np.ascontiguousarray(rot, dt), np.ascontiguousarray(var, dt)
    N, Co = X.shape[0], model.n_outputs
    f, fvar = np.empty((N, Co), dt), np.empty((N, Co, Co), dt)
    if isinstance(model, _MLPNet):
        cfg = k.curvature.GlmConfig(_nn.kernel_net_config(k, tuple(int(v) for v in model.mlp.sizes), model.code), int(structure))
        k.curvature.mlp_glm_fvar(cfg, theta, X, rot, var, f, fvar)   # chunks rows inside
    else:
        # a linear head is a one-layer network on its features (no activation applies)
        cfg = k.curvature.GlmConfig(_nn.kernel_net_config(k, (model.n_features, Co), _IDENTITY), int(structure))
        feats = model.features if isinstance(model, _LastLayerNet) else None
        rows = max(1, min(N, (1 << 22) // max(model.n_features, 1)))
        for s in range(0, N, rows):
            Phi = np.ascontiguousarray(X[s:s + rows] if feats is None else feats(X[s:s + rows]), dt)
            k.curvature.mlp_glm_fvar(cfg, theta, Phi, rot, var, f[s:s + rows], fvar[s:s + rows])
    return f.astype(np.float64), fvar.astype(np.float64)


def _head_functional_variance(model, theta, post, X):
    """f_var of a linear head from the dense covariance Σ (P, P): J_n = [I_C ⊗ φ_nᵀ, I_C], so with
    φ̃ = [φ, 1] and Σ̃ the covariance reordered into per-class blocks (W_c, b_c),
    f_var[n, c, d] = φ̃ᵀ Σ̃_cd φ̃. Only the blocks d ≥ c are formed (GEMMs of Φ̃ with
    Σ̃'s block rows): N F² C(C+1)/2 multiply-adds in the model's dtype, instead of
    laplace-torch's N C P² for J Σ Jᵀ."""
    Co, F = model.n_outputs, model.n_features
    St = _head_blocks(post, Co, F, model.dtype)
    F1 = F + 1
    fs, vs = [], []
    rows = max(1, min(len(X), (1 << 24) // (Co * F1)))
    for s in range(0, len(X), rows):
        Xc = X[s:s + rows]
        Phi = model.features(Xc) if isinstance(model, _LastLayerNet) else Xc
        n = Phi.shape[0]
        Pt = np.empty((n, F1), model.dtype)
        Pt[:, :F], Pt[:, F] = Phi, 1
        v = np.empty((n, Co, Co))
        for c in range(Co):
            U = (Pt @ St[c * F1:(c + 1) * F1, c * F1:]).reshape(n, Co - c, F1)
            v[:, c, c:] = np.einsum("ndj,nj->nd", U, Pt)
            v[:, c + 1:, c] = v[:, c, c + 1:]
        vs.append(v)
        fs.append(model.forward(theta, Xc))
    return np.concatenate(fs).astype(np.float64), np.concatenate(vs)


def _head_blocks(post, Co, F, dtype):
    """Σ of a linear head reordered so that class c's weights and bias are one block
    (c (F+1) .. (c+1)(F+1)), in the model's dtype; kept on the factorised posterior
    (one per prior) so that repeated predictions reuse it."""
    cached = post.__dict__.get("_head_blocks")
    if cached is not None and cached.dtype == dtype:
        return cached
    OI = Co * F
    perm = np.concatenate([np.r_[c * F:(c + 1) * F, OI + c] for c in range(Co)])
    St = np.ascontiguousarray(post.covariance()[np.ix_(perm, perm)], dtype=dtype)
    post.__dict__["_head_blocks"] = St
    return St


def glm(likelihood, fmu, fvar, link, n_samples, seed, stream, sigma_noise):
    """The GLM predictive from the output mean fmu (N, C) and covariance fvar (N, C, C).

    With ``n_samples`` (S) outputs are also drawn from N(fmu, fvar) (Philox, seed, stream):
    sampled log-probabilities (S, N, C), or sampled means for gaussian. Classification
    ``probs`` is then the mean of the sampled probabilities whatever the link (one
    distribution), and the link's closed-form probabilities (probit, bridge) are
    ``link_probs``; without samples ``probs`` is the link's."""
    Fs = None
    if n_samples is not None:
        N, Co = fmu.shape
        # The same standard normals z (S, C) for every row: each row's samples are exact draws
        # of its N(fmu_n, fvar_n), and they depend on that row alone (not on the other rows or
        # their order), as the NN-sampling predictive's shared weight draws do.
        z = _random.normal((n_samples, Co), seed, stream, np.float64)
        L = np.linalg.cholesky(fvar + 1e-10 * np.eye(Co) * (1 + np.abs(fvar).max()))
        Fs = fmu + np.einsum("ncd,sd->snc", L, z)
    if likelihood == "gaussian":
        ev = np.diagonal(fvar, axis1=1, axis2=2).copy()
        out = {"mean": fmu, "epistemic_var": ev, "aleatoric_var": np.full_like(ev, sigma_noise ** 2)}
        if Fs is not None:
            out["samples_mean"] = Fs
        return out
    if link == "mc":
        return from_samples(likelihood, Fs, sigma_noise)
    vd = np.diagonal(fvar, axis1=1, axis2=2)
    if link == "probit":
        kappa = 1.0 / np.sqrt(1.0 + np.pi / 8.0 * vd)
        probs = _probs(likelihood, kappa * fmu)
    else:
        Co = fmu.shape[1]
        # Laplace bridge (Hobbhahn et al. 2022), after projecting the Gaussian onto the
        # sum-zero subspace (softmax is shift invariant), as laplace-torch does
        rs = fvar.sum(axis=2)
        tot = rs.sum(axis=1, keepdims=True)
        mu = fmu - rs * fmu.sum(axis=1, keepdims=True) / tot
        vd = vd - rs * rs / tot
        if link == "bridge_norm":
            # laplace-torch's variance correction: the mean output variance scaled to 2/C
            m = vd.mean(axis=1, keepdims=True) / np.sqrt(Co / 2.0)
            mu, vd = mu / np.sqrt(m), vd / m
        s = np.sum(np.exp(-mu), axis=1, keepdims=True)
        alpha = (1 - 2.0 / Co + np.exp(mu) * s / Co ** 2) / vd
        probs = np.nan_to_num(alpha / alpha.sum(axis=1, keepdims=True), nan=1.0)
    if Fs is None:
        return {"probs": probs}
    # One distribution: with samples, probs is their mean, so that probs, the samples and
    # the uncertainty decomposition of the samples agree; the link's closed-form
    # approximation of the same mean is kept under its own name.
    out = from_samples(likelihood, Fs, sigma_noise)
    out["link_probs"] = probs
    return out


def nn_sampling(likelihood, model, thetas, X, sigma_noise):
    """The network run per posterior sample thetas (S, P) at X (N, D) (the MLP engine's
    S-sample forward), in row chunks so that its activations stay under ~2**24 elements."""
    S, N = thetas.shape[0], X.shape[0]
    width = max(getattr(getattr(model, "mlp", None), "sizes", [model.n_inputs(), model.n_outputs]))
    rows = max(1, min(N, _NN_CHUNK_ELEMS // (S * width)))
    F = np.empty((S, N, model.n_outputs))
    for s in range(0, N, rows):
        F[:, s:s + rows] = model.forward_many(thetas, X[s:s + rows])
    return from_samples(likelihood, F, sigma_noise)


def from_samples(likelihood, F, sigma_noise):
    """Predictive from sampled outputs F (S, N, C): the mixture's probabilities, or the
    sampled means' mean and variance (gaussian)."""
    if likelihood == "gaussian":
        ev = F.var(axis=0)
        return {"mean": F.mean(axis=0), "epistemic_var": ev, "aleatoric_var": np.full_like(ev, sigma_noise ** 2),
                "samples_mean": F}
    lp = _log_probs(likelihood, F)
    m = lp.max(axis=0)
    probs = np.exp(m + np.log(np.mean(np.exp(lp - m), axis=0)))
    return {"probs": probs, "log_probs": lp}


def _probs(likelihood, F):
    return np.exp(_log_probs(likelihood, F))
