#include "bayesgrad/estimators.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "bayesgrad/codes.hpp"
#include "gamma_run.hpp"
#include "bayesgrad/parallel.hpp"
#include "bayesgrad/simd_math.hpp"
#include "bayesgrad/philox.hpp"
#include "bayesgrad/samplers.hpp"
#include "bayesgrad/random.hpp"
#include "bayesgrad/simd_map.hpp"

namespace bayesgrad {

namespace {

// Runs Welford over blocks of the implicit (n, p) matrix term(i, j), merges.
// `term` is called as term(i, j) -> double and must be thread-safe.
template <typename T, typename Term>
void blocked_mean_var(int64_t n, int64_t p, T* mean, T* var, const Term& term) {
  if (n < 0 || p < 0) throw std::invalid_argument("negative size");
  if (p == 0) return;
  const int64_t n_sc = n == 0 ? 0 : (n + kEstSampleChunk - 1) / kEstSampleChunk;
  const int64_t n_cb = (p + kEstColBlock - 1) / kEstColBlock;
  // Per (sample chunk, column): chunk mean and M2 (sum of squared deviations).
  std::vector<double> pm(static_cast<size_t>(n_sc * p)), pm2(static_cast<size_t>(n_sc * p));
  parallel_chunks(n_sc * n_cb, [&](int64_t task) {
    const int64_t sc = task / n_cb, cb = task % n_cb;
    const int64_t i0 = sc * kEstSampleChunk, i1 = std::min(n, i0 + kEstSampleChunk);
    const int64_t j0 = cb * kEstColBlock, j1 = std::min(p, j0 + kEstColBlock);
    double* m = pm.data() + sc * p;
    double* m2 = pm2.data() + sc * p;
    for (int64_t j = j0; j < j1; ++j) m[j] = m2[j] = 0.0;
    for (int64_t i = i0; i < i1; ++i) {
      const double inv_k = 1.0 / static_cast<double>(i - i0 + 1);
      for (int64_t j = j0; j < j1; ++j) {
        welford_update(term(i, j), inv_k, m[j], m2[j]);
      }
    }
  });
  const double nan = std::numeric_limits<double>::quiet_NaN();
  parallel_chunks(n_cb, [&](int64_t cb) {
    const int64_t j0 = cb * kEstColBlock, j1 = std::min(p, j0 + kEstColBlock);
    for (int64_t j = j0; j < j1; ++j) {
      double cnt = 0.0, mu = 0.0, s2 = 0.0;
      for (int64_t sc = 0; sc < n_sc; ++sc) {  // Chan et al.: merge in sample order
        const double nb = static_cast<double>(std::min(n, (sc + 1) * kEstSampleChunk) - sc * kEstSampleChunk);
        chan_merge(nb, pm[sc * p + j], pm2[sc * p + j], cnt, mu, s2);
      }
      mean[j] = static_cast<T>(n > 0 ? mu : nan);
      var[j] = static_cast<T>(n > 1 ? s2 / (cnt - 1.0) : nan);
    }
  });
}

}  // namespace

template <typename T>
void column_mean_var(const T* x, int64_t n, int64_t p, T* mean, T* var) {
  blocked_mean_var(n, p, mean, var, [x, p](int64_t i, int64_t j) { return static_cast<double>(x[i * p + j]); });
}

template <typename T>
void score_accumulate(const T* score, const T* f, const T* baseline, bool loo, int64_t n, int64_t p,
                      T* mean, T* var, T* terms_out) {
  if (loo && n < 2) throw std::invalid_argument("a leave-one-out baseline needs n_samples >= 2");
  double total = 0.0;  // fixed (sequential) order: the same for any thread count
  if (loo)
    for (int64_t i = 0; i < n; ++i) total += static_cast<double>(f[i]);
  // divided, not multiplied by 1 / (n - 1): the leave-one-out mean of a constant f is then that constant
  // exactly (a rounded reciprocal left 4e-16 of it, which scores of 1e130 turned into terms of 1e114)
  const double nm1 = static_cast<double>(n - 1);
  std::vector<double> resid(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double fi = static_cast<double>(f[i]);
    double b = 0.0;
    if (loo)
      b = (total - fi) / nm1;
    else if (baseline)
      b = static_cast<double>(baseline[i]);
    resid[i] = fi - b;
  }
  const double* r = resid.data();
  if (terms_out) {
    blocked_mean_var(n, p, mean, var, [=](int64_t i, int64_t j) {
      const double t = static_cast<double>(score[i * p + j]) * r[i];
      terms_out[i * p + j] = static_cast<T>(t);
      return t;
    });
  } else {
    blocked_mean_var(n, p, mean, var,
                     [=](int64_t i, int64_t j) { return static_cast<double>(score[i * p + j]) * r[i]; });
  }
}

template <typename T>
void pathwise_accumulate(const T* g, const T* jac, int64_t n, int64_t p, T* mean, T* var, T* terms_out) {
  auto term = [=](int64_t i, int64_t j) {
    const int64_t k = i * p + j;
    const double t = jac ? static_cast<double>(g[k]) * static_cast<double>(jac[k]) : static_cast<double>(g[k]);
    if (terms_out) terms_out[k] = static_cast<T>(t);
    return t;
  };
  blocked_mean_var(n, p, mean, var, term);
}

template void column_mean_var<float>(const float*, int64_t, int64_t, float*, float*);
template void column_mean_var<double>(const double*, int64_t, int64_t, double*, double*);
template void score_accumulate<float>(const float*, const float*, const float*, bool, int64_t, int64_t, float*,
                                      float*, float*);
template void score_accumulate<double>(const double*, const double*, const double*, bool, int64_t, int64_t,
                                       double*, double*, double*);
template void pathwise_accumulate<float>(const float*, const float*, int64_t, int64_t, float*, float*, float*);
template void pathwise_accumulate<double>(const double*, const double*, int64_t, int64_t, double*, double*,
                                          double*);

void control_variate_accumulate(const double* score, const double* f, const double* h, const double* beta,
                                const double* eg, double scale, double f_shift, double h_shift, int64_t n,
                                int64_t p, double* mean, double* var, double* terms_out) {
  auto term = [=](int64_t i, int64_t j) {
    const int64_t k = i * p + j;
    const double t = scale * score[k] * ((f[i] - f_shift) - beta[j] * (h[i] - h_shift)) + beta[j] * eg[j];
    if (terms_out) terms_out[k] = t;
    return t;
  };
  blocked_mean_var(n, p, mean, var, term);
}

namespace {
// 1 / m, the unit of a column whose largest |value| is m > 0; 2^1023 where that reciprocal overflows (m
// subnormal: f of 1e-310 made it inf and the coefficient NaN), which still scales the column to ~1e-2
double column_unit(double m) {
  const double u = 1.0 / m;
  return std::isfinite(u) ? u : 0x1p1023;
}
}  // namespace

void control_coefficient(const double* score, const double* f, const double* h, int64_t n, int64_t p,
                         double* beta) {
  if (n < 2) throw std::invalid_argument("control_coefficient needs n >= 2 samples");
  const int64_t n_cb = (p + kEstColBlock - 1) / kEstColBlock;
  parallel_chunks(n_cb, [&](int64_t cb) {
    const int64_t j0 = cb * kEstColBlock, j1 = std::min(p, j0 + kEstColBlock);
    const int64_t w = j1 - j0;
    std::vector<double> ma(static_cast<size_t>(w), 0.0), mc(static_cast<size_t>(w), 0.0);
    std::vector<double> sa(static_cast<size_t>(w), 0.0), sc(static_cast<size_t>(w), 0.0);
    std::vector<double> cov(static_cast<size_t>(w), 0.0), vc(static_cast<size_t>(w), 0.0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = j0; j < j1; ++j) {
        const double s = score[i * p + j], a = s * f[i], c = s * h[i];
        ma[j - j0] += a;
        mc[j - j0] += c;
        sa[j - j0] = std::max(sa[j - j0], std::fabs(a));
        sc[j - j0] = std::max(sc[j - j0], std::fabs(c));
      }
    const double n_d = static_cast<double>(n);
    for (int64_t j = 0; j < w; ++j) {
      ma[j] /= n_d;
      mc[j] /= n_d;
      sa[j] = sa[j] > 0.0 && std::isfinite(sa[j]) ? column_unit(sa[j]) : 1.0;
      sc[j] = sc[j] > 0.0 && std::isfinite(sc[j]) ? column_unit(sc[j]) : 1.0;
    }
    // deviations in units of each column's largest |value|: products of values of 1e160 stay in range
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = j0; j < j1; ++j) {
        const double s = score[i * p + j];
        const double da = (s * f[i] - ma[j - j0]) * sa[j - j0], dc = (s * h[i] - mc[j - j0]) * sc[j - j0];
        cov[j - j0] += da * dc;
        vc[j - j0] += dc * dc;
      }
    // Var(score h) counts as 0 when its spread is at the rounding of the values (1e-14 of the largest):
    // there the coefficient was rounding noise and flipped between 0 and 1 with the summation order
    const double tiny = n_d * 1e-28;
    for (int64_t j = j0; j < j1; ++j)
      beta[j] = vc[j - j0] > tiny ? cov[j - j0] / vc[j - j0] * (sc[j - j0] / sa[j - j0]) : 0.0;
  });
}

