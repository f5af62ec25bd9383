"""Deep ensembles (Lakshminarayanan et al. 2017): M networks trained
independently to their MAP solutions, predicting as an equal mixture.

Member m starts from its own Philox initialisation and minibatch order
(stream ``fold_in(stream, m)``), so members differ only by the randomness of
training, as in the paper. For regression the paper's choice is the
heteroscedastic Gaussian likelihood (``mlp`` with 2 D outputs: D means, then
D log-variances); the mixture's variance then splits into the members' mean
noise variance (aleatoric) and the spread of their means (epistemic), which
``bg.nn.Predictive`` reports.

All members train in one native call per slice of an epoch, or per several
epochs for small networks without validation (``_core.optim.ensemble_epoch``;
their minibatch orders from ``_core.optim.ensemble_orders``): the MLP engine's
S axis carries the M parameter vectors, each on its own minibatch rows, with
its own Adam moments, or, with several threads, the members' minibatch steps
run on the worker threads in equal shares (each member's steps in order);
members never interact, so member m's result equals training it alone.

The paper's variance head is a softplus with a floor of 1e-6; here it is the
log-variance (the engine's heteroscedastic likelihood): in a stand-alone NumPy
replication of the paper's Boston protocol the two gave the same test NLL
(2.41 against 2.41, 4 seeds of 20 splits). The paper's optional adversarial
training (fast gradient sign, ``adversarial`` = the
step as a fraction of each input's range; the paper uses 0.01) adds the loss at
``x + eps sign(d nll / d x)``, the input gradient coming from the engine's
backward pass.
"""
from __future__ import annotations

import numpy as np

from . import _backend
from . import _checks as C
from . import _training as _tr
from . import random as _random
from .nn import (LIKELIHOODS, MLP, Predictive, likelihood_name, log_noise_vector, prepare_targets, sample_weights,
                 training_dtype)

__all__ = ["DeepEnsemble"]

INITS = ("uniform", "auto", "he", "glorot")
_CALL_WORK = 1 << 28


