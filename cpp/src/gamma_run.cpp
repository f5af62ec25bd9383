// Bulk Gamma draws: the Marsaglia-Tsang loop of samplers::gamma_draw on
// 8-lane (AVX-512) or 4-lane (AVX2) double vectors.
//
// Why it is shaped like this (docs/design.md "Gamma sampling"): a draw costs
// one Philox block, a log, a sqrt and a sine when its first iteration accepts
// by the squeeze test (~90% of draws at alpha 2.5); the rest would stall a
// lane-by-lane loop. So lanes are never waited for: a run makes one pass over
// its elements at iteration 0 in whole vectors; lanes whose squeeze test fails
// go to a queue for the log test (done later, vectors full again), and
// rejected lanes to a retry queue processed at their next iteration, gathered
// into vectors, until both queues are empty. Each lane computes exactly what
// the scalar loop computes for its (element, iteration), so the draws are the
// scalar reference's up to rounding, whatever order the lanes run in.
//
// Philox here keeps one block per 64-bit lane (words in the low halves), so a
// round is two 32x32->64 multiplies, two shifts and two xors per 8 blocks and
// the words come out where the uint64 -> double conversions want them.
#include "gamma_run.hpp"

#include <cmath>
#include <limits>
#include <vector>

#include "bayesgrad/philox.hpp"
#include "bayesgrad/samplers.hpp"
#include "bayesgrad/simd_math.hpp"

