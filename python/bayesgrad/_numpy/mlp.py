"""NumPy twin of the mlp kernels (cpp/src/mlp.cpp, mlp_tiled.cpp, cpp/include/bayesgrad/mlp.hpp).

Parameter layout per sample: for each layer W (d_out x d_in, row-major) then
b (d_out), as PyTorch's ``parameters_to_vector`` orders ``nn.Sequential`` of
``nn.Linear``. Activation and likelihood codes: bayesgrad._codes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import erf

from .._codes import Activation, Likelihood, from_int
from .._numerics import sigmoid

__all__ = ["NetConfig", "gemm", "mlp_forward", "mlp_backward", "mlp_mixed_vjp", "mlp_nll_grad",
           "likelihood_nll"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class Layout:
    """Offsets of each layer's W and b in the flat parameter vector."""

    def __init__(self, sizes):
        sizes = [int(s) for s in np.asarray(sizes).reshape(-1)]
        if len(sizes) < 2:
            raise ValueError("sizes must list at least an input and an output width")
        if min(sizes) < 1:
            raise ValueError("every layer width must be >= 1")
        self.sizes = sizes
        self.w_off, self.b_off = [], []
        off = 0
        for din, dout in zip(sizes[:-1], sizes[1:]):
            self.w_off.append(off)
            off += din * dout
            self.b_off.append(off)
            off += dout
        self.n_params = off
        self.n_layers = len(sizes) - 1
        self.n_hidden_units = sum(sizes[1:-1])
        self.mask_off = list(np.cumsum([0] + sizes[1:-1])[:-1]) if len(sizes) > 2 else []

    def unpack(self, params, l):
        """W (S, d_out, d_in) and b (S, d_out) views of layer l."""
        din, dout = self.sizes[l], self.sizes[l + 1]
        W = params[:, self.w_off[l]:self.w_off[l] + din * dout].reshape(-1, dout, din)
        b = params[:, self.b_off[l]:self.b_off[l] + dout]
        return W, b


@dataclass(frozen=True)
class NetConfig:
    """A network as the kernels see it: layer widths (d_0, ..., d_L) and the
    hidden activation code. Twin of the bound ``_core.mlp.NetConfig``."""

    sizes: tuple
    activation: int
    layout: Layout = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "layout", Layout(self.sizes))
        object.__setattr__(self, "sizes", tuple(self.layout.sizes))
        object.__setattr__(self, "activation", int(from_int(Activation, self.activation, "activation")))

    @property
    def n_params(self):
        return self.layout.n_params


def act(code, z):
    if code == Activation.relu:
        return np.maximum(z, 0)
    if code == Activation.tanh:
        return np.tanh(z)
    if code == Activation.sigmoid:
        return sigmoid(z)
    if code == Activation.gelu:
        return (0.5 * z * (1.0 + erf(z * 0.70710678118654752440))).astype(z.dtype, copy=False)
    if code == Activation.identity:
        return z
    raise ValueError("activation code out of range")


def act_deriv(code, z, a):
    if code == Activation.relu:
        return (z > 0).astype(z.dtype)
    if code == Activation.tanh:
        return 1 - a * a
    if code == Activation.sigmoid:
        return a * (1 - a)
    if code == Activation.gelu:
        phi = np.exp(-0.5 * z * z) * 0.39894228040143267794
        return (0.5 * (1.0 + erf(z * 0.70710678118654752440)) + z * phi).astype(z.dtype, copy=False)
    return np.ones_like(z)


def act_deriv2(code, z, a):
    """f''(z) given z and a = f(z) (ReLU's and the identity's: 0)."""
    if code == Activation.tanh:
        return -2.0 * a * (1 - a * a)
    if code == Activation.sigmoid:
        return a * (1 - a) * (1 - 2 * a)
    if code == Activation.gelu:
        return (np.exp(-0.5 * z * z) * 0.39894228040143267794 * (2.0 - z * z)).astype(z.dtype, copy=False)
    return np.zeros_like(z)


