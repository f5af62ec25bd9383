"""Curvature of a network's loss for the Laplace approximation: the models it
sees (:class:`LinearHead`, a ``bg.nn.MLP`` whole or its last layer on the
features below it) and :class:`Curvature`, which accumulates the GGN,
empirical Fisher or sampled Fisher over data chunks in each structure
(diagonal (P,), Kronecker factors per linear layer, full (P, P),
matrix-free products) with the ``_backend.kernels()`` curvature kernels.

Conventions (laplace-torch's): ``H`` is summed over the data; the gaussian
loss Hessian is the identity (unit noise); the empirical Fisher is
``Σ_n g_n g_nᵀ`` of the per-point unit-noise loss (½||y − f||² for
gaussian); Kronecker factors per linear layer are ``B = Σ_{n,k} s sᵀ``
(out × out) and ``A = (1/N) Σ_n a aᵀ`` (in × in), so that ``H_W ≈ B ⊗ A``
in the row-major order of W (out, in); the bias is its own block with ``B``
alone.
"""
from __future__ import annotations

import numpy as np

from .. import _backend
from .._codes import CurvatureKind, CurvatureStructure, Likelihood
from .. import _checks as C
from .. import nn as _nn
from .. import random as _random
from .._numpy.mlp import Layout as _Layout, act as _act, act_deriv as _act_deriv, forward_trace as _forward_trace

__all__ = ["LinearHead", "Curvature", "HESSIANS"]

HESSIANS = ("ggn", "ef", "fisher_mc")
_LIKELIHOODS = ("gaussian", "categorical", "bernoulli")
_LIK_ALIASES = {"regression": "gaussian", "classification": "categorical"}


# --------------------------------------------------------------------------- models
# The models as the curvature and predictive code sees them: their methods take inputs X
# (n, D) that the caller has checked once (Curvature.check_data) and do not check them again.

def _mlp_forward(thetas, X, sizes, code):
    """Outputs (S, n, K) of an MLP (sizes (L+1,) ints, activation code) for thetas (S, P) at
    checked X (n, D): the kernel behind bg.nn.MLP.forward, without that method's input checks."""
    k = _backend.kernels()
    out = np.empty((thetas.shape[0], X.shape[0], int(sizes[-1])), dtype=thetas.dtype)
    k.mlp.mlp_forward(_nn.kernel_net_config(k, tuple(int(s) for s in sizes), code), thetas, X, out, None)
    return out


class LinearHead:
    """A linear map ``f = φ Wᵀ + b`` on features φ (N, F): the model of a
    last-layer Laplace approximation on features from any network.

    The flat parameter vector is ``[W.ravel(), b]`` (PyTorch's
    parameters_to_vector order for ``nn.Linear``).

    Parameters
    ----------
    weight : (C, F) float32 or float64
    bias : (C,) same dtype, optional (zeros if None)
    """

    def __init__(self, weight, bias=None):
        W = C.as_array(weight, "weight", ndim=2)
        b = np.zeros(W.shape[0], W.dtype) if bias is None else C.as_array(bias, "bias", W.dtype, ndim=1)
        if b.shape != (W.shape[0],):
            raise ValueError(f"bias must have shape ({W.shape[0]},), got {b.shape}")
        self.weight, self.bias = W, b
        self.dtype = W.dtype
        self.n_outputs, self.n_features = W.shape
        self.layer_shapes = [(self.n_features, self.n_outputs)]   # (in, out) of each linear layer
        self.n_params = W.size + b.size

    def parameters(self):
        """The flat parameter vector (P,)."""
        return np.concatenate([self.weight.ravel(), self.bias])

    def n_inputs(self):
        """The number of input features the head takes (its weight matrix's columns)."""
        return self.n_features

    def forward_layers(self, theta, X):
        """Output (n, C) and each linear layer's input, for the curvature pass."""
        W, b = self._unflatten(theta)
        return X @ W.T + b, [X]

    def backward_sqrt(self, theta, cache, S):
        """Per linear layer (a (n, I), S_l (n, K, O)) from output factors S (n, K, C)."""
        return [(cache[0], S)]

    def forward(self, theta, X):
        """Outputs (N, C) of the head with parameters ``theta`` (P,) on features ``X`` (N, F)."""
        W, b = self._unflatten(theta)
        return X @ W.T + b

    def forward_many(self, thetas, X):
        """Outputs (S, n, C) for parameter samples thetas (S, P)."""
        Fo, Ci = self.n_features, self.n_outputs
        Ws = thetas[:, : Fo * Ci].reshape(-1, Ci, Fo)
        bs = thetas[:, Fo * Ci:]
        return np.einsum("nf,scf->snc", X, Ws) + bs[:, None, :]

    def _unflatten(self, theta):
        Fo, Ci = self.n_features, self.n_outputs
        return theta[: Fo * Ci].reshape(Ci, Fo), theta[Fo * Ci:]


