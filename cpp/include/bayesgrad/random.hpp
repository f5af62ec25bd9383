// Philox streams as arrays: raw blocks, uniforms and normals (docs/design.md "RNG").
// Element i of an output with element offset `offset` is element offset+i of the
// stream, whatever the thread count or instruction set.
#pragma once
#include <cstdint>

namespace bayesgrad {

// n blocks: ctr (n, 4), key (2) -> out (n, 4).
void philox_blocks(const uint32_t* ctr, int64_t n, const uint32_t key[2], uint32_t* out);

template <typename T>
void fill_uniform(T* out, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset);

template <typename T>
void fill_normal(T* out, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset);

// Which instruction set the bulk samplers dispatched to ("avx2+fma" or "scalar").
const char* random_simd();
// Force the scalar path of every kernel that has an AVX2 one (testing the AVX2
// paths against it); returns the previous value.
bool random_force_scalar(bool on);

}  // namespace bayesgrad
