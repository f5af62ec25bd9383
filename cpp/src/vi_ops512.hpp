// AVX-512 versions of the MFVI step's element-wise operations (internal to the
// core, included by vi_passes.hpp): Avx512Ops, the policy of vi_ops.hpp on
// 512-bit vectors, and for float the fused passes of weight space with the
// Gaussian prior written as single loops over 16 parameters at a time
// (fused_pre_f32; fused_post_f32 for S = 1). Chosen at run time
// (simd::use_avx512()); the scalar libm path of vi_ops.hpp stays the reference
// they are tested against. docs/design.md, "MFVI step".
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "bayesgrad/optim.hpp"
#include "bayesgrad/simd_math.hpp"
#include "vi_ops.hpp"

namespace bayesgrad {
namespace vi_passes {

#if BG_HAVE_X86
// The KL's sums over float sigma, 16 lanes: quad += sigma^2 + mu^2 (summed in
// float per element, then in double lanes) and sum ln sigma without a log per
// element, as Avx2Ops::kl_sums: the exponents summed as integers, the
// mantissas in [1, 2) multiplied in double lanes and one log per 32 vectors
// (512 mantissas: a lane's product < 2^32, the 8 lanes of p0 p1 < 2^512).
// Only vectors whose sigma are all positive, normal and finite may be added.
// Members are set by init() (a constructor would not be compiled for AVX-512).
struct KlAcc16 {
  __m512d q, p0, p1;
  __m512i esum;
  int64_t cnt;

  BG_AVX512 void init() {
    q = _mm512_setzero_pd();
    p0 = p1 = _mm512_set1_pd(1.0);
    esum = _mm512_setzero_si512();
    cnt = 0;
  }
  BG_AVX512 void add(__m512 s, __m512 mu, double& logs) {
    const __m512i bits = _mm512_castps_si512(s);
    esum = _mm512_add_epi32(esum, _mm512_srli_epi32(bits, 23));
    const __m512 m = _mm512_castsi512_ps(
        _mm512_or_si512(_mm512_and_si512(bits, _mm512_set1_epi32(0x007fffff)), _mm512_set1_epi32(0x3f800000)));
    p0 = _mm512_mul_pd(p0, _mm512_cvtps_pd(_mm512_castps512_ps256(m)));
    p1 = _mm512_mul_pd(p1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(m, 1)));
    const __m512 q16 = _mm512_fmadd_ps(s, s, _mm512_mul_ps(mu, mu));
    q = _mm512_add_pd(q, _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(q16)),
                                       _mm512_cvtps_pd(_mm512_extractf32x8_ps(q16, 1))));
    if (++cnt == 32) flush(logs);
  }
  BG_AVX512 void flush(double& logs) {
    const int64_t et = _mm512_reduce_add_epi32(esum);  // a lane holds at most 32 exponents < 256
    logs += std::log(_mm512_reduce_mul_pd(_mm512_mul_pd(p0, p1))) + static_cast<double>(et - 127 * 16 * cnt) * kLn2;
    p0 = p1 = _mm512_set1_pd(1.0);
    esum = _mm512_setzero_si512();
    cnt = 0;
  }
  BG_AVX512 void finish(double& quad, double& logs) {
    if (cnt) flush(logs);
    quad += _mm512_reduce_add_pd(q);
    q = _mm512_setzero_pd();
  }
};