class _MLPNet:
    """bg.nn.MLP seen by the curvature code: every linear layer, with the square-root
    factors back-propagated through the activations (NumPy GEMMs on the MLP's own
    forward trace)."""

    def __init__(self, mlp, dtype):
        self.mlp, self.dtype = mlp, dtype
        self.L = _Layout(mlp.sizes)
        self.code = _nn.ACTIVATIONS[mlp.activation]
        self.layer_shapes = list(zip(mlp.sizes[:-1], mlp.sizes[1:]))
        self.n_params, self.n_outputs = mlp.n_params, mlp.sizes[-1]
        self.sizes = np.asarray(mlp.sizes, dtype=np.int64)

    def n_inputs(self):
        return self.mlp.sizes[0]

    def forward_layers(self, theta, X):
        zs, acts, _ = _forward_trace(self.L, self.code, theta[None], X)
        return zs[-1][0], (X, [z[0] for z in zs], [a[0] for a in acts])

    def backward_sqrt(self, theta, cache, S):
        X, zs, acts = cache
        out, G = [], S
        for l in range(self.L.n_layers - 1, -1, -1):
            out.append((X if l == 0 else acts[l - 1], G))
            if l == 0:
                break
            W = self.L.unpack(theta[None], l)[0][0]
            G = np.matmul(G, W) * _act_deriv(self.code, zs[l - 1], acts[l - 1])[:, None, :]
        return out[::-1]

    def forward(self, theta, X):
        return _mlp_forward(theta[None], X, self.sizes, self.code)[0]

    def forward_many(self, thetas, X):
        return _mlp_forward(thetas, X, self.sizes, self.code)


class _LastLayerNet(LinearHead):
    """The last layer of an MLP on the features of the (fixed) layers below it."""

    def __init__(self, mlp, theta):
        w0, b0 = mlp.offsets[-1]
        I, O = mlp.sizes[-2], mlp.sizes[-1]
        super().__init__(theta[w0:b0].reshape(O, I), theta[b0:b0 + O])
        self.mlp, self.theta_full = mlp, theta
        self.L = _Layout(mlp.sizes)
        self.code = _nn.ACTIVATIONS[mlp.activation]
        self._below = (theta[None, :w0], np.asarray(mlp.sizes[:-1], dtype=np.int64))   # the layers under it

    def n_inputs(self):
        return self.mlp.sizes[0]

    def features(self, X):
        """The last layer's inputs (n, I) at checked X (n, D)."""
        if self.L.n_layers == 1:
            return X
        # the network below the last layer ends in a linear layer: its output, activated
        theta, sizes = self._below
        z = _mlp_forward(theta, X, sizes, self.code)[0]
        return np.ascontiguousarray(_act(self.code, z))

    def forward_layers(self, theta, X):
        return super().forward_layers(theta, self.features(X))

    def forward(self, theta, X):
        return super().forward(theta, self.features(X))

    def forward_many(self, thetas, X):
        return super().forward_many(thetas, self.features(X))