void quadratic_values(const double* x, const double* mu, const double* g, const double* h, double f0, int64_t n,
                      int64_t p, double* out) {
  const int64_t rows = std::max<int64_t>(1, kEstSampleChunk * kEstColBlock / std::max<int64_t>(1, p));
  parallel_chunks((n + rows - 1) / rows, [&](int64_t c) {
    const int64_t i0 = c * rows, i1 = std::min(n, i0 + rows);
    for (int64_t i = i0; i < i1; ++i) {
      const double* xi = x + i * p;
      double acc = 0.0;
      for (int64_t j = 0; j < p; ++j) {
        const double d = xi[j] - mu[j];
        acc += d * (g[j] + 0.5 * h[j] * d);
      }
      out[i] = f0 + acc;
    }
  });
}

namespace {
// One row of vimco_signal: k >= 2 log-weights lw -> out. With m = max(mx, others) the
// exponents are <= 0 (the geometric mean of the others is at most the largest weight, up to rounding).
void vimco_row(const double* lw, int64_t k, double log_k, double* o) {
  const double tiny = std::numeric_limits<double>::min();
  double mx = lw[0], sum_lw = 0.0;
  for (int64_t j = 0; j < k; ++j) {
    mx = std::max(mx, lw[j]);
    sum_lw += lw[j];
  }
  double tot = 0.0;
  for (int64_t j = 0; j < k; ++j) tot += std::exp(lw[j] - mx);
  const double bound = std::log(tot) + mx - log_k;
  for (int64_t j = 0; j < k; ++j) {
    const double others = (sum_lw - lw[j]) / static_cast<double>(k - 1);
    const double m = std::max(mx, others);
    // the sum with w_j replaced by the geometric mean of the others, relative to e^m
    const double t = tot * std::exp(mx - m) - std::exp(lw[j] - m) + std::exp(others - m);
    const double loo = std::log(std::max(t, tiny)) + m - log_k;
    o[j] = bound - loo - std::exp(lw[j] - mx) / tot;
  }
}

#if BG_HAVE_X86
// The signals of 8 lanes x of a row (unused lanes set to mx) given the row's max mx (vm), sum, the
// sum of e^{lw - mx} (tot), its bound and e = e^{x - mx}: vimco_row's last loop on a vector.
BG_AVX512 inline __m512d vimco_lanes_avx512(__m512d x, __m512d vm, __m512d vsum, __m512d vtot, __m512d vbound,
                                            __m512d e, __m512d inv_k1, double log_k) {
  const __m512d others = _mm512_mul_pd(_mm512_sub_pd(vsum, x), inv_k1);
  const __m512d mm = _mm512_max_pd(vm, others);
  // m = mx in every lane (others above mx only by rounding): e^{mx - m} = 1 and e^{x - m} = e
  const bool at_mx = _mm512_cmp_pd_mask(others, vm, _CMP_LE_OQ) == 0xFF;
  const __m512d head = at_mx ? _mm512_sub_pd(vtot, e)
                             : _mm512_sub_pd(_mm512_mul_pd(vtot, simd::expx8d(_mm512_sub_pd(vm, mm))),
                                             simd::expx8d(_mm512_sub_pd(x, mm)));
  const __m512d t = _mm512_add_pd(head, simd::expx8d(_mm512_sub_pd(others, mm)));
  const __m512d tiny = _mm512_set1_pd(std::numeric_limits<double>::min());
  const __m512d loo = _mm512_sub_pd(_mm512_add_pd(simd::logx8d(_mm512_max_pd(t, tiny)), mm), _mm512_set1_pd(log_k));
  return _mm512_sub_pd(_mm512_sub_pd(vbound, loo), _mm512_div_pd(e, vtot));
}

// vimco_row on 8-lane vectors, the row's tail a masked vector: the scalar loop's libm exp and
// log per element made the kernel slower than NumPy's (vectorised) formula (0.8x at k = 8).
// The sums are lane-wise then reduced, so the bits differ from vimco_row by rounding.
BG_AVX512 void vimco_rows_avx512(const double* logw, int64_t i0, int64_t i1, int64_t k, double log_k,
                                 double* out) {
  const __m512d ninf = _mm512_set1_pd(-std::numeric_limits<double>::infinity());
  const __m512d inv_k1 = _mm512_set1_pd(1.0 / static_cast<double>(k - 1));
  for (int64_t i = i0; i < i1; ++i) {
    const double* lw = logw + i * k;
    double* o = out + i * k;
    __m512d vmx = ninf, vs = _mm512_setzero_pd();
    for (int64_t j = 0; j < k; j += 8) {
      const __mmask8 m = static_cast<__mmask8>(k - j >= 8 ? 0xFFu : (1u << (k - j)) - 1u);
      vmx = _mm512_max_pd(vmx, _mm512_mask_loadu_pd(ninf, m, lw + j));
      vs = _mm512_add_pd(vs, _mm512_maskz_loadu_pd(m, lw + j));
    }
    const double mx = _mm512_reduce_max_pd(vmx), sum_lw = _mm512_reduce_add_pd(vs);
    const __m512d vm = _mm512_set1_pd(mx);
    __m512d vt = _mm512_setzero_pd();
    for (int64_t j = 0; j < k; j += 8) {
      const __mmask8 m = static_cast<__mmask8>(k - j >= 8 ? 0xFFu : (1u << (k - j)) - 1u);
      vt = _mm512_add_pd(vt, _mm512_maskz_mov_pd(m, simd::expx8d(_mm512_sub_pd(_mm512_maskz_loadu_pd(m, lw + j), vm))));
    }
    const double tot = _mm512_reduce_add_pd(vt);
    const __m512d vtot = _mm512_set1_pd(tot), vsum = _mm512_set1_pd(sum_lw);
    const __m512d vbound = _mm512_set1_pd(std::log(tot) + mx - log_k);
    for (int64_t j = 0; j < k; j += 8) {
      const __mmask8 m = static_cast<__mmask8>(k - j >= 8 ? 0xFFu : (1u << (k - j)) - 1u);
      const __m512d x = _mm512_mask_loadu_pd(vm, m, lw + j);
      const __m512d e = simd::expx8d(_mm512_sub_pd(x, vm));
      _mm512_mask_storeu_pd(o + j, m, vimco_lanes_avx512(x, vm, vsum, vtot, vbound, e, inv_k1, log_k));
    }
  }
}

// vimco_rows_avx512 for rows of k <= 8 (one masked vector each), R rows stage by stage: a row alone
// is one chain of dependent steps (reductions, exp, log), so independent rows fill the pipeline.
template <int R>
BG_AVX512 inline void vimco_short_avx512(const double* logw, int64_t k, double log_k, double* out) {
  const __mmask8 m = static_cast<__mmask8>((1u << k) - 1u);
  const __m512d ninf = _mm512_set1_pd(-std::numeric_limits<double>::infinity());
  const __m512d inv_k1 = _mm512_set1_pd(1.0 / static_cast<double>(k - 1));
  __m512d x[R], vm[R], e[R];
  double mx[R], sum[R], tot[R], bound[R];
  for (int r = 0; r < R; ++r) {
    x[r] = _mm512_mask_loadu_pd(ninf, m, logw + r * k);
    mx[r] = _mm512_reduce_max_pd(x[r]);
    sum[r] = _mm512_reduce_add_pd(_mm512_maskz_mov_pd(m, x[r]));
  }
  for (int r = 0; r < R; ++r) {
    vm[r] = _mm512_set1_pd(mx[r]);
    x[r] = _mm512_mask_mov_pd(vm[r], m, x[r]);  // unused lanes at mx: finite, never stored
    e[r] = simd::expx8d(_mm512_sub_pd(x[r], vm[r]));
    tot[r] = _mm512_reduce_add_pd(_mm512_maskz_mov_pd(m, e[r]));
  }
  for (int r = 0; r < R; ++r) bound[r] = std::log(tot[r]) + mx[r] - log_k;
  for (int r = 0; r < R; ++r) {
    const __m512d sig = vimco_lanes_avx512(x[r], vm[r], _mm512_set1_pd(sum[r]), _mm512_set1_pd(tot[r]),
                                           _mm512_set1_pd(bound[r]), e[r], inv_k1, log_k);
    _mm512_mask_storeu_pd(out + r * k, m, sig);
  }
}

// vimco_rows_avx512 on 4-lane vectors; the row's tail by vimco_row's scalar steps on the
// row's mx, sums and tot.
BG_AVX2 void vimco_rows_avx2(const double* logw, int64_t i0, int64_t i1, int64_t k, double log_k, double* out) {
  const double tiny = std::numeric_limits<double>::min();
  const __m256d vtiny = _mm256_set1_pd(tiny);
  const __m256d inv_k1 = _mm256_set1_pd(1.0 / static_cast<double>(k - 1));
  const int64_t kv = k & ~int64_t{3};
  for (int64_t i = i0; i < i1; ++i) {
    const double* lw = logw + i * k;
    double* o = out + i * k;
    double mx = lw[0], sum_lw = 0.0;
    if (kv) {
      __m256d vmx = _mm256_loadu_pd(lw), vs = _mm256_setzero_pd();
      for (int64_t j = 0; j < kv; j += 4) {
        vmx = _mm256_max_pd(vmx, _mm256_loadu_pd(lw + j));
        vs = _mm256_add_pd(vs, _mm256_loadu_pd(lw + j));
      }
      alignas(32) double a[4], b[4];
      _mm256_store_pd(a, vmx);
      _mm256_store_pd(b, vs);
      mx = std::max(std::max(a[0], a[1]), std::max(a[2], a[3]));
      sum_lw = (b[0] + b[1]) + (b[2] + b[3]);
    }
    for (int64_t j = kv; j < k; ++j) {
      mx = std::max(mx, lw[j]);
      sum_lw += lw[j];
    }
    const __m256d vm = _mm256_set1_pd(mx);
    double tot = 0.0;
    if (kv) {
      __m256d vt = _mm256_setzero_pd();
      for (int64_t j = 0; j < kv; j += 4)
        vt = _mm256_add_pd(vt, simd::expx4(_mm256_sub_pd(_mm256_loadu_pd(lw + j), vm)));
      alignas(32) double a[4];
      _mm256_store_pd(a, vt);
      tot = (a[0] + a[1]) + (a[2] + a[3]);
    }
    for (int64_t j = kv; j < k; ++j) tot += std::exp(lw[j] - mx);
    const double bound = std::log(tot) + mx - log_k;
    const __m256d vtot = _mm256_set1_pd(tot), vsum = _mm256_set1_pd(sum_lw);
    const __m256d vbound = _mm256_set1_pd(bound), vlogk = _mm256_set1_pd(log_k);
    for (int64_t j = 0; j < kv; j += 4) {
      const __m256d x = _mm256_loadu_pd(lw + j);
      const __m256d others = _mm256_mul_pd(_mm256_sub_pd(vsum, x), inv_k1);
      const __m256d mm = _mm256_max_pd(vm, others);
      const __m256d e = simd::expx4(_mm256_sub_pd(x, vm));
      const bool at_mx = _mm256_movemask_pd(_mm256_cmp_pd(others, vm, _CMP_LE_OQ)) == 0xF;
      const __m256d head = at_mx ? _mm256_sub_pd(vtot, e)
                                 : _mm256_sub_pd(_mm256_mul_pd(vtot, simd::expx4(_mm256_sub_pd(vm, mm))),
                                                 simd::expx4(_mm256_sub_pd(x, mm)));
      const __m256d t = _mm256_add_pd(head, simd::expx4(_mm256_sub_pd(others, mm)));
      const __m256d loo = _mm256_sub_pd(_mm256_add_pd(simd::logx4(_mm256_max_pd(t, vtiny)), mm), vlogk);
      const __m256d w = _mm256_div_pd(e, vtot);
      _mm256_storeu_pd(o + j, _mm256_sub_pd(_mm256_sub_pd(vbound, loo), w));
    }
    for (int64_t j = kv; j < k; ++j) {
      const double others = (sum_lw - lw[j]) / static_cast<double>(k - 1);
      const double m = std::max(mx, others);
      const double t = tot * std::exp(mx - m) - std::exp(lw[j] - m) + std::exp(others - m);
      o[j] = bound - (std::log(std::max(t, tiny)) + m - log_k) - std::exp(lw[j] - mx) / tot;
    }
  }
}
#endif

// Rows [i0, i1) of vimco_signal on the widest vector path.
void vimco_rows(const double* logw, int64_t i0, int64_t i1, int64_t k, double log_k, double* out) {
#if BG_HAVE_X86
  if (simd::use_avx512()) {
    if (k > 8) return vimco_rows_avx512(logw, i0, i1, k, log_k, out);
    int64_t i = i0;
    for (; i + 4 <= i1; i += 4) vimco_short_avx512<4>(logw + i * k, k, log_k, out + i * k);
    for (; i < i1; ++i) vimco_short_avx512<1>(logw + i * k, k, log_k, out + i * k);
    return;
  }
  if (simd::use_avx2()) return vimco_rows_avx2(logw, i0, i1, k, log_k, out);
#endif
  for (int64_t i = i0; i < i1; ++i) vimco_row(logw + i * k, k, log_k, out + i * k);
}
}  // namespace