struct Avx512Ops {
  // 1 / d by the 14-bit estimate and one Newton step (about 1 ulp); d
  // positive, normal and finite.
  BG_AVX512 static __m512 rcp_nr(__m512 d) {
    const __m512 r = _mm512_rcp14_ps(d);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
  }
  // True for lanes whose sigma is not positive, normal and finite (0,
  // subnormal, negative, inf, NaN): these take the scalar (libm) path.
  BG_AVX512 static __mmask16 bad_sigma(__m512 s) {
    return _mm512_cmp_ps_mask(s, _mm512_set1_ps(1.17549435e-38f), _CMP_NGE_UQ) |
           _mm512_cmp_ps_mask(s, _mm512_set1_ps(3.40282347e+38f), _CMP_GT_OQ);
  }
  // sigma = softplus(r) and d sigma / d r of 16 floats, the steps of
  // Avx2Ops::softplus (e = exp(-|r|), u = 1 + e, one reciprocal of u for the
  // log1p correction and the logistic, ln u by the atanh series).
  BG_AVX512 static void softplus16(__m512 r, __m512& sigma, __m512& dsig) {
    const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
    const __m512 e = simd::expx16(_mm512_or_ps(r, _mm512_set1_ps(-0.0f)));  // exp(-|r|)
    const __m512 u = _mm512_add_ps(one, e);
    const __m512 ru = rcp_nr(u);
    const __m512 corr = _mm512_mul_ps(_mm512_sub_ps(e, _mm512_sub_ps(u, one)), ru);
    const __mmask16 big = _mm512_cmp_ps_mask(u, _mm512_set1_ps(1.41421356f), _CMP_GT_OQ);
    const __m512 m = _mm512_mask_mul_ps(u, big, u, _mm512_set1_ps(0.5f));
    const __m512 k = _mm512_maskz_mov_ps(big, one);
    const __m512 s = _mm512_mul_ps(_mm512_sub_ps(m, one), rcp_nr(_mm512_add_ps(m, one)));
    const __m512 z = _mm512_mul_ps(s, s);
    __m512 p = _mm512_set1_ps(1.0f / 9.0f);
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.0f / 7.0f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.0f / 5.0f));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.0f / 3.0f));
    p = _mm512_mul_ps(p, z);
    const __m512 two_s = _mm512_add_ps(s, s);
    const __m512 logm = _mm512_fmadd_ps(two_s, p, two_s);
    const __m512 lo = _mm512_fmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), logm);
    const __m512 lnu = _mm512_fmadd_ps(k, _mm512_set1_ps(0.693359375f), lo);
    sigma = _mm512_add_ps(_mm512_max_ps(r, zero), _mm512_add_ps(lnu, corr));
    const __mmask16 pos = _mm512_cmp_ps_mask(r, zero, _CMP_GE_OQ);
    dsig = _mm512_mul_ps(_mm512_mask_blend_ps(pos, e, one), ru);
  }
  BG_AVX512 static void softplus(const float* rho, float* sigma, float* dsig, int64_t n) {
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
      __m512 s, d;
      softplus16(_mm512_loadu_ps(rho + j), s, d);
      _mm512_storeu_ps(sigma + j, s);
      _mm512_storeu_ps(dsig + j, d);
    }
    ScalarOps::softplus(rho + j, sigma + j, dsig + j, n - j);
  }
  // double: Avx2Ops's steps (log1p with a division) on 8 lanes.
  BG_AVX512 static void softplus(const double* rho, double* sigma, double* dsig, int64_t n) {
    const __m512d zero = _mm512_setzero_pd(), one = _mm512_set1_pd(1.0);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      const __m512d r = _mm512_loadu_pd(rho + j);
      const __m512d e = simd::expx8d(_mm512_or_pd(r, _mm512_set1_pd(-0.0)));
      const __m512d u = _mm512_add_pd(one, e);
      const __m512d corr = _mm512_div_pd(_mm512_sub_pd(e, _mm512_sub_pd(u, one)), u);
      const __mmask8 nan = _mm512_cmp_pd_mask(e, e, _CMP_UNORD_Q);
      const __m512d l1p = _mm512_mask_blend_pd(nan, _mm512_add_pd(simd::logx8d(u), corr), e);
      _mm512_storeu_pd(sigma + j, _mm512_add_pd(_mm512_max_pd(r, zero), l1p));
      const __mmask8 pos = _mm512_cmp_pd_mask(r, zero, _CMP_GE_OQ);
      _mm512_storeu_pd(dsig + j, _mm512_div_pd(_mm512_mask_blend_pd(pos, e, one), u));
    }
    ScalarOps::softplus(rho + j, sigma + j, dsig + j, n - j);
  }
  BG_AVX512 static void kl_sums(const float* mu, const float* sigma, int64_t n, double& quad, double& logs) {
    KlAcc16 acc;
    acc.init();
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
      const __m512 s = _mm512_loadu_ps(sigma + k);
      if (bad_sigma(s)) {
        ScalarOps::kl_sums(mu + k, sigma + k, 16, quad, logs);
        continue;
      }
      acc.add(s, _mm512_loadu_ps(mu + k), logs);
    }
    acc.finish(quad, logs);
    ScalarOps::kl_sums(mu + k, sigma + k, n - k, quad, logs);
  }
  // double: mantissas in 8 double lanes, one log per 64 vectors (lanes < 2^64,
  // their product < 2^512).
  BG_AVX512 static void kl_sums(const double* mu, const double* sigma, int64_t n, double& quad, double& logs) {
    __m512d q = _mm512_setzero_pd(), p = _mm512_set1_pd(1.0);
    __m512i esum = _mm512_setzero_si512();
    int64_t cnt = 0, k = 0;
    for (; k + 8 <= n; k += 8) {
      const __m512d s = _mm512_loadu_pd(sigma + k);
      const __mmask8 bad = _mm512_cmp_pd_mask(s, _mm512_set1_pd(2.2250738585072014e-308), _CMP_NGE_UQ) |
                           _mm512_cmp_pd_mask(s, _mm512_set1_pd(1.7976931348623157e308), _CMP_GT_OQ);
      if (bad) {
        ScalarOps::kl_sums(mu + k, sigma + k, 8, quad, logs);
        continue;
      }
      const __m512i bits = _mm512_castpd_si512(s);
      esum = _mm512_add_epi64(esum, _mm512_srli_epi64(bits, 52));
      p = _mm512_mul_pd(p, _mm512_castsi512_pd(_mm512_or_si512(
                               _mm512_and_si512(bits, _mm512_set1_epi64(0x000FFFFFFFFFFFFFll)),
                               _mm512_set1_epi64(0x3FF0000000000000ll))));
      const __m512d m = _mm512_loadu_pd(mu + k);
      q = _mm512_add_pd(q, _mm512_add_pd(_mm512_mul_pd(s, s), _mm512_mul_pd(m, m)));
      if (++cnt == 64) {
        const int64_t et = _mm512_reduce_add_epi64(esum);
        logs += std::log(_mm512_reduce_mul_pd(p)) + static_cast<double>(et - 1023 * 8 * cnt) * kLn2;
        p = _mm512_set1_pd(1.0);
        esum = _mm512_setzero_si512();
        cnt = 0;
      }
    }
    if (cnt) {
      const int64_t et = _mm512_reduce_add_epi64(esum);
      logs += std::log(_mm512_reduce_mul_pd(p)) + static_cast<double>(et - 1023 * 8 * cnt) * kLn2;
    }
    quad += _mm512_reduce_add_pd(q);
    ScalarOps::kl_sums(mu + k, sigma + k, n - k, quad, logs);
  }
  // float: the bracket with 1 / sigma by rcp_nr; a vector with a sigma not
  // positive, normal and finite divides instead (1 / 0 = inf, as libm).
  BG_AVX512 static __m512 kl_rho16(__m512 s, __m512 ds, __m512 c, bool exact) {
    const __m512 inv = exact ? _mm512_div_ps(_mm512_set1_ps(1.0f), s) : rcp_nr(s);
    return _mm512_mul_ps(_mm512_fmsub_ps(s, c, inv), ds);
  }
  BG_AVX512 static void kl_rho(const float* sigma, const float* dsig, double inv_ps2, float* out, int64_t n) {
    const __m512 c = _mm512_set1_ps(static_cast<float>(inv_ps2));
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
      const __m512 s = _mm512_loadu_ps(sigma + k);
      _mm512_storeu_ps(out + k, kl_rho16(s, _mm512_loadu_ps(dsig + k), c, bad_sigma(s) != 0));
    }
    ScalarOps::kl_rho(sigma + k, dsig + k, inv_ps2, out + k, n - k);
  }
  // double: the scalar reference's operations (a true division) on 8 lanes.
  BG_AVX512 static void kl_rho(const double* sigma, const double* dsig, double inv_ps2, double* out, int64_t n) {
    const __m512d c = _mm512_set1_pd(inv_ps2), one = _mm512_set1_pd(1.0);
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
      const __m512d s = _mm512_loadu_pd(sigma + k);
      const __m512d b = _mm512_sub_pd(_mm512_mul_pd(s, c), _mm512_div_pd(one, s));
      _mm512_storeu_pd(out + k, _mm512_mul_pd(b, _mm512_loadu_pd(dsig + k)));
    }
    ScalarOps::kl_rho(sigma + k, dsig + k, inv_ps2, out + k, n - k);
  }
  BG_AVX512 static void kl_pass(const float* mu, const float* sigma, const float* dsig, double inv_ps2, float* kr,
                                int64_t n, double& quad, double& logs) {
    const __m512 c = _mm512_set1_ps(static_cast<float>(inv_ps2));
    KlAcc16 acc;
    acc.init();
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
      const __m512 s = _mm512_loadu_ps(sigma + k);
      if (bad_sigma(s)) {
        ScalarOps::kl_pass(mu + k, sigma + k, dsig + k, inv_ps2, kr + k, 16, quad, logs);
        continue;
      }
      _mm512_storeu_ps(kr + k, kl_rho16(s, _mm512_loadu_ps(dsig + k), c, false));
      acc.add(s, _mm512_loadu_ps(mu + k), logs);
    }
    acc.finish(quad, logs);
    ScalarOps::kl_pass(mu + k, sigma + k, dsig + k, inv_ps2, kr + k, n - k, quad, logs);
  }
  BG_AVX512 static void kl_pass(const double* mu, const double* sigma, const double* dsig, double inv_ps2,
                                double* kr, int64_t n, double& quad, double& logs) {
    kl_sums(mu, sigma, n, quad, logs);
    kl_rho(sigma, dsig, inv_ps2, kr, n);
  }
  // Adam (AdamCoeffs::update) on 16 / 8 lanes. float: the division by rcp_nr
  // (about 1 ulp), plain loads and stores for full vectors and masked ones for
  // the tail (a first version with masked loads and stores throughout and a
  // true division took about twice the time in the S = 1 post-pass on the AMD
  // core measured). double: a true division, masked lanes.
  template <bool Tail>
  BG_AVX512 static void adam16(float* p, __m512 g, float* m, float* v, __mmask16 live, const AdamCoeffs<float>& a) {
    const __m512 m0 = Tail ? _mm512_maskz_loadu_ps(live, m) : _mm512_loadu_ps(m);
    const __m512 v0 = Tail ? _mm512_maskz_loadu_ps(live, v) : _mm512_loadu_ps(v);
    const __m512 p0 = Tail ? _mm512_maskz_loadu_ps(live, p) : _mm512_loadu_ps(p);
    const __m512 mi = _mm512_fmadd_ps(_mm512_set1_ps(1.0f - a.b1), g, _mm512_mul_ps(_mm512_set1_ps(a.b1), m0));
    const __m512 vi =
        _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(1.0f - a.b2), g), g, _mm512_mul_ps(_mm512_set1_ps(a.b2), v0));
    const __m512 d = _mm512_fmadd_ps(_mm512_sqrt_ps(vi), _mm512_set1_ps(a.inv_sqrt_bc2), _mm512_set1_ps(a.eps));
    const __m512 p1 = _mm512_fnmadd_ps(_mm512_mul_ps(_mm512_set1_ps(a.lr_t), mi), rcp_nr(d), p0);
    if (Tail) {
      _mm512_mask_storeu_ps(m, live, mi);
      _mm512_mask_storeu_ps(v, live, vi);
      _mm512_mask_storeu_ps(p, live, p1);
    } else {
      _mm512_storeu_ps(m, mi);
      _mm512_storeu_ps(v, vi);
      _mm512_storeu_ps(p, p1);
    }
  }
  BG_AVX512 static void adam8(double* p, __m512d g, double* m, double* v, __mmask8 live,
                              const AdamCoeffs<double>& a) {
    const __m512d mi = _mm512_fmadd_pd(_mm512_set1_pd(1.0 - a.b1), g,
                                       _mm512_mul_pd(_mm512_set1_pd(a.b1), _mm512_maskz_loadu_pd(live, m)));
    const __m512d vi = _mm512_fmadd_pd(_mm512_mul_pd(_mm512_set1_pd(1.0 - a.b2), g), g,
                                       _mm512_mul_pd(_mm512_set1_pd(a.b2), _mm512_maskz_loadu_pd(live, v)));
    _mm512_mask_storeu_pd(m, live, mi);
    _mm512_mask_storeu_pd(v, live, vi);
    const __m512d d = _mm512_fmadd_pd(_mm512_sqrt_pd(vi), _mm512_set1_pd(a.inv_sqrt_bc2), _mm512_set1_pd(a.eps));
    const __m512d step = _mm512_div_pd(_mm512_mul_pd(_mm512_set1_pd(a.lr_t), mi), d);
    _mm512_mask_storeu_pd(p, live, _mm512_sub_pd(_mm512_maskz_loadu_pd(live, p), step));
  }
  BG_AVX512 static void adam(float* p, const float* g, float* m, float* v, int64_t n, const AdamCoeffs<float>& a) {
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) adam16<false>(p + k, _mm512_loadu_ps(g + k), m + k, v + k, 0xFFFF, a);
    if (k < n) {
      const __mmask16 live = static_cast<__mmask16>((1u << (n - k)) - 1);
      adam16<true>(p + k, _mm512_maskz_loadu_ps(live, g + k), m + k, v + k, live, a);
    }
  }
  BG_AVX512 static void adam(double* p, const double* g, double* m, double* v, int64_t n,
                             const AdamCoeffs<double>& a) {
    for (int64_t k = 0; k < n; k += 8) {
      const __mmask8 live = n - k >= 8 ? __mmask8(0xFF) : __mmask8((1u << (n - k)) - 1);
      adam8(p + k, _mm512_maskz_loadu_pd(live, g + k), m + k, v + k, live, a);
    }
  }

  // FusedPre's work on one piece of n parameters inside one block of the wide
  // layout, float, in one loop: softplus, the KL's sums (into acc, or the
  // scalar path for a vector with a sigma not positive, normal and finite),
  // kr, and sample 0's W = mu + sigma eps and ed = eps d sigma; sigma and
  // d sigma are stored only when sg is non-null (later samples need them).
  // The n % 16 tail runs the scalar path.
  BG_AVX512 static void fused_pre_f32(const float* mu, const float* rho, const float* eps, float* w, float* ed,
                                      float* kr, float* sg, float* ds, int64_t n, double inv_ps2, KlAcc16& acc,
                                      double& quad, double& logs) {
    const __m512 c = _mm512_set1_ps(static_cast<float>(inv_ps2));
    alignas(64) float ts[16], td[16];
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
      const __m512 m = _mm512_loadu_ps(mu + k);
      __m512 s, d;
      softplus16(_mm512_loadu_ps(rho + k), s, d);
      const __m512 e = _mm512_loadu_ps(eps + k);
      _mm512_storeu_ps(w + k, _mm512_fmadd_ps(s, e, m));
      _mm512_storeu_ps(ed + k, _mm512_mul_ps(e, d));
      if (sg) {
        _mm512_storeu_ps(sg + k, s);
        _mm512_storeu_ps(ds + k, d);
      }
      if (bad_sigma(s)) {
        _mm512_store_ps(ts, s);
        _mm512_store_ps(td, d);
        ScalarOps::kl_pass(mu + k, ts, td, inv_ps2, kr + k, 16, quad, logs);
        continue;
      }
      _mm512_storeu_ps(kr + k, kl_rho16(s, d, c, false));
      acc.add(s, m, logs);
    }
    const int64_t t = n - k;
    if (t == 0) return;
    ScalarOps::softplus(rho + k, ts, td, t);
    ScalarOps::kl_pass(mu + k, ts, td, inv_ps2, kr + k, t, quad, logs);
    for (int64_t i = 0; i < t; ++i) {
      w[k + i] = mu[k + i] + ts[i] * eps[k + i];
      ed[k + i] = eps[k + i] * td[i];
      if (sg) {
        sg[k + i] = ts[i];
        ds[k + i] = td[i];
      }
    }
  }

  // FusedPost's work on one piece of n parameters for S = 1, float, in one
  // loop with the gradients in registers: gm = gW + prior_prec mu and gr = gW
  // ed + klscale kr, then either stored into gmu / grho or the Adam update of
  // mu (moments mm, vm) and rho (mr, vr). (For S > 1 the blocked pass of
  // vi_passes.hpp, sums over samples first: one loop over all 2 S streams was
  // measured no faster at S = 10.) Full vectors use plain loads and stores,
  // the tail masked ones (see adam16).
  BG_AVX512 static void fused_post_f32(const float* gW, const float* ed, const float* kr, float* mu, float* rho,
                                       float* gmu, float* grho, float* mm, float* vm, float* mr, float* vr,
                                       int64_t n, float klscale, float prior_prec, const AdamCoeffs<float>& a) {
    const PostArgs q{gmu, grho, mm, vm, mr, vr, &a};
    const __m512 kls = _mm512_set1_ps(klscale), pp = _mm512_set1_ps(prior_prec);
    const int64_t full = n / 16 * 16;
    for (int64_t k = 0; k < full; k += 16) {
      const __m512 g = _mm512_loadu_ps(gW + k);
      const __m512 gm = _mm512_fmadd_ps(pp, _mm512_loadu_ps(mu + k), g);
      const __m512 gr = _mm512_fmadd_ps(g, _mm512_loadu_ps(ed + k), _mm512_mul_ps(kls, _mm512_loadu_ps(kr + k)));
      apply16<false>(q, k, mu, rho, gm, gr, 0xFFFF);
    }
    if (full == n) return;
    const __mmask16 tail = static_cast<__mmask16>((1u << (n - full)) - 1);
    const __m512 g = _mm512_maskz_loadu_ps(tail, gW + full);
    const __m512 gm = _mm512_fmadd_ps(pp, _mm512_maskz_loadu_ps(tail, mu + full), g);
    const __m512 gr = _mm512_fmadd_ps(g, _mm512_maskz_loadu_ps(tail, ed + full),
                                      _mm512_mul_ps(kls, _mm512_maskz_loadu_ps(tail, kr + full)));
    apply16<true>(q, full, mu, rho, gm, gr, tail);
  }
  // Where FusedPost's results go: gmu / grho (then the rest is null), or the
  // Adam moments of mu (mm, vm) and rho (mr, vr).
  struct PostArgs {
    float *gmu, *grho, *mm, *vm, *mr, *vr;
    const AdamCoeffs<float>* a;
  };
  template <bool Tail>
  BG_AVX512 static void apply16(const PostArgs& q, int64_t j, float* mu, float* rho, __m512 gm, __m512 gr,
                                __mmask16 live) {
    if (q.gmu) {
      if (Tail) {
        _mm512_mask_storeu_ps(q.gmu + j, live, gm);
        _mm512_mask_storeu_ps(q.grho + j, live, gr);
      } else {
        _mm512_storeu_ps(q.gmu + j, gm);
        _mm512_storeu_ps(q.grho + j, gr);
      }
      return;
    }
    adam16<Tail>(mu + j, gm, q.mm + j, q.vm + j, live, *q.a);
    adam16<Tail>(rho + j, gr, q.mr + j, q.vr + j, live, *q.a);
  }
};

// Whether Ops has the single-loop fused passes for T (Avx512Ops, float).
template <class Ops, typename T>
constexpr bool kFused512 = std::is_same<Ops, Avx512Ops>::value && std::is_same<T, float>::value;
#endif

}  // namespace vi_passes
}  // namespace bayesgrad