def _check_inputs(L, params, X):
    if params.ndim != 2 or params.shape[1] != L.n_params:
        raise ValueError(f"params must have shape (S, {L.n_params})")
    S = params.shape[0]
    d0 = L.sizes[0]
    if X.ndim == 2 and X.shape[1] == d0:
        return S, X.shape[0]
    if X.ndim == 3 and X.shape[0] == S and X.shape[2] == d0:
        return S, X.shape[1]
    raise ValueError(f"X must have shape (N, {d0}) or (S, N, {d0})")


def _mask_views(L, masks, S, N):
    if masks is None:
        return None
    if L.n_hidden_units == 0:
        raise ValueError("masks given but the network has no hidden layer")
    if masks.ndim != 3 or masks.shape[0] != S or masks.shape[1] not in (1, N) or masks.shape[2] != L.n_hidden_units:
        raise ValueError(f"masks must have shape (S, 1 or N, {L.n_hidden_units})")
    return [masks[:, :, o:o + L.sizes[l + 1]] for l, o in enumerate(L.mask_off)]


def forward_trace(L, code, params, X, masks=None):
    """Pre-activations zs[l] (S, N, d_out) and masked activations as[l]."""
    S, N = _check_inputs(L, params, X)
    mv = _mask_views(L, masks, S, N)
    zs, acts = [], []
    A = X
    for l in range(L.n_layers):
        W, b = L.unpack(params, l)
        z = np.matmul(A, W.transpose(0, 2, 1)) + b[:, None, :]
        zs.append(z)
        if l + 1 == L.n_layers:
            break
        a = act(code, z)
        if mv is not None:
            a = a * mv[l]
        acts.append(a)
        A = a
    return zs, acts, mv


def backward_trace(L, code, params, X, zs, acts, mv, G, want_x=False):
    """dLoss/dparams (S, P) (and dLoss/dX) from dLoss/d(output) G (S, N, K)."""
    S = params.shape[0]
    grad = np.empty((S, L.n_params), dtype=params.dtype)
    gx = None
    for l in range(L.n_layers - 1, -1, -1):
        A = X if l == 0 else acts[l - 1]
        if A.ndim == 2:
            A = np.broadcast_to(A, (S,) + A.shape)
        din, dout = L.sizes[l], L.sizes[l + 1]
        grad[:, L.w_off[l]:L.w_off[l] + din * dout] = np.matmul(G.transpose(0, 2, 1), A).reshape(S, -1)
        grad[:, L.b_off[l]:L.b_off[l] + dout] = G.sum(axis=1)
        if l == 0 and not want_x:
            break
        W, _ = L.unpack(params, l)
        dA = np.matmul(G, W)
        if l == 0:
            gx = dA
            break
        z = zs[l - 1]
        a = act(code, z)
        d = act_deriv(code, z, a)
        if mv is not None:
            d = d * mv[l - 1]
        G = dA * d
    return grad, gx


def target_dim(lik, K):
    """Target columns Dy for output width K (mlp::target_dim)."""
    lik = from_int(Likelihood, lik, "likelihood")
    if lik == Likelihood.heteroscedastic_gaussian:
        if K % 2:
            raise ValueError("heteroscedastic_gaussian needs an even output width (mean, log-variance)")
        return K // 2
    if lik == Likelihood.categorical:
        if K < 2:
            raise ValueError("categorical needs at least 2 outputs")
        return 1
    return K


