// Vector math for the SIMD paths of the core: log, log1p, sin/cos of 2*pi*u and exp
// in float32 (8 lanes) and float64 (4 lanes) for AVX2, log, sin/cos, exp and
// (float64) log1p on 512-bit vectors for AVX-512, plus the runtime CPU checks and path choice.
//
// libm has no vector entry points without -ffast-math, which docs/design.md rules
// out, so these are written here once and shared by every kernel (random,
// distributions, metrics, acquisition). Each is accurate to about 1 ulp over
// the domain its callers use (stated per function); every caller keeps a
// scalar libm path as the reference for CPUs without AVX2.
//
// The functions carry __attribute__((target("avx2,fma"))) (BG_AVX2) so that
// the rest of a translation unit is compiled for baseline x86-64; call them
// only from BG_AVX2 functions and only when use_avx2() is true.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
// GCC 12's AVX-512 intrinsics pass an undefined vector as the merge source of
// unmasked operations, which -Wuninitialized reports at every use (GCC bug
// 105593, fixed in 13); the diagnostic is silenced for the header's own lines.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif
#define BG_HAVE_X86 1
#define BG_AVX2 __attribute__((target("avx2,fma")))
// AVX-512 paths need F (512-bit float/int), DQ (64-bit int <-> double, float
// logic), BW and VL (the 256-bit helpers they share with the AVX2 path).
#define BG_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")))
#else
#define BG_HAVE_X86 0
#define BG_AVX2
#define BG_AVX512
#endif

namespace bayesgrad {
namespace simd {

// 1 / j! for j = 0..14 (the exp and expm1 series).
inline constexpr double kInvFact[15] = {1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040,
                                        1.0 / 40320, 1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800,
                                        1.0 / 479001600, 1.0 / 6227020800.0, 1.0 / 87178291200.0};

// SIMD paths, from the reference up; a kernel takes the best one the CPU has,
// capped by path_limit().
enum Path : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

// True when the CPU has AVX2 and FMA (checked once).
inline bool cpu_has_avx2() {
#if BG_HAVE_X86
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

// True when the CPU has AVX-512 F/DQ/BW/VL (checked once).
inline bool cpu_has_avx512() {
#if BG_HAVE_X86
  static const bool ok = cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
                         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl");
  return ok;
#else
  return false;
#endif
}

// The highest path kernels may take: BAYESGRAD_SIMD=scalar|avx2|avx512 at
// load (so the whole suite can run on each path), changed from Python under
// the GIL between kernel calls (random.simd_limit, the test harness).
inline int& path_limit() {
  static int lim = [] {
    const char* e = std::getenv("BAYESGRAD_SIMD");
    if (e == nullptr || *e == '\0') return static_cast<int>(kAvx512);
    if (std::strcmp(e, "scalar") == 0) return static_cast<int>(kScalar);
    if (std::strcmp(e, "avx2") == 0) return static_cast<int>(kAvx2);
    return static_cast<int>(kAvx512);
  }();
  return lim;
}

// Whether kernels should take their AVX2 (AVX-512) path now.
inline bool use_avx2() { return cpu_has_avx2() && path_limit() >= kAvx2; }
inline bool use_avx512() { return cpu_has_avx512() && path_limit() >= kAvx512; }

// The path kernels with an AVX-512 version take now.
inline int active_path() { return use_avx512() ? kAvx512 : use_avx2() ? kAvx2 : kScalar; }

#if BG_HAVE_X86
// ln u for normal positive u (not 0, inf, NaN or subnormal): u = 2^e m with
// m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716,
// series to s^9; ln 2 split so that e * ln2_hi is exact for |e| < 2^9.
BG_AVX2 inline __m256 logx8(__m256 u) {
  const __m256i bits = _mm256_castps_si256(u);
  __m256 e = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(127)));
  __m256 m = _mm256_castsi256_ps(
      _mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x3f800000)));
  const __m256 big = _mm256_cmp_ps(m, _mm256_set1_ps(1.41421356f), _CMP_GT_OQ);
  m = _mm256_blendv_ps(m, _mm256_mul_ps(m, _mm256_set1_ps(0.5f)), big);
  e = _mm256_add_ps(e, _mm256_and_ps(big, _mm256_set1_ps(1.0f)));
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 s = _mm256_div_ps(_mm256_sub_ps(m, one), _mm256_add_ps(m, one));
  const __m256 z = _mm256_mul_ps(s, s);
  __m256 p = _mm256_set1_ps(1.0f / 9.0f);
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.0f / 7.0f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.0f / 5.0f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.0f / 3.0f));
  p = _mm256_mul_ps(p, z);
  const __m256 two_s = _mm256_add_ps(s, s);
  const __m256 logm = _mm256_fmadd_ps(two_s, p, two_s);
  const __m256 lo = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.12194440e-4f), logm);
  return _mm256_fmadd_ps(e, _mm256_set1_ps(0.693359375f), lo);
}

