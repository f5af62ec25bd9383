// The element-wise passes of the MFVI step over the P parameters (internal to
// the core, included by vi.cpp only): the transcendental operations as
// policies (ScalarOps: libm, the reference; Avx2Ops), the general passes
// before and after the forward / backward (PrePass, PostPass) and the fused
// ones of weight space with the Gaussian prior (FusedPre, FusedPost).
// docs/design.md, "MFVI step", says what each stores and why.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "bayesgrad/optim.hpp"
#include "bayesgrad/random.hpp"
#include "bayesgrad/simd_math.hpp"
#include "vi_layers.hpp"

namespace bayesgrad {
namespace vi_passes {

constexpr double kLn2 = 0.69314718055994530942;

// The transcendental parts of the element-wise passes, as a policy: Scalar
// (libm, the reference path) and Avx2 (simd_math.hpp). The passes themselves
// are written once (PrePass, PostPass::block_impl) and compiled twice: as is,
// and inlined (flatten) into a BG_AVX2 wrapper, where the plain loops
// vectorise 8 (float) / 4 (double) lanes wide and the Avx2 ops are inlined.
struct ScalarOps {
  // sigma = softplus(rho) = log1p(exp(rho)) and its derivative, the logistic,
  // sharing one exp: both from e = exp(-|rho|), stable for either sign.
  template <typename T>
  static void softplus(const T* rho, T* sigma, T* dsig, int64_t n) {
    for (int64_t j = 0; j < n; ++j) {
      const T r = rho[j];
      const T e = std::exp(-std::abs(r));
      sigma[j] = (r > T(0) ? r : T(0)) + std::log1p(e);
      dsig[j] = (r >= T(0) ? T(1) : e) / (T(1) + e);
    }
  }
  // The sums of the Gaussian KL in double: quad += sum_j sigma_j^2 + mu_j^2,
  // logs += sum_j ln sigma_j.
  template <typename T>
  static void kl_sums(const T* mu, const T* sigma, int64_t n, double& quad, double& logs) {
    for (int64_t k = 0; k < n; ++k) {
      const double md = mu[k], sd = sigma[k];
      quad += sd * sd + md * md;
      logs += static_cast<double>(std::log(sigma[k]));
    }
  }
  // out = d KL / d rho = (sigma / prior_sigma^2 - 1 / sigma) dsig, the
  // bracket in double as the float64 reference computes it.
  template <typename T>
  static void kl_rho(const T* sigma, const T* dsig, double inv_ps2, T* out, int64_t n) {
    for (int64_t k = 0; k < n; ++k) {
      const double sd = sigma[k];
      out[k] = static_cast<T>(sd * inv_ps2 - 1.0 / sd) * dsig[k];
    }
  }
  template <typename T>
  static void adam(T* p, const T* g, T* m, T* v, int64_t n, const AdamCoeffs<T>& a) {
    for (int64_t k = 0; k < n; ++k) a.update(p[k], g[k], m[k], v[k]);
  }
  // kl_sums and kl_rho in one pass (FusedPre).
  template <typename T>
  static void kl_pass(const T* mu, const T* sigma, const T* dsig, double inv_ps2, T* kr, int64_t n, double& quad,
                      double& logs) {
    kl_sums(mu, sigma, n, quad, logs);
    kl_rho(sigma, dsig, inv_ps2, kr, n);
  }
};

#if BG_HAVE_X86
struct Avx2Ops {
  // 1 / d by the 12-bit estimate and one Newton step (about 2 ulp): the
  // passes below divide several times per parameter, and a division costs
  // several times a multiply-add. d must be positive, normal and finite.
  BG_AVX2 static __m256 rcp_nr(__m256 d) {
    const __m256 r = _mm256_rcp_ps(d);
    return _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, _mm256_set1_ps(2.0f)));
  }
  // float: e = exp(-|r|), u = 1 + e in [1, 2] and one reciprocal of u for
  // both the log1p correction (Goldberg: (e - (u - 1)) / u) and the logistic
  // e / u or 1 / u; ln u as simd::logx8 computes it (same reduction and
  // series) with (m - 1) / (m + 1) through rcp_nr instead of a division.
  BG_AVX2 static void softplus(const float* rho, float* sigma, float* dsig, int64_t n) {
    const __m256 neg = _mm256_set1_ps(-0.0f), zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      const __m256 r = _mm256_loadu_ps(rho + j);
      const __m256 e = simd::expx8(_mm256_or_ps(r, neg));  // exp(-|r|)
      const __m256 u = _mm256_add_ps(one, e);
      const __m256 ru = rcp_nr(u);
      const __m256 corr = _mm256_mul_ps(_mm256_sub_ps(e, _mm256_sub_ps(u, one)), ru);
      const __m256 big = _mm256_cmp_ps(u, _mm256_set1_ps(1.41421356f), _CMP_GT_OQ);
      const __m256 m = _mm256_blendv_ps(u, _mm256_mul_ps(u, _mm256_set1_ps(0.5f)), big);
      const __m256 k = _mm256_and_ps(big, one);
      const __m256 s = _mm256_mul_ps(_mm256_sub_ps(m, one), rcp_nr(_mm256_add_ps(m, one)));
      const __m256 z = _mm256_mul_ps(s, s);
      __m256 p = _mm256_set1_ps(1.0f / 9.0f);
      p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.0f / 7.0f));
      p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.0f / 5.0f));
      p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.0f / 3.0f));
      p = _mm256_mul_ps(p, z);
      const __m256 two_s = _mm256_add_ps(s, s);
      const __m256 logm = _mm256_fmadd_ps(two_s, p, two_s);
      const __m256 lo = _mm256_fmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), logm);
      const __m256 lnu = _mm256_fmadd_ps(k, _mm256_set1_ps(0.693359375f), lo);
      _mm256_storeu_ps(sigma + j, _mm256_add_ps(_mm256_max_ps(r, zero), _mm256_add_ps(lnu, corr)));
      const __m256 num = _mm256_blendv_ps(e, one, _mm256_cmp_ps(r, zero, _CMP_GE_OQ));
      _mm256_storeu_ps(dsig + j, _mm256_mul_ps(num, ru));
    }
    ScalarOps::softplus(rho + j, sigma + j, dsig + j, n - j);
  }
  BG_AVX2 static void softplus(const double* rho, double* sigma, double* dsig, int64_t n) {
    const __m256d neg = _mm256_set1_pd(-0.0), zero = _mm256_setzero_pd(), one = _mm256_set1_pd(1.0);
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
      const __m256d r = _mm256_loadu_pd(rho + j);
      const __m256d e = simd::expx4(_mm256_or_pd(r, neg));
      _mm256_storeu_pd(sigma + j, _mm256_add_pd(_mm256_max_pd(r, zero), simd::log1px4(e)));
      const __m256d num = _mm256_blendv_pd(e, one, _mm256_cmp_pd(r, zero, _CMP_GE_OQ));
      _mm256_storeu_pd(dsig + j, _mm256_div_pd(num, _mm256_add_pd(one, e)));
    }
    ScalarOps::softplus(rho + j, sigma + j, dsig + j, n - j);
  }
  // sum ln sigma without a log per element: sigma = 2^e m, m in [1, 2); the
  // exponents are summed as integers and the mantissas multiplied in double
  // lanes, one log per 64 vectors (a lane's product stays below 2^64, all
  // lanes' below 2^512; relative error about 64 ulp of double, far below the
  // float KL's). Lanes with sigma not positive, normal and finite (0,
  // subnormal, inf, NaN) take the scalar path, so that log 0 = -inf and NaN
  // come out as with libm. quad: lane sums in double, then the lanes.
  BG_AVX2 static void kl_sums(const float* mu, const float* sigma, int64_t n, double& quad, double& logs) {
    __m256d q = _mm256_setzero_pd();
    const __m256 lo = _mm256_set1_ps(1.17549435e-38f), hi = _mm256_set1_ps(3.40282347e+38f);
    const __m256i mant = _mm256_set1_epi32(0x007fffff), one_bits = _mm256_set1_epi32(0x3f800000);
    __m256d p0 = _mm256_set1_pd(1.0), p1 = _mm256_set1_pd(1.0);
    __m256i esum = _mm256_setzero_si256();
    int64_t cnt = 0, k = 0;
    for (; k + 8 <= n; k += 8) {
      const __m256 s = _mm256_loadu_ps(sigma + k);
      const __m256 bad = _mm256_or_ps(_mm256_cmp_ps(s, lo, _CMP_NGE_UQ), _mm256_cmp_ps(s, hi, _CMP_GT_OQ));
      if (_mm256_movemask_ps(bad)) {
        ScalarOps::kl_sums(mu + k, sigma + k, 8, quad, logs);
        continue;
      }
      const __m256i bits = _mm256_castps_si256(s);
      esum = _mm256_add_epi32(esum, _mm256_srli_epi32(bits, 23));
      const __m256 m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(bits, mant), one_bits));
      p0 = _mm256_mul_pd(p0, _mm256_cvtps_pd(_mm256_castps256_ps128(m)));
      p1 = _mm256_mul_pd(p1, _mm256_cvtps_pd(_mm256_extractf128_ps(m, 1)));
      const __m256 mu8 = _mm256_loadu_ps(mu + k);
      for (int h = 0; h < 2; ++h) {
        const __m256d sd = _mm256_cvtps_pd(h ? _mm256_extractf128_ps(s, 1) : _mm256_castps256_ps128(s));
        const __m256d md = _mm256_cvtps_pd(h ? _mm256_extractf128_ps(mu8, 1) : _mm256_castps256_ps128(mu8));
        q = _mm256_add_pd(q, _mm256_add_pd(_mm256_mul_pd(sd, sd), _mm256_mul_pd(md, md)));
      }
      if (++cnt == 64) flush_f32(p0, p1, esum, cnt, logs);
    }
    if (cnt) flush_f32(p0, p1, esum, cnt, logs);
    quad += hsum(q);
    ScalarOps::kl_sums(mu + k, sigma + k, n - k, quad, logs);
  }
  BG_AVX2 static void flush_f32(__m256d& p0, __m256d& p1, __m256i& esum, int64_t& cnt, double& logs) {
    alignas(32) int32_t ei[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(ei), esum);
    int64_t et = 0;
    for (int i = 0; i < 8; ++i) et += ei[i];
    logs += std::log(hsum_mul(_mm256_mul_pd(p0, p1))) + static_cast<double>(et - 127 * 8 * cnt) * kLn2;
    p0 = p1 = _mm256_set1_pd(1.0);
    esum = _mm256_setzero_si256();
    cnt = 0;
  }
  BG_AVX2 static void flush_f64(__m256d& p, __m256i& esum, int64_t& cnt, double& logs) {
    alignas(32) int64_t ei[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(ei), esum);
    const int64_t et = ei[0] + ei[1] + ei[2] + ei[3];
    logs += std::log(hsum_mul(p)) + static_cast<double>(et - 1023 * 4 * cnt) * kLn2;
    p = _mm256_set1_pd(1.0);
    esum = _mm256_setzero_si256();
    cnt = 0;
  }
  BG_AVX2 static void kl_sums(const double* mu, const double* sigma, int64_t n, double& quad, double& logs) {
    __m256d q = _mm256_setzero_pd();
    const __m256d lo = _mm256_set1_pd(2.2250738585072014e-308), hi = _mm256_set1_pd(1.7976931348623157e308);
    const __m256i mant = _mm256_set1_epi64x(0x000FFFFFFFFFFFFFll), one_bits = _mm256_set1_epi64x(0x3FF0000000000000ll);
    __m256d p = _mm256_set1_pd(1.0);
    __m256i esum = _mm256_setzero_si256();
    int64_t cnt = 0, k = 0;
    for (; k + 4 <= n; k += 4) {
      const __m256d s = _mm256_loadu_pd(sigma + k);
      const __m256d bad = _mm256_or_pd(_mm256_cmp_pd(s, lo, _CMP_NGE_UQ), _mm256_cmp_pd(s, hi, _CMP_GT_OQ));
      if (_mm256_movemask_pd(bad)) {
        ScalarOps::kl_sums(mu + k, sigma + k, 4, quad, logs);
        continue;
      }
      const __m256i bits = _mm256_castpd_si256(s);
      esum = _mm256_add_epi64(esum, _mm256_srli_epi64(bits, 52));
      p = _mm256_mul_pd(p, _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(bits, mant), one_bits)));
      const __m256d m = _mm256_loadu_pd(mu + k);
      q = _mm256_add_pd(q, _mm256_add_pd(_mm256_mul_pd(s, s), _mm256_mul_pd(m, m)));
      if (++cnt == 64) flush_f64(p, esum, cnt, logs);
    }
    if (cnt) flush_f64(p, esum, cnt, logs);
    quad += hsum(q);
    ScalarOps::kl_sums(mu + k, sigma + k, n - k, quad, logs);
  }
  // float: the bracket in float with 1 / sigma by rcp_nr; a vector with any
  // sigma not positive, normal and finite divides instead (1 / 0 = inf).
  BG_AVX2 static void kl_rho(const float* sigma, const float* dsig, double inv_ps2, float* out, int64_t n) {
    const __m256 c = _mm256_set1_ps(static_cast<float>(inv_ps2));
    const __m256 lo = _mm256_set1_ps(1.17549435e-38f), hi = _mm256_set1_ps(3.40282347e+38f);
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
      const __m256 s = _mm256_loadu_ps(sigma + k);
      const __m256 bad = _mm256_or_ps(_mm256_cmp_ps(s, lo, _CMP_NGE_UQ), _mm256_cmp_ps(s, hi, _CMP_GT_OQ));
      const __m256 inv = _mm256_movemask_ps(bad) ? _mm256_div_ps(_mm256_set1_ps(1.0f), s) : rcp_nr(s);
      _mm256_storeu_ps(out + k, _mm256_mul_ps(_mm256_fmsub_ps(s, c, inv), _mm256_loadu_ps(dsig + k)));
    }
    ScalarOps::kl_rho(sigma + k, dsig + k, inv_ps2, out + k, n - k);
  }
  BG_AVX2 static void kl_rho(const double* sigma, const double* dsig, double inv_ps2, double* out, int64_t n) {
    ScalarOps::kl_rho(sigma, dsig, inv_ps2, out, n);
  }
  // float kl_sums and kl_rho in one loop over sigma (the squares summed in
  // float per element, then in double lanes).
  BG_AVX2 static void kl_pass(const float* mu, const float* sigma, const float* dsig, double inv_ps2, float* kr,
                              int64_t n, double& quad, double& logs) {
    __m256d q = _mm256_setzero_pd();
    const __m256 lo = _mm256_set1_ps(1.17549435e-38f), hi = _mm256_set1_ps(3.40282347e+38f);
    const __m256 c = _mm256_set1_ps(static_cast<float>(inv_ps2));
    const __m256i mant = _mm256_set1_epi32(0x007fffff), one_bits = _mm256_set1_epi32(0x3f800000);
    __m256d p0 = _mm256_set1_pd(1.0), p1 = _mm256_set1_pd(1.0);
    __m256i esum = _mm256_setzero_si256();
    int64_t cnt = 0, k = 0;
    for (; k + 8 <= n; k += 8) {
      const __m256 s = _mm256_loadu_ps(sigma + k);
      const __m256 bad = _mm256_or_ps(_mm256_cmp_ps(s, lo, _CMP_NGE_UQ), _mm256_cmp_ps(s, hi, _CMP_GT_OQ));
      if (_mm256_movemask_ps(bad)) {
        ScalarOps::kl_pass(mu + k, sigma + k, dsig + k, inv_ps2, kr + k, 8, quad, logs);
        continue;
      }
      _mm256_storeu_ps(kr + k, _mm256_mul_ps(_mm256_fmsub_ps(s, c, rcp_nr(s)), _mm256_loadu_ps(dsig + k)));
      const __m256i bits = _mm256_castps_si256(s);
      esum = _mm256_add_epi32(esum, _mm256_srli_epi32(bits, 23));
      const __m256 m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(bits, mant), one_bits));
      p0 = _mm256_mul_pd(p0, _mm256_cvtps_pd(_mm256_castps256_ps128(m)));
      p1 = _mm256_mul_pd(p1, _mm256_cvtps_pd(_mm256_extractf128_ps(m, 1)));
      const __m256 mu8 = _mm256_loadu_ps(mu + k);
      const __m256 q8 = _mm256_fmadd_ps(s, s, _mm256_mul_ps(mu8, mu8));
      q = _mm256_add_pd(q, _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(q8)),
                                         _mm256_cvtps_pd(_mm256_extractf128_ps(q8, 1))));
      if (++cnt == 64) flush_f32(p0, p1, esum, cnt, logs);
    }
    if (cnt) flush_f32(p0, p1, esum, cnt, logs);
    quad += hsum(q);
    ScalarOps::kl_pass(mu + k, sigma + k, dsig + k, inv_ps2, kr + k, n - k, quad, logs);
  }
  BG_AVX2 static void kl_pass(const double* mu, const double* sigma, const double* dsig, double inv_ps2, double* kr,
                              int64_t n, double& quad, double& logs) {
    kl_sums(mu, sigma, n, quad, logs);
    kl_rho(sigma, dsig, inv_ps2, kr, n);
  }
  // float Adam: AdamCoeffs::update with the division by rcp_nr.
  BG_AVX2 static void adam(float* p, const float* g, float* m, float* v, int64_t n, const AdamCoeffs<float>& a) {
    const __m256 b1 = _mm256_set1_ps(a.b1), c1 = _mm256_set1_ps(1.0f - a.b1), b2 = _mm256_set1_ps(a.b2),
                 c2 = _mm256_set1_ps(1.0f - a.b2), lr = _mm256_set1_ps(a.lr_t), ib = _mm256_set1_ps(a.inv_sqrt_bc2),
                 ep = _mm256_set1_ps(a.eps);
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
      const __m256 gk = _mm256_loadu_ps(g + k);
      const __m256 mi = _mm256_fmadd_ps(c1, gk, _mm256_mul_ps(b1, _mm256_loadu_ps(m + k)));
      const __m256 vi = _mm256_fmadd_ps(_mm256_mul_ps(c2, gk), gk, _mm256_mul_ps(b2, _mm256_loadu_ps(v + k)));
      _mm256_storeu_ps(m + k, mi);
      _mm256_storeu_ps(v + k, vi);
      const __m256 d = _mm256_fmadd_ps(_mm256_sqrt_ps(vi), ib, ep);
      _mm256_storeu_ps(p + k, _mm256_fnmadd_ps(_mm256_mul_ps(lr, mi), rcp_nr(d), _mm256_loadu_ps(p + k)));
    }
    ScalarOps::adam(p + k, g + k, m + k, v + k, n - k, a);
  }
  BG_AVX2 static void adam(double* p, const double* g, double* m, double* v, int64_t n, const AdamCoeffs<double>& a) {
    ScalarOps::adam(p, g, m, v, n, a);
  }
  BG_AVX2 static double hsum(__m256d a) {
    alignas(32) double t[4];
    _mm256_store_pd(t, a);
    return (t[0] + t[1]) + (t[2] + t[3]);
  }
  BG_AVX2 static double hsum_mul(__m256d a) {
    alignas(32) double t[4];
    _mm256_store_pd(t, a);
    return (t[0] * t[1]) * (t[2] * t[3]);
  }
};
#endif

