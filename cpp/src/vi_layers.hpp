// The stochastic-layer passes of mean-field VI (internal to the core): the
// local reparameterisation trick (Kingma, Salimans & Welling 2015: sample the
// pre-activations from their exact Gaussian given the layer input) and Flipout
// (Wen et al. 2018: one weight perturbation per sample, decorrelated across
// rows by random sign flips). vi.cpp runs the objective and the epochs; the
// layout of the random words is described there.
#pragma once
#include <algorithm>
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
  std::vector<T> tmp, tmp2, sq, pert, dA, Gbuf, dV, Gs, pa, Gsum;  // scratch of one layer
};

// Forward through every layer for the rows xb (B, d_0), S = cfg.n_samples
// samples each, at step stream stream_t; st receives each layer's input,
// pre-activation (st.z.back() is the output (S*B, d_L)) and the draws.
template <typename T>
void stoch_forward(const ViConfig& cfg, const T* mu, const T* sigma, const T* eps, const T* xb, int64_t B,
                   uint64_t stream_t, Stoch<T>& st);

// G (S*B, d_L) = d objective / d output, destroyed; xb the forward's rows.
// Writes gmu, gsigma (P).
template <typename T>
void stoch_backward(const ViConfig& cfg, const T* mu, const T* sigma, const T* eps, const T* xb, int64_t B,
                    Stoch<T>& st, T* G0, T* gmu, T* gsigma);

// Weight space with the S sampled weight vectors stored layer by layer
// ("wide" layout): layer l's weights of every sample (S, d_out, d_in) from
// S * w_off[l], its biases (S, d_out) from S * b_off[l]; parameter j of
// sample s, in the block (weights or biases of a layer) starting at `seg`
// with `len` elements, is at S * seg + s * len + (j - seg). For S = 1 this is
// the usual layout. The samples share the input X, so the first layer is one
// GEMM X (B, d_0) times (S d_1, d_0)^T for every sample, and its weight
// gradient one GEMM (S d_1, B) times X; the other layers, whose inputs and
// weights both differ per sample, are strided batches. Hidden layers are kept
// as (B, S d_l) (sample s in columns s d_l ...), the output as (S, B, d_L).
template <typename T>
struct WideTrace {
  std::vector<std::vector<T>> z, a;
  std::vector<T> g_cur, g_next;
};

// f(a, b, seg, len) for each piece [a, b) of [j0, j1) inside one block.
template <class F>
void for_blocks(const mlp::Layout& L, int64_t j0, int64_t j1, F&& f) {
  for (int64_t l = 0; l < L.n_layers(); ++l) {
    const int64_t segs[2][2] = {{L.w_off[l], L.d_in(l) * L.d_out(l)}, {L.b_off[l], L.d_out(l)}};
    for (const auto& sg : segs) {
      const int64_t a = std::max(j0, sg[0]), b = std::min(j1, sg[0] + sg[1]);
      if (a < b) f(a, b, sg[0], sg[1]);
    }
  }
}

template <typename T>
void wide_forward(const mlp::Layout& L, mlp::Activation f, const T* W, int64_t S, const T* X, int64_t B,
                  WideTrace<T>& tr);

// G (S, B, d_L) = d objective / d output, destroyed; gW (S P, wide layout).
template <typename T>
void wide_backward(const mlp::Layout& L, mlp::Activation f, const T* W, int64_t S, const T* X, int64_t B,
                   WideTrace<T>& tr, T* G, T* gW);

}  // namespace vi_layers
}  // namespace bayesgrad
