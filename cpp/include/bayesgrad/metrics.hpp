// Uncertainty metrics and acquisition kernels on sampled class predictions.
// Layout (docs/design.md): log_probs (S, N, C) row-major, sample axis first, nats.
#pragma once
#include <cmath>
#include <cstdint>

#include "bayesgrad/codes.hpp"
#include "bayesgrad/hd.hpp"

namespace bayesgrad {

// Per-element work of decompose, shared with the CUDA kernel (cuda/src/metrics.cu).
// exp of a log-probability: NaN stays NaN, below the floor (including -inf)
// is 0 (float32: exp(-86), float64: exp(-700); p log p is then < 1e-35, 1e-300).
template <typename T>
BG_HD T exp_floored(T x) {
  if (x != x) return x;
  if (x < (sizeof(T) == 4 ? T(-86) : T(-700))) return T(0);
  return std::exp(T(80) < x ? T(80) : x);  // std::min's rule
}

// One sample's contribution to a (point, class) entry: the probability sum ps
// and the sum en of p log p, with 0 log 0 = 0 (also at x = -inf).
template <typename T>
BG_HD void entropy_accumulate(T x, T e, T& ps, T& en) {
  ps += e;
  en += e > T(0) ? e * x : T(0);
}

// A point's decomposition from its C sums: total = H[mean p], aleatoric =
// mean H[p] (both clamped at 0), epistemic = their difference clamped at 0. The C terms are summed
// in double whatever T: a float sum over C = 10^4 classes drifted by 1e-4
// relative, and the double adds cost nothing beside the C logs.
template <typename T>
BG_HD void decompose_point(const T* ps, const T* en, int64_t C, T invS, T& total, T& aleatoric, T& epistemic) {
  double h = 0, a = 0;
  for (int64_t c = 0; c < C; ++c) {
    const T pm = ps[c] * invS;
    if (pm > T(0)) h -= static_cast<double>(pm * std::log(pm));
    a -= static_cast<double>(en[c]);
  }
  a *= static_cast<double>(invS);
  // Entropies are >= 0; inputs are accepted with rows summing to 1 within a
  // tolerance, and p slightly above 1 gives p log p > 0 (-3e-4 for a float32
  // single class at log p = 3e-4): clamp, as the docstring promises.
  h = h < 0.0 ? 0.0 : h;
  a = a < 0.0 ? 0.0 : a;
  total = static_cast<T>(h);
  aleatoric = static_cast<T>(a);
  epistemic = static_cast<T>(h - a < 0.0 ? 0.0 : h - a);  // std::max's rule
}

// Per-element work of point_scores, shared with the CUDA kernel.
// The first index of the largest of x[0 .. C) (a sample's predicted class).
template <typename T>
BG_HD int64_t row_argmax(const T* x, int64_t C) {
  int64_t best = 0;
  for (int64_t c = 1; c < C; ++c)
    if (x[c] > x[best]) best = c;
  return best;
}

// A point's score from its C per-class sums over the S samples: a holds the
// argmax counts (variation ratios) or the sums of p (margin); mean std has its
// own accumulation (mean_std_accumulate) and finish (mean_std_finish).
template <typename T>
BG_HD T point_score_finish(codes::PointScore kind, const T* a, int64_t C, T invS) {
  if (kind == codes::PointScore::kVariationRatios) {
    T mx = a[0];
    for (int64_t c = 1; c < C; ++c)
      if (mx < a[c]) mx = a[c];  // std::max_element's rule
    return T(1) - mx * invS;
  }
  T p1 = -1, p2 = -1;
  for (int64_t c = 0; c < C; ++c) {
    const T m = a[c] * invS;
    if (m > p1) { p2 = p1; p1 = m; } else if (m > p2) { p2 = m; }
  }
  return C == 1 ? T(0) : T(1) - (p1 - p2);
}

// mean std's per-(point, class) sums in one pass over the samples: d = p - p0,
// p0 the first sample's probability, a += d and b += d^2 in double. E[p^2] -
// E[p]^2 of the raw p cancelled every digit of a spread of 1e-4 in float32 and
// left a 1e-8 noise floor in float64; shifted by a sample, the cancellation is
// only of the spread's own size (p0 lies within sqrt(S) std of the mean).
BG_HD void mean_std_accumulate(double d, double& a, double& b) {
  a += d;
  b += d * d;
}
// The score from those sums: the mean over classes of the population std.
template <typename T>
BG_HD T mean_std_finish(const double* a, const double* b, int64_t C, double invS) {
  double acc = 0;
  for (int64_t c = 0; c < C; ++c) {
    const double m = a[c] * invS;
    const double v = b[c] * invS - m * m;
    acc += std::sqrt(v < 0.0 ? 0.0 : v);
  }
  return static_cast<T>(acc / static_cast<double>(C));
}

// One pass over log_probs (S, N, C): per point n
//   total[n]     = H[mean_s p_s]            (predictive entropy, clamped at 0)
//   aleatoric[n] = mean_s H[p_s]            (expected entropy, clamped at 0)
//   epistemic[n] = total - aleatoric        (mutual information, clamped at 0)
// with 0 log 0 = 0 (log_probs of -inf are exact zeros). Returns the largest
// |sum_c p - 1| over all (s, n) rows (NaN if any entry is NaN) so that the
// caller can reject inputs that are not normalised without a second pass.
template <typename T>
double decompose(const T* log_probs, int64_t S, int64_t N, int64_t C, T* total, T* aleatoric,
                 T* epistemic);

// Single-point acquisition scores (higher = more informative), out (N):
//   kind 0 variation ratios 1 - (mode count)/S (sample argmax, first index on ties)
//   kind 1 mean over classes of the population std over samples of p
//   kind 2 margin score 1 - (p1 - p2) of the mean prediction's two largest
// Returns the normalisation deviation as decompose does.
using codes::PointScore;
template <typename T>
double point_scores(const T* log_probs, int64_t S, int64_t N, int64_t C, PointScore kind, T* out);

// The mixture's probabilities out (N, C) = (1/S) sum_s exp(log_probs[s]),
// the p-bar of decompose (same exp and flush). Returns the normalisation
// deviation as decompose does.
template <typename T>
double mean_probs(const T* log_probs, int64_t S, int64_t N, int64_t C, T* out);

// Log-softmax in place over rows of C values: x (R, C) <- x - logsumexp(x).
template <typename T>
void log_softmax(T* x, int64_t R, int64_t C);

// BatchBALD's joint entropy of (y_batch, y_i) for every candidate i:
//   Q_i[m, c] = (1/S) sum_s P[s, m] probs[s, i, c]
//   out[i]    = -sum_m w[m] sum_c Q_i[m, c] log Q_i[m, c]
// probs (S, N, C) probabilities, P (S, M) the batch's configuration
// likelihoods per sample, w (M) weights (1 for exact enumeration, 1/(M p(m))
// for configurations drawn from the joint). Calls BLAS outside any parallel
// region; the reduction is parallel over fixed candidate chunks.
template <typename T>
void joint_entropy(const T* probs, int64_t S, int64_t N, int64_t C, const T* P, int64_t M, const T* w,
                   T* out);

// Sampled configurations of the batch's labels: probs (S, K, C) of the K batch
// points, u (M, K + 1) uniforms in (0, 1). Configuration m takes sample
// s_m = floor(u[m, 0] S), then y_j by inverse CDF of probs[s_m, j, :] with
// u[m, j + 1]. Writes P[s, m] = prod_j probs[s, j, y_j^m] (S, M).
template <typename T>
void batch_configs(const T* probs, int64_t S, int64_t K, int64_t C, const T* u, int64_t M, T* P);

}  // namespace bayesgrad
