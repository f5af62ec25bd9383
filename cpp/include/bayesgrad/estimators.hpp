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
  if (cnt == 0.0) {  // the first chunk as it is: d = mb against an empty mean would square a mean of 1e160 to
    cnt = nb;        // inf and multiply it by the empty count (inf * 0 = NaN)
    mu = mb;
    s2 = s2b;
    return;
  }
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

// The score-function terms with a control variate h of known expectation
// gradient eg: t_ij = scale * score_ij * ((f_i - f_shift) - beta_j (h_i - h_shift))
// + beta_j eg_j. Every baseline reduces to (scale, f_shift, h_shift): none
// (1, 0, 0), leave-one-out (n / (n - 1), mean f, mean h), a constant b (1, b, 0).
// Same outputs as score_accumulate. float64 only.
void control_variate_accumulate(const double* score, const double* f, const double* h, const double* beta,
                                const double* eg, double scale, double f_shift, double h_shift, int64_t n,
                                int64_t p, double* mean, double* var, double* terms_out);

// beta_j = Cov_i(a_ij, c_ij) / Var_i(c_ij) with a_ij = score_ij f_i and
// c_ij = score_ij h_i: the variance-minimising coefficient of a control variate,
// column by column (two passes, fixed order; the deviations in units of each
// column's largest |a| and |c|, so that values of 1e160 do not overflow), 0 where
// Var(c) is at the rounding of c (below n 1e-28 max|c|^2). n >= 2.
void control_coefficient(const double* score, const double* f, const double* h, int64_t n, int64_t p,
                         double* beta);

// out_i = f0 + sum_j (g_j d_ij + h_j d_ij^2 / 2), d_ij = x_ij - mu_j: the
// second-order expansion of the delta control variate at n points.
void quadratic_values(const double* x, const double* mu, const double* g, const double* h, double f0, int64_t n,
                      int64_t p, double* out);

// VIMCO's learning signal per draw of each row of k log-weights (k >= 2):
// L - L_{-j} - w~_j, L = log mean_l exp(logw_l), L_{-j} the same with logw_j
// replaced by the mean of the other k - 1 log-weights, w~ the normalised weights.
void vimco_signal(const double* logw, int64_t n, int64_t k, double* out);

// REBAR / RELAX draws for Bernoulli(sigmoid(eta)) coordinates from uniforms u, v
// (n, p): z = eta + log(1 - u) - log u, b = 1[u < p], the conditional
// z~ = eta + log w~ - log(1 - w~) with w~ uniform on the side of b, and
// d z~ / d eta with v held fixed, and score = b - p.
void relax_bernoulli_draws(const double* eta, const double* u, const double* v, int64_t n, int64_t p, double* z,
                           double* zt, double* dzt, double* b, double* score);

// One call's REBAR / RELAX Bernoulli draws and their Concrete relaxation in one pass:
// relax_bernoulli_draws into draws (5, n, p) = [z, z~, dz~/deta, b, score], with u and v the
// uniforms random.uniform draws for (n, p) with `seed` and streams `stream_u` and `stream_v`
// (offset 0), generated chunk by chunk (the same values, never written out); then, while each
// chunk is in cache, the relaxation of [z; z~] (2n, p) into y: temps 1, concrete_bernoulli at
// lam (y (2n, p)); temps 3, concrete_bernoulli_fd at lam and lam e^{+-step} (y (3, 2n, p));
// temps 0, none (y unused).
void relax_bernoulli_sample(const double* eta, uint64_t seed, uint64_t stream_u, uint64_t stream_v, int64_t n,
                            int64_t p, double* draws, double lam, int temps, double step, double* y);

// The relaxed-f part of REBAR per unit scale for Bernoulli coordinates, given
// the relaxations y = sigmoid(z / lam), y~ = sigmoid(z~ / lam) (n, p) and f and its
// gradient there: a_ij = -f(y~)_i score_ij + gz_ij dy_ij/dz_ij - gt_ij dy~_ij/dz~_ij dzt_ij,
// dy/dz = y (1 - y) / lam, score = b - sigmoid(eta).
void relax_bernoulli_part(const double* fzt, const double* gz, const double* gzt, const double* y,
                          const double* yt, const double* dzt, const double* score, double lam, int64_t n,
                          int64_t p, double* out);