// ln u in float64, same scheme as logx8 with the series to s^21; ln 2 split
// so that e * ln2_hi is exact for |e| < 2^11.
// e ln 2 + log((1 + s) / (1 - s)) for |s| <= 3 - 2 sqrt 2 (the reduced argument of logx4).
BG_AVX2 inline __m256d log_es4(__m256d e, __m256d s) {
  const __m256d z = _mm256_mul_pd(s, s);
  __m256d p = _mm256_set1_pd(1.0 / 21.0);
  for (int k = 9; k >= 1; --k) p = _mm256_fmadd_pd(p, z, _mm256_set1_pd(1.0 / (2 * k + 1)));
  p = _mm256_mul_pd(p, z);
  const __m256d two_s = _mm256_add_pd(s, s);
  const __m256d logm = _mm256_fmadd_pd(two_s, p, two_s);
  const __m256d lo = _mm256_fmadd_pd(e, _mm256_set1_pd(1.90821492927058770002e-10), logm);
  return _mm256_fmadd_pd(e, _mm256_set1_pd(6.93147180369123816490e-01), lo);
}

BG_AVX2 inline __m256d logx4(__m256d u) {
  const __m256i bits = _mm256_castpd_si256(u);
  const __m256i big_e = _mm256_or_si256(_mm256_srli_epi64(bits, 52), _mm256_set1_epi64x(0x4330000000000000ll));
  __m256d e = _mm256_sub_pd(_mm256_castsi256_pd(big_e), _mm256_set1_pd(4503599627370496.0 + 1023.0));
  __m256d m = _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi64x(0x000FFFFFFFFFFFFFll)),
                                                  _mm256_set1_epi64x(0x3FF0000000000000ll)));
  const __m256d big = _mm256_cmp_pd(m, _mm256_set1_pd(1.4142135623730951), _CMP_GT_OQ);
  m = _mm256_blendv_pd(m, _mm256_mul_pd(m, _mm256_set1_pd(0.5)), big);
  e = _mm256_add_pd(e, _mm256_and_pd(big, _mm256_set1_pd(1.0)));
  const __m256d one = _mm256_set1_pd(1.0);
  return log_es4(e, _mm256_div_pd(_mm256_sub_pd(m, one), _mm256_add_pd(m, one)));
}

// The exponent (as a double) and the mantissa in [1, 2) of positive normal doubles.
BG_AVX2 inline void exp_mant4(__m256d x, __m256d& e, __m256d& m) {
  const __m256i bits = _mm256_castpd_si256(x);
  const __m256i big_e = _mm256_or_si256(_mm256_srli_epi64(bits, 52), _mm256_set1_epi64x(0x4330000000000000ll));
  e = _mm256_sub_pd(_mm256_castsi256_pd(big_e), _mm256_set1_pd(4503599627370496.0 + 1023.0));
  m = _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi64x(0x000FFFFFFFFFFFFFll)),
                                          _mm256_set1_epi64x(0x3FF0000000000000ll)));
}

// log(a / b) for positive normal a, b without forming a / b: a = 2^ea ma, b = 2^eb mb with ma, mb
// in [1, 2), one of ma, mb scaled by 2 so that ma / mb lies in about [1/sqrt 2, sqrt 2], then
// s = (ma - mb) / (ma + mb) (the difference exact by Sterbenz) into logx4's series: one division
// where log(a / b) through logx4 takes two, and no rounding of the ratio.
BG_AVX2 inline __m256d logratiox4(__m256d a, __m256d b) {
  __m256d ea, ma, eb, mb;
  exp_mant4(a, ea, ma);
  exp_mant4(b, eb, mb);
  __m256d e = _mm256_sub_pd(ea, eb);
  const __m256d r2 = _mm256_set1_pd(1.4142135623730951), one = _mm256_set1_pd(1.0);
  const __m256d big = _mm256_cmp_pd(ma, _mm256_mul_pd(mb, r2), _CMP_GT_OQ);
  const __m256d small = _mm256_cmp_pd(_mm256_mul_pd(ma, r2), mb, _CMP_LT_OQ);
  ma = _mm256_blendv_pd(ma, _mm256_mul_pd(ma, _mm256_set1_pd(0.5)), big);
  mb = _mm256_blendv_pd(mb, _mm256_mul_pd(mb, _mm256_set1_pd(0.5)), small);
  e = _mm256_add_pd(e, _mm256_sub_pd(_mm256_and_pd(big, one), _mm256_and_pd(small, one)));
  return log_es4(e, _mm256_div_pd(_mm256_sub_pd(ma, mb), _mm256_add_pd(ma, mb)));
}

