// Uncertainty decomposition and single-point acquisition scores.
//
// The hot loop is exp over S*N*C log-probabilities. libm has no vector entry
// points without -ffast-math (ruled out by docs/design.md), so the AVX2 and
// AVX-512 paths use the shared vector exp of simd_math.hpp (|rel err| ~ 1 ulp;
// both paths give identical values).
// Results underflowing below exp(-86) (float32) / exp(-700) (float64) are
// flushed to 0: their contribution p log p is < 1e-35 and < 1e-300.
// Work is split into fixed row chunks, so results do not depend on the thread
// count; which elements take the SIMD path depends only on the chunk layout.
#include "bayesgrad/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "bayesgrad/parallel.hpp"
#include "bayesgrad/simd_math.hpp"
#include "metrics_blocks.hpp"

namespace bayesgrad {

namespace {

// Scalar reference: exp_floored (metrics.hpp, shared with the CUDA kernel).
template <typename T>
inline T exp_scalar(T x) { return exp_floored(x); }

#if BG_HAVE_X86
using metrics_blocks::tail_mask4;
using metrics_blocks::tail_mask8;

// The passes read each sample's run of a chunk once, from memory: a prefetch 4 KiB
// ahead kept the loads from stalling where the hardware prefetcher had not caught up
// (decompose float32 on a Zen 4 EPYC, S = 100, N = 10^5, C = 10: 41 -> 36 ms; 512 B to
// 8 KiB ahead measured alike). A hint only: it never faults, past the array's end
// included, and the address is formed as an integer.
inline void prefetch_ahead(const void* p) {
  _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(p) + 4096), _MM_HINT_T0);
}

// The tails go through the vector exp too (on a padded copy), so that every
// element's value depends on the element alone, not on where a chunk of the
// caller's array starts or ends: a pool scored block by block on Dask gets the
// values of the whole array in memory.
BG_AVX2 void exp_block_f32(const float* x, float* e, int64_t L) {
  int64_t j = 0;
  for (; j + 8 <= L; j += 8) {
    if (j % 16 == 0) prefetch_ahead(x + j);
    _mm256_storeu_ps(e + j, simd::expx8(_mm256_loadu_ps(x + j)));
  }
  if (j < L) {
    alignas(32) float buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::copy(x + j, x + L, buf);
    _mm256_store_ps(buf, simd::expx8(_mm256_load_ps(buf)));
    std::copy(buf, buf + (L - j), e + j);
  }
}
BG_AVX2 void exp_block_f64(const double* x, double* e, int64_t L) {
  int64_t j = 0;
  for (; j + 4 <= L; j += 4) {
    if (j % 8 == 0) prefetch_ahead(x + j);
    _mm256_storeu_pd(e + j, simd::expx4(_mm256_loadu_pd(x + j)));
  }
  if (j < L) {
    alignas(32) double buf[4] = {0, 0, 0, 0};
    std::copy(x + j, x + L, buf);
    _mm256_store_pd(buf, simd::expx4(_mm256_load_pd(buf)));
    std::copy(buf, buf + (L - j), e + j);
  }
}
BG_AVX512 void exp_block16_f32(const float* x, float* e, int64_t L) {
  int64_t j = 0;
  for (; j + 16 <= L; j += 16) {
    prefetch_ahead(x + j);
    _mm512_storeu_ps(e + j, simd::expx16(_mm512_loadu_ps(x + j)));
  }
  exp_block_f32(x + j, e + j, L - j);  // the tail as the AVX2 path takes it
}
BG_AVX512 void exp_block16_f64(const double* x, double* e, int64_t L) {
  int64_t j = 0;
  for (; j + 8 <= L; j += 8) {
    prefetch_ahead(x + j);
    _mm512_storeu_pd(e + j, simd::expx8d(_mm512_loadu_pd(x + j)));
  }
  exp_block_f64(x + j, e + j, L - j);
}