void vimco_signal(const double* logw, int64_t n, int64_t k, double* out) {
  if (k < 2) throw std::invalid_argument("vimco_signal needs k >= 2 draws per row");
  const double log_k = std::log(static_cast<double>(k));
  parallel_chunks((n + kEstSampleChunk - 1) / kEstSampleChunk, [&](int64_t c) {
    const int64_t i0 = c * kEstSampleChunk, i1 = std::min(n, i0 + kEstSampleChunk);
    vimco_rows(logw, i0, i1, k, log_k, out);
  });
}

// ---------------------------------------------------------------- fused Normal forms
template <typename T>
void pathwise_normal_accumulate(const T* g, const T* x, const T* loc, const T* scale, int64_t n, int64_t p, T* mean,
                                T* var, T* terms_out) {
  T* tl = terms_out;
  T* ts = terms_out ? terms_out + n * p : nullptr;
  blocked_mean_var(n, p, mean, var, [=](int64_t i, int64_t j) {
    const int64_t e = i * p + j;
    const double t = static_cast<double>(g[e]);
    if (tl) tl[e] = g[e];
    return t;
  });
  // e in T, as the NumPy expression (x - loc) / scale it replaces
  blocked_mean_var(n, p, mean + p, var + p, [=](int64_t i, int64_t j) {
    const int64_t e = i * p + j;
    const T eps = static_cast<T>((x[e] - loc[j]) / scale[j]);
    const double t = static_cast<double>(g[e]) * static_cast<double>(eps);
    if (ts) ts[e] = static_cast<T>(t);
    return t;
  });
}

