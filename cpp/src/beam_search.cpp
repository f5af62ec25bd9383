// Stochastic beam search (gumbel_beam_search, declared in estimators.hpp): the kernel behind
// bayesgrad.distributions.gumbel_top_k and the estimators that sample without replacement.
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
constexpr double kMinusLn2 = -0.6931471805599453;

// expm1 x for -ln 2 < x <= 0 by its Taylor series to x^17 (error below 2^-60 relative there).
BG_AVX2 inline __m256d expm1_small4(__m256d x) {
  // p = 1 + x/2 (1 + x/3 (... (1 + x/17))): expm1 x = x p
  __m256d p = _mm256_set1_pd(1.0);
  for (int j = 17; j >= 2; --j) p = _mm256_fmadd_pd(_mm256_mul_pd(p, x), _mm256_set1_pd(1.0 / j), _mm256_set1_pd(1.0));
  return _mm256_mul_pd(x, p);
}

// truncate_scalar's formula on 4 children: log1mexp by its two branches (both computed, then
// blended), the maximum itself (x = 0) replaced by -1 to stay in the logs' domain and blended out.
BG_AVX2 inline __m256d truncate4(__m256d gv, __m256d tv, __m256d zv) {
  const __m256d sign = _mm256_set1_pd(-0.0), zero = _mm256_setzero_pd(), mln2 = _mm256_set1_pd(kMinusLn2);
  const __m256d x = _mm256_sub_pd(gv, zv);
  const __m256d near = _mm256_cmp_pd(x, mln2, _CMP_GT_OQ);
  const __m256d at_max = _mm256_cmp_pd(x, zero, _CMP_EQ_OQ);
  const __m256d xs = _mm256_blendv_pd(x, _mm256_set1_pd(-1.0), at_max);
  const __m256d l_near = simd::logx4(_mm256_xor_pd(expm1_small4(_mm256_max_pd(xs, mln2)), sign));
  const __m256d l_far = simd::log1px4(_mm256_xor_pd(simd::expx4(xs), sign));
  const __m256d v = _mm256_add_pd(_mm256_sub_pd(tv, gv), _mm256_blendv_pd(l_far, l_near, near));
  const __m256d av = _mm256_andnot_pd(sign, v);
  const __m256d sp = _mm256_add_pd(_mm256_max_pd(v, zero), simd::log1px4(simd::expx4(_mm256_xor_pd(av, sign))));
  return _mm256_blendv_pd(_mm256_sub_pd(tv, sp), tv, at_max);
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
BG_AVX512 inline __m512d expm1_small8(__m512d x) {
  __m512d p = _mm512_set1_pd(1.0);
  for (int j = 17; j >= 2; --j) p = _mm512_fmadd_pd(_mm512_mul_pd(p, x), _mm512_set1_pd(1.0 / j), _mm512_set1_pd(1.0));
  return _mm512_mul_pd(x, p);
}

BG_AVX512 inline __m512d truncate8(__m512d gv, __m512d tv, __m512d zv) {
  const __m512d sign = _mm512_set1_pd(-0.0), zero = _mm512_setzero_pd(), mln2 = _mm512_set1_pd(kMinusLn2);
  const __m512d x = _mm512_sub_pd(gv, zv);
  const __mmask8 near = _mm512_cmp_pd_mask(x, mln2, _CMP_GT_OQ);
  const __mmask8 at_max = _mm512_cmp_pd_mask(x, zero, _CMP_EQ_OQ);
  const __m512d xs = _mm512_mask_blend_pd(at_max, x, _mm512_set1_pd(-1.0));
  const __m512d l_near = simd::logx8d(_mm512_xor_pd(expm1_small8(_mm512_max_pd(xs, mln2)), sign));
  const __m512d l_far = simd::log1px8d(_mm512_xor_pd(simd::expx8d(xs), sign));
  const __m512d v = _mm512_add_pd(_mm512_sub_pd(tv, gv), _mm512_mask_blend_pd(near, l_far, l_near));
  const __m512d av = _mm512_andnot_pd(sign, v);
  const __m512d sp = _mm512_add_pd(_mm512_max_pd(v, zero), simd::log1px8d(simd::expx8d(_mm512_xor_pd(av, sign))));
  return _mm512_mask_blend_pd(at_max, _mm512_sub_pd(tv, sp), tv);
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
inline void top_positions(const double* v, int64_t total, int64_t keep, int64_t* idx) {
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
}  // namespace

void gumbel_beam_search(const double* log_probs, int64_t d, int64_t k, const double* u, int64_t n, int64_t m,
                        int64_t* conf, double* log_prob, double* perturbed) {
  const int64_t width = 1 + d * m * k;
  parallel_chunks((n + kBeamRows - 1) / kBeamRows, [&](int64_t c) {
    const int64_t r0 = c * kBeamRows, rows = std::min(n, r0 + kBeamRows) - r0;
    const size_t all = static_cast<size_t>(rows * m * k);
    std::vector<double> gum(static_cast<size_t>(rows * width)), G(static_cast<size_t>(rows * m)),
        phi(static_cast<size_t>(rows * m)), gv(all), T(all), Zc(all), cG(all), cphi(all);
    std::vector<int64_t> cur(static_cast<size_t>(rows * m * d)), nxt(cur.size()), idx(static_cast<size_t>(m));
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
        const int64_t* cr = cur.data() + r * m * d;
        int64_t* nr = nxt.data() + r * m * d;
        for (int64_t q = 0; q < keep; ++q) {
          const int64_t parent = idx[q] / k, cls = idx[q] % k;
          std::copy(cr + parent * d, cr + parent * d + t, nr + q * d);
          nr[q * d + t] = cls;
          G[r * m + q] = cG[o + idx[q]];
          phi[r * m + q] = cphi[o + idx[q]];
        }
      }
      std::swap(cur, nxt);
      B = keep;
    }
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t q = 0; q < m; ++q) {
        const int64_t e = (r0 + r) * m + q;
        std::copy(cur.data() + (r * m + q) * d, cur.data() + (r * m + q + 1) * d, conf + e * d);
        log_prob[e] = phi[r * m + q];
        perturbed[e] = G[r * m + q];
      }
  });
}

}  // namespace bayesgrad