namespace bayesgrad {
namespace {

static_assert(philox::kSubstreamBlocks == (1ull << 16), "block = element << 16 | iteration blocks");

// Lanes in flight between passes (structure of arrays; each array has 8
// spare slots, since vector stores write whole vectors). One per thread,
// reused: fresh arrays per run cost page faults that took longer than the draws.
struct Queues {
  void reserve(int64_t n) {
    const size_t m = static_cast<size_t>(n + 8);
    if (lm.size() >= m) return;
    for (auto* v : {&lm, &lk, &rm, &rk, &sm, &sk}) v->resize(m);
    for (auto* v : {&lv, &lz2, &lua, &llb}) v->resize(m);
  }
  // log test pending: element m of the run, iteration k, v = t^3, z^2, ua, ln(ub) / alpha (boost lanes, else 0)
  std::vector<int64_t> lm, lk;
  std::vector<double> lv, lz2, lua, llb;
  int64_t nl = 0;
  // to retry (element m at iteration k); s*: the next round's retries
  std::vector<int64_t> rm, rk, sm, sk;
  int64_t nr = 0, ns = 0;
};

// What every lane needs to know about its run.
struct Run {
  const double* alpha;
  const double* cv;  // gamma_c of each element's shape, or nullptr (computed per lane)
  bool same;       // alpha[0] for every element
  double a0, c0;   // alpha[0] and its c = 1 / sqrt(9 d) (same only)
  uint64_t seed, sub, e0;
  bool log_out;
  double* out;
  Queues* q;
};

// sin(2 pi s) for |s| <= 1/4: the Taylor series of sin in 2 pi s to degree 21
// (truncation < 2e-18), as s P(s^2).
struct SinCoeffs {
  double c[11];
  constexpr SinCoeffs() : c{} {
    long double t = 6.283185307179586476925286766559L;  // 2 pi
    const long double t2 = t * t;
    for (int k = 0; k < 11; ++k) {
      c[k] = static_cast<double>(k % 2 ? -t : t);
      t = t * t2 / static_cast<long double>((2 * k + 2) * (2 * k + 3));
    }
  }
};
constexpr SinCoeffs kSin{};

constexpr double kTwo52 = 4503599627370496.0;
constexpr long long kExp52 = 0x4330000000000000ll;  // the bits of 2^52
constexpr long long kOne = 0x3FF0000000000000ll;    // the bits of 1.0
constexpr long long kMant = 0x000FFFFFFFFFFFFFll;
constexpr long long kLow32 = 0xFFFFFFFFll;

// The scalar end of a lane that hit the iteration cap (never in practice).
void cap_lane(const Run& r, int64_t m) {
  const double a = r.same ? r.a0 : r.alpha[m];
  const double d = (a < 1.0 ? a + 1.0 : a) - 1.0 / 3.0;
  r.out[m] = r.log_out ? std::log(d) : d;
}

#if BG_HAVE_X86
// ===================================================================== AVX-512
// Philox4x32-10 with one block per 64-bit lane (philox_q8 below takes H
// vectors of 8 blocks); word l of each block ends in the low half of its lane
// (the high halves are garbage, never read).

// u01_f64(lo, hi) of the low words of lanes.
BG_AVX512 inline __m512d u01_q8(__m512i lo, __m512i hi) {
  const __m512i l = _mm512_or_si512(_mm512_srli_epi64(_mm512_slli_epi64(lo, 32), 44), _mm512_set1_epi64(kOne));
  // (hi << 20 & mantissa) | l
  const __m512i b = _mm512_ternarylogic_epi64(_mm512_slli_epi64(hi, 20), _mm512_set1_epi64(kMant), l, 0xEA);
  // 1 + m 2^-52 - (1 - 2^-53) = (m + 1/2) 2^-52, exact (u01_f64's value) in one subtraction
  return _mm512_sub_pd(_mm512_castsi512_pd(b), _mm512_set1_pd(1.0 - 0x1p-53));
}

// The low word of lanes as a double (exact): 2^52 + w assembled, 2^52 off.
BG_AVX512 inline __m512d word_q8(__m512i w) {
  const __m512i b = _mm512_ternarylogic_epi64(w, _mm512_set1_epi64(kLow32), _mm512_set1_epi64(kExp52), 0xEA);
  return _mm512_sub_pd(_mm512_castsi512_pd(b), _mm512_set1_pd(kTwo52));
}

// sin(2 pi s) for |s| <= 1/4 (kSin).
BG_AVX512 inline __m512d sin2pi_q8(__m512d s) {
  const __m512d s2 = _mm512_mul_pd(s, s);
  __m512d p = _mm512_set1_pd(kSin.c[10]);
  for (int k = 9; k >= 0; --k) p = _mm512_fmadd_pd(p, s2, _mm512_set1_pd(kSin.c[k]));
  return _mm512_mul_pd(p, s);
}

// The draw (or its log) of accepted lanes with X = x and lb = ln(ub) / alpha
// on the boost lanes `bst` (0 elsewhere). Lanes whose boost factor exp(lb)
// the vector exp flushes to 0 (lb < -700) are left to fix_q8.
BG_AVX512 inline __m512d result_q8(__m512d x, __m512d lb, __mmask8 bst, bool log_out) {
  if (log_out) return _mm512_add_pd(simd::logx8d(x), lb);
  if (!bst) return x;
  return _mm512_mask_mul_pd(x, bst, x, simd::expx8d(lb));
}
BG_AVX512 inline void fix_q8(const Run& r, __m512i mi, __m512d x, __m512d lb, __mmask8 bst) {
  const __mmask8 tiny = bst & _mm512_cmp_pd_mask(lb, _mm512_set1_pd(-700.0), _CMP_LT_OQ);
  if (r.log_out || !tiny) return;
  alignas(64) int64_t m[8];
  alignas(64) double xs[8], ls[8];
  _mm512_store_si512(m, mi);
  _mm512_store_pd(xs, x);
  _mm512_store_pd(ls, lb);
  for (int l = 0; l < 8; ++l)
    if (tiny >> l & 1) r.out[m[l]] = xs[l] * std::exp(ls[l]);  // as the scalar loop forms it
}

// Shape constants of 8 lanes: boost mask, d and c as samplers::gamma_draw forms them.
// given_c: c already holds the lanes' gamma_c (from r.cv).
BG_AVX512 inline void shape_q8(const Run& r, bool same, __m512d a, __mmask8& bst, __m512d& d, __m512d& c,
                               bool given_c = false) {
  const __m512d one = _mm512_set1_pd(1.0);
  bst = _mm512_cmp_pd_mask(a, one, _CMP_LT_OQ);
  d = _mm512_sub_pd(_mm512_mask_add_pd(a, bst, a, one), _mm512_set1_pd(1.0 / 3.0));
  if (same) c = _mm512_set1_pd(r.c0);
  else if (!given_c) c = _mm512_div_pd(one, _mm512_sqrt_pd(_mm512_mul_pd(_mm512_set1_pd(9.0), d)));
}

// Philox rounds of H independent vectors interleaved: one round of each in
// turn, so that their multiply -> shift -> xor chains overlap.
template <int H>
BG_AVX512 inline void philox_q8(uint64_t seed, uint64_t stream, const __m512i* blk, __m512i (*c)[4]) {
  __m512i c0[H], c1[H], c2[H], c3[H];
  for (int h = 0; h < H; ++h) {
    c0[h] = blk[h];
    c1[h] = _mm512_srli_epi64(blk[h], 32);
    c2[h] = _mm512_set1_epi64(static_cast<long long>(static_cast<uint32_t>(stream)));
    c3[h] = _mm512_set1_epi64(static_cast<long long>(stream >> 32));
  }
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  const __m512i m0 = _mm512_set1_epi64(philox::kM0), m1 = _mm512_set1_epi64(philox::kM1);
  for (int r = 0; r < 10; ++r) {
    if (r > 0) { k0 += philox::kW0; k1 += philox::kW1; }
    const __m512i kk0 = _mm512_set1_epi64(k0), kk1 = _mm512_set1_epi64(k1);
    for (int h = 0; h < H; ++h) {
      const __m512i p0 = _mm512_mul_epu32(c0[h], m0), p1 = _mm512_mul_epu32(c2[h], m1);
      c0[h] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p1, 32), c1[h], kk0, 0x96);
      c2[h] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p0, 32), c3[h], kk1, 0x96);
      c1[h] = p1;
      c3[h] = p0;
    }
  }
  for (int h = 0; h < H; ++h) {
    c[h][0] = c0[h]; c[h][1] = c1[h]; c[h][2] = c2[h]; c[h][3] = c3[h];
  }
}