// decompose's accumulation on AVX2 (same order and values as the scalar loop:
// the masked product is exactly the scalar branch's 0 where e = 0, even where
// x = -inf).
BG_AVX2 void entropy_acc8_f32(const float* x, const float* e, float* ps, float* en, int64_t L) {
  int64_t j = 0;
  for (; j + 8 <= L; j += 8) {
    const __m256 ev = _mm256_loadu_ps(e + j);
    const __m256 pos = _mm256_cmp_ps(ev, _mm256_setzero_ps(), _CMP_GT_OQ);
    _mm256_storeu_ps(ps + j, _mm256_add_ps(_mm256_loadu_ps(ps + j), ev));
    _mm256_storeu_ps(en + j, _mm256_add_ps(_mm256_loadu_ps(en + j),
                                           _mm256_and_ps(pos, _mm256_mul_ps(ev, _mm256_loadu_ps(x + j)))));
  }
  for (; j < L; ++j) entropy_accumulate(x[j], e[j], ps[j], en[j]);
}
BG_AVX2 void entropy_acc4_f64(const double* x, const double* e, double* ps, double* en, int64_t L) {
  int64_t j = 0;
  for (; j + 4 <= L; j += 4) {
    const __m256d ev = _mm256_loadu_pd(e + j);
    const __m256d pos = _mm256_cmp_pd(ev, _mm256_setzero_pd(), _CMP_GT_OQ);
    _mm256_storeu_pd(ps + j, _mm256_add_pd(_mm256_loadu_pd(ps + j), ev));
    _mm256_storeu_pd(en + j, _mm256_add_pd(_mm256_loadu_pd(en + j),
                                           _mm256_and_pd(pos, _mm256_mul_pd(ev, _mm256_loadu_pd(x + j)))));
  }
  for (; j < L; ++j) entropy_accumulate(x[j], e[j], ps[j], en[j]);
}

// decompose's per-sample accumulation ps += e, en += e x (0 where e = 0), in
// the order of the baseline loop (a product then a sum, no FMA), so every
// path accumulates the same values.
BG_AVX512 void entropy_acc16_f32(const float* x, const float* e, float* ps, float* en, int64_t L) {
  int64_t j = 0;
  for (; j + 16 <= L; j += 16) {
    const __m512 ev = _mm512_loadu_ps(e + j);
    const __mmask16 pos = _mm512_cmp_ps_mask(ev, _mm512_setzero_ps(), _CMP_GT_OQ);
    _mm512_storeu_ps(ps + j, _mm512_add_ps(_mm512_loadu_ps(ps + j), ev));
    _mm512_storeu_ps(en + j, _mm512_add_ps(_mm512_loadu_ps(en + j),
                                           _mm512_maskz_mul_ps(pos, ev, _mm512_loadu_ps(x + j))));
  }
  for (; j < L; ++j) {
    ps[j] += e[j];
    en[j] += e[j] > 0.0f ? e[j] * x[j] : 0.0f;
  }
}
// exp_block16_f32 and entropy_acc16_f32 in one loop (the exps accumulated
// from registers, then stored for the sum check): the same operations in the
// same order, so the same values.
BG_AVX512 void exp_entropy16_f32(const float* x, float* e, float* ps, float* en, int64_t L) {
  int64_t j = 0;
  for (; j + 16 <= L; j += 16) {
    prefetch_ahead(x + j);
    const __m512 xv = _mm512_loadu_ps(x + j);
    const __m512 ev = simd::expx16(xv);
    _mm512_storeu_ps(e + j, ev);
    const __mmask16 pos = _mm512_cmp_ps_mask(ev, _mm512_setzero_ps(), _CMP_GT_OQ);
    _mm512_storeu_ps(ps + j, _mm512_add_ps(_mm512_loadu_ps(ps + j), ev));
    _mm512_storeu_ps(en + j, _mm512_add_ps(_mm512_loadu_ps(en + j), _mm512_maskz_mul_ps(pos, ev, xv)));
  }
  exp_block_f32(x + j, e + j, L - j);
  entropy_acc16_f32(x + j, e + j, ps + j, en + j, L - j);
}
BG_AVX512 void entropy_acc16_f64(const double* x, const double* e, double* ps, double* en, int64_t L) {
  int64_t j = 0;
  for (; j + 8 <= L; j += 8) {
    const __m512d ev = _mm512_loadu_pd(e + j);
    const __mmask8 pos = _mm512_cmp_pd_mask(ev, _mm512_setzero_pd(), _CMP_GT_OQ);
    _mm512_storeu_pd(ps + j, _mm512_add_pd(_mm512_loadu_pd(ps + j), ev));
    _mm512_storeu_pd(en + j, _mm512_add_pd(_mm512_loadu_pd(en + j),
                                           _mm512_maskz_mul_pd(pos, ev, _mm512_loadu_pd(x + j))));
  }
  for (; j < L; ++j) {
    ps[j] += e[j];
    en[j] += e[j] > 0.0 ? e[j] * x[j] : 0.0;
  }
}

