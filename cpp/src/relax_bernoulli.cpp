// REBAR / RELAX for Bernoulli coordinates (estimators.hpp): the draws z, z~ and dz~/d eta, their
// Concrete (sigmoid) relaxation at one temperature or at three for the temperature's central difference,
// the relaxed-f part and the combination of the terms, each one pass over a call's (n, p) values on the
// pool; moved here from estimators.cpp (which passed 1000 lines), with relax_categorical.cpp its
// Categorical counterpart. The twins are in _numpy/estimators.py.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "bayesgrad/estimators.hpp"
#include "bayesgrad/parallel.hpp"
#include "bayesgrad/random.hpp"
#include "bayesgrad/simd_math.hpp"

namespace bayesgrad {

namespace {
inline double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}
inline double softplus(double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }

// y = sigmoid(z * inv) for count values, in the two-branch form exp(-|x|) / (1 + exp(-|x|)) (x < 0)
// and 1 / (1 + exp(-|x|)) (x >= 0), so that exp never overflows (simd_math.hpp's sigmoidx*).
void sigmoid_scalar(const double* z, double inv, int64_t count, double* y) {
  for (int64_t e = 0; e < count; ++e) y[e] = sigmoid(z[e] * inv);
}

#if BG_HAVE_X86
BG_AVX2 void sigmoid_avx2(const double* z, double inv, int64_t count, double* y) {
  const __m256d vinv = _mm256_set1_pd(inv);
  int64_t e = 0;
  for (; e + 4 <= count; e += 4) _mm256_storeu_pd(y + e, simd::sigmoidx4(_mm256_mul_pd(_mm256_loadu_pd(z + e), vinv)));
  sigmoid_scalar(z + e, inv, count - e, y + e);
}

// sigmoid_avx2 on 8 lanes; the tail a masked vector (zeros in the unused lanes).
BG_AVX512 void sigmoid_avx512(const double* z, double inv, int64_t count, double* y) {
  const __m512d vinv = _mm512_set1_pd(inv);
  for (int64_t e = 0; e < count; e += 8) {
    const __mmask8 m = static_cast<__mmask8>(count - e >= 8 ? 0xFFu : (1u << (count - e)) - 1u);
    _mm512_mask_storeu_pd(y + e, m, simd::sigmoidx8d(_mm512_mul_pd(_mm512_maskz_loadu_pd(m, z + e), vinv)));
  }
}
#endif

void sigmoid_block(const double* z, double inv, int64_t count, double* y) {
#if BG_HAVE_X86
  if (simd::use_avx512()) return sigmoid_avx512(z, inv, count, y);
  if (simd::use_avx2()) return sigmoid_avx2(z, inv, count, y);
#endif
  sigmoid_scalar(z, inv, count, y);
}

}  // namespace