// The pass before the forward pass over parameters [j0, j1): sigma =
// softplus(rho), d sigma / d rho, the draws eps_s of these parameters (when
// eps is non-null: elements s P + j of the step's normals, drawn here chunk
// by chunk with the values fill_normal gives) and (S > 0, weight space) the
// sampled weights W_s = mu + sigma eps_s.
template <typename T>
struct PrePass {
  int64_t P, S, S_eps;
  const T *mu, *rho;
  T *eps, *sigma, *dsig, *W;
  uint64_t seed, stream;

  void run(int64_t j0, int64_t j1) const {
#if BG_HAVE_X86
    if (simd::use_avx2()) return run_avx2(j0, j1);
#endif
    run_impl<ScalarOps>(j0, j1);
  }
#if BG_HAVE_X86
  BG_AVX2 __attribute__((flatten)) void run_avx2(int64_t j0, int64_t j1) const { run_impl<Avx2Ops>(j0, j1); }
#endif

  template <class Ops>
  void run_impl(int64_t j0, int64_t j1) const {
    Ops::softplus(rho + j0, sigma + j0, dsig + j0, j1 - j0);
    const uint64_t total = static_cast<uint64_t>(S_eps * P);
    if (j0 == 0 && j1 == P)  // one chunk: the whole draw at once (no part-filled groups at sample boundaries)
      normal_piece<T>(eps, 0, total, 0, total, seed, stream);
    else
      for (int64_t s = 0; s < S_eps; ++s)
        normal_piece<T>(eps + s * P + j0, static_cast<uint64_t>(s * P + j0), static_cast<uint64_t>(s * P + j1), 0,
                        total, seed, stream);
    const T* __restrict m = mu + j0;
    const T* __restrict sg = sigma + j0;
    for (int64_t s = 0; s < S; ++s) {
      const T* __restrict e = eps + s * P + j0;
      T* __restrict w = W + s * P + j0;
      for (int64_t j = 0; j < j1 - j0; ++j) w[j] = m[j] + sg[j] * e[j];
    }
  }
};

