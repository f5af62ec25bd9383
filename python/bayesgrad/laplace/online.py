"""Online marginal-likelihood training (Immer et al. 2021, "Scalable marginal
likelihood estimation for model selection in deep learning", Algorithm 1).

The network is trained to its MAP under a Gaussian prior whose precisions (one
per weight and bias tensor by default) and, for the gaussian likelihood, the
noise σ are not fixed in advance: after ``burnin_epochs`` and then every
``marglik_frequency`` epochs, a Laplace approximation is fitted at the current
parameters and the hyper-parameters are moved to maximise its log marginal
likelihood (exact gradients, L-BFGS on their logarithms, as
``Laplace.optimize_prior_precision``); training continues under the new prior,
the Adam state carried over. The result holds the final Laplace posterior,
ready for ``predict``.

Compared with fitting the MAP first and tuning the prior afterwards (the
post-hoc route), the prior shapes the MAP itself, which is what makes the
evidence a model-selection criterion (Immer et al., section 4).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import _checks as C
from .. import nn as _nn
from .approximation import POSTERIORS, STRUCTURES, Laplace


@dataclass
class MarglikResult:
    """What :func:`marglik_training` returns.

    Attributes
    ----------
    laplace : Laplace
        Fitted at the final parameters with the final hyper-parameters.
    theta : ndarray (P,)
        The final MAP parameters.
    prior_precision : ndarray (1,) or (n_tensors,)
        The final prior precisions.
    sigma_noise : float
        The final observation noise σ (1.0 unless gaussian).
    log_marglik : list of float
        The Laplace log marginal likelihood (nats) after each hyper-parameter update.
    history : list of dict
        Per epoch: ``loss``, ``nll`` and, at update epochs, ``log_marglik``,
        ``prior_precision`` and ``sigma_noise``.
    interrupted : bool
        Whether Ctrl-C stopped training (the state is that of the last whole epoch).
    """
    laplace: Laplace
    theta: np.ndarray
    prior_precision: np.ndarray
    sigma_noise: float
    log_marglik: list = field(default_factory=list)
    history: list = field(default_factory=list)
    interrupted: bool = False


def marglik_training(mlp, X, y, likelihood="categorical", *, structure="kron", prior_structure="layerwise",
                     epochs=100, marglik_frequency=5, burnin_epochs=10, hyper_max_iter=30, prior_precision=1.0,
                     sigma_noise=1.0, optimize_sigma=None, batch_size=32, lr=1e-3, theta0=None, chunk_size=256,
                     seed=0, stream=0, dtype=None, verbose=0) -> MarglikResult:
    """Train ``mlp`` by MAP with its prior precisions (and σ) tuned online by the Laplace evidence.

    Parameters
    ----------
    mlp : bayesgrad.nn.MLP
    X : array (N, D)
        Training inputs.
    y : array (N,) or (N, Dy)
        Targets (integer labels for categorical / bernoulli).
    likelihood : {"categorical", "bernoulli", "gaussian", ...}
    structure : str
        The Laplace structure used for the evidence ("kron" by default, as Immer et al.;
        "diag", "full", "lowrank" also).
    prior_structure : {"layerwise", "scalar", "diag"}
        One precision per weight and bias tensor (default), one in all, or one per
        parameter (not for "kron").
    epochs : int
        MAP epochs in total (default 100).
    marglik_frequency : int
        Epochs between hyper-parameter updates (default 5).
    burnin_epochs : int
        Epochs before the first update (default 10).
    hyper_max_iter : int
        L-BFGS iterations per update (default 30).
    prior_precision : float or array (n_tensors,)
        Initial prior precision (default 1.0).
    sigma_noise : float
        Initial noise σ for gaussian (default 1.0).
    optimize_sigma : bool or None
        Tune σ too (default: True for gaussian, which is the only likelihood with a σ).
    batch_size, lr, theta0, seed, stream, dtype, verbose
        As for ``bayesgrad.nn.train_map``.
    chunk_size : int
        Rows per curvature pass (memory bound of the Laplace fits).

    Returns
    -------
    MarglikResult
    """
    if not isinstance(mlp, _nn.MLP):
        raise TypeError(f"mlp must be a bayesgrad.nn.MLP, got {type(mlp).__name__}")
    lik = _nn.likelihood_name(likelihood)
    structure = C.option(structure, "structure", STRUCTURES)
    prior_structure = C.option(prior_structure, "prior_structure", ("scalar", "layerwise", "diag"))
    why = POSTERIORS[structure].per_parameter_prior_error
    if prior_structure == "diag" and why:
        raise ValueError(f"prior_structure='diag' is not available for structure={structure!r}: {why}")
    epochs = C.integer(epochs, "epochs", 1)
    marglik_frequency = C.integer(marglik_frequency, "marglik_frequency", 1)
    burnin_epochs = C.integer(burnin_epochs, "burnin_epochs", 0)
    hyper_max_iter = C.integer(hyper_max_iter, "hyper_max_iter", 1)
    if optimize_sigma is None:
        optimize_sigma = lik == "gaussian"
    elif optimize_sigma and lik != "gaussian":
        raise ValueError("optimize_sigma is only for the gaussian likelihood")
    sigma = C.real(sigma_noise, "sigma_noise")
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma_noise must be positive and finite, got {sigma_noise!r}")
    if lik != "gaussian" and sigma != 1.0:
        raise ValueError("sigma_noise can only be set for the gaussian likelihood")

    def new_laplace(theta, p, s):
        return Laplace(mlp, theta, lik, structure=structure, prior_precision=p, sigma_noise=s,
                       chunk_size=chunk_size, seed=seed, stream=stream)

    # The prior's layout and a checked initial precision, before any training.
    probe = new_laplace(mlp.init(seed=seed, stream=stream) if theta0 is None else theta0, prior_precision, sigma)
    hyper = {"p": probe.prior_precision.copy(), "sigma": sigma, "lml": []}
    layout = probe._layout

    def update(theta):
        la = new_laplace(theta, hyper["p"], hyper["sigma"]).fit(X, y)
        la.optimize_prior_precision("marglik", prior_structure=prior_structure, optimize_sigma=optimize_sigma,
                                    max_iter=hyper_max_iter)
        hyper["p"], hyper["sigma"] = la.prior_precision.copy(), la.sigma_noise
        lml = la.log_marginal_likelihood()
        hyper["lml"].append(lml)
        return la, lml

    def hook(e, state, pp):
        done = e + 1
        if done < burnin_epochs or (done - burnin_epochs) % marglik_frequency != 0 or done == epochs:
            return {}
        P = mlp.n_params
        _, lml = update(state[:P].copy())
        pp[...] = layout.per_parameter(hyper["p"])
        if lik == "gaussian":
            state[P:] = math.log(hyper["sigma"])
        return {"log_marglik": lml, "prior_precision": hyper["p"].copy(), "sigma_noise": hyper["sigma"]}

    info = _nn.fit_point(mlp, X, y, lik, theta0=theta0, prior_prec=layout.per_parameter(hyper["p"]),
                         dropout_p=0.0, noise=sigma, learn_noise=False, epochs=epochs, batch_size=batch_size,
                         lr=lr, validation=0.0, patience=None, seed=seed, stream=stream, verbose=verbose,
                         desc="marglik training", dtype=dtype, epoch_hook=hook)
    theta = info["theta"]
    # the final update at the final parameters: the returned posterior and its evidence
    la, _ = update(theta)
    return MarglikResult(la, theta, hyper["p"].copy(), float(hyper["sigma"]), list(hyper["lml"]), info["history"],
                         bool(info["interrupted"]))
