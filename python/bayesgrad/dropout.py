"""MC dropout (Gal & Ghahramani 2016): dropout training as approximate
variational inference, and Monte Carlo prediction with T stochastic passes.

Dropout acts on the hidden units (probability ``p``; kept units are scaled by
1/(1-p)). Training minimises the whole-data-set objective in nats
``sum_n nll_n + sum_j 0.5 * prec_j theta_j^2`` natively (native calls of ~0.1 s),
with Gal's weight decay: W of layer l gets precision ``l^2 (1 - p_in)``
(p_in = 0 for the first layer, whose inputs are not dropped), biases ``l^2``,
where ``l`` is the prior length-scale. The Gaussian noise is fixed to
``1/sqrt(tau)`` when ``tau`` is given, otherwise learned.

Prediction uses *consistent masks*: pass t applies the same mask to every
input, so the T passes are T fixed networks -- predictions on a pool split in
chunks equal those on the whole pool, which BatchBALD needs.
"""
from __future__ import annotations

import math

import numpy as np

from . import _checks as C
from . import _training as _tr
from . import random as _random
from .nn import MLP, Predictive, fit_point, likelihood_name, sampled_outputs, target_dim

__all__ = ["MCDropout"]


class MCDropout:
    """MC dropout for ``mlp``.

    Parameters
    ----------
    mlp : bg.nn.MLP (needs at least one hidden layer)
    p : dropout probability in [0, 1)
    likelihood : str
    length_scale : prior length-scale l > 0 (weight decay as above)
    tau : model precision (gaussian): noise fixed to 1/sqrt(tau); None learns it
    weight_decay : overrides Gal's precision with one value for every parameter
    lr, batch_size : Adam step size and minibatch size
    """

    def __init__(self, mlp, p=0.1, likelihood="gaussian", *, length_scale=1e-2, tau=None, weight_decay=None,
                 lr=1e-3, batch_size=32, dtype=None):
        if not isinstance(mlp, MLP):
            raise TypeError(f"mlp must be a bayesgrad.nn.MLP, got {type(mlp).__name__}")
        if mlp.n_hidden_units == 0:
            raise ValueError("MC dropout needs an MLP with at least one hidden layer")
        self.mlp = mlp
        p = C.real(p, "p")
        if not (0 <= p < 1):
            raise ValueError(f"p must be a dropout probability in [0, 1), got {p}")
        self.p = p
        self.likelihood = likelihood_name(likelihood)
        self.length_scale = C.real(length_scale, "length_scale")
        if not (np.isfinite(self.length_scale) and self.length_scale > 0):
            raise ValueError(f"length_scale must be positive, got {length_scale}")
        if tau is not None:
            tau = C.real(tau, "tau")
            if not (np.isfinite(tau) and tau > 0):
                raise ValueError(f"tau must be positive, got {tau}")
        self.tau = tau
        if weight_decay is not None:
            weight_decay = C.real(weight_decay, "weight_decay")
            if not weight_decay >= 0:
                raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.weight_decay = weight_decay
        self.lr = C.real(lr, "lr")
        _tr.adam_options(self.lr)  # validates
        self.batch_size = C.integer(batch_size, "batch_size", 1)
        self.dtype = None if dtype is None else C.float_dtype(dtype)
        self.theta_ = None

    def prior_precision(self):
        """Per-parameter precision (P,) of the weight decay."""
        prec = np.empty(self.mlp.n_params)
        if self.weight_decay is not None:
            prec[:] = self.weight_decay
            return prec
        l2 = self.length_scale ** 2
        for i, (w0, b0) in enumerate(self.mlp.offsets):
            keep = 1.0 if i == 0 else 1.0 - self.p
            prec[w0:b0] = l2 * keep
            prec[b0:b0 + self.mlp.sizes[i + 1]] = l2
        return prec

    def fit(self, X, y, epochs=100, *, seed=0, stream=0, theta0=None, validation=0.0, patience=10, verbose=1,
            sample_weight=None, tol=0.0):
        """Dropout training (native epochs); returns self. ``history_`` has loss and nll per epoch.

        Shapes: ``X`` (N, d_in); ``y`` (N, d_out) or (N,) targets (integer labels (N,) for
        "categorical"); ``theta0`` (P,) starts from given weights (a warm start);
        ``sample_weight`` (N,), default None, weights each row's likelihood term (finite,
        >= 0). With ``validation`` > 0 the rows held out stop training after ``patience``
        epochs without a fall of the validation NLL by more than ``tol`` (default 0) nats
        per row, and the best epoch's weights are kept."""
        learn = self.likelihood == "gaussian" and self.tau is None
        noise = 1.0 / math.sqrt(self.tau) if self.tau is not None else 1.0
        res = fit_point(self.mlp, X, y, self.likelihood, theta0=theta0, prior_prec=self.prior_precision(),
                        dropout_p=self.p, noise=noise, learn_noise=learn, epochs=epochs,
                        batch_size=self.batch_size, lr=self.lr, validation=validation, patience=patience,
                        seed=seed, stream=stream, verbose=verbose, desc="MC dropout", dtype=self.dtype,
                        sample_weight=sample_weight, tol=tol)
        self.theta_ = res["theta"]
        self.log_noise_ = res["log_noise"]
        self.history_ = res["history"]
        self.interrupted_ = res["interrupted"]
        self.seed_ = res["seed"]
        return self

    @property
    def noise_(self):
        if self.theta_ is None:
            raise RuntimeError("call fit() first")
        return np.exp(self.log_noise_) if self.likelihood == "gaussian" else None

    def sample_masks(self, n_samples, seed=0, stream=0, dtype=None):
        """T consistent masks (T, H) over the H hidden units, scaled by 1/(1-p), from stream
        ``fold_in(stream, "dropout")``: mask t is the same for every input."""
        n_samples = C.integer(n_samples, "n_samples", 1)
        dt = C.float_dtype(dtype or (self.theta_.dtype if self.theta_ is not None else np.float64))
        C.check_allocation(C.n_bytes((n_samples, self.mlp.n_hidden_units), dt, copies=2),
                           f"n_samples={n_samples}: the (T, H) dropout masks")
        return self._mask_block(0, n_samples, seed, _random.fold_in(_random.check_stream(stream), "dropout"), dt)

    def _mask_block(self, s0, s1, seed, stream, dt):
        """Masks s0..s1-1 of ``sample_masks`` (rows s0..s1-1 of one draw)."""
        H = self.mlp.n_hidden_units
        u = _random.uniform((s1 - s0, H), seed=seed, stream=stream, dtype=dt, offset=s0 * H)
        return np.where(u > self.p, dt.type(1.0 / (1.0 - self.p)), dt.type(0))

    def predict(self, X, n_samples=100, seed=0, stream=0, masks=None):
        """MC prediction with T = n_samples passes (``Predictive``); ``masks`` (T, H) overrides the draw.

        Passes run in chunks (``nn.sampled_outputs``); sizes are checked before
        anything is allocated."""
        if self.theta_ is None:
            raise RuntimeError("call fit() first")
        dt = self.theta_.dtype
        H, P = self.mlp.n_hidden_units, self.mlp.n_params
        if masks is None:
            T = C.integer(n_samples, "n_samples", 1)
            seed = _random.resolve_seed(seed)
            st = _random.fold_in(_random.check_stream(stream), "dropout")

            def block_masks(s0, s1):
                return self._mask_block(s0, s1, seed, st, dt)
        else:
            masks = C.as_array(masks, "masks", dtype=dt)
            if masks.ndim != 2 or masks.shape[1] != H:
                raise ValueError(f"masks must have shape (T, {H}), got {masks.shape}")
            T = masks.shape[0]

            def block_masks(s0, s1):
                return masks[s0:s1]

        def params(s0, s1):
            # one network under the masks of samples s0..s1-1 (the kernel forms the first layer once)
            return self.theta_[None], block_masks(s0, s1)

        F = sampled_outputs(self.mlp, X, T, dt, params)
        noise = self.noise_ if self.likelihood == "gaussian" else 1.0
        return Predictive.from_outputs(F, self.likelihood, noise, overwrite=True)

    def save(self, path):
        """Write parameters and settings to ``path`` (.npz + JSON, no pickle; atomic, and
        ``.npz`` is appended when missing, as ``load`` does).

        The Adam moments and step count are not saved: a loaded model predicts
        exactly as the saved one, but ``fit(theta0=model.theta_)`` on it restarts
        Adam from zero moments, so its first steps differ from an
        uninterrupted run.
        """
        if self.theta_ is None:
            raise RuntimeError("call fit() first")
        meta = {"kind": "MCDropout", "mlp": self.mlp.to_dict(), "p": self.p, "likelihood": self.likelihood,
                "length_scale": self.length_scale, "tau": self.tau, "weight_decay": self.weight_decay,
                "lr": self.lr, "batch_size": self.batch_size, "history": self.history_}
        _tr.save_npz(path, meta, {"theta": self.theta_, "log_noise": self.log_noise_})

    @classmethod
    def load(cls, path):
        """Read a model written by ``save``; ValueError for a malformed or foreign file.

        The optimiser state is not restored (see ``save``): further training
        starts Adam afresh.
        """
        meta, arrays = _tr.load_npz(path, "MCDropout", ["theta", "log_noise"])
        try:
            mlp = MLP(**meta["mlp"])
            obj = cls(mlp, meta["p"], meta["likelihood"], length_scale=meta["length_scale"], tau=meta["tau"],
                      weight_decay=meta["weight_decay"], lr=meta["lr"], batch_size=meta["batch_size"])
        except (KeyError, TypeError, AttributeError, OverflowError) as exc:
            raise ValueError(f"{path!r}: malformed MCDropout metadata ({type(exc).__name__}: {exc})") from exc
        if arrays["theta"].shape != (mlp.n_params,):
            raise ValueError(f"{path!r}: theta has shape {arrays['theta'].shape}, expected ({mlp.n_params},)")
        D = target_dim(obj.likelihood, mlp.sizes[-1])
        if arrays["log_noise"].shape != (D,):
            raise ValueError(f"{path!r}: log_noise has shape {arrays['log_noise'].shape}, expected ({D},)")
        if obj.likelihood == "gaussian":
            _tr.check_log_noise(arrays["log_noise"], path)
        obj.theta_ = np.ascontiguousarray(arrays["theta"])
        obj.log_noise_ = np.ascontiguousarray(arrays["log_noise"], dtype=obj.theta_.dtype)
        obj.history_ = _tr.check_history(meta, path)
        return obj
