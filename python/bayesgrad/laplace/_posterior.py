"""The posterior protocol of ``bayesgrad.laplace``: everything the
:class:`~bayesgrad.laplace.Laplace` object needs from a Gaussian posterior
``N(θ*, P⁻¹)``, ``P = f H + diag(p0)`` (``f = 1/(σ² T)``), whatever the
structure of the curvature ``H``; and :class:`ParamLayout`, which spreads a
prior precision over the parameters.

Each structure is one subclass of :class:`Posterior` in its own module
(``diag``, ``kron``, ``full``, ``lowrank``); ``approximation.POSTERIORS`` maps
the structure names to them.
"""
from __future__ import annotations

import abc
import copy
from typing import ClassVar

import numpy as np

__all__ = ["ParamLayout", "Posterior", "StateReader", "not_positive_definite"]


def not_positive_definite():
    return ValueError("posterior precision is not positive definite; increase prior_precision")


class ParamLayout:
    """The flat parameter vector (P,) as linear layers, ``[W_1.ravel(), b_1, W_2.ravel(), b_2, ...]``
    (W_l (out, in), row-major), and how a prior precision ``p`` spreads over it: ``p`` is (1,)
    (scalar), (n_tensors,) (one per weight and bias tensor) or (P,) (one per parameter).

    Attributes: ``layer_shapes`` [(in, out)] per linear layer, ``tensor_sizes`` (n_tensors,),
    ``n_tensors``, ``n_params``, ``dtype`` (of the curvature arrays).
    """

    def __init__(self, layer_shapes, dtype, tensor_sizes=None):
        self.layer_shapes = list(layer_shapes)
        self.dtype = dtype
        # a subnetwork has no layers of its own: its parameters are one "tensor"
        self.tensor_sizes = (list(tensor_sizes) if tensor_sizes is not None
                             else [n for i, o in self.layer_shapes for n in (o * i, o)])
        self.n_tensors = len(self.tensor_sizes)
        self.n_params = sum(self.tensor_sizes)

    def is_per_parameter(self, n):
        """Whether n prior values are one per parameter (a length that is also n_tensors reads per tensor)."""
        return n == self.n_params and n != self.n_tensors

    def per_parameter(self, p):
        """p (1,), (n_tensors,) or (P,) -> the diagonal of P0 (P,)."""
        if len(p) == 1:
            return np.full(self.n_params, p[0])
        if self.is_per_parameter(len(p)):
            return p.copy()
        return np.repeat(p, self.tensor_sizes)

    def per_tensor(self, p):
        """p (1,) or (n_tensors,) -> one prior precision per tensor (n_tensors,)."""
        return np.full(self.n_tensors, p[0]) if len(p) == 1 else p

    def reduce(self, g, n):
        """A gradient w.r.t. each parameter's prior precision g (P,) -> w.r.t. the n values of p (n,)."""
        if n == 1:
            return np.array([g.sum()])
        if self.is_per_parameter(n):
            return g
        return np.add.reduceat(g, np.cumsum([0] + self.tensor_sizes[:-1]))


class StateReader:
    """Reads a posterior's saved arrays back (``Posterior.load_state``), each checked: finite
    float32/float64 of the expected shape, else ValueError naming the file."""

    def __init__(self, arrays, path):
        self.arrays, self.path = arrays, path

    def __call__(self, name, shape=None, dtype=None):
        a = self.arrays.get(name)
        if a is None or a.dtype not in (np.float32, np.float64) or not np.all(np.isfinite(a)):
            raise self.error(f"array {name!r} missing or not finite float32/float64")
        if shape is not None and a.shape != shape:
            raise self.error(f"array {name!r} has shape {a.shape}, expected {shape}")
        return a if dtype is None else a.astype(dtype)

    def error(self, what):
        return ValueError(f"{self.path!r}: {what}")


