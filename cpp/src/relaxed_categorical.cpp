// The Concrete (RelaxedCategorical) log density and its gradients in temperature and logits
// (distributions.hpp), per row of K classes. (The RELAX estimator's Categorical kernels are relax_categorical.cpp.)
//
// Why a kernel: the NumPy form (ln x, y = logits - t ln x, the rows' maxima, exp(y - max), the rows' sums, their
// log, a second row sum, each a pass with a temporary of x's size) took 19 ns a value at 10^7 values, 1.7x the
// plain NumPy formula (bench/densities.py; 4.1 ns now, most of it the vector log and exp and reading x). Per
// chunk of whole rows (about 4096 values, in L1/L2): ln x one vector pass, y = logits - t ln x one loop over
// runs of (coordinate, class) values, the rows' maxima four rows at a time (independent chains) and their
// sums of ln x and of exp(y - max) by the metrics' vector row sums (metrics_blocks.hpp), exp(y - max) one vector
// pass, and ln S one vector pass over the chunk's rows. With
// S = sum_k exp(y_k - m), m = max_k y_k:
//   log p = c - (t + 1) sum_k ln x_k - K (m + ln S),  c = lgamma(K) + (K - 1) ln t + sum_k logits_k (the caller's).
// The vector exp gives 0 below -700, where the term's share of S (>= 1, the maximum's term) is below one ulp:
// the same S. The gradients from the same pass, with s = exp(y - m) / S: d/dt = (K - 1) / t - sum_k ln x_k +
// K sum_k s_k ln x_k, d/d logits = 1 - K s (NaN where the density vanishes). The rows that take the scalar rules
// instead (libm, the same formulas; -inf if a value is not positive and finite, NaN included): a value outside
// the vector log's range (0, subnormal, negative, inf), and every row of a coordinate whose y may not be finite
// (a logit not finite, or t so large that t ln x could overflow). The twin is _numpy/_densities.py's
// relaxed_categorical_log_prob.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "bayesgrad/distributions.hpp"
#include "bayesgrad/simd_map.hpp"
#include "bayesgrad/simd_math.hpp"
#include "batch_runs.hpp"
#include "metrics_blocks.hpp"

namespace bayesgrad {

namespace {

constexpr int64_t kChunkValues = 4096;  // values per parallel chunk, in whole rows (fixed: values do not
                                        // depend on the thread count)

// Whether a value takes the vector log: positive, normal and finite.
inline bool common(double x) {
  return x >= std::numeric_limits<double>::min() && x <= std::numeric_limits<double>::max();
}

// The chunk's element loops per vector path (the file's baseline build ran them two doubles at a time, the
// range test as branches): x into lx with the values outside the vector log's range replaced by 1 (returns
// whether there was one), y = logits - t ln x over runs of consecutive (coordinate, class) values, and y minus
// its row's maximum.
#define BG_RC_ISA(ATTR, NAME)                                                                                    \
  template <typename T>                                                                                          \
  ATTR bool rc_in_##NAME(const T* __restrict x, int64_t m, double* __restrict lx) {                              \
    bool odd = false;                                                                                            \
    for (int64_t i = 0; i < m; ++i) {                                                                            \
      const double v = x[i];                                                                                     \
      const bool ok = (v >= std::numeric_limits<double>::min()) & (v <= std::numeric_limits<double>::max());     \
      lx[i] = ok ? v : 1.0;                                                                                      \
      odd |= !ok;                                                                                                \
    }                                                                                                            \
    return odd;                                                                                                  \
  }                                                                                                              \
  ATTR void rc_y_##NAME(const double* lgd, const double* tk, const double* lx, double* e, int64_t lo, int64_t hi, \
                        int64_t bk) {                                                                            \
    by_runs(lo, hi, bk, [&](int64_t o, int64_t jj, int64_t run) {                                                \
      const double *__restrict l = lgd + jj, *__restrict t = tk + jj, *__restrict z = lx + o;                    \
      double* __restrict y = e + o;                                                                              \
      for (int64_t i = 0; i < run; ++i) y[i] = l[i] - t[i] * z[i];                                               \
    });                                                                                                          \
  }                                                                                                              \
  ATTR void rc_shift_##NAME(double* __restrict e, const double* __restrict mx, int64_t nr, int64_t k) {          \
    for (int64_t q = 0; q < nr; ++q) {                                                                           \
      const double top = mx[q];                                                                                  \
      double* __restrict y = e + q * k;                                                                          \
      for (int64_t a = 0; a < k; ++a) y[a] -= top;                                                               \
    }                                                                                                            \
  }
