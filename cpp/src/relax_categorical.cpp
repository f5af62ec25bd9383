// REBAR / RELAX for Categorical coordinates (estimators.hpp): the draws and
// their Concrete (softmax) relaxation, the relaxed-f part and the combination
// of the terms, each one pass over a call's (n, D K) values on the pool.
//
// Why a kernel of its own: every element needs four logarithms (the Gumbel
// and the conditional draw) and two exponentials per temperature, and each
// row of K classes couples its elements (argmax, softmax, the projections
// g - p sum g of the Jacobians), which NumPy did in a dozen passes over
// (n, D, K) temporaries (a REBAR call on 10 x 10 classes: 23-24 ms, against 3 ms
// for 100 Bernoulli coordinates; bench/estimators.py). Here a chunk of rows stays in L2 while the
// vector log / exp of simd_math.hpp run over it in whole vectors, and the
// per-row work (argmax, sums) runs between them.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <vector>

#include "bayesgrad/estimators.hpp"
#include "bayesgrad/parallel.hpp"
#include "bayesgrad/random.hpp"
#include "bayesgrad/simd_map.hpp"

namespace bayesgrad {

namespace {

using simd::map_array;

// The temperatures of one call: lam, and for the central difference in log lam also
// lam e^{step} and lam e^{-step} (as the estimator forms them).
struct Temps {
  double lam[3];
  int count;
  Temps(double l, int temps, double step) : lam{l, l * std::exp(step), l * std::exp(-step)}, count(temps) {}
};

// Sample rows per chunk: about 2^13 elements, so that a chunk's uniforms, draws and
// relaxations (a dozen arrays of 64 KiB) stay in L2 between the passes.
int64_t chunk_rows(int64_t p) { return std::max<int64_t>(1, 8192 / std::max<int64_t>(1, p)); }

#if BG_HAVE_X86
// Rows of k <= 16 classes on AVX-512 (the bench's 10 x 10 Categorical; issue 16): a row is two 8-lane
// vectors whose lanes past k are zero, and each of its sums one horizontal add, where the generic loops
// summed a row element after element (a chain of dependent adds per sum: the part forms twelve sums per
// row, the combination up to five). Not the same bits as the generic loops (the order of the adds).
struct V2 {
  __m512d lo, hi;
};
struct Masks2 {
  __mmask8 lo, hi;
  explicit Masks2(int64_t k) : lo(first(k)), hi(first(k - 8)) {}
  static __mmask8 first(int64_t k) { return static_cast<__mmask8>(k >= 8 ? 0xFFu : k <= 0 ? 0u : (1u << k) - 1u); }
};
#define BG_V2 BG_AVX512 inline __attribute__((always_inline))
BG_V2 V2 ld(const double* x, Masks2 m) { return {_mm512_maskz_loadu_pd(m.lo, x), _mm512_maskz_loadu_pd(m.hi, x + 8)}; }
BG_V2 void st(double* x, V2 v, Masks2 m) {
  _mm512_mask_storeu_pd(x, m.lo, v.lo);
  _mm512_mask_storeu_pd(x + 8, m.hi, v.hi);
}
BG_V2 V2 bc(double s) { return {_mm512_set1_pd(s), _mm512_set1_pd(s)}; }
BG_V2 V2 operator+(V2 a, V2 b) { return {_mm512_add_pd(a.lo, b.lo), _mm512_add_pd(a.hi, b.hi)}; }
BG_V2 V2 operator-(V2 a, V2 b) { return {_mm512_sub_pd(a.lo, b.lo), _mm512_sub_pd(a.hi, b.hi)}; }
BG_V2 V2 operator*(V2 a, V2 b) { return {_mm512_mul_pd(a.lo, b.lo), _mm512_mul_pd(a.hi, b.hi)}; }
BG_V2 double sum(V2 v) { return _mm512_reduce_add_pd(_mm512_add_pd(v.lo, v.hi)); }
#endif

// What the rows of a sample chunk need: lp, pr (p) the log-probabilities and probabilities, the draws'
// five (n, p) arrays, y and the temperatures' reciprocals.
struct SampleArgs {
  const double *lp, *pr;
  int64_t d, k, p, np;
  double *z, *zt, *rr, *b, *score, *y;
  double inv[3];
  int temps;
};

// Per-row reductions over `rows` rows of k values, four rows at a time: one row's steps form a chain
// of dependent operations (a select, a max or an add), so independent rows fill the pipeline; each row
// still runs its own steps in order (the values of a row-by-row loop). The argmax as selects, not a
// branch per element (mispredicted on random rows).
template <typename Row, typename Step, typename Put>
inline __attribute__((always_inline)) void rows_by_four(int64_t rows, const Row& init, const Step& step,
                                                        const Put& put, int64_t k) {
  int64_t q = 0;
  for (; q + 4 <= rows; q += 4) {
    auto a0 = init(q), a1 = init(q + 1), a2 = init(q + 2), a3 = init(q + 3);
    for (int64_t j = 1; j < k; ++j) {
      step(a0, q, j);
      step(a1, q + 1, j);
      step(a2, q + 2, j);
      step(a3, q + 3, j);
    }
    put(a0, q);
    put(a1, q + 1);
    put(a2, q + 2);
    put(a3, q + 3);
  }
  for (; q < rows; ++q) {
    auto a = init(q);
    for (int64_t j = 1; j < k; ++j) step(a, q, j);
    put(a, q);
  }
}

struct ArgMax {
  double v;
  int64_t i;
};

// best[q] = the first maximum's index of row q of x (rows of k), mx[q] its value.
inline __attribute__((always_inline)) void row_argmax(const double* __restrict x, int64_t rows, int64_t k,
                                                      int64_t* __restrict best, double* __restrict mx) {
  rows_by_four(
      rows, [&](int64_t q) { return ArgMax{x[q * k], 0}; },
      [&](ArgMax& a, int64_t q, int64_t j) {
        const double y = x[q * k + j];
        const bool up = y > a.v;
        a.v = up ? y : a.v;
        a.i = up ? j : a.i;
      },
      [&](const ArgMax& a, int64_t q) {
        best[q] = a.i;
        mx[q] = a.v;
      },
      k);
}

// mx[q] = the maximum of row q of x (rows of k).
inline __attribute__((always_inline)) void row_max(const double* __restrict x, int64_t rows, int64_t k,
                                                   double* __restrict mx) {
  rows_by_four(
      rows, [&](int64_t q) { return x[q * k]; },
      [&](double& a, int64_t q, int64_t j) { a = x[q * k + j] > a ? x[q * k + j] : a; },
      [&](double a, int64_t q) { mx[q] = a; }, k);
}

// s[q] = the sum of row q of x (rows of k), left to right.
inline __attribute__((always_inline)) void row_sum(const double* __restrict x, int64_t rows, int64_t k,
                                                   double* __restrict s) {
  rows_by_four(
      rows, [&](int64_t q) { return x[q * k]; }, [&](double& a, int64_t q, int64_t j) { a += x[q * k + j]; },
      [&](double a, int64_t q) { s[q] = a; }, k);
}

// dst = softmax(src / lam) per row of k over `rows` rows (inv = 1 / lam), given each row's maximum mx,
// as exp((src - mx) inv) normalised: shifted before the scaling, so that the maximum's exponent is exactly
// 0 whatever lam (a src inv - mx inv that the compiler contracts into one fma leaves the product's rounding
// error, ~1e85 at lam = 1e-100: every exponential of a row 0 or clamped, and its softmax NaN). The shift
// and the normalisation are plain loops (vectorised for the ISA of the caller), the exponential one
// vector pass.
inline __attribute__((always_inline)) void softmax_block(const double* __restrict src, const double* __restrict mx,
                                                         double inv, int64_t rows, int64_t k, double* __restrict dst,
                                                         double* __restrict sums) {
  for (int64_t r = 0; r < rows; ++r) {
    const double* a = src + r * k;
    double* o = dst + r * k;
    const double m = std::isfinite(mx[r]) ? mx[r] : 0.0;  // as log_softmax: no shift by inf
    for (int64_t j = 0; j < k; ++j) o[j] = (a[j] - m) * inv;
  }
  map_array<false>(dst, dst, rows * k);
  row_sum(dst, rows, k, sums);
  for (int64_t r = 0; r < rows; ++r) {
    double* o = dst + r * k;
    const double is = 1.0 / sums[r];
    for (int64_t j = 0; j < k; ++j) o[j] *= is;
  }
}

#if BG_HAVE_X86
// softmax_block for k <= 16 on V2 rows: the same values except each row's sum, one horizontal add (the
// generic loop's chain of dependent adds per row was most of the block's own time at k = 10).
BG_AVX512 void softmax_short(const double* src, const double* mx, double inv, int64_t rows, int64_t k, double* dst) {
  const Masks2 m(k);
  for (int64_t r = 0; r < rows; ++r) {
    const double sh = std::isfinite(mx[r]) ? mx[r] : 0.0;  // as softmax_block
    st(dst + r * k, (ld(src + r * k, m) - bc(sh)) * bc(inv), m);
  }
  map_array<false>(dst, dst, rows * k);
  // row r + 1 loaded before row r is stored: a load that overlaps an earlier masked store (the next row
  // begins inside the store's second vector) waits for that store to complete (1.6 against 2.6 ms a call)
  V2 e = ld(dst, m);
  for (int64_t r = 0; r < rows; ++r) {
    const V2 next = r + 1 < rows ? ld(dst + (r + 1) * k, m) : e;
    st(dst + r * k, e * bc(1.0 / sum(e)), m);
    e = next;
  }
}
#endif

// Rows [i0, i1) of the sample from their uniforms u, v (overwritten) with scratch t (all (i1 - i0) p),
// mx (3 (i1 - i0) d: the maxima of the rows of K of z, then of z~, then a softmax's row sums) and bi
// ((i1 - i0) d: each row's argmax); kShort: k <= 16, the softmax on V2 rows (softmax_short).
template <bool kShort>
inline __attribute__((always_inline)) void sample_rows(const SampleArgs& c, int64_t i0, int64_t i1,
                                                       double* __restrict u, double* __restrict v,
                                                       double* __restrict t, double* __restrict mx,
                                                       int64_t* __restrict bi) {
  const int64_t p = c.p, k = c.k, o = i0 * p, m = (i1 - i0) * p, rows = (i1 - i0) * c.d;
  double* __restrict z = c.z + o;
  double* __restrict zt = c.zt + o;
  // z = log p + G with the Gumbel G = -log(-log u); E = -log v
  map_array<true>(u, t, m);
  for (int64_t e = 0; e < m; ++e) t[e] = -t[e];
  map_array<true>(t, t, m);
  map_array<true>(v, v, m);
  for (int64_t r = 0; r < i1 - i0; ++r) {
    const double* __restrict lp = c.lp;
    for (int64_t j = 0; j < p; ++j) {
      z[r * p + j] = lp[j] - t[r * p + j];
      v[r * p + j] = -v[r * p + j];
    }
  }
  // per row of K: b = argmax z (the first maximum); given b, z~_b = -log E_b and
  // z~_i = -log(E_i / p_i + E_b) = log p_i - log(E_i + E_b p_i), r_i = E_i / (E_i + E_b p_i) (0 at b):
  // the forms without 1 / p_i, finite where p_i underflows (logits more than ~745 apart: E_i / p_i
  // was inf, r_i inf / inf). zt holds log p_i (0 at b) until the logarithm of t is subtracted.
  row_argmax(z, rows, k, bi, mx);
  for (int64_t q = 0; q < rows; ++q) {
    const int64_t at = q * k, cls = (q % c.d) * k, best = bi[q];
    const double eb = v[at + best];
    const double *__restrict pq = c.pr + cls, *__restrict lq = c.lp + cls, *__restrict vq = v + at;
    double *__restrict tq = t + at, *__restrict oq = zt + at, *__restrict rq = c.rr + o + at,
                       *__restrict bq = c.b + o + at, *__restrict sq = c.score + o + at;
    for (int64_t j = 0; j < k; ++j) {
      tq[j] = vq[j] + eb * pq[j];
      oq[j] = lq[j];
      rq[j] = vq[j];  // divided by t below, in one vector pass over the chunk
      bq[j] = 0.0;
      sq[j] = -pq[j];
    }
    tq[best] = eb;
    oq[best] = 0.0;
    rq[best] = 0.0;
    bq[best] = 1.0;
    sq[best] = 1.0 - pq[best];
  }
  double* __restrict rr = c.rr + o;
  for (int64_t e = 0; e < m; ++e) rr[e] /= t[e];
  map_array<true>(t, t, m);
  for (int64_t e = 0; e < m; ++e) zt[e] -= t[e];
  // z~_b is its row's maximum (the others are truncated below it)
  row_max(zt, rows, k, mx + rows);
  // the relaxation of these rows of [z; z~] at each temperature, while they are in cache
  for (int ti = 0; ti < c.temps; ++ti)
    for (int h = 0; h < 2; ++h) {
      double* dst = c.y + ti * 2 * c.np + h * c.np + o;
#if BG_HAVE_X86
      if (kShort) {
        softmax_short(h == 0 ? z : zt, mx + h * rows, c.inv[ti], rows, k, dst);
        continue;
      }
#endif
      softmax_block(h == 0 ? z : zt, mx + h * rows, c.inv[ti], rows, k, dst, mx + 2 * rows);
    }
}

#define BG_SAMPLE_ISA(ATTR, NAME, SHORT)                                                               \
  ATTR void sample_rows_##NAME(const SampleArgs& c, int64_t i0, int64_t i1, double* u, double* v, double* t, \
                               double* mx, int64_t* bi) {                                              \
    sample_rows<SHORT>(c, i0, i1, u, v, t, mx, bi);                                                     \
  }
#if BG_HAVE_X86
BG_SAMPLE_ISA(BG_AVX512, avx512, false)
BG_SAMPLE_ISA(BG_AVX512, avx512_short, true)
BG_SAMPLE_ISA(BG_AVX2, avx2, false)
#endif
BG_SAMPLE_ISA(, base, false)
#undef BG_SAMPLE_ISA

}  // namespace