class _SubnetNet:
    """A subnetwork of an MLP: the parameters at ``indices`` (k,) of the flat vector, the
    others fixed at ``theta``. No layer structure of its own (``layer_shapes`` empty, one
    prior tensor), so only the diag and full structures apply; its curvature and predictive
    come from native Jacobian chunks (``curvature.mlp_jacobian``) restricted to the columns."""

    def __init__(self, mlp, theta, indices):
        self.mlp, self.theta_full, self.indices = mlp, theta, indices
        self.dtype = theta.dtype
        self.code = _nn.ACTIVATIONS[mlp.activation]
        self.sizes = np.asarray(mlp.sizes, dtype=np.int64)
        self.layer_shapes = []
        self.n_params, self.n_outputs = len(indices), mlp.sizes[-1]
        self.tensor_sizes = [self.n_params]

    def n_inputs(self):
        return self.mlp.sizes[0]

    def parameters(self):
        return self.theta_full[self.indices]

    def _full(self, thetas):
        out = np.broadcast_to(self.theta_full, (thetas.shape[0], self.theta_full.size)).copy()
        out[:, self.indices] = thetas
        return out

    def forward(self, theta, X):
        return _mlp_forward(self._full(theta[None]), X, self.sizes, self.code)[0]

    def forward_many(self, thetas, X):
        return _mlp_forward(self._full(thetas), X, self.sizes, self.code)

    def jacobians(self, theta, X, rows):
        """Yield (f (n, C), J (n, C, k)) in chunks of ``rows`` at the subnetwork's theta (k,)."""
        k = _backend.kernels()
        full = self._full(theta[None])[0]
        net = _nn.kernel_net_config(k, tuple(int(v) for v in self.sizes), self.code)
        C = self.n_outputs
        for s in range(0, X.shape[0], rows):
            e = min(X.shape[0], s + rows)
            f = np.empty((e - s, C), self.dtype)
            J = np.empty((e - s, C, self.mlp.n_params), self.dtype)
            k.curvature.mlp_jacobian(net, full, X[s:e], f, J)
            yield f, np.ascontiguousarray(J[:, :, self.indices])


def subnet_indices(subset, n_params):
    """A subnetwork given as a boolean mask (P,) or integer indices -> sorted unique indices (k,)."""
    a = C.to_numpy(subset, "subset")
    if a.dtype == bool:
        if a.shape != (n_params,):
            raise ValueError(f"a subnetwork mask must have shape ({n_params},), got {a.shape}")
        idx = np.flatnonzero(a)
    else:
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise TypeError("subset must be 'all', 'last_layer', a boolean mask (P,) or integer indices (k,)")
        idx = np.unique(a.astype(np.int64))
        if idx.size and (idx[0] < 0 or idx[-1] >= n_params):
            raise ValueError(f"subnetwork indices must be in [0, {n_params}), got {int(idx[0])}..{int(idx[-1])}")
    if idx.size == 0:
        raise ValueError("the subnetwork is empty")
    return idx


def _as_model(model, theta, subset="all"):
    if isinstance(model, _SubnetNet) and isinstance(subset, str):
        th = model.parameters() if theta is None else C.as_array(theta, "theta", model.dtype, ndim=1)
        if th.shape != (model.n_params,):
            raise ValueError(f"theta must have shape ({model.n_params},), got {th.shape}")
        return model, th
    if isinstance(model, _MLPNet):
        # another approximation's whole network (``Laplace(...).model``): the MLP it wraps, so
        # that a subset asked for here is honoured (issue 12: it used to fit the whole network)
        model = model.mlp
    if isinstance(model, _nn.MLP):
        if theta is None:
            raise TypeError("theta (the MAP parameters, shape (n_params,)) is required for a bg.nn.MLP")
        th = C.as_array(theta, "theta", ndim=1)
        if th.shape != (model.n_params,):
            raise ValueError(f"theta must have shape ({model.n_params},), got {th.shape}")
        if not isinstance(subset, str):
            m = _SubnetNet(model, th, subnet_indices(subset, model.n_params))
            return m, m.parameters()
        if subset == "last_layer":
            m = _LastLayerNet(model, th)
            return m, m.parameters()
        return _MLPNet(model, th.dtype), th
    if isinstance(model, (LinearHead, _MLPNet)):
        th = model.parameters() if theta is None else C.as_array(theta, "theta", model.dtype, ndim=1)
        if th.shape != (model.n_params,):
            raise ValueError(f"theta must have shape ({model.n_params},), got {th.shape}")
        return model, th
    raise TypeError(f"model must be a bayesgrad.laplace.LinearHead or bayesgrad.nn.MLP, got {type(model).__name__}")


