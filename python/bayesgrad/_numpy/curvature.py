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

import numpy as np

__all__ = [
    "curv_sqrt_loss", "linear_diag_accum", "linear_kron_accum", "linear_jacobian",
    "gram_accum", "linear_ggn_vp",
]

_LIKELIHOODS = ("gaussian", "categorical", "bernoulli")
_KINDS = ("ggn", "ef", "fisher_mc")


def _softmax(f):
    z = f - f.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _sigmoid(f):
    return 0.5 * (1.0 + np.tanh(0.5 * f))


def curv_sqrt_loss(f, y, draws, likelihood, kind, out):
    """Square-root factors of the per-point loss Hessian at the outputs.

    Parameters
    ----------
    f : (n, C) float
        Network outputs (logits, or means for ``"gaussian"``).
    y : (n, C) float for gaussian, (n,) float class index (categorical) or 0/1 (bernoulli, C=1).
    draws : (n, K, C) standard normals (gaussian) or (n, K) uniforms in (0, 1)
        Used by ``kind="fisher_mc"`` only (pass any (n, K) array otherwise).
    likelihood : {"gaussian", "categorical", "bernoulli"}
    kind : {"ggn", "ef", "fisher_mc"}
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
    if likelihood not in _LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {_LIKELIHOODS}, got {likelihood!r}")
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
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
    p = _sigmoid(fl)
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