// Weight space with the Gaussian prior, the common case, in two passes that
// keep to the fewest bytes per parameter (memory traffic, not arithmetic,
// bounds these passes). Before the forward pass, over a chunk: sigma and
// d sigma / d rho (scratch of the chunk), the KL's sums, kr = d KL / d rho,
// and per sample the draws eps_s (scratch), W_s = mu + sigma eps_s and
// ed_s = eps_s d sigma / d rho: the gradient w.r.t. rho is then
// sum_s gW_s ed_s + klscale kr, so that neither eps, sigma nor d sigma is
// stored for the pass after the backward pass. W, ed and the gradients gW
// are in the wide layout of vi_layers.hpp (first layer one GEMM for all S).
template <typename T>
struct FusedPre {
  const mlp::Layout* L;
  int64_t P, S;
  const T *mu, *rho;
  T *W, *ed, *kr;
  double inv_ps2;
  uint64_t seed, stream;

  // Returns the chunk's sums (sum sigma^2 + mu^2, sum ln sigma).
  void run(int64_t j0, int64_t j1, double& quad, double& logs) const {
#if BG_HAVE_X86
    if (simd::use_avx2()) return run_avx2(j0, j1, quad, logs);
#endif
    run_impl<ScalarOps>(j0, j1, quad, logs);
  }
#if BG_HAVE_X86
  BG_AVX2 __attribute__((flatten)) void run_avx2(int64_t j0, int64_t j1, double& quad, double& logs) const {
    run_impl<Avx2Ops>(j0, j1, quad, logs);
  }
#endif

