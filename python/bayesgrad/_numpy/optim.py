"""NumPy twin of the optim kernels (cpp/src/optim.cpp)."""

__all__ = []
