# Hand-written stubs of bayesgrad._core.latent; its NumPy twin is bayesgrad._numpy.latent
# (same names and signatures; tests/test_backend.py checks that all three agree).
import numpy as np
import numpy.typing as npt

def latent_logp(theta: npt.NDArray[np.floating], x: npt.NDArray[np.floating], y: npt.NDArray[np.floating], eps: npt.NDArray[np.floating], logp: npt.NDArray[np.floating], grad: npt.NDArray[np.floating] | None = ...) -> None: ...