// (cos 2 pi u, sin 2 pi u) for u in (0, 1): 4u = k + f exactly (f in
// [-1/2, 1/2]), angle f pi/2, Taylor series, quadrant k by swaps and signs.
BG_AVX2 inline void sincos2pix8(__m256 u, __m256& c, __m256& s) {
  const __m256 t = _mm256_mul_ps(u, _mm256_set1_ps(4.0f));
  const __m256 k = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 a = _mm256_mul_ps(_mm256_sub_ps(t, k), _mm256_set1_ps(1.57079632679489662f));
  const __m256 z = _mm256_mul_ps(a, a);
  __m256 ps = _mm256_set1_ps(1.0f / 362880.0f);
  ps = _mm256_fmadd_ps(ps, z, _mm256_set1_ps(-1.0f / 5040.0f));
  ps = _mm256_fmadd_ps(ps, z, _mm256_set1_ps(1.0f / 120.0f));
  ps = _mm256_fmadd_ps(ps, z, _mm256_set1_ps(-1.0f / 6.0f));
  const __m256 sa = _mm256_fmadd_ps(_mm256_mul_ps(ps, z), a, a);
  __m256 pc = _mm256_set1_ps(-1.0f / 3628800.0f);
  pc = _mm256_fmadd_ps(pc, z, _mm256_set1_ps(1.0f / 40320.0f));
  pc = _mm256_fmadd_ps(pc, z, _mm256_set1_ps(-1.0f / 720.0f));
  pc = _mm256_fmadd_ps(pc, z, _mm256_set1_ps(1.0f / 24.0f));
  pc = _mm256_fmadd_ps(pc, z, _mm256_set1_ps(-0.5f));
  const __m256 ca = _mm256_fmadd_ps(pc, z, _mm256_set1_ps(1.0f));
  const __m256i ki = _mm256_cvtps_epi32(k);
  const __m256i one = _mm256_set1_epi32(1), two = _mm256_set1_epi32(2);
  const __m256 swap = _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(ki, one), one));
  const __m256 negc = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(_mm256_add_epi32(ki, one), two), 30));
  const __m256 negs = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_and_si256(ki, two), 30));
  c = _mm256_xor_ps(_mm256_blendv_ps(ca, sa, swap), negc);
  s = _mm256_xor_ps(_mm256_blendv_ps(sa, ca, swap), negs);
}

// float64 version of sincos2pix8 (series to a^17 and a^18).
BG_AVX2 inline void sincos2pix4(__m256d u, __m256d& c, __m256d& s) {
  const __m256d t = _mm256_mul_pd(u, _mm256_set1_pd(4.0));
  const __m256d k = _mm256_round_pd(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256d a = _mm256_mul_pd(_mm256_sub_pd(t, k), _mm256_set1_pd(1.57079632679489661923));
  const __m256d z = _mm256_mul_pd(a, a);
  // Taylor coefficients (-1)^j / (2j+1)! and (-1)^j / (2j)!, Horner from the top.
  static const double sc[9] = {1.0, -1.0 / 6, 1.0 / 120, -1.0 / 5040, 1.0 / 362880, -1.0 / 39916800,
                               1.0 / 6227020800.0, -1.0 / 1307674368000.0, 1.0 / 355687428096000.0};
  static const double cc[10] = {1.0, -0.5, 1.0 / 24, -1.0 / 720, 1.0 / 40320, -1.0 / 3628800,
                                1.0 / 479001600.0, -1.0 / 87178291200.0, 1.0 / 20922789888000.0,
                                -1.0 / 6402373705728000.0};
  __m256d ps = _mm256_set1_pd(sc[8]);
  for (int j = 7; j >= 1; --j) ps = _mm256_fmadd_pd(ps, z, _mm256_set1_pd(sc[j]));
  const __m256d sa = _mm256_fmadd_pd(_mm256_mul_pd(ps, z), a, a);
  __m256d pc = _mm256_set1_pd(cc[9]);
  for (int j = 8; j >= 0; --j) pc = _mm256_fmadd_pd(pc, z, _mm256_set1_pd(cc[j]));
  const __m256d ca = pc;
  const __m256i ki = _mm256_castpd_si256(_mm256_add_pd(k, _mm256_set1_pd(4503599627370496.0)));
  const __m256i one = _mm256_set1_epi64x(1), two = _mm256_set1_epi64x(2);
  const __m256d swap = _mm256_castsi256_pd(_mm256_cmpeq_epi64(_mm256_and_si256(ki, one), one));
  const __m256d negc = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_and_si256(_mm256_add_epi64(ki, one), two), 62));
  const __m256d negs = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_and_si256(ki, two), 62));
  c = _mm256_xor_pd(_mm256_blendv_pd(ca, sa, swap), negc);
  s = _mm256_xor_pd(_mm256_blendv_pd(sa, ca, swap), negs);
}