// Iteration kv[h] of the elements mi[h] (lanes in valid[h]) for H vectors,
// stage by stage so that the long dependency chains (Philox, log, sqrt,
// sine) of the H vectors overlap; kContig: mi[h] = m0 + 8 h + lane, kv = 0.
template <int H, bool kContig, bool kSame>
BG_AVX512 inline void group_q8(const Run& r, int64_t m0, const __m512i* mi, const __m512i* kv, const __mmask8* valid) {
  Queues& q = *r.q;
  const __m512d one = _mm512_set1_pd(1.0);
  __m512d a[H], d[H], c[H], v[H], z2[H], ua[H];
  __m512i blk[H], w[H][4];
  __mmask8 bst[H], live[H], ok[H];
  for (int h = 0; h < H; ++h) {
    const bool given = !kSame && r.cv != nullptr;
    if (kSame) a[h] = _mm512_set1_pd(r.a0);
    else if (kContig) a[h] = _mm512_loadu_pd(r.alpha + m0 + 8 * h);
    else a[h] = _mm512_i64gather_pd(mi[h], r.alpha, 8);
    if (given) c[h] = kContig ? _mm512_loadu_pd(r.cv + m0 + 8 * h) : _mm512_i64gather_pd(mi[h], r.cv, 8);
    shape_q8(r, kSame, a[h], bst[h], d[h], c[h], given);
    blk[h] = _mm512_add_epi64(
        _mm512_slli_epi64(_mm512_add_epi64(_mm512_set1_epi64(static_cast<long long>(r.e0)), mi[h]), 16),
        _mm512_slli_epi64(kv[h], 1));
  }
  philox_q8<H>(r.seed, r.sub, blk, w);
  for (int h = 0; h < H; ++h) {
    // z = sqrt(-2 ln u1) cos(2 pi u2) = -rad sin(2 pi s), s = 1/4 - |u2 - 1/2| (exact), u2 = (w2 + 1/2) 2^-32
    const __m512d u1 = u01_q8(w[h][0], w[h][1]);
    const __m512d y = _mm512_sub_pd(word_q8(w[h][2]), _mm512_set1_pd(2147483647.5));  // (u2 - 1/2) 2^32
    const __m512d s = _mm512_mul_pd(_mm512_sub_pd(_mm512_set1_pd(1073741824.0), _mm512_abs_pd(y)),
                                    _mm512_set1_pd(0x1p-32));
    ua[h] = _mm512_mul_pd(_mm512_add_pd(word_q8(w[h][3]), _mm512_set1_pd(0.5)), _mm512_set1_pd(0x1p-32));
    const __m512d rad = _mm512_sqrt_pd(_mm512_mul_pd(_mm512_set1_pd(-2.0), simd::logx8d(u1)));
    const __m512d rs = _mm512_mul_pd(rad, sin2pi_q8(s));  // -z
    const __m512d t = _mm512_sub_pd(one, _mm512_mul_pd(c[h], rs));
    live[h] = valid[h] & _mm512_cmp_pd_mask(t, _mm512_setzero_pd(), _CMP_GT_OQ);
    v[h] = _mm512_mask_mul_pd(one, live[h], _mm512_mul_pd(t, t), t);
    z2[h] = _mm512_mul_pd(rs, rs);
    const __m512d sq = _mm512_sub_pd(one, _mm512_mul_pd(_mm512_set1_pd(0.0331), _mm512_mul_pd(z2[h], z2[h])));
    ok[h] = live[h] & _mm512_cmp_pd_mask(ua[h], sq, _CMP_LT_OQ);
  }
  for (int h = 0; h < H; ++h) {
    const __mmask8 pend = live[h] & ~ok[h], dead = valid[h] & ~live[h];
    // the boost uniform (block 2k+1) of lanes that accept now or may after the log test
    __m512d lb = _mm512_setzero_pd();
    const __mmask8 bl = bst[h] & live[h];
    if (bl) {
      __m512i u[1][4];
      const __m512i b1 = _mm512_add_epi64(blk[h], _mm512_set1_epi64(1));
      philox_q8<1>(r.seed, r.sub, &b1, u);
      lb = _mm512_maskz_div_pd(bl, simd::logx8d(u01_q8(u[0][0], u[0][1])), a[h]);
    }
    if (ok[h]) {
      const __m512d x = _mm512_mul_pd(d[h], v[h]);
      const __m512d res = result_q8(x, lb, bst[h] & ok[h], r.log_out);
      if (kContig) _mm512_mask_storeu_pd(r.out + m0 + 8 * h, ok[h], res);
      else _mm512_mask_i64scatter_pd(r.out, ok[h], mi[h], res, 8);
      fix_q8(r, mi[h], x, lb, bst[h] & ok[h]);
    }
    {  // no branch: about half the vectors have such lanes, at random (a mispredicted branch cost more)
      const int64_t n = q.nl;
      _mm512_storeu_si512(q.lm.data() + n, _mm512_maskz_compress_epi64(pend, mi[h]));
      _mm512_storeu_si512(q.lk.data() + n, _mm512_maskz_compress_epi64(pend, kv[h]));
      _mm512_storeu_pd(q.lv.data() + n, _mm512_maskz_compress_pd(pend, v[h]));
      _mm512_storeu_pd(q.lz2.data() + n, _mm512_maskz_compress_pd(pend, z2[h]));
      _mm512_storeu_pd(q.lua.data() + n, _mm512_maskz_compress_pd(pend, ua[h]));
      _mm512_storeu_pd(q.llb.data() + n, _mm512_maskz_compress_pd(pend, lb));
      q.nl = n + __builtin_popcount(pend);
    }
    if (dead) {
      _mm512_storeu_si512(q.sm.data() + q.ns, _mm512_maskz_compress_epi64(dead, mi[h]));
      _mm512_storeu_si512(q.sk.data() + q.ns,
                          _mm512_maskz_compress_epi64(dead, _mm512_add_epi64(kv[h], _mm512_set1_epi64(1))));
      q.ns += __builtin_popcount(dead);
    }
  }
}