template <typename T>
void score_normal_accumulate(const T* x, const T* loc, const T* scale, const T* f, const T* baseline, bool loo,
                             int64_t n, int64_t p, T* mean, T* var, T* terms_out) {
  if (loo && n < 2) throw std::invalid_argument("a leave-one-out baseline needs n_samples >= 2");
  double total = 0.0;  // sequential: the same for any thread count
  if (loo)
    for (int64_t i = 0; i < n; ++i) total += static_cast<double>(f[i]);
  const double nm1 = static_cast<double>(n - 1);  // divided by, as in score_accumulate
  std::vector<double> resid(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double fi = static_cast<double>(f[i]);
    const double b = loo ? (total - fi) / nm1 : baseline ? static_cast<double>(baseline[i]) : 0.0;
    resid[i] = fi - b;
  }
  const double* r = resid.data();
  for (int part = 0; part < 2; ++part) {
    T* to = terms_out ? terms_out + part * n * p : nullptr;
    blocked_mean_var(n, p, mean + part * p, var + part * p, [=](int64_t i, int64_t j) {
      const int64_t e = i * p + j;
      const double s = static_cast<double>(scale[j]);
      const double z = (static_cast<double>(x[e]) - static_cast<double>(loc[j])) / s;
      // the score as the distributions' kernel stores it (in T), then the product in double
      const T sc = static_cast<T>(part == 0 ? z / s : (z * z - 1.0) / s);
      const double t = static_cast<double>(sc) * r[i];
      if (to) to[e] = static_cast<T>(t);
      return t;
    });
  }
}

