// BG_HD marks the per-element functions that the C++ core and the CUDA kernels
// (cuda/src/*.cu) compile from the same source: Philox and the uniforms
// (philox.hpp), the samplers' transforms (samplers.hpp), activations and
// likelihood terms (elementwise.hpp), the Welford / Chan updates
// (estimators.hpp), the entropy accumulation (metrics.hpp) and the Adam update
// (optim.hpp). Under nvcc they are __host__ __device__; elsewhere plain inline,
// so the CPU build and its tests exercise exactly the code the GPU runs.
// Functions marked BG_HD call only <cmath> functions that CUDA provides in
// device code, and use ternaries instead of std::min / std::max (constexpr
// host functions in device code would need --expt-relaxed-constexpr).
#pragma once

#if defined(__CUDACC__)
#define BG_HD __host__ __device__ __forceinline__
#else
#define BG_HD inline
#endif
