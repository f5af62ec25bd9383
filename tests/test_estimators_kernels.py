"""Native / NumPy parity of the issue-16 estimator kernels (float64): control_variate_accumulate,
control_coefficient, quadratic_values, vimco_signal, the beam search and set kernels, the multi-sample
and measure-valued kernels; and each twin against a direct float64 reference formula (the REBAR / RELAX
Bernoulli kernels: test_relax_bernoulli_kernels.py)."""
import numpy as np
import pytest

from bayesgrad import _backend
from bayesgrad import _numpy as twin

from helpers import estimator_modules, native_simd_paths

pytestmark = pytest.mark.single_backend


def _data(n=300, p=7, seed=0):
    r = np.random.default_rng(seed)
    return (r.standard_normal((n, p)), r.standard_normal(n) + 2.0, r.standard_normal(n), r.standard_normal(p),
            r.standard_normal(p))


@pytest.mark.parametrize("terms", [False, True])
def test_control_variate_accumulate(terms):
    s, f, h, beta, eg = _data()
    n, p = s.shape
    for shift in ((1.0, 0.0, 0.0), (n / (n - 1), f.mean(), h.mean()), (1.0, 0.7, -0.2)):
        ref = shift[0] * s * ((f - shift[1])[:, None] - beta * (h - shift[2])[:, None]) + beta * eg
        for mod in estimator_modules():
            mean, var = np.empty(p), np.empty(p)
            t = np.empty((n, p)) if terms else None
            mod.control_variate_accumulate(s, f, h, beta, eg, np.array(shift), mean, var, t)
            np.testing.assert_allclose(mean, ref.mean(0), rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(var, ref.var(0, ddof=1), rtol=1e-11)
            if terms:
                np.testing.assert_allclose(t, ref, rtol=1e-14, atol=1e-15)


def test_control_coefficient_and_quadratic_values():
    s, f, h, mu, g = _data(seed=1)
    n, p = s.shape
    s[:, 3] = 0.0  # a column without variance: coefficient 0
    a, c = s * f[:, None], s * h[:, None]
    ref = np.zeros(p)
    for j in range(p):
        v = np.var(c[:, j])
        ref[j] = np.cov(a[:, j], c[:, j], ddof=0)[0, 1] / v if v > 0 else 0.0
    x = np.random.default_rng(2).standard_normal((n, p))
    hh = np.linspace(-1, 2, p)
    qref = 0.3 + (x - mu) @ g + 0.5 * ((x - mu) ** 2) @ hh
    for mod in estimator_modules():
        beta = np.empty(p)
        mod.control_coefficient(s, f, h, beta)
        np.testing.assert_allclose(beta, ref, rtol=1e-10, atol=1e-14)
        assert beta[3] == 0.0
        out = np.empty(n)
        mod.quadratic_values(x, mu, g, hh, 0.3, out)
        np.testing.assert_allclose(out, qref, rtol=1e-12, atol=1e-12)


def test_vimco_signal():
    r = np.random.default_rng(3)
    logw = r.standard_normal((50, 6)) * 3.0 - 40.0  # far from 0: the stable form matters
    k = logw.shape[1]
    ref = np.empty_like(logw)
    for i in range(logw.shape[0]):
        lw = logw[i]
        w = np.exp(lw - lw.max())
        L = np.log(np.mean(np.exp(lw - lw.max()))) + lw.max()
        for j in range(k):
            alt = lw.copy()
            alt[j] = (lw.sum() - lw[j]) / (k - 1)
            Lj = np.log(np.mean(np.exp(alt - alt.max()))) + alt.max()
            ref[i, j] = L - Lj - w[j] / w.sum()
    for mod in estimator_modules():
        out = np.empty_like(logw)
        mod.vimco_signal(logw, out)
        np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
        with pytest.raises(ValueError, match="k >= 2"):
            mod.vimco_signal(logw[:, :1].copy(), np.empty((50, 1)))


@pytest.mark.parametrize("k", [2, 3, 4, 5, 8, 9, 13, 16, 21])
def test_vimco_signal_simd_paths_match_scalar(k):
    """Every vector path of vimco_signal against the core's scalar loop (and the twin) to rounding, for
    row lengths with and without a partial vector, log-weights spread over +-700 (exponents the vector
    exp flushes to 0) and rows of equal weights."""
    if not _backend.native_available():
        pytest.skip("needs the native core")
    from helpers import on_simd_path

    r = np.random.default_rng(k)
    logw = r.standard_normal((37, k)) * 5.0 - 300.0
    logw[0] = -12.5  # equal weights: every signal -1 / k
    logw[1, 0] = 500.0  # one weight dominates, the others ~e^-800 below it
    logw[2, :] = np.linspace(-700.0, 700.0, k)
    logw[3:6] = [[0.1], [0.7], [-1.3]]  # equal weights whose sums may round up (the others' mean above the maximum)
    core = _backend._core.estimators
    ref = np.empty_like(logw)
    on_simd_path("scalar", lambda: core.vimco_signal(logw, ref))
    np.testing.assert_allclose(ref[[0, 3, 4, 5]], -1.0 / k, rtol=0, atol=1e-14)
    # L - L_{-j} cancels where w_j dominates its row (the leave-one-out sum is a small remainder of
    # the total), so a different summation order moves the signal by up to ~1e-11 relative there
    tw = np.empty_like(logw)
    twin.estimators.vimco_signal(logw, tw)
    np.testing.assert_allclose(tw, ref, rtol=1e-10, atol=1e-12)
    for path in native_simd_paths():
        out = np.full_like(logw, np.nan)
        on_simd_path(path, lambda: core.vimco_signal(logw, out))
        np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12, err_msg=path)


