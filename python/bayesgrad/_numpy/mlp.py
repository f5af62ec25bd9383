"""NumPy twin of the mlp kernels (cpp/src/mlp.cpp)."""

__all__ = []
