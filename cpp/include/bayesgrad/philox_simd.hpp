// Philox4x32-10 on 8 blocks at once (AVX2) or 16 (AVX-512) and the uniforms of docs/design.md "RNG"
// on vectors of words. Bit-identical to philox::stream_block / u01_f32 /
// u01_f64 (integer arithmetic, exact conversions); see simd_math.hpp for the
// BG_AVX2 / use_avx2() conventions.
#pragma once
#include <cstdint>

#include "bayesgrad/philox.hpp"
#include "bayesgrad/simd_math.hpp"

namespace bayesgrad {
namespace simd {

#if BG_HAVE_X86
BG_AVX2 inline void mulhilo8(__m256i a, __m256i m, __m256i& hi, __m256i& lo) {
  const __m256i pe = _mm256_mul_epu32(a, m);
  const __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  lo = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
}

// 8 blocks of `stream` whose block numbers have low words blk_lo and high
// words blk_hi (lane b = block b); c[l] receives word l of each block.
BG_AVX2 inline void philox8(uint64_t seed, uint64_t stream, __m256i blk_lo, __m256i blk_hi, __m256i c[4]) {
  __m256i c0 = blk_lo, c1 = blk_hi;
  __m256i c2 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream)));
  __m256i c3 = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream >> 32)));
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(philox::kM0));
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(philox::kM1));
  for (int r = 0; r < 10; ++r) {
    if (r > 0) { k0 += philox::kW0; k1 += philox::kW1; }
    __m256i hi0, lo0, hi1, lo1;
    mulhilo8(c0, m0, hi0, lo0);
    mulhilo8(c2, m1, hi1, lo1);
    const __m256i n0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32(static_cast<int>(k0)));
    const __m256i n2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32(static_cast<int>(k1)));
    c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
  }
  c[0] = c0; c[1] = c1; c[2] = c2; c[3] = c3;
}

// 64-bit block numbers (lanes 0-3 in b03, lanes 4-7 in b47) as philox8's
// low and high counter words.
BG_AVX2 inline void split_counters(__m256i b03, __m256i b47, __m256i& blk_lo, __m256i& blk_hi) {
  // Low dwords to the lower half, high dwords to the upper half, per vector.
  const __m256i idx = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  const __m256i p0 = _mm256_permutevar8x32_epi32(b03, idx), p1 = _mm256_permutevar8x32_epi32(b47, idx);
  blk_lo = _mm256_permute2x128_si256(p0, p1, 0x20);
  blk_hi = _mm256_permute2x128_si256(p0, p1, 0x31);
}

// The 8 consecutive blocks blk0 .. blk0+7.
BG_AVX2 inline void philox8(uint64_t seed, uint64_t stream, uint64_t blk0, __m256i c[4]) {
  const __m256i b03 = _mm256_add_epi64(_mm256_set1_epi64x(static_cast<long long>(blk0)), _mm256_set_epi64x(3, 2, 1, 0));
  __m256i lo, hi;
  split_counters(b03, _mm256_add_epi64(b03, _mm256_set1_epi64x(4)), lo, hi);
  philox8(seed, stream, lo, hi, c);
}

// Block numbers of the per-element sub-streams (philox.hpp: element e, block
// k at e * kSubstreamBlocks + k) as philox8's counter words: lanes 0-3 are
// block k of elements e0 .. e0+3, lanes 4-7 block k+1 of the same elements.
BG_AVX2 inline void substream_counters(uint64_t e0, uint64_t k, __m256i& blk_lo, __m256i& blk_hi) {
  const long long s = static_cast<long long>(philox::kSubstreamBlocks);
  const __m256i b = _mm256_add_epi64(_mm256_set1_epi64x(static_cast<long long>(e0 * philox::kSubstreamBlocks + k)),
                                     _mm256_set_epi64x(3 * s, 2 * s, s, 0));
  split_counters(b, _mm256_add_epi64(b, _mm256_set1_epi64x(1)), blk_lo, blk_hi);
}

// u01_f32 of 8 words.
BG_AVX2 inline __m256 u01x8(__m256i w) {
  const __m256 x = _mm256_cvtepi32_ps(_mm256_srli_epi32(w, 9));
  return _mm256_fmadd_ps(x, _mm256_set1_ps(1.0f / 8388608.0f), _mm256_set1_ps(1.0f / 16777216.0f));
}

