// BatchBALD kernels (Kirsch, van Amersfoort & Gal, 2019): the joint entropy of
// the selected batch's labels and each candidate's label, and the sampled
// label configurations used once C^k exceeds the configuration budget.
//
// The mixture over samples is a matrix product, Q = P^T probs / S, done by
// BLAS on blocks of candidates (outside any parallel region of ours, so that
// the BLAS threads and ours never compete for the cores); the entropy reduction of
// each block then runs over fixed candidate chunks.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "bayesgrad/metrics.hpp"
#include "bayesgrad/parallel.hpp"
#include "bayesgrad/simd_math.hpp"

namespace bayesgrad {

namespace {

// Q (M, ncols) = alpha * P^T (M x S) @ B (S x ncols), B with leading dimension ldb.
void gemm_tn(int64_t M, int64_t ncols, int64_t S, float alpha, const float* P, const float* B, int64_t ldb,
             float* Q) {
  scipy_cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<blasint>(M), static_cast<blasint>(ncols),
                    static_cast<blasint>(S), alpha, P, static_cast<blasint>(M), B, static_cast<blasint>(ldb), 0.0f,
                    Q, static_cast<blasint>(ncols));
}
void gemm_tn(int64_t M, int64_t ncols, int64_t S, double alpha, const double* P, const double* B, int64_t ldb,
             double* Q) {
  scipy_cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<blasint>(M), static_cast<blasint>(ncols),
                    static_cast<blasint>(S), alpha, P, static_cast<blasint>(M), B, static_cast<blasint>(ldb), 0.0,
                    Q, static_cast<blasint>(ncols));
}

constexpr int64_t kBlockElems = 1 << 20;  // Q block size (elements)
constexpr int64_t kRowChunk = 1 << 14;    // elements per x log x chunk

// v log v with 0 for v <= 0 and for subnormal v (|v log v| < 1e-305 there).
template <typename T>
inline T xlogx_scalar(T v) {
  return v >= std::numeric_limits<T>::min() ? v * std::log(v) : T(0);
}

#if BG_HAVE_X86
BG_AVX2 void xlogx_block_f32(float* v, int64_t L) {
  int64_t j = 0;
  const __m256 tiny = _mm256_set1_ps(std::numeric_limits<float>::min());
  for (; j + 8 <= L; j += 8) {
    const __m256 x = _mm256_loadu_ps(v + j);
    const __m256 ok = _mm256_cmp_ps(x, tiny, _CMP_GE_OQ);
    const __m256 safe = _mm256_blendv_ps(_mm256_set1_ps(1.0f), x, ok);
    _mm256_storeu_ps(v + j, _mm256_and_ps(_mm256_mul_ps(safe, simd::logx8(safe)), ok));
  }
  for (; j < L; ++j) v[j] = xlogx_scalar(v[j]);
}
BG_AVX2 void xlogx_block_f64(double* v, int64_t L) {
  int64_t j = 0;
  const __m256d tiny = _mm256_set1_pd(std::numeric_limits<double>::min());
  for (; j + 4 <= L; j += 4) {
    const __m256d x = _mm256_loadu_pd(v + j);
    const __m256d ok = _mm256_cmp_pd(x, tiny, _CMP_GE_OQ);
    const __m256d safe = _mm256_blendv_pd(_mm256_set1_pd(1.0), x, ok);
    _mm256_storeu_pd(v + j, _mm256_and_pd(_mm256_mul_pd(safe, simd::logx4(safe)), ok));
  }
  for (; j < L; ++j) v[j] = xlogx_scalar(v[j]);
}
// The same on 512-bit vectors (identical values: logx16 / logx8d repeat logx8 / logx4).
BG_AVX512 void xlogx_block16_f32(float* v, int64_t L) {
  int64_t j = 0;
  const __m512 tiny = _mm512_set1_ps(std::numeric_limits<float>::min());
  for (; j + 16 <= L; j += 16) {
    const __m512 x = _mm512_loadu_ps(v + j);
    const __mmask16 ok = _mm512_cmp_ps_mask(x, tiny, _CMP_GE_OQ);
    const __m512 safe = _mm512_mask_blend_ps(ok, _mm512_set1_ps(1.0f), x);
    _mm512_storeu_ps(v + j, _mm512_maskz_mul_ps(ok, safe, simd::logx16(safe)));
  }
  xlogx_block_f32(v + j, L - j);  // the tail as the AVX2 path takes it
}
BG_AVX512 void xlogx_block16_f64(double* v, int64_t L) {
  int64_t j = 0;
  const __m512d tiny = _mm512_set1_pd(std::numeric_limits<double>::min());
  for (; j + 8 <= L; j += 8) {
    const __m512d x = _mm512_loadu_pd(v + j);
    const __mmask8 ok = _mm512_cmp_pd_mask(x, tiny, _CMP_GE_OQ);
    const __m512d safe = _mm512_mask_blend_pd(ok, _mm512_set1_pd(1.0), x);
    _mm512_storeu_pd(v + j, _mm512_maskz_mul_pd(ok, safe, simd::logx8d(safe)));
  }
  xlogx_block_f64(v + j, L - j);
}
#endif

