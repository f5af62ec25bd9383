import math

import numpy as np
import pytest
from scipy import special, stats

import bayesgrad as bg

D = bg.ddu


def blobs(rng, n=300, d=3):
    means = np.array([[0.0] * d, [4.0] + [0.0] * (d - 1), [0.0, 4.0] + [0.0] * (d - 2)])
    y = np.repeat(np.arange(3), n // 3)
    A = rng.normal(size=(3, d, d)) * 0.3 + np.eye(d)
    f = means[y] + np.einsum("nij,nj->ni", A[y], rng.normal(size=(len(y), d)))
    return f, y


@pytest.mark.single_backend
def test_density_matches_scipy_mixture(rng):
    f, y = blobs(rng)
    m = D.DDU().fit(f, y)
    q = rng.normal(size=(20, 3)) * 3
    ref = np.zeros((20, 3))
    for c in range(3):
        xc = f[y == c]
        ref[:, c] = stats.multivariate_normal(xc.mean(0), np.cov(xc.T)).logpdf(q)
    np.testing.assert_allclose(m.class_log_density(q), ref, rtol=1e-10)
    np.testing.assert_allclose(m.log_density(q), special.logsumexp(ref + math.log(1 / 3), axis=1), rtol=1e-10)
    u = D.DDU(priors="uniform").fit(f, y[::-1])  # counts still equal -> same priors
    np.testing.assert_allclose(u.log_priors_, np.log(np.full(3, 1 / 3)))
    assert np.all(m.jitter_ == 0)


@pytest.mark.single_backend
def test_jitter_ladder_on_singular_covariance(rng):
    f, y = blobs(rng, d=3)
    f[:, 2] = f[:, 0]              # rank-deficient features: Cholesky fails without jitter
    m = D.DDU().fit(f, y)
    assert np.all(m.jitter_ > 0)
    assert np.all(np.isfinite(m.log_density(f)))
    # a class with a single point: zero covariance, made positive definite by the ladder
    f2 = np.vstack([f, [[9.0, 9.0, 9.0]]])
    y2 = np.r_[y, 3]
    m2 = D.DDU().fit(f2, y2)
    assert m2.jitter_[3] > 0 and np.isfinite(m2.log_density(f2[-1:]))[0]
    with pytest.raises(ValueError, match="positive definite"):
        D.DDU(jitters=[0.0]).fit(f, y)


@pytest.mark.single_backend
def test_quantile_and_ood(rng):
    fa, ya = blobs(rng, n=750)
    test = np.arange(750) % 5 == 0
    f, y, near = fa[~test], ya[~test], fa[test]
    m = D.DDU().fit(f, y)
    qt = m.quantile(f)
    # ECDF at the training points themselves: k/N for the k-th smallest
    np.testing.assert_allclose(np.sort(qt), np.arange(1, 601) / 600)
    far = rng.normal(size=(50, 3)) + 30.0
    assert np.all(m.quantile(far) == 0)
    # held-out draws of the same distribution: quantiles ~ Uniform(0, 1); a KS
    # test rejects at p < 1e-4 with probability about 1e-4 (approximately: the
    # density is estimated from the other draws)
    assert stats.kstest(m.quantile(near), "uniform").pvalue > 1e-4
    auroc = bg.uncertainty.auroc(-np.r_[m.log_density(near), m.log_density(far)],
                                 np.r_[np.zeros(150, bool), np.ones(50, bool)])
    assert auroc == 1.0


@pytest.mark.single_backend
def test_predict_pairs_probs_with_density(rng):
    f, y = blobs(rng)
    m = D.DDU().fit(f.astype(np.float32), y)
    probs = special.softmax(rng.normal(size=(len(f), 3)), axis=1).astype(np.float32)
    pr = m.predict(f.astype(np.float32), probs)
    np.testing.assert_array_equal(pr.probs, probs)
    assert pr.log_density.dtype == np.float32
    np.testing.assert_allclose(pr.entropy, -np.sum(probs * np.log(probs), 1), rtol=1e-5)
    assert pr.quantile.shape == (len(f),)


@pytest.mark.single_backend
def test_ddu_bad_input(rng):
    f, y = blobs(rng)
    with pytest.raises(RuntimeError, match="not fitted"):
        D.DDU().log_density(f)
    with pytest.raises(ValueError, match="shape"):
        D.DDU().fit(f, y[:-1])
    with pytest.raises(TypeError, match="integer"):
        D.DDU().fit(f, y.astype(float))
    with pytest.raises(ValueError, match="at least one"):
        D.DDU().fit(f, y, n_classes=4)
    with pytest.raises(ValueError, match="finite"):
        D.DDU().fit(np.where(f > 3, np.nan, f), y)
    with pytest.raises(ValueError, match="priors"):
        D.DDU(priors="flat")
    with pytest.raises(ValueError, match="jitters"):
        D.DDU(jitters=[-1.0])
    m = D.DDU().fit(f, y)
    with pytest.raises(ValueError, match="columns"):
        m.log_density(f[:, :2])
    with pytest.raises(ValueError, match="sum to one"):
        m.predict(f, np.full((len(f), 3), 0.5))
    with pytest.raises(ValueError, match="must match"):
        m.predict(f[:5], np.full((4, 3), 1 / 3))


@pytest.mark.single_backend
def test_feature_scale_and_far_points(rng):
    """Features near 1e200 overflowed the covariance ('not positive definite for any
    jitter'), features near 1e-200 underflowed it (every point had the same density), and
    a point whose density underflows to -inf made predict refuse its own log_density."""
    f, y = blobs(rng)
    q = rng.normal(size=(20, 3)) * 3
    m = D.DDU().fit(f, y)
    for k in (200, -200):
        s = 10.0 ** k
        ms = D.DDU().fit(f * s, y)
        np.testing.assert_allclose(ms.log_density(q * s), m.log_density(q) - 3 * math.log(s), rtol=1e-12)
        np.testing.assert_array_equal(ms.quantile(q * s), m.quantile(q))
        np.testing.assert_allclose(ms.means_, m.means_ * s, rtol=1e-12)
    far = m.predict(f[:2] + 1e160, np.full((2, 3), 1 / 3))
    assert np.all(far.log_density == -np.inf) and np.all(far.quantile == 0)
    with pytest.raises(ValueError, match="log_density must not be nan"):
        m.quantile(log_density=[np.nan])
    m2 = D.DDU().fit(f * 2.0 ** 40, y)  # a power of two scales exactly: the same bits
    np.testing.assert_array_equal(m2.chol_, m.chol_ * 2.0 ** 40)