// relax_bernoulli_part at REBAR's three temperatures in one pass, for its central difference in
// log lambda: fv (6n), gv and y (6n, p) hold f, grad_f and the relaxation at [z; z~] for lam,
// lam e^{step}, lam e^{-step} in turn (concrete_bernoulli_fd's order); out (2, n, p) receives the
// part at lam and the part at lam e^{step} minus the part at lam e^{-step}.
void relax_bernoulli_part_fd(const double* fv, const double* gv, const double* y, const double* dzt,
                             const double* score, double lam, double step, int64_t n, int64_t p, double* out);

// sigmoid(z / lam) for z (m, p) into y (the Bernoulli Concrete relaxation).
void concrete_bernoulli(const double* z, double lam, int64_t count, double* y);

// The relaxation at REBAR's three temperatures lam, lam e^{step}, lam e^{-step} (its central
// difference in log lambda) into y (3, count): y[0] as concrete_bernoulli, y[1] and y[2] from the
// sigmoid's Taylor series around z / lam (within a few ulp; evaluated directly where z / lam is
// far enough out that the series would need more terms).
void concrete_bernoulli_fd(const double* z, double lam, double step, int64_t count, double* y);

// A REBAR / RELAX estimate's per-draw terms for Bernoulli coordinates (n, p):
// g = (fb_i - rt_i) score + sc a_f + gz - gt dzt, where fb = f(b), r (2n,) and
// gx (2n, p) the surrogate network and its input gradient at [z; z~] (rt = r[n:],
// gz = gx[:n], gt = gx[n:]), a_f the relaxed-f part per unit scale
// (relax_bernoulli_part); a_f and r/gx may be null (no relaxed f / no network);
// a_d (null unless a_f is given) a second (n, p) array whose product with g is
// summed too (REBAR's temperature difference, relax_bernoulli_part_fd).
// Writes g (n, p); with the network (r, gx, gd and gs all given, else all null)
// also gd = g dzt (n, p) and gs_i = sum_p g score (the inputs of the network's mixed product, mlp::mixed_vjp);
// sums[0..2] = sum g^2, sum g a_f, sum g a_d over all n p terms (0 for an absent
// array), summed per fixed row block and then in block order (the same for any
// thread count).
void relax_bernoulli_combine(const double* fb, const double* score, const double* a_f, const double* a_d,
                             double sc, const double* r, const double* gx, const double* dzt, int64_t n, int64_t p,
                             double* g, double* gd, double* gs, double* sums);

// REBAR / RELAX for D Categorical coordinates of K classes (p = D K values per draw, row-major
// (D, K); relax_categorical.cpp). relax_categorical_sample: from lp (D K) the log-probabilities and
// u, v the uniforms random.uniform draws for (n, D K) with `seed` and `stream_u` / `stream_v`
// (offset 0, generated chunk by chunk), into draws (5, n, p) = [z, z~, r, b, score]:
// z = lp - log(-log u), b the one-hot of argmax z per row of K (the first maximum), with
// E = -log v: z~_b = -log E_b and z~_i = -log(E_i / p_i + E_b), formed as lp_i - log(E_i + E_b p_i),
// r_i = E_i / (E_i + E_b p_i) (0 at b; d z~ / d eta = diag(r) - p r^T; both finite where p_i underflows),
// score = b - p; then the relaxation softmax(./ lam) as exp((x - max) / lam) normalised
// per row of K of [z; z~] (2n, p) into y: temps 1 at lam (y (2n, p)), temps 3 at lam,
// lam e^{step}, lam e^{-step} (y (3, 2n, p)), temps 0 none.
void relax_categorical_sample(const double* lp, int64_t d, int64_t k, uint64_t seed, uint64_t stream_u,
                              uint64_t stream_v, int64_t n, double* draws, double lam, int temps, double step,
                              double* y);