constexpr int kH = 3;  // vectors in flight per group call (24 lanes on AVX-512, 12 on AVX2; 3 measured best of 2-8)

// Iteration 0 of the elements 0 .. 8 kH groups - 1; r copied to a local, so
// that the compiler sees the output stores cannot change it.
template <bool kSame>
BG_AVX512 void first_q8(const Run& run, int64_t groups) {
  const Run r = run;
  const __m512i iota = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
  const __m512i zero[kH] = {};
  __mmask8 all[kH];
  for (int h = 0; h < kH; ++h) all[h] = 0xFF;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t m0 = 8 * kH * g;
    __m512i mi[kH];
    for (int h = 0; h < kH; ++h) mi[h] = _mm512_add_epi64(_mm512_set1_epi64(m0 + 8 * h), iota);
    group_q8<kH, true, kSame>(r, m0, mi, zero, all);
  }
}

// The retry queue (rm, rk), 8 lanes at a time.
BG_AVX512 void retry_q8(const Run& r) {
  Queues& q = *r.q;
  for (int64_t i = 0; i < q.nr; i += 8) {
    const __mmask8 valid = static_cast<__mmask8>(q.nr - i >= 8 ? 0xFF : (1u << (q.nr - i)) - 1);
    const __m512i mi = _mm512_maskz_loadu_epi64(valid, q.rm.data() + i);
    const __m512i kv = _mm512_maskz_loadu_epi64(valid, q.rk.data() + i);
    if (r.same) group_q8<1, false, true>(r, 0, &mi, &kv, &valid);
    else group_q8<1, false, false>(r, 0, &mi, &kv, &valid);
  }
}

// The log test of the queued lanes; rejected ones go to the retry queue at k + 1.
BG_AVX512 void logtest_q8(const Run& r) {
  Queues& q = *r.q;
  const __m512d one = _mm512_set1_pd(1.0);
  for (int64_t i = 0; i < q.nl; i += 8) {
    const __mmask8 valid = static_cast<__mmask8>(q.nl - i >= 8 ? 0xFF : (1u << (q.nl - i)) - 1);
    const __m512i mi = _mm512_maskz_loadu_epi64(valid, q.lm.data() + i);
    const __m512d v = _mm512_mask_loadu_pd(one, valid, q.lv.data() + i);
    const __m512d z2 = _mm512_maskz_loadu_pd(valid, q.lz2.data() + i);
    const __m512d ua = _mm512_mask_loadu_pd(one, valid, q.lua.data() + i);
    const __m512d lb = _mm512_maskz_loadu_pd(valid, q.llb.data() + i);
    const __m512d a = r.same ? _mm512_set1_pd(r.a0) : _mm512_i64gather_pd(mi, r.alpha, 8);
    __mmask8 bst;
    __m512d d, c;
    shape_q8(r, r.same, a, bst, d, c);
    const __m512d rhs = _mm512_add_pd(_mm512_mul_pd(_mm512_set1_pd(0.5), z2),
                                      _mm512_mul_pd(d, _mm512_add_pd(_mm512_sub_pd(one, v), simd::logx8d(v))));
    const __mmask8 acc = valid & _mm512_cmp_pd_mask(simd::logx8d(ua), rhs, _CMP_LT_OQ);
    if (acc) {
      const __m512d x = _mm512_mul_pd(d, v);
      _mm512_mask_i64scatter_pd(r.out, acc, mi, result_q8(x, lb, bst & acc, r.log_out), 8);
      fix_q8(r, mi, x, lb, bst & acc);
    }
    const __mmask8 rej = valid & ~acc;
    if (rej) {
      const __m512i kv = _mm512_maskz_loadu_epi64(valid, q.lk.data() + i);
      _mm512_storeu_si512(q.sm.data() + q.ns, _mm512_maskz_compress_epi64(rej, mi));
      _mm512_storeu_si512(q.sk.data() + q.ns,
                          _mm512_maskz_compress_epi64(rej, _mm512_add_epi64(kv, _mm512_set1_epi64(1))));
      q.ns += __builtin_popcount(rej);
    }
  }
  q.nl = 0;
}