// exp x in float32: x = k ln 2 + r exactly (split ln 2), Taylor to r^7.
// NaN stays NaN; x < -86 (including -inf) gives 0; x is clamped at 80.
BG_AVX2 inline __m256 expx8(__m256 x) {
  const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
  const __m256 keep = _mm256_cmp_ps(x, _mm256_set1_ps(-86.0f), _CMP_GE_OQ);
  const __m256 xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-86.0f)), _mm256_set1_ps(80.0f));
  const __m256 k = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), xc);
  r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i e = _mm256_slli_epi32(_mm256_cvtps_epi32(k), 23);
  __m256 y = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), e));
  y = _mm256_and_ps(y, keep);
  return _mm256_blendv_ps(y, x, nan);
}

// exp x in float64: Taylor to r^13; x < -700 gives 0, x is clamped at 80.
BG_AVX2 inline __m256d expx4(__m256d x) {
  const __m256d nan = _mm256_cmp_pd(x, x, _CMP_UNORD_Q);
  const __m256d keep = _mm256_cmp_pd(x, _mm256_set1_pd(-700.0), _CMP_GE_OQ);
  const __m256d xc = _mm256_min_pd(_mm256_max_pd(x, _mm256_set1_pd(-700.0)), _mm256_set1_pd(80.0));
  const __m256d k = _mm256_round_pd(_mm256_mul_pd(xc, _mm256_set1_pd(1.4426950408889634074)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // ln 2 split so that k * ln2_hi is exact for |k| < 2^11.
  __m256d r = _mm256_fnmadd_pd(k, _mm256_set1_pd(6.93147180369123816490e-01), xc);
  r = _mm256_fnmadd_pd(k, _mm256_set1_pd(1.90821492927058770002e-10), r);
  __m256d p = _mm256_set1_pd(kInvFact[13]);
  for (int j = 12; j >= 0; --j) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(kInvFact[j]));
  const __m256i ki = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(k));
  __m256d y = _mm256_castsi256_pd(_mm256_add_epi64(_mm256_castpd_si256(p), _mm256_slli_epi64(ki, 52)));
  y = _mm256_and_pd(y, keep);
  return _mm256_blendv_pd(y, x, nan);
}
// ln(1 + x) for -1 < x < inf in float32 (NaN stays NaN): u = 1 + x rounded,
// then ln u corrected by (x - (u - 1)) / u, the part of x lost in rounding
// 1 + x (Goldberg 1991), so tiny x give x itself; about 2 ulp. Softplus
// log1p(exp(-|r|)) uses it with x in [0, 1].
BG_AVX2 inline __m256 log1px8(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 u = _mm256_add_ps(one, x);
  const __m256 corr = _mm256_div_ps(_mm256_sub_ps(x, _mm256_sub_ps(u, one)), u);
  const __m256 y = _mm256_add_ps(logx8(u), corr);
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

// float64 version of log1px8.
BG_AVX2 inline __m256d log1px4(__m256d x) {
  const __m256d one = _mm256_set1_pd(1.0);
  const __m256d u = _mm256_add_pd(one, x);
  const __m256d corr = _mm256_div_pd(_mm256_sub_pd(x, _mm256_sub_pd(u, one)), u);
  const __m256d y = _mm256_add_pd(logx4(u), corr);
  return _mm256_blendv_pd(y, x, _mm256_cmp_pd(x, x, _CMP_UNORD_Q));
}
// tanh x in float32 (NaN stays NaN, +-inf gives +-1): with t = 2|x| clamped at
// 20 (tanh 10 rounds to 1), e = expm1 t = 2^k q + (2^k - 1) where t = k ln 2 + r
// (split ln 2, |r| <= ln 2 / 2) and q = expm1 r by its Taylor series to r^9, so
// small x lose nothing to cancellation; tanh |x| = e / (e + 2), sign restored.
// About 2 ulp.
BG_AVX2 inline __m256 tanhx8(__m256 x) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 ax = _mm256_andnot_ps(sign, x);
  const __m256 t = _mm256_min_ps(_mm256_add_ps(ax, ax), _mm256_set1_ps(20.0f));
  const __m256 k = _mm256_round_ps(_mm256_mul_ps(t, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), t);
  r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 362880.0f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 40320.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 5040.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  const __m256 q = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r);
  const __m256 two_k =
      _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23));
  const __m256 e = _mm256_fmadd_ps(q, two_k, _mm256_sub_ps(two_k, _mm256_set1_ps(1.0f)));
  const __m256 y = _mm256_or_ps(_mm256_div_ps(e, _mm256_add_ps(e, _mm256_set1_ps(2.0f))), _mm256_and_ps(x, sign));
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

