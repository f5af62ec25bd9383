// Adam as one fused pass over the parameters, and the native MAP / dropout
// training epoch built on the MLP engine (mlp.hpp).
#pragma once
#include <cmath>
#include <cstdint>

#include "bayesgrad/hd.hpp"
#include "bayesgrad/mlp.hpp"

namespace bayesgrad {

// Bound to Python as optim.AdamConfig / optim.SgdConfig, twinned by dataclasses
// in bayesgrad._numpy.optim.
struct AdamConfig {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

// One Adam step t (1-based, for the bias corrections) on n parameters:
// m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr mhat / (sqrt(vhat) + eps).
template <typename T>
void adam_step(T* p, const T* g, T* m, T* v, int64_t n, int64_t t, const AdamConfig& c);

// Robbins-Monro step sizes a_t = a0 / (t0 + t)^kappa: with 0.5 < kappa <= 1,
// sum a_t diverges and sum a_t^2 converges, the conditions under which SGD on
// unbiased noisy gradients converges (Robbins & Monro 1951).
struct SgdConfig {
  double a0 = 1e-2, t0 = 0.0, kappa = 1.0;
  double rate(int64_t t) const;
};

// One SGD step t (1-based) on n parameters: p -= a_t g.
template <typename T>
void sgd_step(T* p, const T* g, int64_t n, int64_t t, const SgdConfig& c);
// The per-step constants of Adam step t, with the bias corrections folded into
// the step size (Kingma & Ba, sec. 2), so that fused passes elsewhere (MFVI)
// update element by element exactly as adam_step does.
template <typename T>
struct AdamCoeffs {
  T b1, b2, lr_t, inv_sqrt_bc2, eps;
  AdamCoeffs(const AdamConfig& c, int64_t t);
  // Shared with the CUDA kernels (BG_HD, hd.hpp).
  BG_HD void update(T& p, T g, T& m, T& v) const {
    const T mi = b1 * m + (T(1) - b1) * g;
    const T vi = b2 * v + (T(1) - b2) * g * g;
    m = mi;
    v = vi;
    p -= lr_t * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
  }
};

// Element-wise passes over the parameters run in chunks of this many elements
// on the worker threads (fixed, so sums over chunks do not depend on the
// thread count); fewer than one chunk stays on the calling thread.
constexpr int64_t kElementChunk = int64_t(1) << 14;

// Minibatch schedule of an epoch, or of a slice of it (n = the slice's rows): rows
// perm[start_i .. start_i + B_i).
struct Batches {
  const int64_t* perm;
  int64_t n, batch_size;
  int64_t count() const { return (n + batch_size - 1) / batch_size; }
  int64_t start(int64_t i) const { return i * batch_size; }
  int64_t size(int64_t i) const { return (i + 1) * batch_size <= n ? batch_size : n - i * batch_size; }
};

// Copy rows perm[start .. start+B) of X (N, D) and y (N, Dy) into xb, yb.
template <typename T>
void gather_rows(const T* X, int64_t D, const int64_t* rows, int64_t B, T* xb);

// Bound to Python as optim.MapConfig, twinned by a dataclass in bayesgrad._numpy.optim.
struct MapConfig {
  mlp::NetConfig net;
  mlp::Likelihood lik = mlp::Likelihood::kGaussian;
  bool learn_noise = false;
  double dropout_p = 0.0;  // on hidden units; masks per row, from stream fold_in(dropout_stream, step)
  uint64_t seed = 0, dropout_stream = 0;
  int64_t batch_size = 32;
  AdamConfig adam;
};

// One epoch of MAP training: for each minibatch i the objective
//   (N / B_i) * nll_i + 0.5 * sum_j prior_prec[j] * theta[j]^2
// (the whole-data-set negative log joint, in nats) and an Adam step. state is
// [theta (P), log_noise (Dy)]; m, v its Adam moments; step is the global step
// count before the epoch (returned advanced). stats (M, 2) receives per batch
// the unscaled nll_i and the objective. With `weights` (N,) non-null the
// likelihood is weighted: nll_i = sum_{n in batch} weights[n] nll_n, the exact
// negative log likelihood of the data set with row n repeated weights[n] times
// (an unbiased minibatch estimate with the same N / B_i factor); nullptr is the
// unweighted epoch, computed exactly as before.
template <typename T>
int64_t map_epoch(const MapConfig& cfg, T* state, T* m, T* v, int64_t step, const T* X, const T* y, int64_t N,
                  const Batches& batches, const T* prior_prec, T* stats, const T* weights = nullptr);

// mlp::nll with a weight per row: out[s] = sum_n w[n] nll_{s,n}; g_F row n scaled
// by scale * w[n]; g_log_noise[s] = scale * sum_n w[n] dnll_{s,n}/dlog_noise.
// F (S, N, K), y (N, Dy), w (N,).
template <typename T>
void weighted_nll(mlp::Likelihood lik, const T* F, const T* y, int64_t S, int64_t N, int64_t K, const T* log_noise,
                  const T* w, T* out, T* g_F, T scale, T* g_log_noise);

}  // namespace bayesgrad
