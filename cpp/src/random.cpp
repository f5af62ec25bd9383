// Bulk Philox uniforms and Box-Muller normals. The AVX2 path evaluates 8 Philox
// blocks per step, the AVX-512 path 16 (philox_simd.hpp) and the shared vector log/sin/cos
// (simd_math.hpp), because libm has no vector entry points without
// -ffast-math, which docs/design.md rules out. The scalar path is the
// reference (libm in double precision) and serves CPUs without AVX2 and the
// unaligned head and tail of a range; which elements take which path depends
// only on the global element index, never on the thread count.
#include "bayesgrad/random.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "bayesgrad/parallel.hpp"
#include "bayesgrad/philox.hpp"
#include "bayesgrad/philox_simd.hpp"
#include "bayesgrad/samplers.hpp"
#include "bayesgrad/simd_math.hpp"

namespace bayesgrad {

namespace {

enum Kind { kUniform = 0, kNormal = 1 };

using samplers::per_block;  // elements produced by one Philox block

// ---------------------------------------------------------------- scalar path
// The per-element transforms are samplers.hpp's, shared with the CUDA kernels.
template <typename T, int K>
T scalar_element(const uint32_t w[4], int64_t q);

template <>
float scalar_element<float, kUniform>(const uint32_t w[4], int64_t q) {
  return samplers::uniform_element<float>(w, q);
}
template <>
double scalar_element<double, kUniform>(const uint32_t w[4], int64_t q) {
  return samplers::uniform_element<double>(w, q);
}
template <>
float scalar_element<float, kNormal>(const uint32_t w[4], int64_t q) {
  return samplers::normal_element<float>(w, q);
}
template <>
double scalar_element<double, kNormal>(const uint32_t w[4], int64_t q) {
  return samplers::normal_element<double>(w, q);
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

// ---------------------------------------------------------------- AVX-512 path
// 16 blocks per step; the same operations as group_f32 / group_f64 lane for
// lane, so both SIMD paths write identical values.
BG_AVX512 void group16_f32(float* out, uint64_t seed, uint64_t stream, uint64_t blk0, int K) {
  __m512i c[4];
  philox16(seed, stream, blk0, c);
  __m512i v[4];
  if (K == kUniform) {
    for (int l = 0; l < 4; ++l) v[l] = _mm512_castps_si512(u01x16(c[l]));
  } else {
    for (int p = 0; p < 2; ++p) {
      const __m512 r = _mm512_sqrt_ps(_mm512_mul_ps(_mm512_set1_ps(-2.0f), logx16(u01x16(c[2 * p]))));
      __m512 cs, sn;
      sincos2pix16(u01x16(c[2 * p + 1]), cs, sn);
      v[2 * p] = _mm512_castps_si512(_mm512_mul_ps(r, cs));
      v[2 * p + 1] = _mm512_castps_si512(_mm512_mul_ps(r, sn));
    }
  }
  // Blocks 0-7 then 8-15, each as the AVX2 path stores 8 blocks.
  store_transposed(_mm512_castsi512_si256(v[0]), _mm512_castsi512_si256(v[1]), _mm512_castsi512_si256(v[2]),
                   _mm512_castsi512_si256(v[3]), out);
  store_transposed(_mm512_extracti64x4_epi64(v[0], 1), _mm512_extracti64x4_epi64(v[1], 1),
                   _mm512_extracti64x4_epi64(v[2], 1), _mm512_extracti64x4_epi64(v[3], 1), out + 32);
}

BG_AVX512 void group16_f64(double* out, uint64_t seed, uint64_t stream, uint64_t blk0, int K) {
  __m512i c[4];
  philox16(seed, stream, blk0, c);
  for (int half = 0; half < 2; ++half) {
    const __m256i w0 = half ? _mm512_extracti64x4_epi64(c[0], 1) : _mm512_castsi512_si256(c[0]);
    const __m256i w1 = half ? _mm512_extracti64x4_epi64(c[1], 1) : _mm512_castsi512_si256(c[1]);
    const __m256i w2 = half ? _mm512_extracti64x4_epi64(c[2], 1) : _mm512_castsi512_si256(c[2]);
    const __m256i w3 = half ? _mm512_extracti64x4_epi64(c[3], 1) : _mm512_castsi512_si256(c[3]);
    __m512d a = u01x8d(w0, w1), b = u01x8d(w2, w3);
    if (K == kNormal) {
      const __m512d r = _mm512_sqrt_pd(_mm512_mul_pd(_mm512_set1_pd(-2.0), logx8d(a)));
      __m512d cs, sn;
      sincos2pix8d(b, cs, sn);
      a = _mm512_mul_pd(r, cs);
      b = _mm512_mul_pd(r, sn);
    }
    // out[2j] = a[j], out[2j+1] = b[j] for the 8 blocks of this half.
    const __m512i lo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), hi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    _mm512_storeu_pd(out + 16 * half, _mm512_permutex2var_pd(a, lo, b));
    _mm512_storeu_pd(out + 16 * half + 8, _mm512_permutex2var_pd(a, hi, b));
  }
}

// 16 blocks from blk0 by the best path (two 8-block AVX2 steps below AVX-512).
template <typename T>
void simd_group16(T* out, uint64_t seed, uint64_t stream, uint64_t blk0, int K, bool avx512) {
  if (avx512) {
    if constexpr (sizeof(T) == 4) group16_f32(out, seed, stream, blk0, K);
    else group16_f64(out, seed, stream, blk0, K);
    return;
  }
  constexpr int64_t half = 8 * per_block<T>();
  simd_group<T>(out, seed, stream, blk0, K);
  simd_group<T>(out + half, seed, stream, blk0 + 8, K);
}
#endif  // BG_HAVE_X86

constexpr int64_t kScalarChunk = 1 << 14;  // elements
constexpr int64_t kGroupsPerChunk = 256;    // 16-block groups (64 or 128 KiB of output)
// Outputs of at least 8 MiB are split into 2 MiB chunks instead: a fresh
// buffer's pages fault in (and are zeroed by the kernel) on first write, and
// with transparent huge pages a page is 2 MiB, so 64 KiB chunks taken by
// alternate threads would make both threads wait on every page.
constexpr int64_t kBigOutputBytes = int64_t{8} << 20, kBigChunkBytes = int64_t{2} << 20;

template <typename T, int K>
void fill(T* out, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset) {
  if (n < 0) throw std::invalid_argument("n must be >= 0");
  if (n == 0) return;
  // Contract (every backend): element indices are 64-bit, so a draw whose last
  // element offset + n - 1 passes 2^64 - 1 is refused rather than wrapped.
  if (offset > UINT64_MAX - static_cast<uint64_t>(n - 1))
    throw std::invalid_argument("offset: the draw's last element offset + n - 1 exceeds 2^64 - 1");
  constexpr uint64_t E = per_block<T>();
  constexpr uint64_t G = 16 * E;  // elements per 16-block group
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
  const bool vec = use_avx2(), wide = use_avx512();
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
    const int64_t group_bytes = static_cast<int64_t>(G * sizeof(T));
    const int64_t per = (groups * group_bytes >= kBigOutputBytes) ? kBigChunkBytes / group_bytes : kGroupsPerChunk;
    const int64_t nch = (groups + per - 1) / per;
    parallel_chunks(nch, [&](int64_t ch) {
      const int64_t gs = ch * per, ge = std::min(groups, gs + per);
      for (int64_t gi = gs; gi < ge; ++gi) {
        const uint64_t first = a + static_cast<uint64_t>(gi) * G;
        simd_group16<T>(out + (first - g0), seed, stream, first / E, K, wide);
      }
    });
  }
#endif
  scalar_piece(std::max(a, b), g1);
}

// Elements [lo, hi) of fill<T, K>(.., g1 - g0, .., g0)'s draw on the calling
// thread: the same split into a scalar head, 16-block groups and a scalar tail
// as fill makes for the whole draw [g0, g1), so every element takes the path
// (and gets the value) it gets there. A group the piece covers only in part is
// computed whole into a buffer.
template <typename T, int K>
void piece(T* out, uint64_t lo, uint64_t hi, uint64_t g0, uint64_t g1, uint64_t seed, uint64_t stream) {
  if (!(g0 <= lo && lo <= hi && hi <= g1) || g1 == UINT64_MAX)
    throw std::invalid_argument("piece: need g0 <= lo <= hi <= g1 < 2^64 - 1");
  if (lo == hi) return;
  constexpr uint64_t E = per_block<T>();
  constexpr uint64_t G = 16 * E;
  uint64_t a = g0 > UINT64_MAX - G ? g1 : (g0 + G - 1) / G * G, b = g1 / G * G;
#if BG_HAVE_X86
  const bool vec = use_avx2(), wide = use_avx512();
#else
  const bool vec = false;
#endif
  if (!vec || a >= b) { a = g1; b = g1; }
  if (lo < a) scalar_range<T, K>(out, lo, std::min(hi, a), seed, stream);
#if BG_HAVE_X86
  const uint64_t m0 = std::max(lo, a), m1 = std::min(hi, b);
  for (uint64_t g = m0; g < m1;) {
    const uint64_t first = g / G * G, end = std::min(m1, first + G);
    if (g == first && end == first + G) {
      simd_group16<T>(out + (g - lo), seed, stream, first / E, K, wide);
    } else {
      alignas(64) T tmp[G];
      simd_group16<T>(tmp, seed, stream, first / E, K, wide);
      std::memcpy(out + (g - lo), tmp + (g - first), (end - g) * sizeof(T));
    }
    g = end;
  }
#endif
  const uint64_t t0 = std::max(lo, b);
  if (t0 < hi) scalar_range<T, K>(out + (t0 - lo), t0, hi, seed, stream);
}

}  // namespace

