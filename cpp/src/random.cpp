// Bulk Philox uniforms and Box-Muller normals. The AVX2 path evaluates 8 Philox
// blocks per step and its own log/sin/cos (Taylor/atanh series, exact argument
// reduction of 2*pi*u through 4*u) because libm has no vector entry points
// without -ffast-math, which DESIGN.md rules out. The scalar path is the
// reference (libm in double precision) and serves CPUs without AVX2 and the
// unaligned head and tail of a range; which elements take which path depends
// only on the global element index, never on the thread count.
#include "bayesgrad/random.hpp"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "bayesgrad/parallel.hpp"
#include "bayesgrad/philox.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define BG_HAVE_X86 1
#define BG_AVX2 __attribute__((target("avx2,fma")))
#else
#define BG_HAVE_X86 0
#endif

namespace bayesgrad {

namespace {

constexpr double kTwoPi = 6.283185307179586476925286766559;
bool g_force_scalar = false;

bool cpu_has_avx2() {
#if BG_HAVE_X86
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

enum Kind { kUniform = 0, kNormal = 1 };

// Elements produced by one Philox block.
template <typename T>
constexpr int64_t per_block() { return sizeof(T) == 4 ? 4 : 2; }

// ---------------------------------------------------------------- scalar path
template <typename T, int K>
T scalar_element(const uint32_t w[4], int64_t q);

template <>
float scalar_element<float, kUniform>(const uint32_t w[4], int64_t q) {
  return philox::u01_f32(w[q]);
}
template <>
double scalar_element<double, kUniform>(const uint32_t w[4], int64_t q) {
  return philox::u01_f64(w[2 * q], w[2 * q + 1]);
}
template <>
float scalar_element<float, kNormal>(const uint32_t w[4], int64_t q) {
  const int64_t p = q >> 1;  // pair within the block
  const double u1 = philox::u01_f32(w[2 * p]);
  const double u2 = philox::u01_f32(w[2 * p + 1]);
  const double r = std::sqrt(-2.0 * std::log(u1));
  return static_cast<float>((q & 1) ? r * std::sin(kTwoPi * u2) : r * std::cos(kTwoPi * u2));
}
template <>
double scalar_element<double, kNormal>(const uint32_t w[4], int64_t q) {
  const double u1 = philox::u01_f64(w[0], w[1]);
  const double u2 = philox::u01_f64(w[2], w[3]);
  const double r = std::sqrt(-2.0 * std::log(u1));
  return (q & 1) ? r * std::sin(kTwoPi * u2) : r * std::cos(kTwoPi * u2);
}

// Global elements [g_begin, g_end) into out[0 .. g_end-g_begin).
template <typename T, int K>
void scalar_range(T* out, uint64_t g_begin, uint64_t g_end, uint64_t seed, uint64_t stream) {
  constexpr int64_t E = per_block<T>();
  uint32_t w[4] = {0, 0, 0, 0};
  uint64_t cached = ~0ull;
  for (uint64_t g = g_begin; g < g_end; ++g) {
    const uint64_t blk = g / E;
    if (blk != cached) {
      philox::stream_block(seed, stream, blk, w);
      cached = blk;
    }
    out[g - g_begin] = scalar_element<T, K>(w, static_cast<int64_t>(g % E));
  }
}

#if BG_HAVE_X86
// ---------------------------------------------------------------- AVX2 path
BG_AVX2 inline void mulhilo8(__m256i a, __m256i m, __m256i& hi, __m256i& lo) {
  const __m256i pe = _mm256_mul_epu32(a, m);
  const __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  lo = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
}

// Blocks blk0 .. blk0+7; c[l] holds word l of each of the 8 blocks.
BG_AVX2 inline void philox8(uint64_t seed, uint64_t stream, uint64_t blk0, __m256i c[4]) {
  alignas(32) uint32_t lo[8], hi[8];
  for (int l = 0; l < 8; ++l) {
    const uint64_t b = blk0 + static_cast<uint64_t>(l);
    lo[l] = static_cast<uint32_t>(b);
    hi[l] = static_cast<uint32_t>(b >> 32);
  }
  __m256i c0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(lo));
  __m256i c1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(hi));
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

// 4 vectors of 8 lanes (lane b = block b, vector l = role l) -> 32 values in
// block-major order out[4b + l].
BG_AVX2 inline void store_transposed(__m256i v0, __m256i v1, __m256i v2, __m256i v3, void* dst) {
  const __m256i t0 = _mm256_unpacklo_epi32(v0, v1);
  const __m256i t1 = _mm256_unpackhi_epi32(v0, v1);
  const __m256i t2 = _mm256_unpacklo_epi32(v2, v3);
  const __m256i t3 = _mm256_unpackhi_epi32(v2, v3);
  const __m256i u0 = _mm256_unpacklo_epi64(t0, t2);
  const __m256i u1 = _mm256_unpackhi_epi64(t0, t2);
  const __m256i u2 = _mm256_unpacklo_epi64(t1, t3);
  const __m256i u3 = _mm256_unpackhi_epi64(t1, t3);
  __m256i* o = reinterpret_cast<__m256i*>(dst);
  _mm256_storeu_si256(o + 0, _mm256_permute2x128_si256(u0, u1, 0x20));
  _mm256_storeu_si256(o + 1, _mm256_permute2x128_si256(u2, u3, 0x20));
  _mm256_storeu_si256(o + 2, _mm256_permute2x128_si256(u0, u1, 0x31));
  _mm256_storeu_si256(o + 3, _mm256_permute2x128_si256(u2, u3, 0x31));
}

BG_AVX2 inline __m256 u01x8(__m256i w) {
  const __m256 x = _mm256_cvtepi32_ps(_mm256_srli_epi32(w, 9));
  return _mm256_fmadd_ps(x, _mm256_set1_ps(1.0f / 8388608.0f), _mm256_set1_ps(1.0f / 16777216.0f));
}

// log(u) for normal positive u: u = 2^e m, m in [sqrt(1/2), sqrt(2)),
// log m = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716.
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
  // ln 2 split so that e * ln2_hi is exact for |e| < 2^9.
  const __m256 lo = _mm256_fmadd_ps(e, _mm256_set1_ps(-2.12194440e-4f), logm);
  return _mm256_fmadd_ps(e, _mm256_set1_ps(0.693359375f), lo);
}

// (cos 2 pi u, sin 2 pi u) for u in (0, 1): 4u = k + f exactly, angle f*pi/2.
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

BG_AVX2 void group_f32(float* out, uint64_t seed, uint64_t stream, uint64_t blk0, int K) {
  __m256i c[4];
  philox8(seed, stream, blk0, c);
  if (K == kUniform) {
    store_transposed(_mm256_castps_si256(u01x8(c[0])), _mm256_castps_si256(u01x8(c[1])),
                     _mm256_castps_si256(u01x8(c[2])), _mm256_castps_si256(u01x8(c[3])), out);
    return;
  }
  __m256 z[4];
  for (int p = 0; p < 2; ++p) {
    const __m256 r = _mm256_sqrt_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0f), logx8(u01x8(c[2 * p]))));
    __m256 cs, sn;
    sincos2pix8(u01x8(c[2 * p + 1]), cs, sn);
    z[2 * p] = _mm256_mul_ps(r, cs);
    z[2 * p + 1] = _mm256_mul_ps(r, sn);
  }
  store_transposed(_mm256_castps_si256(z[0]), _mm256_castps_si256(z[1]), _mm256_castps_si256(z[2]),
                   _mm256_castps_si256(z[3]), out);
}