  template <class Ops>
  void run_impl(int64_t j0, int64_t j1, double& quad, double& logs) const {
    const int64_t n = j1 - j0;
    // Scratch of the chunk; with one chunk (small networks) the draws of every
    // sample at once (no part-filled groups at sample boundaries).
    const bool whole = j0 == 0 && j1 == P;
    static thread_local std::vector<T> scratch;
    scratch.resize(2 * kElementChunk + (whole ? S * P : kElementChunk));
    T* __restrict sg = scratch.data();
    T* __restrict ds = sg + kElementChunk;
    T* __restrict e0 = ds + kElementChunk;
    const uint64_t total = static_cast<uint64_t>(S * P);
    if (whole) normal_piece<T>(e0, 0, total, 0, total, seed, stream);
    Ops::softplus(rho + j0, sg, ds, n);
    Ops::kl_pass(mu + j0, sg, ds, inv_ps2, kr + j0, n, quad, logs);
    const T* __restrict m = mu + j0;
    for (int64_t s = 0; s < S; ++s) {
      const T* __restrict e = whole ? e0 + s * P : e0;
      if (!whole)
        normal_piece<T>(e0, static_cast<uint64_t>(s * P + j0), static_cast<uint64_t>(s * P + j1), 0, total, seed,
                        stream);
      vi_layers::for_blocks(*L, j0, j1, [&](int64_t a, int64_t b, int64_t seg, int64_t len) {
        // W and ed in the wide layout (vi_layers.hpp); k indexes the chunk's scratch
        T* __restrict w = W + (S * seg + s * len + (a - seg));
        T* __restrict d = ed + (S * seg + s * len + (a - seg));
        const int64_t k0 = a - j0;
        for (int64_t k = 0; k < b - a; ++k) {
          w[k] = m[k0 + k] + sg[k0 + k] * e[k0 + k];
          d[k] = e[k0 + k] * ds[k0 + k];
        }
      });
    }
  }
};

