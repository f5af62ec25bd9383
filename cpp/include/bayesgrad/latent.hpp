// The hidden-variable regression model x -> z -> y (DESIGN.md item 5):
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

// x (N, D), y (N, P), Wz (K, D), bz (K), log_sz (K), Wy (P, K), by (P),
// log_sy (1), eps (S, N, K) standard normals.
// logp (N): log (1/S) sum_s p(y_n | z_ns) per point (nats).
// g* (shaped like their parameter): gradient of sum_n logp[n]; a null pointer
// skips all gradients. Rows are split into at most 256 fixed chunks whose
// partial gradients are summed in order, so results do not depend on threads.
template <typename T>
void latent_logp(const LatentDims& d, const T* x, const T* y, const T* Wz, const T* bz, const T* log_sz, const T* Wy,
                 const T* by, const T* log_sy, const T* eps, T* logp, T* gWz, T* gbz, T* glog_sz, T* gWy, T* gby,
                 T* glog_sy);

}  // namespace bayesgrad