def test_float64_only_and_shapes_checked():
    s, f, h, beta, eg = _data(n=10, p=3)
    for mod in estimator_modules():
        with pytest.raises((TypeError, ValueError)):
            mod.control_coefficient(s.astype(np.float32), f, h, np.empty(3))
        with pytest.raises((TypeError, ValueError)):
            mod.control_variate_accumulate(s, f, h, beta, eg, np.ones(2), np.empty(3), np.empty(3))
        with pytest.raises((TypeError, ValueError)):
            mod.quadratic_values(s, beta, eg, beta, 0.0, np.empty(9))


def test_gumbel_beam_search_parity():
    """The beam search agrees between the kernels (same configurations, values to rounding); its law is
    tested through bg.distributions.gumbel_top_k in test_estimators_wor.py."""
    r = np.random.default_rng(5)
    lp = np.log(r.dirichlet(np.ones(4), size=6))  # D = 6 coordinates, K = 4 classes
    n, m = 300, 5
    u = r.uniform(size=(n, 1 + 6 * m * 4))
    res = []
    for mod in estimator_modules():
        conf, phi, G = np.empty((n, m, 6), dtype=np.int64), np.empty((n, m)), np.empty((n, m))
        mod.gumbel_beam_search(lp, u, conf, phi, G)
        np.testing.assert_allclose(phi, lp[np.arange(6), conf].sum(-1), rtol=1e-12)
        assert np.all(np.diff(G, axis=1) <= 0)
        assert all(len({tuple(c) for c in row}) == m for row in conf)  # distinct configurations
        res.append((conf, phi, G))
        with pytest.raises(ValueError, match="configurations"):
            mod.gumbel_beam_search(lp[:1, :2].copy(), np.full((1, 1 + 3 * 2), 0.5),
                                   np.empty((1, 3, 1), dtype=np.int64), np.empty((1, 3)), np.empty((1, 3)))
    if len(res) == 2:
        np.testing.assert_array_equal(res[0][0], res[1][0])
        np.testing.assert_allclose(res[0][1], res[1][1], rtol=1e-13)
        np.testing.assert_allclose(res[0][2], res[1][2], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("terms", [False, True])
def test_fused_normal_kernels(dtype, terms):
    """pathwise_normal_accumulate / score_normal_accumulate against the unfused kernels' inputs formed in NumPy
    (the distributions' score kernel, (x - loc) / scale), and native against twin."""
    import bayesgrad as bg

    r = np.random.default_rng(6)
    n, p = 300, 9
    loc, scale = r.standard_normal(p).astype(dtype), r.uniform(0.5, 2.0, p).astype(dtype)
    x = (loc + scale * r.standard_normal((n, p))).astype(dtype)
    g, f = r.standard_normal((n, p)).astype(dtype), (r.standard_normal(n) + 3.0).astype(dtype)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    with bg.use_backend("numpy"):
        sc = bg.distributions.Normal(loc, scale).score(x)
    eps = ((x - loc) / scale).astype(np.float64)
    ref_pw = [g.astype(np.float64), g * eps]
    res = []
    for mod in estimator_modules():
        out = []
        for kind in ("pathwise", "loo", "base", "none"):
            mean, var = np.empty((2, p), dtype), np.empty((2, p), dtype)
            t = np.empty((2, n, p), dtype) if terms else None
            if kind == "pathwise":
                mod.pathwise_normal_accumulate(g, x, loc, scale, mean, var, t)
                ref = ref_pw
            else:
                b = np.full(n, 2.5, dtype) if kind == "base" else None
                mod.score_normal_accumulate(x, loc, scale, f, b, kind == "loo", mean, var, t)
                f64 = f.astype(np.float64)
                resid = (f64 - (f64.sum() - f64) / (n - 1) if kind == "loo" else f64 - 2.5 if kind == "base"
                         else f64)
                ref = [sc[k].astype(np.float64) * resid[:, None] for k in ("loc", "scale")]
            for i in range(2):
                np.testing.assert_allclose(mean[i], ref[i].mean(0), rtol=tol, atol=tol)
                np.testing.assert_allclose(var[i], ref[i].var(0, ddof=1), rtol=tol * 10)
                if terms:
                    np.testing.assert_allclose(t[i], ref[i], rtol=tol, atol=tol)
            out.append((mean, var, t))
        res.append(out)
    if len(res) == 2:
        for a, c in zip(*res):
            for u, w in zip(a, c):
                if u is not None:
                    np.testing.assert_allclose(u, w, rtol=tol, atol=tol)


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_normal_multisample_terms(mode):
    """The fused IWAE / DReG / VIMCO pass against the NumPy formulas it replaces (log q from the
    distributions, logsumexp, vimco_signal), native against twin."""
    import bayesgrad as bg
    from scipy.special import logsumexp

    r = np.random.default_rng(7)
    n, k, p = 40, 5, 6
    loc, scale = r.standard_normal(p), r.uniform(0.5, 2.0, p)
    z = loc + scale * r.standard_normal((n, k, p))
    fz = -0.5 * (z * z).sum(-1) - 30.0  # far from 0: the stable forms matter
    g = -z
    with bg.use_backend("numpy"):
        lq = bg.distributions.Normal(loc, scale).log_prob(z).sum(-1)
    logw = fz - lq
    wt = np.exp(logw - logsumexp(logw, axis=1, keepdims=True))
    eps = (z - loc) / scale
    if mode == 3:
        c = np.empty((n, k))
        twin.estimators.vimco_signal(logw, c)
        ref = [(c[..., None] * eps / scale).sum(1), (c[..., None] * (eps ** 2 - 1) / scale).sum(1)]
    elif mode == 0:
        ref = [(wt[..., None] * g).sum(1), (wt[..., None] * (g * eps + 1 / scale)).sum(1)]
    else:
        c = (wt * wt if mode == 1 else wt - wt * wt)[..., None]
        a = g + eps / scale
        ref = [(c * a).sum(1), (c * a * eps).sum(1)]
    res = []
    for mod in estimator_modules():
        terms, w, bound = np.empty((2, n, p)), np.empty((n, k)), np.empty(n)
        mod.normal_multisample_terms(z, fz, None if mode == 3 else g, loc, scale, mode, terms, w, bound)
        np.testing.assert_allclose(bound, logsumexp(logw, axis=1) - np.log(k), rtol=1e-12)
        np.testing.assert_allclose(w, wt, rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(terms[0], ref[0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(terms[1], ref[1], rtol=1e-9, atol=1e-12)
        res.append((terms, w, bound))
        with pytest.raises(ValueError, match="mode"):
            mod.normal_multisample_terms(z, fz, g, loc, scale, 4, terms, w, bound)
        with pytest.raises(ValueError, match="g is required"):
            mod.normal_multisample_terms(z, fz, None, loc, scale, 0, terms, w, bound)
    if len(res) == 2:
        for a, c in zip(*res):
            np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-14)


def test_gamma_weak_parts_parity():
    """The rejection kernel of the Gamma shape's weak derivative: native and twin draw the same
    values (same proposals, uniforms and acceptances), each on the sign's side of exp(psi(a))."""
    from scipy import special

    a = np.array([0.05, 0.5, 1.0, 3.0, 20.0])
    eps = np.minimum(0.5, a / 2)
    psi = special.digamma(a)
    for sign in (1.0, -1.0):
        res = []
        for mod in estimator_modules():
            out = np.full((300, a.size), np.nan)
            mod.gamma_weak_parts(a + sign * eps, eps, psi, sign, 11, 1234, 200, out)
            assert np.all(np.isfinite(out)) and np.all(sign * (np.log(out) - psi) > 0)
            res.append(out)
            with pytest.raises(ValueError, match="sign"):
                mod.gamma_weak_parts(a, eps, psi, 0.5, 11, 1234, 200, out)
            with pytest.raises(RuntimeError, match="did not finish"):
                mod.gamma_weak_parts(a + sign * eps, eps, psi, sign, 11, 1234, 1, out)
        if len(res) == 2:
            # Same proposals and decisions; the values agree to rounding, not bit for bit: the
            # native draw uses libm's log / exp, the twin NumPy's, which on AVX-512 CPUs are
            # NumPy's own SIMD versions (1 ulp from libm in a few percent of calls), and the
            # shape boost below alpha = 1 (here alpha down to 0.025) scales a log's ulp by 1/alpha.
            np.testing.assert_allclose(res[0], res[1], rtol=1e-12, atol=0)


def test_gamma_weak_parts_parity_across_chunks_and_tiny_draws():
    """Rounds of more than one 4096-proposal chunk (the uniforms of every chunk from the round's one
    stream) and draws between the smallest normal double and e^-700, where the native kernel's vector
    exponential gives 0 and libm's value is taken: native and twin agree there too."""
    from scipy import special

    # p+ at a = 1.2e-3 spreads log x over (psi(a), 0) = (-834, 0); p- is all below -708.4 (the smallest
    # normal double)
    a = np.array([1.2e-3, 0.7, 40.0])
    psi = special.digamma(a)
    tiny = np.finfo(np.float64).tiny
    for sign in (1.0, -1.0):
        eps = 1.0 / np.sqrt(special.polygamma(1, a))
        if sign < 0:
            eps = np.minimum(eps, a / 2.0)
        res = []
        for mod in estimator_modules():
            out = np.full((3000, a.size), np.nan)
            mod.gamma_weak_parts(a + sign * eps, eps, psi, sign, 5, 77, 200, out)
            between = (out[:, 0] > tiny) & (out[:, 0] < np.exp(-700.0))
            assert between.sum() >= (5 if sign > 0 else 0)  # the range the vector exponential does not cover
            res.append(out)
        if len(res) == 2:
            np.testing.assert_allclose(res[0], res[1], rtol=1e-12, atol=0)


def test_gamma_shape_constant_against_quadrature():
    """The finite-difference form of c(a) (a in [0.01, 64]) and the quadrature agree to 1e-10."""
    from bayesgrad.estimators import mvd

    a = np.concatenate([np.geomspace(0.01, 64.0, 40), [1e-3, 0.005, 100.0, 500.0]])
    got = mvd.gamma_shape_constant(a)
    want = np.array([mvd._shape_constant_quad(x) for x in a])
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_gamma_shape_constant_against_its_conditional_form():
    """c(a) = E[(log X - psi(a))^+] with X = G U^{1/a}, G ~ Gamma(1 + a), U uniform: given G, with
    m = log G - psi(a) > 0, the expectation over U is m - (1 - e^{-a m}) / a, so c is a smooth integral
    over G alone, an independent route that has no boundary layer at small a (where the shape
    constant's quadrature once missed one: c(1e-4) = 6013 against 3678.79)."""
    from scipy import integrate, special

    from bayesgrad.estimators import mvd

    def conditional(a):
        psi, lg1 = special.digamma(a), special.gammaln(1 + a)

        def integrand(lg):  # lg = log G
            m = lg - psi
            with np.errstate(over="ignore"):  # m < 0 and large lg: masked or multiplied by 0
                h = np.where(m > 0, m + np.expm1(-a * m) / a, 0.0)
                return h * np.exp((1 + a) * lg - np.exp(lg) - lg1)

        return sum(integrate.quad(integrand, lo, hi, epsabs=0, epsrel=1e-13, limit=400)[0]
                   for lo, hi in ((max(psi, -745.0), 5.0), (5.0, np.inf)))

    a = np.concatenate([np.geomspace(1e-10, 0.0099, 12), [0.01, 0.3, 2.0, 64.0, 65.0, 1e3]])
    got = mvd.gamma_shape_constant(a)
    want = np.array([conditional(x) for x in a])
    np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_set_order_probabilities(k):
    """Against the enumeration over orders for small sets (P(B_1 = s | S) and P(B_2 = s' | B_1 = s, S)
    from the probabilities of all k! orders), native against twin."""
    import itertools

    r = np.random.default_rng(8)
    n = 30
    full = r.dirichlet(np.ones(k + 3), size=n)
    p = full[:, :k]  # k of k + 3 elements: mass left outside the set
    outside = full[:, k:].sum(1)
    log_p = np.log(p)
    order_p = {}
    for perm in itertools.permutations(range(k)):
        pp = p[:, list(perm)]
        left = outside[:, None] + np.cumsum(pp[:, ::-1], 1)[:, ::-1]  # the mass left before each draw
        order_p[perm] = np.prod(pp / left, 1)
    total = sum(order_p.values())
    first_ref = np.zeros((n, k))
    second_ref = np.zeros((n, k, k))
    for perm, v in order_p.items():
        first_ref[:, perm[0]] += v / total
        if k >= 2:
            second_ref[:, perm[0], perm[1]] += v / total
    if k >= 2:
        second_ref /= first_ref[:, :, None]
    res = []
    for mod in estimator_modules():
        first = np.empty((n, k))
        second = np.empty((n, k, k)) if k >= 2 else None
        mod.set_order_probabilities(log_p, np.log(outside), first, second)
        np.testing.assert_allclose(first, first_ref, rtol=1e-10)
        with pytest.raises(ValueError, match="log_rest"):  # one outside mass per set
            mod.set_order_probabilities(log_p, np.log(outside[:-1]), first, second)
        if k >= 2:
            np.testing.assert_allclose(second, second_ref, rtol=1e-10, atol=1e-15)
        res.append((first, second))
    if len(res) == 2:
        np.testing.assert_allclose(res[0][0], res[1][0], rtol=1e-13)
        if k >= 2:
            np.testing.assert_allclose(res[0][1], res[1][1], rtol=1e-13, atol=1e-16)


def test_set_outside_mass_parity_and_errors():
    """The mass outside sets of distinct configurations (the trie of each set): native against twin and
    both against the sum over the complement (3 coordinates x 4 classes, sets of 1 to 12 and the whole
    support, one coordinate's classes e^-40 apart); class indices outside [0, K) refused."""
    import itertools

    r = np.random.default_rng(12)
    lp = np.log(r.dirichlet(np.ones(4), size=3))
    lp[2] = [0.0, -40.0, -41.0, -80.0]
    lp[2] -= np.logaddexp.reduce(lp[2])
    configs = np.array(list(itertools.product(range(4), repeat=3)))
    logp_all = lp[np.arange(3), configs].sum(1)
    for k in (1, 5, 12, 64):
        idx = np.array([r.choice(64, size=k, replace=False) for _ in range(20)])
        conf = np.ascontiguousarray(configs[idx])
        want = np.array([np.logaddexp.reduce(np.delete(logp_all, row)) if k < 64 else -np.inf for row in idx])
        for mod in estimator_modules():
            out = np.empty(20)
            mod.set_outside_mass(conf, lp, out)
            np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
            bad = conf.copy()
            bad[0, 0, 1] = 4
            with pytest.raises(ValueError, match="out of range"):
                mod.set_outside_mass(bad, lp, out)


def test_categorical_set_terms():
    r = np.random.default_rng(9)
    n, k, D, K = 50, 4, 3, 5
    conf = r.integers(0, K, size=(n, k, D)).astype(np.int64)
    c = r.standard_normal((n, k))
    probs = r.dirichlet(np.ones(K), size=D)
    onehot = (conf[..., None] == np.arange(K)).astype(float)
    ref = (c[:, :, None, None] * (onehot - probs)).sum(1)
    for mod in estimator_modules():
        t = np.empty((n, D, K))
        mod.categorical_set_terms(conf, c, probs, t)
        np.testing.assert_allclose(t, ref, rtol=1e-13, atol=1e-14)
        bad = conf.copy()
        bad[0, 0, 0] = K
        with pytest.raises(ValueError, match="out of range"):
            mod.categorical_set_terms(bad, c, probs, t)


def test_set_order_probabilities_whole_support():
    """Sets that are the whole support (log_rest = -inf), one of them holding probabilities 1e-13 and
    1e-18 beside ~1 (the masses left, once 1 - sum, cancelled to 1e-300 there: the order probabilities
    came out wrong by factors): against the enumeration over orders with every mass left summed from the
    elements not yet drawn, to 1e-12 on both backends (the native linear- and log-space recursions)."""
    import itertools

    lp = np.array([np.log([0.5, 0.5 - 1e-13, 1e-13]), [0.0, -40.0, -41.5], np.log([0.2, 0.3, 0.5])])
    lp -= np.logaddexp.reduce(lp, axis=1, keepdims=True)
    p = np.exp(lp)
    first_ref, second_ref = np.zeros((3, 3)), np.zeros((3, 3, 3))
    for perm in itertools.permutations(range(3)):
        pp = p[:, list(perm)]
        v = np.prod(pp / np.cumsum(pp[:, ::-1], 1)[:, ::-1], 1)
        first_ref[:, perm[0]] += v
        second_ref[:, perm[0], perm[1]] += v
    second_ref /= first_ref[:, :, None]
    for mod in estimator_modules():
        first, second = np.empty((3, 3)), np.empty((3, 3, 3))
        mod.set_order_probabilities(lp, np.full(3, -np.inf), first, second)
        np.testing.assert_allclose(first, first_ref, rtol=1e-12, atol=0)
        np.testing.assert_allclose(second, second_ref, rtol=1e-12, atol=0)


def test_normal_scores():
    """normal_scores against the distributions' score (float64), native against twin."""
    import bayesgrad as bg

    r = np.random.default_rng(10)
    n, p = 40, 7
    loc, scale = r.standard_normal(p), r.uniform(0.5, 2.0, p)
    x = loc + scale * r.standard_normal((n, p))
    with bg.use_backend("numpy"):
        ref = bg.distributions.Normal(loc, scale).score(x)
    res = []
    for mod in estimator_modules():
        out = np.empty((2, n, p))
        mod.normal_scores(x, loc, scale, out)
        np.testing.assert_allclose(out[0], ref["loc"], rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(out[1], ref["scale"], rtol=1e-13, atol=1e-14)
        res.append(out)
    if len(res) == 2:
        np.testing.assert_array_equal(res[0], res[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, d", [(5, 7), (1, 1), (3, 200), (0, 4)])
def test_coordinate_points(dtype, m, d):
    # out[i, r, :] = x[i, :] with coordinate r replaced by values[i, r], rounded once to dtype
    r = np.random.default_rng(3)
    x, v = r.standard_normal((m, d)), r.standard_normal((m, d))
    ref = np.repeat(x[:, None, :], d, axis=1)
    ref[:, np.arange(d), np.arange(d)] = v
    for mod in estimator_modules():
        out = np.full((m, d, d), np.nan, dtype)
        mod.coordinate_points(x, v, out)
        np.testing.assert_array_equal(out, ref.astype(dtype))
        with pytest.raises(ValueError):
            mod.coordinate_points(x, v[:, :0] if d else v, np.empty((m, d, d), dtype))
        with pytest.raises(ValueError):
            mod.coordinate_points(x, v, np.empty((m, d, d + 1), dtype))
    if _backend.native_available():
        with pytest.raises(TypeError):  # a wrong output dtype is an error, not a silent copy
            _backend._core.estimators.coordinate_points(x, v, np.empty((m, d, d), np.int64))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m, parts, d", [(4, 2, 7), (1, 2, 100), (3, 1, 5), (2, 3, 1), (0, 2, 3)])
def test_coordinate_points_parts(dtype, m, parts, d):
    # values (m, parts, D): out[i, j, r, :] = x[i, :] with coordinate r replaced by values[i, j, r]
    r = np.random.default_rng(4)
    x, v = r.standard_normal((m, d)), r.standard_normal((m, parts, d))
    ref = np.repeat(np.repeat(x[:, None, None, :], parts, axis=1), d, axis=2)
    ref[:, :, np.arange(d), np.arange(d)] = v
    for mod in estimator_modules():
        out = np.full((m, parts, d, d), np.nan, dtype)
        mod.coordinate_points(x, v, out)
        np.testing.assert_array_equal(out, ref.astype(dtype))
        with pytest.raises(ValueError, match="out must have shape"):
            mod.coordinate_points(x, v, np.empty((m, parts + 1, d, d), dtype))
        with pytest.raises(ValueError, match="out must have shape"):
            mod.coordinate_points(x, v, np.empty((m, d, d), dtype))
        with pytest.raises(ValueError, match="values must have shape"):
            mod.coordinate_points(x, v[:, :, :0] if d else v[:, :, None], out)
        with pytest.raises(ValueError, match="values must have shape"):
            mod.coordinate_points(x, v[None], np.empty((1,) + out.shape, dtype))
    from helpers import on_simd_path

    for path in native_simd_paths() + (["scalar"] if _backend.native_available() else []):
        out = np.full((m, parts, d, d), np.nan, dtype)
        on_simd_path(path, lambda: _backend._core.estimators.coordinate_points(x, v, out))
        np.testing.assert_array_equal(out, ref.astype(dtype), err_msg=path)


def _beam(mod, lp, u, m):
    n, D = u.shape[0], lp.shape[0]
    conf, phi, G = np.empty((n, m, D), dtype=np.int64), np.empty((n, m)), np.empty((n, m))
    mod.gumbel_beam_search(lp, u, conf, phi, G)
    return conf, phi, G


def _beam_cases():
    r = np.random.default_rng(11)
    # (D, K, m): one row's step has up to m K children, not a multiple of 4 or 8 in most cases;
    # n = 150 rows: two blocks of the native kernel, the second partial
    for D, K, m in ((6, 4, 5), (3, 7, 3), (5, 2, 9), (1, 12, 5)):
        lp = np.log(r.dirichlet(np.full(K, 0.5), size=D))
        lp[0, 1] = -np.inf  # a class of probability zero (its children come out at -inf)
        lp[0] -= np.log(np.exp(lp[0]).sum())
        u = r.uniform(size=(150, 1 + D * m * K))
        u[0, :5] = [1e-300, 1 - 2 ** -53, 0.5, 2 ** -53, 1e-12]  # extreme Gumbels
        yield lp, u, m


def test_gumbel_beam_search_simd_paths_match_scalar_reference():
    """AVX-512 / AVX2 (vector Gumbels and truncation in a factored form, rank or insertion top-k)
    against the scalar libm path: the same configurations, values to 1e-12, and the two vector
    paths within 4 ulp of each other (the same operations; 4 ulp leaves room for the sanitizer
    build's different FMA contraction)."""
    from helpers import on_simd_path

    paths = native_simd_paths()
    if not paths:
        pytest.skip("no SIMD path on this CPU / no native core")
    core = _backend._core.estimators
    for lp, u, m in _beam_cases():
        ref = on_simd_path("scalar", lambda: _beam(core, lp, u, m))
        got = {p: on_simd_path(p, lambda: _beam(core, lp, u, m)) for p in paths}
        for p, res in got.items():
            np.testing.assert_array_equal(res[0], ref[0], err_msg=p)
            np.testing.assert_array_equal(res[1], ref[1], err_msg=p)  # phi: the same sums on every path
            fin = np.isfinite(ref[2])
            np.testing.assert_array_equal(np.isfinite(res[2]), fin, err_msg=p)
            np.testing.assert_allclose(res[2][fin], ref[2][fin], rtol=1e-12, atol=1e-12, err_msg=p)
        if len(got) == 2:
            a, b = got["avx512"][2], got["avx2"][2]
            fin = np.isfinite(a)
            np.testing.assert_array_equal(a[~fin], b[~fin])
            np.testing.assert_array_max_ulp(a[fin], b[fin], maxulp=4)


def test_gumbel_beam_search_ties_keep_the_lower_position():
    """Equal perturbed values (uniform classes, one uniform everywhere: every child of a step ties)
    are kept in the order of a stable sort, the lower (parent, class) position first, by the twin's
    argsort and by every native path (insertion and rank selection)."""
    from helpers import on_simd_path

    D, K, m, n = 4, 3, 5, 70
    lp = np.full((D, K), -np.log(K))
    u = np.full((n, 1 + D * m * K), 0.3)
    want = _beam(twin.estimators, lp, u, m)[0]
    # every step keeps the first five (parent, class) positions: the five configurations first in
    # lexicographic order, in that order, in every row
    first = [[0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 2], [0, 0, 1, 0], [0, 0, 1, 1]]
    np.testing.assert_array_equal(want, np.broadcast_to(first, want.shape))
    if _backend.native_available():
        for p in ["scalar"] + native_simd_paths():
            got = on_simd_path(p, lambda: _beam(_backend._core.estimators, lp, u, m)[0])
            np.testing.assert_array_equal(got, want, err_msg=p)
