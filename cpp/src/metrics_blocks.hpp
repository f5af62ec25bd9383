// The block passes of metrics.cpp that log_softmax.cpp shares: the vector exp
// of a contiguous block (every path gives the same values), the row sums of a
// block of rows, and the rows of C values that make one L1-sized block.
#pragma once
#include <cstdint>

#include "bayesgrad/simd_math.hpp"

namespace bayesgrad {
namespace metrics_blocks {

template <typename T>
void exp_block(const T* x, T* e, int64_t L);
template <typename T>
void row_sums(const T* e, int64_t rows, int64_t C, T* out);
int64_t rows_per_block(int64_t C);

#if BG_HAVE_X86
BG_AVX2 inline __m256i tail_mask8(int64_t n) {  // lanes < n of 8 (32-bit)
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
BG_AVX2 inline __m256i tail_mask4(int64_t n) {  // lanes < n of 4 (64-bit)
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}
#endif

}  // namespace metrics_blocks
}  // namespace bayesgrad
