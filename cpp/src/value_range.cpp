// value_range (value_range.hpp): per vector path, lanes of running minima and
// maxima and an unordered-compare mask for NaN, chunks of the array on the pool
// from 2^18 values (below, one thread: the pool's wake-up costs more); with kInt
// (integer_range) also a mask of values that differ from their rounding to an
// integer (NaN does, +-inf does not, as NumPy's rint(x) == x).
#include "bayesgrad/value_range.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "bayesgrad/parallel.hpp"
#include "bayesgrad/simd_math.hpp"

namespace bayesgrad {
namespace {

constexpr int64_t kChunk = int64_t(1) << 16;
constexpr int64_t kParallelFrom = int64_t(1) << 18;

struct Range {
  double lo, hi;
  bool nan, frac;  // frac: some value is not an integer (kInt only)
};

constexpr Range kEmpty{std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(), false,
                       false};

template <bool kInt, typename T>
Range range_scalar(const T* x, int64_t n) {
  Range r = kEmpty;
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    r.nan |= v != v;
    if (kInt) r.frac |= !(std::nearbyint(v) == v);
    r.lo = v < r.lo ? v : r.lo;
    r.hi = v > r.hi ? v : r.hi;
  }
  return r;
}

#if BG_HAVE_X86
constexpr int kNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;  // rint's rounding

// Four independent accumulators of each kind: min / max have a latency of a few cycles.
template <bool kInt>
BG_AVX512 Range range_avx512(const double* x, int64_t n) {
  __m512d lo[4], hi[4];
  __mmask8 nan = 0, frac = 0;
  for (int k = 0; k < 4; ++k) {
    lo[k] = _mm512_set1_pd(std::numeric_limits<double>::infinity());
    hi[k] = _mm512_set1_pd(-std::numeric_limits<double>::infinity());
  }
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 4; ++k) {
      const __m512d v = _mm512_loadu_pd(x + i + 8 * k);
      nan |= _mm512_cmp_pd_mask(v, v, _CMP_UNORD_Q);
      if (kInt) frac |= _mm512_cmp_pd_mask(_mm512_roundscale_pd(v, kNearest), v, _CMP_NEQ_UQ);
      lo[k] = _mm512_min_pd(lo[k], v);
      hi[k] = _mm512_max_pd(hi[k], v);
    }
  for (; i < n; i += 8) {
    const __mmask8 m = static_cast<__mmask8>(n - i >= 8 ? 0xFFu : (1u << (n - i)) - 1u);
    const __m512d v = _mm512_maskz_loadu_pd(m, x + i);
    nan |= _mm512_mask_cmp_pd_mask(m, v, v, _CMP_UNORD_Q);
    if (kInt) frac |= _mm512_mask_cmp_pd_mask(m, _mm512_roundscale_pd(v, kNearest), v, _CMP_NEQ_UQ);
    lo[0] = _mm512_mask_min_pd(lo[0], m, lo[0], v);
    hi[0] = _mm512_mask_max_pd(hi[0], m, hi[0], v);
  }
  const __m512d l = _mm512_min_pd(_mm512_min_pd(lo[0], lo[1]), _mm512_min_pd(lo[2], lo[3]));
  const __m512d h = _mm512_max_pd(_mm512_max_pd(hi[0], hi[1]), _mm512_max_pd(hi[2], hi[3]));
  return {_mm512_reduce_min_pd(l), _mm512_reduce_max_pd(h), nan != 0, frac != 0};
}
template <bool kInt>
BG_AVX512 Range range_avx512(const float* x, int64_t n) {
  __m512 lo[4], hi[4];
  __mmask16 nan = 0, frac = 0;
  for (int k = 0; k < 4; ++k) {
    lo[k] = _mm512_set1_ps(std::numeric_limits<float>::infinity());
    hi[k] = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  }
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    for (int k = 0; k < 4; ++k) {
      const __m512 v = _mm512_loadu_ps(x + i + 16 * k);
      nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
      if (kInt) frac |= _mm512_cmp_ps_mask(_mm512_roundscale_ps(v, kNearest), v, _CMP_NEQ_UQ);
      lo[k] = _mm512_min_ps(lo[k], v);
      hi[k] = _mm512_max_ps(hi[k], v);
    }
  for (; i < n; i += 16) {
    const __mmask16 m = static_cast<__mmask16>(n - i >= 16 ? 0xFFFFu : (1u << (n - i)) - 1u);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    nan |= _mm512_mask_cmp_ps_mask(m, v, v, _CMP_UNORD_Q);
    if (kInt) frac |= _mm512_mask_cmp_ps_mask(m, _mm512_roundscale_ps(v, kNearest), v, _CMP_NEQ_UQ);
    lo[0] = _mm512_mask_min_ps(lo[0], m, lo[0], v);
    hi[0] = _mm512_mask_max_ps(hi[0], m, hi[0], v);
  }
  const __m512 l = _mm512_min_ps(_mm512_min_ps(lo[0], lo[1]), _mm512_min_ps(lo[2], lo[3]));
  const __m512 h = _mm512_max_ps(_mm512_max_ps(hi[0], hi[1]), _mm512_max_ps(hi[2], hi[3]));
  return {_mm512_reduce_min_ps(l), _mm512_reduce_max_ps(h), nan != 0, frac != 0};
}