namespace {
// Per-coordinate constants of the Bernoulli draws: p, log p, log(1 - p).
struct BernoulliConsts {
  const double *eta, *P, *LP, *LQ;
};

// Elements [e0, e1) of the draws, all in coordinate order of one row (j = e % p).
void draws_scalar(const BernoulliConsts& c, const double* u, const double* v, int64_t p, int64_t e0, int64_t e1,
                  double* z, double* zt, double* dzt, double* b, double* score) {
  for (int64_t e = e0; e < e1; ++e) {
    const int64_t j = e % p;
    const double et = c.eta[j], pj = c.P[j], qj = 1.0 - pj;
    const double ue = u[e], ve = v[e];
    const bool one = ue < pj;
    b[e] = one ? 1.0 : 0.0;
    score[e] = b[e] - pj;
    z[e] = et + std::log1p(-ue) - std::log(ue);
    // w~ = 1 - p + p v (b = 1) or (1 - p) v (b = 0); 1 - w~ = p (1 - v) or 1 - (1 - p) v
    double lw, l1w, g;
    if (one) {
      const double m = pj * (1.0 - ve);  // 1 - w~
      lw = std::log1p(-m);
      l1w = c.LP[j] + std::log1p(-ve);
      g = pj - pj * qj * (1.0 - ve) / (1.0 - m);
    } else {
      const double w = qj * ve;
      lw = c.LQ[j] + std::log(ve);
      l1w = std::log1p(-w);
      g = qj - pj * qj * ve / (1.0 - w);
    }
    zt[e] = et + lw - l1w;
    dzt[e] = g;
  }
}

#if BG_HAVE_X86
// Rows [i0, i1), four coordinates at a time with the shared vector log: both branches of
// draws_scalar are formed and blended. The differences of logs are taken as logs of
// ratios, log((1 - u) / u) and log((1 - w~) / (1 - v)) or log(v / (1 - w~)) (1 - u, 1 - v,
// 1 - w~ are exact or within half an ulp of a number >= 1/2), two logs instead of five, each
// without forming the ratio (simd::logratiox4: one division, not two).
BG_AVX2 void draws_avx2(const BernoulliConsts& c, const double* u, const double* v, int64_t p, int64_t i0,
                        int64_t i1, double* z, double* zt, double* dzt, double* b, double* score) {
  const __m256d one = _mm256_set1_pd(1.0);
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t o = i * p;
    int64_t j = 0;
    for (; j + 4 <= p; j += 4) {
      const int64_t e = o + j;
      const __m256d et = _mm256_loadu_pd(c.eta + j), pj = _mm256_loadu_pd(c.P + j);
      const __m256d qj = _mm256_sub_pd(one, pj), pq = _mm256_mul_pd(pj, qj);
      const __m256d ue = _mm256_loadu_pd(u + e), ve = _mm256_loadu_pd(v + e);
      const __m256d is1 = _mm256_cmp_pd(ue, pj, _CMP_LT_OQ);
      const __m256d bv = _mm256_and_pd(is1, one);
      _mm256_storeu_pd(b + e, bv);
      _mm256_storeu_pd(score + e, _mm256_sub_pd(bv, pj));
      _mm256_storeu_pd(z + e, _mm256_add_pd(et, simd::logratiox4(_mm256_sub_pd(one, ue), ue)));
      const __m256d omv = _mm256_sub_pd(one, ve);
      // 1 - w~ (b = 1: p (1 - v) subtracted) and w~ (b = 0: (1 - p) v)
      const __m256d mw = _mm256_blendv_pd(_mm256_mul_pd(qj, ve), _mm256_mul_pd(pj, omv), is1);
      const __m256d den = _mm256_sub_pd(one, mw);
      // b = 1: zt = eta - log p + log((1 - m) / (1 - v)); b = 0: zt = eta + log(1 - p) + log(v / (1 - w))
      const __m256d num = _mm256_blendv_pd(ve, den, is1), dd = _mm256_blendv_pd(den, omv, is1);
      const __m256d off = _mm256_blendv_pd(_mm256_loadu_pd(c.LQ + j), _mm256_sub_pd(_mm256_setzero_pd(),
                                                                                   _mm256_loadu_pd(c.LP + j)), is1);
      _mm256_storeu_pd(zt + e, _mm256_add_pd(_mm256_add_pd(et, off), simd::logratiox4(num, dd)));
      const __m256d base = _mm256_blendv_pd(qj, pj, is1), nv = _mm256_blendv_pd(ve, omv, is1);
      _mm256_storeu_pd(dzt + e, _mm256_sub_pd(base, _mm256_div_pd(_mm256_mul_pd(pq, nv), den)));
    }
    draws_scalar(c, u, v, p, o + j, o + p, z, zt, dzt, b, score);
  }
}

// draws_avx2 on 8 lanes, operation for operation; the row's tail a masked vector.
BG_AVX512 void draws_avx512(const BernoulliConsts& c, const double* u, const double* v, int64_t p, int64_t i0,
                            int64_t i1, double* z, double* zt, double* dzt, double* b, double* score) {
  const __m512d one = _mm512_set1_pd(1.0);
  for (int64_t i = i0; i < i1; ++i) {
    const int64_t o = i * p;
    for (int64_t j = 0; j < p; j += 8) {
      const __mmask8 m = static_cast<__mmask8>(p - j >= 8 ? 0xFFu : (1u << (p - j)) - 1u);
      const int64_t e = o + j;
      // unused lanes: u = v = 1/2 (the logs stay finite), never stored
      const __m512d half = _mm512_set1_pd(0.5);
      const __m512d et = _mm512_maskz_loadu_pd(m, c.eta + j), pj = _mm512_mask_loadu_pd(half, m, c.P + j);
      const __m512d qj = _mm512_sub_pd(one, pj), pq = _mm512_mul_pd(pj, qj);
      const __m512d ue = _mm512_mask_loadu_pd(half, m, u + e), ve = _mm512_mask_loadu_pd(half, m, v + e);
      const __mmask8 is1 = _mm512_cmp_pd_mask(ue, pj, _CMP_LT_OQ);
      const __m512d bv = _mm512_maskz_mov_pd(is1, one);
      _mm512_mask_storeu_pd(b + e, m, bv);
      _mm512_mask_storeu_pd(score + e, m, _mm512_sub_pd(bv, pj));
      _mm512_mask_storeu_pd(z + e, m, _mm512_add_pd(et, simd::logratiox8d(_mm512_sub_pd(one, ue), ue)));
      const __m512d omv = _mm512_sub_pd(one, ve);
      const __m512d mw = _mm512_mask_blend_pd(is1, _mm512_mul_pd(qj, ve), _mm512_mul_pd(pj, omv));
      const __m512d den = _mm512_sub_pd(one, mw);
      const __m512d num = _mm512_mask_blend_pd(is1, ve, den), dd = _mm512_mask_blend_pd(is1, den, omv);
      const __m512d off = _mm512_mask_blend_pd(is1, _mm512_maskz_loadu_pd(m, c.LQ + j),
                                               _mm512_sub_pd(_mm512_setzero_pd(), _mm512_maskz_loadu_pd(m, c.LP + j)));
      _mm512_mask_storeu_pd(zt + e, m, _mm512_add_pd(_mm512_add_pd(et, off), simd::logratiox8d(num, dd)));
      const __m512d base = _mm512_mask_blend_pd(is1, qj, pj), nv = _mm512_mask_blend_pd(is1, ve, omv);
      _mm512_mask_storeu_pd(dzt + e, m, _mm512_sub_pd(base, _mm512_div_pd(_mm512_mul_pd(pq, nv), den)));
    }
  }
}
#endif
}  // namespace

