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

// The GLM predictive's output covariance without Jacobians. Bound as
// curvature.GlmConfig, twinned by a dataclass in bayesgrad._numpy.curvature.
// structure kDiag: P⁻¹ = diag(var); kKron: per layer l the W block of P⁻¹ is
// (Q_B ⊗ Q_A) diag(var_W) (Q_B ⊗ Q_A)ᵀ and the bias block Q_B diag(var_b) Q_Bᵀ.
struct GlmConfig {
  mlp::NetConfig net;
  Structure structure = Structure::kDiag;
};

// Length of glm_fvar's rot for a structure: 0 (diag) or kron_packed_size (kron).
int64_t glm_rot_size(const mlp::Layout& L, Structure s);

// f (n, C) = outputs at θ; fvar (n, C, C) = J Σ Jᵀ (overwritten) with Σ given
// layer by layer: var (P,) in parameter order (diag: the marginal variances;
// kron: 1/eigenvalues of each block, W (O, I) then b (O)); rot (kron) packed
// per layer [Q_A (I, I), Q_B (O, O)] row-major, eigenvectors in columns.
// The C output directions are back-propagated as in mlp_accum (G_l (n, C, O)),
// the Jacobian of output c w.r.t. W_l being G_l[c] ⊗ a_{l-1}, so per layer
// fvar += G̃ diag(ã² var_Wᵀ + var_b) G̃ᵀ with G̃ = G Q_B, ã = a Q_A: GEMMs only.
// Rows are processed in internal chunks: memory O(rows · C · max width).
template <typename T>
void mlp_glm_fvar(const GlmConfig& c, const T* theta, const T* X, int64_t n, const T* rot, const T* var, T* f,
                  T* fvar);

// f (n, C) and the output Jacobian J (n, C, P) of a whole MLP (parameter order).
template <typename T>
void mlp_jacobian(const mlp::NetConfig& net, const T* theta, const T* X, int64_t n, T* f, T* J);

}  // namespace curvature
}  // namespace bayesgrad
