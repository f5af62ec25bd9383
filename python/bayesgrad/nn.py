"""Multilayer perceptrons with a native engine, likelihoods, MAP training
(``train_map``, defined in ``_map_training``) and the ``Predictive`` type shared by
every posterior approximation.

Call shape: a network is described by ``MLP(sizes, activation)``; its weights
live outside it as one flat vector ``theta`` of length ``mlp.n_params`` (or a
batch ``(S, n_params)`` of S parameter samples), laid out per layer as W
(d_out x d_in, row-major) then b (d_out) -- the order of PyTorch's
``parameters_to_vector`` for ``nn.Sequential`` of ``nn.Linear``. Outputs carry
the sample axis first: ``(S, N, K)``. Losses are sums over the data in nats.

Likelihoods (docs/design.md): ``"gaussian"`` (homoscedastic noise sigma per output,
fixed or learned), ``"heteroscedastic_gaussian"`` (K = 2D outputs: means then
log-variances), ``"categorical"`` (softmax over K >= 2 logits, integer labels),
``"bernoulli"`` (one logit per binary target); ``"regression"`` and
``"classification"`` are aliases of gaussian and categorical.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from scipy.special import logsumexp

from . import _backend
from . import _checks as C
from ._codes import Activation, Likelihood
from ._numerics import likelihood_log_probs
from ._numpy.mlp import Layout as _Layout
from . import random as _random

__all__ = [
    "MLP", "Predictive", "train_map", "ACTIVATIONS", "LIKELIHOODS", "likelihood_name",
]

#: Option name -> kernel code (defined once in bayesgrad._codes).
ACTIVATIONS = {m.name: int(m) for m in Activation}
LIKELIHOODS = {m.name: int(m) for m in Likelihood}
_LIK_ALIASES = {"regression": "gaussian", "classification": "categorical"}
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def likelihood_name(likelihood):
    """Canonical likelihood name (aliases resolved); ValueError for unknown names."""
    return C.option(likelihood, "likelihood", LIKELIHOODS, _LIK_ALIASES)


class MLP:
    """A fully connected network: ``sizes = [d_in, h_1, ..., d_out]``.

    Hidden layers apply ``activation`` (relu, tanh, gelu, sigmoid, identity);
    the last layer is linear (the likelihood applies the link). The object holds
    only the architecture; parameters are flat vectors (see the module doc).

    Attributes
    ----------
    sizes : tuple of int
    activation : str
    n_params : int
    offsets : list of (w_start, b_start) per layer in the flat vector
    """

    def __init__(self, sizes, activation="relu"):
        try:
            sizes = tuple(C.integer(s, "sizes", 1) for s in sizes)
        except TypeError as exc:
            raise TypeError(f"sizes must be a sequence of positive ints, got {sizes!r}") from exc
        if len(sizes) < 2:
            raise ValueError(f"sizes must list at least an input and an output width, got {sizes}")
        self.sizes = sizes
        self.activation = C.option(activation, "activation", ACTIVATIONS)
        self._act = ACTIVATIONS[self.activation]
        # the flat layout is defined once for Python (the twin's Layout; mlp.hpp is its C++ twin)
        layout = _Layout(sizes)
        self.offsets = list(zip(layout.w_off, layout.b_off))
        self.n_params = layout.n_params

    def __repr__(self):
        return f"MLP(sizes={list(self.sizes)}, activation={self.activation!r})"

    def net_config(self, k):
        """This network as the kernels of backend module ``k`` take it (``k.mlp.NetConfig``)."""
        return kernel_net_config(k, self.sizes, self._act)

    @property
    def n_layers(self):
        return len(self.sizes) - 1

    @property
    def n_hidden_units(self):
        """Width of a dropout mask row: the sum of the hidden widths."""
        return int(sum(self.sizes[1:-1]))

    def to_dict(self):
        """The architecture as JSON-ready metadata: ``{"sizes": [...], "activation": str}`` (what
        ``save`` files record)."""
        return {"sizes": list(self.sizes), "activation": self.activation}

    # ------------------------------------------------------------ PyTorch interop
    @classmethod
    def from_torch(cls, module):
        """The MLP and parameter vector (P,) of a PyTorch ``nn.Sequential`` of
        ``nn.Linear`` layers with one activation between them.

        Accepted: Linear, ReLU, Tanh, Sigmoid, GELU (exact, ``approximate="none"``),
        and Identity / Dropout / Flatten, which carry no parameters and are the
        identity at prediction (MC dropout is ``bg.dropout``'s job). The layers
        must alternate Linear, activation, Linear, ..., end with a Linear (the
        likelihood applies the link: drop a final Softmax) and use one activation
        throughout. A Linear without bias gets a zero bias. The parameters keep
        the module's dtype (float32 or float64) and are copied; the layout is
        PyTorch's own ``parameters_to_vector`` order, so a gradient or a
        posterior over them maps back index by index.

        Returns
        -------
        (MLP, theta) : theta (P,) NumPy array
        """
        try:
            import torch
        except ImportError as exc:
            raise ImportError("MLP.from_torch needs PyTorch (pip install torch)") from exc
        acts = {torch.nn.ReLU: "relu", torch.nn.Tanh: "tanh", torch.nn.Sigmoid: "sigmoid", torch.nn.GELU: "gelu"}
        skip = (torch.nn.Identity, torch.nn.Dropout, torch.nn.Flatten)
        if isinstance(module, torch.nn.Linear):
            module = torch.nn.Sequential(module)
        if not isinstance(module, torch.nn.Sequential):
            raise TypeError(f"module must be a torch.nn.Sequential (or Linear), got {type(module).__name__}")
        linears, activation, expect_linear = [], None, True
        for i, layer in enumerate(module):
            where = f"layer {i} ({type(layer).__name__})"
            if isinstance(layer, skip):
                continue
            if isinstance(layer, torch.nn.Linear):
                if not expect_linear:
                    raise ValueError(f"module: {where} follows a Linear without an activation between them")
                linears.append(layer)
                expect_linear = False
                continue
            name = acts.get(type(layer))
            if name is None:
                raise ValueError(f"module: {where} is not supported; supported layers: Linear, ReLU, Tanh, Sigmoid, "
                                 "GELU (exact), Identity, Dropout, Flatten")
            if name == "gelu" and getattr(layer, "approximate", "none") != "none":
                raise ValueError(f"module: {where} uses the tanh approximation; bayesgrad's GELU is the exact one")
            if expect_linear:
                raise ValueError(f"module: {where} is not preceded by a Linear")
            if activation is not None and name != activation:
                raise ValueError(f"module: {where} is {name} but earlier layers use {activation}; "
                                 "one activation throughout")
            activation, expect_linear = name, True
        if not linears:
            raise ValueError("module holds no Linear layer")
        if expect_linear:
            raise ValueError("module ends with an activation: the last layer must be Linear (the likelihood "
                             "applies the link)")
        sizes = [linears[0].in_features] + [lin.out_features for lin in linears]
        for a, b in zip(linears[:-1], linears[1:]):
            if a.out_features != b.in_features:
                raise ValueError(f"module: a Linear with {a.out_features} outputs feeds one with {b.in_features} inputs")
        dtypes = {lin.weight.dtype for lin in linears}
        if dtypes - {torch.float32, torch.float64} or len(dtypes) > 1:
            raise TypeError(f"module parameters must all be float32 or all float64, got {sorted(map(str, dtypes))}")
        parts = []
        for lin in linears:
            w = lin.weight.detach().cpu().numpy()
            b = lin.bias.detach().cpu().numpy() if lin.bias is not None else np.zeros(lin.out_features, w.dtype)
            parts += [w.reshape(-1), b]
        mlp = cls(sizes, activation or "relu")
        return mlp, np.ascontiguousarray(np.concatenate(parts))

    def to_torch(self, theta):
        """A PyTorch ``nn.Sequential`` (Linear, activation, ..., Linear) holding ``theta`` (P,)
        (copied, in theta's dtype): the inverse of ``from_torch``."""
        try:
            import torch
        except ImportError as exc:
            raise ImportError("MLP.to_torch needs PyTorch (pip install torch)") from exc
        t = self.check_params(theta)
        if t.ndim != 1:
            raise ValueError(f"theta must have shape ({self.n_params},), got {t.shape}")
        act = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid, "gelu": torch.nn.GELU,
               "identity": torch.nn.Identity}[self.activation]
        dtype = torch.float64 if t.dtype == np.float64 else torch.float32
        layers = []
        for l, (w0, b0) in enumerate(self.offsets):
            din, dout = self.sizes[l], self.sizes[l + 1]
            lin = torch.nn.Linear(din, dout, dtype=dtype)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(t[w0:b0].reshape(dout, din).copy()))
                lin.bias.copy_(torch.from_numpy(t[b0:b0 + dout].copy()))
            layers.append(lin)
            if l + 1 < len(self.offsets):
                layers.append(act())
        return torch.nn.Sequential(*layers)

    # ------------------------------------------------------------ parameters
    def init(self, seed=0, stream=0, dtype=np.float64, scheme="auto"):
        """Initial parameters (n_params,): He for relu/gelu, Glorot otherwise; biases 0.

        ``scheme`` is ``"auto"``, ``"he"`` (N(0, 2/fan_in)) or ``"glorot"``
        (N(0, 2/(fan_in+fan_out))). The normals come from
        ``fold_in(stream, "init")`` of ``seed``.
        """
        scheme = C.option(scheme, "scheme", ("auto", "he", "glorot"))
        if scheme == "auto":
            scheme = "he" if self.activation in ("relu", "gelu") else "glorot"
        dt = C.float_dtype(dtype)
        z = _random.normal(self.n_params, seed=seed, stream=_random.fold_in(stream, "init"), dtype=dt)
        theta = np.zeros(self.n_params, dtype=dt)
        for (w0, b0), din, dout in zip(self.offsets, self.sizes[:-1], self.sizes[1:]):
            std = math.sqrt(2.0 / din) if scheme == "he" else math.sqrt(2.0 / (din + dout))
            theta[w0:b0] = z[w0:b0] * dt.type(std)
        return theta

    def unflatten(self, theta):
        """[(W (d_out, d_in), b (d_out,)), ...] views of a flat vector (P,) or (S, P) (leading S kept)."""
        theta = C.to_numpy(theta, "theta")
        self._check_theta_shape(theta)
        out = []
        for (w0, b0), din, dout in zip(self.offsets, self.sizes[:-1], self.sizes[1:]):
            W = theta[..., w0:b0].reshape(theta.shape[:-1] + (dout, din))
            out.append((W, theta[..., b0:b0 + dout]))
        return out

    def flatten(self, layers):
        """Inverse of ``unflatten``: a list of (W, b) -> flat vector."""
        if not isinstance(layers, (list, tuple)) or not all(isinstance(x, (list, tuple)) and len(x) == 2
                                                            for x in layers):
            raise TypeError(f"layers must be a list of (W, b) pairs, got {type(layers).__name__}")
        if len(layers) != self.n_layers:
            raise ValueError(f"layers must hold {self.n_layers} (W, b) pairs, got {len(layers)}")
        parts = []
        for (W, b), din, dout in zip(layers, self.sizes[:-1], self.sizes[1:]):
            W, b = C.to_numpy(W, "W"), C.to_numpy(b, "b")
            if W.shape[-2:] != (dout, din) or b.shape[-1] != dout:
                raise ValueError(f"layer shapes must be W ({dout}, {din}) and b ({dout},)")
            parts += [W.reshape(W.shape[:-2] + (-1,)), b]
        return np.concatenate(parts, axis=-1)

    def _check_theta_shape(self, theta, name="theta"):
        if theta.ndim not in (1, 2) or theta.shape[-1] != self.n_params:
            raise ValueError(f"{name} must have shape ({self.n_params},) or (S, {self.n_params}), got {theta.shape}")

    def check_params(self, theta, name="theta"):
        """``theta`` checked as parameters (P,) or (S, P) of this network."""
        t = C.as_array(theta, name)
        self._check_theta_shape(t, name)
        return t

    def check_inputs(self, X, dtype, name="X"):
        """``X`` checked as inputs (N, d_in) of this network, converted to ``dtype``."""
        X = C.as_array(X, name, dtype=dtype)
        if X.ndim == 1 and self.sizes[0] == 1:
            X = X[:, None]
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise ValueError(f"{name} must have shape (N, {self.sizes[0]}), got {X.shape}")
        return X

    def _masks(self, masks, S, N, dtype):
        if masks is None:
            return None
        m = C.as_array(masks, "masks", dtype=dtype)
        H = self.n_hidden_units
        if H == 0:
            raise ValueError("masks given but the network has no hidden layer")
        if m.ndim == 2:
            m = m[:, None, :]
        if m.ndim != 3 or m.shape[0] != S or m.shape[1] not in (1, N) or m.shape[2] != H:
            raise ValueError(f"masks must have shape ({S}, {H}) or ({S}, 1 or {N}, {H}), got {m.shape}")
        return m

    # ------------------------------------------------------------ compute
    def forward(self, theta, X, masks=None, out=None):
        """Outputs (N, K) for theta (P,), or (S, N, K) for theta (S, P).

        ``masks`` (S, H) or (S, 1 or N, H): multipliers of the H hidden units
        (dropout masks already scaled by 1/(1-p)). theta (1, P) with S > 1 masks is
        one network under S masks (MC dropout): outputs (S, N, K), the first
        layer's product formed once. ``out``: a C-contiguous array of the outputs'
        shape and theta's dtype to write them into (a caller reusing one buffer
        over many calls saves an allocation per call).
        """
        t = self.check_params(theta)
        single = t.ndim == 1
        t2 = t[None] if single else t
        X = self.check_inputs(X, t.dtype)
        S, N = t2.shape[0], X.shape[0]
        if masks is not None and not single and S == 1 and np.ndim(masks) in (2, 3) and np.shape(masks)[0] > 1:
            S = np.shape(masks)[0]
        shape = (S, N, self.sizes[-1])
        if out is None:
            # S parameter vectors (or masks) on N rows: inputs of a few MiB can ask for tens of GiB
            C.check_allocation(C.n_bytes(shape, t.dtype), f"theta / masks with S={S} on X with N={N} rows: "
                               f"the (S, N, K) = {shape} outputs")
            out = np.empty(shape, dtype=t.dtype)
        else:
            _check_output_buffer(out, "out", shape[1:] if single else shape, t.dtype)
        k = _backend.kernels()
        k.mlp.mlp_forward(self.net_config(k), t2, X, out.reshape(shape), self._masks(masks, S, N, t.dtype))
        return out[0] if single and out.ndim == 3 else out

    __call__ = forward

    def vjp(self, theta, X, g_out, wrt_input=False, masks=None, outputs=None):
        """Vector-Jacobian products: ``g_out`` like the outputs -> dL/dtheta (and dL/dX).

        theta (P,) with g_out (N, K), or theta (S, P) with g_out (S, N, K).
        Returns grad like theta, or (grad, grad_x) when ``wrt_input``.
        ``outputs``: a writeable C-contiguous array shaped like the outputs
        ((N, K) or (S, N, K)) of theta's dtype that receives them, from the
        forward pass the product runs anyway (``forward`` and ``vjp`` in one pass).
        """
        wrt_input = C.flag(wrt_input, "wrt_input")
        t = self.check_params(theta)
        single = t.ndim == 1
        t2 = t[None] if single else t
        X = self.check_inputs(X, t.dtype)
        S, N = t2.shape[0], X.shape[0]
        if wrt_input:
            C.check_allocation(C.n_bytes((S, N, self.sizes[0]), t.dtype),
                               f"theta with S={S} on X with N={N} rows: the (S, N, d_in) input gradients")
        g = C.as_array(g_out, "g_out", dtype=t.dtype)
        g = g[None] if single and g.ndim == 2 else g
        if g.shape != (S, N, self.sizes[-1]):
            raise ValueError(f"g_out must have the outputs' shape {(S, N, self.sizes[-1])[1 if single else 0:]}")
        if outputs is not None:
            _check_output_buffer(outputs, "outputs", g.shape[1:] if single else g.shape, t.dtype)
            outputs = outputs.reshape(g.shape)
        grad = np.empty((S, self.n_params), dtype=t.dtype)
        gx = np.empty((S, N, self.sizes[0]), dtype=t.dtype) if wrt_input else None
        k = _backend.kernels()
        k.mlp.mlp_backward(self.net_config(k), t2, X, g, grad, gx, self._masks(masks, S, N, t.dtype), outputs)
        if single:
            grad = grad[0]
            gx = None if gx is None else gx[0]
        return (grad, gx) if wrt_input else grad

    def mixed_vjp(self, theta, X, V, g_dot, g_out=None):
        """The parameter gradient of the network's directional derivatives along the rows of V.

        Returns ``sum_n d/dtheta [g_dot_n . (J_x f(x_n) v_n) + g_out_n . f(x_n)]`` (P,) for theta (P,),
        X and V (N, d_in), g_dot and g_out (N, K) (g_out None: no values' term), exactly: forward-mode
        tangents V through the layers, then one reverse pass through both (second derivatives of the
        activation; ReLU's is 0). What input-gradient penalties (double backpropagation) and RELAX's
        surrogate training need, without finite differences.
        """
        t = self.check_params(theta)
        if t.ndim != 1:
            raise ValueError(f"mixed_vjp takes one parameter vector theta ({self.n_params},), got {t.shape}")
        X = self.check_inputs(X, t.dtype)
        V = self.check_inputs(V, t.dtype, "V")
        if V.shape != X.shape:
            raise ValueError(f"V must have the shape of X {X.shape}, got {V.shape}")
        if g_dot is None:
            raise TypeError("g_dot must be an array, not None")
        shape = (X.shape[0], self.sizes[-1])
        gs = {}
        for name, g in (("g_dot", g_dot), ("g_out", g_out)):
            if g is not None:
                g = C.as_array(g, name, dtype=t.dtype)
                if g.shape != shape:
                    raise ValueError(f"{name} must have the outputs' shape {shape}, got {g.shape}")
                gs[name] = g[None]
        grad = np.empty((1, self.n_params), dtype=t.dtype)
        k = _backend.kernels()
        k.mlp.mlp_mixed_vjp(self.net_config(k), t[None], X, V, gs.get("g_out"), gs["g_dot"], grad)
        return grad[0]

    def nll(self, theta, X, y, likelihood="gaussian", noise=1.0, grad=False, masks=None):
        """Negative log-likelihood summed over the N rows (nats), and optionally its gradient.

        Returns nll (scalar for theta (P,), (S,) for theta (S, P)); with
        ``grad=True`` also dnll/dtheta like theta.
        """
        lik = likelihood_name(likelihood)
        grad = C.flag(grad, "grad")
        t = self.check_params(theta)
        single = t.ndim == 1
        t2 = t[None] if single else t
        X = self.check_inputs(X, t.dtype)
        yy = prepare_targets(y, lik, self.sizes[-1], X.shape[0], t.dtype)
        ln = log_noise_vector(noise, lik, self.sizes[-1], t.dtype)
        S = t2.shape[0]
        out = np.empty(S, dtype=t.dtype)
        g = np.empty((S, self.n_params), dtype=t.dtype) if grad else None
        k = _backend.kernels()
        k.mlp.mlp_nll_grad(self.net_config(k), LIKELIHOODS[lik], t2, X, yy, ln, out, g,
                           self._masks(masks, S, X.shape[0], t.dtype))
        if single:
            out, g = out[0], (None if g is None else g[0])
        return (out, g) if grad else out


