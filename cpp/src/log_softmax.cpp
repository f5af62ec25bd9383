// log_softmax over rows of C values (cpp/include/bayesgrad/metrics.hpp), with
// the vector exp and row sums of metrics.cpp and its own row maxima and logs.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "bayesgrad/metrics.hpp"
#include "bayesgrad/parallel.hpp"
#include "bayesgrad/simd_math.hpp"
#include "metrics_blocks.hpp"

namespace bayesgrad {

namespace {

using metrics_blocks::exp_block;
using metrics_blocks::row_sums;
using metrics_blocks::rows_per_block;

#if BG_HAVE_X86
using metrics_blocks::tail_mask4;
using metrics_blocks::tail_mask8;

BG_AVX2 inline float hmax8(__m256 a) {
  __m128 v = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  v = _mm_max_ps(v, _mm_movehl_ps(v, v));
  return _mm_cvtss_f32(_mm_max_ss(v, _mm_movehdup_ps(v)));
}
BG_AVX2 inline double hmax4(__m256d a) {
  __m128d v = _mm_max_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
  return _mm_cvtsd_f64(_mm_max_sd(v, _mm_unpackhi_pd(v, v)));
}
BG_AVX2 void row_max8_f32(const float* x, int64_t rows, int64_t C, float* m, char* nan) {
  const int64_t full = C / 8;
  const __m256i tail = tail_mask8(C % 8);
  const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = x + r * C;
    const __m256 t = _mm256_maskload_ps(p + 8 * full, tail);
    __m256 bad = _mm256_cmp_ps(t, t, _CMP_UNORD_Q);
    __m256 acc = _mm256_blendv_ps(ninf, t, _mm256_castsi256_ps(tail));
    for (int64_t k = 0; k < full; ++k) {
      const __m256 v = _mm256_loadu_ps(p + 8 * k);
      bad = _mm256_or_ps(bad, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
      acc = _mm256_max_ps(acc, v);
    }
    m[r] = hmax8(acc);
    nan[r] = static_cast<char>(_mm256_movemask_ps(bad) != 0);
  }
}
BG_AVX2 void row_max4_f64(const double* x, int64_t rows, int64_t C, double* m, char* nan) {
  const int64_t full = C / 4;
  const __m256i tail = tail_mask4(C % 4);
  const __m256d ninf = _mm256_set1_pd(-std::numeric_limits<double>::infinity());
  for (int64_t r = 0; r < rows; ++r) {
    const double* p = x + r * C;
    const __m256d t = _mm256_maskload_pd(p + 4 * full, tail);
    __m256d bad = _mm256_cmp_pd(t, t, _CMP_UNORD_Q);
    __m256d acc = _mm256_blendv_pd(ninf, t, _mm256_castsi256_pd(tail));
    for (int64_t k = 0; k < full; ++k) {
      const __m256d v = _mm256_loadu_pd(p + 4 * k);
      bad = _mm256_or_pd(bad, _mm256_cmp_pd(v, v, _CMP_UNORD_Q));
      acc = _mm256_max_pd(acc, v);
    }
    m[r] = hmax4(acc);
    nan[r] = static_cast<char>(_mm256_movemask_pd(bad) != 0);
  }
}
BG_AVX512 void row_max16_f32(const float* x, int64_t rows, int64_t C, float* m, char* nan) {
  const int64_t full = C / 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (C % 16)) - 1u);
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = x + r * C;
    __m512 acc = _mm512_mask_loadu_ps(ninf, tail, p + 16 * full);
    __mmask16 bad = _mm512_cmp_ps_mask(acc, acc, _CMP_UNORD_Q);
    for (int64_t k = 0; k < full; ++k) {
      const __m512 v = _mm512_loadu_ps(p + 16 * k);
      bad |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
      acc = _mm512_max_ps(acc, v);
    }
    m[r] = _mm512_reduce_max_ps(acc);
    nan[r] = static_cast<char>(bad != 0);
  }
}
BG_AVX512 void row_max8_f64(const double* x, int64_t rows, int64_t C, double* m, char* nan) {
  const int64_t full = C / 8;
  const __mmask8 tail = static_cast<__mmask8>((1u << (C % 8)) - 1u);
  const __m512d ninf = _mm512_set1_pd(-std::numeric_limits<double>::infinity());
  for (int64_t r = 0; r < rows; ++r) {
    const double* p = x + r * C;
    __m512d acc = _mm512_mask_loadu_pd(ninf, tail, p + 8 * full);
    __mmask8 bad = _mm512_cmp_pd_mask(acc, acc, _CMP_UNORD_Q);
    for (int64_t k = 0; k < full; ++k) {
      const __m512d v = _mm512_loadu_pd(p + 8 * k);
      bad |= _mm512_cmp_pd_mask(v, v, _CMP_UNORD_Q);
      acc = _mm512_max_pd(acc, v);
    }
    m[r] = _mm512_reduce_max_pd(acc);
    nan[r] = static_cast<char>(bad != 0);
  }
}
// ln of n positive, normal values in place (the row sums of log_softmax, in
// [1, C]), the tail on a padded copy as in exp_block.
BG_AVX2 void log_block_f32(float* v, int64_t n) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(v + j, simd::logx8(_mm256_loadu_ps(v + j)));
  if (j < n) {
    alignas(32) float buf[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    std::copy(v + j, v + n, buf);
    _mm256_store_ps(buf, simd::logx8(_mm256_load_ps(buf)));
    std::copy(buf, buf + (n - j), v + j);
  }
}
BG_AVX2 void log_block_f64(double* v, int64_t n) {
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) _mm256_storeu_pd(v + j, simd::logx4(_mm256_loadu_pd(v + j)));
  if (j < n) {
    alignas(32) double buf[4] = {1, 1, 1, 1};
    std::copy(v + j, v + n, buf);
    _mm256_store_pd(buf, simd::logx4(_mm256_load_pd(buf)));
    std::copy(buf, buf + (n - j), v + j);
  }
}
BG_AVX512 void log_block16_f32(float* v, int64_t n) {
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) _mm512_storeu_ps(v + j, simd::logx16(_mm512_loadu_ps(v + j)));
  log_block_f32(v + j, n - j);
}
BG_AVX512 void log_block16_f64(double* v, int64_t n) {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) _mm512_storeu_pd(v + j, simd::logx8d(_mm512_loadu_pd(v + j)));
  log_block_f64(v + j, n - j);
}
#endif

