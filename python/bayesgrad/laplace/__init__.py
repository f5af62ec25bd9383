"""Laplace approximations of network posteriors (diagonal, Kronecker, full,
low-rank; GGN, empirical Fisher or sampled Fisher), marginal likelihood and
GLM / MC predictives.

Conventions are laplace-torch's, so that numbers agree with it:

* the curvature ``H`` is summed over the data set; for ``"gaussian"`` the
  loss Hessian is the identity (unit noise, Λ = I; σ enters separately);
* the empirical Fisher is ``Σ_n g_n g_nᵀ`` with ``g_n`` the gradient of the
  per-point loss of the same unit-noise likelihood, ``½||y − f||²`` for
  ``"gaussian"``, so that its expectation under the model is the GGN.
  Deliberate difference: laplace-torch's regression EF is exactly 2× this —
  it squares the gradient of ``MSELoss(reduction="sum")``, ``2(f − y)``, and
  applies its factor ½ once, which amounts to Λ = 2I and contradicts the
  Λ = I of its (and our) GGN. Classification EFs agree with laplace-torch;
* posterior precision ``P = H / (σ² T) + P0`` with ``P0`` diagonal (scalar,
  one value per parameter tensor — each weight and each bias — or one per
  parameter);
* Kronecker factors per linear layer: ``B = Σ_{n,k} s sᵀ`` (out × out) and
  ``A = (1/N) Σ_n a aᵀ`` (in × in), so that ``H_W ≈ B ⊗ A`` in the
  row-major order of W (out, in); the bias is its own block with ``B`` alone.
  The prior and ``1/(σ²T)`` are added in the factors' eigenbasis:
  eigenvalues ``λ_B λ_Aᵀ / (σ²T) + δ``;
* ``log p(D) ≈ log p(D|θ*) − ½ (θ*−μ0)ᵀ P0 (θ*−μ0) − ½ (log det P − log det P0)``
  with ``log p(D|θ*) = −L/(σ²T) − N C log(σ √(2π))`` for gaussian
  (L = ½ Σ ||y − f||²) and ``−L/T`` (L = Σ −log p(y|f)) otherwise.

Shared call shape: build ``Laplace(model, theta, likelihood, ...)``, call
``fit(X, y)``, then ``log_marginal_likelihood()``,
``optimize_prior_precision()``, ``sample(n, seed)`` and ``predict(X, ...)``.
The model is a :class:`LinearHead` (last-layer Laplace on features the user
supplies, e.g. from a pretrained network in any framework) or, with the MLP
engine, a ``bg.nn.MLP`` (whole, its last layer, or a subnetwork given as a mask
or indices, e.g. from :func:`largest_variance_subnetwork`). Data are processed in
chunks: no N×C×P array is ever built. The GLM predictive of the diagonal and
Kronecker structures builds no Jacobians at all (the output directions are
back-propagated layer by layer, ``curvature.mlp_glm_fvar``); full, low-rank and
subnetwork predictives multiply Jacobian chunks of at most 2**25 elements.

Layout of the package:

* ``approximation`` — the :class:`Laplace` object (settings, fit, marginal
  likelihood and prior optimisation, sampling, predict, save/load) and the
  registry ``POSTERIORS`` of structures;
* ``_posterior`` — the protocol every structure implements (``Posterior``)
  and the prior-precision layout; ``diag``, ``kron``, ``full``, ``lowrank``
  — one posterior class each;
* ``curvature`` — the models (:class:`LinearHead`, MLP whole, last layer or subnetwork)
  and :class:`Curvature` (GGN / Fisher passes over data chunks);
* ``predictive`` — functional variance, GLM links, NN sampling;
* ``online`` — :func:`marglik_training`, MAP training with the prior precisions
  and σ tuned by the Laplace evidence during training (Immer et al. 2021);
"""
from .approximation import STRUCTURES, Laplace, largest_variance_subnetwork
from .curvature import HESSIANS, Curvature, LinearHead
from .online import MarglikResult, marglik_training
from .predictive import LINKS

__all__ = ["LinearHead", "Curvature", "Laplace", "STRUCTURES", "HESSIANS", "LINKS", "largest_variance_subnetwork",
           "marglik_training", "MarglikResult"]