template void pathwise_normal_accumulate<float>(const float*, const float*, const float*, const float*, int64_t,
                                                int64_t, float*, float*, float*);
template void pathwise_normal_accumulate<double>(const double*, const double*, const double*, const double*, int64_t,
                                                 int64_t, double*, double*, double*);
template void score_normal_accumulate<float>(const float*, const float*, const float*, const float*, const float*,
                                             bool, int64_t, int64_t, float*, float*, float*);
template void score_normal_accumulate<double>(const double*, const double*, const double*, const double*,
                                              const double*, bool, int64_t, int64_t, double*, double*, double*);

void normal_multisample_terms(const double* z, const double* fz, const double* g, const double* loc,
                              const double* scale, int mode, int64_t n, int64_t k, int64_t p, double* terms,
                              double* wt, double* bound) {
  if (mode < 0 || mode > 3) throw std::invalid_argument("mode must be 0 (iwae), 1 (dreg), 2 (dreg rws) or 3 (vimco)");
  if (mode == 3 && k < 2) throw std::invalid_argument("vimco needs k >= 2 draws per group");
  if (mode < 3 && g == nullptr) throw std::invalid_argument("g is required for modes 0-2");
  constexpr double kHalfLog2Pi = 0.91893853320467274178032973640562;
  double c0 = 0.0;  // the constant part of log q: -sum_j log scale_j - p log(2 pi) / 2
  for (int64_t j = 0; j < p; ++j) c0 -= std::log(scale[j]) + kHalfLog2Pi;
  const double log_k = std::log(static_cast<double>(k));
  const int64_t rows = std::max<int64_t>(1, kEstSampleChunk * kEstColBlock / std::max<int64_t>(1, k * p));
  parallel_chunks((n + rows - 1) / rows, [&](int64_t c) {
    const int64_t i0 = c * rows, i1 = std::min(n, i0 + rows);
    std::vector<double> lw(static_cast<size_t>(k)), cw(static_cast<size_t>(k)), inv_s(static_cast<size_t>(p));
    for (int64_t j = 0; j < p; ++j) inv_s[j] = 1.0 / scale[j];
    for (int64_t i = i0; i < i1; ++i) {
      const double* zi = z + i * k * p;
      for (int64_t q = 0; q < k; ++q) {
        const double* zq = zi + q * p;
        double ss = 0.0;
        for (int64_t j = 0; j < p; ++j) {
          const double e = (zq[j] - loc[j]) / scale[j];
          ss += e * e;
        }
        lw[q] = fz[i * k + q] - (c0 - 0.5 * ss);
      }
      double mx = lw[0];
      for (int64_t q = 1; q < k; ++q) mx = std::max(mx, lw[q]);
      double tot = 0.0;
      for (int64_t q = 0; q < k; ++q) tot += std::exp(lw[q] - mx);
      bound[i] = std::log(tot) + mx - log_k;
      double* wi = wt + i * k;
      for (int64_t q = 0; q < k; ++q) wi[q] = std::exp(lw[q] - mx) / tot;
      if (mode == 3)
        vimco_rows(lw.data(), 0, 1, k, log_k, cw.data());
      else
        for (int64_t q = 0; q < k; ++q) cw[q] = mode == 0 ? wi[q] : mode == 1 ? wi[q] * wi[q] : wi[q] - wi[q] * wi[q];
      double* tl = terms + i * p;
      double* ts = terms + n * p + i * p;
      std::fill(tl, tl + p, 0.0);
      std::fill(ts, ts + p, 0.0);
      for (int64_t q = 0; q < k; ++q) {
        const double* zq = zi + q * p;
        const double* gq = g ? g + (i * k + q) * p : nullptr;
        const double cq = cw[q];
        for (int64_t j = 0; j < p; ++j) {
          const double e = (zq[j] - loc[j]) / scale[j];
          if (mode == 0) {
            tl[j] += cq * gq[j];
            ts[j] += cq * (gq[j] * e + inv_s[j]);
          } else if (mode == 3) {
            tl[j] += cq * (e * inv_s[j]);
            ts[j] += cq * ((e * e - 1.0) * inv_s[j]);
          } else {
            const double a = gq[j] + e * inv_s[j];
            tl[j] += cq * a;
            ts[j] += cq * a * e;
          }
        }
      }
    }
  });
}

