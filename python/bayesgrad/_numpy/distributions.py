"""NumPy twin of the distributions kernels (cpp/src/distributions.cpp)."""

__all__ = []
