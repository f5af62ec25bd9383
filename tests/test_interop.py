"""PyTorch interop (bg.nn.MLP.from_torch / to_torch). PyTorch is optional:
without it only the error path is tested."""
import numpy as np
import pytest

from bayesgrad.nn import MLP

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("act_cls,name", [(torch.nn.ReLU, "relu"), (torch.nn.Tanh, "tanh"),
                                          (torch.nn.Sigmoid, "sigmoid"), (torch.nn.GELU, "gelu")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip_outputs_agree(act_cls, name, dtype):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), act_cls(), torch.nn.Dropout(0.1), torch.nn.Linear(7, 6),
                              act_cls(), torch.nn.Linear(6, 3)).to(dtype).eval()
    mlp, theta = MLP.from_torch(net)
    assert mlp.sizes == (5, 7, 6, 3) and mlp.activation == name and theta.shape == (mlp.n_params,)
    want = torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy()
    np.testing.assert_array_equal(theta, want)  # PyTorch's own order, bit for bit
    X = np.random.default_rng(1).normal(size=(11, 5)).astype(theta.dtype)
    with torch.no_grad():
        ref = net(torch.from_numpy(X)).numpy()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(mlp.forward(theta, X), ref, rtol=tol, atol=tol)
    back = mlp.to_torch(theta)
    with torch.no_grad():
        np.testing.assert_array_equal(back(torch.from_numpy(X)).numpy(), ref)


def test_unsupported_layers_are_named():
    with pytest.raises(ValueError, match="layer 1 \\(Softplus\\)"):
        MLP.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Softplus(), torch.nn.Linear(3, 1)))
    with pytest.raises(ValueError, match="ends with an activation"):
        MLP.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU()))
    with pytest.raises(ValueError, match="one activation"):
        MLP.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 3),
                                           torch.nn.Tanh(), torch.nn.Linear(3, 1)))
    with pytest.raises(ValueError, match="tanh approximation"):
        MLP.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.GELU("tanh"), torch.nn.Linear(3, 1)))
    with pytest.raises(TypeError, match="Sequential"):
        MLP.from_torch(torch.nn.ReLU())


def test_linear_without_bias_gets_zero_bias():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2, bias=False))
    mlp, theta = MLP.from_torch(net)
    np.testing.assert_array_equal(theta[-2:], 0)
    X = np.ones((4, 3), np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(mlp.forward(theta, X), net(torch.from_numpy(X)).numpy(), rtol=1e-6)