// The pass after the backward pass over parameters [j0, j1), in blocks small
// enough for stack buffers, written as simple loops the compiler vectorises
// (the only calls left are the logs of the KL): gradients w.r.t. mu and
// sigma (sums over the S samples, or the stochastic-layer gradients g2), the
// KL (Gaussian prior closed form, or the precomputed Monte Carlo gradient kg),
// the chain rule through softplus, then either the gradient into grad or the
// Adam update of mu and rho. Returns the KL of the block (Gaussian prior).
constexpr int64_t kPostBlock = 256;

template <typename T>
struct PostPass {
  int64_t P, S;  // S = 0: gradients come from g2 (stochastic layers)
  const T *gW, *eps, *g2, *kg, *sigma, *dsig;
  T *mu, *rho, *grad, *m, *v;
  T klscale;
  double inv_ps2, log_ps;
  const AdamCoeffs<T>* adam;

  double block(int64_t j0, int64_t j1) const {
#if BG_HAVE_X86
    if (simd::use_avx2()) return block_avx2(j0, j1);
#endif
    return block_impl<ScalarOps>(j0, j1);
  }
#if BG_HAVE_X86
  BG_AVX2 __attribute__((flatten)) double block_avx2(int64_t j0, int64_t j1) const {
    return block_impl<Avx2Ops>(j0, j1);
  }
#endif

