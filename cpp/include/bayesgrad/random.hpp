// Philox streams as arrays: raw blocks, uniforms and normals (docs/design.md "RNG").
// Element i of an output with element offset `offset` is element offset+i of the
// stream, whatever the thread count or instruction set.
#pragma once
#include <cstdint>
#include <string>

namespace bayesgrad {

// n blocks: ctr (n, 4), key (2) -> out (n, 4).
void philox_blocks(const uint32_t* ctr, int64_t n, const uint32_t key[2], uint32_t* out);

template <typename T>
void fill_uniform(T* out, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset);

template <typename T>
void fill_normal(T* out, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset);

// Elements [lo, hi) of the draw fill_normal(.., g1 - g0, seed, stream, g0)
// into out[0 .. hi - lo), the same values, on the calling thread (no pool):
// for kernels that draw chunk by chunk inside their own parallel pass.
template <typename T>
void normal_piece(T* out, uint64_t lo, uint64_t hi, uint64_t g0, uint64_t g1, uint64_t seed, uint64_t stream);

// The same for fill_uniform's draw.
template <typename T>
void uniform_piece(T* out, uint64_t lo, uint64_t hi, uint64_t g0, uint64_t g1, uint64_t seed, uint64_t stream);

// Which instruction set the kernels dispatch to now ("avx512", "avx2+fma" or
// "scalar"; kernels without an AVX-512 version take AVX2 under "avx512").
const char* random_simd();
// Cap the path of every kernel with SIMD versions ("avx512", "avx2", "scalar":
// the libm reference), for testing the paths against each other; returns the
// previous cap.
std::string simd_limit(const std::string& path);

}  // namespace bayesgrad