namespace {
// The draws of rows [0, n) in chunks of `rows` rows on the pool; `uniforms(i0, i1, u, v)` points u
// and v at the uniforms of rows [i0, i1) (u[0] the one of element i0 p), and `after(i0, i1)` runs
// on the chunk once its draws are written (while they are in cache).
template <typename Uniforms, typename After>
void draws_rows(const double* eta, int64_t n, int64_t p, int64_t rows, double* z, double* zt, double* dzt,
                double* b, double* score, const Uniforms& uniforms, const After& after) {
  // per-coordinate constants once: p, 1 - p, log p, log(1 - p)
  std::vector<double> pr(static_cast<size_t>(p)), lp(static_cast<size_t>(p)), lq(static_cast<size_t>(p));
  for (int64_t j = 0; j < p; ++j) {
    pr[j] = sigmoid(eta[j]);
    lp[j] = -softplus(-eta[j]);
    lq[j] = -softplus(eta[j]);
  }
  const BernoulliConsts c{eta, pr.data(), lp.data(), lq.data()};
  parallel_chunks((n + rows - 1) / rows, [&](int64_t ch) {
    const int64_t i0 = ch * rows, i1 = std::min(n, i0 + rows), o = i0 * p;
    const double *u = nullptr, *v = nullptr;
    uniforms(i0, i1, u, v);
    [&] {
#if BG_HAVE_X86
      if (simd::use_avx512()) return draws_avx512(c, u, v, p, 0, i1 - i0, z + o, zt + o, dzt + o, b + o, score + o);
      if (simd::use_avx2()) return draws_avx2(c, u, v, p, 0, i1 - i0, z + o, zt + o, dzt + o, b + o, score + o);
#endif
      draws_scalar(c, u, v, p, 0, (i1 - i0) * p, z + o, zt + o, dzt + o, b + o, score + o);
    }();
    after(i0, i1);
  });
}
}  // namespace

void relax_bernoulli_draws(const double* eta, const double* u, const double* v, int64_t n, int64_t p, double* z,
                           double* zt, double* dzt, double* b, double* score) {
  // 2^15 elements a chunk (~0.1 ms), as in relax_bernoulli_part
  const int64_t rows = std::max<int64_t>(1, kEstSampleChunk * kEstColBlock / 8 / std::max<int64_t>(1, p));
  draws_rows(
      eta, n, p, rows, z, zt, dzt, b, score,
      [&](int64_t i0, int64_t, const double*& uu, const double*& vv) {
        uu = u + i0 * p;
        vv = v + i0 * p;
      },
      [](int64_t, int64_t) {});
}

namespace {
// One element of REBAR's relaxed-f part per unit scale at temperature 1 / inv:
// -f(y~) score + (df/dy y (1 - y) - df/dy~ y~ (1 - y~) dz~/deta) inv (dy/dz = y (1 - y) / lam).
inline __attribute__((always_inline)) double part_term(double fzt, double score, double gz, double y, double gzt,
                                                     double yt, double dzt, double inv) {
  return -fzt * score + (gz * y * (1.0 - y) - gzt * yt * (1.0 - yt) * dzt) * inv;
}
}  // namespace

void relax_bernoulli_part(const double* fzt, const double* gz, const double* gzt, const double* y,
                          const double* yt, const double* dzt, const double* score, double lam, int64_t count,
                          int64_t p, double* out) {
  const double inv = 1.0 / lam;
  // 2^15 elements a chunk (~40 us): a REBAR call's 10^5 already run on two threads
  const int64_t rows = std::max<int64_t>(1, kEstSampleChunk * kEstColBlock / 8 / std::max<int64_t>(1, p));
  parallel_chunks((count + rows - 1) / rows, [&](int64_t c) {
    const int64_t i0 = c * rows, i1 = std::min(count, i0 + rows);
    for (int64_t i = i0; i < i1; ++i) {
      const double fi = fzt[i];
      for (int64_t e = i * p; e < (i + 1) * p; ++e)
        out[e] = part_term(fi, score[e], gz[e], y[e], gzt[e], yt[e], dzt[e], inv);
    }
  });
}

