// Bulk Philox uniforms and Box-Muller normals. The AVX2 path evaluates 8 Philox
// blocks per step (philox_simd.hpp) and the shared vector log/sin/cos
// (simd_math.hpp), because libm has no vector entry points without
// -ffast-math, which docs/design.md rules out. The scalar path is the
// reference (libm in double precision) and serves CPUs without AVX2 and the
// unaligned head and tail of a range; which elements take which path depends
// only on the global element index, never on the thread count.
#include "bayesgrad/random.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>

#include "bayesgrad/parallel.hpp"
#include "bayesgrad/philox.hpp"
#include "bayesgrad/philox_simd.hpp"
#include "bayesgrad/simd_math.hpp"

namespace bayesgrad {

namespace {

constexpr double kTwoPi = 6.283185307179586476925286766559;

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
using namespace simd;

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
  // Contract (every backend): element indices are 64-bit, so a draw whose last
  // element offset + n - 1 passes 2^64 - 1 is refused rather than wrapped.
  if (offset > UINT64_MAX - static_cast<uint64_t>(n - 1))
    throw std::invalid_argument("offset: the draw's last element offset + n - 1 exceeds 2^64 - 1");
  constexpr uint64_t E = per_block<T>();
  constexpr uint64_t G = 8 * E;  // elements per 8-block group
  if (offset + static_cast<uint64_t>(n - 1) == UINT64_MAX) {
    // Element 2^64 - 1 has no representable exclusive end: draw it alone.
    uint32_t w[4];
    philox::stream_block(seed, stream, UINT64_MAX / E, w);
    out[n - 1] = scalar_element<T, K>(w, static_cast<int64_t>(UINT64_MAX % E));
    if (--n == 0) return;
  }
  const uint64_t g0 = offset, g1 = offset + static_cast<uint64_t>(n);  // g1 <= 2^64 - 1 now
  // (rounding g0 up to a group would wrap in the last group: scalar there)
  uint64_t a = g0 > UINT64_MAX - G ? g1 : (g0 + G - 1) / G * G, b = g1 / G * G;
#if BG_HAVE_X86
  const bool vec = use_avx2();
#else
  const bool vec = false;
#endif
  if (!vec || a >= b) { a = g1; b = g1; }  // everything scalar
  // Scalar pieces: [g0, a) and [b, g1), chunked on global indices.
  auto scalar_piece = [&](uint64_t lo, uint64_t hi) {
    if (lo >= hi) return;
    const int64_t len = static_cast<int64_t>(hi - lo);
    const int64_t nch = (len + kScalarChunk - 1) / kScalarChunk;
    parallel_chunks(nch, [&](int64_t ch) {
      const uint64_t s = lo + static_cast<uint64_t>(ch * kScalarChunk);
      const uint64_t e = hi - s > static_cast<uint64_t>(kScalarChunk) ? s + kScalarChunk : hi;  // no wrap near 2^64
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
  return simd::use_avx2() ? "avx2+fma" : "scalar";
}

bool random_force_scalar(bool on) {
  const bool prev = simd::force_scalar_flag();
  simd::force_scalar_flag() = on;
  return prev;
}

}  // namespace bayesgrad
