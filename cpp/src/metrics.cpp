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
#include <limits>
#include <stdexcept>
#include <vector>

#include "bayesgrad/parallel.hpp"
#include "bayesgrad/simd_math.hpp"

namespace bayesgrad {

namespace {

// Scalar reference: exp_floored (metrics.hpp, shared with the CUDA kernel).
template <typename T>
inline T exp_scalar(T x) { return exp_floored(x); }

#if BG_HAVE_X86
// The tails go through the vector exp too (on a padded copy), so that every
// element's value depends on the element alone, not on where a chunk of the
// caller's array starts or ends: a pool scored block by block on Dask gets the
// values of the whole array in memory.
BG_AVX2 void exp_block_f32(const float* x, float* e, int64_t L) {
  int64_t j = 0;
  for (; j + 8 <= L; j += 8) _mm256_storeu_ps(e + j, simd::expx8(_mm256_loadu_ps(x + j)));
  if (j < L) {
    alignas(32) float buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::copy(x + j, x + L, buf);
    _mm256_store_ps(buf, simd::expx8(_mm256_load_ps(buf)));
    std::copy(buf, buf + (L - j), e + j);
  }
}
BG_AVX2 void exp_block_f64(const double* x, double* e, int64_t L) {
  int64_t j = 0;
  for (; j + 4 <= L; j += 4) _mm256_storeu_pd(e + j, simd::expx4(_mm256_loadu_pd(x + j)));
  if (j < L) {
    alignas(32) double buf[4] = {0, 0, 0, 0};
    std::copy(x + j, x + L, buf);
    _mm256_store_pd(buf, simd::expx4(_mm256_load_pd(buf)));
    std::copy(buf, buf + (L - j), e + j);
  }
}
BG_AVX512 void exp_block16_f32(const float* x, float* e, int64_t L) {
  int64_t j = 0;
  for (; j + 16 <= L; j += 16) _mm512_storeu_ps(e + j, simd::expx16(_mm512_loadu_ps(x + j)));
  exp_block_f32(x + j, e + j, L - j);  // the tail as the AVX2 path takes it
}
BG_AVX512 void exp_block16_f64(const double* x, double* e, int64_t L) {
  int64_t j = 0;
  for (; j + 8 <= L; j += 8) _mm512_storeu_pd(e + j, simd::expx8d(_mm512_loadu_pd(x + j)));
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

// max(worst, max_r |sum_c e[r C + c] - 1|), NaN once any row sum is NaN.
template <typename T>
double row_sum_deviation(const T* e, int64_t rows, int64_t C, double worst) {
  for (int64_t r = 0; r < rows && worst == worst; ++r) {
    T sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += e[r * C + c];
    const double d = std::abs(static_cast<double>(sum) - 1.0);
    if (!(d <= worst)) worst = d != d ? std::numeric_limits<double>::quiet_NaN() : std::max(worst, d);
  }
  return worst;
}

void check_dims(int64_t S, int64_t N, int64_t C) {
  if (S < 1 || N < 1 || C < 1) throw std::invalid_argument("log_probs must have shape (S, N, C) with S, N, C >= 1");
}

// Rows per chunk: about 4096 elements, independent of the thread count.
int64_t rows_per_chunk(int64_t C) { return std::max<int64_t>(1, 4096 / C); }

// Runs body(n0, n1, e_rows) over fixed row chunks; for every sample s the
// chunk's exp'd rows are handed to visit(s, x, e) (x, e: (n1-n0)*C values).
// Returns the largest |row sum - 1| (NaN if any row sum is NaN).
template <typename T, typename Init, typename Visit, typename Finish>
double for_chunks(const T* lp, int64_t S, int64_t N, int64_t C, Init init, Visit visit, Finish finish) {
  const int64_t R = rows_per_chunk(C);
  const int64_t nch = (N + R - 1) / R;
  std::vector<double> dev(static_cast<size_t>(nch), 0.0);
  parallel_chunks(nch, [&](int64_t ch) {
    const int64_t n0 = ch * R, n1 = std::min(N, n0 + R), L = (n1 - n0) * C;
    std::vector<T> e(static_cast<size_t>(L));
    auto state = init(L);
    double worst = 0.0;
    for (int64_t s = 0; s < S; ++s) {
      const T* x = lp + (s * N + n0) * C;
      exp_block(x, e.data(), L);
      worst = row_sum_deviation(e.data(), n1 - n0, C, worst);
      visit(state, s, x, e.data(), L);
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

}  // namespace

template <typename T>
double decompose(const T* lp, int64_t S, int64_t N, int64_t C, T* total, T* aleatoric, T* epistemic) {
  check_dims(S, N, C);
  struct State { std::vector<T> psum, ent; };
  const T invS = T(1) / static_cast<T>(S);
  return for_chunks<T>(
      lp, S, N, C,
      [](int64_t L) { return State{std::vector<T>(static_cast<size_t>(L), T(0)), std::vector<T>(static_cast<size_t>(L), T(0))}; },
      [](State& st, int64_t, const T* x, const T* e, int64_t L) { entropy_acc(x, e, st.psum.data(), st.ent.data(), L); },
      [&](State& st, int64_t n0, int64_t n1) {
        for (int64_t n = n0; n < n1; ++n)
          decompose_point(st.psum.data() + (n - n0) * C, st.ent.data() + (n - n0) * C, C, invS, total[n],
                          aleatoric[n], epistemic[n]);
      });
}

template <typename T>
double point_scores(const T* lp, int64_t S, int64_t N, int64_t C, PointScore kind, T* out) {
  check_dims(S, N, C);
  struct State { std::vector<T> a, b; };
  const T invS = T(1) / static_cast<T>(S);
  return for_chunks<T>(
      lp, S, N, C,
      [&](int64_t L) { return State{std::vector<T>(static_cast<size_t>(L), T(0)), std::vector<T>(kind == PointScore::kMeanStd ? static_cast<size_t>(L) : 0, T(0))}; },
      [&](State& st, int64_t, const T* x, const T* e, int64_t L) {
        T* a = st.a.data();
        if (kind == PointScore::kVariationRatios) {
          // a counts how often each class is a sample's argmax.
          for (int64_t r = 0; r < L / C; ++r) a[r * C + row_argmax(x + r * C, C)] += T(1);
        } else {
          for (int64_t j = 0; j < L; ++j) a[j] += e[j];
          if (kind == PointScore::kMeanStd) {
            T* b = st.b.data();
            for (int64_t j = 0; j < L; ++j) b[j] += e[j] * e[j];
          }
        }
      },
      [&](State& st, int64_t n0, int64_t n1) {
        for (int64_t n = n0; n < n1; ++n)
          out[n] = point_score_finish(kind, st.a.data() + (n - n0) * C,
                                      kind == PointScore::kMeanStd ? st.b.data() + (n - n0) * C : nullptr, C, invS);
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
      [](State& st, int64_t, const T*, const T* e, int64_t L) {
        T* ps = st.psum.data();
        for (int64_t j = 0; j < L; ++j) ps[j] += e[j];
      },
      [&](State& st, int64_t n0, int64_t n1) {
        T* o = out + n0 * C;
        for (int64_t j = 0; j < (n1 - n0) * C; ++j) o[j] = st.psum[static_cast<size_t>(j)] * invS;
      });
}

// In place x <- x - m - log(sum_c exp(x - m)) per row of C values, m the row's
// maximum. Rows whose maximum is not finite (a NaN or +inf in the row, or all
// -inf) take the formula with m = 0 and libm's exp, as the NumPy twin does.
template <typename T>
void log_softmax(T* x, int64_t R, int64_t C) {
  if (R < 0 || C < 1) throw std::invalid_argument("values must have a last axis of length >= 1");
  const int64_t rows = rows_per_chunk(C);
  parallel_chunks((R + rows - 1) / rows, [&](int64_t ch) {
    const int64_t r0 = ch * rows, r1 = std::min(R, r0 + rows), L = (r1 - r0) * C;
    T* xc = x + r0 * C;
    std::vector<T> e(static_cast<size_t>(L));
    std::vector<char> odd(static_cast<size_t>(r1 - r0), 0);
    for (int64_t r = 0; r < r1 - r0; ++r) {
      T* row = xc + r * C;
      T m = row[0];
      bool nan = false;
      for (int64_t c = 0; c < C; ++c) {
        nan |= row[c] != row[c];
        m = row[c] > m ? row[c] : m;
      }
      if (nan || !std::isfinite(m)) {
        odd[static_cast<size_t>(r)] = 1;
        continue;
      }
      for (int64_t c = 0; c < C; ++c) row[c] -= m;
    }
    exp_block(xc, e.data(), L);
    for (int64_t r = 0; r < r1 - r0; ++r) {
      T* row = xc + r * C;
      T s = 0;
      if (odd[static_cast<size_t>(r)]) {
        for (int64_t c = 0; c < C; ++c) s += std::exp(row[c]);
      } else {
        for (int64_t c = 0; c < C; ++c) s += e[static_cast<size_t>(r * C + c)];
      }
      const T ls = std::log(s);
      for (int64_t c = 0; c < C; ++c) row[c] -= ls;
    }
  });
}

template double decompose<float>(const float*, int64_t, int64_t, int64_t, float*, float*, float*);
template double decompose<double>(const double*, int64_t, int64_t, int64_t, double*, double*, double*);
template double point_scores<float>(const float*, int64_t, int64_t, int64_t, PointScore, float*);
template double point_scores<double>(const double*, int64_t, int64_t, int64_t, PointScore, double*);
template double mean_probs<float>(const float*, int64_t, int64_t, int64_t, float*);
template double mean_probs<double>(const double*, int64_t, int64_t, int64_t, double*);
template void log_softmax<float>(float*, int64_t, int64_t);
template void log_softmax<double>(double*, int64_t, int64_t);

}  // namespace bayesgrad
