// Mean-field Gaussian VI for the MLP (Bayes by Backprop, Blundell et al. 2015):
// q(theta) = N(mu, diag(sigma^2)), sigma = softplus(rho). One native call runs
// one epoch: per minibatch it samples, runs forward and backward, adds the KL
// gradient and takes an Adam step.
#pragma once
#include <cstdint>

#include "bayesgrad/mlp.hpp"
#include "bayesgrad/optim.hpp"

namespace bayesgrad {

using codes::ViEstimator;
using codes::ViPrior;

// Bound to Python as vi.ViConfig, twinned by a dataclass in bayesgrad._numpy.vi.
struct ViConfig {
  mlp::NetConfig net;
  mlp::Likelihood lik = mlp::Likelihood::kGaussian;
  bool learn_noise = false;
  ViEstimator estimator = ViEstimator::kWeightSpace;
  ViPrior prior = ViPrior::kGaussian;
  double prior_sigma = 1.0;                        // N(0, prior_sigma^2)
  double mix_pi = 0.5, mix_s1 = 1.0, mix_s2 = 1e-3;  // pi N(0, s1^2) + (1 - pi) N(0, s2^2)
  int64_t n_samples = 1;
  uint64_t seed = 0, stream = 0;  // step t draws from fold_in(stream, t)
  int64_t batch_size = 32;        // rows per minibatch of vi_epoch (the last may be smaller)
  AdamConfig adam;
};

// KL(q || prior) (nats) and, when gmu/gsigma are non-null, its gradients added
// (times `scale`) into them. Closed form for the Gaussian prior; for the scale
// mixture the mean over S reparameterised samples eps (S, P).
template <typename T>
double vi_kl(const ViConfig& cfg, const T* mu, const T* sigma, const T* eps, int64_t S, T* gmu, T* gsigma,
             T scale);

// The objective of one batch holding all N rows X (N, D), y (N, Dy) at step
// `step` (its random words) and its gradient w.r.t. the state into grad
// (2P + Dy); stats3 = (mean_s nll, KL, objective). For testing and ELBO checks.
template <typename T>
void vi_grad(const ViConfig& cfg, const T* state, const T* X, const T* y, int64_t N, int64_t step, T kl_weight,
             T* grad, T* stats3);

// One epoch. state = [mu (P), rho (P), log_noise (Dy)], m/v its Adam moments,
// step the global step count before the epoch (returned advanced). For
// minibatch i (B_i rows) the objective is
//   (N / B_i) * ( mean_s nll_{i,s} + kl_weight[i] * KL )
// and stats (M, 3) receives mean_s nll_{i,s}, KL, and that objective. With
// `weights` (N,) non-null, nll_{i,s} = sum_{n in batch} weights[n] nll_{n,s}
// (row n counts weights[n] times); nullptr: unweighted, as before.
template <typename T>
int64_t vi_epoch(const ViConfig& cfg, T* state, T* m, T* v, int64_t step, const T* X, const T* y, int64_t N,
                 const Batches& batches, const T* kl_weight, T* stats, const T* weights = nullptr);

}  // namespace bayesgrad