void relax_categorical_sample(const double* lp, int64_t d, int64_t k, uint64_t seed, uint64_t stream_u,
                              uint64_t stream_v, int64_t n, double* draws, double lam, int temps, double step,
                              double* y) {
  if (!(temps == 0 || temps == 1 || temps == 3)) throw std::invalid_argument("temps must be 0, 1 or 3");
  const int64_t p = d * k, np = n * p;
  std::vector<double> pr(static_cast<size_t>(p));
  for (int64_t j = 0; j < p; ++j) pr[j] = std::exp(lp[j]);
  const Temps tt(lam, temps, step);
  const SampleArgs c{lp, pr.data(), d, k, p, np, draws, draws + np, draws + 2 * np, draws + 3 * np,
               draws + 4 * np, y, {1.0 / tt.lam[0], 1.0 / tt.lam[1], 1.0 / tt.lam[2]}, temps};
  const uint64_t total = static_cast<uint64_t>(np);
  const int64_t rows = chunk_rows(p);
  parallel_chunks((n + rows - 1) / rows, [&](int64_t ch) {
    const int64_t i0 = ch * rows, i1 = std::min(n, i0 + rows), o = i0 * p, m = (i1 - i0) * p;
    thread_local std::vector<double> bu, bv, bt, bm;
    if (bu.size() < static_cast<size_t>(m)) {
      bu.resize(static_cast<size_t>(m));
      bv.resize(static_cast<size_t>(m));
      bt.resize(static_cast<size_t>(m));
    }
    thread_local std::vector<int64_t> bb;
    const size_t rws = static_cast<size_t>((i1 - i0) * d);
    if (bm.size() < 3 * rws) bm.resize(3 * rws);
    if (bb.size() < rws) bb.resize(rws);
    // the chunk's elements of random.uniform's two draws (offset 0), as fill_uniform gives them
    uniform_piece<double>(bu.data(), static_cast<uint64_t>(o), static_cast<uint64_t>(o + m), 0, total, seed,
                          stream_u);
    uniform_piece<double>(bv.data(), static_cast<uint64_t>(o), static_cast<uint64_t>(o + m), 0, total, seed,
                          stream_v);
    double *u = bu.data(), *v = bv.data(), *t = bt.data(), *mx = bm.data();
#if BG_HAVE_X86
    if (simd::use_avx512())
      return k <= 16 ? sample_rows_avx512_short(c, i0, i1, u, v, t, mx, bb.data())
                     : sample_rows_avx512(c, i0, i1, u, v, t, mx, bb.data());
    if (simd::use_avx2()) return sample_rows_avx2(c, i0, i1, u, v, t, mx, bb.data());
#endif
    sample_rows_base(c, i0, i1, u, v, t, mx, bb.data());
  });
}