def _check_output_buffer(a, name, shape, dtype):
    """A caller's output buffer: a writeable C-contiguous ``dtype`` array of ``shape``."""
    if not (isinstance(a, np.ndarray) and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
            and a.shape == tuple(shape)):
        raise ValueError(f"{name} must be a writeable C-contiguous {np.dtype(dtype)} array of shape {tuple(shape)}")


# ---------------------------------------------------------------- targets

def target_dim(lik, K):
    """Columns of the target array for output width K."""
    if lik == "heteroscedastic_gaussian":
        if K % 2:
            raise ValueError("heteroscedastic_gaussian needs an even output width (means then log-variances)")
        return K // 2
    if lik == "categorical":
        if K < 2:
            raise ValueError("categorical needs at least 2 outputs")
        return 1
    return K


def prepare_targets(y, lik, K, N, dtype):
    """Targets as a C-contiguous (N, Dy) array of ``dtype``, checked for the likelihood."""
    D = target_dim(lik, K)
    if lik == "categorical":
        a = C.class_labels(C.as_array(y, "y", dtype=np.float64), N, K)
        return np.ascontiguousarray(a[:, None], dtype=dtype)
    a = C.as_array(y, "y", dtype=dtype)
    if a.ndim == 1 and D == 1:
        a = a[:, None]
    if a.shape != (N, D):
        raise ValueError(f"y must have shape ({N}, {D}), got {a.shape}")
    if lik == "bernoulli" and np.any((a != 0) & (a != 1)):
        raise ValueError("y must hold binary targets 0 or 1 for the bernoulli likelihood")
    return np.ascontiguousarray(a)