// float64 version of tanhx8: t clamped at 40, q's series to r^14; about 2 ulp.
BG_AVX2 inline __m256d tanhx4(__m256d x) {
  const __m256d sign = _mm256_set1_pd(-0.0);
  const __m256d ax = _mm256_andnot_pd(sign, x);
  const __m256d t = _mm256_min_pd(_mm256_add_pd(ax, ax), _mm256_set1_pd(40.0));
  const __m256d k = _mm256_round_pd(_mm256_mul_pd(t, _mm256_set1_pd(1.4426950408889634074)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256d r = _mm256_fnmadd_pd(k, _mm256_set1_pd(6.93147180369123816490e-01), t);
  r = _mm256_fnmadd_pd(k, _mm256_set1_pd(1.90821492927058770002e-10), r);
  // p = sum_{j=0}^{12} r^j / (j + 2)!, q = r + r^2 p
  __m256d p = _mm256_set1_pd(kInvFact[14]);
  for (int j = 13; j >= 2; --j) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(kInvFact[j]));
  const __m256d q = _mm256_fmadd_pd(_mm256_mul_pd(p, r), r, r);
  const __m256i ki = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(k));
  const __m256d two_k = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(ki, _mm256_set1_epi64x(1023)), 52));
  const __m256d e = _mm256_fmadd_pd(q, two_k, _mm256_sub_pd(two_k, _mm256_set1_pd(1.0)));
  const __m256d y = _mm256_or_pd(_mm256_div_pd(e, _mm256_add_pd(e, _mm256_set1_pd(2.0))), _mm256_and_pd(x, sign));
  return _mm256_blendv_pd(y, x, _mm256_cmp_pd(x, x, _CMP_UNORD_Q));
}
// sigmoid x in the two-branch form 1 / (1 + e) (x >= 0) and e / (1 + e) (x < 0)
// with e = exp(-|x|), one division for both, so that exp never overflows; NaN
// stays NaN. Float32: 0 below x = -86 (exp's flush), else about 2 ulp.
BG_AVX2 inline __m256 sigmoidx8(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 ex = expx8(_mm256_or_ps(x, _mm256_set1_ps(-0.0f)));
  const __m256 r = _mm256_div_ps(one, _mm256_add_ps(one, ex));
  return _mm256_blendv_ps(_mm256_mul_ps(ex, r), r, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ));
}

BG_AVX2 inline __m256d sigmoidx4(__m256d x) {
  const __m256d one = _mm256_set1_pd(1.0);
  const __m256d ex = expx4(_mm256_or_pd(x, _mm256_set1_pd(-0.0)));
  const __m256d r = _mm256_div_pd(one, _mm256_add_pd(one, ex));
  return _mm256_blendv_pd(_mm256_mul_pd(ex, r), r, _mm256_cmp_pd(x, _mm256_setzero_pd(), _CMP_GE_OQ));
}
// ---------------------------------------------------------------- AVX-512
// The functions above on 512-bit vectors, operation for operation (the same
// FMAs in the same order, masks for blends), so that the AVX-512 and AVX2
// paths give bit-identical results and the AVX2 accuracy notes hold here.

BG_AVX512 inline __m512 logx16(__m512 u) {
  const __m512i bits = _mm512_castps_si512(u);
  __m512 e = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(bits, 23), _mm512_set1_epi32(127)));
  __m512 m = _mm512_castsi512_ps(
      _mm512_or_si512(_mm512_and_si512(bits, _mm512_set1_epi32(0x007fffff)), _mm512_set1_epi32(0x3f800000)));
  const __mmask16 big = _mm512_cmp_ps_mask(m, _mm512_set1_ps(1.41421356f), _CMP_GT_OQ);
  m = _mm512_mask_mul_ps(m, big, m, _mm512_set1_ps(0.5f));
  const __m512 one = _mm512_set1_ps(1.0f);
  e = _mm512_add_ps(e, _mm512_maskz_mov_ps(big, one));
  const __m512 s = _mm512_div_ps(_mm512_sub_ps(m, one), _mm512_add_ps(m, one));
  const __m512 z = _mm512_mul_ps(s, s);
  __m512 p = _mm512_set1_ps(1.0f / 9.0f);
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.0f / 7.0f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.0f / 5.0f));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(1.0f / 3.0f));
  p = _mm512_mul_ps(p, z);
  const __m512 two_s = _mm512_add_ps(s, s);
  const __m512 logm = _mm512_fmadd_ps(two_s, p, two_s);
  const __m512 lo = _mm512_fmadd_ps(e, _mm512_set1_ps(-2.12194440e-4f), logm);
  return _mm512_fmadd_ps(e, _mm512_set1_ps(0.693359375f), lo);
}