// ======================================================================== AVX2
// The AVX-512 functions above on 4-lane vectors, operation for operation
// (blends for masks, scalar loops for compress and scatter), so that both
// paths give the same bits.
template <int H>
BG_AVX2 inline void philox_q4(uint64_t seed, uint64_t stream, const __m256i* blk, __m256i (*c)[4]) {
  __m256i c0[H], c1[H], c2[H], c3[H];
  for (int h = 0; h < H; ++h) {
    c0[h] = blk[h];
    c1[h] = _mm256_srli_epi64(blk[h], 32);
    c2[h] = _mm256_set1_epi64x(static_cast<long long>(static_cast<uint32_t>(stream)));
    c3[h] = _mm256_set1_epi64x(static_cast<long long>(stream >> 32));
  }
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  const __m256i m0 = _mm256_set1_epi64x(philox::kM0), m1 = _mm256_set1_epi64x(philox::kM1);
  for (int r = 0; r < 10; ++r) {
    if (r > 0) { k0 += philox::kW0; k1 += philox::kW1; }
    const __m256i kk0 = _mm256_set1_epi64x(k0), kk1 = _mm256_set1_epi64x(k1);
    for (int h = 0; h < H; ++h) {
      const __m256i p0 = _mm256_mul_epu32(c0[h], m0), p1 = _mm256_mul_epu32(c2[h], m1);
      c0[h] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), c1[h]), kk0);
      c2[h] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), c3[h]), kk1);
      c1[h] = p1;
      c3[h] = p0;
    }
  }
  for (int h = 0; h < H; ++h) {
    c[h][0] = c0[h]; c[h][1] = c1[h]; c[h][2] = c2[h]; c[h][3] = c3[h];
  }
}

BG_AVX2 inline __m256d u01_q4(__m256i lo, __m256i hi) {
  const __m256i l = _mm256_or_si256(_mm256_srli_epi64(_mm256_slli_epi64(lo, 32), 44), _mm256_set1_epi64x(kOne));
  const __m256i b = _mm256_or_si256(_mm256_and_si256(_mm256_slli_epi64(hi, 20), _mm256_set1_epi64x(kMant)), l);
  return _mm256_sub_pd(_mm256_castsi256_pd(b), _mm256_set1_pd(1.0 - 0x1p-53));
}

BG_AVX2 inline __m256d word_q4(__m256i w) {
  const __m256i b = _mm256_or_si256(_mm256_and_si256(w, _mm256_set1_epi64x(kLow32)), _mm256_set1_epi64x(kExp52));
  return _mm256_sub_pd(_mm256_castsi256_pd(b), _mm256_set1_pd(kTwo52));
}

BG_AVX2 inline __m256d sin2pi_q4(__m256d s) {
  const __m256d s2 = _mm256_mul_pd(s, s);
  __m256d p = _mm256_set1_pd(kSin.c[10]);
  for (int k = 9; k >= 0; --k) p = _mm256_fmadd_pd(p, s2, _mm256_set1_pd(kSin.c[k]));
  return _mm256_mul_pd(p, s);
}

BG_AVX2 inline __m256d result_q4(__m256d x, __m256d lb, __m256d bst, bool log_out) {
  if (log_out) return _mm256_add_pd(simd::logx4(x), lb);
  if (_mm256_testz_pd(bst, bst)) return x;
  return _mm256_blendv_pd(x, _mm256_mul_pd(x, simd::expx4(lb)), bst);
}
BG_AVX2 inline void fix_q4(const Run& r, __m256i mi, __m256d x, __m256d lb, __m256d bst) {
  const int tiny = _mm256_movemask_pd(_mm256_and_pd(bst, _mm256_cmp_pd(lb, _mm256_set1_pd(-700.0), _CMP_LT_OQ)));
  if (r.log_out || !tiny) return;
  alignas(32) int64_t m[4];
  alignas(32) double xs[4], ls[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(m), mi);
  _mm256_store_pd(xs, x);
  _mm256_store_pd(ls, lb);
  for (int l = 0; l < 4; ++l)
    if (tiny >> l & 1) r.out[m[l]] = xs[l] * std::exp(ls[l]);
}

