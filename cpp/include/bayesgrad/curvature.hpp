// Curvature of linear layers from per-chunk activations and back-propagated
// square-root factors of the loss Hessian (see python/bayesgrad/_numpy/curvature.py
// for the maths; the NumPy twin has the same names and argument order).
//
// a (n, I): a layer's inputs; S (n, K, O): K square-root columns per data point
// at the layer's outputs. Parameter order in a layer: W (O, I) row-major, then b (O).
// Every *_accum kernel ADDS the chunk's contribution to its outputs.
#pragma once
#include <cstdint>
#include <string>

namespace bayesgrad {
namespace curvature {

enum class Likelihood { gaussian, categorical, bernoulli };
enum class Kind { ggn, ef, fisher_mc };

Likelihood parse_likelihood(const std::string& s);
Kind parse_kind(const std::string& s);

// S (n, K, C) with sum_k S S^T = loss Hessian (ggn), gradient outer product
// (ef, K = 1) or the K-sample Monte Carlo Fisher (fisher_mc). y: (n, C) targets
// (gaussian) or (n) labels; draws: (n, K, C) normals (gaussian) or (n, K)
// uniforms, read by fisher_mc only. Returns the chunk's loss (nats; ½Σr² for gaussian).
template <typename T>
double sqrt_loss(const T* f, const T* y, const T* draws, int64_t n, int64_t C, int64_t K,
                 Likelihood lik, Kind kind, T* S);

// out_w (O, I) += sum_{n,k} S^2 a^2; out_b (O) += sum_{n,k} S^2.
template <typename T>
void linear_diag_accum(const T* a, const T* S, int64_t n, int64_t I, int64_t K, int64_t O, T* out_w, T* out_b);

// out_A (I, I) += a^T a; out_B (O, O) += sum_{n,k} S S^T.
template <typename T>
void linear_kron_accum(const T* a, const T* S, int64_t n, int64_t I, int64_t K, int64_t O, T* out_A, T* out_B);

// out (n, K, O*I + O) = [S ⊗ a, S].
template <typename T>
void linear_jacobian(const T* a, const T* S, int64_t n, int64_t I, int64_t K, int64_t O, T* out);

// out (P, P) += J^T J, J (m, P).
template <typename T>
void gram_accum(const T* J, int64_t m, int64_t P, T* out);

// out (m, P) += (G V^T)^T with G the chunk's GGN of the layer, V (m, P), P = O*I + O.
template <typename T>
void linear_ggn_vp(const T* a, const T* S, int64_t n, int64_t I, int64_t K, int64_t O, const T* V, int64_t m,
                   T* out);

}  // namespace curvature
}  // namespace bayesgrad