namespace {
// Rows [i0, i1) of relax_bernoulli_part_fd. The loop over a row's coordinates has no dependence
// between elements, so the compiler vectorises it for whichever ISA the caller is compiled for
// (part_fd_rows_avx512 / _avx2 / _base below): the pass reads 14 arrays and is bound by memory
// bandwidth, and the vectors take its arithmetic out of the way (bench/relax_kernels.py, n = 1000,
// p = 100, one thread: 0.27-0.41 ms on the baseline build, 0.20-0.29 ms AVX2, 0.20-0.28 ms AVX-512).
inline __attribute__((always_inline)) void part_fd_body(const double* fv, const double* gv, const double* y,
                                                        const double* dzt, const double* score, const double* iv,
                                                        int64_t n, int64_t p, int64_t i0, int64_t i1, double* o0,
                                                        double* o1) {
  const int64_t blk = 2 * n * p;  // one temperature's [z; z~] rows in gv and y
  for (int64_t i = i0; i < i1; ++i) {
    const double f0 = fv[n + i], fp = fv[3 * n + i], fm = fv[5 * n + i];
    const int64_t r = i * p, rt = (n + i) * p;
    const double *g0 = gv + r, *g1 = gv + blk + r, *g2 = gv + 2 * blk + r;
    const double *t0 = gv + rt, *t1 = gv + blk + rt, *t2 = gv + 2 * blk + rt;
    const double *y0 = y + r, *y1 = y + blk + r, *y2 = y + 2 * blk + r;
    const double *u0 = y + rt, *u1 = y + blk + rt, *u2 = y + 2 * blk + rt;
    const double *sc = score + r, *dz = dzt + r;
    double *a = o0 + r, *d = o1 + r;
#pragma GCC ivdep
    for (int64_t j = 0; j < p; ++j) {
      a[j] = part_term(f0, sc[j], g0[j], y0[j], t0[j], u0[j], dz[j], iv[0]);
      d[j] = part_term(fp, sc[j], g1[j], y1[j], t1[j], u1[j], dz[j], iv[1]) -
             part_term(fm, sc[j], g2[j], y2[j], t2[j], u2[j], dz[j], iv[2]);
    }
  }
}

#define BG_PART_FD_ISA(ATTR, NAME)                                                                                \
  ATTR void part_fd_rows_##NAME(const double* fv, const double* gv, const double* y, const double* dzt,          \
                                const double* score, const double* iv, int64_t n, int64_t p, int64_t i0,         \
                                int64_t i1, double* o0, double* o1) {                                            \
    part_fd_body(fv, gv, y, dzt, score, iv, n, p, i0, i1, o0, o1);                                               \
  }
#if BG_HAVE_X86
BG_PART_FD_ISA(BG_AVX512, avx512)
BG_PART_FD_ISA(BG_AVX2, avx2)
#endif
BG_PART_FD_ISA(, base)
#undef BG_PART_FD_ISA
}  // namespace

void relax_bernoulli_part_fd(const double* fv, const double* gv, const double* y, const double* dzt,
                             const double* score, double lam, double step, int64_t n, int64_t p, double* out) {
  const double iv[3] = {1.0 / lam, 1.0 / (lam * std::exp(step)), 1.0 / (lam * std::exp(-step))};
  double* o0 = out;
  double* o1 = out + n * p;
  const int64_t rows = std::max<int64_t>(1, kEstSampleChunk * kEstColBlock / 8 / std::max<int64_t>(1, p));
  parallel_chunks((n + rows - 1) / rows, [&](int64_t c) {
    const int64_t i0 = c * rows, i1 = std::min(n, i0 + rows);
#if BG_HAVE_X86
    if (simd::use_avx512()) return part_fd_rows_avx512(fv, gv, y, dzt, score, iv, n, p, i0, i1, o0, o1);
    if (simd::use_avx2()) return part_fd_rows_avx2(fv, gv, y, dzt, score, iv, n, p, i0, i1, o0, o1);
#endif
    part_fd_rows_base(fv, gv, y, dzt, score, iv, n, p, i0, i1, o0, o1);
  });
}

void concrete_bernoulli(const double* z, double lam, int64_t count, double* y) {
  const double inv = 1.0 / lam;
  const int64_t chunk = kEstSampleChunk * kEstColBlock / 8;  // as in relax_bernoulli_part
  parallel_chunks((count + chunk - 1) / chunk, [&](int64_t c) {
    const int64_t e0 = c * chunk, e1 = std::min(count, e0 + chunk);
    sigmoid_block(z + e0, inv, e1 - e0, y + e0);
  });
}

