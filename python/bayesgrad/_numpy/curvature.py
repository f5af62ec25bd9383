"""NumPy twin of the curvature kernels (cpp/src/curvature.cpp)."""

__all__ = []
