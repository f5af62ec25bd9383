// The stochastic-layer passes of mean-field VI (internal to the core): the
// local reparameterisation trick (Kingma, Salimans & Welling 2015: sample the
// pre-activations from their exact Gaussian given the layer input) and Flipout
// (Wen et al. 2018: one weight perturbation per sample, decorrelated across
// rows by random sign flips). vi.cpp runs the objective and the epochs; the
// layout of the random words is described there.
#pragma once
#include <cstdint>
#include <vector>

#include "bayesgrad/vi.hpp"

namespace bayesgrad {
namespace vi_layers {

// Buffers of the stochastic-layer passes (local reparameterisation, Flipout),
// kept across the steps of an epoch so that only the first step allocates.
template <typename T>
struct Stoch {
  std::vector<std::vector<T>> in, z, aux1, aux2;  // per layer: input (S*B, d_in), pre-activation, extras
  std::vector<T> tmp, tmp2, sq, pert, dA, Gbuf, dV, Gs, pa;  // scratch of one layer
};

// Forward through every layer for the rows xb (B, d_0), S = cfg.n_samples
// samples each, at step stream stream_t; st receives each layer's input,
// pre-activation (st.z.back() is the output (S*B, d_L)) and the draws.
template <typename T>
void stoch_forward(const ViConfig& cfg, const T* mu, const T* sigma, const T* eps, const T* xb, int64_t B,
                   uint64_t stream_t, Stoch<T>& st);

// G (S*B, d_L) = d objective / d output, destroyed. Writes gmu, gsigma (P).
template <typename T>
void stoch_backward(const ViConfig& cfg, const T* mu, const T* sigma, const T* eps, int64_t B, Stoch<T>& st, T* G0,
                    T* gmu, T* gsigma);

}  // namespace vi_layers
}  // namespace bayesgrad
