"""Property-based fuzzing of every public function family (issue 13).

Each case calls a public function with valid arguments except at most one,
which hypothesis replaces by a hostile variant: a wrong shape, an empty array,
NaN / inf, float16 / int / bool / object / complex dtypes, non-contiguous,
negative-stride, Fortran-order or read-only arrays, lists, scalars, None,
strings, huge or negative sizes, seeds outside [0, 2**64), bad labels.

Property: on every backend the call either raises ValueError / TypeError whose
message names the argument, or returns a finite answer (inf where the case says
so), and the backends agree (same outcome; answers equal within rounding).
Variants that only change the memory layout (non-contiguous, negative strides,
Fortran order, read-only, a list) must give the unmutated answer exactly.

Profiles (tests/conftest.py): "ci" (default; derandomized, a few examples per
case, the module in well under a minute with -n 2) and "long"
(``HYPOTHESIS_PROFILE=long``: many more, randomized).
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402

import bayesgrad as bg  # noqa: E402

from helpers import BACKENDS  # noqa: E402

pytestmark = pytest.mark.single_backend  # every case compares the backends itself


# ---------------------------------------------------------------- argument generators

LAYOUT = ("noncontiguous", "negative_stride", "fortran", "readonly", "list")
SHAPE_VARIANTS = ("extra_dim", "drop_dim", "empty", "wrong_length", "scalar")


def _noncontig(a):
    big = np.repeat(a[..., None], 2, axis=-1)
    return big[..., 0]


def _negstride(a):
    return a[::-1].copy()[::-1] if a.ndim else a


def _readonly(a):
    b = a.copy()
    b.flags.writeable = False
    return b


class Array:
    """A float array argument: ``make(rng)`` gives a valid value."""

    def __init__(self, make, *, labels=None, bad_values=True, layout=True):
        self._make, self.labels, self.bad_values, self.layout = make, labels, bad_values, layout

    def make(self, rng):
        return np.asarray(self._make(rng))

    def variants(self, a, rng):
        v = {
            "float32": lambda: a.astype(np.float32),
            "float16": lambda: a.astype(np.float16),
            "int": lambda: np.round(a).astype(np.int64),
            "bool": lambda: a > np.median(a) if a.size else a.astype(bool),
            "object": lambda: a.astype(object),
            "complex": lambda: a + 0j,
            "scalar": lambda: 0.5,
            "none": lambda: None,
            "string": lambda: "abc",
            "extra_dim": lambda: a[None],
            "drop_dim": lambda: a.reshape(-1)[: max(1, a.size // 2)] if a.ndim <= 1 else a[0],
            "empty": lambda: a[:0] if a.ndim else np.empty(0),
            "wrong_length": lambda: np.concatenate([a, a[:1]]) if a.ndim else np.ones(2),
            "huge": lambda: a * 1e300,
        }
        if self.bad_values:
            for name, val in (("nan", np.nan), ("inf", np.inf), ("-inf", -np.inf)):
                def put(val=val):
                    b = np.array(a, dtype=np.float64, copy=True)
                    if b.size:
                        b.reshape(-1)[rng.integers(b.size)] = val
                    return b
                v[name] = put
        if self.layout and a.ndim:
            v.update(noncontiguous=lambda: _noncontig(a), negative_stride=lambda: _negstride(a),
                     fortran=lambda: np.asfortranarray(a), readonly=lambda: _readonly(a), list=lambda: a.tolist())
        return v


class Labels(Array):
    """Integer class labels in [0, n_classes)."""

    def __init__(self, make, n_classes):
        super().__init__(make, bad_values=False)
        self.n_classes = n_classes

    def variants(self, a, rng):
        v = super().variants(a, rng)
        for k in ("huge", "float16", "complex"):
            v.pop(k, None)
        v.update(out_of_range=lambda: np.where(np.arange(a.size) == 0, self.n_classes, a),
                 negative=lambda: np.where(np.arange(a.size) == 0, -1, a),
                 fractional=lambda: a + 0.5, as_float=lambda: a.astype(np.float64),
                 nan=lambda: np.where(np.arange(a.size) == 0, np.nan, a.astype(np.float64)))
        return v


class Int:
    """A size / count argument."""

    def __init__(self, valid, extra=(), *, work=False):
        # work: the argument sets an amount of work (epochs), not of memory: huge values
        # are valid and would just run for ever, so they are not tried
        self.valid, self.extra, self.work = valid, tuple(extra), work

    def make(self, rng):
        return self.valid

    def variants(self, a, rng):
        v = {"zero": 0, "negative": -1, "huge": 10 ** 15, "2**63": 2 ** 63, "2**64": 2 ** 64, "float": 1.5,
             "integral_float": float(a), "string": "3", "none": None, "bool": True, "np_int32": np.int32(a),
             "array": np.array([a, a])}
        for i, e in enumerate(self.extra):
            v[f"extra{i}"] = e
        if self.work:
            for k in ("huge", "2**63", "2**64"):
                del v[k]
        return {k: (lambda x=x: x) for k, x in v.items()}


class Seed(Int):
    def variants(self, a, rng):
        v = {"negative": -1, "2**64": 2 ** 64, "2**64-1": 2 ** 64 - 1, "2**70": 2 ** 70, "float": 1.5,
             "string": "1", "np_uint64": np.uint64(2 ** 63 + 5), "bool": False}
        return {k: (lambda x=x: x) for k, x in v.items()}


class Real(Int):
    """A real hyper-parameter (lr, a temperature)."""

    def variants(self, a, rng):
        v = {"nan": np.nan, "inf": np.inf, "negative": -a, "zero": 0.0, "string": "abc", "none": None,
             "list": [a, a], "float32": np.float32(a), "complex": complex(a, 1), "bool": True, "array0d": np.array(a)}
        return {k: (lambda x=x: x) for k, x in v.items()}


class Option:
    def __init__(self, valid, others=()):
        self.valid, self.others = valid, tuple(others)

    def make(self, rng):
        return self.valid

    def variants(self, a, rng):
        v = {"bogus": "bogus", "int": 3, "none": None, "upper": str(a).upper()}
        for o in self.others:
            v[f"other:{o}"] = o
        return {k: (lambda x=x: x) for k, x in v.items()}


# ---------------------------------------------------------------- outcomes

def _numbers(r, depth=0):
    """The numeric content of a result, as a list of float64 arrays."""
    if depth > 3 or r is None or isinstance(r, (str, bytes, type)) or callable(r) and not hasattr(r, "__dict__"):
        return []
    if isinstance(r, (bool, np.bool_)):
        return [np.array(float(r))]
    if isinstance(r, (int, float, np.number)):
        return [np.array(r, dtype=np.float64)]
    if isinstance(r, np.ndarray):
        return [r.astype(np.float64)] if r.dtype.kind in "biuf" else []
    if isinstance(r, (list, tuple)):
        return [x for e in r for x in _numbers(e, depth + 1)]
    if isinstance(r, dict):
        return [x for k in sorted(r, key=str) for x in _numbers(r[k], depth + 1)]
    if hasattr(r, "__dict__"):
        return [x for k in sorted(vars(r)) if not k.startswith("_") for x in _numbers(vars(r)[k], depth + 1)]
    return []


def _run(fn, kwargs, backend, overflow_ok=False):
    with bg.use_backend(backend), warnings.catch_warnings():
        # a warning from numerics is a finding, unless the inputs are meant to overflow
        warnings.simplefilter("ignore" if overflow_ok else "error", RuntimeWarning)
        warnings.filterwarnings("ignore", message="training interrupted")
        try:
            return "ok", _numbers(fn(**kwargs))
        except (ValueError, TypeError, FloatingPointError) as exc:
            return "error", exc


def _close(a, b, rtol):
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x.shape != y.shape:
            return False
        if not np.allclose(x, y, rtol=rtol, atol=rtol, equal_nan=True):
            return False
    return True


class Case:
    """``fn(**kwargs)`` with argument generators ``args``; ``names`` maps an argument to the
    words an error about it may use instead of its name; ``allow_inf`` when infinite
    answers are legitimate (densities outside the support); ``rtol`` between backends."""

    def __init__(self, fn, args, *, names=None, allow_inf=False, allow_nan=False, rtol=1e-6):
        self.fn, self.args, self.names = fn, args, names or {}
        self.allow_inf, self.allow_nan, self.rtol = allow_inf, allow_nan, rtol


def check_case(case, data):
    seed = data.draw(st.integers(0, 2 ** 32 - 1), label="values seed")
    rng = np.random.default_rng(seed)
    valid = {k: g.make(rng) for k, g in case.args.items()}
    target = data.draw(st.sampled_from([None] + sorted(case.args)), label="argument")
    kwargs, variant = dict(valid), "valid"
    if target is not None:
        options = case.args[target].variants(valid[target], rng)
        variant = data.draw(st.sampled_from(sorted(options)), label="variant")
        kwargs[target] = options[variant]()
    huge = variant == "huge" and not isinstance(case.args[target], Int)
    outs = {b: _run(case.fn, kwargs, b, overflow_ok=huge) for b in BACKENDS}
    kinds = {b: o[0] for b, o in outs.items()}
    assert len(set(kinds.values())) == 1, f"backends disagree on {target}={variant}: {outs}"
    kind, res = next(iter(outs.values()))
    if kind == "error":
        msg = str(res)
        if target is None:
            raise AssertionError(f"valid arguments raised {type(res).__name__}: {msg}")
        if isinstance(res, FloatingPointError):  # only a fit driven to overflow may diverge
            assert variant in ("huge",) and "diverged" in msg, f"{target}={variant}: {msg}"
            return
        # errors in the user's function name it (f)
        words = (target, "f") + tuple(case.names.get(target, ()))
        if variant in SHAPE_VARIANTS:  # the mismatch may be reported through the other argument
            words += tuple(case.args) + ("f", "shape", "broadcast")
        assert any(w in msg for w in words), f"{target}={variant}: message does not name {words}: {msg!r}"
        return
    for arr in res if not huge else ():
        bad = ~np.isfinite(arr)
        if case.allow_inf:
            bad &= ~np.isinf(arr)
        if case.allow_nan:
            bad &= ~np.isnan(arr)
        assert not bad.any(), f"{target}={variant}: non-finite answer {arr}"
    ref = outs[BACKENDS[0]][1]
    # float32 inputs give float32 answers, which the backends may round apart by an ulp (1.2e-7) or a few
    rtol = max(case.rtol, 1e-5) if variant == "float32" else case.rtol
    for b in BACKENDS[1:]:
        assert _close(ref, outs[b][1], rtol), f"{target}={variant}: backends differ"
    if variant in LAYOUT:
        base = _run(case.fn, valid, BACKENDS[0])
        assert base[0] == "ok" and _close(base[1], ref, 1e-12), f"{target}={variant} changed the answer"


# ---------------------------------------------------------------- cases

def _probs(rng, n=6, c=3):
    p = rng.dirichlet(np.ones(c), size=n)
    return p


def _log_probs(rng, s=4, n=6, c=3):
    return np.log(rng.dirichlet(np.ones(c), size=(s, n)))


def _labels(n=6, c=3):
    return Labels(lambda rng: rng.integers(0, c, n), c)


D = bg.distributions
POS = Array(lambda rng: rng.uniform(0.5, 2.0, 3))
REAL = Array(lambda rng: rng.normal(size=3))


def _dist_case(make, params, x_make, *, has_entropy=True, has_kl=True, allow_nan=False, has_score=False):
    def fn(n, seed, x, **p):
        d = make(**p)
        out = [d.sample(n, seed=seed), d.log_prob(x)] + ([d.score(x)] if has_score else [])
        if has_entropy:
            out += [d.entropy(), d.mean, d.variance]
        if has_kl:
            out.append(D.kl_divergence(d, d))
        return out
    return Case(fn, dict(params, n=Int(3), seed=Seed(1), x=Array(x_make)), allow_inf=True, allow_nan=allow_nan,
                rtol=1e-5, names={"x": ("value",)})


CASES = {
    "random.uniform": Case(lambda shape, seed, stream, offset: bg.random.uniform(shape, seed=seed, stream=stream,
                                                                                  offset=offset),
                           {"shape": Int(5), "seed": Seed(3), "stream": Int(2), "offset": Int(7)}, rtol=0),
    "random.normal": Case(lambda shape, seed, offset: bg.random.normal(shape, seed=seed, offset=offset),
                          {"shape": Int(5), "seed": Seed(3), "offset": Int(7)}, rtol=1e-12),
    "Normal": _dist_case(D.Normal, {"loc": REAL, "scale": POS}, lambda rng: rng.normal(size=3)),
    "LogNormal": _dist_case(D.LogNormal, {"loc": REAL, "scale": POS}, lambda rng: rng.uniform(0.1, 3, 3)),
    "Exponential": _dist_case(D.Exponential, {"rate": POS}, lambda rng: rng.uniform(0.1, 3, 3)),
    "Laplace": _dist_case(D.Laplace, {"loc": REAL, "scale": POS}, lambda rng: rng.normal(size=3)),
    "Gumbel": _dist_case(D.Gumbel, {"loc": REAL, "scale": POS}, lambda rng: rng.normal(size=3)),
    "StudentT": _dist_case(D.StudentT, {"df": POS, "loc": REAL, "scale": POS}, lambda rng: rng.normal(size=3),
                           has_kl=False, allow_nan=True, has_score=True),  # mean / variance NaN for df <= 1 / 2
    "RelaxedBernoulli": _dist_case(lambda temperature, logits: D.RelaxedBernoulli(temperature, logits=logits),
                                   {"temperature": POS, "logits": REAL}, lambda rng: rng.uniform(0.02, 0.98, 3),
                                   has_entropy=False, has_kl=False, has_score=True),
    "Gamma": _dist_case(D.Gamma, {"concentration": POS, "rate": POS}, lambda rng: rng.uniform(0.1, 3, 3)),
    "Beta": _dist_case(D.Beta, {"concentration1": POS, "concentration0": POS},
                       lambda rng: rng.uniform(0.05, 0.95, 3)),
    "Dirichlet": _dist_case(D.Dirichlet, {"concentration": POS}, lambda rng: rng.dirichlet(np.ones(3))),
    "Bernoulli": _dist_case(lambda logits: D.Bernoulli(logits=logits), {"logits": REAL},
                            lambda rng: rng.integers(0, 2, 3).astype(float)),
    "Poisson": _dist_case(D.Poisson, {"rate": POS}, lambda rng: rng.integers(0, 5, 3).astype(float),
                          has_entropy=False, has_kl=False),
    "Categorical": _dist_case(lambda logits: D.Categorical(logits=logits), {"logits": REAL},
                              lambda rng: np.array(rng.integers(0, 3)), has_entropy=False),
    "RelaxedCategorical": _dist_case(lambda temperature, logits: D.RelaxedCategorical(temperature, logits),
                                     {"temperature": Array(lambda rng: np.array(rng.uniform(0.1, 2))),
                                      "logits": REAL},
                                     lambda rng: rng.dirichlet(np.ones(3)), has_entropy=False, has_kl=False,
                                     has_score=True, allow_nan=True),  # score NaN where the density vanishes
    "MultivariateNormal": _dist_case(
        lambda loc, scale_tril: D.MultivariateNormal(loc, scale_tril=scale_tril),
        {"loc": REAL, "scale_tril": Array(lambda rng: np.tril(rng.normal(size=(3, 3)), -1) + np.diag(
            rng.uniform(0.5, 2, 3)))}, lambda rng: rng.normal(size=3)),
    "estimators.expectation": Case(
        lambda loc, n_samples, seed: bg.estimators.expectation(lambda x: (x ** 2).sum(-1), D.Normal(loc, 1.0),
                                                               n_samples, seed=seed),
        {"loc": REAL, "n_samples": Int(8), "seed": Seed(2)}, rtol=1e-9, allow_inf=True),
    "estimators.pathwise": Case(
        lambda loc, scale, n_samples: bg.estimators.pathwise(lambda x: (x ** 2).sum(-1), D.Normal(loc, scale),
                                                             n_samples, grad_f=lambda x: 2 * x),
        {"loc": REAL, "scale": POS, "n_samples": Int(8)}, rtol=1e-9, allow_inf=True),
    "estimators.score_function": Case(
        lambda loc, n_samples, seed: bg.estimators.score_function(lambda x: (x ** 2).sum(-1), D.Normal(loc, 1.0),
                                                                  n_samples, seed=seed),
        {"loc": REAL, "n_samples": Int(8), "seed": Seed(2)}, rtol=1e-9, allow_inf=True),
    "estimators.unordered_set": Case(
        lambda logits, n_samples: bg.estimators.unordered_set(lambda x: x * 1.0, D.Categorical(logits=logits),
                                                              n_samples, k=2).grad["logits"],
        {"logits": REAL, "n_samples": Int(8)}, rtol=1e-9),
    "estimators.measure_valued_gamma": Case(
        lambda rate, n_samples: bg.estimators.measure_valued(lambda x: (x ** 2).sum(-1), D.Gamma(2.0, rate),
                                                             n_samples).grad["rate"],
        {"rate": POS, "n_samples": Int(8)}, rtol=1e-9),
    "estimators.reinforce_loo": Case(
        lambda logits, n_samples: bg.estimators.reinforce_loo(lambda x: x.sum(-1) * 1.0,
                                                              D.Bernoulli(logits=logits), n_samples),
        {"logits": REAL, "n_samples": Int(8)}, rtol=1e-9, allow_inf=True),
    "uncertainty.decompose": Case(lambda log_probs: bg.uncertainty.decompose(log_probs),
                                  {"log_probs": Array(_log_probs)}, allow_inf=False, rtol=1e-6),
    "uncertainty.nll_brier_ece": Case(
        lambda probs, y, n_bins: (bg.uncertainty.nll(probs, y), bg.uncertainty.brier(probs, y),
                                  bg.uncertainty.ece(probs, y, n_bins), bg.uncertainty.accuracy(probs, y)),
        {"probs": Array(_probs), "y": _labels(), "n_bins": Int(5)}, allow_inf=True),
    "uncertainty.auroc": Case(lambda scores, is_ood: (bg.uncertainty.auroc(scores, is_ood),
                                                      bg.uncertainty.aupr(scores, is_ood)),
                              {"scores": Array(lambda rng: rng.normal(size=8)),
                               "is_ood": Labels(lambda rng: np.r_[0, 1, rng.integers(0, 2, 6)], 2)}),
    "uncertainty.gaussian": Case(
        lambda y, mean, var: (bg.uncertainty.gaussian_nll(y, mean, var), bg.uncertainty.crps_gaussian(y, mean, var)),
        {"y": Array(lambda rng: rng.normal(size=5)), "mean": Array(lambda rng: rng.normal(size=5)),
         "var": Array(lambda rng: rng.uniform(0.5, 2, 5))}, names={"var": ("std",)}),
    "uncertainty.fit_temperature": Case(
        lambda logits, y: bg.uncertainty.fit_temperature(logits, y).temperature,
        {"logits": Array(lambda rng: rng.normal(size=(8, 3))), "y": _labels(8)}, rtol=1e-4),
    "acquisition.bald": Case(lambda pool, batch_size: bg.acquisition.bald(pool, batch_size),
                             {"pool": Array(_log_probs), "batch_size": Int(2)}),
    "acquisition.max_entropy_margin": Case(
        lambda pool, batch_size: (bg.acquisition.max_entropy(pool, batch_size).indices,
                                  bg.acquisition.margin(pool, batch_size).indices,
                                  bg.acquisition.variation_ratios(pool, batch_size).indices),
        {"pool": Array(_log_probs), "batch_size": Int(2)}),
    "acquisition.batchbald": Case(
        lambda pool, batch_size, n_configs, seed: bg.acquisition.batchbald(pool, batch_size, n_configs, seed=seed),
        {"pool": Array(_log_probs), "batch_size": Int(2), "n_configs": Int(20), "seed": Seed(1)}, rtol=1e-6),
    "acquisition.joint_entropy": Case(
        lambda log_probs, indices: bg.acquisition.joint_entropy(log_probs, indices),
        {"log_probs": Array(_log_probs), "indices": Labels(lambda rng: np.array([0, 2]), 6)}),
    "ddu": Case(
        lambda features, y, n_classes, test: bg.ddu.DDU().fit(features, y, n_classes).predict(
            test, np.full((np.shape(test)[0], 3), 1 / 3) if np.ndim(test) == 2 and np.shape(test)[0] else test),
        {"features": Array(lambda rng: rng.normal(size=(12, 2)) + np.repeat(np.eye(3, 2) * 4, 4, axis=0)),
         "y": Labels(lambda rng: np.repeat(np.arange(3), 4), 3), "n_classes": Int(3),
         "test": Array(lambda rng: rng.normal(size=(4, 2)))},
        names={"test": ("features", "probs")}, rtol=1e-6),
}


def _mlp_case(kind):
    def fn(X, y, epochs, n_samples, batch_size, lr, X_test):
        mlp = bg.nn.MLP([2, 4, 1], "tanh")
        if kind == "MFVI":
            m = bg.vi.MFVI(mlp, batch_size=batch_size, lr=lr).fit(X, y, epochs, verbose=0)
        elif kind == "MCDropout":
            m = bg.dropout.MCDropout(mlp, 0.1, batch_size=batch_size, lr=lr).fit(X, y, epochs, verbose=0)
        else:
            th = bg.nn.train_map(mlp, X, y, epochs=epochs, batch_size=batch_size, lr=lr)
            return mlp.forward(th, X_test) if n_samples else th
        pr = m.predict(X_test, n_samples=n_samples)
        return pr.mean, pr.var
    return Case(fn, {"X": Array(lambda rng: rng.normal(size=(10, 2))), "y": Array(lambda rng: rng.normal(size=10)),
                     "epochs": Int(2, work=True), "n_samples": Int(3), "batch_size": Int(4),
                     "lr": Real(0.01), "X_test": Array(lambda rng: rng.normal(size=(3, 2)))},
                names={"X_test": ("X",), "lr": ()}, rtol=1e-5)


for _k in ("MFVI", "MCDropout", "MAP"):
    CASES[f"posterior.{_k}"] = _mlp_case(_k)


def _laplace(X, y, structure, prior_precision, link, n_samples, X_test):
    mlp = bg.nn.MLP([2, 3, 2], "tanh")
    la = bg.laplace.Laplace(mlp, mlp.init(seed=1), "categorical", structure=structure,
                            prior_precision=prior_precision).fit(X, y)
    pr = la.predict(X_test, link=link, n_samples=n_samples)
    return pr.probs, la.log_marginal_likelihood()


CASES["laplace"] = Case(_laplace, {
    "X": Array(lambda rng: rng.normal(size=(10, 2))), "y": _labels(10, 2), "structure": Option("diag", ("kron", "full")),
    "prior_precision": Array(lambda rng: rng.uniform(0.5, 2.0)), "link": Option("probit", ("mc", "bridge")),
    "n_samples": Int(5), "X_test": Array(lambda rng: rng.normal(size=(3, 2)))},
    names={"X_test": ("X",)}, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(CASES))
@given(data=st.data())
def test_public_functions_fail_cleanly_or_agree(name, data):
    check_case(CASES[name], data)


# ---------------------------------------------------------------- persistence

def _models():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 2))
    y = X[:, :1] - X[:, 1:]
    mlp = bg.nn.MLP([2, 3, 1], "tanh")
    return {"MFVI": bg.vi.MFVI(mlp, batch_size=6).fit(X, y, 1, verbose=0),
            "MCDropout": bg.dropout.MCDropout(mlp).fit(X, y, 1, verbose=0),
            "Laplace": bg.laplace.Laplace(mlp, mlp.init(seed=1), "gaussian").fit(X, y[:, 0])}


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=5),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                           max_leaves=6)


@pytest.mark.parametrize("kind", ["MFVI", "MCDropout", "Laplace"])
@given(data=st.data())
def test_load_of_a_corrupted_file_is_a_value_error_or_a_working_model(kind, data, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "m.npz"
    model = _models()[kind]
    model.save(path)
    with np.load(path) as z:
        files = {k: z[k] for k in z.files}
    meta = json.loads(files.pop("__meta__").tobytes())
    how = data.draw(st.sampled_from(["meta_value", "meta_drop", "array_shape", "array_dtype", "array_value",
                                     "bytes"]))
    if how == "bytes":
        raw = bytearray(path.read_bytes())
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        path.write_bytes(bytes(raw))
    else:
        if how.startswith("meta"):
            key = data.draw(st.sampled_from(sorted(meta)))
            if how == "meta_drop":
                del meta[key]
            else:
                meta[key] = data.draw(JSON_VALUES)
        else:
            key = data.draw(st.sampled_from(sorted(files)))
            a = files[key]
            files[key] = {"array_shape": lambda: np.concatenate([a.reshape(-1), [1.0]]),
                          "array_dtype": lambda: a.astype(data.draw(st.sampled_from(["int64", "float16", "complex128",
                                                                                    "bool"]))),
                          "array_value": lambda: np.full_like(a, data.draw(st.sampled_from([np.nan, np.inf, -np.inf])))
                          }[how]()
        np.savez(path, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **files)
    cls = type(model)
    try:
        loaded = cls.load(path)
    except ValueError:
        return
    # it loaded: then it must work, or (a Laplace file that says it was saved before fit) say it is not fitted
    X = np.random.default_rng(1).normal(size=(3, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        try:
            pr = loaded.predict(X, n_samples=2) if kind != "Laplace" else loaded.predict(X)
        except RuntimeError as exc:
            assert kind == "Laplace" and meta.get("fitted") is False and "not fitted" in str(exc), exc
            return
    assert np.all(np.isfinite(pr.mean)) and np.all(np.isfinite(pr.var))
