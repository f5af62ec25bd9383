// Sampling without replacement (declared in estimators.hpp): the stochastic beam search
// (gumbel_beam_search) behind bayesgrad.distributions.gumbel_top_k and the estimators that
// sample without replacement, and the unordered set estimator's probabilities (at the end).
//
// Rows are independent, but one row's step holds only B K <= m K children (25 for k = 4 draws
// and their threshold over K = 5 classes): too few for vector code, whose tail would be a fifth
// of the work, and a per-row call per step costs more than the arithmetic. So a task runs a
// block of rows in lockstep (the beam width after each step is min(m, B K), the same for every
// row) and each vector pass spans the block: the Gumbels of all its uniforms at once, then one
// truncation pass per step. The vector paths (AVX-512, AVX2) pad their tail into a full vector,
// so that every element takes the same operations on both and they agree bit for bit; the
// scalar path (libm) is the reference they are tested against.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "bayesgrad/estimators.hpp"
#include "bayesgrad/parallel.hpp"
#include "bayesgrad/simd_math.hpp"

namespace bayesgrad {

namespace {
constexpr int64_t kBeamRows = 64;  // rows per task: their Gumbels (64 (1 + D m K) values) stay in L2

inline double softplus(double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }
// log(1 - exp(x)) for x <= 0 (-inf at 0)
inline double log1mexp(double x) { return x > -0.6931471805599453 ? std::log(-std::expm1(x)) : std::log1p(-std::exp(x)); }
inline double gumbel(double u) { return -std::log(-std::log(u)); }

// The children of one beam step: for c < count, with the child's perturbed value g[c], its
// parent's truncation value T[c] and the family maximum Z[c], the child's Gumbel truncated at
// T: cG = T - softplus(T - g + log1mexp(g - Z)) (= T for the maximum itself).
void truncate_scalar(const double* g, const double* T, const double* Z, int64_t count, double* cG) {
  for (int64_t c = 0; c < count; ++c) {
    const double v = T[c] - g[c] + log1mexp(g[c] - Z[c]);
    cG[c] = T[c] - softplus(v);
  }
}

void gumbel_scalar(const double* u, int64_t count, double* g) {
  for (int64_t c = 0; c < count; ++c) g[c] = gumbel(u[c]);
}

#if BG_HAVE_X86
// The vector paths compute the truncated Gumbel in the form
//   cG = -log(e^-T + y e^-g),  y = 1 - e^(g - Z) = -expm1(g - Z) in [0, 1),
// factored by the smaller of g and T: g - log(e^(g - T) + y) when g <= T, else
// T - log1p(y e^(T - g)); every term is positive, so nothing cancels. That is one exp-type
// polynomial for each of y and e^-|g - T|, and one log (with log1p's correction term): less
// than half the work of the scalar form's log1mexp and softplus (three logs, two exps and
// an expm1), whose result it matches to a few ulp (tested against the scalar path).

// x = k ln 2 + r (|r| <= ln 2 / 2, ln 2 split as in simd::expx4) for -700 <= x <= 0:
// p = expm1 r by its Taylor series to r^13 (relative error below 2^-56) and s = 2^k, so that
// e^x = s + s p and expm1 x = s p + (s - 1), both accurate to rounding.
BG_AVX2 inline void exp_parts4(__m256d x, __m256d& p, __m256d& s) {
  const __m256d k = _mm256_round_pd(_mm256_mul_pd(x, _mm256_set1_pd(1.4426950408889634074)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256d r = _mm256_fnmadd_pd(k, _mm256_set1_pd(6.93147180369123816490e-01), x);
  r = _mm256_fnmadd_pd(k, _mm256_set1_pd(1.90821492927058770002e-10), r);
  __m256d q = _mm256_set1_pd(1.0 / 6227020800.0);  // 1/13!
  double f = 6227020800.0;
  for (int j = 12; j >= 1; --j) {
    f /= (j + 1);
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / f));  // 1/j!
  }
  p = _mm256_mul_pd(q, r);
  const __m256i ki = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(k));
  s = _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(ki, _mm256_set1_epi64x(1023)), 52));
}