namespace {
// The Taylor series of the sigmoid around a in d, to degree 6, from y = sigmoid(a): its k-th
// derivative is t P_k(t) (k odd) or t (1 - 2 y) P_k(t) (k even), t = y (1 - y), so the
// coefficients cost a few products and no exponential. With |d| <= kSeriesMaxD the truncation
// is below |d|^7 / 7! < 5e-17 of the value (in the tails sigma^(k) ~ sigma).
constexpr double kSeriesMaxD = 1.0 / 64.0;

struct SigmoidSeries {
  double y, t, k2, k3, k4, k5, k6;
  explicit SigmoidSeries(double yy) : y(yy) {
    t = y - y * y;
    const double u = 1.0 - 2.0 * y;
    k2 = 0.5 * u;
    k3 = (1.0 - 6.0 * t) * (1.0 / 6.0);
    k4 = u * (1.0 - 12.0 * t) * (1.0 / 24.0);
    k5 = (1.0 + t * (-30.0 + 120.0 * t)) * (1.0 / 120.0);
    k6 = u * (1.0 + t * (-60.0 + 360.0 * t)) * (1.0 / 720.0);
  }
  double at(double d) const { return y + t * d * (1.0 + d * (k2 + d * (k3 + d * (k4 + d * (k5 + d * k6))))); }
};

// Elements of concrete_bernoulli_fd: y0 = sigmoid(z inv), y+- = sigmoid(z inv (1 + c+-)).
void concrete_fd_scalar(const double* z, double inv, double cp, double cm, double amax, int64_t count, double* y0,
                        double* yp, double* ym) {
  for (int64_t e = 0; e < count; ++e) {
    const double a = z[e] * inv;
    const SigmoidSeries s(sigmoid(a));
    y0[e] = s.y;
    const bool far = !(std::fabs(a) <= amax);
    yp[e] = far ? sigmoid(a + a * cp) : s.at(a * cp);
    ym[e] = far ? sigmoid(a + a * cm) : s.at(a * cm);
  }
}

#if BG_HAVE_X86
BG_AVX2 inline __m256d series_at4(__m256d y, __m256d t, const __m256d* k, __m256d d) {
  __m256d h = _mm256_fmadd_pd(d, k[4], k[3]);
  h = _mm256_fmadd_pd(d, h, k[2]);
  h = _mm256_fmadd_pd(d, h, k[1]);
  h = _mm256_fmadd_pd(d, h, k[0]);
  h = _mm256_fmadd_pd(d, h, _mm256_set1_pd(1.0));
  return _mm256_fmadd_pd(_mm256_mul_pd(t, d), h, y);
}

BG_AVX2 void concrete_fd_avx2(const double* z, double inv, double cp, double cm, double amax, int64_t count,
                              double* y0, double* yp, double* ym) {
  const __m256d vinv = _mm256_set1_pd(inv), vcp = _mm256_set1_pd(cp), vcm = _mm256_set1_pd(cm);
  const __m256d one = _mm256_set1_pd(1.0), vmax = _mm256_set1_pd(amax);
  const __m256d absmask = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFll));
  int64_t e = 0;
  for (; e + 4 <= count; e += 4) {
    const __m256d a = _mm256_mul_pd(_mm256_loadu_pd(z + e), vinv);
    const __m256d y = simd::sigmoidx4(a);
    _mm256_storeu_pd(y0 + e, y);
    const __m256d t = _mm256_fnmadd_pd(y, y, y), u = _mm256_fnmadd_pd(_mm256_set1_pd(2.0), y, one);
    __m256d k[5];
    k[0] = _mm256_mul_pd(_mm256_set1_pd(0.5), u);
    k[1] = _mm256_mul_pd(_mm256_fnmadd_pd(_mm256_set1_pd(6.0), t, one), _mm256_set1_pd(1.0 / 6.0));
    k[2] = _mm256_mul_pd(_mm256_mul_pd(u, _mm256_fnmadd_pd(_mm256_set1_pd(12.0), t, one)), _mm256_set1_pd(1.0 / 24.0));
    k[3] = _mm256_mul_pd(_mm256_fmadd_pd(t, _mm256_fmadd_pd(_mm256_set1_pd(120.0), t, _mm256_set1_pd(-30.0)), one),
                         _mm256_set1_pd(1.0 / 120.0));
    k[4] = _mm256_mul_pd(_mm256_mul_pd(u, _mm256_fmadd_pd(t, _mm256_fmadd_pd(_mm256_set1_pd(360.0), t,
                                                                             _mm256_set1_pd(-60.0)), one)),
                         _mm256_set1_pd(1.0 / 720.0));
    const __m256d dp = _mm256_mul_pd(a, vcp), dm = _mm256_mul_pd(a, vcm);
    __m256d p = series_at4(y, t, k, dp), m = series_at4(y, t, k, dm);
    const __m256d far = _mm256_cmp_pd(_mm256_and_pd(a, absmask), vmax, _CMP_NLE_UQ);
    if (_mm256_movemask_pd(far)) {
      p = _mm256_blendv_pd(p, simd::sigmoidx4(_mm256_add_pd(a, dp)), far);
      m = _mm256_blendv_pd(m, simd::sigmoidx4(_mm256_add_pd(a, dm)), far);
    }
    _mm256_storeu_pd(yp + e, p);
    _mm256_storeu_pd(ym + e, m);
  }
  concrete_fd_scalar(z + e, inv, cp, cm, amax, count - e, y0 + e, yp + e, ym + e);
}