// log_es4 on 512-bit vectors (same steps).
BG_AVX512 inline __m512d log_es8d(__m512d e, __m512d s) {
  const __m512d z = _mm512_mul_pd(s, s);
  __m512d p = _mm512_set1_pd(1.0 / 21.0);
  for (int k = 9; k >= 1; --k) p = _mm512_fmadd_pd(p, z, _mm512_set1_pd(1.0 / (2 * k + 1)));
  p = _mm512_mul_pd(p, z);
  const __m512d two_s = _mm512_add_pd(s, s);
  const __m512d logm = _mm512_fmadd_pd(two_s, p, two_s);
  const __m512d lo = _mm512_fmadd_pd(e, _mm512_set1_pd(1.90821492927058770002e-10), logm);
  return _mm512_fmadd_pd(e, _mm512_set1_pd(6.93147180369123816490e-01), lo);
}

BG_AVX512 inline __m512d logx8d(__m512d u) {
  const __m512i bits = _mm512_castpd_si512(u);
  const __m512i big_e = _mm512_or_si512(_mm512_srli_epi64(bits, 52), _mm512_set1_epi64(0x4330000000000000ll));
  __m512d e = _mm512_sub_pd(_mm512_castsi512_pd(big_e), _mm512_set1_pd(4503599627370496.0 + 1023.0));
  __m512d m = _mm512_castsi512_pd(_mm512_or_si512(_mm512_and_si512(bits, _mm512_set1_epi64(0x000FFFFFFFFFFFFFll)),
                                                  _mm512_set1_epi64(0x3FF0000000000000ll)));
  const __mmask8 big = _mm512_cmp_pd_mask(m, _mm512_set1_pd(1.4142135623730951), _CMP_GT_OQ);
  m = _mm512_mask_mul_pd(m, big, m, _mm512_set1_pd(0.5));
  const __m512d one = _mm512_set1_pd(1.0);
  e = _mm512_add_pd(e, _mm512_maskz_mov_pd(big, one));
  return log_es8d(e, _mm512_div_pd(_mm512_sub_pd(m, one), _mm512_add_pd(m, one)));
}

// exp_mant4 / logratiox4 on 512-bit vectors (same steps).
BG_AVX512 inline void exp_mant8d(__m512d x, __m512d& e, __m512d& m) {
  const __m512i bits = _mm512_castpd_si512(x);
  const __m512i big_e = _mm512_or_si512(_mm512_srli_epi64(bits, 52), _mm512_set1_epi64(0x4330000000000000ll));
  e = _mm512_sub_pd(_mm512_castsi512_pd(big_e), _mm512_set1_pd(4503599627370496.0 + 1023.0));
  m = _mm512_castsi512_pd(_mm512_or_si512(_mm512_and_si512(bits, _mm512_set1_epi64(0x000FFFFFFFFFFFFFll)),
                                          _mm512_set1_epi64(0x3FF0000000000000ll)));
}

BG_AVX512 inline __m512d logratiox8d(__m512d a, __m512d b) {
  __m512d ea, ma, eb, mb;
  exp_mant8d(a, ea, ma);
  exp_mant8d(b, eb, mb);
  __m512d e = _mm512_sub_pd(ea, eb);
  const __m512d r2 = _mm512_set1_pd(1.4142135623730951), one = _mm512_set1_pd(1.0);
  const __mmask8 big = _mm512_cmp_pd_mask(ma, _mm512_mul_pd(mb, r2), _CMP_GT_OQ);
  const __mmask8 small = _mm512_cmp_pd_mask(_mm512_mul_pd(ma, r2), mb, _CMP_LT_OQ);
  ma = _mm512_mask_mul_pd(ma, big, ma, _mm512_set1_pd(0.5));
  mb = _mm512_mask_mul_pd(mb, small, mb, _mm512_set1_pd(0.5));
  e = _mm512_add_pd(e, _mm512_sub_pd(_mm512_maskz_mov_pd(big, one), _mm512_maskz_mov_pd(small, one)));
  return log_es8d(e, _mm512_div_pd(_mm512_sub_pd(ma, mb), _mm512_add_pd(ma, mb)));
}