// AVX2: whole vectors, the tail by the scalar loop.
template <bool kInt>
BG_AVX2 Range range_avx2(const double* x, int64_t n) {
  __m256d lo[4], hi[4], nan = _mm256_setzero_pd(), frac = _mm256_setzero_pd();
  for (int k = 0; k < 4; ++k) {
    lo[k] = _mm256_set1_pd(std::numeric_limits<double>::infinity());
    hi[k] = _mm256_set1_pd(-std::numeric_limits<double>::infinity());
  }
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 4; ++k) {
      const __m256d v = _mm256_loadu_pd(x + i + 4 * k);
      nan = _mm256_or_pd(nan, _mm256_cmp_pd(v, v, _CMP_UNORD_Q));
      if (kInt) frac = _mm256_or_pd(frac, _mm256_cmp_pd(_mm256_round_pd(v, kNearest), v, _CMP_NEQ_UQ));
      lo[k] = _mm256_min_pd(lo[k], v);
      hi[k] = _mm256_max_pd(hi[k], v);
    }
  alignas(32) double a[4], b[4];
  _mm256_store_pd(a, _mm256_min_pd(_mm256_min_pd(lo[0], lo[1]), _mm256_min_pd(lo[2], lo[3])));
  _mm256_store_pd(b, _mm256_max_pd(_mm256_max_pd(hi[0], hi[1]), _mm256_max_pd(hi[2], hi[3])));
  Range r = range_scalar<kInt>(x + i, n - i);
  r.nan |= _mm256_movemask_pd(nan) != 0;
  r.frac |= _mm256_movemask_pd(frac) != 0;
  for (int k = 0; k < 4; ++k) {
    r.lo = std::min(r.lo, a[k]);
    r.hi = std::max(r.hi, b[k]);
  }
  return r;
}
template <bool kInt>
BG_AVX2 Range range_avx2(const float* x, int64_t n) {
  __m256 lo[4], hi[4], nan = _mm256_setzero_ps(), frac = _mm256_setzero_ps();
  for (int k = 0; k < 4; ++k) {
    lo[k] = _mm256_set1_ps(std::numeric_limits<float>::infinity());
    hi[k] = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  }
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 4; ++k) {
      const __m256 v = _mm256_loadu_ps(x + i + 8 * k);
      nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
      if (kInt) frac = _mm256_or_ps(frac, _mm256_cmp_ps(_mm256_round_ps(v, kNearest), v, _CMP_NEQ_UQ));
      lo[k] = _mm256_min_ps(lo[k], v);
      hi[k] = _mm256_max_ps(hi[k], v);
    }
  alignas(32) float a[8], b[8];
  _mm256_store_ps(a, _mm256_min_ps(_mm256_min_ps(lo[0], lo[1]), _mm256_min_ps(lo[2], lo[3])));
  _mm256_store_ps(b, _mm256_max_ps(_mm256_max_ps(hi[0], hi[1]), _mm256_max_ps(hi[2], hi[3])));
  Range r = range_scalar<kInt>(x + i, n - i);
  r.nan |= _mm256_movemask_ps(nan) != 0;
  r.frac |= _mm256_movemask_ps(frac) != 0;
  for (int k = 0; k < 8; ++k) {
    r.lo = std::min(r.lo, static_cast<double>(a[k]));
    r.hi = std::max(r.hi, static_cast<double>(b[k]));
  }
  return r;
}
#endif

template <bool kInt, typename T>
Range range_block(const T* x, int64_t n) {
#if BG_HAVE_X86
  if (simd::use_avx512()) return range_avx512<kInt>(x, n);
  if (simd::use_avx2()) return range_avx2<kInt>(x, n);
#endif
  return range_scalar<kInt>(x, n);
}

template <bool kInt, typename T>
Range whole_range(const T* x, int64_t n) {
  if (n < kParallelFrom) return range_block<kInt>(x, n);
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<Range> part(static_cast<size_t>(chunks));
  parallel_chunks(chunks, [&](int64_t c) {
    const int64_t i0 = c * kChunk;
    part[static_cast<size_t>(c)] = range_block<kInt>(x + i0, std::min(kChunk, n - i0));
  });
  Range r = kEmpty;
  for (const Range& p : part) {
    r.nan |= p.nan;
    r.frac |= p.frac;
    r.lo = std::min(r.lo, p.lo);
    r.hi = std::max(r.hi, p.hi);
  }
  return r;
}

template <typename T>
void put(const Range& r, T* lo, T* hi) {
  const double q = std::numeric_limits<double>::quiet_NaN();
  *lo = static_cast<T>(r.nan ? q : r.lo);
  *hi = static_cast<T>(r.nan ? q : r.hi);
}

}  // namespace

template <typename T>
void value_range(const T* x, int64_t n, T* lo, T* hi) {
  put(whole_range<false>(x, n), lo, hi);
}

template <typename T>
bool integer_range(const T* x, int64_t n, T* lo, T* hi) {
  const Range r = whole_range<true>(x, n);
  put(r, lo, hi);
  return !r.frac;
}

template void value_range<float>(const float*, int64_t, float*, float*);
template void value_range<double>(const double*, int64_t, double*, double*);
template bool integer_range<float>(const float*, int64_t, float*, float*);
template bool integer_range<double>(const double*, int64_t, double*, double*);

}  // namespace bayesgrad
