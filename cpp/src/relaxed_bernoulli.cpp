// The binary Concrete (RelaxedBernoulli) log density and its gradients in temperature and logits
// (distributions.hpp), one pass over x.
//
// Why a kernel: the NumPy form (two logs, a logaddexp and their temporaries over x's size) took
// 37 ns a value at 10^7 values, about the plain NumPy formula (bench/densities.py). Per chunk of 4096
// elements (in L1/L2) the four transcendental functions of a value run as whole-chunk vector passes
// (ln x, ln(1 - x), exp(-|a|), ln(1 + e)) with plain loops between them, vectorised per run of
// consecutive parameters; values outside (0, 1) or subnormal take the scalar rules. With
// D = ln(1 - x) - ln x, a = logits + t D and w = sigmoid(a):
//   log p = ln t + logits - (t + 1)(ln x + ln(1 - x)) - 2 (-t ln(1 - x) + softplus(a)),
//   d/d logits = 1 - 2 w, d/dt = 1/t + D (1 - 2 w).
// The twin is _numpy/_densities.py's relaxed_bernoulli_log_prob.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "bayesgrad/distributions.hpp"
#include "bayesgrad/parallel.hpp"
#include "bayesgrad/simd_map.hpp"
#include "bayesgrad/simd_math.hpp"
#include "batch_runs.hpp"

namespace bayesgrad {

namespace {

constexpr int64_t kChunk = 4096;  // elements per parallel chunk (fixed: values do not depend on threads)

// Per-coordinate constants: ln t, 1 / t.
struct RbArgs {
  const double *log_t, *inv_t;
};

// Whether a value takes the vector passes: inside (0, 1) and normal (the vector log's range).
inline bool common(double x) { return x >= std::numeric_limits<double>::min() && x < 1.0; }

// a = logits + t (ln(1 - x) - ln x) of a run, with ln(1 - x) corrected to log1p(-x) (1 - x rounds by up
// to half an ulp of 1, which ln(1 - x) would turn into an error of x's order near 0); into l1 and nabs
// (-|a|, the exponential's argument).
template <typename T>
__attribute__((always_inline)) inline void rb_a_run(const T* __restrict x, const T* __restrict t_,
                                                    const T* __restrict lg_, const double* __restrict lx,
                                                    double* __restrict l1, double* __restrict nabs, int64_t run) {
  for (int64_t k = 0; k < run; ++k) {
    const double xi = x[k], u = 1.0 - xi;
    const double l1x = l1[k] - ((u - 1.0) + xi) / u;
    l1[k] = l1x;
    const double a = static_cast<double>(lg_[k]) + static_cast<double>(t_[k]) * (l1x - lx[k]);
    nabs[k] = -std::fabs(a);
  }
}

// The outputs of a run from ln x, log1p(-x), e = exp(-|a|) and lu = ln(1 + e) (corrected to log1p(e)).
template <typename T, bool kLp, bool kGrads>
__attribute__((always_inline)) inline void rb_out_run(const T* __restrict t_, const T* __restrict lg_,
                                                      const double* __restrict log_t, const double* __restrict inv_t,
                                                      const double* __restrict lx, const double* __restrict l1,
                                                      const double* __restrict e, const double* __restrict lu,
                                                      int64_t run, T* __restrict lp, T* __restrict g_t,
                                                      T* __restrict g_l) {
  for (int64_t k = 0; k < run; ++k) {
    const double t = t_[k], lg = lg_[k], ek = e[k], u = 1.0 + ek;
    const double d = l1[k] - lx[k], a = lg + t * d;
    if (kLp) {
      const double sp = (a > 0.0 ? a : 0.0) + (lu[k] - ((u - 1.0) - ek) / u);  // softplus(a)
      lp[k] = static_cast<T>(log_t[k] + lg - (t + 1.0) * (lx[k] + l1[k]) - 2.0 * (sp - t * l1[k]));
    }
    if (kGrads) {
      const double w = (a >= 0.0 ? 1.0 : ek) / u, dl = 1.0 - 2.0 * w;  // w = sigmoid(a)
      g_l[k] = static_cast<T>(dl);
      g_t[k] = static_cast<T>(inv_t[k] + d * dl);
    }
  }
}

#define BG_RB_ISA(ATTR, NAME)                                                                                    \
  template <typename T>                                                                                          \
  ATTR void rb_a_rows_##NAME(const T* x, const T* t, const T* lg, const double* lx, double* l1, double* nabs,     \
                             int64_t lo, int64_t hi, int64_t batch) {                                            \
    by_runs(lo, hi, batch, [&](int64_t o, int64_t j, int64_t run) {                                              \
      rb_a_run<T>(x + lo + o, t + j, lg + j, lx + o, l1 + o, nabs + o, run);                                     \
    });                                                                                                          \
  }                                                                                                              \
  template <typename T, bool kLp, bool kGrads>                                                                   \
  ATTR void rb_out_rows_##NAME(const T* t, const T* lg, RbArgs a, const double* lx, const double* l1,            \
                               const double* e, const double* lu, int64_t lo, int64_t hi, int64_t batch, T* lp, \
                               T* gt, T* gl) {                                                                   \
    by_runs(lo, hi, batch, [&](int64_t o, int64_t j, int64_t run) {                                              \
      const int64_t i = lo + o;                                                                                  \
      rb_out_run<T, kLp, kGrads>(t + j, lg + j, a.log_t + j, a.inv_t + j, lx + o, l1 + o, e + o, lu + o, run,   \
                                 kLp ? lp + i : nullptr, kGrads ? gt + i : nullptr, kGrads ? gl + i : nullptr);  \
    });                                                                                                          \
  }