BG_AVX512 inline void sincos2pix16(__m512 u, __m512& c, __m512& s) {
  const __m512 t = _mm512_mul_ps(u, _mm512_set1_ps(4.0f));
  const __m512 k = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 a = _mm512_mul_ps(_mm512_sub_ps(t, k), _mm512_set1_ps(1.57079632679489662f));
  const __m512 z = _mm512_mul_ps(a, a);
  __m512 ps = _mm512_set1_ps(1.0f / 362880.0f);
  ps = _mm512_fmadd_ps(ps, z, _mm512_set1_ps(-1.0f / 5040.0f));
  ps = _mm512_fmadd_ps(ps, z, _mm512_set1_ps(1.0f / 120.0f));
  ps = _mm512_fmadd_ps(ps, z, _mm512_set1_ps(-1.0f / 6.0f));
  const __m512 sa = _mm512_fmadd_ps(_mm512_mul_ps(ps, z), a, a);
  __m512 pc = _mm512_set1_ps(-1.0f / 3628800.0f);
  pc = _mm512_fmadd_ps(pc, z, _mm512_set1_ps(1.0f / 40320.0f));
  pc = _mm512_fmadd_ps(pc, z, _mm512_set1_ps(-1.0f / 720.0f));
  pc = _mm512_fmadd_ps(pc, z, _mm512_set1_ps(1.0f / 24.0f));
  pc = _mm512_fmadd_ps(pc, z, _mm512_set1_ps(-0.5f));
  const __m512 ca = _mm512_fmadd_ps(pc, z, _mm512_set1_ps(1.0f));
  const __m512i ki = _mm512_cvtps_epi32(k);
  const __m512i one = _mm512_set1_epi32(1), two = _mm512_set1_epi32(2);
  const __mmask16 swap = _mm512_test_epi32_mask(ki, one);
  const __m512 negc = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_and_si512(_mm512_add_epi32(ki, one), two), 30));
  const __m512 negs = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_and_si512(ki, two), 30));
  c = _mm512_xor_ps(_mm512_mask_blend_ps(swap, ca, sa), negc);
  s = _mm512_xor_ps(_mm512_mask_blend_ps(swap, sa, ca), negs);
}

BG_AVX512 inline void sincos2pix8d(__m512d u, __m512d& c, __m512d& s) {
  const __m512d t = _mm512_mul_pd(u, _mm512_set1_pd(4.0));
  const __m512d k = _mm512_roundscale_pd(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512d a = _mm512_mul_pd(_mm512_sub_pd(t, k), _mm512_set1_pd(1.57079632679489661923));
  const __m512d z = _mm512_mul_pd(a, a);
  static const double sc[9] = {1.0, -1.0 / 6, 1.0 / 120, -1.0 / 5040, 1.0 / 362880, -1.0 / 39916800,
                               1.0 / 6227020800.0, -1.0 / 1307674368000.0, 1.0 / 355687428096000.0};
  static const double cc[10] = {1.0, -0.5, 1.0 / 24, -1.0 / 720, 1.0 / 40320, -1.0 / 3628800,
                                1.0 / 479001600.0, -1.0 / 87178291200.0, 1.0 / 20922789888000.0,
                                -1.0 / 6402373705728000.0};
  __m512d ps = _mm512_set1_pd(sc[8]);
  for (int j = 7; j >= 1; --j) ps = _mm512_fmadd_pd(ps, z, _mm512_set1_pd(sc[j]));
  const __m512d sa = _mm512_fmadd_pd(_mm512_mul_pd(ps, z), a, a);
  __m512d pc = _mm512_set1_pd(cc[9]);
  for (int j = 8; j >= 0; --j) pc = _mm512_fmadd_pd(pc, z, _mm512_set1_pd(cc[j]));
  const __m512d ca = pc;
  const __m512i ki = _mm512_castpd_si512(_mm512_add_pd(k, _mm512_set1_pd(4503599627370496.0)));
  const __m512i one = _mm512_set1_epi64(1), two = _mm512_set1_epi64(2);
  const __mmask8 swap = _mm512_test_epi64_mask(ki, one);
  const __m512d negc = _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_and_si512(_mm512_add_epi64(ki, one), two), 62));
  const __m512d negs = _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_and_si512(ki, two), 62));
  c = _mm512_xor_pd(_mm512_mask_blend_pd(swap, ca, sa), negc);
  s = _mm512_xor_pd(_mm512_mask_blend_pd(swap, sa, ca), negs);
}
// expx8 / expx4 on 512-bit vectors (same steps; masks for the blends).
BG_AVX512 inline __m512 expx16(__m512 x) {
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-86.0f), _CMP_GE_OQ);
  const __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-86.0f)), _mm512_set1_ps(80.0f));
  const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), xc);
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  const __m512i e = _mm512_slli_epi32(_mm512_cvtps_epi32(k), 23);
  const __m512 y = _mm512_maskz_mov_ps(keep, _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(p), e)));
  return _mm512_mask_blend_ps(nan, y, x);
}