BG_AVX512 inline __m512d series_at8(__m512d y, __m512d t, const __m512d* k, __m512d d) {
  __m512d h = _mm512_fmadd_pd(d, k[4], k[3]);
  h = _mm512_fmadd_pd(d, h, k[2]);
  h = _mm512_fmadd_pd(d, h, k[1]);
  h = _mm512_fmadd_pd(d, h, k[0]);
  h = _mm512_fmadd_pd(d, h, _mm512_set1_pd(1.0));
  return _mm512_fmadd_pd(_mm512_mul_pd(t, d), h, y);
}

// concrete_fd_avx2 on 8 lanes; the tail a masked vector (zeros in the unused lanes).
BG_AVX512 void concrete_fd_avx512(const double* z, double inv, double cp, double cm, double amax, int64_t count,
                                  double* y0, double* yp, double* ym) {
  const __m512d vinv = _mm512_set1_pd(inv), vcp = _mm512_set1_pd(cp), vcm = _mm512_set1_pd(cm);
  const __m512d one = _mm512_set1_pd(1.0), vmax = _mm512_set1_pd(amax);
  for (int64_t e = 0; e < count; e += 8) {
    const __mmask8 msk = static_cast<__mmask8>(count - e >= 8 ? 0xFFu : (1u << (count - e)) - 1u);
    const __m512d a = _mm512_mul_pd(_mm512_maskz_loadu_pd(msk, z + e), vinv);
    const __m512d y = simd::sigmoidx8d(a);
    _mm512_mask_storeu_pd(y0 + e, msk, y);
    const __m512d t = _mm512_fnmadd_pd(y, y, y), u = _mm512_fnmadd_pd(_mm512_set1_pd(2.0), y, one);
    __m512d k[5];
    k[0] = _mm512_mul_pd(_mm512_set1_pd(0.5), u);
    k[1] = _mm512_mul_pd(_mm512_fnmadd_pd(_mm512_set1_pd(6.0), t, one), _mm512_set1_pd(1.0 / 6.0));
    k[2] = _mm512_mul_pd(_mm512_mul_pd(u, _mm512_fnmadd_pd(_mm512_set1_pd(12.0), t, one)), _mm512_set1_pd(1.0 / 24.0));
    k[3] = _mm512_mul_pd(_mm512_fmadd_pd(t, _mm512_fmadd_pd(_mm512_set1_pd(120.0), t, _mm512_set1_pd(-30.0)), one),
                         _mm512_set1_pd(1.0 / 120.0));
    k[4] = _mm512_mul_pd(_mm512_mul_pd(u, _mm512_fmadd_pd(t, _mm512_fmadd_pd(_mm512_set1_pd(360.0), t,
                                                                             _mm512_set1_pd(-60.0)), one)),
                         _mm512_set1_pd(1.0 / 720.0));
    const __m512d dp = _mm512_mul_pd(a, vcp), dm = _mm512_mul_pd(a, vcm);
    __m512d p = series_at8(y, t, k, dp), m = series_at8(y, t, k, dm);
    const __mmask8 far = _mm512_cmp_pd_mask(_mm512_abs_pd(a), vmax, _CMP_NLE_UQ) & msk;
    if (far) {
      p = _mm512_mask_mov_pd(p, far, simd::sigmoidx8d(_mm512_add_pd(a, dp)));
      m = _mm512_mask_mov_pd(m, far, simd::sigmoidx8d(_mm512_add_pd(a, dm)));
    }
    _mm512_mask_storeu_pd(yp + e, msk, p);
    _mm512_mask_storeu_pd(ym + e, msk, m);
  }
}
#endif
}  // namespace

