// Native samplers and log-density kernels for bayesgrad.distributions.
//
// Layout: an output of n draws from a batch of B parameter sets is (n, B)
// row-major; parameters are given at batch size B (broadcast in Python).
//
// Gamma draws (Marsaglia & Tsang 2000; on AVX2 / AVX-512 CPUs gamma_run.cpp
// runs the same iterations on vectors of lanes, same words and tests) use the
// per-element sub-streams of docs/design.md: iteration k = 0, 1, ... of gamma
// element e reads block 2k of its sub-stream (stream | 2^63, block e * 2^16 + j):
//   block 2k   : u1 = u01_f64(w0, w1), u2 = (w2 + 1/2) 2^-32, ua = (w3 + 1/2) 2^-32,
//                z = sqrt(-2 ln u1) cos(2 pi u2)
//   block 2k+1 : ub = u01_f64(w0, w1) (boost), read only when iteration k
//                accepts and alpha < 1
// With a' = alpha (alpha >= 1) or alpha + 1 (alpha < 1), d = a' - 1/3,
// c = 1 / sqrt(9 d), t = 1 + c z: reject if t <= 0; else v = t^3 and accept if
// ua < 1 - 0.0331 z^4 (squeeze) or ln ua < z^2 / 2 + d (1 - v + ln v). The
// accepted draw is X = d v; for alpha < 1, ln X = ln(d v) + ln(ub) / alpha
// (the boost Gamma(a+1) U^(1/a), applied in log space). All arithmetic is in
// double; float32 outputs are rounded once at the end, and sample_gamma clamps
// its outputs to at least the smallest normal number of T. Iterations are
// capped at 2^15 (2^16 blocks), which an acceptance rate >= 0.95 never
// reaches; the cap returns d.
// Beta(a, b) element i draws ln Gamma(a) as gamma element 2i and ln Gamma(b)
// as element 2i+1, and returns x = 1 / (1 + exp(ln G_b - ln G_a)) (the
// complementary form when ln G_a < ln G_b), stable for tiny a, b.
// Dirichlet element (draw s, batch b, component j) is gamma element
// (s B + b) K + j, normalised in log space.
#pragma once
#include <cstdint>
#include <string>

#include "bayesgrad/codes.hpp"