// The relaxed-f part per unit scale from f and grad_f at the relaxation: fv (T 2n) and gv
// (T 2n, p) at y (T 2n, p) (relax_categorical_sample's order, T = temps, 1 or 3), r and score
// (n, p) of the draws, pr (p) the probabilities: a = -f(y~) score + Jz^T v(g) - Jt^T v(g~) with
// v(g) = y (g - g . y) / lam the softmax's VJP per row of K; out (n, p) the part at lam, and for
// temps 3 (2, n, p) also the part at lam e^{step} minus the part at lam e^{-step}.
void relax_categorical_part(const double* fv, const double* gv, const double* y, const double* rr,
                            const double* score, const double* pr, int64_t n, int64_t d, int64_t k, double lam,
                            int temps, double step, double* out);

// The per-draw terms g (n, p) = (fb_i - rt_i) score + sc a_f + Jz gz - Jt gt (Jz h = h - p sum h,
// Jt h = r h - p sum r h per row of K), r (2n,) / gx (2n, p) the network and its input gradient at
// [z; z~] (null: no network), a_f / a_d as in relax_bernoulli_combine; with the network also
// d1 = Jz^T g, d2 = Jt^T g (n, p) and gs_i = sum_p g score (the network gradient's inputs); sums as in
// relax_bernoulli_combine (fixed row blocks, then block order).
void relax_categorical_combine(const double* fb, const double* score, const double* rr, const double* pr,
                               const double* a_f, const double* a_d, double sc, const double* rnet, const double* gx,
                               int64_t n, int64_t d, int64_t k, double* g, double* d1, double* d2, double* gs,
                               double* sums);

// Stochastic beam search (Gumbel-top-k over the K^D joint configurations of D
// independent categoricals, log_probs (D, K) normalised per row): for each of n
// rows, from uniforms u (n, 1 + D m K) (u[0] the root's Gumbel, then m K per
// coordinate), keep the m largest perturbed partial configurations, each child's
// Gumbel truncated at its parent's value. Outputs, in decreasing perturbed
// value: conf (n, m, D) class indices, their joint log-probabilities (n, m) and
// perturbed values (n, m). Needs K^D >= m.
void gumbel_beam_search(const double* log_probs, int64_t d, int64_t k, const double* u, int64_t n, int64_t m,
                        int64_t* conf, double* log_prob, double* perturbed);

// Fused forms for an unbroadcast Normal(loc, scale) over p coordinates (issue 16: the
// passes the estimators used to make in NumPy). mean / var are (2, p): row 0 the
// loc terms, row 1 the scale terms; terms_out, when not null, (2, n, p).
// Pathwise: loc term g_ij, scale term g_ij e_ij with e = (x - loc) / scale in T.
template <typename T>
void pathwise_normal_accumulate(const T* g, const T* x, const T* loc, const T* scale, int64_t n, int64_t p, T* mean,
                                T* var, T* terms_out);

// Score function: the scores d log q / d loc = e / scale and d log q / d scale =
// (e^2 - 1) / scale (computed in double, rounded to T as the distributions'
// kernel stores them) times f_i - b_i, b as in score_accumulate.
template <typename T>
void score_normal_accumulate(const T* x, const T* loc, const T* scale, const T* f, const T* baseline, bool loo,
                             int64_t n, int64_t p, T* mean, T* var, T* terms_out);

// Multi-sample (IWAE-bound) estimators for a Normal q over p coordinates, groups
// of k draws: z (n, k, p), log-joint values fz (n, k), grad_f g (n, k, p) (null
// for VIMCO). Per draw log w = fz - log q(z); per group the normalised weights
// wt (n, k) and the bound log mean_k w (n,); terms (2, n, p) the per-group loc
// and scale terms of mode 0 iwae (sum_k wt_k (g, g e + 1 / scale)), 1 DReG-IWAE
// (c = wt^2) and 2 DReG-RWS (c = wt - wt^2) with sum_k c_k (a, a e), a = g + e / scale,
// and 3 VIMCO (sum_k s_k (e / scale, (e^2 - 1) / scale), s the vimco_signal).
void normal_multisample_terms(const double* z, const double* fz, const double* g, const double* loc,
                              const double* scale, int mode, int64_t n, int64_t k, int64_t p, double* terms,
                              double* wt, double* bound);