BG_AVX2 inline void shape_q4(const Run& r, bool same, __m256d a, __m256d& bst, __m256d& d, __m256d& c,
                             bool given_c = false) {
  const __m256d one = _mm256_set1_pd(1.0);
  bst = _mm256_cmp_pd(a, one, _CMP_LT_OQ);
  d = _mm256_sub_pd(_mm256_blendv_pd(a, _mm256_add_pd(a, one), bst), _mm256_set1_pd(1.0 / 3.0));
  if (same) c = _mm256_set1_pd(r.c0);
  else if (!given_c) c = _mm256_div_pd(one, _mm256_sqrt_pd(_mm256_mul_pd(_mm256_set1_pd(9.0), d)));
}

// Lanes of `mask` (bits) of 4-lane vectors moved to the front (the AVX-512
// compress): a permutation per mask from a table, no branch per lane (the
// lane bits are random; branching on them mispredicted half the time).
struct Compress4 {
  alignas(32) int32_t idx[16][8];
  constexpr Compress4() : idx{} {
    for (int m = 0; m < 16; ++m) {
      int n = 0;
      for (int l = 0; l < 4; ++l)
        if (m >> l & 1) { idx[m][2 * n] = 2 * l; idx[m][2 * n + 1] = 2 * l + 1; ++n; }
      for (; n < 4; ++n) { idx[m][2 * n] = 0; idx[m][2 * n + 1] = 1; }
    }
  }
};
constexpr Compress4 kCompress4{};
BG_AVX2 inline __m256i compress_i4(__m256i v, int mask) {
  return _mm256_permutevar8x32_epi32(v, _mm256_load_si256(reinterpret_cast<const __m256i*>(kCompress4.idx[mask])));
}
// Append the lanes of `mask` at dst (whole vectors are written: dst has room).
BG_AVX2 inline void push_i4(int64_t* dst, __m256i v, int mask) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), compress_i4(v, mask));
}
BG_AVX2 inline void push_d4(double* dst, __m256d v, int mask) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), compress_i4(_mm256_castpd_si256(v), mask));
}
BG_AVX2 inline void scatter_d4(double* out, __m256i mi, __m256d v, int mask) {
  alignas(32) int64_t m[4];
  alignas(32) double t[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(m), mi);
  _mm256_store_pd(t, v);
  for (int l = 0; l < 4; ++l)
    if (mask >> l & 1) out[m[l]] = t[l];
}
BG_AVX2 inline __m256d lanes_mask4(int bits) {
  const __m256i b = _mm256_and_si256(_mm256_set1_epi64x(bits), _mm256_setr_epi64x(1, 2, 4, 8));
  return _mm256_castsi256_pd(_mm256_cmpeq_epi64(b, _mm256_setr_epi64x(1, 2, 4, 8)));
}