def nll_terms(lik, F, y, log_noise, want_grad=True):
    """Per-point NLL (S, N) and dNLL/dF (S, N, K) and dNLL/dlog_noise (S, N, Dy)."""
    K = F.shape[-1]
    D = target_dim(lik, K)
    gF = gn = None
    if lik == Likelihood.gaussian:
        inv_var = np.exp(-2.0 * log_noise)
        r = y - F
        per = (0.5 * r * r * inv_var + log_noise + _HALF_LOG_2PI).sum(-1)
        if want_grad:
            gF = -r * inv_var
            gn = 1 - r * r * inv_var
    elif lik == Likelihood.heteroscedastic_gaussian:
        m, v = F[..., :D], F[..., D:]
        e = np.exp(-v)
        r = y - m
        per = (0.5 * (r * r * e + v) + _HALF_LOG_2PI).sum(-1)
        if want_grad:
            gF = np.concatenate([-r * e, 0.5 * (1 - r * r * e)], axis=-1)
    elif lik == Likelihood.categorical:
        lab = y[:, 0]
        if not np.all((lab >= 0) & (lab < K)):
            raise ValueError("class label out of range [0, n_classes)")
        c = lab.astype(np.int64)
        mx = F.max(-1, keepdims=True)
        lse = mx + np.log(np.exp(F - mx).sum(-1, keepdims=True))
        per = lse[..., 0] - np.take_along_axis(F, np.broadcast_to(c[None, :, None], F.shape[:-1] + (1,)), -1)[..., 0]
        if want_grad:
            gF = np.exp(F - lse)
            gF[:, np.arange(F.shape[1]), c] -= 1
    else:
        sp = np.logaddexp(0, F)
        per = (sp - y * F).sum(-1)
        if want_grad:
            gF = sigmoid(F) - y
    dt = F.dtype
    return per.astype(dt, copy=False), (None if gF is None else gF.astype(dt, copy=False)), \
        (None if gn is None else gn.astype(dt, copy=False))


def _check_shape(a, shape, name):
    if a.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}")


def gemm(a, b, c, trans_a, trans_b, alpha, beta):
    """c = alpha op(a) op(b) + beta c (c not read when beta is 0)."""
    for name, x in (("a", a), ("b", b), ("c", c)):
        if not isinstance(x, np.ndarray) or x.ndim != 2:
            raise ValueError(f"a, b and c must be 2-d ({name})")
        if x.dtype != c.dtype:
            raise TypeError(f"{name} must have c's dtype {c.dtype}")
    if not c.flags.writeable:
        raise ValueError("c must be writeable")
    oa, ob = (a.T if trans_a else a), (b.T if trans_b else b)
    if oa.shape[1] != ob.shape[0]:
        raise ValueError("b: op(a) is (M, K) and op(b) must be (K, N): inner sizes differ")
    if c.shape != (oa.shape[0], ob.shape[1]):
        raise ValueError("c must have shape (M, N) of op(a) op(b)")
    if c.size == 0:
        return
    if oa.shape[1] == 0:
        raise ValueError("a and b must have a nonzero inner dimension")
    prod = (oa @ ob) * c.dtype.type(alpha)
    c[...] = prod if beta == 0 else prod + c.dtype.type(beta) * c


def mlp_forward(net, params, X, out, masks=None):
    """Network outputs (S, N, K) for S parameter vectors (S, P) on X (N, D) or (S, N, D).

    params (1, P) with masks (S, 1 or N, H) and X (N, D): one network under S masks
    (MC dropout), S taken from the masks."""
    L = net.layout
    if (masks is not None and params.ndim == 2 and params.shape[0] == 1 and masks.ndim == 3
            and masks.shape[0] > 1 and X.ndim == 2):
        params = np.broadcast_to(params, (masks.shape[0], params.shape[1]))
    S, N = _check_inputs(L, params, X)
    _check_shape(out, (S, N, L.sizes[-1]), "out")
    zs, _, _ = forward_trace(L, net.activation, params, X, masks)
    out[...] = zs[-1]


def mlp_backward(net, params, X, g_out, grad, grad_x=None, masks=None, outputs=None):
    """Vector-Jacobian product: g_out (S, N, K) -> grad (S, P) (or None: grad_x alone) and optionally
    grad_x (S, N, D); ``outputs`` (S, N, K), when given, receives the network outputs of the forward pass."""
    L = net.layout
    S, N = _check_inputs(L, params, X)
    _check_shape(g_out, (S, N, L.sizes[-1]), "g_out")
    if grad is None and grad_x is None:
        raise ValueError("grad and grad_x are both None: nothing to compute")
    if grad is not None:
        _check_shape(grad, (S, L.n_params), "grad")
    if grad_x is not None:
        _check_shape(grad_x, (S, N, L.sizes[0]), "grad_x")
    if outputs is not None:
        _check_shape(outputs, (S, N, L.sizes[-1]), "outputs")
    zs, acts, mv = forward_trace(L, net.activation, params, X, masks)
    if outputs is not None:
        outputs[...] = zs[-1]
    g, gx = backward_trace(L, net.activation, params, X, zs, acts, mv, g_out, want_x=grad_x is not None)
    if grad is not None:
        grad[...] = g
    if grad_x is not None:
        grad_x[...] = gx