void gamma_weak_parts(const double* alpha, const double* eps, const double* psi, double sign, uint64_t seed,
                      uint64_t base, int64_t n, int64_t p, int64_t max_rounds, double* out) {
  constexpr double kE = 2.718281828459045;  // e, as NumPy's np.e rounds it
  if (!(sign == 1.0 || sign == -1.0)) throw std::invalid_argument("sign must be 1 or -1");
  // the elements still to draw and their columns (kept side by side: a % p per proposal cost more
  // than its acceptance test)
  std::vector<int64_t> pending(static_cast<size_t>(n * p)), col(static_cast<size_t>(n * p));
  std::iota(pending.begin(), pending.end(), int64_t{0});
  for (int64_t e = 0; e < n * p; ++e) col[e] = e % p;
  std::vector<unsigned char> ok;
  std::vector<double> shapes, cs, logs, us, xs, ws;
  std::vector<double> ctab(static_cast<size_t>(p));  // gamma_run's per-shape constant, once per column
  for (int64_t j = 0; j < p; ++j) ctab[j] = gamma_c(alpha[j]);
  const double tiny = std::numeric_limits<double>::min();  // clamp_into_support of the Gamma sampler
  for (int64_t r = 0; r < max_rounds; ++r) {
    const int64_t m = static_cast<int64_t>(pending.size());
    if (m == 0) return;
    const uint64_t s = philox::fold_in(base, static_cast<uint64_t>(r));
    const uint64_t sa = philox::fold_in(s, codes::kTagMvdAccept);
    const uint64_t sub = s | philox::kSubstreamBit;
    ok.resize(static_cast<size_t>(m));  // every proposal sets its flag
    for (auto* v : {&shapes, &cs, &logs, &us, &xs, &ws}) v->resize(static_cast<size_t>(m));
    // two chunks per thread, whole vectors (a fixed 4096 cut 10,000 proposals into 4096, 4096 and 1808: one of
    // two threads ran two chunks)
    const int64_t per = (m + 2 * num_threads() - 1) / (2 * num_threads());
    const int64_t chunk = std::min<int64_t>(4096, std::max<int64_t>(256, (per + 63) / 64 * 64));
    parallel_chunks((m + chunk - 1) / chunk, [&](int64_t c) {
      const int64_t i0 = c * chunk, i1 = std::min(m, i0 + chunk), len = i1 - i0;
      // the proposals' logs, element i of the round's sub-stream, a run of the vectorised Marsaglia-Tsang
      // loop (gamma_run: samplers::gamma_draw up to rounding; scalar draws were 2/3 of a measure-valued
      // Gamma estimate). The log decides: exact where the draw itself underflows (log x ~ -1/a at shapes
      // a << 1, where the clamped draw put every proposal on the wrong side for p-)
      // the round's arrays as local restrict pointers: through the lambda's captures every store (out, ok)
      // could alias them, and the loops reloaded each vector's data pointer per element
      const int64_t* __restrict cl = col.data();
      double* __restrict sh = shapes.data();
      double* __restrict cc = cs.data();
      double* __restrict lg = logs.data();
      double* __restrict w = ws.data();
      for (int64_t i = i0; i < i1; ++i) {
        sh[i] = alpha[cl[i]];
        cc[i] = ctab[cl[i]];
      }
      gamma_run(sh + i0, false, len, seed, sub, static_cast<uint64_t>(i0), true, lg + i0, cc + i0);
      // element i of random.uniform(m) on stream sa (fill_uniform's values, its vector Philox)
      uniform_piece<double>(us.data() + i0, static_cast<uint64_t>(i0), static_cast<uint64_t>(i1), 0,
                            static_cast<uint64_t>(m), seed, sa);
      // target / envelope = e eps st exp(-eps st), st = sign t (y <= e^{eps y} / (e eps)); both
      // exponentials over the chunk in vector passes (the exponent of the test is >= -700 wherever it can
      // accept: e y e^{-y} < 2^-53 <= u beyond y ~ 43; x's own exponential by libm outside [-700, 80])
      for (int64_t i = i0; i < i1; ++i) w[i] = -sign * eps[cl[i]] * (lg[i] - psi[cl[i]]);
      simd::map_array<false>(w + i0, w + i0, len);
      simd::map_array<false>(lg + i0, xs.data() + i0, len);
      // No branch on the test (accepted at random, 45-70%: mispredicted often): every proposal stores its
      // element, a rejected one the value it had. Where st <= 0 the NumPy form's ratio is 0 and this
      // product is <= 0 or -inf (never NaN: st = 0 gives exp(0)): u > 0 rejects both, as it rejects 0.
      const int64_t* __restrict pd = pending.data();
      const double* __restrict u = us.data();
      const double* __restrict ex = xs.data();
      unsigned char* __restrict okp = ok.data();
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t j = cl[i];
        const double lx = lg[i], t = lx - psi[j];
        // in the operation order of the NumPy form
        const double acc = kE * eps[j] * sign * t * w[i];
        const bool a = u[i] < acc;
        const double v = std::max(lx >= -700.0 && lx <= 80.0 ? ex[i] : std::exp(lx), tiny);
        out[pd[i]] = a ? v : out[pd[i]];
        okp[i] = a;
      }
    });
    int64_t keep = 0;
    for (int64_t i = 0; i < m; ++i) {  // branch-free compaction, as above
      pending[keep] = pending[i];
      col[keep] = col[i];
      keep += 1 - ok[i];
    }
    pending.resize(static_cast<size_t>(keep));
    col.resize(static_cast<size_t>(keep));
  }
  if (!pending.empty())
    throw std::runtime_error("rejection sampling of the Gamma shape's weak derivative did not finish");
}