template <int H, bool kContig, bool kSame>
BG_AVX2 inline void group_q4(const Run& r, int64_t m0, const __m256i* mi, const __m256i* kv, const int* valid) {
  Queues& q = *r.q;
  const __m256d one = _mm256_set1_pd(1.0);
  __m256d a[H], bst[H], d[H], c[H], v[H], z2[H], ua[H], livev[H], okv[H];
  __m256i blk[H], w[H][4];
  for (int h = 0; h < H; ++h) {
    const bool given = !kSame && r.cv != nullptr;
    if (kSame) a[h] = _mm256_set1_pd(r.a0);
    else if (kContig) a[h] = _mm256_loadu_pd(r.alpha + m0 + 4 * h);
    else a[h] = _mm256_i64gather_pd(r.alpha, mi[h], 8);
    if (given) c[h] = kContig ? _mm256_loadu_pd(r.cv + m0 + 4 * h) : _mm256_i64gather_pd(r.cv, mi[h], 8);
    shape_q4(r, kSame, a[h], bst[h], d[h], c[h], given);
    blk[h] = _mm256_add_epi64(
        _mm256_slli_epi64(_mm256_add_epi64(_mm256_set1_epi64x(static_cast<long long>(r.e0)), mi[h]), 16),
        _mm256_slli_epi64(kv[h], 1));
  }
  philox_q4<H>(r.seed, r.sub, blk, w);
  for (int h = 0; h < H; ++h) {
    const __m256d u1 = u01_q4(w[h][0], w[h][1]);
    const __m256d y = _mm256_sub_pd(word_q4(w[h][2]), _mm256_set1_pd(2147483647.5));
    const __m256d ay = _mm256_andnot_pd(_mm256_set1_pd(-0.0), y);
    const __m256d s = _mm256_mul_pd(_mm256_sub_pd(_mm256_set1_pd(1073741824.0), ay), _mm256_set1_pd(0x1p-32));
    ua[h] = _mm256_mul_pd(_mm256_add_pd(word_q4(w[h][3]), _mm256_set1_pd(0.5)), _mm256_set1_pd(0x1p-32));
    const __m256d rad = _mm256_sqrt_pd(_mm256_mul_pd(_mm256_set1_pd(-2.0), simd::logx4(u1)));
    const __m256d rs = _mm256_mul_pd(rad, sin2pi_q4(s));
    const __m256d t = _mm256_sub_pd(one, _mm256_mul_pd(c[h], rs));
    livev[h] = _mm256_and_pd(lanes_mask4(valid[h]), _mm256_cmp_pd(t, _mm256_setzero_pd(), _CMP_GT_OQ));
    v[h] = _mm256_blendv_pd(one, _mm256_mul_pd(_mm256_mul_pd(t, t), t), livev[h]);
    z2[h] = _mm256_mul_pd(rs, rs);
    const __m256d sq = _mm256_sub_pd(one, _mm256_mul_pd(_mm256_set1_pd(0.0331), _mm256_mul_pd(z2[h], z2[h])));
    okv[h] = _mm256_and_pd(livev[h], _mm256_cmp_pd(ua[h], sq, _CMP_LT_OQ));
  }
  for (int h = 0; h < H; ++h) {
    const int live = _mm256_movemask_pd(livev[h]), ok = _mm256_movemask_pd(okv[h]);
    const int pend = live & ~ok, dead = valid[h] & ~live;
    __m256d lb = _mm256_setzero_pd();
    const __m256d blv = _mm256_and_pd(bst[h], livev[h]);
    if (_mm256_movemask_pd(blv)) {
      __m256i u[1][4];
      const __m256i b1 = _mm256_add_epi64(blk[h], _mm256_set1_epi64x(1));
      philox_q4<1>(r.seed, r.sub, &b1, u);
      lb = _mm256_and_pd(blv, _mm256_div_pd(simd::logx4(u01_q4(u[0][0], u[0][1])), a[h]));
    }
    if (ok) {
      const __m256d x = _mm256_mul_pd(d[h], v[h]);
      const __m256d bok = _mm256_and_pd(bst[h], okv[h]);
      const __m256d res = result_q4(x, lb, bok, r.log_out);
      if (kContig) _mm256_maskstore_pd(r.out + m0 + 4 * h, _mm256_castpd_si256(okv[h]), res);
      else scatter_d4(r.out, mi[h], res, ok);
      fix_q4(r, mi[h], x, lb, bok);
    }
    {  // no branch, as in group_q8
      const int64_t n = q.nl;
      push_i4(q.lm.data() + n, mi[h], pend);
      push_i4(q.lk.data() + n, kv[h], pend);
      push_d4(q.lv.data() + n, v[h], pend);
      push_d4(q.lz2.data() + n, z2[h], pend);
      push_d4(q.lua.data() + n, ua[h], pend);
      push_d4(q.llb.data() + n, lb, pend);
      q.nl = n + __builtin_popcount(pend);
    }
    if (dead) {
      push_i4(q.sm.data() + q.ns, mi[h], dead);
      push_i4(q.sk.data() + q.ns, _mm256_add_epi64(kv[h], _mm256_set1_epi64x(1)), dead);
      q.ns += __builtin_popcount(dead);
    }
  }
}

template <bool kSame>
BG_AVX2 void first_q4(const Run& run, int64_t groups) {
  const Run r = run;
  const __m256i iota = _mm256_setr_epi64x(0, 1, 2, 3);
  const __m256i zero[kH] = {};
  int all[kH];
  for (int h = 0; h < kH; ++h) all[h] = 0xF;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t m0 = 4 * kH * g;
    __m256i mi[kH];
    for (int h = 0; h < kH; ++h) mi[h] = _mm256_add_epi64(_mm256_set1_epi64x(m0 + 4 * h), iota);
    group_q4<kH, true, kSame>(r, m0, mi, zero, all);
  }
}

// Up to 4 int64 from p (the rest 0).
BG_AVX2 inline __m256i load_i4(const int64_t* p, int64_t n) {
  if (n >= 4) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  alignas(32) int64_t t[4] = {0, 0, 0, 0};
  for (int64_t l = 0; l < n; ++l) t[l] = p[l];
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(t));
}
BG_AVX2 inline __m256d load_d4(const double* p, int64_t n, double fill) {
  if (n >= 4) return _mm256_loadu_pd(p);
  alignas(32) double t[4] = {fill, fill, fill, fill};
  for (int64_t l = 0; l < n; ++l) t[l] = p[l];
  return _mm256_load_pd(t);
}

BG_AVX2 void retry_q4(const Run& r) {
  Queues& q = *r.q;
  for (int64_t i = 0; i < q.nr; i += 4) {
    const int64_t n = q.nr - i;
    const int valid = n >= 4 ? 0xF : (1 << n) - 1;
    const __m256i mi = load_i4(q.rm.data() + i, n), kv = load_i4(q.rk.data() + i, n);
    if (r.same) group_q4<1, false, true>(r, 0, &mi, &kv, &valid);
    else group_q4<1, false, false>(r, 0, &mi, &kv, &valid);
  }
}

