"""NumPy twin of the metrics kernels (cpp/src/metrics.cpp)."""

__all__ = []
