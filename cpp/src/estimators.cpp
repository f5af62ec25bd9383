#include "bayesgrad/estimators.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "bayesgrad/parallel.hpp"

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
  const double inv_nm1 = loo ? 1.0 / static_cast<double>(n - 1) : 0.0;
  std::vector<double> resid(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const double fi = static_cast<double>(f[i]);
    double b = 0.0;
    if (loo)
      b = (total - fi) * inv_nm1;
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

}  // namespace bayesgrad
