"""Bad input of bg.nn.MLP's compute methods (the estimators' reliability audit; test_nn.py holds the
rest): each test failed before its fix. Every test runs on each backend (conftest.py)."""
import numpy as np
import pytest

from bayesgrad import _checks
from bayesgrad.nn import MLP


def test_outputs_that_do_not_fit_are_refused_before_allocating(monkeypatch):
    # S parameter vectors (or masks) on N rows: inputs of a few MiB asked np.empty for tens of GiB
    monkeypatch.setattr(_checks, "MAX_ALLOCATION_BYTES", 10 ** 6)
    m = MLP([1, 2, 1], "tanh")
    theta, X = np.zeros((400, m.n_params)), np.zeros((400, 1))  # (400, 400, 1) outputs: 1.3 MB
    with pytest.raises(ValueError, match=r"S=400 on X with N=400 rows: the \(S, N, K\)"):
        m.forward(theta, X)
    with pytest.raises(ValueError, match=r"S=400 on X with N=400 rows: the \(S, N, K\)"):
        m.forward(theta[:1], X, masks=np.ones((400, 2)))  # S from the masks
    with pytest.raises(ValueError, match=r"the \(S, N, d_in\) input gradients"):
        m.vjp(theta, X, np.zeros((400, 400, 1)), wrt_input=True)
    assert m.forward(theta[:2], X).shape == (2, 400, 1)


def test_flags_of_vjp_and_nll_must_be_booleans():
    # "no" counted as True: a (grad, grad_x) pair or a (nll, grad) pair came back
    m = MLP([2, 3, 1], "tanh")
    theta, X = m.init(seed=0), np.zeros((4, 2))
    with pytest.raises(TypeError, match="wrt_input must be True or False"):
        m.vjp(theta, X, np.ones((4, 1)), wrt_input="no")
    with pytest.raises(TypeError, match="grad must be True or False"):
        m.nll(theta, X, np.zeros(4), grad="no")
    assert np.shape(m.nll(theta, X, np.zeros(4), grad=np.bool_(False))) == ()