BG_AVX512 inline __m512d expx8d(__m512d x) {
  const __mmask8 nan = _mm512_cmp_pd_mask(x, x, _CMP_UNORD_Q);
  const __mmask8 keep = _mm512_cmp_pd_mask(x, _mm512_set1_pd(-700.0), _CMP_GE_OQ);
  const __m512d xc = _mm512_min_pd(_mm512_max_pd(x, _mm512_set1_pd(-700.0)), _mm512_set1_pd(80.0));
  const __m512d k = _mm512_roundscale_pd(_mm512_mul_pd(xc, _mm512_set1_pd(1.4426950408889634074)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512d r = _mm512_fnmadd_pd(k, _mm512_set1_pd(6.93147180369123816490e-01), xc);
  r = _mm512_fnmadd_pd(k, _mm512_set1_pd(1.90821492927058770002e-10), r);
  __m512d p = _mm512_set1_pd(kInvFact[13]);
  for (int j = 12; j >= 0; --j) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(kInvFact[j]));
  const __m512i ki = _mm512_cvtepi32_epi64(_mm512_cvtpd_epi32(k));
  const __m512d y =
      _mm512_maskz_mov_pd(keep, _mm512_castsi512_pd(_mm512_add_epi64(_mm512_castpd_si512(p), _mm512_slli_epi64(ki, 52))));
  return _mm512_mask_blend_pd(nan, y, x);
}

// log1px4 on 512-bit vectors (same steps).
BG_AVX512 inline __m512d log1px8d(__m512d x) {
  const __m512d one = _mm512_set1_pd(1.0);
  const __m512d u = _mm512_add_pd(one, x);
  const __m512d corr = _mm512_div_pd(_mm512_sub_pd(x, _mm512_sub_pd(u, one)), u);
  const __m512d y = _mm512_add_pd(logx8d(u), corr);
  return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(x, x, _CMP_UNORD_Q), y, x);
}

// tanhx8 / tanhx4 on 512-bit vectors (same steps; masks for the blends).
BG_AVX512 inline __m512 tanhx16(__m512 x) {
  const __m512 ax = _mm512_abs_ps(x);
  const __m512 t = _mm512_min_ps(_mm512_add_ps(ax, ax), _mm512_set1_ps(20.0f));
  const __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(t, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), t);
  r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 362880.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 40320.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 5040.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  const __m512 q = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r);
  const __m512 two_k =
      _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(k), _mm512_set1_epi32(127)), 23));
  const __m512 e = _mm512_fmadd_ps(q, two_k, _mm512_sub_ps(two_k, _mm512_set1_ps(1.0f)));
  const __m512 y = _mm512_castsi512_ps(
      _mm512_or_si512(_mm512_castps_si512(_mm512_div_ps(e, _mm512_add_ps(e, _mm512_set1_ps(2.0f)))),
                      _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(int(0x80000000u)))));
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), y, x);
}

BG_AVX512 inline __m512d tanhx8d(__m512d x) {
  const __m512d ax = _mm512_abs_pd(x);
  const __m512d t = _mm512_min_pd(_mm512_add_pd(ax, ax), _mm512_set1_pd(40.0));
  const __m512d k = _mm512_roundscale_pd(_mm512_mul_pd(t, _mm512_set1_pd(1.4426950408889634074)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512d r = _mm512_fnmadd_pd(k, _mm512_set1_pd(6.93147180369123816490e-01), t);
  r = _mm512_fnmadd_pd(k, _mm512_set1_pd(1.90821492927058770002e-10), r);
  __m512d p = _mm512_set1_pd(kInvFact[14]);
  for (int j = 13; j >= 2; --j) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(kInvFact[j]));
  const __m512d q = _mm512_fmadd_pd(_mm512_mul_pd(p, r), r, r);
  const __m512i ki = _mm512_cvtepi32_epi64(_mm512_cvtpd_epi32(k));
  const __m512d two_k = _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_add_epi64(ki, _mm512_set1_epi64(1023)), 52));
  const __m512d e = _mm512_fmadd_pd(q, two_k, _mm512_sub_pd(two_k, _mm512_set1_pd(1.0)));
  const __m512d y = _mm512_castsi512_pd(
      _mm512_or_si512(_mm512_castpd_si512(_mm512_div_pd(e, _mm512_add_pd(e, _mm512_set1_pd(2.0)))),
                      _mm512_and_si512(_mm512_castpd_si512(x), _mm512_set1_epi64(int64_t(0x8000000000000000ull)))));
  return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(x, x, _CMP_UNORD_Q), y, x);
}

// sigmoidx8 / sigmoidx4 on 512-bit vectors (same steps).
BG_AVX512 inline __m512 sigmoidx16(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 ex = expx16(_mm512_or_ps(x, _mm512_set1_ps(-0.0f)));
  const __m512 r = _mm512_div_ps(one, _mm512_add_ps(one, ex));
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ), _mm512_mul_ps(ex, r), r);
}

BG_AVX512 inline __m512d sigmoidx8d(__m512d x) {
  const __m512d one = _mm512_set1_pd(1.0);
  const __m512d ex = expx8d(_mm512_or_pd(x, _mm512_set1_pd(-0.0)));
  const __m512d r = _mm512_div_pd(one, _mm512_add_pd(one, ex));
  return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(x, _mm512_setzero_pd(), _CMP_GE_OQ), _mm512_mul_pd(ex, r), r);
}
#endif  // BG_HAVE_X86

}  // namespace simd
}  // namespace bayesgrad
