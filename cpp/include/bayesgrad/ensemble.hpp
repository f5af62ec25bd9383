// M independent MAP trainings (a deep ensemble, Lakshminarayanan et al. 2017)
// advanced together through the S axis of the MLP engine: one forward and one
// backward pass per minibatch serve all members, each on its own rows.
#pragma once
#include <cstdint>
#include <vector>

#include "bayesgrad/mlp.hpp"
#include "bayesgrad/optim.hpp"

namespace bayesgrad {

// Bound to Python as optim.EnsembleConfig, twinned by a dataclass in
// bayesgrad._numpy.optim.
struct EnsembleConfig {
  mlp::NetConfig net;
  mlp::Likelihood lik = mlp::Likelihood::kGaussian;
  bool learn_noise = false;
  double weight_decay = 0.0;  // precision of the isotropic Gaussian prior on theta (not on log_noise)
  int64_t batch_size = 32;
  AdamConfig adam;
  // Fast-gradient-sign adversarial training (Goodfellow et al. 2015, as in the
  // ensembles paper): empty = off, else one step size per input feature (d_0).
  std::vector<double> adv_eps;
};

// n_epochs epochs (or a slice of one) for M members. state, m, v are (M, P + Dy):
// member s's [theta (P), log_noise (Dy)] and its own Adam moments; all members
// share the step count (returned advanced). perms (n_epochs, M, n_perm): in
// epoch e member s's minibatch i is rows perms[e, s, i B .. (i+1) B)
// (B = min(batch_size, N)), so every member has its own shuffle. weights (N) or nullptr: the per-row weight
// w_n of the weighted likelihood sum_n w_n nll_n. Member s's objective on
// minibatch i is
//   (N / B_i) sum_{n in batch} w_n (nll_n(x_n) [+ nll_n(x_n + eps sign(d nll_n / d x_n))])
//   + 0.5 * weight_decay * |theta_s|^2
// (the bracket with adversarial training). stats (n_epochs n_batches, M, 2) receives
// per batch and member the weighted clean nll sum and the objective (batches of
// epoch e at rows e n_batches ..).
template <typename T>
int64_t ensemble_epoch(const EnsembleConfig& cfg, int64_t M, T* state, T* m, T* v, int64_t step, const T* X,
                       const T* y, int64_t N, const int64_t* perms, int64_t n_epochs, int64_t n_perm,
                       const T* weights, T* stats);

// The minibatch orders of n_epochs epochs for M members, as
// bayesgrad._training.permutation draws them: out[e, s] (N entries) is the
// stable argsort of the float64 Philox uniforms 0..N-1 of (seed,
// fold_in(streams[s], epoch0 + e)). Chunks (e, s) run on the thread pool.
void ensemble_orders(uint64_t seed, const uint64_t* streams, int64_t M, int64_t epoch0, int64_t n_epochs, int64_t N,
                     int64_t* out);

}  // namespace bayesgrad
