"""MC dropout: consistent masks, Gal's weight decay, native/NumPy parity of
the dropout epoch, prediction and persistence."""
import numpy as np
import pytest

import bayesgrad as bg
from bayesgrad import _backend
from bayesgrad.dropout import MCDropout
from bayesgrad.nn import MLP


def test_masks_consistent_across_pool_chunks(rng):
    m = MLP([3, 16, 16, 4], "relu")
    X = rng.normal(size=(60, 3))
    y = rng.integers(0, 4, 60)
    d = MCDropout(m, p=0.3, likelihood="categorical").fit(X, y, epochs=2, verbose=0)
    whole = d.predict(X, n_samples=10, seed=5).log_probs
    parts = np.concatenate([d.predict(X[:25], n_samples=10, seed=5).log_probs,
                            d.predict(X[25:], n_samples=10, seed=5).log_probs], axis=1)
    np.testing.assert_allclose(parts, whole, rtol=1e-12, atol=1e-12)
    # each pass is one fixed network: same as a forward pass with that mask alone
    masks = d.sample_masks(10, seed=5)
    one = m.forward(d.theta_, X[:7], masks=masks[3:4])
    np.testing.assert_allclose(whole[3, :7], one - np.log(np.exp(one).sum(-1, keepdims=True)), rtol=1e-10)


def test_mask_values_and_rate():
    m = MLP([2, 500, 500, 1], "relu")
    d = MCDropout(m, p=0.2)
    masks = d.sample_masks(20, seed=1, dtype=np.float64)
    assert set(np.unique(masks)) == {0.0, 1.25}
    n = masks.size
    frac = np.mean(masks == 0)
    # binomial(20000, 0.2): 5 sd = 0.0141, false alarm < 1e-6
    assert abs(frac - 0.2) < 5 * np.sqrt(0.2 * 0.8 / n)
    assert not np.array_equal(masks, d.sample_masks(20, seed=1, stream=1, dtype=np.float64))


def test_gal_weight_decay():
    m = MLP([3, 4, 2], "tanh")
    d = MCDropout(m, p=0.25, length_scale=2.0)
    prec = d.prior_precision()
    (w0, b0), (w1, b1) = m.offsets
    np.testing.assert_allclose(prec[w0:b0], 4.0)          # inputs are not dropped
    np.testing.assert_allclose(prec[b0:w1], 4.0)
    np.testing.assert_allclose(prec[w1:b1], 4.0 * 0.75)   # l^2 (1 - p) after a dropout layer
    np.testing.assert_allclose(prec[b1:], 4.0)
    np.testing.assert_allclose(MCDropout(m, p=0.25, weight_decay=0.1).prior_precision(), 0.1)


@pytest.mark.single_backend
@pytest.mark.skipif(not _backend.native_available(), reason="needs the native core")
def test_dropout_epoch_native_matches_numpy(rng):
    m = MLP([2, 8, 8, 1], "tanh")
    X = rng.normal(size=(30, 2))
    y = X[:, 0] - X[:, 1]
    out = {}
    for b in ("cpu", "numpy"):
        with bg.use_backend(b):
            d = MCDropout(m, p=0.3, lr=1e-2, batch_size=8).fit(X, y, epochs=3, seed=2, verbose=0)
            out[b] = (d.theta_, d.noise_, d.predict(X[:4], n_samples=5).samples_mean)
    for a, c in zip(out["cpu"], out["numpy"]):
        np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-11)


def test_dropout_training_masks_change_the_fit(rng):
    # p = 0 is plain MAP with Gal's weight decay: same parameters as train_map
    m = MLP([2, 8, 1], "tanh")
    X = rng.normal(size=(40, 2))
    y = np.sin(X[:, 0])
    d0 = MCDropout(m, p=0.0, tau=4.0, length_scale=0.5, lr=1e-2).fit(X, y, epochs=5, verbose=0)
    th = bg.nn.train_map(m, X, y, epochs=5, lr=1e-2, noise=0.5, weight_decay=d0.prior_precision())
    np.testing.assert_allclose(d0.theta_, th, rtol=1e-12)
    d1 = MCDropout(m, p=0.5, tau=4.0, length_scale=0.5, lr=1e-2).fit(X, y, epochs=5, verbose=0)
    assert not np.allclose(d1.theta_, th)


def test_classification_accuracy_close_to_map(rng):
    X = rng.normal(size=(300, 2))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    m = MLP([2, 32, 2], "relu")
    th = bg.nn.train_map(m, X, y, "categorical", epochs=40, lr=1e-2)
    acc_map = (m.forward(th, X).argmax(1) == y).mean()
    d = MCDropout(m, p=0.1, likelihood="categorical", lr=1e-2).fit(X, y, epochs=40, verbose=0)
    acc_d = (d.predict(X, n_samples=20).probs.argmax(1) == y).mean()
    q = bg.vi.MFVI(m, "categorical", lr=1e-2).fit(X, y, epochs=40, verbose=0)
    acc_q = (q.predict(X, n_samples=20).probs.argmax(1) == y).mean()
    assert acc_map > 0.95
    assert acc_d >= acc_map - 0.02 and acc_q >= acc_map - 0.02


def test_save_load_and_bad_input(rng, tmp_path):
    m = MLP([2, 4, 1])
    X = rng.normal(size=(10, 2))
    d = MCDropout(m, p=0.2).fit(X, X[:, 0], epochs=1, verbose=0)
    d.save(tmp_path / "d.npz")
    d2 = MCDropout.load(tmp_path / "d.npz")
    np.testing.assert_array_equal(d2.theta_, d.theta_)
    np.testing.assert_allclose(d2.predict(X, 5).mean, d.predict(X, 5).mean)
    with pytest.raises(ValueError):
        bg.vi.MFVI.load(tmp_path / "d.npz")  # a dropout model is not an MFVI model
    for p in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="p must"):
            MCDropout(m, p=p)
    with pytest.raises(ValueError, match="hidden"):
        MCDropout(MLP([2, 1]), p=0.1)
    with pytest.raises(ValueError, match="tau"):
        MCDropout(m, tau=0.0)
    with pytest.raises(ValueError, match="masks"):
        d.predict(X, masks=np.ones((3, 5)))
    with pytest.raises(ValueError, match="finite"):
        d.fit(X, np.full(10, np.inf), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="theta0 must have shape"):  # it said theta
        d.fit(X, X[:, 0], epochs=1, theta0=np.zeros(3), verbose=0)
    with pytest.raises(ValueError, match="mu0 must have shape"):
        bg.vi.MFVI(m).fit(X, X[:, 0], epochs=1, mu0=np.zeros(3), verbose=0)
    for bad in (0, -1):  # stopped silently after one epoch
        with pytest.raises(ValueError, match="patience"):
            d.fit(X, X[:, 0], epochs=3, validation=0.2, patience=bad, verbose=0)