#if BG_HAVE_X86
BG_RC_ISA(BG_AVX512, avx512)
BG_RC_ISA(BG_AVX2, avx2)
#endif
BG_RC_ISA(, base)
#undef BG_RC_ISA

// One row by the scalar rules (libm; the vector path's formula and order): log p, and with gt non-null the
// gradients into *gt (temperature) and gl[0..k) (logits); NaN gradients where the density vanishes.
template <typename T>
double rc_row(const T* x, const T* lg, int64_t k, double t, double c, T* gt, T* gl) {
  for (int64_t a = 0; a < k; ++a) {
    const double v = x[a];
    if (!(v > 0.0 && v <= std::numeric_limits<double>::max())) {
      if (gt) {
        *gt = std::numeric_limits<T>::quiet_NaN();
        std::fill(gl, gl + k, std::numeric_limits<T>::quiet_NaN());
      }
      return -std::numeric_limits<double>::infinity();
    }
  }
  double top = -std::numeric_limits<double>::infinity(), slx = 0.0;
  for (int64_t a = 0; a < k; ++a) {
    const double l = std::log(static_cast<double>(x[a])), y = static_cast<double>(lg[a]) - t * l;
    top = y > top ? y : top;
    slx += l;
  }
  double s = 0.0, sel = 0.0;
  for (int64_t a = 0; a < k; ++a) {
    const double l = std::log(static_cast<double>(x[a])), ea = std::exp((static_cast<double>(lg[a]) - t * l) - top);
    s += ea;
    sel += ea * l;
  }
  const double kd = static_cast<double>(k);
  if (gt) {
    *gt = static_cast<T>((kd - 1.0) / t - slx + kd * (sel / s));
    for (int64_t a = 0; a < k; ++a) {
      const double ea = std::exp((static_cast<double>(lg[a]) - t * std::log(static_cast<double>(x[a]))) - top);
      gl[a] = static_cast<T>(1.0 - kd * (ea / s));
    }
  }
  return c - (t + 1.0) * slx - kd * (top + std::log(s));
}

// The rows' maxima, four rows at a time: a row's running maximum is a chain of dependent steps (its own
// order, as a row-by-row loop); four independent chains fill the pipeline.
inline void row_max(const double* y, int64_t nr, int64_t k, double* mx) {
  int64_t q = 0;
  for (; q + 4 <= nr; q += 4) {
    double m[4];
    for (int r = 0; r < 4; ++r) m[r] = y[(q + r) * k];
    for (int64_t a = 1; a < k; ++a)
      for (int r = 0; r < 4; ++r) {
        const double v = y[(q + r) * k + a];
        m[r] = v > m[r] ? v : m[r];
      }
    for (int r = 0; r < 4; ++r) mx[q + r] = m[r];
  }
  for (; q < nr; ++q) {
    double m = y[q * k];
    for (int64_t a = 1; a < k; ++a) m = y[q * k + a] > m ? y[q * k + a] : m;
    mx[q] = m;
  }
}

}  // namespace