# --------------------------------------------------------------------------- curvature
def row_losses(likelihood, f, y):
    """Each row's training loss (n,) in the curvature's convention, from outputs f (n, C)
    and checked targets y: ½||y − f||² (gaussian, unit noise), −log softmax(f)_y
    (categorical), softplus(f) − y f (bernoulli); the terms the weighted loss sums."""
    if likelihood == "gaussian":
        return 0.5 * np.sum((np.asarray(y, np.float64).reshape(f.shape) - f) ** 2, axis=1)
    if likelihood == "categorical":
        mx = f.max(axis=1, keepdims=True)
        lse = mx[:, 0] + np.log(np.exp(f - mx).sum(axis=1))
        return lse - f[np.arange(f.shape[0]), np.asarray(y).astype(np.int64)]
    x = f[:, 0]
    return np.logaddexp(0.0, x) - np.asarray(y, np.float64) * x


class Curvature:
    """Curvature of a model's loss, accumulated over data chunks.

    The public structure methods (``diag``, ``kron``, ``full``, ``gvp``,
    ``jacobians``) check their data; ``passes``, ``loss`` and the underscored
    twins take data that ``check_data`` has already returned.

    Parameters
    ----------
    model : LinearHead (or bg.nn.MLP)
    theta : (P,) parameters (None: the model's own)
    likelihood : {"gaussian", "categorical", "bernoulli"}
    hessian : {"ggn", "ef", "fisher_mc"}
        Exact GGN (square root of the loss Hessian back-propagated, one column
        per output), empirical Fisher, or Monte Carlo Fisher with
        ``n_mc_samples`` sampled labels per point (seed, stream).
    chunk_size : int
        Rows per chunk; memory is O(chunk_size · K · P) for ``full`` and
        ``jacobians``, O(chunk_size · K · layer width) otherwise.
    """

    def __init__(self, model, theta, likelihood, hessian="ggn", n_mc_samples=1, chunk_size=256, seed=0, stream=0):
        #: None, or (N,) non-negative weights of the rows of the data the passes take: each
        #: row's curvature and loss terms are multiplied by its weight (``Laplace.fit``'s
        #: sample_weight; integer weights give the curvature of rows repeated that often)
        self.weights = None
        self.model, self.theta = _as_model(model, theta)
        self.likelihood = C.option(likelihood, "likelihood", _LIKELIHOODS, _LIK_ALIASES)
        self.hessian = C.option(hessian, "hessian", HESSIANS)
        self.n_mc_samples = C.integer(n_mc_samples, "n_mc_samples", 1)
        self.chunk_size = C.integer(chunk_size, "chunk_size", 1)
        self.seed = _random.resolve_seed(seed)
        self.stream = C.integer(stream, "stream", 0)
        self.dtype = self.model.dtype
        if self.likelihood == "bernoulli" and self.model.n_outputs != 1:
            raise ValueError(f"likelihood 'bernoulli' needs a model with 1 output, got {self.model.n_outputs}")

    # ---- data
    def check_data(self, X, y=None):
        """X (N, D) and y ((N, C) targets for gaussian, (N,) labels otherwise, or None) as the
        passes take them: C-contiguous, of the curvature's dtype; TypeError / ValueError if not."""
        X = C.as_array(X, "X", self.dtype, ndim=2)
        if X.shape[1] != self.model.n_inputs():
            raise ValueError(f"X must have {self.model.n_inputs()} columns, got shape {X.shape}")
        if y is None:
            return X, None
        N, Co = X.shape[0], self.model.n_outputs
        if self.likelihood == "gaussian":
            y = C.as_array(y, "y", self.dtype)
            if y.ndim == 1 and Co == 1:
                y = y[:, None]
            if y.shape != (N, Co):
                raise ValueError(f"y must have shape ({N}, {Co}), got {y.shape}")
            return X, np.ascontiguousarray(y)
        y = C.as_array(y, "y", self.dtype, ndim=1)
        labels = C.class_labels(y, N, Co if self.likelihood == "categorical" else 2)
        return X, np.ascontiguousarray(labels, dtype=self.dtype)

    def _K(self):
        Co = self.model.n_outputs
        if self.hessian == "ef":
            return 1
        if self.hessian == "fisher_mc":
            return self.n_mc_samples
        return 1 if self.likelihood == "bernoulli" else Co

    def _chunks(self, N):
        for s in range(0, N, self.chunk_size):
            yield s, min(N, s + self.chunk_size)

    def _draws(self, s, n):
        """The chunk's Monte Carlo draws (rows s..s+n) for fisher_mc, a dummy otherwise."""
        if self.hessian != "fisher_mc":
            return np.zeros((1, 1), self.dtype)
        K, Co = self._K(), self.model.n_outputs
        stream = _random.fold_in(self.stream, "laplace/fisher_mc")
        if self.likelihood == "gaussian":
            return _random.normal((n, K, Co), self.seed, stream, self.dtype, offset=s * K * Co)
        return _random.uniform((n, K), self.seed, stream, self.dtype, offset=s * K)

    def passes(self, X, y):
        """Yield (loss, [(a_l, S_l) per layer]) for each data chunk (checked X, y)."""
        k = _backend.kernels()
        K, Co = self._K(), self.model.n_outputs
        for s, e in self._chunks(X.shape[0]):
            f, cache = self.model.forward_layers(self.theta, X[s:e])
            f = np.ascontiguousarray(f, dtype=self.dtype)
            S = np.empty((e - s, K, Co), self.dtype)
            loss = k.curvature.curv_sqrt_loss(f, np.ascontiguousarray(y[s:e]), self._draws(s, e - s), Likelihood[self.likelihood],
                                    CurvatureKind[self.hessian], S)
            if self.weights is not None:
                S, loss = self._weigh(S, f, y, s, e)
            yield float(loss), self.model.backward_sqrt(self.theta, cache, S)

    def _weigh(self, S, f, y, s, e):
        """Square-root factors S (n, K, C) of rows s..e times sqrt(w) (so their curvature
        terms count w times) and the chunk's weighted loss Σ w_n loss_n."""
        w = self.weights[s:e]
        S = S * np.sqrt(w).astype(self.dtype)[:, None, None]
        return S, float(np.dot(w, row_losses(self.likelihood, np.asarray(f, np.float64), y[s:e])))

    def _jac_rows_bound(self, n):
        # Jacobian chunks (rows, C, P_full) capped at 2**25 elements whatever chunk_size says
        m = self.model
        P = m.mlp.n_params if isinstance(m, _SubnetNet) else m.n_params
        return max(1, min(self.chunk_size, n, (1 << 25) // (m.n_outputs * P)))

    def _subnet_passes(self, X, y):
        """Yield (loss, SJ (n K, k)) per chunk of a subnetwork: the square-root factors
        times the subnetwork's Jacobian columns, so that H = Σ SJᵀ SJ."""
        k = _backend.kernels()
        K, Co = self._K(), self.model.n_outputs
        rows = self._jac_rows_bound(X.shape[0])
        s = 0
        for f, J in self.model.jacobians(self.theta, X, rows):
            n = f.shape[0]
            S = np.empty((n, K, Co), self.dtype)
            loss = k.curvature.curv_sqrt_loss(np.ascontiguousarray(f), np.ascontiguousarray(y[s:s + n]),
                                              self._draws(s, n), Likelihood[self.likelihood],
                                              CurvatureKind[self.hessian], S)
            if self.weights is not None:
                S, loss = self._weigh(S, f, y, s, s + n)
            s += n
            yield float(loss), np.matmul(S, J).reshape(n * K, -1)

    def loss(self, X, y):
        """The training loss at θ* (nats; ½Σ||y − f||² for gaussian), chunked.

        Shapes: ``X`` (N, d_in) checked inputs, ``y`` (N, K) targets (labels (N, 1) for
        classification).
        """
        k = _backend.kernels()
        total = 0.0
        for s, e in self._chunks(X.shape[0]):
            f = np.ascontiguousarray(self.model.forward(self.theta, X[s:e]), dtype=self.dtype)
            S = np.empty((e - s, 1, f.shape[1]), self.dtype)
            total += float(k.curvature.curv_sqrt_loss(f, np.ascontiguousarray(y[s:e]), np.zeros((1, 1), self.dtype),
                                            Likelihood[self.likelihood], CurvatureKind.ef, S))
        return total

    def _mlp_pass(self, X, y, structure, out):
        """Whole-MLP chunk pass in one kernel (forward, back-propagated square roots,
        per-layer accumulation); returns the loss."""
        k = _backend.kernels()
        m = self.model
        cfg = k.curvature.CurvatureConfig(m.mlp.net_config(k), Likelihood[self.likelihood], CurvatureKind[self.hessian],
                                          self._K(), CurvatureStructure[structure])
        loss = 0.0
        for s, e in self._chunks(X.shape[0]):
            loss += float(k.curvature.mlp_curv_accum(cfg, self.theta, X[s:e], np.ascontiguousarray(y[s:e]), self._draws(s, e - s), out))
        return loss

    # ---- structures: each public method checks its data once, its _twin takes checked arrays
    def diag(self, X, y):
        """Diagonal of the curvature (P,) summed over the data; also returns the loss."""
        return self._diag(*self.check_data(X, y))

    def _diag(self, X, y):
        if isinstance(self.model, _SubnetNet):
            out, loss = np.zeros(self.model.n_params, self.dtype), 0.0
            for lo, SJ in self._subnet_passes(X, y):
                out += np.einsum("mp,mp->p", SJ, SJ)
                loss += lo
            return out, loss
        if isinstance(self.model, _MLPNet) and self.weights is None:  # the fused kernel is unweighted
            out = np.zeros(self.model.n_params, self.dtype)
            return out, self._mlp_pass(X, y, "diag", out)
        k = _backend.kernels()
        parts = [(np.zeros((o, i), self.dtype), np.zeros(o, self.dtype)) for i, o in self.model.layer_shapes]
        loss = 0.0
        for lo, layers in self.passes(X, y):
            loss += lo
            for (a, S), (w, b) in zip(layers, parts):
                k.curvature.linear_diag_accum(np.ascontiguousarray(a), np.ascontiguousarray(S), w, b)
        return np.concatenate([np.concatenate([w.ravel(), b]) for w, b in parts]), loss

    def kron(self, X, y):
        """Kronecker factors [(A_l (I, I), B_l (O, O))] with A = (1/N) Σ a aᵀ, B = Σ s sᵀ; and the loss."""
        return self._kron(*self.check_data(X, y))

    def _kron(self, X, y):
        k = _backend.kernels()
        facs = [(np.zeros((i, i), self.dtype), np.zeros((o, o), self.dtype)) for i, o in self.model.layer_shapes]
        w = self.weights
        if isinstance(self.model, _MLPNet) and w is None:
            packed = np.zeros(sum(i * i + o * o for i, o in self.model.layer_shapes), self.dtype)
            loss = self._mlp_pass(X, y, "kron", packed)
            off = 0
            for (i, o), (A, B) in zip(self.model.layer_shapes, facs):
                A[...] = packed[off:off + i * i].reshape(i, i)
                B[...] = packed[off + i * i:off + i * i + o * o].reshape(o, o)
                off += i * i + o * o
        else:
            loss = 0.0
            for (s, e), (lo, layers) in zip(self._chunks(X.shape[0]), self.passes(X, y)):
                loss += lo
                # weighted: a_n scaled by sqrt(w_n) too and A divided by Σw, the factors of
                # the data set with rows repeated (S already carries sqrt(w))
                sw = None if w is None else np.sqrt(w[s:e]).astype(self.dtype)[:, None]
                for (a, S), (A, B) in zip(layers, facs):
                    a = a if sw is None else a * sw
                    k.curvature.linear_kron_accum(np.ascontiguousarray(a), np.ascontiguousarray(S), A, B)
        N = X.shape[0] if w is None else float(np.sum(w))
        return [(A / N, B) for A, B in facs], loss

    def _jac_rows(self, layers):
        k = _backend.kernels()
        blocks = []
        for a, S in layers:
            n, K, O = S.shape
            J = np.empty((n, K, O * a.shape[1] + O), self.dtype)
            k.curvature.linear_jacobian(np.ascontiguousarray(a), np.ascontiguousarray(S), J)
            blocks.append(J)
        return blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=2)

    def full(self, X, y):
        """The full curvature matrix (P, P) summed over the data; and the loss."""
        return self._full(*self.check_data(X, y))

    def _full(self, X, y):
        k = _backend.kernels()
        P = self.model.n_params
        G = np.zeros((P, P), self.dtype)
        loss = 0.0
        if isinstance(self.model, _SubnetNet):
            for lo, SJ in self._subnet_passes(X, y):
                k.curvature.gram_accum(np.ascontiguousarray(SJ), G)
                loss += lo
            return G, loss
        for lo, layers in self.passes(X, y):
            loss += lo
            if len(layers) == 1:   # one linear layer: block by block, C× fewer flops than the Jacobian Gram
                a, S = layers[0]
                k.curvature.linear_full_accum(np.ascontiguousarray(a), np.ascontiguousarray(S), G)
            else:
                J = self._jac_rows(layers)
                k.curvature.gram_accum(J.reshape(-1, P), G)
        return G, loss

    def gvp(self, X, y, V):
        """Matrix-free curvature-vector products: V (m, P) or (P,) -> same shape, ``(H Vᵀ)ᵀ``."""
        X, y = self.check_data(X, y)
        V = C.as_array(V, "V", self.dtype)
        one = V.ndim == 1
        V2 = np.ascontiguousarray(V.reshape(1, -1) if one else V)
        P = self.model.n_params
        if V2.ndim != 2 or V2.shape[1] != P:
            raise ValueError(f"V must have shape (m, {P}) or ({P},), got {V.shape}")
        out = self._gvp(X, y, V2)
        return out[0] if one else out

    def _gvp(self, X, y, V2):
        """gvp on checked data and a C-contiguous V2 (m, P) of the curvature's dtype."""
        k = _backend.kernels()
        out = np.zeros_like(V2)
        if isinstance(self.model, _MLPNet) and self.weights is not None:
            # weighted: the Jacobian rows of each chunk (their S carries sqrt(w)), (J V^T)^T J
            P = self.model.n_params
            for _, layers in self.passes(X, y):
                J = self._jac_rows(layers).reshape(-1, P)
                out += (J @ V2.T).T @ J
            return out
        if isinstance(self.model, _MLPNet):   # jvp -> loss Hessian -> vjp, natively per chunk
            m = self.model
            cfg = k.curvature.CurvatureConfig(m.mlp.net_config(k), Likelihood[self.likelihood],
                                              CurvatureKind[self.hessian], self._K())
            for s, e in self._chunks(X.shape[0]):
                k.curvature.mlp_ggn_vp(cfg, self.theta, X[s:e], np.ascontiguousarray(y[s:e]), self._draws(s, e - s), V2, out)
            return out
        for _, layers in self.passes(X, y):
            a, S = layers[0]
            k.curvature.linear_ggn_vp(np.ascontiguousarray(a), np.ascontiguousarray(S), V2, out)
        return out

    def jacobians(self, X):
        """Yield (f (n, C), J (n, C, P)) per chunk: the output Jacobians (GLM predictive)."""
        X, _ = self.check_data(X)
        yield from self._jacobians(X)

    def _jacobians(self, X):
        if isinstance(self.model, _SubnetNet):
            yield from self.model.jacobians(self.theta, X, self._jac_rows_bound(X.shape[0]))
            return
        Co = self.model.n_outputs
        # the Jacobian chunk is (rows, C, P): cap it at 2**25 elements whatever chunk_size says
        rows = max(1, min(self.chunk_size, X.shape[0], (1 << 25) // (Co * self.model.n_params)))
        eye = np.ascontiguousarray(np.broadcast_to(np.eye(Co, dtype=self.dtype), (rows, Co, Co)))
        if isinstance(self.model, _MLPNet):   # forward and back-propagated directions in one kernel
            k = _backend.kernels()
            net = _nn.kernel_net_config(k, tuple(int(v) for v in self.model.mlp.sizes), self.model.code)
            for s in range(0, X.shape[0], rows):
                e = min(X.shape[0], s + rows)
                f = np.empty((e - s, Co), self.dtype)
                J = np.empty((e - s, Co, self.model.n_params), self.dtype)
                k.curvature.mlp_jacobian(net, self.theta, X[s:e], f, J)
                yield f, J
            return
        for s in range(0, X.shape[0], rows):
            e = min(X.shape[0], s + rows)
            f, cache = self.model.forward_layers(self.theta, X[s:e])
            layers = self.model.backward_sqrt(self.theta, cache, eye[: e - s])
            yield np.asarray(f), self._jac_rows(layers)

