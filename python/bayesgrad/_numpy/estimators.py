"""NumPy twin of the estimators kernels (cpp/src/estimators.cpp)."""

__all__ = []