BG_AVX2 inline __m256d truncate4(__m256d gv, __m256d tv, __m256d zv) {
  const __m256d one = _mm256_set1_pd(1.0), lo = _mm256_set1_pd(-700.0), sign = _mm256_set1_pd(-0.0);
  const __m256d x = _mm256_sub_pd(gv, zv), dgt = _mm256_sub_pd(gv, tv);
  __m256d p, s;
  exp_parts4(_mm256_max_pd(x, lo), p, s);
  const __m256d y = _mm256_fnmadd_pd(s, p, _mm256_sub_pd(one, s));  // -expm1(g - Z)
  const __m256d nd = _mm256_xor_pd(_mm256_andnot_pd(sign, dgt), sign);  // -|g - T|
  exp_parts4(_mm256_max_pd(nd, lo), p, s);
  const __m256d e = _mm256_and_pd(_mm256_fmadd_pd(s, p, s), _mm256_cmp_pd(nd, lo, _CMP_GE_OQ));
  const __m256d le = _mm256_cmp_pd(dgt, _mm256_setzero_pd(), _CMP_LE_OQ);  // g <= T
  const __m256d z = _mm256_blendv_pd(_mm256_mul_pd(y, e), _mm256_add_pd(e, y), le);
  const __m256d arg = _mm256_blendv_pd(_mm256_add_pd(one, z), z, le);
  const __m256d corr = _mm256_andnot_pd(le, _mm256_div_pd(_mm256_sub_pd(z, _mm256_sub_pd(arg, one)), arg));
  const __m256d out = _mm256_sub_pd(_mm256_blendv_pd(tv, gv, le), _mm256_add_pd(simd::logx4(arg), corr));
  // NaN in, NaN out (the clamps above would hide it)
  return _mm256_blendv_pd(out, _mm256_add_pd(x, dgt), _mm256_cmp_pd(x, dgt, _CMP_UNORD_Q));
}

BG_AVX2 void truncate_avx2(const double* g, const double* T, const double* Z, int64_t count, double* cG) {
  int64_t c = 0;
  for (; c + 4 <= count; c += 4)
    _mm256_storeu_pd(cG + c, truncate4(_mm256_loadu_pd(g + c), _mm256_loadu_pd(T + c), _mm256_loadu_pd(Z + c)));
  if (c == count) return;
  // the tail padded with maxima (g = Z = T = 0), dropped on the way out
  alignas(32) double gb[4] = {0, 0, 0, 0}, tb[4] = {0, 0, 0, 0}, zb[4] = {0, 0, 0, 0}, out[4];
  const size_t rest = static_cast<size_t>(count - c) * sizeof(double);
  std::memcpy(gb, g + c, rest);
  std::memcpy(tb, T + c, rest);
  std::memcpy(zb, Z + c, rest);
  _mm256_store_pd(out, truncate4(_mm256_load_pd(gb), _mm256_load_pd(tb), _mm256_load_pd(zb)));
  std::memcpy(cG + c, out, rest);
}

BG_AVX2 inline __m256d gumbel4(__m256d uv) {
  const __m256d sign = _mm256_set1_pd(-0.0);
  const __m256d e = _mm256_xor_pd(simd::logx4(uv), sign);  // -log u > 0
  return _mm256_xor_pd(simd::logx4(e), sign);
}

BG_AVX2 void gumbel_avx2(const double* u, int64_t count, double* g) {
  int64_t c = 0;
  for (; c + 4 <= count; c += 4) _mm256_storeu_pd(g + c, gumbel4(_mm256_loadu_pd(u + c)));
  if (c == count) return;
  alignas(32) double ub[4] = {0.5, 0.5, 0.5, 0.5}, out[4];
  const size_t rest = static_cast<size_t>(count - c) * sizeof(double);
  std::memcpy(ub, u + c, rest);
  _mm256_store_pd(out, gumbel4(_mm256_load_pd(ub)));
  std::memcpy(g + c, out, rest);
}

// The AVX2 routines on 8 lanes, operation for operation (bit-identical results); the tail is a
// masked vector with the same padding.
BG_AVX512 inline void exp_parts8(__m512d x, __m512d& p, __m512d& s) {
  const __m512d k = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(1.4426950408889634074)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512d r = _mm512_fnmadd_pd(k, _mm512_set1_pd(6.93147180369123816490e-01), x);
  r = _mm512_fnmadd_pd(k, _mm512_set1_pd(1.90821492927058770002e-10), r);
  __m512d q = _mm512_set1_pd(1.0 / 6227020800.0);
  double f = 6227020800.0;
  for (int j = 12; j >= 1; --j) {
    f /= (j + 1);
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / f));
  }
  p = _mm512_mul_pd(q, r);
  const __m512i ki = _mm512_cvtepi32_epi64(_mm512_cvtpd_epi32(k));
  s = _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_add_epi64(ki, _mm512_set1_epi64(1023)), 52));
}