namespace {
// The relaxed-f part at temperature 1 / inv of one row of K classes, as the coefficients of
// a_j = -f(y~) score_j + y_j (g_j - sz) inv - p_j Sz - r_j y~_j (g~_j - st) inv + p_j St,
// with sz = sum g y, st = sum g~ y~, Sz = sum y (g - sz) inv, St = sum r y~ (g~ - st) inv
// (dy/dz of the softmax, then d z / d eta = 1 - p 1^T and d z~ / d eta = diag(r) - p r^T).
struct RowPart {
  const double *g, *y, *gt, *yt;
  double ft, inv, sz = 0.0, st = 0.0, Sz = 0.0, St = 0.0;
  inline __attribute__((always_inline)) RowPart(const double* g_, const double* y_, const double* gt_,
                                                const double* yt_, const double* r, double ft_, double inv_,
                                                int64_t k)
      : g(g_), y(y_), gt(gt_), yt(yt_), ft(ft_), inv(inv_) {
    for (int64_t j = 0; j < k; ++j) {
      sz += g[j] * y[j];
      st += gt[j] * yt[j];
    }
    for (int64_t j = 0; j < k; ++j) {
      Sz += y[j] * (g[j] - sz);
      St += r[j] * yt[j] * (gt[j] - st);
    }
    Sz *= inv;
    St *= inv;
  }
  inline __attribute__((always_inline)) double at(int64_t j, double score, double pj, double rj) const {
    return -ft * score + y[j] * (g[j] - sz) * inv - pj * Sz - (rj * yt[j] * (gt[j] - st) * inv - pj * St);
  }
};

struct PartArgs {
  const double *fv, *gv, *y, *rr, *score, *pr;
  int64_t n, d, k, p;
  double inv[3];
  int temps;
  double* out;
};

// Rows [i0, i1) of relax_categorical_part.
inline __attribute__((always_inline)) void part_rows(const PartArgs& a, int64_t i0, int64_t i1) {
  const int64_t n = a.n, p = a.p, k = a.k, np = n * p;
  for (int64_t i = i0; i < i1; ++i)
    for (int64_t c = 0; c < a.d; ++c) {
      const int64_t e0 = i * p + c * k;
      const double *s = a.score + e0, *r = a.rr + e0, *pc = a.pr + c * k;
      // row i of block ti: [z; z~] rows ti 2n + i and ti 2n + n + i
      const auto part = [&](int ti) {
        const int64_t zr = (ti * 2 * n + i) * p + c * k, tr = (ti * 2 * n + n + i) * p + c * k;
        return RowPart(a.gv + zr, a.y + zr, a.gv + tr, a.y + tr, r, a.fv[ti * 2 * n + n + i], a.inv[ti], k);
      };
      const RowPart a0 = part(0);
      double* o = a.out + e0;
      for (int64_t j = 0; j < k; ++j) o[j] = a0.at(j, s[j], pc[j], r[j]);
      if (a.temps == 3) {
        const RowPart ap = part(1), am = part(2);
        double* od = a.out + np + e0;
        for (int64_t j = 0; j < k; ++j) od[j] = ap.at(j, s[j], pc[j], r[j]) - am.at(j, s[j], pc[j], r[j]);
      }
    }
}

#define BG_PART_ISA(ATTR, NAME) \
  ATTR void part_rows_##NAME(const PartArgs& a, int64_t i0, int64_t i1) { part_rows(a, i0, i1); }
#if BG_HAVE_X86
BG_PART_ISA(BG_AVX512, avx512)
BG_PART_ISA(BG_AVX2, avx2)
#endif
BG_PART_ISA(, base)
#undef BG_PART_ISA

#if BG_HAVE_X86
// RowPart(...).at(j, ...) for the lanes of one row of k <= 16 (the same expressions, sums in vector order).
BG_V2 V2 row_part_short(const double* g, const double* y, const double* gt, const double* yt, V2 r, V2 s, V2 pc,
                        double ft, double inv, Masks2 m) {
  const V2 G = ld(g, m), Y = ld(y, m), GT = ld(gt, m), YT = ld(yt, m);
  const double sz = sum(G * Y), szt = sum(GT * YT);  // (RowPart's sz and st)
  const V2 A = Y * (G - bc(sz)), B = r * YT * (GT - bc(szt));
  const double Sz = sum(A) * inv, St = sum(B) * inv;
  return bc(-ft) * s + A * bc(inv) - pc * bc(Sz) - (B * bc(inv) - pc * bc(St));
}

BG_AVX512 void part_rows_avx512_short(const PartArgs& a, int64_t i0, int64_t i1) {
  const int64_t n = a.n, p = a.p, k = a.k, np = n * p;
  const Masks2 m(k);
  for (int64_t i = i0; i < i1; ++i)
    for (int64_t c = 0; c < a.d; ++c) {
      const int64_t e0 = i * p + c * k;
      const V2 s = ld(a.score + e0, m), r = ld(a.rr + e0, m), pc = ld(a.pr + c * k, m);
      V2 out[3];
      for (int ti = 0; ti < a.temps; ++ti) {
        const int64_t zr = (ti * 2 * n + i) * p + c * k, tr = (ti * 2 * n + n + i) * p + c * k;
        out[ti] = row_part_short(a.gv + zr, a.y + zr, a.gv + tr, a.y + tr, r, s, pc, a.fv[ti * 2 * n + n + i],
                                 a.inv[ti], m);
      }
      st(a.out + e0, out[0], m);
      if (a.temps == 3) st(a.out + np + e0, out[1] - out[2], m);
    }
}
#endif
}  // namespace