void normal_scores(const double* x, const double* loc, const double* scale, int64_t n, int64_t p, double* out) {
  const int64_t rows = std::max<int64_t>(1, kEstSampleChunk * kEstColBlock / std::max<int64_t>(1, p));
  parallel_chunks((n + rows - 1) / rows, [&](int64_t c) {
    const int64_t i0 = c * rows, i1 = std::min(n, i0 + rows);
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t j = 0; j < p; ++j) {
        const int64_t e = i * p + j;
        const double z = (x[e] - loc[j]) / scale[j];
        out[e] = z / scale[j];
        out[n * p + e] = (z * z - 1.0) / scale[j];
      }
  });
}

// ---------------------------------------------------------------- measure-valued points
// One pass writing the D copies of each row (replacing NumPy's repeat, fancy-index scatter
// and dtype cast, three passes over the m D^2 points); parallel over whole rows of x.
// The copies are the whole cost (a measure-valued estimate at D = 100 writes 80 KB per sample
// and part into L2, then f reads them): on the core's baseline x86-64 they were 16-byte stores,
// so the loop is compiled per vector path (same values on every path: copies and roundings).
namespace {
template <typename T>
__attribute__((always_inline)) inline void points_rows(const double* x, const double* values, int64_t i0,
                                                       int64_t i1, int64_t parts, int64_t d, T* out) {
  for (int64_t i = i0; i < i1; ++i) {
    const double* xi = x + i * d;
    for (int64_t j = 0; j < parts; ++j) {
      const double* vi = values + (i * parts + j) * d;
      T* block = out + (i * parts + j) * d * d;
      for (int64_t r = 0; r < d; ++r) {
        T* row = block + r * d;
        for (int64_t k = 0; k < d; ++k) row[k] = static_cast<T>(xi[k]);
        row[r] = static_cast<T>(vi[r]);
      }
    }
  }
}
template <typename T>
void points_scalar(const double* x, const double* v, int64_t i0, int64_t i1, int64_t j, int64_t d, T* out) {
  points_rows<T>(x, v, i0, i1, j, d, out);
}
#if BG_HAVE_X86
template <typename T>
BG_AVX512 void points_avx512(const double* x, const double* v, int64_t i0, int64_t i1, int64_t j, int64_t d,
                             T* out) {
  points_rows<T>(x, v, i0, i1, j, d, out);
}
template <typename T>
BG_AVX2 void points_avx2(const double* x, const double* v, int64_t i0, int64_t i1, int64_t j, int64_t d,
                             T* out) {
  points_rows<T>(x, v, i0, i1, j, d, out);
}
#endif
}  // namespace

template <typename T>
void coordinate_points(const double* x, const double* values, int64_t m, int64_t parts, int64_t d, T* out) {
  if (m <= 0 || parts <= 0 || d <= 0) return;
  auto rows = points_scalar<T>;
#if BG_HAVE_X86
  if (simd::use_avx512()) rows = points_avx512<T>;
  else if (simd::use_avx2()) rows = points_avx2<T>;
#endif
  const int64_t per = std::max<int64_t>(1, (int64_t{1} << 15) / (parts * d * d));  // rows of x per task
  parallel_chunks((m + per - 1) / per,
                  [&](int64_t c) { rows(x, values, c * per, std::min(m, (c + 1) * per), parts, d, out); });
}

template void coordinate_points<float>(const double*, const double*, int64_t, int64_t, int64_t, float*);
template void coordinate_points<double>(const double*, const double*, int64_t, int64_t, int64_t, double*);

}  // namespace bayesgrad
