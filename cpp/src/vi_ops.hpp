// The transcendental and Adam parts of the MFVI step's element-wise passes
// (internal to the core, included by vi_passes.hpp): ScalarOps (libm, the
// reference path) and Avx2Ops (simd_math.hpp); Avx512Ops in vi_ops512.hpp.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "bayesgrad/optim.hpp"
#include "bayesgrad/simd_math.hpp"

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

}  // namespace vi_passes
}  // namespace bayesgrad