// m[r] = max_c x[r C + c] (NaNs ignored), nan[r] = whether the row holds a NaN.
template <typename T>
void row_max(const T* x, int64_t rows, int64_t C, T* m, char* nan) {
#if BG_HAVE_X86
  if (simd::use_avx512()) {
    if constexpr (sizeof(T) == 4) row_max16_f32(x, rows, C, m, nan);
    else row_max8_f64(x, rows, C, m, nan);
    return;
  }
  if (simd::use_avx2()) {
    if constexpr (sizeof(T) == 4) row_max8_f32(x, rows, C, m, nan);
    else row_max4_f64(x, rows, C, m, nan);
    return;
  }
#endif
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = x + r * C;
    T mx = -std::numeric_limits<T>::infinity();
    bool bad = false;
    for (int64_t c = 0; c < C; ++c) {
      bad |= row[c] != row[c];
      mx = row[c] > mx ? row[c] : mx;
    }
    m[r] = mx;
    nan[r] = static_cast<char>(bad);
  }
}

// v[j] = ln v[j] for n positive normal values.
template <typename T>
void log_block(T* v, int64_t n) {
#if BG_HAVE_X86
  if (simd::use_avx512()) {
    if constexpr (sizeof(T) == 4) log_block16_f32(v, n);
    else log_block16_f64(v, n);
    return;
  }
  if (simd::use_avx2()) {
    if constexpr (sizeof(T) == 4) log_block_f32(v, n);
    else log_block_f64(v, n);
    return;
  }
#endif
  for (int64_t j = 0; j < n; ++j) v[j] = std::log(v[j]);
}

}  // namespace

// In place x <- x - m - log(sum_c exp(x - m)) per row of C values, m the row's
// maximum. Rows whose maximum is not finite (a NaN or +inf in the row, or all
// -inf) take the formula with m = 0 and libm's exp and log, as the NumPy twin
// does. The maxima, sums and logs are vector passes over a chunk's rows (one
// scalar log per row cost more than the exps of its C values).
template <typename T>
void log_softmax(T* x, int64_t R, int64_t C) {
  if (R < 0 || C < 1) throw std::invalid_argument("values must have a last axis of length >= 1");
  const int64_t rows = rows_per_block(C);
  parallel_chunks((R + rows - 1) / rows, [&](int64_t ch) {
    const int64_t r0 = ch * rows, r1 = std::min(R, r0 + rows), nr = r1 - r0, L = nr * C;
    T* xc = x + r0 * C;
    std::vector<T> e(static_cast<size_t>(L)), m(static_cast<size_t>(nr));
    std::vector<char> odd(static_cast<size_t>(nr));
    row_max(xc, nr, C, m.data(), odd.data());
    for (int64_t r = 0; r < nr; ++r) {
      T* row = xc + r * C;
      if (odd[static_cast<size_t>(r)] || !std::isfinite(m[static_cast<size_t>(r)])) {
        odd[static_cast<size_t>(r)] = 1;
        continue;
      }
      const T mr = m[static_cast<size_t>(r)];
      for (int64_t c = 0; c < C; ++c) row[c] -= mr;
    }
    exp_block(xc, e.data(), L);
    T* ls = m.data();  // the maxima are spent: the rows' log-sums go here
    row_sums(e.data(), nr, C, ls);
    for (int64_t r = 0; r < nr; ++r)
      if (odd[static_cast<size_t>(r)]) ls[r] = 1;  // a valid placeholder for the vector log
    log_block(ls, nr);
    for (int64_t r = 0; r < nr; ++r) {
      T* row = xc + r * C;
      if (odd[static_cast<size_t>(r)]) {
        T s = 0;
        for (int64_t c = 0; c < C; ++c) s += std::exp(row[c]);
        ls[r] = std::log(s);
      }
      const T lr = ls[r];
      for (int64_t c = 0; c < C; ++c) row[c] -= lr;
    }
  });
}

template void log_softmax<float>(float*, int64_t, int64_t);
template void log_softmax<double>(double*, int64_t, int64_t);

}  // namespace bayesgrad