BG_AVX512 inline __m512d truncate8(__m512d gv, __m512d tv, __m512d zv) {
  const __m512d one = _mm512_set1_pd(1.0), lo = _mm512_set1_pd(-700.0), sign = _mm512_set1_pd(-0.0);
  const __m512d x = _mm512_sub_pd(gv, zv), dgt = _mm512_sub_pd(gv, tv);
  __m512d p, s;
  exp_parts8(_mm512_max_pd(x, lo), p, s);
  const __m512d y = _mm512_fnmadd_pd(s, p, _mm512_sub_pd(one, s));
  const __m512d nd = _mm512_xor_pd(_mm512_andnot_pd(sign, dgt), sign);
  exp_parts8(_mm512_max_pd(nd, lo), p, s);
  const __m512d e = _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(nd, lo, _CMP_GE_OQ), _mm512_fmadd_pd(s, p, s));
  const __mmask8 le = _mm512_cmp_pd_mask(dgt, _mm512_setzero_pd(), _CMP_LE_OQ);
  const __m512d z = _mm512_mask_blend_pd(le, _mm512_mul_pd(y, e), _mm512_add_pd(e, y));
  const __m512d arg = _mm512_mask_blend_pd(le, _mm512_add_pd(one, z), z);
  const __m512d corr = _mm512_maskz_mov_pd(static_cast<__mmask8>(~le),
                                           _mm512_div_pd(_mm512_sub_pd(z, _mm512_sub_pd(arg, one)), arg));
  const __m512d out = _mm512_sub_pd(_mm512_mask_blend_pd(le, tv, gv), _mm512_add_pd(simd::logx8d(arg), corr));
  return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(x, dgt, _CMP_UNORD_Q), out, _mm512_add_pd(x, dgt));
}

BG_AVX512 void truncate_avx512(const double* g, const double* T, const double* Z, int64_t count, double* cG) {
  int64_t c = 0;
  for (; c + 8 <= count; c += 8)
    _mm512_storeu_pd(cG + c, truncate8(_mm512_loadu_pd(g + c), _mm512_loadu_pd(T + c), _mm512_loadu_pd(Z + c)));
  if (c == count) return;
  const __mmask8 tail = static_cast<__mmask8>((1u << (count - c)) - 1u);
  _mm512_mask_storeu_pd(cG + c, tail, truncate8(_mm512_maskz_loadu_pd(tail, g + c), _mm512_maskz_loadu_pd(tail, T + c),
                                                _mm512_maskz_loadu_pd(tail, Z + c)));
}

BG_AVX512 inline __m512d gumbel8(__m512d uv) {
  const __m512d sign = _mm512_set1_pd(-0.0);
  const __m512d e = _mm512_xor_pd(simd::logx8d(uv), sign);
  return _mm512_xor_pd(simd::logx8d(e), sign);
}

BG_AVX512 void gumbel_avx512(const double* u, int64_t count, double* g) {
  int64_t c = 0;
  for (; c + 8 <= count; c += 8) _mm512_storeu_pd(g + c, gumbel8(_mm512_loadu_pd(u + c)));
  if (c == count) return;
  const __mmask8 tail = static_cast<__mmask8>((1u << (count - c)) - 1u);
  _mm512_mask_storeu_pd(g + c, tail, gumbel8(_mm512_mask_loadu_pd(_mm512_set1_pd(0.5), tail, u + c)));
}
#endif

void truncate_children(const double* g, const double* T, const double* Z, int64_t count, double* cG) {
#if BG_HAVE_X86
  if (simd::use_avx512()) return truncate_avx512(g, T, Z, count, cG);
  if (simd::use_avx2()) return truncate_avx2(g, T, Z, count, cG);
#endif
  truncate_scalar(g, T, Z, count, cG);
}

void gumbels(const double* u, int64_t count, double* g) {
#if BG_HAVE_X86
  if (simd::use_avx512()) return gumbel_avx512(u, count, g);
  if (simd::use_avx2()) return gumbel_avx2(u, count, g);
#endif
  gumbel_scalar(u, count, g);
}