// Four float64 uniforms from 32-bit words lo/hi (lanes 0..3 of the 128-bit halves).
BG_AVX2 inline __m256d u01x4(__m128i lo, __m128i hi) {
  const __m256i l = _mm256_cvtepu32_epi64(lo);
  const __m256i h = _mm256_cvtepu32_epi64(hi);
  const __m256i m = _mm256_or_si256(_mm256_slli_epi64(h, 20), _mm256_srli_epi64(l, 12));
  // 1 + m 2^-52 in [1, 2) by bit assembly; subtracting 1 is exact.
  const __m256d x = _mm256_castsi256_pd(_mm256_or_si256(m, _mm256_set1_epi64x(0x3FF0000000000000ll)));
  return _mm256_add_pd(_mm256_sub_pd(x, _mm256_set1_pd(1.0)), _mm256_set1_pd(1.0 / 9007199254740992.0));
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
  const __m256d s = _mm256_div_pd(_mm256_sub_pd(m, one), _mm256_add_pd(m, one));
  const __m256d z = _mm256_mul_pd(s, s);
  __m256d p = _mm256_set1_pd(1.0 / 21.0);
  for (int k = 9; k >= 1; --k) p = _mm256_fmadd_pd(p, z, _mm256_set1_pd(1.0 / (2 * k + 1)));
  p = _mm256_mul_pd(p, z);
  const __m256d two_s = _mm256_add_pd(s, s);
  const __m256d logm = _mm256_fmadd_pd(two_s, p, two_s);
  const __m256d lo = _mm256_fmadd_pd(e, _mm256_set1_pd(1.90821492927058770002e-10), logm);
  return _mm256_fmadd_pd(e, _mm256_set1_pd(6.93147180369123816490e-01), lo);
}

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

// out[2b] = A[b], out[2b+1] = B[b] for 4 blocks.
BG_AVX2 inline void store_pairs(__m256d a, __m256d b, double* out) {
  const __m256d lo = _mm256_unpacklo_pd(a, b);
  const __m256d hi = _mm256_unpackhi_pd(a, b);
  _mm256_storeu_pd(out, _mm256_permute2f128_pd(lo, hi, 0x20));
  _mm256_storeu_pd(out + 4, _mm256_permute2f128_pd(lo, hi, 0x31));
}