void relax_categorical_part(const double* fv, const double* gv, const double* y, const double* rr,
                            const double* score, const double* pr, int64_t n, int64_t d, int64_t k, double lam,
                            int temps, double step, double* out) {
  if (!(temps == 1 || temps == 3)) throw std::invalid_argument("temps must be 1 or 3");
  const int64_t p = d * k;
  const Temps tt(lam, temps, step);
  const PartArgs a{fv, gv, y, rr, score, pr, n, d, k, p, {1.0 / tt.lam[0], 1.0 / tt.lam[1], 1.0 / tt.lam[2]},
                   temps, out};
  const int64_t rows = std::max<int64_t>(1, (int64_t{1} << 13) / std::max<int64_t>(1, p));
  parallel_chunks((n + rows - 1) / rows, [&](int64_t ch) {
    const int64_t i0 = ch * rows, i1 = std::min(n, i0 + rows);
#if BG_HAVE_X86
    if (simd::use_avx512()) return k <= 16 ? part_rows_avx512_short(a, i0, i1) : part_rows_avx512(a, i0, i1);
    if (simd::use_avx2()) return part_rows_avx2(a, i0, i1);
#endif
    part_rows_base(a, i0, i1);
  });
}

#if BG_HAVE_X86
namespace {
// Rows [i0, i1) of relax_categorical_combine for k <= 16 (V2 rows; the generic loop's expressions, its
// sums per block in vector order); the block's sums of g^2, g a_f and g a_d into sums3.
BG_AVX512 void combine_rows_avx512_short(const double* fb, const double* score, const double* rr, const double* pr,
                                         const double* a_f, const double* a_d, double sc, const double* rnet,
                                         const double* gx, int64_t n, int64_t d, int64_t k, double* g, double* d1,
                                         double* d2, double* gs, int64_t i0, int64_t i1, double* sums3) {
  const bool net = rnet != nullptr;
  const int64_t p = d * k;
  const Masks2 m(k);
  V2 s2 = bc(0.0), sf = bc(0.0), sd = bc(0.0);
  for (int64_t i = i0; i < i1; ++i) {
    const double fi = fb[i] - (net ? rnet[n + i] : 0.0);
    V2 gsum = bc(0.0);
    for (int64_t c = 0; c < d; ++c) {
      const int64_t e0 = i * p + c * k;
      const V2 s = ld(score + e0, m), pc = ld(pr + c * k, m);
      V2 v = bc(fi) * s, af = bc(0.0), r = bc(0.0);
      if (a_f) {
        af = ld(a_f + e0, m);
        v = v + bc(sc) * af;
      }
      if (net) {
        r = ld(rr + e0, m);
        const V2 gz = ld(gx + e0, m), gtr = ld(gx + n * p + e0, m) * r;
        v = v + (gz - pc * bc(sum(gz)) - (gtr - pc * bc(sum(gtr))));
      }
      st(g + e0, v, m);
      s2 = s2 + v * v;
      if (a_f) sf = sf + v * af;
      if (a_d) sd = sd + v * ld(a_d + e0, m);
      gsum = gsum + v * s;
      if (net) {  // the transposed Jacobians applied to g: d1 = (1 - 1 p^T) g, d2 = diag(r) d1
        const V2 w = v - bc(sum(v * pc));
        st(d1 + e0, w, m);
        st(d2 + e0, r * w, m);
      }
    }
    if (net) gs[i] = sum(gsum);
  }
  sums3[0] = sum(s2);
  sums3[1] = sum(sf);
  sums3[2] = sum(sd);
}
}  // namespace
#endif

