# Hand-written stubs of bayesgrad._core.metrics; its NumPy twin is bayesgrad._numpy.metrics
# (same names and signatures; tests/test_backend.py checks that all three agree).
import numpy as np
import numpy.typing as npt

def decompose(log_probs: npt.NDArray[np.floating], total: npt.NDArray[np.floating], aleatoric: npt.NDArray[np.floating], epistemic: npt.NDArray[np.floating]) -> float: ...