namespace {
// The constants of the relaxation at lam, lam e^{step}, lam e^{-step}: a at lam e^{+-step} is
// a e^{-+step} = a (1 + c+-); the series serves |a| <= amax.
struct FdTemps {
  double inv, cp, cm, amax;
  FdTemps(double lam, double step)
      : inv(1.0 / lam), cp(std::expm1(-step)), cm(std::expm1(step)),
        amax(kSeriesMaxD / std::max(std::fabs(cp), std::fabs(cm))) {}
};

// concrete_bernoulli_fd's elements [0, count) of z into y0, yp, ym, on the best SIMD path.
void concrete_fd_block(const FdTemps& t, const double* z, int64_t count, double* y0, double* yp, double* ym) {
#if BG_HAVE_X86
  if (simd::use_avx512()) return concrete_fd_avx512(z, t.inv, t.cp, t.cm, t.amax, count, y0, yp, ym);
  if (simd::use_avx2()) return concrete_fd_avx2(z, t.inv, t.cp, t.cm, t.amax, count, y0, yp, ym);
#endif
  concrete_fd_scalar(z, t.inv, t.cp, t.cm, t.amax, count, y0, yp, ym);
}
}  // namespace

void concrete_bernoulli_fd(const double* z, double lam, double step, int64_t count, double* y) {
  const FdTemps t(lam, step);
  const int64_t chunk = kEstSampleChunk * kEstColBlock / 8;  // as in relax_bernoulli_part
  parallel_chunks((count + chunk - 1) / chunk, [&](int64_t c) {
    const int64_t e0 = c * chunk, m = std::min(count, e0 + chunk) - e0;
    concrete_fd_block(t, z + e0, m, y + e0, y + count + e0, y + 2 * count + e0);
  });
}

void relax_bernoulli_sample(const double* eta, uint64_t seed, uint64_t stream_u, uint64_t stream_v, int64_t n,
                            int64_t p, double* draws, double lam, int temps, double step, double* y) {
  if (!(temps == 0 || temps == 1 || temps == 3)) throw std::invalid_argument("temps must be 0, 1 or 3");
  const int64_t np = n * p;
  double *z = draws, *zt = draws + np, *dzt = draws + 2 * np, *b = draws + 3 * np, *score = draws + 4 * np;
  const uint64_t total = static_cast<uint64_t>(np);
  const FdTemps t(lam, temps == 3 ? step : 0.5);
  // 2^13 elements a chunk: the chunk's uniforms, draws and relaxations (up to 13 arrays of
  // 64 KiB) stay in L2 between the draws and the relaxation, and a call of 10^5 elements has
  // a dozen chunks to share between threads
  const int64_t rows = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, p));
  draws_rows(
      eta, n, p, rows, z, zt, dzt, b, score,
      [&](int64_t i0, int64_t i1, const double*& uu, const double*& vv) {
        // the chunk's elements of random.uniform's two draws (offset 0), as fill_uniform would give them
        thread_local std::vector<double> bu, bv;
        const uint64_t lo = static_cast<uint64_t>(i0 * p), hi = static_cast<uint64_t>(i1 * p);
        if (bu.size() < hi - lo) {
          bu.resize(hi - lo);
          bv.resize(hi - lo);
        }
        uniform_piece<double>(bu.data(), lo, hi, 0, total, seed, stream_u);
        uniform_piece<double>(bv.data(), lo, hi, 0, total, seed, stream_v);
        uu = bu.data();
        vv = bv.data();
      },
      [&](int64_t i0, int64_t i1) {
        // rows [i0, i1) of z and z~ into their rows of y's [z; z~] block(s)
        const int64_t o = i0 * p, m = (i1 - i0) * p, blk = 2 * np;
        for (int h = 0; h < 2; ++h) {
          const double* src = (h == 0 ? z : zt) + o;
          const int64_t at = h * np + o;
          if (temps == 1) sigmoid_block(src, t.inv, m, y + at);
          if (temps == 3) concrete_fd_block(t, src, m, y + at, y + blk + at, y + 2 * blk + at);
        }
      });
}