// idx[0..keep): the positions of the keep largest of v[0..total) in decreasing order, ties to
// the lower position (the order of the twin's stable argsort of -v). Insertion into the sorted
// list: once it is full most candidates cost one comparison with its last entry.
void top_insertion(const double* v, int64_t total, int64_t keep, int64_t* idx) {
  int64_t len = 0;
  for (int64_t a = 0; a < total; ++a) {
    const double x = v[a];
    if (len == keep) {
      if (!(x > v[idx[keep - 1]])) continue;
      --len;
    }
    int64_t q = len;
    for (; q > 0 && x > v[idx[q - 1]]; --q) idx[q] = idx[q - 1];
    idx[q] = a;
    ++len;
  }
}

#if BG_HAVE_X86
// The same positions without branches on the data (whose outcomes are random, so that the
// insertion mispredicts about once per candidate it keeps): each candidate's rank is the number
// of larger values plus the number of equal ones before it, counted for 8 candidates at a time
// against every value, and it is written to idx[rank], or to the spare idx[keep] when
// rank >= keep (idx holds keep + 1). NaN (the children of a beam at -inf, when the support has
// fewer than m configurations of positive probability) has no rank: such steps take top_insertion.
BG_AVX512 void top_ranks_avx512(const double* v, int64_t total, int64_t keep, int64_t* idx) {
  for (int64_t a0 = 0; a0 < total; a0 += 8) {
    const __mmask8 valid = static_cast<__mmask8>((1u << std::min<int64_t>(8, total - a0)) - 1u);
    const __m512d va = _mm512_maskz_loadu_pd(valid, v + a0);
    if (_mm512_cmp_pd_mask(va, va, _CMP_UNORD_Q) != 0) return top_insertion(v, total, keep, idx);
  }
  const __m512i one = _mm512_set1_epi64(1);
  for (int64_t a0 = 0; a0 < total; a0 += 8) {
    const int64_t lanes = std::min<int64_t>(8, total - a0);
    const __mmask8 valid = static_cast<__mmask8>((1u << lanes) - 1u);
    const __m512d va = _mm512_maskz_loadu_pd(valid, v + a0);
    __m512i rank = _mm512_setzero_si512();
    // values before the block count when >= (they precede every lane), after it when >
    for (int64_t c = 0; c < a0; ++c)
      rank = _mm512_mask_add_epi64(rank, _mm512_cmp_pd_mask(_mm512_set1_pd(v[c]), va, _CMP_GE_OQ), rank, one);
    for (int64_t c = a0 + lanes; c < total; ++c)
      rank = _mm512_mask_add_epi64(rank, _mm512_cmp_pd_mask(_mm512_set1_pd(v[c]), va, _CMP_GT_OQ), rank, one);
    for (int64_t l = 0; l < lanes; ++l) {  // within the block: >= for the lanes after l, > before
      const __m512d vc = _mm512_set1_pd(v[a0 + l]);
      const __mmask8 after = static_cast<__mmask8>(0xFEu << l), before = static_cast<__mmask8>((1u << l) - 1u);
      const __mmask8 cnt = static_cast<__mmask8>(_mm512_mask_cmp_pd_mask(after, vc, va, _CMP_GE_OQ) |
                                                 _mm512_mask_cmp_pd_mask(before, vc, va, _CMP_GT_OQ));
      rank = _mm512_mask_add_epi64(rank, cnt, rank, one);
    }
    alignas(64) int64_t rk[8];
    _mm512_store_si512(rk, rank);
    for (int64_t l = 0; l < lanes; ++l) idx[std::min(rk[l], keep)] = a0 + l;
  }
}
#endif

void top_positions(const double* v, int64_t total, int64_t keep, int64_t* idx) {
#if BG_HAVE_X86
  if (simd::use_avx512()) return top_ranks_avx512(v, total, keep, idx);
#endif
  top_insertion(v, total, keep, idx);
}
}  // namespace