BG_AVX2 void group_f64(double* out, uint64_t seed, uint64_t stream, uint64_t blk0, int K) {
  __m256i c[4];
  philox8(seed, stream, blk0, c);
  for (int half = 0; half < 2; ++half) {
    const __m128i w0 = half ? _mm256_extracti128_si256(c[0], 1) : _mm256_castsi256_si128(c[0]);
    const __m128i w1 = half ? _mm256_extracti128_si256(c[1], 1) : _mm256_castsi256_si128(c[1]);
    const __m128i w2 = half ? _mm256_extracti128_si256(c[2], 1) : _mm256_castsi256_si128(c[2]);
    const __m128i w3 = half ? _mm256_extracti128_si256(c[3], 1) : _mm256_castsi256_si128(c[3]);
    const __m256d a = u01x4(w0, w1);
    const __m256d b = u01x4(w2, w3);
    if (K == kUniform) {
      store_pairs(a, b, out + 8 * half);
    } else {
      const __m256d r = _mm256_sqrt_pd(_mm256_mul_pd(_mm256_set1_pd(-2.0), logx4(a)));
      __m256d cs, sn;
      sincos2pix4(b, cs, sn);
      store_pairs(_mm256_mul_pd(r, cs), _mm256_mul_pd(r, sn), out + 8 * half);
    }
  }
}

template <typename T>
void simd_group(T* out, uint64_t seed, uint64_t stream, uint64_t blk0, int K) {
  if constexpr (sizeof(T) == 4) group_f32(out, seed, stream, blk0, K);
  else group_f64(out, seed, stream, blk0, K);
}
#endif  // BG_HAVE_X86

constexpr int64_t kScalarChunk = 1 << 14;  // elements
constexpr int64_t kGroupsPerChunk = 512;    // 8-block groups

template <typename T, int K>
void fill(T* out, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset) {
  if (n < 0) throw std::invalid_argument("n must be >= 0");
  if (n == 0) return;
  constexpr uint64_t E = per_block<T>();
  constexpr uint64_t G = 8 * E;  // elements per 8-block group
  const uint64_t g0 = offset, g1 = offset + static_cast<uint64_t>(n);
  uint64_t a = (g0 + G - 1) / G * G, b = g1 / G * G;
#if BG_HAVE_X86
  const bool simd = cpu_has_avx2() && !g_force_scalar;
#else
  const bool simd = false;
#endif
  if (!simd || a >= b) { a = g1; b = g1; }  // everything scalar
  // Scalar pieces: [g0, a) and [b, g1), chunked on global indices.
  auto scalar_piece = [&](uint64_t lo, uint64_t hi) {
    if (lo >= hi) return;
    const int64_t len = static_cast<int64_t>(hi - lo);
    const int64_t nch = (len + kScalarChunk - 1) / kScalarChunk;
    parallel_chunks(nch, [&](int64_t ch) {
      const uint64_t s = lo + static_cast<uint64_t>(ch * kScalarChunk);
      const uint64_t e = std::min<uint64_t>(hi, s + kScalarChunk);
      scalar_range<T, K>(out + (s - g0), s, e, seed, stream);
    });
  };
  scalar_piece(g0, a);
#if BG_HAVE_X86
  if (b > a) {
    const int64_t groups = static_cast<int64_t>((b - a) / G);
    const int64_t nch = (groups + kGroupsPerChunk - 1) / kGroupsPerChunk;
    parallel_chunks(nch, [&](int64_t ch) {
      const int64_t gs = ch * kGroupsPerChunk, ge = std::min(groups, gs + kGroupsPerChunk);
      for (int64_t gi = gs; gi < ge; ++gi) {
        const uint64_t first = a + static_cast<uint64_t>(gi) * G;
        simd_group<T>(out + (first - g0), seed, stream, first / E, K);
      }
    });
  }
#endif
  scalar_piece(std::max(a, b), g1);
}

}  // namespace

void philox_blocks(const uint32_t* ctr, int64_t n, const uint32_t key[2], uint32_t* out) {
  if (n < 0) throw std::invalid_argument("n must be >= 0");
  const int64_t chunk = 1 << 14;
  parallel_chunks((n + chunk - 1) / chunk, [&](int64_t ch) {
    const int64_t e = std::min(n, (ch + 1) * chunk);
    for (int64_t i = ch * chunk; i < e; ++i) philox::block<10>(ctr + 4 * i, key, out + 4 * i);
  });
}

template <typename T>
void fill_uniform(T* out, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset) {
  fill<T, kUniform>(out, n, seed, stream, offset);
}
template <typename T>
void fill_normal(T* out, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset) {
  fill<T, kNormal>(out, n, seed, stream, offset);
}
template void fill_uniform<float>(float*, int64_t, uint64_t, uint64_t, uint64_t);
template void fill_uniform<double>(double*, int64_t, uint64_t, uint64_t, uint64_t);
template void fill_normal<float>(float*, int64_t, uint64_t, uint64_t, uint64_t);
template void fill_normal<double>(double*, int64_t, uint64_t, uint64_t, uint64_t);

const char* random_simd() {
  return (cpu_has_avx2() && !g_force_scalar) ? "avx2+fma" : "scalar";
}

bool random_force_scalar(bool on) {
  const bool prev = g_force_scalar;
  g_force_scalar = on;
  return prev;
}

}  // namespace bayesgrad
