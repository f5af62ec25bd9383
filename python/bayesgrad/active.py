"""Pool-based active learning: the loop around a posterior and an acquisition.

Call shape::

    def fit(X, y, previous):            # any posterior of this package
        q = previous or bg.vi.MFVI(bg.nn.MLP([64, 100, 10]), "categorical")
        return q.fit(X, y, epochs=50, warm_start=previous is not None, verbose=0)

    al = bg.active.ActiveLearner(fit, X_pool, oracle=y_pool, n_classes=10, initial=init_idx,
                                 acquisition="batchbald", batch_size=10)
    al.run(rounds=8, test=(X_test, y_test))
    al.history        # per round: n_labelled, accuracy / nll / ece on the test set, times
    al.labelled, al.unlabelled, al.y_labelled

``fit(X_labelled, y_labelled, previous)`` returns a fitted posterior whose
``predict(X, n_samples=..., seed=..., stream=...)`` gives a classification
``bg.nn.Predictive`` (MFVI, MCDropout, Laplace, DeepEnsemble, SWAG, SGMCMC);
``previous`` is the last round's posterior (None in round 0), for warm starts;
``fit`` may also return a scikit-learn estimator of this package (its
``posterior_`` predicts).
The classes are fixed up front (``n_classes``), so a labelled set that lacks a
class still yields every probability column. ``oracle`` is the pool's label
array or a callable ``indices -> labels`` (a human in the loop, a simulator).

The pool may be a ``dask.array`` (N, D) chunked along N (``bg.pools``): each
round scores it block by block on the workers (the sampled networks sent
once, the labelled points excluded, BatchBALD in two stages over the BALD
top ``max_candidates``), and only the labelled rows are gathered for ``fit``.
In memory the predictive of the whole pool is scored the same way
(``bg.pools.score_pool``), so for the posteriors whose predictive is a set of
sampled networks (MC dropout, MFVI, ensembles, SWAG, SG-MCMC) both give the
same picks.

Acquisitions by name: "bald", "max_entropy", "variation_ratios", "margin",
"mean_std" (single-point top-k), "batchbald", "random", and the stochastic
batch acquisitions "power", "softmax", "softrank" (Kirsch et al. 2023; BALD
scores, temperature ``beta``). Round r draws its predictive samples and
acquisition randomness from ``fold_in(stream, r)``, so a run is reproducible
and a resumed run continues exactly.
"""
from __future__ import annotations

import json
import math
import os
import time

import numpy as np

from . import _checks as C
from . import _training as _tr
from . import random as _random

__all__ = ["ActiveLearner", "ACQUISITIONS"]

ACQUISITIONS = ("bald", "max_entropy", "variation_ratios", "margin", "mean_std", "batchbald", "random", "power",
                "softmax", "softrank")