class Posterior(abc.ABC):
    """``N(θ*, P⁻¹)`` with ``P = f H + diag(p0)`` and the curvature ``H`` in one structure.

    Two stages. An instance from the constructor holds the fitted curvature (``fit`` or
    ``load_state``), which does not depend on the prior. ``with_prior(p, f)`` returns a
    copy with P factorised for one prior precision and noise factor; the linear algebra
    (``logdet`` onwards) works on such copies. Vectors are rows: V (m, P). Results are
    float64 whatever the curvature's dtype.

    Parameters
    ----------
    layout : ParamLayout
    rank, lowrank_solver : the low-rank structure's settings (see ``Laplace``); the other
        structures ignore them.
    """

    #: the structure name, the key of the registry
    key: ClassVar[str]
    #: None, or why the structure cannot take one prior precision per parameter
    per_parameter_prior_error: ClassVar[str | None] = None

    def __init__(self, layout, rank=None, lowrank_solver="auto"):
        self.layout = layout
        self.n = layout.n_params
        #: the fitted curvature in the structure's own form (None before ``fit``)
        self.H = None

    # ---- the curvature (prior-free)
    @abc.abstractmethod
    def fit(self, curv, X, y):
        """Accumulate the curvature with ``curv`` (a ``Curvature``) over checked data X (N, D),
        y; return the training loss at θ*."""

    @abc.abstractmethod
    def state(self):
        """The fitted curvature as named arrays, for ``Laplace.save``."""

    @abc.abstractmethod
    def load_state(self, read):
        """Restore what ``state`` returned; ``read`` is a :class:`StateReader`."""

    # ---- the precision at a prior
    def with_prior(self, prior, f):
        """A copy with P = f H + diag(p0) factorised; prior (1,), (n_tensors,) or (P,), f = 1/(σ² T).
        ValueError when P is not positive definite."""
        post = copy.copy(self)
        post.f, post.p0 = f, self.layout.per_parameter(prior)
        post._factorise(prior)
        return post

    @abc.abstractmethod
    def _factorise(self, prior):
        """Factorise P from self.H, self.f and self.p0 (P,) (or ``prior`` itself)."""

    @abc.abstractmethod
    def logdet(self):
        """log det P."""

    @abc.abstractmethod
    def inv_apply(self, V):
        """V (m, P) -> V P⁻¹ (m, P)."""

    @abc.abstractmethod
    def inv_sqrt_apply(self, Z):
        """Standard normals Z (S, P) -> weight deviations (S, P) with covariance P⁻¹ (sampling)."""

    @abc.abstractmethod
    def diag_inv(self):
        """The marginal variances diag(P⁻¹) (P,)."""

    @abc.abstractmethod
    def matrix(self):
        """P as a dense (P, P) array."""

    def covariance(self):
        """P⁻¹ as a dense (P, P) array."""
        return self.inv_apply(np.eye(self.n))

    def functional_variance(self, J):
        """Output Jacobians J (n, C, P) -> the GLM output covariances J P⁻¹ Jᵀ (n, C, C)."""
        n, Co, P = J.shape
        SJ = self.inv_apply(J.reshape(n * Co, P).astype(np.float64)).reshape(n, Co, P)
        return np.einsum("ncp,ndp->ncd", J.astype(np.float64), SJ)

    def glm_factors(self):
        """P⁻¹ in the layer-by-layer form the native GLM predictive takes (``curvature.mlp_glm_fvar``):
        ``(structure, rot, var)`` with a ``CurvatureStructure`` code, the packed eigenvectors
        ``rot`` (empty for diag) and the variances ``var`` (P,), float64; or None when P⁻¹ is
        not block diagonal per layer in that form (full, lowrank: Jacobian products instead)."""
        return None

    def evidence_terms(self, delta, grad=False):
        """The prior's part of the Laplace evidence, ``−½ (δᵀ P0 δ + log det P − log det P0)`` with
        δ = θ* − μ0 (P,); with ``grad`` also its gradient w.r.t. each p0_j (P,) and w.r.t. log σ
        (``tr(P⁻¹ f H)``), else None, None."""
        p0 = self.p0
        scatter = float(np.sum(delta * delta * p0))
        value = -0.5 * (scatter + self.logdet() - np.sum(np.log(p0)))
        if not grad:
            return value, None, None
        dinv = self.diag_inv()
        return value, -0.5 * (delta * delta + dinv - 1.0 / p0), self.n - np.sum(dinv * p0)
