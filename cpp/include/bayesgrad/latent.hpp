// The hidden-variable regression model x -> z -> y (docs/design.md, "What the package is for", item 5):
//   z ~ N(Wz x + bz, diag(exp(log_sz))^2),   y ~ N(Wy z + by, exp(log_sy)^2 I).
// log p(y|x) = log E_z[p(y|z)] is estimated by Monte Carlo with the
// reparameterisation z_s = mu(x) + sigma_z * eps_s, and differentiated
// through it (the samples eps are held fixed: common random numbers).
#pragma once
#include <cstdint>

namespace bayesgrad {

struct LatentDims {
  int64_t N, D, K, P, S;  // points, input dim, latent dim, output dim, MC samples
};

// The parameters as one flat vector theta, in this order (row-major):
// Wz (K, D), bz (K), log_sz (K), Wy (P, K), by (P), log_sy (1).
int64_t latent_n_params(const LatentDims& d);

// x (N, D), y (N, P), theta (latent_n_params), eps (S, N, K) standard normals.
// logp (N): log (1/S) sum_s p(y_n | z_ns) per point (nats).
// grad (latent_n_params), when non-null: the gradient of sum_n logp[n],
// overwritten. Rows are split into at most 256 fixed chunks whose partial
// gradients are summed in order, so results do not depend on threads.
template <typename T>
void latent_logp(const LatentDims& d, const T* x, const T* y, const T* theta, const T* eps, T* logp, T* grad);

}  // namespace bayesgrad