class ActiveLearner:
    """The loop state and its history (see the module docstring).

    Parameters
    ----------
    fit : callable (X, y, previous) -> fitted posterior
    X_pool : (N, D) inputs of the whole pool (labelled and not)
    oracle : (N,) labels of the pool, or callable (indices (k,)) -> labels (k,)
    n_classes : C, the classes of the problem
    initial : indices of the points labelled before round 0
    acquisition : a name in ``ACQUISITIONS``
    batch_size : points acquired per round
    n_samples : predictive samples per pool point
    n_configs : BatchBALD's sampled label configurations
    beta : temperature of the stochastic acquisitions
    budget : stop when this many points are labelled (None: the pool size)
    max_candidates : BatchBALD's M (the BALD top M it chooses among); None: every
        unlabelled point in memory, ``max(1000, 20 * batch_size)`` on Dask
    scheduler : ``dask.compute``'s scheduler for a Dask pool (None: dask's default,
        the active ``distributed.Client`` if any)
    seed, stream : Philox seed and stream of the predictive samples and acquisitions
    """

    def __init__(self, fit, X_pool, oracle, *, n_classes, initial, acquisition="batchbald", batch_size=10,
                 n_samples=100, n_configs=1000, beta=1.0, budget=None, max_candidates=None, scheduler=None, seed=0,
                 stream=0):
        from .pools import is_dask_array

        if not callable(fit):
            raise TypeError("fit must be a callable (X, y, previous) -> fitted posterior")
        self.fit = fit
        self.lazy = is_dask_array(X_pool)
        self.X_pool = X_pool if self.lazy else C.as_array(X_pool, "X_pool", min_ndim=2)
        if self.lazy and X_pool.ndim != 2:
            raise ValueError(f"a Dask X_pool must be (N, D), got shape {X_pool.shape}")
        if self.lazy:
            from .pools import known_rows

            known_rows(X_pool, "X_pool")  # NaN chunk sizes: no row count to check indices against
        N = self.X_pool.shape[0]
        self.n_classes = C.integer(n_classes, "n_classes", 2)
        if callable(oracle):
            self.oracle, self._y_pool = oracle, None
        else:
            self._y_pool = C.class_labels(oracle, N, self.n_classes, "oracle")
            self.oracle = lambda idx: self._y_pool[idx]
        self.acquisition = C.option(acquisition, "acquisition", ACQUISITIONS)
        self.batch_size = C.integer(batch_size, "batch_size", 1)
        self.n_samples = C.integer(n_samples, "n_samples", 1)
        self.n_configs = C.integer(n_configs, "n_configs", 1)
        self.beta = float(C.scalar(beta, "beta"))
        if self.beta < 0:  # score_pool refuses it: checked here, not after the first round's fit
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        self.budget = N if budget is None else C.integer(budget, "budget", 1)
        self.max_candidates = None if max_candidates is None else C.integer(max_candidates, "max_candidates", 1)
        if self.acquisition == "batchbald":  # (BatchBALD's own checks would come after the first fit)
            if self.n_configs < self.n_classes:
                raise ValueError(f"n_configs ({self.n_configs}) must be >= n_classes ({self.n_classes}) for BatchBALD")
            if self.max_candidates is not None and self.max_candidates < self.batch_size:
                raise ValueError(f"max_candidates ({self.max_candidates}) must be >= batch_size ({self.batch_size})")
        self.scheduler = scheduler
        self.seed = _random.resolve_seed(seed)
        self.stream = _random.check_stream(stream)
        init = np.asarray(initial)
        if init.ndim != 1 or init.size == 0 or init.dtype.kind not in "iu":
            raise ValueError("initial must be a non-empty 1-D array of pool indices")
        if init.min() < 0 or init.max() >= N or np.unique(init).size != init.size:
            raise ValueError(f"initial must hold distinct pool indices in [0, {N})")
        if self.budget < init.size:
            raise ValueError(f"budget ({self.budget}) must be at least the number of initial points ({init.size})")
        self.labelled = init.astype(np.int64)
        self.y_labelled = self._ask(self.labelled)
        self.history = []
        self.posterior = None

    # ------------------------------------------------------------ state
    @property
    def unlabelled(self):
        """Pool indices (ascending) not yet labelled."""
        mask = np.ones(self.X_pool.shape[0], dtype=bool)
        mask[self.labelled] = False
        return np.flatnonzero(mask)

    @property
    def done(self):
        return self.labelled.size >= min(self.budget, self.X_pool.shape[0])

    def _ask(self, idx):
        y = self.oracle(np.asarray(idx, dtype=np.int64))
        return C.class_labels(y, len(idx), self.n_classes, "oracle labels")

    def _model(self):
        """The posterior that predicts (a scikit-learn estimator's ``posterior_``)."""
        p = self.posterior
        return p.posterior_ if hasattr(p, "posterior_") and not hasattr(p, "sample_params") else p

    def _predictive(self, X, stream):
        pred = self._model().predict(X, n_samples=self.n_samples, seed=self.seed, stream=stream)
        lp = getattr(pred, "log_probs", None)
        if lp is None or lp.ndim != 3 or lp.shape[2] != self.n_classes:
            raise ValueError(f"the posterior's predictive must have sampled log_probs (S, N, {self.n_classes}); "
                             f"got {None if lp is None else lp.shape}")
        return pred

    def _labelled_inputs(self):
        X = self.X_pool[self.labelled]
        return np.asarray(X.compute(scheduler=self.scheduler) if self.lazy else X)

    # ------------------------------------------------------------ one round
    def _acquire(self, k, stream):
        """Score the pool (labelled points excluded) and pick k; returns the PoolScores."""
        from . import pools

        common = dict(n_configs=self.n_configs, max_candidates=self.max_candidates, beta=self.beta, seed=self.seed,
                      stream=stream, exclude=self.labelled)
        if self.lazy:
            return pools.score_pool(self.X_pool, self.acquisition, k, model=self._model(), n_samples=self.n_samples,
                                    scheduler=self.scheduler, **common)
        if self.acquisition == "random":  # random picks need no predictive: a uniform stand-in
            N = self.X_pool.shape[0]
            lp = np.full((1, N, self.n_classes), -math.log(self.n_classes))
        else:
            lp = self._predictive(self.X_pool, stream).log_probs
        return pools.score_pool(np.ascontiguousarray(lp), self.acquisition, k, **common)

    def step(self, test=None):
        """Fit on the labelled set, acquire ``batch_size`` points (fewer at the
        budget), label them; returns the acquired pool indices. ``test`` = (X, y)
        records accuracy, NLL and ECE of this round's posterior. The history
        record has ``round``, ``n_labelled``, ``fit_s`` (the fit callable's
        time), ``acquisition_s`` (predictive, scores and selection), ``picked``
        and, with ``test``, ``accuracy``, ``nll`` (nats per point), ``ece``."""
        from . import uncertainty as U

        if self.done:
            raise RuntimeError(f"the budget ({self.budget}) is reached")
        if test is not None and not (isinstance(test, (tuple, list)) and len(test) == 2):
            raise TypeError(f"test must be a pair (X, y), got {type(test).__name__}"
                            + (f" of length {len(test)}" if isinstance(test, (tuple, list)) else ""))
        r = len(self.history)
        st = _random.fold_in(self.stream, r)
        t0 = time.perf_counter()
        post = self.fit(self._labelled_inputs(), self.y_labelled, self.posterior)
        if not callable(getattr(post, "predict", None)):
            raise TypeError(f"fit must return the fitted posterior (an object with a predict method), got "
                            f"{type(post).__name__}")
        self.posterior = post
        t1 = time.perf_counter()
        rec = {"round": r, "n_labelled": int(self.labelled.size), "fit_s": t1 - t0}
        if test is not None:
            Xt, yt = test
            p = self._predictive(Xt, _random.fold_in(st, 1)).probs
            yt = C.class_labels(yt, p.shape[0], self.n_classes, "test labels")
            rec.update(accuracy=U.accuracy(p, yt), nll=U.nll(p, yt), ece=U.ece(p, yt))
        N = self.X_pool.shape[0]
        k = min(self.batch_size, N - self.labelled.size, self.budget - self.labelled.size)
        t2 = time.perf_counter()
        sel = self._acquire(k, _random.fold_in(st, 2))
        picked = sel.indices
        rec["acquisition_s"] = time.perf_counter() - t2
        if "n_candidates" in sel.info:
            rec["n_candidates"] = sel.info["n_candidates"]
        rec["picked"] = picked.tolist()
        self.y_labelled = np.concatenate([self.y_labelled, self._ask(picked)])
        self.labelled = np.concatenate([self.labelled, picked])
        self.history.append(rec)
        return picked

    def run(self, rounds, test=None, verbose=0):
        """Up to ``rounds`` rounds (fewer when the budget is reached); returns the history."""
        rounds = C.integer(rounds, "rounds", 1)
        bar = _tr.progress(rounds, verbose, "active learning", unit="round")
        for _ in range(rounds):
            if self.done:
                break
            self.step(test)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return self.history

    # ------------------------------------------------------------ persistence
    def save(self, path):
        """The loop's state (labelled indices and labels, history, settings) as .npz + JSON
        (atomic; ``.npz`` appended when missing). The current posterior, when it has its own
        ``save``, goes next to it as ``<path>.posterior.npz`` (or ``<path>.posterior.1.npz``,
        alternately), so that ``load`` resumes with the warm start the next round would have had.
        The pair is replaced as a whole: the posterior is written under the name the previous save
        did not use, the state file (which names it) replaces the old one last, and only then is the
        previous posterior removed; a save that fails leaves the previous pair as it was (writing
        the posterior over the old one first left the old state beside a newer posterior, which
        ``load`` combined without a word). Returns the path written."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike (the posterior is saved beside it), got "
                            f"{type(path).__name__}")
        path = _tr.npz_path(path)
        model = self.posterior
        post_file, old_post = None, _posterior_file_of(path)
        if type(model).__name__ in ("MCDropout", "MFVI", "DeepEnsemble", "SWAG", "MultiSWAG", "SGMCMC", "Laplace"):
            names = [path[:-4] + ".posterior.npz", path[:-4] + ".posterior.1.npz"]
            post_file = names[1] if old_post == os.path.basename(names[0]) else names[0]
        meta = {"kind": "ActiveLearner", "n_classes": self.n_classes, "acquisition": self.acquisition,
                "batch_size": self.batch_size, "n_samples": self.n_samples, "n_configs": self.n_configs,
                "beta": self.beta, "budget": self.budget, "max_candidates": self.max_candidates, "seed": self.seed,
                "stream": self.stream, "history": self.history, "pool_size": int(self.X_pool.shape[0]),
                "posterior_file": None if post_file is None else os.path.basename(post_file)}
        json.dumps(meta)  # metadata that JSON cannot hold fails here, before any file is written
        if post_file is not None:
            model.save(post_file)
        try:
            _tr.save_npz(path, meta, {"labelled": self.labelled.astype(np.float64),
                                      "y_labelled": self.y_labelled.astype(np.float64)})
        except BaseException:
            if post_file is not None and os.path.basename(post_file) != old_post:
                _unlink(post_file)  # the previous pair stays as it was
            raise
        if old_post is not None and old_post != meta["posterior_file"]:
            _unlink(os.path.join(os.path.dirname(path), old_post))
        return path

    @classmethod
    def load(cls, path, fit, X_pool, oracle, scheduler=None):
        """Resume a saved loop with the same pool and oracle. The saved posterior (if any) is
        loaded as ``posterior``, the ``previous`` of the next ``fit``; the next ``step``
        continues the saved rounds' random streams, so the resumed loop picks what the
        uninterrupted one would have (for fits whose result depends only on the data and
        ``previous``'s parameters: optimiser moments are not saved).

        Parameters
        ----------
        path : str or os.PathLike, the file ``save`` wrote (``.npz`` appended when missing)
        fit : callable (X, y, previous) -> fitted posterior
        X_pool : (N, D) inputs of the pool the loop was saved with (NumPy or Dask)
        oracle : (N,) labels of the pool, or callable (indices (k,)) -> labels (k,); its
            labels of the saved labelled points must equal the saved ones
        scheduler : ``dask.compute``'s scheduler for a Dask pool (None: dask's default)

        Returns
        -------
        ActiveLearner, its history and labelled set as saved
        """
        path = _tr.npz_path(path)
        meta, arrays = _tr.load_npz(path, "ActiveLearner", ["labelled", "y_labelled"])
        n_pool = (getattr(X_pool, "shape", None) or (None,))[0]  # nan for a Dask pool of unknown chunks
        if isinstance(n_pool, (int, np.integer)) and meta.get("pool_size") != n_pool:  # before the saved indices
            raise ValueError(f"{path!r}: saved for a pool of {meta.get('pool_size')} points, given {n_pool}")
        if not np.all(arrays["labelled"] == np.round(arrays["labelled"])):  # (truncated, they named other points)
            raise ValueError(f"{path!r}: malformed labelled indices (not integers)")
        try:
            lab = arrays["labelled"].astype(np.int64)
            obj = cls(fit, X_pool, oracle, n_classes=meta["n_classes"], initial=lab,
                      acquisition=meta["acquisition"], batch_size=meta["batch_size"], n_samples=meta["n_samples"],
                      n_configs=meta["n_configs"], beta=meta["beta"], budget=meta["budget"],
                      max_candidates=meta.get("max_candidates"), scheduler=scheduler, seed=meta["seed"],
                      stream=meta["stream"])
            history = meta["history"]
            post_file = meta.get("posterior_file")
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path!r}: malformed ActiveLearner metadata ({exc})") from exc
        if meta.get("pool_size") != obj.X_pool.shape[0]:
            raise ValueError(f"{path!r}: saved for a pool of {meta.get('pool_size')} points, "
                             f"given {obj.X_pool.shape[0]}")
        if not (isinstance(history, list) and all(isinstance(h, dict) for h in history)):
            raise ValueError(f"{path!r}: malformed history (a list of per-round records expected)")
        if not np.array_equal(obj.y_labelled, arrays["y_labelled"].astype(np.int64)):
            raise ValueError(f"{path!r}: the oracle's labels differ from the saved ones")
        if post_file is not None:
            from .pools import load_posterior

            if not isinstance(post_file, str) or os.path.basename(post_file) != post_file:
                raise ValueError(f"{path!r}: malformed posterior_file {post_file!r}")
            obj.posterior = load_posterior(os.path.join(os.path.dirname(path), post_file))
        obj.history = history
        return obj

    def plot(self, path, metric="accuracy"):
        """The learning curve (``metric`` against labelled points) as a PNG; returns the path."""
        from .plotting import _figure, _save

        rows = [h for h in self.history if metric in h]
        if not rows:
            raise ValueError(f"no round recorded {metric!r}: pass test=(X, y) to step/run")
        if not all(isinstance(h[metric], (int, float)) and not isinstance(h[metric], bool) for h in rows):
            raise ValueError(f"metric must name a number per round (accuracy, nll, ece, fit_s, ...), got {metric!r}")
        fig, axes = _figure(1, 1, width=4.2, height=3.2)
        ax = axes[0][0]
        ax.plot([h["n_labelled"] for h in rows], [h[metric] for h in rows], marker="o")
        ax.set_xlabel("labelled points")
        ax.set_ylabel(metric)
        ax.set_title(f"{self.acquisition}: {metric}")
        if not all(math.isfinite(h[metric]) for h in rows):
            ax.set_yscale("symlog")
        return _save(fig, path)

    def __repr__(self):
        return (f"ActiveLearner({self.acquisition}, labelled={self.labelled.size}, "
                f"unlabelled={self.unlabelled.size}, rounds={len(self.history)})")


def _posterior_file_of(path):
    """The posterior file named by the ActiveLearner state saved at ``path`` (a basename), or None (no
    file, not one of ours, no posterior)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(np.asarray(z["__meta__"]).tobytes().decode("utf-8"))
        name = meta.get("posterior_file") if meta.get("kind") == "ActiveLearner" else None
    except Exception:  # noqa: BLE001 - whatever is there is replaced; only a posterior of ours is removed
        return None
    return name if isinstance(name, str) and name == os.path.basename(name) and name.startswith(
        os.path.basename(path)[:-4] + ".posterior") else None


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass
