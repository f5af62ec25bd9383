"""Sampling without replacement (bg.distributions.gumbel_top_k) and the estimators built on it
(bg.estimators.unordered_set, reinforce_wor).

Statistical checks use fixed seeds. Means: |estimate - exact| < 4.5 standard errors
(two-sided false alarm 6.8e-6 per coordinate for a Gaussian mean of >= 10^4 terms),
the standard error bounded so a check cannot pass on a wide error bar; the exact values
come from enumerating the support (``exact_gradient``). Frequencies: Pearson's
chi-square at false-alarm probability 1e-4, every expected count >= 5.
"""
import itertools
import math

import numpy as np
import pytest
from scipy import integrate, stats

import bayesgrad as bg
from bayesgrad.distributions import Bernoulli, Categorical, gumbel_top_k
from bayesgrad.estimators.without_replacement import log_outside_mass, log_set_probability, order_probabilities

E = bg.estimators
Z = 4.5
W = np.array([[1.0, -2.0, 0.5], [0.3, 0.2, -1.0]])


def f_joint(X):  # X: (m, 2) class indices of two coordinates with 3 classes
    return (W[0][X[:, 0]] + W[1][X[:, 1]]) ** 2 + 0.3 * X[:, 0]


def joint():
    return Categorical(logits=np.array([[0.2, -0.4, 0.1], [1.0, 0.0, -1.0]]))


def single():
    return Categorical(logits=np.array([0.5, -0.3, 1.2, 0.0, -1.0]))


def f_single(x):
    return (x - 1.5) ** 2 + np.sin(x)


def configurations(d):
    """The joint support and its probabilities, by enumeration."""
    batch = tuple(d.batch_shape)
    D = int(np.prod(batch, dtype=np.int64))
    lp = np.broadcast_to(np.log(d.probs), batch + (d.n_classes,)).reshape(D, -1)
    confs = list(itertools.product(range(d.n_classes), repeat=D))
    return confs, {c: math.exp(sum(lp[i, c[i]] for i in range(D))) for c in confs}


def ordered_probability(seq, P):
    pr, rest = 1.0, 1.0
    for c in seq:
        pr *= P[c] / rest
        rest -= P[c]
    return pr


@pytest.mark.parametrize("case", ["single", "joint", "binary3"])
def test_gumbel_top_k_draws_ordered_samples_without_replacement(case):
    """The k draws, in order, have the law of sequential sampling without replacement."""
    d, k = {"single": (Categorical(logits=np.array([0.5, -0.3, 1.2, 0.0])), 2),
            "joint": (Categorical(logits=np.array([[0.5, -0.3, 1.2], [0.1, 0.9, -1.0]])), 2),
            "binary3": (Categorical(logits=np.array([[0.5, -0.3], [0.1, 0.9], [0.3, -0.2]])), 3)}[case]
    n = 60_000
    top = gumbel_top_k(d, k, n, seed=1)
    confs, P = configurations(d)
    D = len(confs[0])
    assert top.samples.shape == (n, k) + tuple(d.batch_shape)
    rows = top.samples.reshape(n, k, D)
    counts = {}
    for r in map(lambda a: tuple(map(tuple, a)), rows):
        counts[r] = counts.get(r, 0) + 1
    seqs = list(itertools.permutations(confs, k))
    expected = np.array([n * ordered_probability(s, P) for s in seqs])
    observed = np.array([counts.get(tuple(s), 0) for s in seqs])
    assert observed.sum() == n  # every row is k distinct configurations
    assert expected.min() >= 5
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < stats.chi2.ppf(1 - 1e-4, len(seqs) - 1), chi2
    # the joint log-probabilities, the order of the perturbed values and the threshold
    np.testing.assert_allclose(top.log_prob, np.log([[P[c] for c in map(tuple, r)] for r in rows]), rtol=1e-12)
    assert np.all(np.diff(top.perturbed, axis=1) <= 0)
    assert np.all(top.threshold <= top.perturbed[:, -1])


def test_gumbel_top_k_of_the_whole_support_has_no_threshold():
    d = Categorical(logits=np.array([0.3, -0.2, 0.0]))
    top = d.sample_without_replacement(50, 3, seed=2)
    assert np.all(np.sort(top.samples, axis=1) == np.arange(3))
    assert np.all(np.isneginf(top.threshold))
    with pytest.raises(ValueError, match="exceeds"):
        gumbel_top_k(d, 4, 5)
    with pytest.raises(TypeError, match="Categorical"):
        gumbel_top_k(Bernoulli(logits=np.zeros(2)), 1, 5)


def test_set_probability_against_orders_and_the_gumbel_integral():
    """P(S) by the subset recursion = the sum over k! orders = int_0^1 prod_s (1 - u^(p_s / p_rest)) du
    (the top-k event of independent Gumbels, integrated over the maximum of the rest)."""
    rng = np.random.default_rng(0)
    for m in (1, 2, 3, 5):
        p = rng.dirichlet(np.ones(m + 2))[:m]
        by_orders = sum(np.prod([p[i] / (1 - p[list(o[:j])].sum()) for j, i in enumerate(o)])
                        for o in itertools.permutations(range(m)))
        rest = 1.0 - p.sum()
        by_integral = integrate.quad(lambda u: np.prod(1 - u ** (p / rest)), 0, 1, epsabs=1e-13, epsrel=1e-11)[0]
        got = np.exp(log_set_probability(np.log(p)))
        assert got == pytest.approx(by_orders, rel=1e-12)
        assert got == pytest.approx(by_integral, rel=1e-8)
    # tiny probabilities (a large joint support) stay finite in logs
    lp = np.log(np.array([1e-200, 3e-201, 2e-199]))
    assert np.isfinite(log_set_probability(lp))


def test_order_probabilities_are_conditional_distributions():
    rng = np.random.default_rng(1)
    full = rng.dirichlet(np.ones(7), size=20)
    lp = np.log(full[:, :4])
    first, second = order_probabilities(lp, np.log(full[:, 4:].sum(1)))
    np.testing.assert_allclose(first.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(second.sum(2), 1.0, rtol=1e-12)
    assert np.all(second[:, np.arange(4), np.arange(4)] == 0)
    # P(B_1 = s, B_2 = s' | S) from both factors agrees with the direct order sum
    p = np.exp(lp[0])
    PS = np.exp(log_set_probability(lp[:1]))[0]
    for s, s2 in ((0, 1), (2, 3), (3, 0)):
        rest = [i for i in range(4) if i not in (s, s2)]
        direct = sum(ordered_probability((s, s2) + o, dict(enumerate(p))) for o in itertools.permutations(rest)) / PS
        assert first[0, s] * second[0, s, s2] == pytest.approx(direct, rel=1e-10)


def test_log_outside_mass_against_the_complement():
    """The mass outside each set of distinct configurations of 3 coordinates x 3 classes (27), by
    the trie, against the sum over the configurations not in the set (and -inf for the whole support)."""
    rng = np.random.default_rng(3)
    lp = np.log(rng.dirichlet(np.ones(3), size=3))  # (D, K)
    lp[1] = [0.0, -40.0, -60.0]  # a coordinate whose classes differ by e^-40: 1 - sum would cancel
    configs = np.array(list(itertools.product(range(3), repeat=3)))
    logp_all = lp[np.arange(3), configs].sum(1)
    n, k = 40, 6
    conf = np.array([configs[rng.choice(27, size=k, replace=False)] for _ in range(n)])
    got = log_outside_mass(conf, lp)
    for i in range(n):
        inside = {tuple(c) for c in conf[i]}
        rest = [logp_all[j] for j, c in enumerate(configs) if tuple(c) not in inside]
        assert got[i] == pytest.approx(np.logaddexp.reduce(rest), rel=1e-12, abs=1e-12)
    assert log_outside_mass(configs[None], lp)[0] == -np.inf


@pytest.mark.parametrize("logits", [np.array([0.0, -40.0, -1.0]), np.array([[0.0, -30.0], [0.0, -35.0]])],
                         ids=["one_coordinate", "two_coordinates"])
@pytest.mark.parametrize("baseline", [True, False])
def test_unordered_set_of_the_whole_support_is_exact_with_tiny_probabilities(logits, baseline):
    """With k the support size the unordered set estimator is the exact gradient, also when some
    configurations have probability e^-40 (the masses left, once 1 - sum, cancelled: the estimate was
    off by 40% natively and 1e-285 in the twin; NaN for constant f)."""
    d = Categorical(logits=logits)
    support = 3 if logits.ndim == 1 else 4
    f = (lambda x: x.astype(float) + 0.5) if logits.ndim == 1 else (lambda x: (x * [1.0, 2.0]).sum(-1) ** 2 + 0.5)
    est = E.unordered_set(f, d, 5, k=support, baseline=baseline)
    ex = E.exact_gradient(f, d)
    assert est.value == pytest.approx(ex.value, rel=1e-12)
    # without the baseline the terms are sum_s P(B_1 = s | S) f(s) (onehot - p): O(1) parts summing to
    # gradients of 1e-13, exact to the rounding of f (1e-16 |f|); the baseline centres f
    np.testing.assert_allclose(est.grad["logits"], ex.grad["logits"], rtol=1e-9, atol=1e-300 if baseline else 1e-15)
    const = E.unordered_set(lambda x: np.full(len(x), 3.0), Categorical(logits=np.array([-50.0, 0, -50, -50])), 5,
                            k=4, baseline=baseline)
    assert np.all(np.abs(const.grad["logits"]) < 1e-12)


def test_unordered_set_keeps_an_outside_mass_as_small_as_its_elements():
    """Logits [0, -40, -40, -40], k = 3: every likely set is {0, i, j}, the mass outside it e^-40 like its
    own tiny elements, and by symmetry each set's value sum_s P(B_1 = s | S) f(s) is E[f] exactly for
    f = 1[x > 0]. 1 - sum_S p cannot hold e^-40 (4e-18): formed so, the value was 33% off."""
    d = Categorical(logits=np.array([0.0, -40.0, -40.0, -40.0]))
    f = lambda x: (x > 0).astype(float)  # noqa: E731
    ex = E.exact_gradient(f, d)
    for baseline in (False, True):
        est = E.unordered_set(f, d, 20, k=3, baseline=baseline)
        assert est.value == pytest.approx(ex.value, rel=1e-12)
        assert est.grad["logits"][0] == pytest.approx(ex.grad["logits"][0], rel=1e-12)


CASES = [("unordered_set", dict(baseline=True)), ("unordered_set", dict(baseline=False)),
         ("reinforce_wor", dict())]


@pytest.mark.parametrize("name,kw", CASES)
@pytest.mark.parametrize("problem,k", [("single", 2), ("single", 3), ("joint", 4)])
def test_unbiased_against_enumeration(name, kw, problem, k):
    d, f = (single(), f_single) if problem == "single" else (joint(), f_joint)
    est = getattr(E, name)(f, d, 20_000, seed=3, k=k, **kw)
    ex = E.exact_gradient(f, d)
    g, se = est.grad["logits"], est.stderr["logits"]
    assert g.shape == ex.grad["logits"].shape
    assert np.all(np.abs(g - ex.grad["logits"]) <= Z * se), (g, ex.grad["logits"], se)
    assert np.all(se < 0.03), se
    assert abs(est.value - ex.value) <= Z * est.value_stderr
    assert est.n_evaluations == 20_000 * k


@pytest.mark.parametrize("name,kw", CASES + [("reinforce_wor", dict(baseline="normalized"))])
def test_exact_when_the_set_is_the_whole_support(name, kw):
    d = single()
    est = getattr(E, name)(f_single, d, 30, seed=4, k=5, **kw)
    ex = E.exact_gradient(f_single, d)
    np.testing.assert_allclose(est.grad["logits"], ex.grad["logits"], rtol=1e-9, atol=1e-12)
    assert est.value == pytest.approx(ex.value, rel=1e-12)


def test_the_built_in_baselines_lower_the_variance():
    d = joint()
    v = {key: getattr(E, name)(f_joint, d, 20_000, seed=5, k=4, **kw).variance["logits"].sum()
         for key, (name, kw) in {"us": ("unordered_set", dict(baseline=False)),
                                 "usbl": ("unordered_set", dict(baseline=True)),
                                 "wor": ("reinforce_wor", {}),
                                 "wor_norm": ("reinforce_wor", dict(baseline="normalized"))}.items()}
    assert v["usbl"] < 0.8 * v["us"]
    assert v["us"] < v["wor"]
    assert v["wor_norm"] < 0.5 * v["wor"]
    # RLOO with the same 4 evaluations per term is beaten by the unordered set estimator here
    v_rloo = E.reinforce_loo(f_joint, d, 4 * 20_000, seed=5).variance["logits"].sum() / 4
    assert v["usbl"] < v_rloo


def test_normalized_reinforce_wor_is_flagged_biased():
    est = E.reinforce_wor(f_joint, joint(), 200, seed=0, k=3, baseline="normalized")
    assert est.info["biased"] is True and est.info["baseline"] == "normalized"
    assert E.reinforce_wor(f_joint, joint(), 200, seed=0, k=3).info["biased"] is False


def test_minimize_and_variance_curve():
    res = E.minimize(lambda X: (W[0][X[:, 0]] + W[1][X[:, 1]]), joint(), "unordered_set", steps=300,
                     n_samples=2, seed=0, lr=0.1, estimator_options={"k": 3})
    assert np.all(np.argmax(res.dist.probs, -1) == [1, 2])  # the minimising classes
    out = E.variance_curve(lambda a: (lambda x: f_single(x) * a, None), [1.0, 2.0], single(),
                           estimators=("unordered_set", "reinforce_wor"), n_samples=500,
                           options={"unordered_set": {"k": 3}, "reinforce_wor": {"k": 3}})
    for name in ("unordered_set", "reinforce_wor"):
        v = out[name]["logits"]
        assert v.shape == (2, 5)
        np.testing.assert_allclose(v[1], 4 * v[0], rtol=1e-9)  # f scaled by 2: variance by 4


def test_errors():
    d = joint()
    with pytest.raises(TypeError, match="Categorical"):
        E.unordered_set(lambda b: b.sum(-1), Bernoulli(logits=np.zeros(2)), 10)
    with pytest.raises(TypeError, match="logits"):
        E.unordered_set(f_single, Categorical(probs=np.full(5, 0.2)), 10)
    with pytest.raises(ValueError, match="k >= 2"):
        E.unordered_set(f_joint, d, 10, k=1)
    with pytest.raises(ValueError, match="k >= 2"):
        E.reinforce_wor(f_joint, d, 10, k=1, baseline="normalized")
    with pytest.raises(ValueError, match="exceeds"):
        E.unordered_set(f_joint, d, 10, k=10)
    with pytest.raises(ValueError, match="MAX_K"):
        E.reinforce_wor(f_joint, Categorical(logits=np.zeros((4, 3))), 10, k=13)
    with pytest.raises(ValueError, match="baseline"):
        E.reinforce_wor(f_joint, d, 10, baseline="loo")
    with pytest.raises(TypeError, match="baseline"):
        E.unordered_set(f_joint, d, 10, baseline="yes")