// mean std's shifted double sums (metrics.hpp, mean_std_accumulate) 4 at a time:
// a product then a sum as in the scalar loop, the tail on a padded copy so that
// an element's sums do not depend on its position in the block.
template <typename T>
BG_AVX2 inline __m256d load4_pd(const T* p) {
  if constexpr (sizeof(T) == 4) return _mm256_cvtps_pd(_mm_loadu_ps(p));
  else return _mm256_loadu_pd(p);
}
template <typename T>
BG_AVX2 void mean_std_acc4(const T* e, const T* p0, double* a, double* b, int64_t L) {
  int64_t j = 0;
  for (; j + 4 <= L; j += 4) {
    const __m256d d = _mm256_sub_pd(load4_pd(e + j), load4_pd(p0 + j));
    _mm256_storeu_pd(a + j, _mm256_add_pd(_mm256_loadu_pd(a + j), d));
    _mm256_storeu_pd(b + j, _mm256_add_pd(_mm256_loadu_pd(b + j), _mm256_mul_pd(d, d)));
  }
  if (j < L) {
    alignas(32) T eb[4] = {0, 0, 0, 0}, pb[4] = {0, 0, 0, 0};
    alignas(32) double ab[4] = {0, 0, 0, 0}, bb[4] = {0, 0, 0, 0};
    std::copy(e + j, e + L, eb);
    std::copy(p0 + j, p0 + L, pb);
    std::copy(a + j, a + L, ab);
    std::copy(b + j, b + L, bb);
    mean_std_acc4(eb, pb, ab, bb, 4);
    std::copy(ab, ab + (L - j), a + j);
    std::copy(bb, bb + (L - j), b + j);
  }
}