void relax_categorical_combine(const double* fb, const double* score, const double* rr, const double* pr,
                               const double* a_f, const double* a_d, double sc, const double* rnet, const double* gx,
                               int64_t n, int64_t d, int64_t k, double* g, double* d1, double* d2, double* gs,
                               double* sums) {
  const bool net = rnet != nullptr;
  if (net != (gx != nullptr) || net != (d1 != nullptr) || net != (d2 != nullptr) || net != (gs != nullptr))
    throw std::invalid_argument("relax_categorical_combine: r, gx, d1, d2 and gs go together");
  if (a_d && !a_f) throw std::invalid_argument("relax_categorical_combine: a_d needs a_f");
  const int64_t p = d * k;
  // fixed row blocks, their sums added in block order: the same for any thread count
  const int64_t rows = std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(1, p));
  const int64_t nb = (n + rows - 1) / rows;
  std::vector<double> part(static_cast<size_t>(3 * nb), 0.0);
  parallel_chunks(nb, [&](int64_t blk) {
    const int64_t i0 = blk * rows, i1 = std::min(n, i0 + rows);
#if BG_HAVE_X86
    if (k <= 16 && simd::use_avx512())
      return combine_rows_avx512_short(fb, score, rr, pr, a_f, a_d, sc, rnet, gx, n, d, k, g, d1, d2, gs, i0, i1,
                                       part.data() + 3 * blk);
#endif
    double s2 = 0.0, sf = 0.0, sd = 0.0;
    for (int64_t i = i0; i < i1; ++i) {
      const double fi = fb[i] - (net ? rnet[n + i] : 0.0);
      double gsum = 0.0;
      for (int64_t c = 0; c < d; ++c) {
        const int64_t e0 = i * p + c * k;
        const double *s = score + e0, *r = rr + e0, *pc = pr + c * k;
        double Sz = 0.0, St = 0.0;
        const double *gz = nullptr, *gt = nullptr;
        if (net) {
          gz = gx + e0;
          gt = gx + n * p + e0;
          for (int64_t j = 0; j < k; ++j) {
            Sz += gz[j];
            St += gt[j] * r[j];
          }
        }
        double* go = g + e0;
        for (int64_t j = 0; j < k; ++j) {
          double v = fi * s[j];
          if (a_f) v += sc * a_f[e0 + j];
          if (net) v += gz[j] - pc[j] * Sz - (gt[j] * r[j] - pc[j] * St);
          go[j] = v;
          s2 += v * v;
          if (a_f) sf += v * a_f[e0 + j];
          if (a_d) sd += v * a_d[e0 + j];
          gsum += v * s[j];
        }
        if (net) {  // the transposed Jacobians applied to g: d1 = (1 - 1 p^T) g, d2 = diag(r) d1
          double wp = 0.0;
          for (int64_t j = 0; j < k; ++j) wp += go[j] * pc[j];
          for (int64_t j = 0; j < k; ++j) {
            d1[e0 + j] = go[j] - wp;
            d2[e0 + j] = r[j] * (go[j] - wp);
          }
        }
      }
      if (net) gs[i] = gsum;
    }
    part[3 * blk] = s2;
    part[3 * blk + 1] = sf;
    part[3 * blk + 2] = sd;
  });
  sums[0] = sums[1] = sums[2] = 0.0;
  for (int64_t blk = 0; blk < nb; ++blk)
    for (int q = 0; q < 3; ++q) sums[q] += part[3 * blk + q];
}

}  // namespace bayesgrad