// v[j] <- v[j] log v[j] in place.
template <typename T>
void xlogx_block(T* v, int64_t L) {
#if BG_HAVE_X86
  if (simd::use_avx512()) {
    if constexpr (sizeof(T) == 4) xlogx_block16_f32(v, L);
    else xlogx_block16_f64(v, L);
    return;
  }
  if (simd::use_avx2()) {
    if constexpr (sizeof(T) == 4) xlogx_block_f32(v, L);
    else xlogx_block_f64(v, L);
    return;
  }
#endif
  for (int64_t j = 0; j < L; ++j) v[j] = xlogx_scalar(v[j]);
}

}  // namespace

template <typename T>
void joint_entropy(const T* probs, int64_t S, int64_t N, int64_t C, const T* P, int64_t M, const T* w, T* out) {
  if (S < 1 || N < 1 || C < 1 || M < 1) throw std::invalid_argument("joint_entropy: S, N, C and M must be >= 1");
  const int64_t limit = 2147483647;
  if (M > limit || N * C > limit || S > limit) throw std::invalid_argument("joint_entropy: dimensions exceed BLAS int range");
  const int64_t nb = std::max<int64_t>(1, std::min<int64_t>(N, kBlockElems / (M * C)));
  std::vector<T> Q(static_cast<size_t>(nb * M * C));
  for (int64_t i0 = 0; i0 < N; i0 += nb) {
    const int64_t cnt = std::min(nb, N - i0), ncols = cnt * C;
    gemm_tn(M, ncols, S, T(1) / static_cast<T>(S), P, probs + i0 * C, N * C, Q.data());
    // Elementwise q log q (parallel, fixed chunks), then the weighted sum over
    // configurations (a vector-matrix product, vectorised over columns).
    T* q = Q.data();
    const int64_t L = M * ncols;
    parallel_chunks((L + kRowChunk - 1) / kRowChunk, [&](int64_t ch) {
      const int64_t a = ch * kRowChunk;
      xlogx_block(q + a, std::min(L, a + kRowChunk) - a);
    });
    std::vector<double> acc(static_cast<size_t>(ncols), 0.0);
    const int64_t cchunk = 256;
    parallel_chunks((ncols + cchunk - 1) / cchunk, [&](int64_t ch) {
      const int64_t a = ch * cchunk, b = std::min(ncols, a + cchunk);
      double* ac = acc.data();
      for (int64_t m = 0; m < M; ++m) {
        const double wm = static_cast<double>(w[m]);
        const T* row = q + m * ncols;
        for (int64_t j = a; j < b; ++j) ac[j] += wm * static_cast<double>(row[j]);
      }
    });
    for (int64_t i = 0; i < cnt; ++i) {
      double h = 0.0;
      for (int64_t c = 0; c < C; ++c) h -= acc[i * C + c];
      out[i0 + i] = static_cast<T>(h);
    }
  }
}

template <typename T>
void batch_configs(const T* probs, int64_t S, int64_t K, int64_t C, const T* u, int64_t M, T* P) {
  if (S < 1 || K < 1 || C < 1 || M < 1) throw std::invalid_argument("batch_configs: S, K, C and M must be >= 1");
  const int64_t chunk = 64;
  parallel_chunks((M + chunk - 1) / chunk, [&](int64_t ch) {
    std::vector<int64_t> y(static_cast<size_t>(K));
    const int64_t a = ch * chunk, b = std::min(M, a + chunk);
    for (int64_t m = a; m < b; ++m) {
      const T* um = u + m * (K + 1);
      const int64_t s = std::min<int64_t>(S - 1, static_cast<int64_t>(static_cast<double>(um[0]) * static_cast<double>(S)));
      for (int64_t j = 0; j < K; ++j) {
        const T* p = probs + (s * K + j) * C;
        // Inverse CDF; the last class takes any rounding remainder.
        double cdf = 0.0;
        int64_t c = 0;
        for (; c < C - 1; ++c) {
          cdf += static_cast<double>(p[c]);
          if (static_cast<double>(um[j + 1]) < cdf) break;
        }
        y[static_cast<size_t>(j)] = c;
      }
      for (int64_t t = 0; t < S; ++t) {
        double prod = 1.0;
        for (int64_t j = 0; j < K; ++j) prod *= static_cast<double>(probs[(t * K + j) * C + y[static_cast<size_t>(j)]]);
        P[t * M + m] = static_cast<T>(prod);
      }
    }
  });
}

template void joint_entropy<float>(const float*, int64_t, int64_t, int64_t, const float*, int64_t, const float*, float*);
template void joint_entropy<double>(const double*, int64_t, int64_t, int64_t, const double*, int64_t, const double*,
                                    double*);
template void batch_configs<float>(const float*, int64_t, int64_t, int64_t, const float*, int64_t, float*);
template void batch_configs<double>(const double*, int64_t, int64_t, int64_t, const double*, int64_t, double*);

}  // namespace bayesgrad