void gumbel_beam_search(const double* log_probs, int64_t d, int64_t k, const double* u, int64_t n, int64_t m,
                        int64_t* conf, double* log_prob, double* perturbed) {
  const int64_t width = 1 + d * m * k;
  parallel_chunks((n + kBeamRows - 1) / kBeamRows, [&](int64_t c) {
    const int64_t r0 = c * kBeamRows, rows = std::min(n, r0 + kBeamRows) - r0;
    const size_t all = static_cast<size_t>(rows * m * k);
    std::vector<double> gum(static_cast<size_t>(rows * width)), G(static_cast<size_t>(rows * m)),
        phi(static_cast<size_t>(rows * m)), gv(all), T(all), Zc(all), cG(all), cphi(all);
    // per step, row and kept beam: its parent among the previous step's beams and its class;
    // the configurations are read back from the last step at the end
    std::vector<int32_t> parent(static_cast<size_t>(d * rows * m)), cls(parent.size());
    std::vector<int64_t> idx(static_cast<size_t>(m + 1));
    gumbels(u + r0 * width, rows * width, gum.data());
    for (int64_t r = 0; r < rows; ++r) {
      G[r * m] = gum[r * width];  // the root's
      phi[r * m] = 0.0;
    }
    int64_t B = 1;
    for (int64_t t = 0; t < d; ++t) {
      const double* lp = log_probs + t * k;
      const int64_t total = B * k;
      for (int64_t r = 0; r < rows; ++r) {
        const double* gt = gum.data() + r * width + 1 + t * m * k;
        const int64_t o = r * total;
        for (int64_t b = 0; b < B; ++b) {
          const double pb = phi[r * m + b], Gb = G[r * m + b];
          double Z = -std::numeric_limits<double>::infinity();
          for (int64_t j = 0; j < k; ++j) {
            const int64_t e = o + b * k + j;
            cphi[e] = pb + lp[j];
            gv[e] = cphi[e] + gt[b * k + j];
            Z = std::max(Z, gv[e]);
          }
          for (int64_t j = 0; j < k; ++j) {
            T[o + b * k + j] = Gb;
            Zc[o + b * k + j] = Z;
          }
        }
      }
      truncate_children(gv.data(), T.data(), Zc.data(), rows * total, cG.data());
      const int64_t keep = std::min(m, total);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t o = r * total;
        top_positions(cG.data() + o, total, keep, idx.data());
        int32_t* pr = parent.data() + (t * rows + r) * m;
        int32_t* cr = cls.data() + (t * rows + r) * m;
        for (int64_t q = 0; q < keep; ++q) {
          pr[q] = static_cast<int32_t>(idx[q] / k);
          cr[q] = static_cast<int32_t>(idx[q] % k);
          G[r * m + q] = cG[o + idx[q]];
          phi[r * m + q] = cphi[o + idx[q]];
        }
      }
      B = keep;
    }
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t q = 0; q < m; ++q) {
        const int64_t e = (r0 + r) * m + q;
        int64_t* out = conf + e * d;
        for (int64_t t = d - 1, b = q; t >= 0; --t) {
          out[t] = cls[(t * rows + r) * m + b];
          b = parent[(t * rows + r) * m + b];
        }
        log_prob[e] = phi[r * m + q];
        perturbed[e] = G[r * m + q];
      }
  });
}