template <typename T>
void relaxed_categorical_log_prob(const T* x, int64_t rows, int64_t k, const T* temperature, const T* logits,
                                  const double* c, int64_t batch, T* logp, T* d_t, T* d_logits) {
  if (rows <= 0) return;
  const bool grads = d_t != nullptr;
  // per (coordinate, class): the logit and the coordinate's temperature as doubles, so that y = logits - t ln x
  // is one loop over runs of consecutive values (by_runs over the B K values of a draw); per coordinate whether
  // its rows may take the vector path (finite logits, and t |ln x| finite for every x in the vector log's range:
  // |ln x| <= 745)
  const int64_t bk = batch * k;
  std::vector<double> lgd(static_cast<size_t>(bk)), tk(static_cast<size_t>(bk));
  std::vector<char> plain(static_cast<size_t>(batch));
  for (int64_t j = 0; j < batch; ++j) {
    const double t = temperature[j];
    bool fin = t * 745.0 <= std::numeric_limits<double>::max();
    for (int64_t a = 0; a < k; ++a) {
      lgd[j * k + a] = static_cast<double>(logits[j * k + a]);
      tk[j * k + a] = t;
      fin = fin && std::isfinite(lgd[j * k + a]);
    }
    plain[j] = fin;
  }
  auto in = rc_in_base<T>;
  auto y_runs = rc_y_base;
  auto shift = rc_shift_base;
#if BG_HAVE_X86
  if (simd::use_avx512()) {
    in = rc_in_avx512<T>;
    y_runs = rc_y_avx512;
    shift = rc_shift_avx512;
  } else if (simd::use_avx2()) {
    in = rc_in_avx2<T>;
    y_runs = rc_y_avx2;
    shift = rc_shift_avx2;
  }
#endif
  const double kd = static_cast<double>(k);
  const int64_t per = std::max<int64_t>(1, kChunkValues / k);
  chunked(rows, per, [&](int64_t r0, int64_t r1) {
    const int64_t nr = r1 - r0, m = nr * k;
    // lx: ln x; e: y - max, then its exp; per row its maximum, the sum of ln x, S and ln S
    double *lx = scratch(0, m), *e = scratch(1, m), *row = scratch(2, 4 * nr);
    double *mx = row, *slx = row + nr, *sum = row + 2 * nr, *ls = row + 3 * nr;
    const T* xs = x + r0 * k;
    const bool odd = in(xs, m, lx);  // (a value replaced by 1 is in a row redone below)
    simd::map_array<true>(lx, lx, m);
    y_runs(lgd.data(), tk.data(), lx, e, r0 * k, r1 * k, bk);
    row_max(e, nr, k, mx);
    metrics_blocks::row_sums(lx, nr, k, slx);  // (the metrics' vector row sums)
    shift(e, mx, nr, k);  // (a row redone below: any values)
    simd::map_array<false>(e, e, m);
    metrics_blocks::row_sums(e, nr, k, sum);
    std::copy(sum, sum + nr, ls);
    simd::map_array<true>(ls, ls, nr);  // S >= 1 (the maximum's term): normal
    for (int64_t q = 0, j = r0 % batch; q < nr; ++q, j = j + 1 == batch ? 0 : j + 1) {
      const double t = temperature[j];
      logp[r0 + q] = static_cast<T>(c[j] - (t + 1.0) * slx[q] - kd * (mx[q] + ls[q]));
    }
    if (grads)  // with s = e / S: d/dt = (K - 1) / t - sum ln x + K sum s ln x, d/d logits = 1 - K s
      for (int64_t q = 0, j = r0 % batch; q < nr; ++q, j = j + 1 == batch ? 0 : j + 1) {
        const double inv = 1.0 / sum[q];
        const double *eq = e + q * k, *lq = lx + q * k;
        T* gl = d_logits + (r0 + q) * k;
        double sel = 0.0;
        for (int64_t a = 0; a < k; ++a) {
          sel += eq[a] * lq[a];
          gl[a] = static_cast<T>(1.0 - kd * (eq[a] * inv));
        }
        d_t[r0 + q] = static_cast<T>((kd - 1.0) / static_cast<double>(temperature[j]) - slx[q] + kd * (sel * inv));
      }
    // the rows by the scalar rules: a value outside the vector log's range, or a coordinate whose y may not be
    // finite
    for (int64_t q = 0, j = r0 % batch; q < nr; ++q, j = j + 1 == batch ? 0 : j + 1) {
      bool redo = !plain[j];
      for (int64_t a = 0; odd && !redo && a < k; ++a) redo = !common(static_cast<double>(xs[q * k + a]));
      if (redo)
        logp[r0 + q] = static_cast<T>(rc_row(xs + q * k, logits + j * k, k, static_cast<double>(temperature[j]), c[j],
                                             grads ? d_t + r0 + q : nullptr,
                                             grads ? d_logits + (r0 + q) * k : nullptr));
    }
  });
}

template void relaxed_categorical_log_prob<float>(const float*, int64_t, int64_t, const float*, const float*,
                                                  const double*, int64_t, float*, float*, float*);
template void relaxed_categorical_log_prob<double>(const double*, int64_t, int64_t, const double*, const double*,
                                                   const double*, int64_t, double*, double*, double*);

}  // namespace bayesgrad