namespace bayesgrad {

// Location-scale families sampled from one normal or uniform per element.
using LocScale = codes::LocScaleFamily;

// out (n, B) = loc + scale * base, with base from the family's standard form:
// normal z, lognormal exp(loc + scale z), uniform u, exponential -ln u,
// laplace -sign(u - 1/2) ln(1 - 2|u - 1/2|), gumbel -ln(-ln u), logistic
// ln u - ln(1 - u). Element i uses element i of the (seed, stream) normal /
// uniform stream.
template <typename T>
void sample_locscale(T* out, int64_t n_total, const T* loc, const T* scale, int64_t batch, LocScale fam,
                     uint64_t seed, uint64_t stream);

// log p(x) and its derivatives in loc and scale, elementwise over x (n, B).
// d_loc / d_scale may be null (not wanted).
template <typename T>
void locscale_log_prob(const T* x, int64_t n_total, const T* loc, const T* scale, int64_t batch, LocScale fam,
                       T* logp, T* d_loc, T* d_scale);

// Gamma(alpha, rate) draws into out (n, B).
template <typename T>
void sample_gamma(T* out, int64_t n_total, const T* alpha, const T* rate, int64_t batch, uint64_t seed,
                  uint64_t stream);
// Beta(a, b) draws into out (n, B).
template <typename T>
void sample_beta(T* out, int64_t n_total, const T* a, const T* b, int64_t batch, uint64_t seed,
                 uint64_t stream);
// Dirichlet(alpha) draws into out (n, B, K); alpha (B, K).
template <typename T>
void sample_dirichlet(T* out, int64_t n_total, const T* alpha, int64_t batch, int64_t k, uint64_t seed,
                      uint64_t stream);
// Gamma(alpha, rate) log density and its derivatives in alpha and rate (nullable).
template <typename T>
void gamma_log_prob(const T* x, int64_t n_total, const T* alpha, const T* rate, int64_t batch, T* logp,
                    T* d_alpha, T* d_rate);

// Student t(df, loc, scale) log density of x (n, B) into logp and, with grads non-null, its derivatives in
// df, loc and scale (B,) into grads (3, n, B); c = lgamma((df + 1) / 2) - lgamma(df / 2) - ln(pi df) / 2 -
// ln scale and psi = psi((df + 1) / 2) - psi(df / 2) - 1 / df (float64, B; psi read only with grads) from
// the caller. All arithmetic in double. x infinite: log p = -inf and derivatives 0 (studentt.cpp).
template <typename T>
void studentt_log_prob(const T* x, int64_t n_total, const T* df, const T* loc, const T* scale, const double* c,
                       const double* psi, int64_t batch, T* logp, T* grads);

// RelaxedBernoulli(temperature, logits) (binary Concrete) log density of x (n, B) into logp and its derivatives
// in temperature and logits (B,) into grads (2, n, B), each unless null (not both). All arithmetic in double;
// x outside (0, 1): log p = -inf, the gradients their limits at x = 0 / 1 and 0 beyond (relaxed_bernoulli.cpp).
template <typename T>
void relaxed_bernoulli_log_prob(const T* x, int64_t n_total, const T* temperature, const T* logits, int64_t batch,
                                T* logp, T* grads);

// RelaxedCategorical(temperature, logits) (Concrete) log density of x (rows of K classes, rows = n B; row r has
// coordinate r % B) into logp (rows), temperature (B,), logits (B, K), c = lgamma(K) + (K - 1) ln t + sum_k logits_k
// (float64, B) from the caller; with d_t non-null also its gradients in temperature into d_t (rows) and in
// the logits into d_logits (rows, K). All arithmetic in double; -inf where a value of the row is not positive
// and finite, and NaN gradients there (relaxed_categorical.cpp).
template <typename T>
void relaxed_categorical_log_prob(const T* x, int64_t rows, int64_t k, const T* temperature, const T* logits,
                                  const double* c, int64_t batch, T* logp, T* d_t = nullptr, T* d_logits = nullptr);

// Bernoulli log probability out = x lp1 + (1 - x) lp0 of x (n, B) in [0, 1], lp1 = ln p and lp0 = ln(1 - p)
// per coordinate (B,): exactly lp1 at x = 1 and lp0 at x = 0 (also where the other is -inf) (bernoulli.cpp).
template <typename T>
void bernoulli_log_prob(const T* x, int64_t n_total, const T* lp1, const T* lp0, int64_t batch, T* out);

// ln X of one unit-rate Gamma(alpha) draw: gamma element `element` (see above).
double log_gamma_draw(double alpha, uint64_t seed, uint64_t stream, uint64_t element);

// Poisson(rate) draws into out (n, B), rate (B,) finite, >= 0 and <= 1e10
// (std::invalid_argument naming rate otherwise). Element i reads its own
// sub-stream (stream | 2^63, blocks i * 2^16 + j), all arithmetic in double:
// * rate < 10: inversion by sequential search from 0. u = u01_f64(w0, w1) of
//   block 0; x = 0, p = F = exp(-rate); while u > F: x += 1, p *= rate / x,
//   F += p (stopping early when p no longer changes F). About rate + 1 steps.
// * rate >= 10: PTRS, the transformed rejection with squeeze of Hoermann
//   (1993, Insurance Math. Econom. 12: 39-45). Round j reads block j:
//   U = u01_f64(w0, w1) - 1/2, V = u01_f64(w2, w3), us = 1/2 - |U|,
//   k = floor((2a / us + b) U + rate + 0.43); accept k at once when us >= 0.07
//   and V <= vr, reject when k < 0 or (us < 0.013 and V > us), else accept
//   when ln V + ln(1/alpha) - ln(a / us^2 + b) <= k ln rate - rate - ln k!
//   (constants in samplers.hpp's PoissonConsts). Accepts >= 90% of rounds;
//   capped at 2^16 rounds (returns floor(rate), never reached).
// Counts are exact integers in double; float32 outputs round counts above 2^24.
template <typename T>
void sample_poisson(T* out, int64_t n_total, const T* rate, int64_t batch, uint64_t seed, uint64_t stream);

// Categorical draws by inversion: out[i] = the number of entries of cdf row (i % batch) below u[i]
// (cdf: batch rows of k - 1 nondecreasing partial sums, the last class's 1 left out), for n_total
// uniforms u; a count per class for k <= 32 (no branch: u is random), a binary search above.
template <typename T>
void categorical_from_uniform(const T* u, int64_t n_total, const T* cdf, int64_t batch, int64_t k, int64_t* out);

}  // namespace bayesgrad