  template <class Ops>
  double block_impl(int64_t j0, int64_t j1) const {
    const int64_t n = j1 - j0;
    T gm[kPostBlock], gs[kPostBlock];
    const T* __restrict sg = sigma + j0;
    const T* __restrict mj = mu + j0;
    if (S > 0) {
      for (int64_t k = 0; k < n; ++k) gm[k] = gs[k] = T(0);
      for (int64_t s = 0; s < S; ++s) {
        const T* __restrict g = gW + s * P + j0;
        const T* __restrict e = eps + s * P + j0;
        for (int64_t k = 0; k < n; ++k) {
          gm[k] += g[k];
          gs[k] += g[k] * e[k];
        }
      }
    } else {
      std::copy(g2 + j0, g2 + j1, gm);
      std::copy(g2 + P + j0, g2 + P + j1, gs);
    }
    double kl = 0.0;
    if (kg == nullptr) {
      // KL(N(mu, sigma^2) || N(0, prior_sigma^2)) summed; its gradient in double as the float64 reference does.
      double quad = 0.0, logs = 0.0;
      Ops::kl_sums(mj, sg, n, quad, logs);
      kl = static_cast<double>(n) * (log_ps - 0.5) - logs + 0.5 * quad * inv_ps2;
      for (int64_t k = 0; k < n; ++k) {
        const double md = mj[k], sd = sg[k];
        gm[k] += klscale * static_cast<T>(md * inv_ps2);
        gs[k] += klscale * static_cast<T>(sd * inv_ps2 - 1.0 / sd);
      }
    } else {
      for (int64_t k = 0; k < n; ++k) {
        gm[k] += kg[j0 + k];
        gs[k] += kg[P + j0 + k];
      }
    }
    const T* __restrict ds = dsig + j0;
    for (int64_t k = 0; k < n; ++k) gs[k] *= ds[k];
    if (grad) {
      std::copy(gm, gm + n, grad + j0);
      std::copy(gs, gs + n, grad + P + j0);
      return kl;
    }
    Ops::adam(mu + j0, gm, m + j0, v + j0, n, *adam);
    Ops::adam(rho + j0, gs, m + P + j0, v + P + j0, n, *adam);
    return kl;
  }
};

