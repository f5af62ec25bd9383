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

#include "bayesgrad/mlp.hpp"

namespace bayesgrad {
namespace curvature {

// Curvature takes the MLP engine's likelihood codes (heteroscedastic_gaussian
// is refused) and its own kind and structure codes, all from codes.hpp.
using codes::Likelihood;
using Kind = codes::CurvatureKind;
using Structure = codes::CurvatureStructure;

// Throws unless lik is gaussian, categorical or bernoulli.
void require_supported(Likelihood lik);

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

// out (P, P) += Σ_{n,k} [S ⊗ a, S][S ⊗ a, S]^T for one linear layer (P = O*I + O),
// built block by block from Λ_n = Σ_k S S^T: (O(O+1)/2) I² n multiply-adds
// instead of the (K O²) I² n of a Jacobian Gram. Full symmetric result.
template <typename T>
void linear_full_accum(const T* a, const T* S, int64_t n, int64_t I, int64_t K, int64_t O, T* out);

// What the whole-network kernels need besides the arrays: the network, the
// likelihood, which curvature, its number K of square-root columns per point
// and (mlp_accum) the structure accumulated. Bound to Python as
// curvature.CurvatureConfig, twinned by a dataclass in bayesgrad._numpy.curvature.
struct CurvatureConfig {
  mlp::NetConfig net;
  Likelihood lik = Likelihood::kCategorical;
  Kind kind = Kind::kGgn;
  int64_t n_cols = 1;
  Structure structure = Structure::kDiag;
};

// One data chunk of a whole MLP (mlp.hpp layout and activations): forward with
// the MLP engine, square-root factors S (n, K, C) at the output, back-propagated
// through every layer (GEMMs with the weights, times f'(z)), and each layer's
// diagonal (out (P,) += diag) or Kronecker factors (out += [A_0 (I0,I0), B_0
// (O0,O0), A_1, B_1, ...] with A = Σ a aᵀ unnormalised, B = Σ s sᵀ) accumulated.
// Memory O(n K max_width + n Σ widths). Returns the chunk's loss (nats).
template <typename T>
double mlp_accum(const CurvatureConfig& c, const T* theta, const T* X, const T* y, const T* draws, int64_t n,
                 T* out);

// Length of the packed Kronecker output of mlp_accum: Σ_l I_l² + O_l².
int64_t kron_packed_size(const mlp::Layout& L);

// out (m, P) += (G_chunk V^T)^T for the whole MLP: jvp through the network,
// loss Hessian (or Fisher) Σ_k S S^T at the output, vjp by mlp::backward.
template <typename T>
void mlp_ggn_vp(const CurvatureConfig& c, const T* theta, const T* X, const T* y, const T* draws, int64_t n,
                const T* V, int64_t m, T* out);

}  // namespace curvature
}  // namespace bayesgrad
