// Accumulation kernels of the Monte Carlo gradient estimators: column means and
// unbiased (ddof = 1) variances over the sample axis of per-sample terms, where
// the terms are formed on the fly (score x (f - baseline), the pathwise chain
// rule g x dx/dtheta). Accumulation is in double for both float types.
//
// Work is split into fixed blocks of kSampleChunk rows x kColBlock columns; each
// block runs Welford's recurrence, and the blocks of a column are merged in
// sample order with Chan's pairwise formula, so results are bit-identical for
// any thread count.
#pragma once
#include <cstdint>

#include "bayesgrad/hd.hpp"

namespace bayesgrad {

constexpr int64_t kEstSampleChunk = 1024;
constexpr int64_t kEstColBlock = 256;

// The accumulation updates, shared with the CUDA kernels (cuda/src/estimators.cu).
// Welford: term t is the k-th of its chunk (inv_k = 1 / k); m is the running
// mean, m2 the running sum of squared deviations.
BG_HD void welford_update(double t, double inv_k, double& m, double& m2) {
  const double d = t - m;
  m += d * inv_k;
  m2 += d * (t - m);
}

// Chan et al.'s pairwise merge of a chunk (nb terms, mean mb, M2 s2b) into the
// running (cnt, mu, s2); chunks are merged in sample order.
BG_HD void chan_merge(double nb, double mb, double s2b, double& cnt, double& mu, double& s2) {
  const double tot = cnt + nb, d = mb - mu;
  mu += d * (nb / tot);
  s2 += s2b + d * d * (cnt * nb / tot);
  cnt = tot;
}

// x (n, p) row-major -> mean (p,), var (p,) (ddof = 1; NaN when n < 2).
template <typename T>
void column_mean_var(const T* x, int64_t n, int64_t p, T* mean, T* var);

// Terms t_ij = score_ij * (f_i - b_i), with b_i = baseline[i] (baseline may be
// null: b = 0) or, when loo, the leave-one-out mean (sum_k f_k - f_i) / (n - 1)
// (n >= 2). Writes mean/var of the columns and, when terms_out is not null,
// the terms themselves (n, p).
template <typename T>
void score_accumulate(const T* score, const T* f, const T* baseline, bool loo, int64_t n, int64_t p,
                      T* mean, T* var, T* terms_out);

// Terms t_ij = g_ij * jac_ij (jac null: ones), the per-sample chain rule of
// an elementwise reparameterisation x = x(theta, eps); same outputs.
template <typename T>
void pathwise_accumulate(const T* g, const T* jac, int64_t n, int64_t p, T* mean, T* var, T* terms_out);

}  // namespace bayesgrad