// ------------------------------------------------ unordered-set probabilities
// The unordered set estimator's kernels (set_order_probabilities, categorical_set_terms),
// beside the beam search that draws its sets.
namespace {
// log P(S) for m elements with log-probabilities lp and the mass outside them, log_rest: log of the
// sum over the m! orders of prod_i p_i / L(elements before i), where L(B) = rest + sum_{j not in B} p_j
// is the mass left after drawing B: a sum of non-negative terms, accurate whatever the elements'
// probabilities (1 - mass(B) cancelled when the elements held almost all the mass, and a class of
// probability 1e-17 beside it was lost entirely). Every order's product holds each p_i once, so
// P(S) = (prod_i p_i) R with R = sum over orders of prod_i 1 / L(before i) >= 1, computed in linear space
// by the recursion over subsets (masks in increasing order, so that every mask's predecessors come
// first): no exp or log per subset. When a subset leaves little mass (L < 1e-12: R could overflow),
// the recursion runs in log space, each log L a max-shifted log-sum-exp.
// q, rest: 2^m scratch. p: exp(lp), which the callers have at hand.
// log(rest + sum_{j not in mask} p_j) over m elements with log-probabilities lp (max-shifted).
double log_left(const double* lp, int m, int mask, double log_rest) {
  double mx = log_rest;
  for (int j = 0; j < m; ++j)
    if (!(mask >> j & 1)) mx = std::max(mx, lp[j]);
  if (mx == -std::numeric_limits<double>::infinity()) return mx;
  double sum = std::exp(log_rest - mx);
  for (int j = 0; j < m; ++j)
    if (!(mask >> j & 1)) sum += std::exp(lp[j] - mx);
  return mx + std::log(sum);
}

double log_set_prob(const double* lp, const double* p, int m, double log_rest, double* q, double* rest) {
  if (m == 0) return 0.0;
  double sum_lp = 0.0;
  for (int j = 0; j < m; ++j) sum_lp += lp[j];
  const int full = (1 << m) - 1;
  const double outside = std::exp(log_rest);  // only where every L >= 1e-12: its underflow is negligible
  bool linear = true;
  for (int mask = 0; mask < full; ++mask) {
    double left = outside;
    for (int j = 0; j < m; ++j)
      if (!(mask >> j & 1)) left += p[j];
    if (left < 1e-12) {
      linear = false;
      break;
    }
    rest[mask] = 1.0 / left;
  }
  if (linear) {
    q[0] = 1.0;
    for (int mask = 1; mask <= full; ++mask) {
      double r = 0.0;
      for (int i = 0; i < m; ++i)
        if (mask >> i & 1) {
          const int prev = mask ^ (1 << i);
          r += q[prev] * rest[prev];
        }
      q[mask] = r;
    }
    return sum_lp + std::log(q[full]);
  }
  for (int mask = 0; mask < full; ++mask) rest[mask] = log_left(lp, m, mask, log_rest);
  q[0] = 0.0;
  double a[16];
  for (int mask = 1; mask <= full; ++mask) {
    int c = 0;
    double mx = -std::numeric_limits<double>::infinity();
    for (int i = 0; i < m; ++i)
      if (mask >> i & 1) {
        const int prev = mask ^ (1 << i);
        a[c] = q[prev] + lp[i] - rest[prev];
        mx = std::max(mx, a[c++]);
      }
    double sum = 0.0;
    for (int j = 0; j < c; ++j) sum += std::exp(a[j] - mx);
    q[mask] = mx + std::log(sum);
  }
  return q[full];
}

}  // namespace

void set_order_probabilities(const double* log_p, const double* log_rest, int64_t n, int64_t k, double* first,
                             double* second) {
  if (k < 1 || k > 12) throw std::invalid_argument("set_order_probabilities needs 1 <= k <= 12");
  parallel_chunks((n + 15) / 16, [&](int64_t c) {
    const int64_t i0 = c * 16, i1 = std::min(n, i0 + 16);
    std::vector<double> q(size_t{1} << k), rest(size_t{1} << k);
    double lp1[16], p1[16], lp2[16], p2[16], l1[16], left1[16], ps[16], l2[16 * 16];
    for (int64_t i = i0; i < i1; ++i) {
      const double* lp = log_p + i * k;
      const double lr = log_rest[i];
      double* fi = first + i * k;
      double* si = second ? second + i * k * k : nullptr;
      if (k == 1) {
        fi[0] = 1.0;
        if (si) si[0] = 0.0;
        continue;
      }
      for (int64_t s = 0; s < k; ++s) ps[s] = std::exp(lp[s]);
      const double lps = log_set_prob(lp, ps, static_cast<int>(k), lr, q.data(), rest.data());
      // P^{D \ s}(S \ s): the same outside mass, the elements without s (their probabilities are not
      // renormalised: the recursion's masses L carry the normalisation)
      for (int64_t s = 0; s < k; ++s) {
        int c2 = 0;
        for (int64_t j = 0; j < k; ++j)
          if (j != s) {
            lp1[c2] = lp[j];
            p1[c2] = ps[j];
            ++c2;
          }
        l1[s] = log_set_prob(lp1, p1, static_cast<int>(k - 1), lr, q.data(), rest.data());
        left1[s] = log_left(lp1, static_cast<int>(k - 1), 0, lr);  // log L({s}) = log(1 - p(s))
        fi[s] = std::exp(lp[s] + l1[s] - lps);
      }
      if (!si) continue;
      if (k > 2)
        for (int64_t s = 0; s < k; ++s)
          for (int64_t s2 = s + 1; s2 < k; ++s2) {
            int c2 = 0;
            for (int64_t j = 0; j < k; ++j)
              if (j != s && j != s2) {
                lp2[c2] = lp[j];
                p2[c2] = ps[j];
                ++c2;
              }
            l2[s * k + s2] = l2[s2 * k + s] = log_set_prob(lp2, p2, static_cast<int>(k - 2), lr, q.data(), rest.data());
          }
      for (int64_t s = 0; s < k; ++s)
        for (int64_t s2 = 0; s2 < k; ++s2)
          si[s * k + s2] = s2 == s ? 0.0 : k == 2 ? 1.0 : std::exp(lp[s2] - left1[s] + l2[s * k + s2] - l1[s]);
    }
  });
}

