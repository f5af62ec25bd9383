// Student t log density and its parameter gradients (distributions.hpp): one pass over x with the
// per-coordinate constants (the special functions of df) computed by the caller.
//
// Why a kernel: the NumPy forms that keep d/d df accurate (log1p(w) - w by its series where it
// cancels, w^2 / (1 + w), the forms for huge z) cost about ten passes over x's size, 0.8x the plain
// NumPy formula at 10^7 values (bench/densities.py). Here a chunk of 4096 elements stays in L1/L2: a
// plain pass forms 1 + w, one vector pass its log, and a second plain pass everything else, both
// vectorised per run of consecutive parameters (1 / df and 1 / scale once per coordinate: divisions per
// element were a third of the time); the rare elements outside the common case (x infinite, |z| beyond
// 1e150, z^2 / df overflowing at a tiny df) are redone by the scalar rules. The twin is
// _numpy/_densities.py's.
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
constexpr double kHugeZ = 1e150;  // from here z^2 is near overflow: the scalar forms (the twin's bound)

// log1p(w) - w for 0 <= w < 1e-2 by its series (where the difference cancels): the twin's polynomial.
inline double log1p_minus_series(double s) {
  const double tail = 1.0 / 7 + s * (-1.0 / 8 + s * (1.0 / 9 - s / 10));
  return s * s * (-1.0 / 2 + s * (1.0 / 3 + s * (-1.0 / 4 + s * (1.0 / 5 + s * (-1.0 / 6 + s * tail)))));
}

struct TArgs {
  const double *c, *psi, *inv_df, *inv_scale;  // (1 / df and 1 / scale: products, not divisions, per element)
};

// Whether an element takes the common case: |z| <= kHugeZ and 1 + w finite (a tiny df overflows w), so
// that 1 + w lies in the vector log's range.
inline bool common(double z, double inv_df) { return std::fabs(z) <= kHugeZ && 1.0 + z * z * inv_df < HUGE_VAL; }

// The common case over a run of consecutive parameters (x finite, |z| <= kHugeZ), compiled per vector path:
// lu = ln(1 + w) from the chunk's vector log, corrected to log1p(w) by ((1 + w) - 1 - w) / (1 + w).
template <typename T, bool kGrads>
__attribute__((always_inline)) inline void t_run(const T* __restrict x, const double* __restrict lu,
                                                 const T* __restrict df_, const T* __restrict loc_,
                                                 const double* __restrict idf, const double* __restrict isc,
                                                 const double* __restrict c, const double* __restrict psi,
                                                 int64_t run, T* __restrict lp, T* __restrict g_df,
                                                 T* __restrict g_loc, T* __restrict g_scale) {
  for (int64_t k = 0; k < run; ++k) {
    const double df = df_[k];
    const double z = (static_cast<double>(x[k]) - static_cast<double>(loc_[k])) * isc[k];
    const double zz = z * z, w = zz * idf[k], u = 1.0 + w;
    const double L = lu[k] - ((u - 1.0) - w) / u;  // log1p(w)
    lp[k] = static_cast<T>(c[k] - 0.5 * (df + 1.0) * L);
    if (kGrads) {
      const double iden = 1.0 / (df + zz), r = zz * iden;
      // -log1p(w) + (df + 1) r / df = T + r / df with T = r - log1p(w), below w = 1 formed as
      // -(log1p(w) - w) - w^2 / (1 + w) (each small term whole: they cancel to O(1 / df^2))
      const double lm = w < 1e-2 ? log1p_minus_series(w) : L - w;
      const double t = w < 1.0 ? -lm - w * w / u : r - L;
      g_df[k] = static_cast<T>(0.5 * (t + r * idf[k] + psi[k]));
      g_loc[k] = static_cast<T>((df + 1.0) * (z * iden) * isc[k]);
      g_scale[k] = static_cast<T>(((df + 1.0) * r - 1.0) * isc[k]);
    }
  }
}

#define BG_T_ISA(ATTR, NAME)                                                                                    \
  template <typename T, bool kGrads>                                                                            \
  ATTR void t_rows_##NAME(const T* x, const double* lu, const T* df, const T* loc, const T* scale, TArgs a,      \
                          int64_t lo, int64_t hi, int64_t batch, T* lp, T* gd, T* gl, T* gs) {                  \
    by_runs(lo, hi, batch, [&](int64_t o, int64_t j, int64_t run) {                                             \
      const int64_t i = lo + o;                                                                                 \
      t_run<T, kGrads>(x + i, lu + o, df + j, loc + j, a.inv_df + j, a.inv_scale + j, a.c + j, a.psi + j, run,  \
                       lp + i,                                                                                  \
                       kGrads ? gd + i : nullptr, kGrads ? gl + i : nullptr, kGrads ? gs + i : nullptr);        \
    });                                                                                                         \
  }
