// Per-element functions of the MLP engine, shared by the C++ core (mlp.cpp,
// mlp_tiled.cpp, vi.cpp, curvature.cpp through mlp.hpp) and the CUDA kernels:
// the hidden activations and their derivatives, and each likelihood's negative
// log-likelihood term with its gradient in the network output.
#pragma once
#include <cmath>
#include <cstdint>

#include "bayesgrad/codes.hpp"
#include "bayesgrad/hd.hpp"

namespace bayesgrad {
namespace mlp {

using codes::Activation;
using codes::Likelihood;

constexpr double kHalfLog2Pi = 0.91893853320467274178;

// a = f(z), elementwise.
template <typename T>
BG_HD T act(Activation f, T z) {
  switch (f) {
    case Activation::kRelu: return z > T(0) ? z : T(0);
    case Activation::kTanh: return std::tanh(z);
    case Activation::kSigmoid: return z >= T(0) ? T(1) / (T(1) + std::exp(-z)) : std::exp(z) / (T(1) + std::exp(z));
    case Activation::kGelu: return T(0.5) * z * (T(1) + std::erf(z * T(0.70710678118654752440)));  // z * Phi(z), exact
    default: return z;
  }
}

// f'(z), given z and a = f(z) (tanh and sigmoid reuse a).
template <typename T>
BG_HD T act_deriv(Activation f, T z, T a) {
  switch (f) {
    case Activation::kRelu: return z > T(0) ? T(1) : T(0);
    case Activation::kTanh: return T(1) - a * a;
    case Activation::kSigmoid: return a * (T(1) - a);
    case Activation::kGelu: {
      const T phi = std::exp(T(-0.5) * z * z) * T(0.39894228040143267794);
      return T(0.5) * (T(1) + std::erf(z * T(0.70710678118654752440))) + z * phi;
    }
    default: return T(1);
  }
}

// f''(z), given z and a = f(z): the activations' curvature, for forward-over-reverse products
// (mlp::mixed_vjp). ReLU's and the identity's are 0 (ReLU's almost everywhere).
template <typename T>
BG_HD T act_deriv2(Activation f, T z, T a) {
  switch (f) {
    case Activation::kTanh: return T(-2) * a * (T(1) - a * a);
    case Activation::kSigmoid: return a * (T(1) - a) * (T(1) - T(2) * a);
    case Activation::kGelu:  // d/dz [Phi(z) + z phi(z)] = phi(z) (2 - z^2)
      return std::exp(T(-0.5) * z * z) * T(0.39894228040143267794) * (T(2) - z * z);
    default: return T(0);
  }
}

// The likelihood terms below return one output's (or row's) negative
// log-likelihood in nats, in double; the gradient pointers may be null (not
// wanted) and receive `scale` times the derivative.

// Homoscedastic gaussian, output f, target y, log sigma = log_noise:
// *g = d/df, *g_noise += d/dlog_noise (accumulated over rows).
template <typename T>
BG_HD double gaussian_term(T f, T y, T log_noise, T scale, T* g, T* g_noise) {
  const T inv_var = std::exp(T(-2) * log_noise);
  const T r = y - f;
  if (g) *g = -scale * r * inv_var;
  if (g_noise) *g_noise += scale * (T(1) - r * r * inv_var);
  return 0.5 * double(r) * double(r) * double(inv_var) + double(log_noise) + kHalfLog2Pi;
}

// Heteroscedastic gaussian: mean head f, log-variance head v.
template <typename T>
BG_HD double heteroscedastic_term(T f, T v, T y, T scale, T* g_mean, T* g_logvar) {
  const T e = std::exp(-v);
  const T r = y - f;
  if (g_mean) {
    *g_mean = -scale * r * e;
    *g_logvar = scale * T(0.5) * (T(1) - r * r * e);
  }
  return 0.5 * (double(r) * double(r) * double(e) + double(v)) + kHalfLog2Pi;
}

// Categorical over K logits f with class c (checked by the caller):
// g[k] = softmax(f)[k] - [k == c].
template <typename T>
BG_HD double categorical_term(const T* f, int64_t K, int64_t c, T scale, T* g) {
  T mx = f[0];
  for (int64_t k = 1; k < K; ++k) mx = mx < f[k] ? f[k] : mx;  // std::max's rule
  T se = T(0);
  for (int64_t k = 0; k < K; ++k) se += std::exp(f[k] - mx);
  const T lse = mx + std::log(se);
  if (g) {
    for (int64_t k = 0; k < K; ++k) g[k] = scale * std::exp(f[k] - lse);
    g[c] -= scale;
  }
  return double(lse) - double(f[c]);
}

// Bernoulli with logit x and target y: softplus(x) - y x, stable for both signs.
template <typename T>
BG_HD double bernoulli_term(T x, T y, T scale, T* g) {
  const T sp = x > T(0) ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x));
  if (g) {
    const T p = x >= T(0) ? T(1) / (T(1) + std::exp(-x)) : std::exp(x) / (T(1) + std::exp(x));
    *g = scale * (p - y);
  }
  return double(sp) - double(y) * double(x);
}

}  // namespace mlp
}  // namespace bayesgrad
