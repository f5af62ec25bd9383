// Shared by the .cu files: launch checks, grid sizes, stream-ordered scratch.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels.hpp"

namespace bayesgrad {
namespace cuda {

constexpr int kThreads = 256;

inline cudaStream_t as_stream(Stream s) { return static_cast<cudaStream_t>(s); }

// Blocks for n threads in grid-stride loops (capped; the loops cover the rest).
inline unsigned grid_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > (int64_t{1} << 20) ? (int64_t{1} << 20) : b));
}

// After every launch: a launch error is a std::runtime_error naming the
// kernel. With BAYESGRAD_CUDA_SYNC=1 the stream is also synchronised, so an
// execution error is reported against the kernel that caused it (the
// verification run sets it; normal runs stay asynchronous).
void check_launch(const char* kernel, cudaStream_t s);

// A stream-ordered device buffer of n elements of T, freed on the same stream.
// Devices without memory pools (cudaMallocAsync not supported) get a plain
// cudaMalloc, freed after the stream has finished with it.
template <typename T>
struct Scratch {
  T* p = nullptr;
  cudaStream_t s;
  bool pooled = true;
  Scratch(size_t n, cudaStream_t stream, const char* what) : s(stream) {
    if (n == 0) return;
    cudaError_t e = cudaMallocAsync(reinterpret_cast<void**>(&p), n * sizeof(T), s);
    if (e == cudaErrorNotSupported) {
      cudaGetLastError();
      pooled = false;
      e = cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(T));
    }
    if (e != cudaSuccess) {
      cudaGetLastError();
      p = nullptr;
      throw std::runtime_error(std::string("bayesgrad._cuda: scratch for ") + what + ": " + cudaGetErrorString(e));
    }
  }
  ~Scratch() {
    if (!p) return;
    if (pooled) {
      cudaFreeAsync(p, s);
    } else {
      cudaStreamSynchronize(s);
      cudaFree(p);
    }
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

}  // namespace cuda
}  // namespace bayesgrad