#if BG_HAVE_X86
BG_T_ISA(BG_AVX512, avx512)
BG_T_ISA(BG_AVX2, avx2)
#endif
BG_T_ISA(, base)
#undef BG_T_ISA

// One element by the full rules: x infinite (the density vanishes: log p = -inf, gradients 0, as the
// loc-scale families give), or |z| > kHugeZ or w = z^2 / df overflowing (log1p(w) as
// 2 ln|z| - ln df + log1p(df / z^2), and r, z / (df + z^2) in forms without z^2; w >= 1 there).
template <typename T>
void t_element(double xi, double df, double loc, double scale, double c, double psi, T* lp, T* gd, T* gl, T* gs) {
  double l, d_df = 0.0, d_loc = 0.0, d_scale = 0.0;
  if (std::isinf(xi)) {
    l = -std::numeric_limits<double>::infinity();
  } else {
    const double z = (xi - loc) / scale, q = std::sqrt(df) / z, q2 = q * q;
    const double L = 2.0 * std::log(std::fabs(z)) - std::log(df) + std::log1p(q2);
    l = c - 0.5 * (df + 1.0) * L;
    const double r = 1.0 / (1.0 + q2);
    d_df = 0.5 * ((r - L) + r / df + psi);
    d_loc = (df + 1.0) * (1.0 / (df / z + z)) / scale;
    d_scale = ((df + 1.0) * r - 1.0) / scale;
  }
  *lp = static_cast<T>(l);
  if (gd) {
    *gd = static_cast<T>(d_df);
    *gl = static_cast<T>(d_loc);
    *gs = static_cast<T>(d_scale);
  }
}

}  // namespace

template <typename T>
void studentt_log_prob(const T* x, int64_t n_total, const T* df, const T* loc, const T* scale, const double* c,
                       const double* psi, int64_t batch, T* logp, T* grads_out) {
  const bool grads = grads_out != nullptr;
  std::vector<double> inv(2 * static_cast<size_t>(batch));
  for (int64_t j = 0; j < batch; ++j) {
    inv[j] = 1.0 / static_cast<double>(df[j]);
    inv[batch + j] = 1.0 / static_cast<double>(scale[j]);
  }
  T* d_df = grads_out;
  T* d_loc = grads ? grads_out + n_total : nullptr;
  T* d_scale = grads ? grads_out + 2 * n_total : nullptr;
  const TArgs a{c, psi, inv.data(), inv.data() + batch};
  auto rows = grads ? t_rows_base<T, true> : t_rows_base<T, false>;
#if BG_HAVE_X86
  if (simd::use_avx512()) rows = grads ? t_rows_avx512<T, true> : t_rows_avx512<T, false>;
  else if (simd::use_avx2()) rows = grads ? t_rows_avx2<T, true> : t_rows_avx2<T, false>;
#endif
  chunked(n_total, kChunk, [&](int64_t lo, int64_t hi) {
    const int64_t len = hi - lo;
    double* u = scratch(0, len);
    // 1 + w of the chunk (1 where an element takes the scalar rules, inside the vector log's range), then
    // its log in one vector pass (in place)
    bool odd = false;
    by_runs(lo, hi, batch, [&](int64_t o, int64_t j, int64_t run) {
      for (int64_t k = 0; k < run; ++k) {
        const double z = (static_cast<double>(x[lo + o + k]) - static_cast<double>(loc[j + k])) * a.inv_scale[j + k];
        const bool ok = common(z, a.inv_df[j + k]);
        u[o + k] = ok ? 1.0 + z * z * a.inv_df[j + k] : 1.0;
        odd = odd || !ok;
      }
    });
    simd::map_array<true>(u, u, len);
    rows(x, u, df, loc, scale, a, lo, hi, batch, logp, d_df, d_loc, d_scale);
    if (!odd) return;
    for (int64_t i = lo, j = lo % batch; i < hi; ++i) {
      const double z = (static_cast<double>(x[i]) - static_cast<double>(loc[j])) * a.inv_scale[j];
      if (!common(z, a.inv_df[j]))
        t_element<T>(x[i], df[j], loc[j], scale[j], c[j], grads ? psi[j] : 0.0, logp + i,
                     grads ? d_df + i : nullptr, grads ? d_loc + i : nullptr, grads ? d_scale + i : nullptr);
      if (++j == batch) j = 0;
    }
  });
}

template void studentt_log_prob<float>(const float*, int64_t, const float*, const float*, const float*,
                                       const double*, const double*, int64_t, float*, float*);
template void studentt_log_prob<double>(const double*, int64_t, const double*, const double*, const double*,
                                        const double*, const double*, int64_t, double*, double*);

}  // namespace bayesgrad