// The pass after the backward pass of FusedPre's case over parameters [j0,
// j1), in blocks: gm = sum_s gW_s + klscale mu / prior_sigma^2, gr = sum_s
// gW_s ed_s + klscale kr, then either the gradient into grad or the Adam
// update of mu and rho.
template <typename T>
struct FusedPost {
  int64_t P, S;
  int64_t base, len;  // sample s of parameter j at base + s len + j (wide layout, the block being run)
  const T *gW, *ed, *kr;
  T *mu, *rho, *grad, *m, *v;
  T klscale, prior_prec;  // prior_prec = klscale / prior_sigma^2
  const AdamCoeffs<T>* adam;

  void block(int64_t j0, int64_t j1) const {
#if BG_HAVE_X86
    if (simd::use_avx2()) return block_avx2(j0, j1);
#endif
    block_impl<ScalarOps>(j0, j1);
  }
#if BG_HAVE_X86
  BG_AVX2 __attribute__((flatten)) void block_avx2(int64_t j0, int64_t j1) const { block_impl<Avx2Ops>(j0, j1); }
#endif

  template <class Ops>
  void block_impl(int64_t j0, int64_t j1) const {
    const int64_t n = j1 - j0;
    T gm[kPostBlock], gr[kPostBlock];
    const T* __restrict mj = mu + j0;
    const T* __restrict k0 = kr + j0;
    {
      const T* __restrict g = gW + base + j0;
      const T* __restrict d = ed + base + j0;
      for (int64_t k = 0; k < n; ++k) {
        gm[k] = g[k] + prior_prec * mj[k];
        gr[k] = g[k] * d[k] + klscale * k0[k];
      }
    }
    for (int64_t s = 1; s < S; ++s) {
      const T* __restrict g = gW + base + s * len + j0;
      const T* __restrict d = ed + base + s * len + j0;
      for (int64_t k = 0; k < n; ++k) {
        gm[k] += g[k];
        gr[k] += g[k] * d[k];
      }
    }
    if (grad) {
      std::copy(gm, gm + n, grad + j0);
      std::copy(gr, gr + n, grad + P + j0);
      return;
    }
    Ops::adam(mu + j0, gm, m + j0, v + j0, n, *adam);
    Ops::adam(rho + j0, gr, m + P + j0, v + P + j0, n, *adam);
  }
};


}  // namespace vi_passes
}  // namespace bayesgrad