def log_noise_vector(noise, lik, K, dtype):
    """log sigma per output (Dy,) of the homoscedastic gaussian (zeros, unused, otherwise)."""
    D = target_dim(lik, K)
    if lik != "gaussian":
        return np.zeros(D, dtype=dtype)
    s = C.as_array(noise, "noise", dtype=np.float64)
    C.positive(s, "noise")
    s = np.broadcast_to(s.reshape(-1) if s.ndim else s, (D,)) if s.size in (1, D) else None
    if s is None:
        raise ValueError(f"noise must be a scalar or have {D} entries")
    return np.ascontiguousarray(np.log(s), dtype=dtype)


# ---------------------------------------------------------------- predictive

class Predictive:
    """The predictive distribution of any method (MFVI, MC dropout, Laplace, MAP).

    Classification (categorical, bernoulli): ``probs`` (N, C) the predictive
    mean; ``log_probs`` (S, N, C) per sample when sampled (None otherwise).
    Bernoulli is given as two classes (C = 2: failure, success) and supports
    a single binary target only (network output width K = 1); an MLP with
    several independent bernoulli outputs trains fine, but its predictive must
    be built per output (``from_outputs(F[..., k:k+1], "bernoulli")``).
    Regression (gaussian, heteroscedastic): ``mean`` (N, D); ``var`` (N, D)
    total = ``aleatoric_var`` + ``epistemic_var``; ``samples_mean`` (S, N, D)
    per-sample means when sampled.

    Build with ``Predictive.from_outputs(F, likelihood, noise)`` from network
    outputs (S, N, K), or with the regression/classification constructors for
    closed-form predictives (Laplace GLM).
    """

    def __init__(self, likelihood, *, probs=None, log_probs=None, mean=None, aleatoric_var=None,
                 epistemic_var=None, samples_mean=None, samples_var=None):
        self.likelihood = likelihood_name(likelihood)
        self.is_classification = self.likelihood in ("categorical", "bernoulli")
        self.log_probs = log_probs
        self.probs = probs
        self.mean = mean
        self.aleatoric_var = aleatoric_var
        self.epistemic_var = epistemic_var
        self.samples_mean = samples_mean
        self._samples_var = samples_var  # (S, N, D) aleatoric variance of each sample's Gaussian
        if self.is_classification:
            if probs is None and log_probs is None:
                raise ValueError("a classification Predictive needs probs or log_probs")
            if probs is None:
                from .uncertainty import mean_probs

                self.probs = mean_probs(log_probs)
        else:
            if mean is None:
                raise ValueError("a regression Predictive needs mean")
            if aleatoric_var is None or epistemic_var is None:
                raise ValueError("a regression Predictive needs aleatoric_var and epistemic_var")

    @property
    def var(self):
        """Total predictive variance (N, D) = aleatoric + epistemic (regression)."""
        if self.is_classification:
            raise AttributeError("var is defined for regression predictives; use probs")
        return self.aleatoric_var + self.epistemic_var

    @property
    def std(self):
        return np.sqrt(self.var)

    @property
    def n_samples(self):
        src = self.log_probs if self.is_classification else self.samples_mean
        return None if src is None else src.shape[0]

    @classmethod
    def from_outputs(cls, F, likelihood, noise=1.0, *, overwrite=False):
        """From sampled network outputs F (S, N, K) (sample axis first).

        ``overwrite=True`` lets a categorical predictive turn F into its
        log-probabilities in place (the posteriors' ``predict`` pass their own
        fresh outputs; saves a copy of F)."""
        lik = likelihood_name(likelihood)
        F = C.to_numpy(F, "F")
        if F.ndim != 3:
            raise ValueError(f"F must have shape (S, N, K), got {F.shape}")
        S, N, K = F.shape
        if S == 0 or K == 0:
            raise ValueError(f"F must hold at least one sample and one output, got shape {F.shape}")
        if lik == "heteroscedastic_gaussian":
            target_dim(lik, K)  # means then log-variances: K even
        if lik == "categorical":
            from .uncertainty import log_softmax

            return cls(lik, log_probs=log_softmax(F, overwrite=overwrite))
        if lik == "bernoulli":
            if K != 1:
                raise ValueError("the bernoulli Predictive takes one output (a single binary target)")
            return cls(lik, log_probs=likelihood_log_probs(lik, F))
        if lik == "gaussian":
            ln = log_noise_vector(noise, lik, K, F.dtype)
            mu = F
            sv = np.broadcast_to(np.exp(2 * ln), F.shape)
        else:
            D = K // 2
            mu = F[..., :D]
            sv = np.exp(F[..., D:])
        mean = mu.mean(axis=0)
        epi = mu.var(axis=0) if S > 1 else np.zeros_like(mean)
        return cls(lik, mean=mean, aleatoric_var=sv.mean(axis=0), epistemic_var=epi, samples_mean=mu,
                   samples_var=np.ascontiguousarray(sv))

    def log_likelihood(self, y):
        """Predictive log-density of targets (N,) in nats: the mixture over samples (logsumexp - log S),
        or the Gaussian with the total variance when there are no samples."""
        if self.is_classification:
            N = self.probs.shape[0]
            a = C.to_numpy(y, "y")
            if self.likelihood == "bernoulli":
                a = a.reshape(-1)
            lab = prepare_targets(a, "categorical", self.probs.shape[-1], N, np.float64)[:, 0].astype(np.int64)
            if self.log_probs is None:
                return np.log(self.probs[np.arange(N), lab])
            lp = self.log_probs[:, np.arange(N), lab]
            return logsumexp(lp, axis=0) - math.log(lp.shape[0])
        N, D = self.mean.shape
        y = C.to_numpy(y, "y")
        yy = C.as_array(y, "y").reshape(N, D) if y.size == N * D else None
        if yy is None:
            raise ValueError(f"y must have {N * D} values (shape ({N}, {D}))")
        if self.samples_mean is None or self._samples_var is None:
            v = self.var
            return (-0.5 * ((yy - self.mean) ** 2 / v + np.log(v)) - _HALF_LOG_2PI).sum(-1)
        v = self._samples_var
        lp = (-0.5 * ((yy[None] - self.samples_mean) ** 2 / v + np.log(v)) - _HALF_LOG_2PI).sum(-1)
        return logsumexp(lp, axis=0) - math.log(lp.shape[0])

    def __repr__(self):
        kind = "classification" if self.is_classification else "regression"
        return f"Predictive({self.likelihood!r}, {kind}, n_samples={self.n_samples})"