namespace {
struct CombineArgs {
  const double *fb, *score, *a_f, *a_d, *rt, *gz, *gt, *dzt;
  double sc;
  int64_t p;
  double *g, *gd, *gs;
};

// Rows [i0, i1) of relax_bernoulli_combine, adding sum g^2, g a_f, g a_d into acc[0..2]. The terms
// present (AF: a_f, AD: a_d, NET: the network's, and with it gd and gs) are template flags, so
// that each variant's row loop is straight-line; its sums run in kLanes lane accumulators (added
// in a fixed order at the end of each row), which the compiler keeps in vector registers (the serial
// sums of the former loop kept it scalar). The pass is bound by memory: bench/relax_kernels.py.
template <bool AF, bool AD, bool NET>
inline __attribute__((always_inline)) void combine_body(const CombineArgs& c, int64_t i0, int64_t i1, double* acc) {
  constexpr int kLanes = 8;
  const int64_t p = c.p;
  for (int64_t i = i0; i < i1; ++i) {
    const double fi = c.fb[i] - (NET ? c.rt[i] : 0.0);
    double ls[kLanes] = {}, l2[kLanes] = {}, lf[kLanes] = {}, ld[kLanes] = {};
    const int64_t r = i * p;
    const auto term = [&](int64_t e, int l) {
      double v = fi * c.score[e];
      if (AF) v += c.sc * c.a_f[e];
      if (NET) v += c.gz[e] - c.gt[e] * c.dzt[e];
      c.g[e] = v;
      if (NET) {
        c.gd[e] = v * c.dzt[e];
        ls[l] += v * c.score[e];
      }
      l2[l] += v * v;
      if (AF) lf[l] += v * c.a_f[e];
      if (AD) ld[l] += v * c.a_d[e];
    };
    int64_t j = 0;
    for (; j + kLanes <= p; j += kLanes)
      for (int l = 0; l < kLanes; ++l) term(r + j + l, l);
    for (int l = 0; j < p; ++j, ++l) term(r + j, l);
    double si = 0.0;
    for (int l = 0; l < kLanes; ++l) {
      si += ls[l];
      acc[0] += l2[l];
      acc[1] += lf[l];
      acc[2] += ld[l];
    }
    if (NET) c.gs[i] = si;
  }
}

#define BG_COMBINE_ISA(ATTR, NAME)                                                                                \
  template <bool AF, bool AD, bool NET>                                                                           \
  ATTR void combine_rows_##NAME(const CombineArgs& c, int64_t i0, int64_t i1, double* acc) {                      \
    combine_body<AF, AD, NET>(c, i0, i1, acc);                                                                    \
  }
#if BG_HAVE_X86
BG_COMBINE_ISA(BG_AVX2, avx2)
#endif
BG_COMBINE_ISA(, base)
#undef BG_COMBINE_ISA

// AVX-512 CPUs take the AVX2 build too: compiled for AVX-512 the same loop ran at 0.6-0.8x of it
// (bench/relax_kernels.py: 0.18-0.24 against 0.11-0.15 ms for REBAR's variant, n = 1000, p = 100).
template <bool AF, bool AD, bool NET>
void combine_rows(const CombineArgs& c, int64_t i0, int64_t i1, double* acc) {
#if BG_HAVE_X86
  if (simd::use_avx2()) return combine_rows_avx2<AF, AD, NET>(c, i0, i1, acc);
#endif
  combine_rows_base<AF, AD, NET>(c, i0, i1, acc);
}

using CombineRows = void (*)(const CombineArgs&, int64_t, int64_t, double*);

CombineRows combine_variant(bool af, bool ad, bool net) {
  static const CombineRows table[8] = {
      combine_rows<false, false, false>, combine_rows<false, false, true>, combine_rows<false, true, false>,
      combine_rows<false, true, true>,   combine_rows<true, false, false>, combine_rows<true, false, true>,
      combine_rows<true, true, false>,   combine_rows<true, true, true>};
  return table[(af ? 4 : 0) + (ad ? 2 : 0) + (net ? 1 : 0)];
}
}  // namespace

void relax_bernoulli_combine(const double* fb, const double* score, const double* a_f, const double* a_d,
                             double sc, const double* r, const double* gx, const double* dzt, int64_t n, int64_t p,
                             double* g, double* gd, double* gs, double* sums) {
  if ((r == nullptr) != (gd == nullptr) || (r == nullptr) != (gs == nullptr) || (r == nullptr) != (gx == nullptr))
    throw std::invalid_argument("relax_bernoulli_combine: r, gx, gd and gs go together");
  const CombineArgs c{fb, score, a_f, a_d, r ? r + n : nullptr, gx, gx ? gx + n * p : nullptr, dzt, sc, p, g, gd, gs};
  const CombineRows rows_fn = combine_variant(a_f != nullptr, a_f != nullptr && a_d != nullptr, r != nullptr);
  const int64_t rows = std::max<int64_t>(1, kEstSampleChunk * kEstColBlock / 4 / std::max<int64_t>(1, p));
  const int64_t n_ch = (n + rows - 1) / rows;
  std::vector<double> part(static_cast<size_t>(3 * n_ch), 0.0);
  parallel_chunks(n_ch, [&](int64_t ch) {
    const int64_t i0 = ch * rows, i1 = std::min(n, i0 + rows);
    rows_fn(c, i0, i1, part.data() + 3 * ch);
  });
  sums[0] = sums[1] = sums[2] = 0.0;
  for (int64_t ch = 0; ch < n_ch; ++ch)
    for (int k = 0; k < 3; ++k) sums[k] += part[3 * ch + k];
}

}  // namespace bayesgrad