// Rejection draws of the parts p+ (sign = 1) / p- (sign = -1) of the Gamma shape's weak
// derivative (estimators/mvd.py), for (n, p) coordinates: in round r = 0, 1, ..., the i-th
// element still pending (row-major order) proposes x = Gamma(alpha_j, 1) element i of stream
// s = fold_in(base, r) (the samplers' sub-stream draw of log x; x = exp of it, clamped to the smallest normal), and
// accepts it when uniform i of stream fold_in(s, "mvd_accept") is below
// e eps_j sign t exp(-sign eps_j t), t = log x - psi_j, sign t > 0 (at most 1: y e^{-eps y} <= 1 / (e eps)).
// Throws after max_rounds.
void gamma_weak_parts(const double* alpha, const double* eps, const double* psi, double sign, uint64_t seed,
                      uint64_t base, int64_t n, int64_t p, int64_t max_rounds, double* out);

// Order probabilities of a set S of k distinct elements drawn without replacement, from their
// joint log-probabilities log_p (n, k) (k <= 12) and log_rest (n), the log of the mass outside each
// set (-inf when S is the whole support): first (n, k) = P(B_1 = s | S) and second (n, k, k) =
// P(B_2 = s' | B_1 = s, S) (zero diagonal; k >= 2), each P^{D\A}(S\A) by the recursion over the 2^m
// subsets of estimators/without_replacement.py (log_set_probability), with every mass left after a
// subset B formed as rest + the sum of the elements not in B (no 1 - mass cancellation).
void set_order_probabilities(const double* log_p, const double* log_rest, int64_t n, int64_t k, double* first,
                             double* second);

// log of the probability mass outside each set of k distinct configurations conf (n, k, D) of D
// Categorical coordinates with log-probabilities log_probs (D, K), into out (n): by the trie of the
// set, a coordinate at a time, each group of configurations sharing their classes before coordinate c
// adding its prefix probability times the mass of the classes none of them takes at c (sums of
// non-negative terms; -inf for the whole support); log1p(-sum_S p(s)) instead where that leaves at
// least 1e-2 (its rounding then below 1e-13 of it). Class indices outside [0, K) throw.
void set_outside_mass(const int64_t* conf, const double* log_probs, int64_t n, int64_t k, int64_t d, int64_t kc,
                      double* out);

// Score-function terms of a Categorical's logits over sets: terms[i, d, :] =
// sum_s c[i, s] (onehot(conf[i, s, d]) - probs[d, :]) for conf (n, k, D) class indices,
// c (n, k), probs (D, K); terms (n, D, K).
void categorical_set_terms(const int64_t* conf, const double* c, const double* probs, int64_t n, int64_t k,
                           int64_t d, int64_t kc, double* terms);

// The scores of a Normal(loc, scale) (p,) at x (n, p): out (2, n, p) = (e / scale,
// (e^2 - 1) / scale), e = (x - loc) / scale (the distributions' formulas, without log p).
void normal_scores(const double* x, const double* loc, const double* scale, int64_t n, int64_t p, double* out);

// The evaluation points of a measure-valued gradient (estimators/generic.py): out[i, d, :] =
// x[i, :] with coordinate d replaced by values[i, j, d], for x (m, D) and values (m, parts, D)
// float64 and out (m, parts, D, D) float32 or float64 (values rounded once, as NumPy's cast
// rounds them). parts: the weak derivative's p+ and p- from one pass over x.
template <typename T>
void coordinate_points(const double* x, const double* values, int64_t m, int64_t parts, int64_t d, T* out);

}  // namespace bayesgrad