# ---------------------------------------------------------------- sampled predictions

#: Parameter samples held at once by ``sampled_outputs`` (bytes; a multiple of 64
#: samples is always allowed).
PARAM_CHUNK_BYTES = 64 * 2 ** 20


def sampled_outputs(mlp, X, n_samples, dtype, params):
    """Network outputs F (S, N, K) of S = ``n_samples`` parameter samples, the
    samples made and used in chunks so that at most about ``PARAM_CHUNK_BYTES``
    of them exist at once (for P >> N K the (S, P) samples would dwarf F).
    ``params(s0, s1) -> (theta (s1 - s0, P), masks (s1 - s0, H) or None)`` makes
    samples s0..s1-1. Chunks start at multiples of 64 samples, so element-addressed
    draws (``offset = s0 * P``) fall on the same SIMD groups (16 Philox blocks, at most
    64 elements) as one whole draw and the result does not depend on the chunking. The size of F and of the predictive
    built from it (about 3 arrays of F's shape) is checked first: a ValueError naming
    ``n_samples`` instead of a MemoryError."""
    dt = C.float_dtype(dtype)
    Xa = mlp.check_inputs(X, dt)
    S, N, K = n_samples, Xa.shape[0], mlp.sizes[-1]
    C.check_allocation(C.n_bytes((S, N, K), dt, copies=3),
                       f"n_samples={S}: the sampled outputs and predictive (S, N, K) = ({S}, {N}, {K})")
    per = max(1, mlp.n_params) * dt.itemsize
    chunk = max(64, PARAM_CHUNK_BYTES // per // 64 * 64)
    if chunk >= S:
        theta, masks = params(0, S)
        return mlp.forward(theta, Xa, masks=masks)
    F = np.empty((S, N, K), dtype=dt)
    for s0 in range(0, S, chunk):
        s1 = min(S, s0 + chunk)
        theta, masks = params(s0, s1)
        F[s0:s1] = mlp.forward(theta, Xa, masks=masks)
    return F


@functools.lru_cache(maxsize=256)
def kernel_net_config(k, sizes, activation):
    """``k.mlp.NetConfig(sizes, activation)`` for backend module ``k`` (sizes a tuple
    of ints, activation a code), cached: repeated kernel calls do not rebuild the
    layout. Keyed by the backend module, since each backend has its own type."""
    return k.mlp.NetConfig(sizes, activation)


# MAP training lives in _map_training (the loop, sample weights, train_map); it is
# imported last because it uses the names above, and re-exported here, where the
# public API (bg.nn.train_map) and the posteriors have always found it.
from ._map_training import _check_split_weights, fit_point, sample_weights, train_map, training_dtype  # noqa: E402,F401
