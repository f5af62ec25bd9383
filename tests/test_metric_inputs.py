"""Bad arguments to the calibration, conformal and acquisition helpers: refused by name,
before any work (each case was accepted, or failed inside NumPy, before)."""
import math

import numpy as np
import pytest

import bayesgrad as bg

K = bg.calibration
U = bg.uncertainty
CF = bg.conformal
A = bg.acquisition

pytestmark = pytest.mark.single_backend  # argument checks in Python, the same on every backend


def _iso():
    return K.IsotonicRecalibration(np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.5, 1.0]))


@pytest.mark.parametrize("p, std, exc, match", [
    (np.nan, np.ones(2), ValueError, "^p must be finite"),                     # returned NaN
    (0.9, -np.ones(2), ValueError, "^std must be positive"),                   # negative std accepted
    (0.9, np.ones(3), ValueError, "^std must have the shape of mean"),         # NumPy's broadcast message
    (np.full(3, 0.9), np.ones(2), ValueError, "^p must be a scalar or have the shape of mean"),
])
def test_isotonic_quantile_refuses(p, std, exc, match):
    with pytest.raises(exc, match=match):
        _iso().quantile(p, np.zeros(2), std)


def test_isotonic_quantile_still_takes_a_scalar_or_per_point_p():
    q = _iso().quantile(np.array([0.5, 0.975]), np.zeros(2), np.full(2, 2.0))
    np.testing.assert_allclose(q, [0.0, 2.0 * 1.959963984540054])


def test_std_scaling_refuses_negative_std_and_scale():
    with pytest.raises(ValueError, match="^std must be non-negative"):
        K.StdScaling(2.0).transform(-np.ones(2))
    for bad in (-1.0, 0.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="^scale must be a positive finite number"):
            K.StdScaling(bad)
    with pytest.raises(TypeError, match="^scale"):
        K.StdScaling("2")


def test_fit_std_scaling_refuses_zero_residuals():
    # scale 0 would shrink every std to 0
    y = np.array([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="y equals mean at every point"):
        K.fit_std_scaling(y, y.copy(), np.ones(3))
    assert K.fit_std_scaling(y, y + np.array([0.0, 0.0, 3.0]), np.ones(3)).scale == pytest.approx(math.sqrt(3))


@pytest.mark.parametrize("t, exc", [(-1.0, ValueError), (0.0, ValueError), (math.inf, ValueError),
                                    (math.nan, ValueError), (None, TypeError), ("1", TypeError)])
def test_temperature_must_be_positive_and_finite(t, exc):
    with pytest.raises(exc, match="^temperature"):
        U.TemperatureScaling(t)


@pytest.mark.parametrize("bounds, exc", [((1,), TypeError), (None, TypeError), ((0.1, math.inf), ValueError),
                                         ("ab", TypeError), ((2.0, 1.0), ValueError)])
def test_fit_temperature_bounds_refused_by_name(bounds, exc):
    with pytest.raises(exc, match="^bounds"):
        U.fit_temperature(np.zeros((4, 2)), np.array([0, 1, 0, 1]), bounds=bounds)


def test_calibrate_classification_randomized_must_be_a_bool():
    p, y = np.full((30, 2), 0.5), np.zeros(30, int)
    with pytest.raises(TypeError, match="^randomized must be a bool"):
        CF.calibrate_classification(p, y, randomized="no")  # became True
    assert CF.calibrate_classification(p, y, randomized=np.False_).randomized is False


def test_predict_sets_refuses_another_number_of_classes():
    cal = CF.calibrate_classification(np.full((30, 2), 0.5), np.zeros(30, int))
    with pytest.raises(ValueError, match="^probs must have 2 classes"):
        cal.predict_sets(np.full((4, 3), 1 / 3))
    assert cal.predict_sets(np.full((4, 2), 0.5)).shape == (4, 2)


def test_coverage_tuple_must_be_an_interval():
    y = np.zeros(3)
    with pytest.raises(ValueError, match=r"^prediction as a tuple must be an interval \(lo, hi\)"):
        CF.coverage((y - 1, y + 1, y), y)


def test_stochastic_mode_is_checked():
    s = np.array([0.3, 0.2])
    with pytest.raises(ValueError, match="^mode must be one of"):
        A.stochastic_select(s, 1, "nope", 1.0, seed=0, stream=0)  # gave infinite keys
    with pytest.raises(ValueError, match="^mode must be one of"):
        A.stochastic_keys(s, "nope", 1.0, np.full(2, 0.5))


def test_score_columns_and_top_k_name_their_arguments():
    with pytest.raises(ValueError, match="^log_probs must have 3 dimension"):
        A.score_columns(np.log(np.full((4, 2), 0.5)), ["bald"])
    with pytest.raises(ValueError, match="^scores and idx must be 1-d of one length"):
        A.top_k(np.zeros(3), np.arange(4), 2)


@pytest.mark.parametrize("fit", ["fit_vector_scaling", "fit_matrix_scaling"])
def test_vector_and_matrix_scaling_refuse_another_number_of_classes(fit):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(40, 3))
    cal = getattr(K, fit)(z, rng.integers(0, 3, 40))
    with pytest.raises(ValueError, match="^logits must have 3 classes"):
        cal.transform(z[:, :2])
    assert cal.transform(z).shape == (40, 3)