void set_outside_mass(const int64_t* conf, const double* log_probs, int64_t n, int64_t k, int64_t d, int64_t kc,
                      double* out) {
  constexpr double kDirectRest = 1e-2;
  for (int64_t e = 0; e < n * k * d; ++e)  // before any work: the trie indexes log_probs by these
    if (conf[e] < 0 || conf[e] >= kc) throw std::invalid_argument("class index out of range [0, K)");
  const double ninf = -std::numeric_limits<double>::infinity();
  parallel_chunks((n + 63) / 64, [&](int64_t ch) {
    const int64_t i0 = ch * 64, i1 = std::min(n, i0 + 64);
    std::vector<int64_t> group(static_cast<size_t>(k)), next(static_cast<size_t>(k));
    std::vector<double> logw(static_cast<size_t>(k));
    std::vector<unsigned char> taken(static_cast<size_t>(kc));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t* ci = conf + i * k * d;
      // 1 - sum_S p(s) where that leaves at least 1e-2: its rounding (~(k + D) 1e-16) is then below 1e-13
      // of it, and the trie (a log-sum-exp per group and coordinate) is needed only for sets holding
      // almost all the mass
      double inside = 0.0;
      for (int64_t e = 0; e < k; ++e) {
        double l = 0.0;
        for (int64_t c = 0; c < d; ++c) l += log_probs[c * kc + ci[e * d + c]];
        inside += std::exp(l);
      }
      if (1.0 - inside >= kDirectRest) {
        out[i] = std::log1p(-inside);
        continue;
      }
      std::fill(group.begin(), group.end(), int64_t{0});
      std::fill(logw.begin(), logw.end(), 0.0);
      double acc = ninf;
      for (int64_t c = 0; c < d; ++c) {
        const double* lp = log_probs + c * kc;
        for (int64_t e = 0; e < k; ++e) {
          if (group[e] != e) continue;  // one term per group of configurations sharing classes before c
          std::fill(taken.begin(), taken.end(), 0);
          for (int64_t e2 = e; e2 < k; ++e2)
            if (group[e2] == e) taken[ci[e2 * d + c]] = 1;
          double mx = ninf;
          for (int64_t j = 0; j < kc; ++j)
            if (!taken[j]) mx = std::max(mx, lp[j]);
          if (mx == ninf) continue;  // every class taken here: nothing leaves the trie
          double sum = 0.0;
          for (int64_t j = 0; j < kc; ++j)
            if (!taken[j]) sum += std::exp(lp[j] - mx);
          const double term = logw[e] + mx + std::log(sum);
          const double hi = std::max(acc, term), lo = std::min(acc, term);
          acc = hi == ninf ? ninf : hi + std::log1p(std::exp(lo - hi));
        }
        for (int64_t e = 0; e < k; ++e) {  // the groups one coordinate on: the first member with the same class
          int64_t g = e;
          for (int64_t e2 = 0; e2 < e; ++e2)
            if (group[e2] == group[e] && ci[e2 * d + c] == ci[e * d + c]) {
              g = e2;
              break;
            }
          next[e] = g;
          logw[e] += lp[ci[e * d + c]];
        }
        std::swap(group, next);
      }
      out[i] = acc;
    }
  });
}

void categorical_set_terms(const int64_t* conf, const double* c, const double* probs, int64_t n, int64_t k,
                           int64_t d, int64_t kc, double* terms) {
  parallel_chunks((n + 255) / 256, [&](int64_t ch) {
    const int64_t i0 = ch * 256, i1 = std::min(n, i0 + 256);
    for (int64_t i = i0; i < i1; ++i) {
      double csum = 0.0;
      for (int64_t s = 0; s < k; ++s) csum += c[i * k + s];
      double* t = terms + i * d * kc;
      for (int64_t e = 0; e < d * kc; ++e) t[e] = -csum * probs[e];
      for (int64_t s = 0; s < k; ++s) {
        const int64_t* cf = conf + (i * k + s) * d;
        for (int64_t j = 0; j < d; ++j) {
          const int64_t cls = cf[j];
          if (cls < 0 || cls >= kc) throw std::invalid_argument("class index out of range [0, K)");
          t[j * kc + cls] += c[i * k + s];
        }
      }
    }
  });
}

}  // namespace bayesgrad