BG_AVX2 void logtest_q4(const Run& r) {
  Queues& q = *r.q;
  const __m256d one = _mm256_set1_pd(1.0);
  for (int64_t i = 0; i < q.nl; i += 4) {
    const int64_t n = q.nl - i;
    const int valid = n >= 4 ? 0xF : (1 << n) - 1;
    const __m256i mi = load_i4(q.lm.data() + i, n);
    const __m256d v = load_d4(q.lv.data() + i, n, 1.0);
    const __m256d z2 = load_d4(q.lz2.data() + i, n, 0.0);
    const __m256d ua = load_d4(q.lua.data() + i, n, 1.0);
    const __m256d lb = load_d4(q.llb.data() + i, n, 0.0);
    const __m256d a = r.same ? _mm256_set1_pd(r.a0) : _mm256_i64gather_pd(r.alpha, mi, 8);
    __m256d bst, d, c;
    shape_q4(r, r.same, a, bst, d, c);
    const __m256d rhs = _mm256_add_pd(_mm256_mul_pd(_mm256_set1_pd(0.5), z2),
                                      _mm256_mul_pd(d, _mm256_add_pd(_mm256_sub_pd(one, v), simd::logx4(v))));
    const __m256d accv = _mm256_and_pd(lanes_mask4(valid), _mm256_cmp_pd(simd::logx4(ua), rhs, _CMP_LT_OQ));
    const int acc = _mm256_movemask_pd(accv);
    if (acc) {
      const __m256d x = _mm256_mul_pd(d, v);
      const __m256d bacc = _mm256_and_pd(bst, accv);
      scatter_d4(r.out, mi, result_q4(x, lb, bacc, r.log_out), acc);
      fix_q4(r, mi, x, lb, bacc);
    }
    const int rej = valid & ~acc;
    if (rej) {
      const __m256i kv = load_i4(q.lk.data() + i, n);
      push_i4(q.sm.data() + q.ns, mi, rej);
      push_i4(q.sk.data() + q.ns, _mm256_add_epi64(kv, _mm256_set1_epi64x(1)), rej);
      q.ns += __builtin_popcount(rej);
    }
  }
  q.nl = 0;
}
#endif  // BG_HAVE_X86

// The queues' rounds after the first pass: the log tests, then the retries of
// the rejected lanes at their next iteration, until no lane is left. The
// retries that would pass the cap end as the scalar loop ends them.
template <typename LogTest, typename Retry>
void drain(const Run& r, LogTest logtest, Retry retry) {
  Queues& q = *r.q;
  for (;;) {
    if (q.nl) logtest(r);
    if (q.ns == 0) return;
    q.rm.swap(q.sm);
    q.rk.swap(q.sk);
    q.nr = 0;
    for (int64_t i = 0; i < q.ns; ++i) {
      if (q.rk[i] >= static_cast<int64_t>(samplers::kGammaMaxIter)) {
        cap_lane(r, q.rm[i]);
        continue;
      }
      q.rm[q.nr] = q.rm[i];
      q.rk[q.nr++] = q.rk[i];
    }
    q.ns = 0;
    retry(r);
  }
}

}  // namespace

void gamma_run(const double* alpha, bool same_alpha, int64_t n, uint64_t seed, uint64_t sub, uint64_t e0,
               bool log_out, double* out, const double* c) {
  if (n <= 0) return;
#if BG_HAVE_X86
  if (simd::use_avx2()) {
    thread_local Queues q;
    q.reserve(n);
    q.nl = q.nr = q.ns = 0;
    Run r{alpha, same_alpha ? nullptr : c, same_alpha, alpha[0], 0.0, seed, sub, e0, log_out, out, &q};
    if (same_alpha) r.c0 = gamma_c(r.a0);  // IEEE sqrt and division: the lanes' bits
    const int64_t w = (simd::use_avx512() ? 8 : 4) * kH;  // lanes per first-pass group
    const int64_t full = n / w;
    // the tail: iteration 0 from the retry queue
    for (int64_t m = full * w; m < n; ++m) {
      q.sm[q.ns] = m;
      q.sk[q.ns++] = 0;
    }
    if (w == 8 * kH) {
      if (same_alpha) first_q8<true>(r, full);
      else first_q8<false>(r, full);
      drain(r, logtest_q8, retry_q8);
    } else {
      if (same_alpha) first_q4<true>(r, full);
      else first_q4<false>(r, full);
      drain(r, logtest_q4, retry_q4);
    }
    return;
  }
#endif
  for (int64_t m = 0; m < n; ++m)
    out[m] = samplers::gamma_draw(same_alpha ? alpha[0] : alpha[m], seed, sub, e0 + static_cast<uint64_t>(m), log_out);
}

}  // namespace bayesgrad