template <typename T>
void normal_piece(T* out, uint64_t lo, uint64_t hi, uint64_t g0, uint64_t g1, uint64_t seed, uint64_t stream) {
  piece<T, kNormal>(out, lo, hi, g0, g1, seed, stream);
}
template void normal_piece<float>(float*, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
template void normal_piece<double>(double*, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);

template <typename T>
void uniform_piece(T* out, uint64_t lo, uint64_t hi, uint64_t g0, uint64_t g1, uint64_t seed, uint64_t stream) {
  piece<T, kUniform>(out, lo, hi, g0, g1, seed, stream);
}
template void uniform_piece<float>(float*, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
template void uniform_piece<double>(double*, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);

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

namespace {
const char* path_name(int p) { return p == simd::kAvx512 ? "avx512" : p == simd::kAvx2 ? "avx2+fma" : "scalar"; }
}  // namespace

const char* random_simd() { return path_name(simd::active_path()); }

std::string simd_limit(const std::string& path) {
  const std::string prev = path_name(simd::path_limit());
  if (path == "scalar") simd::path_limit() = simd::kScalar;
  else if (path == "avx2" || path == "avx2+fma") simd::path_limit() = simd::kAvx2;
  else if (path == "avx512") simd::path_limit() = simd::kAvx512;
  else throw std::invalid_argument("path must be 'scalar', 'avx2' or 'avx512', got '" + path + "'");
  return prev;
}

}  // namespace bayesgrad