#if BG_HAVE_X86
BG_RB_ISA(BG_AVX512, avx512)
BG_RB_ISA(BG_AVX2, avx2)
#endif
BG_RB_ISA(, base)
#undef BG_RB_ISA

// One value by the scalar rules (libm; the same formulas): x subnormal, or outside (0, 1), where
// log p = -inf and the gradients are the limits the formulas give at x = 0 / 1 (d/dt -inf, d/d logits
// -1 / +1), and 0 beyond [0, 1], where the density vanishes (as Gamma's below 0).
template <typename T>
void rb_element(double x, double t, double lg, double log_t, double inv_t, T* lp, T* gt, T* gl) {
  const double lx = std::log(x), l1x = std::log1p(-x), d = l1x - lx, a = lg + t * d;
  const double e = std::exp(-std::fabs(a)), sp = (a > 0.0 ? a : 0.0) + std::log1p(e);
  if (lp)
    *lp = static_cast<T>(x > 0.0 && x < 1.0 ? log_t + lg - (t + 1.0) * (lx + l1x) - 2.0 * (sp - t * l1x)
                                            : -std::numeric_limits<double>::infinity());
  if (gt) {
    const bool beyond = x < 0.0 || x > 1.0;
    const double w = (a >= 0.0 ? 1.0 : e) / (1.0 + e), dl = 1.0 - 2.0 * w;
    *gl = static_cast<T>(beyond ? 0.0 : dl);
    *gt = static_cast<T>(beyond ? 0.0 : inv_t + d * dl);
  }
}

}  // namespace

template <typename T>
void relaxed_bernoulli_log_prob(const T* x, int64_t n_total, const T* temperature, const T* logits, int64_t batch,
                                T* logp, T* grads) {
  const bool with_grads = grads != nullptr;
  std::vector<double> consts(2 * static_cast<size_t>(batch));
  for (int64_t j = 0; j < batch; ++j) {
    consts[j] = std::log(static_cast<double>(temperature[j]));
    consts[batch + j] = 1.0 / static_cast<double>(temperature[j]);
  }
  const RbArgs a{consts.data(), consts.data() + batch};
  T *g_t = with_grads ? grads : nullptr, *g_l = with_grads ? grads + n_total : nullptr;
  const bool with_lp = logp != nullptr;
  // (log p, the gradients, or both)
  auto a_rows = rb_a_rows_base<T>;
  auto out_rows = !with_lp ? rb_out_rows_base<T, false, true>
                           : with_grads ? rb_out_rows_base<T, true, true> : rb_out_rows_base<T, true, false>;
#if BG_HAVE_X86
  if (simd::use_avx512()) {
    a_rows = rb_a_rows_avx512<T>;
    out_rows = !with_lp ? rb_out_rows_avx512<T, false, true>
                        : with_grads ? rb_out_rows_avx512<T, true, true> : rb_out_rows_avx512<T, true, false>;
  } else if (simd::use_avx2()) {
    a_rows = rb_a_rows_avx2<T>;
    out_rows = !with_lp ? rb_out_rows_avx2<T, false, true>
                        : with_grads ? rb_out_rows_avx2<T, true, true> : rb_out_rows_avx2<T, true, false>;
  }
#endif
  chunked(n_total, kChunk, [&](int64_t lo, int64_t hi) {
    const int64_t len = hi - lo;
    double *lx = scratch(0, 2 * len), *l1 = lx + len, *e = scratch(1, 2 * len), *lu = e + len;
    // ln x and ln(1 - x) (x = 1/2 where the value takes the scalar rules: inside the vector log's range)
    bool odd = false;
    for (int64_t i = 0; i < len; ++i) {
      const double xi = x[lo + i];
      const bool ok = common(xi);
      lx[i] = ok ? xi : 0.5;
      l1[i] = ok ? 1.0 - xi : 0.5;
      odd = odd || !ok;
    }
    simd::map_array<true>(lx, lx, len);
    simd::map_array<true>(l1, l1, len);
    // (the values that take the scalar rules get any number in the passes below, then their own)
    a_rows(x, temperature, logits, lx, l1, e, lo, hi, batch);
    simd::map_array<false>(e, e, len);  // exp(-|a|) in (0, 1] (0 below -700: softplus and w lose < 1e-300)
    if (with_lp) {  // ln(1 + e): softplus(a), for log p only
      for (int64_t i = 0; i < len; ++i) lu[i] = 1.0 + e[i];
      simd::map_array<true>(lu, lu, len);
    }
    out_rows(temperature, logits, a, lx, l1, e, lu, lo, hi, batch, logp, g_t, g_l);
    if (!odd) return;
    for (int64_t i = lo, j = lo % batch; i < hi; ++i) {
      if (!common(x[i]))
        rb_element<T>(x[i], temperature[j], logits[j], a.log_t[j], a.inv_t[j], with_lp ? logp + i : nullptr,
                      with_grads ? g_t + i : nullptr, with_grads ? g_l + i : nullptr);
      if (++j == batch) j = 0;
    }
  });
}

template void relaxed_bernoulli_log_prob<float>(const float*, int64_t, const float*, const float*, int64_t, float*,
                                                float*);
template void relaxed_bernoulli_log_prob<double>(const double*, int64_t, const double*, const double*, int64_t,
                                                 double*, double*);

}  // namespace bayesgrad
