// Bulk Philox uniforms and Box-Muller normals (docs/design.md "RNG"): one
// thread per Philox block, whose elements come from samplers.hpp's
// uniform_element / normal_element, the functions of the CPU core's scalar
// path. Uniforms are therefore bit-identical to the CPU and the NumPy twin;
// normals agree within the device libm's ulps.
#include "bayesgrad/samplers.hpp"
#include "common.cuh"

namespace bayesgrad {
namespace cuda {

namespace {

enum Kind { kUniform = 0, kNormal = 1 };

template <typename T>
struct Vec16;  // 16 bytes: the elements of one block
template <>
struct Vec16<float> { using type = float4; };
template <>
struct Vec16<double> { using type = double2; };

// Blocks b0 .. b0+nb-1 cover the global elements [offset, last]. `aligned`:
// out is 16-byte aligned and offset a multiple of the block's element count,
// so every full block is one 16-byte store.
template <typename T, int K, bool aligned>
__global__ void fill_kernel(T* __restrict__ out, uint64_t nb, uint64_t b0, uint64_t offset, uint64_t last,
                            uint64_t seed, uint64_t stream) {
  constexpr int64_t E = samplers::per_block<T>();
  for (uint64_t t = blockIdx.x * uint64_t(blockDim.x) + threadIdx.x; t < nb; t += uint64_t(gridDim.x) * blockDim.x) {
    const uint64_t blk = b0 + t;
    uint32_t w[4];
    philox::stream_block(seed, stream, blk, w);
    T v[E];
#pragma unroll
    for (int64_t q = 0; q < E; ++q)
      v[q] = K == kUniform ? samplers::uniform_element<T>(w, q) : samplers::normal_element<T>(w, q);
    const uint64_t g0 = blk * E;  // no wrap: blk <= (2^64 - 1) / E
    if (aligned && g0 >= offset && g0 + (E - 1) <= last) {
      typename Vec16<T>::type p;
      if constexpr (E == 4) p = {v[0], v[1], v[2], v[3]};
      else p = {v[0], v[1]};
      *reinterpret_cast<typename Vec16<T>::type*>(out + (g0 - offset)) = p;
      continue;
    }
#pragma unroll
    for (int64_t q = 0; q < E; ++q) {
      const uint64_t g = g0 + q;
      if (g >= offset && g <= last) out[g - offset] = v[q];
    }
  }
}

template <typename T, int K>
void fill(T* out, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset, Stream s, const char* name) {
  if (n < 0) throw std::invalid_argument("n must be >= 0");
  if (n == 0) return;
  // The contract of every backend: element indices are 64-bit, never wrapped.
  if (offset > UINT64_MAX - static_cast<uint64_t>(n - 1))
    throw std::invalid_argument("offset: the draw's last element offset + n - 1 exceeds 2^64 - 1");
  constexpr uint64_t E = samplers::per_block<T>();
  const uint64_t last = offset + static_cast<uint64_t>(n - 1);
  const uint64_t b0 = offset / E, nb = last / E - b0 + 1;
  const bool aligned = reinterpret_cast<uintptr_t>(out) % 16 == 0 && offset % E == 0;
  const unsigned grid = grid_for(static_cast<int64_t>(nb));
  if (aligned)
    fill_kernel<T, K, true><<<grid, kThreads, 0, as_stream(s)>>>(out, nb, b0, offset, last, seed, stream);
  else
    fill_kernel<T, K, false><<<grid, kThreads, 0, as_stream(s)>>>(out, nb, b0, offset, last, seed, stream);
  check_launch(name, as_stream(s));
}

}  // namespace

template <typename T>
void fill_uniform(T* out, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset, Stream s) {
  fill<T, kUniform>(out, n, seed, stream, offset, s, "fill_uniform");
}
template <typename T>
void fill_normal(T* out, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset, Stream s) {
  fill<T, kNormal>(out, n, seed, stream, offset, s, "fill_normal");
}
template void fill_uniform<float>(float*, int64_t, uint64_t, uint64_t, uint64_t, Stream);
template void fill_uniform<double>(double*, int64_t, uint64_t, uint64_t, uint64_t, Stream);
template void fill_normal<float>(float*, int64_t, uint64_t, uint64_t, uint64_t, Stream);
template void fill_normal<double>(double*, int64_t, uint64_t, uint64_t, uint64_t, Stream);

}  // namespace cuda
}  // namespace bayesgrad