// u01_f64 of 4 (lo, hi) word pairs.
BG_AVX2 inline __m256d u01x4(__m128i lo, __m128i hi) {
  const __m256i l = _mm256_cvtepu32_epi64(lo);
  const __m256i h = _mm256_cvtepu32_epi64(hi);
  const __m256i m = _mm256_or_si256(_mm256_slli_epi64(h, 20), _mm256_srli_epi64(l, 12));
  // 1 + m 2^-52 in [1, 2) by bit assembly; subtracting 1 is exact.
  const __m256d x = _mm256_castsi256_pd(_mm256_or_si256(m, _mm256_set1_epi64x(0x3FF0000000000000ll)));
  return _mm256_add_pd(_mm256_sub_pd(x, _mm256_set1_pd(1.0)), _mm256_set1_pd(1.0 / 9007199254740992.0));
}
// ---------------------------------------------------------------- AVX-512
BG_AVX512 inline void mulhilo16(__m512i a, __m512i m, __m512i& hi, __m512i& lo) {
  const __m512i pe = _mm512_mul_epu32(a, m);
  const __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
  lo = _mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32));
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
}

// philox8 on 16 blocks (lane b = block b).
BG_AVX512 inline void philox16(uint64_t seed, uint64_t stream, __m512i blk_lo, __m512i blk_hi, __m512i c[4]) {
  __m512i c0 = blk_lo, c1 = blk_hi;
  __m512i c2 = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream)));
  __m512i c3 = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(stream >> 32)));
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(philox::kM0));
  const __m512i m1 = _mm512_set1_epi32(static_cast<int>(philox::kM1));
  for (int r = 0; r < 10; ++r) {
    if (r > 0) { k0 += philox::kW0; k1 += philox::kW1; }
    __m512i hi0, lo0, hi1, lo1;
    mulhilo16(c0, m0, hi0, lo0);
    mulhilo16(c2, m1, hi1, lo1);
    // a ^ b ^ key in one ternary-logic instruction (0x96: three-way xor).
    const __m512i n0 = _mm512_ternarylogic_epi32(hi1, c1, _mm512_set1_epi32(static_cast<int>(k0)), 0x96);
    const __m512i n2 = _mm512_ternarylogic_epi32(hi0, c3, _mm512_set1_epi32(static_cast<int>(k1)), 0x96);
    c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
  }
  c[0] = c0; c[1] = c1; c[2] = c2; c[3] = c3;
}

// 64-bit block numbers (lanes 0-7 in b07, lanes 8-15 in b815) as philox16's
// low and high counter words.
BG_AVX512 inline void split_counters16(__m512i b07, __m512i b815, __m512i& blk_lo, __m512i& blk_hi) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  blk_lo = _mm512_permutex2var_epi32(b07, even, b815);
  blk_hi = _mm512_permutex2var_epi32(b07, odd, b815);
}

// The 16 consecutive blocks blk0 .. blk0+15.
BG_AVX512 inline void philox16(uint64_t seed, uint64_t stream, uint64_t blk0, __m512i c[4]) {
  const __m512i b07 = _mm512_add_epi64(_mm512_set1_epi64(static_cast<long long>(blk0)),
                                       _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
  __m512i lo, hi;
  split_counters16(b07, _mm512_add_epi64(b07, _mm512_set1_epi64(8)), lo, hi);
  philox16(seed, stream, lo, hi, c);
}

// Sub-stream counters as in substream_counters: lanes 0-7 are block k of
// elements e0 .. e0+7, lanes 8-15 block k+1 of the same elements.
BG_AVX512 inline void substream_counters16(uint64_t e0, uint64_t k, __m512i& blk_lo, __m512i& blk_hi) {
  const __m512i b = _mm512_add_epi64(
      _mm512_set1_epi64(static_cast<long long>(e0 * philox::kSubstreamBlocks + k)),
      _mm512_mullo_epi64(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7),
                         _mm512_set1_epi64(static_cast<long long>(philox::kSubstreamBlocks))));
  split_counters16(b, _mm512_add_epi64(b, _mm512_set1_epi64(1)), blk_lo, blk_hi);
}

// u01_f32 of 16 words.
BG_AVX512 inline __m512 u01x16(__m512i w) {
  const __m512 x = _mm512_cvtepi32_ps(_mm512_srli_epi32(w, 9));
  return _mm512_fmadd_ps(x, _mm512_set1_ps(1.0f / 8388608.0f), _mm512_set1_ps(1.0f / 16777216.0f));
}

// u01_f64 of 8 (lo, hi) word pairs.
BG_AVX512 inline __m512d u01x8d(__m256i lo, __m256i hi) {
  const __m512i l = _mm512_cvtepu32_epi64(lo);
  const __m512i h = _mm512_cvtepu32_epi64(hi);
  const __m512i m = _mm512_or_si512(_mm512_slli_epi64(h, 20), _mm512_srli_epi64(l, 12));
  const __m512d x = _mm512_castsi512_pd(_mm512_or_si512(m, _mm512_set1_epi64(0x3FF0000000000000ll)));
  return _mm512_add_pd(_mm512_sub_pd(x, _mm512_set1_pd(1.0)), _mm512_set1_pd(1.0 / 9007199254740992.0));
}
#endif  // BG_HAVE_X86

}  // namespace simd
}  // namespace bayesgrad
