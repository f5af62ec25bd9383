"""NumPy twin of the curvature kernels (cpp/src/curvature.cpp).

The curvature of a network is assembled one linear layer at a time from two
per-chunk arrays: the layer's input activations ``a`` (n, I) and the
back-propagated *square-root factors* ``S`` (n, K, O) of the loss Hessian
(one column per output for the exact GGN, as BackPACK does; one column for the
empirical Fisher; one per Monte Carlo label for the sampled Fisher). The
Jacobian of that column with respect to the layer's weight W (O, I) is
``S[n, k, :] ⊗ a[n, :]`` and with respect to its bias ``S[n, k, :]``, so the
GGN of the layer is ``Σ_{n,k} (S ⊗ a)(S ⊗ a)^T``.

Every ``*_accum`` kernel ADDS the chunk's contribution to its ``out`` arrays,
so callers loop over chunks of data; memory stays O(chunk · K · P).
Parameter order in a layer: W row-major (o * I + i), then b.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._numerics import sigmoid
from .._codes import CurvatureKind, CurvatureStructure, Likelihood, from_int
from .mlp import NetConfig, act_deriv as _act_deriv, forward_trace as _forward_trace

__all__ = [
    "CurvatureConfig", "curv_sqrt_loss", "linear_diag_accum", "linear_kron_accum", "linear_jacobian",
    "gram_accum", "linear_ggn_vp", "linear_full_accum", "mlp_curv_accum", "mlp_ggn_vp",
    "GlmConfig", "mlp_glm_fvar", "mlp_jacobian",
]


def _likelihood_name(code):
    """The name of a likelihood code curvature supports (the kernels branch on names)."""
    lik = from_int(Likelihood, code, "likelihood")
    if lik == Likelihood.heteroscedastic_gaussian:
        raise ValueError("likelihood: curvature supports gaussian, categorical and bernoulli, not "
                         "heteroscedastic_gaussian")
    return lik.name


@dataclass(frozen=True)
class CurvatureConfig:
    """What the whole-network curvature kernels need besides the arrays: the
    network, the likelihood code, the curvature kind, its K square-root columns
    per point (n_cols) and the structure accumulated by ``mlp_curv_accum``.
    Twin of ``_core.curvature.CurvatureConfig``."""

    net: NetConfig
    likelihood: int
    kind: int
    n_cols: int
    structure: int = 0

    def __post_init__(self):
        _likelihood_name(self.likelihood)
        object.__setattr__(self, "likelihood", int(self.likelihood))
        object.__setattr__(self, "kind", int(from_int(CurvatureKind, self.kind, "kind")))
        if self.n_cols < 1:
            raise ValueError("CurvatureConfig: n_cols must be >= 1")
        object.__setattr__(self, "structure", int(from_int(CurvatureStructure, self.structure, "structure")))


def _softmax(f):
    z = f - f.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def curv_sqrt_loss(f, y, draws, likelihood, kind, out):
    """Square-root factors of the per-point loss Hessian at the outputs.

    Parameters
    ----------
    f : (n, C) float
        Network outputs (logits, or means for ``"gaussian"``).
    y : (n, C) float for gaussian, (n,) float class index (categorical) or 0/1 (bernoulli, C=1).
    draws : (n, K, C) standard normals (gaussian) or (n, K) uniforms in (0, 1)
        Used by ``kind="fisher_mc"`` only (pass any (n, K) array otherwise).
    likelihood : Likelihood code (gaussian, categorical or bernoulli)
    kind : CurvatureKind code (ggn, ef or fisher_mc)
    out : (n, K, C) float, written
        ``S`` with ``Σ_k S[n,k] S[n,k]^T`` = the loss Hessian (``ggn``, K=C;
        K=1 for bernoulli), the outer product of the loss gradient (``ef``,
        K=1) or its average over K sampled labels (``fisher_mc``).
        Loss Hessians follow laplace-torch: unit noise for gaussian (Λ = I).

    Returns
    -------
    float
        The chunk's loss in nats: ½Σ(y−f)² (gaussian), Σ −log p(y|f) otherwise.
    """
    likelihood = _likelihood_name(likelihood)
    kind = from_int(CurvatureKind, kind, "kind").name
    f = np.asarray(f)
    n, C = f.shape
    K = out.shape[1]
    dt = out.dtype
    if likelihood == "gaussian":
        y = np.asarray(y).reshape(n, C)
        r = f - y
        loss = 0.5 * float(np.sum(r.astype(np.float64) ** 2))
        if kind == "ggn":
            out[...] = np.eye(C, dtype=dt)[None]
        elif kind == "ef":
            out[:, 0, :] = r
        else:
            out[...] = np.asarray(draws).reshape(n, K, C) / np.sqrt(K)
        return loss
    if likelihood == "categorical":
        yi = np.asarray(y).reshape(n).astype(np.int64)
        p = _softmax(f)
        z = f - f.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1))
        loss = float(np.sum((lse - z[np.arange(n), yi]).astype(np.float64)))
        if kind == "ggn":
            sp = np.sqrt(p)
            # S[n, k, c] = sqrt(p_k) (δ_kc − p_c): Σ_k S S^T = diag(p) − p p^T
            out[...] = -sp[:, :, None] * p[:, None, :]
            idx = np.arange(C)
            out[:, idx, idx] += sp
        elif kind == "ef":
            g = p.copy()
            g[np.arange(n), yi] -= 1
            out[:, 0, :] = g
        else:
            u = np.asarray(draws).reshape(n, K)
            cdf = np.cumsum(p, axis=1)
            ys = np.minimum((u[:, :, None] > cdf[:, None, :]).sum(axis=2), C - 1)
            g = np.broadcast_to(p[:, None, :], (n, K, C)).copy()
            np.put_along_axis(g, ys[:, :, None], np.take_along_axis(g, ys[:, :, None], 2) - 1, axis=2)
            out[...] = g / np.sqrt(K)
        return loss
    # bernoulli, C == 1
    yb = np.asarray(y).reshape(n)
    fl = f[:, 0]
    p = sigmoid(fl)
    loss = float(np.sum((np.logaddexp(0.0, fl) - yb * fl).astype(np.float64)))
    if kind == "ggn":
        out[:, 0, 0] = np.sqrt(p * (1 - p))
    elif kind == "ef":
        out[:, 0, 0] = p - yb
    else:
        u = np.asarray(draws).reshape(n, K)
        out[:, :, 0] = (p[:, None] - (u < p[:, None])) / np.sqrt(K)
    return loss


def linear_diag_accum(a, S, out_w, out_b):
    """Add the chunk's GGN diagonal of a linear layer.

    a : (n, I); S : (n, K, O); out_w : (O, I) += Σ_{n,k} S² a²; out_b : (O,) += Σ_{n,k} S².
    """
    s2 = np.einsum("nko,nko->no", S, S)
    out_w += s2.T @ (a * a)
    out_b += s2.sum(axis=0)


def linear_kron_accum(a, S, out_A, out_B):
    """Add the chunk's Kronecker factors of a linear layer.

    a : (n, I); S : (n, K, O); out_A : (I, I) += a^T a; out_B : (O, O) += Σ_{n,k} S S^T.
    """
    out_A += a.T @ a
    Sf = S.reshape(-1, S.shape[2])
    out_B += Sf.T @ Sf


def linear_jacobian(a, S, out):
    """Jacobian rows of a linear layer: out (n, K, O*I + O) = [S ⊗ a, S]."""
    n, K, O = S.shape
    I = a.shape[1]
    out[:, :, : O * I] = (S[:, :, :, None] * a[:, None, None, :]).reshape(n, K, O * I)
    out[:, :, O * I:] = S


def gram_accum(J, out):
    """out (P, P) += J^T J for J (m, P) (rows of a Jacobian)."""
    out += J.T @ J


def linear_ggn_vp(a, S, V, out):
    """Matrix-free GGN-vector products of a linear layer over the chunk.

    a : (n, I); S : (n, K, O); V : (m, O*I + O) vectors in parameter order;
    out : (m, O*I + O) += (G_chunk V^T)^T, via jvp → Σ S S^T → vjp.
    """
    n, K, O = S.shape
    I = a.shape[1]
    for j in range(V.shape[0]):
        Vw = V[j, : O * I].reshape(O, I)
        u = a @ Vw.T + V[j, O * I:]                  # (n, O) output tangents
        t = np.einsum("nko,no->nk", S, u)
        r = np.einsum("nk,nko->no", t, S)
        out[j, : O * I] += (r.T @ a).reshape(-1)
        out[j, O * I:] += r.sum(axis=0)


def linear_full_accum(a, S, out):
    """out (P, P) += Σ_{n,k} [S ⊗ a, S][S ⊗ a, S]ᵀ for one linear layer, P = O*I + O.

    Built block by block from Λ_n = Σ_k S Sᵀ (n, O, O): block (c, d) of the
    weights is Σ_n Λ_n[c, d] a_n a_nᵀ, (O(O+1)/2) I² n multiply-adds instead of
    the K O² I² n of a Jacobian Gram. a : (n, I); S : (n, K, O).
    """
    n, K, O = S.shape
    I = a.shape[1]
    lam = np.einsum("nkc,nkd->ncd", S, S)
    for c in range(O):
        out[c * I:(c + 1) * I, c * I:O * I] += a.T @ (a[:, None, :] * lam[:, c, c:, None]).reshape(n, -1)
        out[c * I:(c + 1) * I, O * I:] += a.T @ lam[:, c, :]
    out[O * I:, O * I:] += lam.sum(axis=0)
    iu = np.triu_indices(O * I + O, 1)
    out[iu[1], iu[0]] = out[iu]


def _check_sqrt_args(C, K, likelihood, kind):
    if K < 1:
        raise ValueError("n_cols must be >= 1")
    if likelihood == "bernoulli" and C != 1:
        raise ValueError("bernoulli needs 1 output")
    if kind == "ef" and K != 1:
        raise ValueError("n_cols must be 1 for the empirical Fisher")
    if kind == "ggn" and K != (1 if likelihood == "bernoulli" else C):
        raise ValueError("n_cols must be the number of outputs for the GGN (1 for bernoulli)")


def _mlp_chunk(c, params, X, y, draws):
    """Checked forward trace and output square-root factors of one chunk."""
    L, activation, n_cols = c.net.layout, c.net.activation, c.n_cols
    likelihood, kind = _likelihood_name(c.likelihood), CurvatureKind(c.kind).name
    if params.ndim != 1 or params.shape[0] != L.n_params:
        raise ValueError(f"params must have shape ({L.n_params},)")
    if X.ndim != 2 or X.shape[1] != L.sizes[0]:
        raise ValueError(f"X must have shape (n, {L.sizes[0]})")
    C, K, n = L.sizes[-1], int(n_cols), X.shape[0]
    _check_sqrt_args(C, K, likelihood, kind)
    if np.size(y) != (n * C if likelihood == "gaussian" else n):
        raise ValueError("y must have n*C elements for a gaussian likelihood, n otherwise")
    if kind == "fisher_mc" and np.size(draws) != (n * K * C if likelihood == "gaussian" else n * K):
        raise ValueError("draws must have shape (n, n_cols, C) (gaussian) or (n, n_cols)")
    zs, acts, _ = _forward_trace(L, activation, params[None], X)
    zs, acts = [z[0] for z in zs], [a[0] for a in acts]
    S = np.empty((n, K, C), params.dtype)
    loss = curv_sqrt_loss(zs[-1], y, draws, c.likelihood, c.kind, S) if n else 0.0
    return L, zs, acts, S, loss


def mlp_curv_accum(config, params, X, y, draws, out):
    """Add one data chunk's curvature of a whole MLP (mlp.hpp layout) to ``out``.

    Forward with the MLP engine, square-root factors S (n, n_cols, C) of the
    loss Hessian at the output (``curv_sqrt_loss``), back-propagated through
    every layer as (S W) ⊙ f'(z), and per layer ``linear_diag_accum`` or
    ``linear_kron_accum``. Memory O(n · n_cols · max width).

    config : CurvatureConfig (the network, likelihood, kind, n_cols = K and the
    structure: diag, out (P,) += the diagonal, or kron, out += packed
    [A_0 (I0, I0), B_0 (O0, O0), A_1, B_1, ...] with A = Σ a aᵀ unnormalised
    and B = Σ s sᵀ); params : (P,); X : (n, d_0); y, draws : as
    ``curv_sqrt_loss``. Returns the chunk's loss (nats).
    """
    structure = CurvatureStructure(config.structure).name
    activation = config.net.activation
    L, zs, acts, G, loss = _mlp_chunk(config, params, X, y, draws)
    shapes = list(zip(L.sizes[:-1], L.sizes[1:]))
    want = L.n_params if structure == "diag" else sum(i * i + o * o for i, o in shapes)
    if out.shape != (want,):
        raise ValueError(f"out must have shape ({want},)")
    if X.shape[0] == 0:
        return 0.0
    koff = np.cumsum([0] + [i * i + o * o for i, o in shapes])
    for l in range(L.n_layers - 1, -1, -1):
        I, O = shapes[l]
        a = X if l == 0 else acts[l - 1]
        if structure == "diag":
            w = out[L.w_off[l]:L.b_off[l]].reshape(O, I)
            linear_diag_accum(a, G, w, out[L.b_off[l]:L.b_off[l] + O])
        else:
            A = out[koff[l]:koff[l] + I * I].reshape(I, I)
            B = out[koff[l] + I * I:koff[l + 1]].reshape(O, O)
            linear_kron_accum(a, G, A, B)
        if l == 0:
            break
        W = params[L.w_off[l]:L.b_off[l]].reshape(O, I)
        G = np.matmul(G, W) * _act_deriv(activation, zs[l - 1], acts[l - 1])[:, None, :]
    return loss


def mlp_ggn_vp(config, params, X, y, draws, V, out):
    """out (m, P) += one chunk's curvature-vector products ``(G V^T)^T`` of a whole MLP.

    jvp through the network (forward-mode tangents), the loss Hessian (or
    Fisher) Σ_k S Sᵀ at the output, vjp back to the parameters. Arguments as
    ``mlp_curv_accum``; V : (m, P) vectors in parameter order.
    """
    L, zs, acts, S, _ = _mlp_chunk(config, params, X, y, draws)
    if V.ndim != 2 or V.shape[1] != L.n_params:
        raise ValueError(f"V must have shape (m, {L.n_params})")
    if out.shape != V.shape:
        raise ValueError(f"out must have shape {V.shape}")
    code = config.net.activation
    for j in range(V.shape[0]):
        dprev = None
        for l in range(L.n_layers):
            I, O = L.sizes[l], L.sizes[l + 1]
            a = X if l == 0 else acts[l - 1]
            dz = a @ V[j, L.w_off[l]:L.b_off[l]].reshape(O, I).T + V[j, L.b_off[l]:L.b_off[l] + O]
            if l > 0:
                dz = dz + dprev @ params[L.w_off[l]:L.b_off[l]].reshape(O, I).T
            if l + 1 < L.n_layers:
                dprev = dz * _act_deriv(code, zs[l], acts[l])
        r = np.einsum("nk,nkc->nc", np.einsum("nkc,nc->nk", S, dz), S)
        G = r
        for l in range(L.n_layers - 1, -1, -1):
            I, O = L.sizes[l], L.sizes[l + 1]
            a = X if l == 0 else acts[l - 1]
            out[j, L.w_off[l]:L.b_off[l]] += (G.T @ a).ravel()
            out[j, L.b_off[l]:L.b_off[l] + O] += G.sum(axis=0)
            if l == 0:
                break
            G = (G @ params[L.w_off[l]:L.b_off[l]].reshape(O, I)) * _act_deriv(code, zs[l - 1], acts[l - 1])


# --------------------------------------------------------------------------- GLM predictive
@dataclass(frozen=True)
class GlmConfig:
    """What ``mlp_glm_fvar`` needs besides the arrays: the network and the
    structure (CurvatureStructure code: diag or kron) of the posterior
    covariance. Twin of ``_core.curvature.GlmConfig``."""

    net: NetConfig
    structure: int = 0

    def __post_init__(self):
        object.__setattr__(self, "structure", int(from_int(CurvatureStructure, self.structure, "structure")))


def _glm_rot_size(L, structure):
    if CurvatureStructure(structure) == CurvatureStructure.kron:
        return sum(i * i + o * o for i, o in zip(L.sizes[:-1], L.sizes[1:]))
    return 0


def _check_net_inputs(L, params, X):
    if params.ndim != 1 or params.shape[0] != L.n_params:
        raise ValueError(f"params must have shape ({L.n_params},)")
    if X.ndim != 2 or X.shape[1] != L.sizes[0]:
        raise ValueError(f"X must have shape (n, {L.sizes[0]})")


def _check_out(o, shape, name):
    if o.shape != shape:
        raise ValueError(f"{name} has the wrong shape")


def _output_dirs(L, code, params, X):
    """Forward trace, then per layer (from the last) its input a_{l-1} (n, I) and the
    back-propagated output directions G_l (n, C, O): ∂f_c/∂W_l = G_l[:, c] ⊗ a_{l-1}."""
    zs, acts, _ = _forward_trace(L, code, params[None], X)
    zs, acts = [z[0] for z in zs], [a[0] for a in acts]
    n, C = X.shape[0], L.sizes[-1]
    G = np.broadcast_to(np.eye(C, dtype=params.dtype), (n, C, C))
    layers = []
    for l in range(L.n_layers - 1, -1, -1):
        I, O = L.sizes[l], L.sizes[l + 1]
        layers.append((l, X if l == 0 else acts[l - 1], G))
        if l == 0:
            break
        W = params[L.w_off[l]:L.b_off[l]].reshape(O, I)
        G = np.matmul(G, W) * _act_deriv(code, zs[l - 1], acts[l - 1])[:, None, :]
    return zs[-1], layers


def mlp_glm_fvar(config, params, X, rot, var, f_out, fvar_out):
    """GLM outputs f_out (n, C) and covariances fvar_out (n, C, C) = J Σ Jᵀ (overwritten),
    Σ diagonal or Kronecker-factored per layer, without forming Jacobians.

    config : GlmConfig; params (P,); X (n, d_0); var (P,) in parameter order: the
    marginal variances (diag) or, per layer, the inverse eigenvalues of the W block
    (O, I) and of the bias block (O,) (kron); rot (kron only, else empty): per layer
    [Q_A (I, I), Q_B (O, O)] packed, eigenvectors in columns, the W block of Σ being
    (Q_B ⊗ Q_A) diag(var_W) (Q_B ⊗ Q_A)ᵀ. Per layer, with G̃ = G Q_B and ã = a Q_A,
    fvar += G̃ diag(ã² var_Wᵀ + var_b) G̃ᵀ.
    """
    L = config.net.layout
    _check_net_inputs(L, params, X)
    kron = CurvatureStructure(config.structure) == CurvatureStructure.kron
    want = _glm_rot_size(L, config.structure)
    if np.size(rot) != want:
        raise ValueError(f"rot must have {want} elements for this structure")
    if var.shape != (L.n_params,):
        raise ValueError("var must have shape (P,)")
    n, C = X.shape[0], L.sizes[-1]
    _check_out(f_out, (n, C), "f_out")
    _check_out(fvar_out, (n, C, C), "fvar_out")
    if n == 0:
        return
    roff = np.cumsum([0] + [i * i + o * o for i, o in zip(L.sizes[:-1], L.sizes[1:])])
    rot = np.asarray(rot).reshape(-1)
    f, layers = _output_dirs(L, config.net.activation, params, X)
    V = np.zeros((n, C, C), params.dtype)
    for l, a, G in layers:
        I, O = L.sizes[l], L.sizes[l + 1]
        if kron:
            QA = rot[roff[l]:roff[l] + I * I].reshape(I, I)
            QB = rot[roff[l] + I * I:roff[l + 1]].reshape(O, O)
            a, G = a @ QA, G @ QB
        w = (a * a) @ var[L.w_off[l]:L.b_off[l]].reshape(O, I).T + var[L.b_off[l]:L.b_off[l] + O]
        V += np.einsum("nco,ndo->ncd", G * w[:, None, :], G)
    f_out[...] = f
    fvar_out[...] = 0.5 * (V + V.transpose(0, 2, 1))


def mlp_jacobian(net, params, X, f_out, J_out):
    """Outputs f_out (n, C) and output Jacobians J_out (n, C, P) of a whole MLP at params (P,)."""
    L = net.layout
    _check_net_inputs(L, params, X)
    n, C = X.shape[0], L.sizes[-1]
    _check_out(f_out, (n, C), "f_out")
    _check_out(J_out, (n, C, L.n_params), "J_out")
    if n == 0:
        return
    f, layers = _output_dirs(L, net.activation, params, X)
    for l, a, G in layers:
        I, O = L.sizes[l], L.sizes[l + 1]
        J_out[:, :, L.w_off[l]:L.b_off[l]] = (G[:, :, :, None] * a[:, None, None, :]).reshape(n, C, O * I)
        J_out[:, :, L.b_off[l]:L.b_off[l] + O] = G
    f_out[...] = f