// Row sums over the rows of C contiguous values of a chunk (which sits in L1;
// log_softmax.cpp has the maxima with the same layout).
// A row is full vectors then one masked load (masked lanes never fault), then
// one tree reduction; the sums' order differs from the scalar loop's, so they
// agree with it to rounding (they feed a tolerance check and a log).
BG_AVX2 inline float hsum8(__m256 a) {
  __m128 v = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  v = _mm_add_ps(v, _mm_movehl_ps(v, v));
  return _mm_cvtss_f32(_mm_add_ss(v, _mm_movehdup_ps(v)));
}
BG_AVX2 inline double hsum4(__m256d a) {
  __m128d v = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
  return _mm_cvtsd_f64(_mm_add_sd(v, _mm_unpackhi_pd(v, v)));
}
BG_AVX2 void row_sums8_f32(const float* e, int64_t rows, int64_t C, float* out) {
  const int64_t full = C / 8;
  const __m256i tail = tail_mask8(C % 8);
  for (int64_t r = 0; r < rows; ++r) {
    const float* p = e + r * C;
    __m256 acc = _mm256_maskload_ps(p + 8 * full, tail);
    for (int64_t k = 0; k < full; ++k) acc = _mm256_add_ps(acc, _mm256_loadu_ps(p + 8 * k));
    out[r] = hsum8(acc);
  }
}
BG_AVX2 void row_sums4_f64(const double* e, int64_t rows, int64_t C, double* out) {
  const int64_t full = C / 4;
  const __m256i tail = tail_mask4(C % 4);
  for (int64_t r = 0; r < rows; ++r) {
    const double* p = e + r * C;
    __m256d acc = _mm256_maskload_pd(p + 4 * full, tail);
    for (int64_t k = 0; k < full; ++k) acc = _mm256_add_pd(acc, _mm256_loadu_pd(p + 4 * k));
    out[r] = hsum4(acc);
  }
}
// The lane sums of 16 vectors as one vector (lane i: the sum of v[i]'s lanes):
// pairs of rows folded within 128-bit blocks, then the blocks transposed, 45
// operations where 16 horizontal reductions take about 130 (decompose's sum
// check with C = 10 spent as long on them as on the exps).
BG_AVX512 inline __m512 lane_sums16(const __m512* v) {
  __m512 s[8], t[4];
  for (int k = 0; k < 8; ++k)  // block j: [a0+a2, b0+b2, a1+a3, b1+b3] of rows a = 2k, b = 2k + 1
    s[k] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * k], v[2 * k + 1]), _mm512_unpackhi_ps(v[2 * k], v[2 * k + 1]));
  for (int k = 0; k < 4; ++k)  // block j: the block-j sums of rows 4k .. 4k + 3
    t[k] = _mm512_add_ps(_mm512_shuffle_ps(s[2 * k], s[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(s[2 * k], s[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 y01 = _mm512_add_ps(_mm512_shuffle_f32x4(t[0], t[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm512_shuffle_f32x4(t[0], t[1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 y23 = _mm512_add_ps(_mm512_shuffle_f32x4(t[2], t[3], _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm512_shuffle_f32x4(t[2], t[3], _MM_SHUFFLE(3, 2, 3, 2)));
  return _mm512_add_ps(_mm512_shuffle_f32x4(y01, y23, _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(y01, y23, _MM_SHUFFLE(3, 1, 3, 1)));
}
// Row p's C values folded into 16 lanes (zeros past C).
BG_AVX512 inline __m512 row_vector16(const float* p, int64_t full, __mmask16 tail) {
  __m512 acc = _mm512_maskz_loadu_ps(tail, p + 16 * full);
  for (int64_t k = 0; k < full; ++k) acc = _mm512_add_ps(acc, _mm512_loadu_ps(p + 16 * k));
  return acc;
}
BG_AVX512 void row_sums16_f32(const float* e, int64_t rows, int64_t C, float* out) {
  const int64_t full = C / 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (C % 16)) - 1u);
  int64_t r = 0;
  for (; r + 16 <= rows; r += 16) {
    __m512 v[16];
    for (int i = 0; i < 16; ++i) v[i] = row_vector16(e + (r + i) * C, full, tail);
    _mm512_storeu_ps(out + r, lane_sums16(v));
  }
  for (; r < rows; ++r) out[r] = _mm512_reduce_add_ps(row_vector16(e + r * C, full, tail));
}
// row_sum_deviation's rule over the first rows / 8 * 8 sums, 8 at a time:
// worst = max(worst, |double(s[r]) - 1|), NaN once any is NaN. Returns the
// rows done (the caller takes the rest).
BG_AVX512 int64_t sum_deviation16_f32(const float* s, int64_t rows, double& worst) {
  __m512d acc = _mm512_set1_pd(worst);
  __mmask8 nan = 0;
  int64_t r = 0;
  for (; r + 8 <= rows; r += 8) {
    const __m512d d = _mm512_abs_pd(_mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(s + r)), _mm512_set1_pd(1.0)));
    nan |= _mm512_cmp_pd_mask(d, d, _CMP_UNORD_Q);
    acc = _mm512_max_pd(acc, d);
  }
  worst = nan ? std::numeric_limits<double>::quiet_NaN() : _mm512_reduce_max_pd(acc);
  return r;
}
BG_AVX512 void row_sums8_f64(const double* e, int64_t rows, int64_t C, double* out) {
  const int64_t full = C / 8;
  const __mmask8 tail = static_cast<__mmask8>((1u << (C % 8)) - 1u);
  for (int64_t r = 0; r < rows; ++r) {
    const double* p = e + r * C;
    __m512d acc = _mm512_maskz_loadu_pd(tail, p + 8 * full);
    for (int64_t k = 0; k < full; ++k) acc = _mm512_add_pd(acc, _mm512_loadu_pd(p + 8 * k));
    out[r] = _mm512_reduce_add_pd(acc);
  }
}
#endif

template <typename T>
void entropy_acc(const T* x, const T* e, T* ps, T* en, int64_t L) {
#if BG_HAVE_X86
  if (simd::use_avx512()) {
    if constexpr (sizeof(T) == 4) entropy_acc16_f32(x, e, ps, en, L);
    else entropy_acc16_f64(x, e, ps, en, L);
    return;
  }
  if (simd::use_avx2()) {
    if constexpr (sizeof(T) == 4) entropy_acc8_f32(x, e, ps, en, L);
    else entropy_acc4_f64(x, e, ps, en, L);
    return;
  }
#endif
  for (int64_t j = 0; j < L; ++j) entropy_accumulate(x[j], e[j], ps[j], en[j]);
}

// e[j] = exp(x[j]) for a contiguous block (SIMD body, scalar tail).
template <typename T>
void exp_block(const T* x, T* e, int64_t L) {
#if BG_HAVE_X86
  if (simd::use_avx512()) {
    if constexpr (sizeof(T) == 4) exp_block16_f32(x, e, L);
    else exp_block16_f64(x, e, L);
    return;
  }
  if (simd::use_avx2()) {
    if constexpr (sizeof(T) == 4) exp_block_f32(x, e, L);
    else exp_block_f64(x, e, L);
    return;
  }
#endif
  for (int64_t j = 0; j < L; ++j) e[j] = exp_scalar(x[j]);
}

// e = exp(x), then ps += e, en += e x (0 where e = 0): fused on the float AVX-512 path.
template <typename T>
void exp_entropy(const T* x, T* e, T* ps, T* en, int64_t L) {
#if BG_HAVE_X86
  if constexpr (sizeof(T) == 4)
    if (simd::use_avx512()) return exp_entropy16_f32(x, e, ps, en, L);
#endif
  exp_block(x, e, L);
  entropy_acc(x, e, ps, en, L);
}

// out[r] = sum_c e[r C + c] for r < rows.
template <typename T>
void row_sums(const T* e, int64_t rows, int64_t C, T* out) {
#if BG_HAVE_X86
  if (simd::use_avx512()) {
    if constexpr (sizeof(T) == 4) row_sums16_f32(e, rows, C, out);
    else row_sums8_f64(e, rows, C, out);
    return;
  }
  if (simd::use_avx2()) {
    if constexpr (sizeof(T) == 4) row_sums8_f32(e, rows, C, out);
    else row_sums4_f64(e, rows, C, out);
    return;
  }
#endif
  for (int64_t r = 0; r < rows; ++r) {
    T sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += e[r * C + c];
    out[r] = sum;
  }
}

// max(worst, max_r |sum_c e[r C + c] - 1|), NaN once any row sum is NaN;
// sums: a buffer of `rows` values.
template <typename T>
double row_sum_deviation(const T* e, int64_t rows, int64_t C, double worst, T* sums) {
  if (worst != worst) return worst;
  row_sums(e, rows, C, sums);
  int64_t r0 = 0;
#if BG_HAVE_X86
  if constexpr (sizeof(T) == 4)
    if (simd::use_avx512()) {
      r0 = sum_deviation16_f32(sums, rows, worst);
      if (worst != worst) return worst;
    }
#endif
  for (int64_t r = r0; r < rows; ++r) {
    const double d = std::abs(static_cast<double>(sums[r]) - 1.0);
    if (!(d <= worst)) {
      if (d != d) return std::numeric_limits<double>::quiet_NaN();
      worst = d;
    }
  }
  return worst;
}

void check_dims(int64_t S, int64_t N, int64_t C) {
  if (S < 1 || N < 1 || C < 1) throw std::invalid_argument("log_probs must have shape (S, N, C) with S, N, C >= 1");
}

// The S x N x C passes read, for every sample, a chunk's rows as one
// sequential run, and keep the chunk's (N, C) accumulators: long runs let the
// hardware prefetcher keep up (per-sample runs of 16 KB ran at a third of the
// bandwidth of 128 KB ones), while the accumulators (2 x 128 KB in float32)
// stay in L2. Each run is exp'd and checked in blocks of about 4096 values
// (whole rows) that stay in L1. Chunks shrink for small inputs so that both
// threads get work. Nothing here depends on the thread count, and no value
// depends on the layout (every element takes the same vector exp, padded
// tails included, and accumulates over s in the same order).
int64_t rows_per_block(int64_t C) { return std::max<int64_t>(1, 4096 / C); }
int64_t rows_per_chunk(int64_t N, int64_t C) {
  const int64_t rb = rows_per_block(C), want = std::min<int64_t>(32768 / C, N / 16);
  return std::max<int64_t>(1, want / rb) * rb;  // whole blocks
}

// For every chunk of rows [n0, n1): state = init(L) (L = (n1 - n0) C values),
// then for every sample s and block of the chunk visit(state, j0, x, e, Lb)
// with x the block's log-probabilities, e their exps and j0 the block's
// offset in the chunk (kVisitExps: e is a buffer visit fills with the exps,
// fused with its own pass), then finish(state, n0, n1). Returns the largest
// |row sum - 1| (NaN if any row sum is NaN).
template <typename T, bool kVisitExps = false, typename Init, typename Visit, typename Finish>
double for_chunks(const T* lp, int64_t S, int64_t N, int64_t C, Init init, Visit visit, Finish finish) {
  const int64_t R = rows_per_chunk(N, C), Rb = rows_per_block(C);
  const int64_t nch = (N + R - 1) / R;
  std::vector<double> dev(static_cast<size_t>(nch), 0.0);
  parallel_chunks(nch, [&](int64_t ch) {
    const int64_t n0 = ch * R, n1 = std::min(N, n0 + R), L = (n1 - n0) * C;
    std::vector<T> e(static_cast<size_t>(std::min(n1 - n0, Rb) * C)), sums(static_cast<size_t>(Rb));
    auto state = init(L);
    double worst = 0.0;
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t b0 = n0; b0 < n1; b0 += Rb) {
        const int64_t b1 = std::min(n1, b0 + Rb), Lb = (b1 - b0) * C;
        const T* x = lp + (s * N + b0) * C;
        if constexpr (!kVisitExps) exp_block(x, e.data(), Lb);
        visit(state, (b0 - n0) * C, x, e.data(), Lb);
        worst = row_sum_deviation(e.data(), b1 - b0, C, worst, sums.data());
      }
    }
    finish(state, n0, n1);
    dev[static_cast<size_t>(ch)] = worst;
  });
  double worst = 0.0;
  for (double d : dev) {
    if (d != d) return d;
    worst = std::max(worst, d);
  }
  return worst;
}

// mean std (metrics.hpp, mean_std_accumulate): the first sample's exps are kept as the
// shift p0 (for_chunks visits the samples in order, each as the chunk's blocks in order,
// so the first `blocks` visits are sample 0's); the sums are double.
template <typename T>
double mean_std_scores(const T* lp, int64_t S, int64_t N, int64_t C, T* out) {
  struct State { std::vector<T> p0; std::vector<double> a, b; int64_t visits, blocks; };
  const int64_t Rb = rows_per_block(C);
  return for_chunks<T>(
      lp, S, N, C,
      [&](int64_t L) {
        const size_t n = static_cast<size_t>(L);
        return State{std::vector<T>(n), std::vector<double>(n, 0.0), std::vector<double>(n, 0.0), 0,
                     (L / C + Rb - 1) / Rb};
      },
      [](State& st, int64_t j0, const T*, const T* e, int64_t L) {
        T* p0 = st.p0.data() + j0;
        double* a = st.a.data() + j0;
        double* b = st.b.data() + j0;
        if (st.visits++ < st.blocks) {
          std::copy(e, e + L, p0);  // d = 0 for the first sample
          return;
        }
#if BG_HAVE_X86
        if (simd::use_avx2()) return mean_std_acc4(e, p0, a, b, L);
#endif
        for (int64_t j = 0; j < L; ++j)
          mean_std_accumulate(static_cast<double>(e[j]) - static_cast<double>(p0[j]), a[j], b[j]);
      },
      [&](State& st, int64_t n0, int64_t n1) {
        const double invS = 1.0 / static_cast<double>(S);
        for (int64_t n = n0; n < n1; ++n)
          out[n] = mean_std_finish<T>(st.a.data() + (n - n0) * C, st.b.data() + (n - n0) * C, C, invS);
      });
}

}  // namespace

template <typename T>
double decompose(const T* lp, int64_t S, int64_t N, int64_t C, T* total, T* aleatoric, T* epistemic) {
  check_dims(S, N, C);
  struct State { std::vector<T> psum, ent; };
  const T invS = T(1) / static_cast<T>(S);
  return for_chunks<T, true>(
      lp, S, N, C,
      [](int64_t L) {
        return State{std::vector<T>(static_cast<size_t>(L), T(0)), std::vector<T>(static_cast<size_t>(L), T(0))};
      },
      [](State& st, int64_t j0, const T* x, T* e, int64_t L) {
        exp_entropy(x, e, st.psum.data() + j0, st.ent.data() + j0, L);
      },
      [&](State& st, int64_t n0, int64_t n1) {
        for (int64_t n = n0; n < n1; ++n)
          decompose_point(st.psum.data() + (n - n0) * C, st.ent.data() + (n - n0) * C, C, invS, total[n],
                          aleatoric[n], epistemic[n]);
      });
}

template <typename T>
double point_scores(const T* lp, int64_t S, int64_t N, int64_t C, PointScore kind, T* out) {
  check_dims(S, N, C);
  if (kind == PointScore::kMeanStd) return mean_std_scores(lp, S, N, C, out);
  struct State { std::vector<T> a; };
  const T invS = T(1) / static_cast<T>(S);
  return for_chunks<T>(
      lp, S, N, C,
      [&](int64_t L) { return State{std::vector<T>(static_cast<size_t>(L), T(0))}; },
      [&](State& st, int64_t j0, const T* x, const T* e, int64_t L) {
        T* a = st.a.data() + j0;
        if (kind == PointScore::kVariationRatios) {
          // a counts how often each class is a sample's argmax.
          for (int64_t r = 0; r < L / C; ++r) a[r * C + row_argmax(x + r * C, C)] += T(1);
        } else {
          for (int64_t j = 0; j < L; ++j) a[j] += e[j];
        }
      },
      [&](State& st, int64_t n0, int64_t n1) {
        for (int64_t n = n0; n < n1; ++n) out[n] = point_score_finish(kind, st.a.data() + (n - n0) * C, C, invS);
      });
}

// Mixture probabilities: out (N, C) = mean_s exp(lp[s]) with the same exp
// (and the same flush below exp(-86) / exp(-700)) as decompose's total.
template <typename T>
double mean_probs(const T* lp, int64_t S, int64_t N, int64_t C, T* out) {
  check_dims(S, N, C);
  struct State { std::vector<T> psum; };
  const T invS = T(1) / static_cast<T>(S);
  return for_chunks<T>(
      lp, S, N, C, [](int64_t L) { return State{std::vector<T>(static_cast<size_t>(L), T(0))}; },
      [](State& st, int64_t j0, const T*, const T* e, int64_t L) {
        T* ps = st.psum.data() + j0;
        for (int64_t j = 0; j < L; ++j) ps[j] += e[j];
      },
      [&](State& st, int64_t n0, int64_t n1) {
        T* o = out + n0 * C;
        for (int64_t j = 0; j < (n1 - n0) * C; ++j) o[j] = st.psum[static_cast<size_t>(j)] * invS;
      });
}

template double decompose<float>(const float*, int64_t, int64_t, int64_t, float*, float*, float*);
template double decompose<double>(const double*, int64_t, int64_t, int64_t, double*, double*, double*);
template double point_scores<float>(const float*, int64_t, int64_t, int64_t, PointScore, float*);
template double point_scores<double>(const double*, int64_t, int64_t, int64_t, PointScore, double*);
template double mean_probs<float>(const float*, int64_t, int64_t, int64_t, float*);
template double mean_probs<double>(const double*, int64_t, int64_t, int64_t, double*);

// The block passes log_softmax.cpp shares (metrics_blocks.hpp).
namespace metrics_blocks {
template <typename T>
void exp_block(const T* x, T* e, int64_t L) { bayesgrad::exp_block(x, e, L); }
template <typename T>
void row_sums(const T* e, int64_t rows, int64_t C, T* out) { bayesgrad::row_sums(e, rows, C, out); }
int64_t rows_per_block(int64_t C) { return bayesgrad::rows_per_block(C); }
template void exp_block<float>(const float*, float*, int64_t);
template void exp_block<double>(const double*, double*, int64_t);
template void row_sums<float>(const float*, int64_t, int64_t, float*);
template void row_sums<double>(const double*, int64_t, int64_t, double*);
}  // namespace metrics_blocks

}  // namespace bayesgrad