class DeepEnsemble:
    """``n_models`` independently trained copies of ``mlp``.

    Parameters
    ----------
    mlp : bg.nn.MLP
    likelihood : str ("heteroscedastic_gaussian" for the paper's regression)
    n_models : M >= 1
    weight_decay, noise, learn_noise, lr, batch_size, patience :
        as ``bg.nn.train_map``, for every member
    validation : fraction of rows held out (one split shared by the members); each
        member keeps its parameters of lowest validation NLL and stops improving
        after ``patience`` epochs without one
    adversarial : fast-gradient-sign step as a fraction of each input's range on the
        training rows (0 = off; 0.01 in Lakshminarayanan et al. 2017)
    init : "uniform" (default: every weight and bias of a layer with fan-in d drawn from
        U(-1/sqrt(d), 1/sqrt(d)), Torch's and PyTorch's default for a linear layer, which
        the paper used), or a ``bg.nn.MLP.init`` scheme ("auto", "he", "glorot")
    dtype : training dtype (default: float32 for float32 inputs, else float64)
    """

    def __init__(self, mlp, likelihood="heteroscedastic_gaussian", *, n_models=5, weight_decay=1e-4, noise=1.0,
                 learn_noise=False, lr=1e-3, batch_size=32, validation=0.0, patience=10, adversarial=0.0,
                 init="uniform", dtype=None):
        if not isinstance(mlp, MLP):
            raise TypeError(f"mlp must be a bayesgrad.nn.MLP, got {type(mlp).__name__}")
        self.mlp = mlp
        self.likelihood = likelihood_name(likelihood)
        self.n_models = C.integer(n_models, "n_models", 1)
        self.weight_decay = float(C.scalar(weight_decay, "weight_decay"))
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        log_noise_vector(noise, self.likelihood, mlp.sizes[-1], np.float64)  # validates
        self.noise, self.learn_noise = noise, bool(learn_noise)
        self.lr = float(C.scalar(lr, "lr"))
        _tr.adam_options(self.lr)  # validates
        self.batch_size = C.integer(batch_size, "batch_size", 1)
        self.validation = float(C.scalar(validation, "validation"))
        self.patience = C.integer(patience, "patience", 1)
        self.adversarial = float(C.real(adversarial, "adversarial"))
        if not (np.isfinite(self.adversarial) and self.adversarial >= 0):
            raise ValueError(f"adversarial must be a finite fraction >= 0, got {adversarial}")
        self.init = C.option(init, "init", INITS)
        self.dtype = None if dtype is None else C.float_dtype(dtype)
        self.thetas_ = None
        self.log_noise_ = None

    def fit(self, X, y, epochs=100, *, sample_weight=None, seed=0, stream=0, verbose=0):
        """Train every member for ``epochs`` epochs, all M in one native call per slice of an
        epoch (large networks, or with ``validation``) or per several epochs (small networks).

        Parameters
        ----------
        X : (N, d_in) array; y : targets (N,) or (N, Dy) (integer labels for categorical)
        epochs : int >= 1 (with ``validation``, early stopping per member)
        sample_weight : (N,) non-negative weights w_n, or None (all 1): each member
            minimises the exact weighted negative log joint ``sum_n w_n nll_n + prior``
        seed, stream : RNG; member m uses stream ``fold_in(stream, m)`` for its
            initialisation and minibatch orders
        verbose : 0 silent, 1 a tqdm progress bar on a terminal (tqdm installed), 2 wherever stderr goes

        Returns
        -------
        self, with ``thetas_`` (M, P), ``history_`` (per member, per epoch: loss,
        nll, val_loss) and ``best_epochs_`` (M,) when validating.
        """
        stream = _random.check_stream(stream)
        seed = _random.resolve_seed(seed)
        mlp, lik, M = self.mlp, self.likelihood, self.n_models
        dt = training_dtype(X, None, self.dtype)
        Xa = mlp.check_inputs(X, dt)
        ya = prepare_targets(y, lik, mlp.sizes[-1], Xa.shape[0], dt)
        w = sample_weights(sample_weight, Xa.shape[0], dt)
        adam = _tr.adam_options(self.lr)
        streams = [_random.fold_in(stream, m) for m in range(M)]
        P = mlp.n_params
        ln = log_noise_vector(self.noise, lik, mlp.sizes[-1], dt)
        state = np.empty((M, P + ln.size), dtype=dt)
        for m, s in enumerate(streams):
            state[m, :P] = _initial_params(mlp, self.init, seed, s, dt)
            state[m, P:] = ln
        mom1, mom2 = np.zeros_like(state), np.zeros_like(state)
        # One validation split for all members (the members' own streams would give each
        # its own training rows, and the kernel shares X): rows chosen from ``stream``.
        tr_idx, val_idx = _tr.split_validation(Xa.shape[0], self.validation, seed, stream)
        Xt, yt = (Xa, ya) if val_idx is None else (Xa[tr_idx], ya[tr_idx])
        wt = None if w is None else np.ascontiguousarray(w if val_idx is None else w[tr_idx])
        N = Xt.shape[0]
        B = min(self.batch_size, N)
        n_batches = -(-N // B)
        k = _backend.kernels()
        adv = ()
        if self.adversarial > 0:
            # the paper's epsilon: a fraction of each input's range on the training rows
            adv = tuple(float(self.adversarial) * (Xt.max(0).astype(np.float64) - Xt.min(0)))
        cfg = k.optim.EnsembleConfig(mlp.net_config(k), LIKELIHOODS[lik], learn_noise=self.learn_noise,
                                     weight_decay=self.weight_decay, batch_size=B,
                                     adam=k.optim.AdamConfig(**adam), adv_eps=adv)
        counter = {"step": 0}
        per_member = [[] for _ in range(M)]
        last = {}  # the members' records of the epoch just run

        tag = _random.TAGS["shuffle"]
        shuffle_streams = np.array([k.random.fold_in(s, tag) for s in streams], dtype=np.uint64)

        def orders(e0, n_epochs):
            # _tr.permutation(N, seed, streams[m], e) for every member and epoch, drawn natively
            out = np.empty((n_epochs, M, N), dtype=np.int64)
            k.optim.ensemble_orders(seed, shuffle_streams, e0, out)
            return out

        def records(stats, n_epochs):
            st = stats.reshape(n_epochs, n_batches, M, 2)
            return st[..., 1].mean(1, dtype=np.float64), st[..., 0].sum(1, dtype=np.float64)  # loss, nll (E, M)

        def one_epoch(e, ctl):
            perms = orders(e, 1)[0]
            parts = []
            for i0, i1 in ctl.slices(n_batches):  # ~0.1 s per native call: Ctrl-C stops promptly
                step, stats = k.optim.ensemble_epoch(cfg, state, mom1, mom2, counter["step"], Xt, yt,
                                                     np.ascontiguousarray(perms[:, i0 * B:i1 * B]), wt)
                counter["step"] = int(step)
                parts.append(stats)
            stats = np.concatenate(parts)  # (n_batches, M, 2)
            _tr.check_finite_epoch(e, adam["lr"], stats, state)
            loss, nll = records(stats, 1)
            last["records"] = [{"loss": float(loss[0, m]), "nll": float(nll[0, m])} for m in range(M)]
            return {"loss": float(loss.mean()), "nll": float(nll.mean())}

        def checkpoint():
            return state.copy(), mom1.copy(), mom2.copy(), counter["step"]

        def rollback(token):
            state[...], mom1[...], mom2[...] = token[:3]
            counter["step"] = token[3]

        validate = snapshot = restore = None
        best_epochs = None
        if val_idx is not None:
            Xv, yv = Xa[val_idx], ya[val_idx]
            wv = None if w is None else w[val_idx].astype(np.float64)
            best_val = np.full(M, np.inf)
            best_state = state.copy()
            since = np.zeros(M, dtype=np.int64)
            best_epochs = np.zeros(M, dtype=np.int64)
            epoch = {"e": 0}

            def member_val():
                F = mlp.forward(state[:, :P], Xv)
                lnv = state[:, P:]
                out = np.empty(M)
                for m in range(M):
                    per = _log_lik_rows(F[m], yv, lik, lnv[m])
                    out[m] = -(per @ wv if wv is not None else per.sum())
                return out

            def validate():
                # Early stopping member by member: a member whose patience ran out keeps
                # its best state (later improvements are ignored, as if it had stopped);
                # the returned sum of accepted bests stops the loop once no member improves.
                val = member_val()
                live = since < self.patience
                better = live & (val < best_val)
                best_val[better] = val[better]
                best_state[better] = state[better]
                best_epochs[better] = epoch["e"]
                since[live & ~better] += 1
                since[better] = 0
                for m in range(M):
                    per_member[m].append(dict(last["records"][m], epoch=epoch["e"], val_loss=float(val[m])))
                epoch["e"] += 1
                return float(best_val.sum())

            def snapshot():
                return best_state.copy()

            def restore(s):
                state[...] = s

        def one_epoch_recorded(e, ctl):
            rec = one_epoch(e, ctl)
            if val_idx is None:
                for m in range(M):
                    per_member[m].append(dict(last["records"][m], epoch=e))
            return rec

        # Without validation, small networks run several whole epochs per native call
        # (about 2^28 multiply-adds of forward passes, some 0.05 s): per epoch, the
        # Python around a call cost as much as the 13-50-2 epoch itself.
        epochs = C.integer(epochs, "epochs", 1)
        per_call = min(epochs, _CALL_WORK // (M * N * P * (2 if adv else 1)))
        if val_idx is None and per_call > 1:
            def block(b):
                e0 = b * per_call
                n_ep = min(per_call, epochs - e0)
                step, stats = k.optim.ensemble_epoch(cfg, state, mom1, mom2, counter["step"], Xt, yt,
                                                     orders(e0, n_ep), wt)
                counter["step"] = int(step)
                _tr.check_finite_epoch(e0 + n_ep - 1, adam["lr"], stats, state)
                loss, nll = records(stats, n_ep)
                for e in range(n_ep):
                    for m in range(M):
                        per_member[m].append({"loss": float(loss[e, m]), "nll": float(nll[e, m]), "epoch": e0 + e})
                return {"loss": float(loss[-1].mean()), "nll": float(nll[-1].mean())}

            _, interrupted = _tr.run_epochs(-(-epochs // per_call), block, verbose=verbose,
                                            desc=f"ensemble ({per_call} epochs per step)", checkpoint=checkpoint,
                                            rollback=rollback)
        else:
            _, interrupted = _tr.run_epochs(epochs, one_epoch_recorded, verbose=verbose, desc="ensemble",
                                            validate=validate, patience=self.patience, snapshot=snapshot,
                                            restore=restore, sliced=True, checkpoint=checkpoint, rollback=rollback)
        self.thetas_ = np.ascontiguousarray(state[:, :P])
        self.log_noise_ = state[:, P:].astype(np.float64) if lik == "gaussian" else None
        self.history_ = per_member
        self.best_epochs_ = best_epochs
        self.interrupted_ = interrupted
        self.seed_ = seed
        return self

    def _require_fit(self):
        if self.thetas_ is None:
            raise RuntimeError("call fit() (or load()) first")

    def sample_params(self, n_samples, seed=0, stream=0):
        """(n_samples, P): the members in order, cycled."""
        self._require_fit()
        n = C.integer(n_samples, "n_samples", 1)
        return self.thetas_[np.arange(n) % self.n_models]

    def predict(self, X, n_samples=None, seed=0, stream=0):
        """The mixture predictive (``Predictive``) at X (N, d_in) of the members: all M by
        default, else the first ``n_samples`` (S = that number of members)."""
        self._require_fit()
        M = self.n_models if n_samples is None else min(C.integer(n_samples, "n_samples", 1), self.n_models)
        F = self.mlp.forward(self.thetas_[:M], X)
        noise = 1.0
        if self.likelihood == "gaussian":
            # one noise per output shared by the mixture: the members' root-mean-square sigma
            noise = np.sqrt(np.mean(np.exp(2 * self.log_noise_[:M].astype(np.float64)), axis=0))
        return Predictive.from_outputs(F, self.likelihood, noise)

    def save(self, path):
        """Write the members' parameters and the settings (.npz + JSON, no pickle)."""
        self._require_fit()
        meta = {"kind": "DeepEnsemble", "mlp": self.mlp.to_dict(), "likelihood": self.likelihood,
                "n_models": self.n_models, "weight_decay": self.weight_decay,
                "noise": np.asarray(self.noise, dtype=np.float64).tolist(), "learn_noise": self.learn_noise,
                "lr": self.lr, "batch_size": self.batch_size, "validation": self.validation,
                "patience": self.patience, "adversarial": self.adversarial, "init": self.init}
        arrays = {"thetas": self.thetas_}
        if self.log_noise_ is not None:
            arrays["log_noise"] = self.log_noise_
        _tr.save_npz(path, meta, arrays)

    @classmethod
    def load(cls, path):
        """Read a model written by ``save``; ValueError for a malformed or foreign file."""
        meta, arrays = _tr.load_npz(path, "DeepEnsemble", ["thetas"])
        try:
            mlp = MLP(**meta["mlp"])
            obj = cls(mlp, meta["likelihood"], n_models=meta["n_models"], weight_decay=meta["weight_decay"],
                      noise=meta["noise"], learn_noise=meta["learn_noise"], lr=meta["lr"],
                      batch_size=meta["batch_size"], validation=meta["validation"], patience=meta["patience"],
                      adversarial=meta.get("adversarial", 0.0), init=meta.get("init", "auto"))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path!r}: malformed DeepEnsemble metadata ({exc})") from exc
        t = arrays["thetas"]
        if t.shape != (obj.n_models, mlp.n_params):
            raise ValueError(f"{path!r}: thetas has shape {t.shape}, expected ({obj.n_models}, {mlp.n_params})")
        obj.thetas_ = np.ascontiguousarray(t)
        if obj.likelihood == "gaussian":
            ln = arrays.get("log_noise")
            shape = (obj.n_models, mlp.sizes[-1])  # one sigma per member and output
            # (NaN, inf or strings loaded silently; the first predict then failed)
            if ln is None or ln.shape != shape or ln.dtype not in (np.float32, np.float64):
                raise ValueError(f"{path!r}: log_noise missing or not a float array of shape {shape}")
            obj.log_noise_ = _tr.check_log_noise(ln, path).astype(np.float64)
        return obj


def _initial_params(mlp, init, seed, stream, dtype):
    """One member's initial parameters (P,) from ``fold_in(stream, "init")`` of ``seed``."""
    if init != "uniform":
        return mlp.init(seed=seed, stream=stream, dtype=dtype, scheme=init)
    # Torch's default, which the paper used. On Boston with the paper's settings at Adam's
    # rate 0.01 it gave test NLL 2.43 against 2.47 for He's normal init (bench/uci.py; 0.04-0.10
    # nats over 4 seeds of a NumPy replication): smaller initial weights, non-zero biases.
    u = _random.uniform(mlp.n_params, seed=seed, stream=_random.fold_in(stream, "init"), dtype=dtype)
    theta = np.empty(mlp.n_params, dtype=dtype)
    for (w0, b0), din, dout in zip(mlp.offsets, mlp.sizes[:-1], mlp.sizes[1:]):
        bound = dtype.type(1.0 / np.sqrt(din))
        for a, b in ((w0, w0 + din * dout), (b0, b0 + dout)):
            theta[a:b] = (2 * u[a:b] - 1) * bound
    return theta


def _log_lik_rows(F, y, lik, log_noise):
    """Per-row log-likelihood (N,) float64 of targets y (N, Dy) under one member's outputs F (N, K)."""
    k = _backend.kernels()
    out = np.empty((1, F.shape[0]), dtype=F.dtype)
    k.mlp.likelihood_nll(np.ascontiguousarray(F[None]), y, LIKELIHOODS[lik], np.ascontiguousarray(log_noise), out)
    return -out[0].astype(np.float64)
