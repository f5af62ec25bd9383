"""NumPy twin of the latent kernels (cpp/src/latent.cpp)."""

__all__ = []