def mlp_mixed_vjp(net, params, X, V, g_out, g_dot, grad):
    """grad (1, P) = sum over rows of d/dparams [g_out . r(x) + g_dot . (J_x r(x) v)]: the parameter gradient
    of the directional derivatives along V (N, D) weighted by g_dot (1, N, K), plus the VJP of g_out (1, N, K)
    or None; params (1, P), X (N, D). Forward over reverse: tangents through the layers, then both back."""
    L, code = net.layout, net.activation
    S, N = _check_inputs(L, params, X)
    if S != 1 or X.ndim != 2:
        raise ValueError("mlp_mixed_vjp takes one parameter vector: params (1, P) and X (N, D)")
    _check_shape(V, (N, L.sizes[0]), "V")
    K = L.sizes[-1]
    if g_out is not None:
        _check_shape(g_out, (1, N, K), "g_out")
    _check_shape(g_dot, (1, N, K), "g_dot")
    _check_shape(grad, (1, L.n_params), "grad")
    hidden, A, Ad = [], X, V  # per hidden layer (a, ad, zd, f', f'')
    for l in range(L.n_layers - 1):
        W, b = L.unpack(params, l)
        z, zd = A @ W[0].T + b[0], Ad @ W[0].T
        a = act(code, z)
        d1 = act_deriv(code, z, a)
        A, Ad = a, d1 * zd
        hidden.append((a, Ad, zd, d1, act_deriv2(code, z, a)))
    G = g_out[0] if g_out is not None else np.zeros((N, K), dtype=params.dtype)
    Gd = g_dot[0]
    for l in range(L.n_layers - 1, -1, -1):
        A, Ad = (X, V) if l == 0 else hidden[l - 1][:2]
        W, _ = L.unpack(params, l)
        din, dout = L.sizes[l], L.sizes[l + 1]
        grad[0, L.w_off[l]:L.w_off[l] + din * dout] = (G.T @ A + Gd.T @ Ad).reshape(-1)
        grad[0, L.b_off[l]:L.b_off[l] + dout] = G.sum(axis=0)
        if l == 0:
            break
        H, Hd = G @ W[0], Gd @ W[0]
        _, _, zd, d1, d2 = hidden[l - 1]
        G, Gd = d1 * H + d2 * zd * Hd, d1 * Hd


def mlp_nll_grad(net, likelihood, params, X, y, log_noise, nll, grad=None, masks=None):
    """Summed NLL (S,) of targets y and its gradient (S, P) w.r.t. params."""
    L = net.layout
    likelihood = from_int(Likelihood, likelihood, "likelihood")
    S, N = _check_inputs(L, params, X)
    D = target_dim(likelihood, L.sizes[-1])
    _check_shape(y, (N, D), "y")
    _check_shape(log_noise, (D,), "log_noise")
    _check_shape(nll, (S,), "nll")
    zs, acts, mv = forward_trace(L, net.activation, params, X, masks)
    per, gF, _ = nll_terms(likelihood, zs[-1], y, log_noise, want_grad=grad is not None)
    nll[...] = per.sum(1, dtype=np.float64)
    if grad is not None:
        grad[...], _ = backward_trace(L, net.activation, params, X, zs, acts, mv, gF)


def likelihood_nll(F, y, likelihood, log_noise, nll):
    """Per-point NLL (S, N) of targets y (N, Dy) under network outputs F (S, N, K)."""
    likelihood = from_int(Likelihood, likelihood, "likelihood")
    if F.ndim != 3:
        raise ValueError("F must have shape (S, N, K)")
    S, N, K = F.shape
    D = target_dim(likelihood, K)
    _check_shape(y, (N, D), "y")
    _check_shape(log_noise, (D,), "log_noise")
    _check_shape(nll, (S, N), "nll")
    nll[...] = nll_terms(likelihood, F, y, log_noise, want_grad=False)[0]
