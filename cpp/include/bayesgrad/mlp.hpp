// The MLP engine: forward and backward of a fully connected network, batched
// over S parameter samples with strided batched GEMMs (scipy-openblas32).
//
// Parameter layout (one flat vector of length P per sample), the order of
// PyTorch's parameters_to_vector for nn.Sequential of nn.Linear: for each layer
// l = 0..L-1 with d_in = sizes[l], d_out = sizes[l+1], first W_l (d_out x d_in,
// row-major), then b_l (d_out). Hidden layers apply the activation (and an
// optional dropout mask); the last layer is linear (the likelihood applies the
// link). Reusable from other C++ files (Laplace, curvature): the Trace keeps
// every pre-activation and activation; backward takes dL/d(output).
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "bayesgrad/codes.hpp"
#include "bayesgrad/elementwise.hpp"

namespace bayesgrad {
namespace mlp {

// The codes are defined once in python/bayesgrad/_codes.py (codes.hpp is
// generated); elementwise.hpp brings codes::Activation and codes::Likelihood in.

// Offsets of every layer's W and b in the flat parameter vector.
struct Layout {
  std::vector<int64_t> sizes;  // d_0 .. d_L
  std::vector<int64_t> w_off, b_off;
  int64_t n_params = 0;
  int64_t n_hidden_units = 0;  // sum of d_1 .. d_{L-1}: the width of a dropout mask row
  int64_t max_width = 0;
  Layout() = default;
  // Throws std::invalid_argument unless n_sizes >= 2 and every size >= 1.
  Layout(const int64_t* sz, int64_t n_sizes);
  int64_t n_layers() const { return static_cast<int64_t>(sizes.size()) - 1; }
  int64_t d_in(int64_t l) const { return sizes[l]; }
  int64_t d_out(int64_t l) const { return sizes[l + 1]; }
  int64_t d_input() const { return sizes.front(); }
  int64_t d_output() const { return sizes.back(); }
  // Offset of hidden layer l's units in a dropout mask row (l < L-1).
  int64_t mask_off(int64_t l) const;
};

// A network as the kernels see it: its layout and hidden activation. Bound to
// Python as mlp.NetConfig(sizes, activation), twinned by a dataclass in
// bayesgrad._numpy.mlp.
struct NetConfig {
  Layout layout;
  Activation act = Activation::kRelu;
};

// act, act_deriv and the likelihood terms: elementwise.hpp (shared with CUDA).

// a[k] = tanh z[k] / sigmoid z[k] over n elements (a may be z): the AVX-512 /
// AVX2 vector functions of simd_math.hpp (about 2 ulp) where the CPU has them,
// act() with libm on the scalar path (libm has no vector entry points without
// -ffast-math; its scalar tanh was most of a small tanh network's forward pass).
void tanh_array(const float* z, float* a, int64_t n);
void tanh_array(const double* z, double* a, int64_t n);
void sigmoid_array(const float* z, float* a, int64_t n);
void sigmoid_array(const double* z, double* a, int64_t n);

// a[k] = f(z[k]) and g[k] *= f'(z[k]) over n elements, with the switch on f
// outside the loop: the ReLU and identity loops then vectorise (a per-element
// switch kept them scalar and branchy, which dominated small networks).
template <typename T>
inline void act_array(Activation f, const T* __restrict z, T* __restrict a, int64_t n) {
  switch (f) {
    case Activation::kTanh:
      tanh_array(z, a, n);
      break;
    case Activation::kSigmoid:
      sigmoid_array(z, a, n);
      break;
    case Activation::kRelu:
      for (int64_t k = 0; k < n; ++k) a[k] = z[k] > T(0) ? z[k] : T(0);
      break;
    case Activation::kIdentity:
      for (int64_t k = 0; k < n; ++k) a[k] = z[k];
      break;
    default:
      for (int64_t k = 0; k < n; ++k) a[k] = act(f, z[k]);
  }
}

template <typename T>
inline void mul_act_deriv_array(Activation f, const T* __restrict z, const T* __restrict a, T* __restrict g,
                                int64_t n) {
  switch (f) {
    case Activation::kRelu:
      // g * 0 (not 0: NaN and inf stay NaN, as in the twin). Written as one
      // loop, GCC turns the multiplication into a branch it may not
      // if-convert (FP traps); the 0/1 factors in a block buffer first keep
      // both loops branch-free and vectorised.
      for (int64_t k0 = 0; k0 < n; k0 += 256) {
        const int64_t m = n - k0 < 256 ? n - k0 : 256;
        T one[256];
        for (int64_t k = 0; k < m; ++k) one[k] = z[k0 + k] > T(0) ? T(1) : T(0);
        for (int64_t k = 0; k < m; ++k) g[k0 + k] *= one[k];
      }
      break;
    case Activation::kIdentity:
      break;
    case Activation::kTanh:  // act_deriv's formulas, in loops that vectorise
      for (int64_t k = 0; k < n; ++k) g[k] *= T(1) - a[k] * a[k];
      break;
    case Activation::kSigmoid:
      for (int64_t k = 0; k < n; ++k) g[k] *= a[k] * (T(1) - a[k]);
      break;
    default:
      for (int64_t k = 0; k < n; ++k) g[k] *= act_deriv(f, z[k], a[k]);
  }
}

// Dropout masks on hidden units: m[s * s_stride + row * row_stride + mask_off(l) + j]
// multiplies hidden unit j of layer l (already scaled by 1/(1-p)). row_stride 0
// gives every input row the same mask (consistent masks); s_stride is normally
// rows * n_hidden_units.
template <typename T>
struct Masks {
  const T* m = nullptr;
  int64_t s_stride = 0, row_stride = 0;
  T at(int64_t s, int64_t row, int64_t off) const { return m[s * s_stride + row * row_stride + off]; }
};

// What backward needs from forward: for each layer l, z[l] (S, N, d_out(l)) the
// pre-activations and a[l] the activations after the mask (a[L-1] is unused:
// the output is z[L-1]).
template <typename T>
struct Trace {
  int64_t S = 0, N = 0;
  std::vector<std::vector<T>> z, a;
  // Scratch of backward (dLoss/dA per layer), kept here so that repeated
  // steps reuse the memory; not part of the trace's value.
  mutable std::vector<T> g_cur, g_next;
  const T* output() const { return z.back().data(); }
  // bytes held, capacity included
  size_t bytes() const {
    size_t b = g_cur.capacity() + g_next.capacity();
    for (const auto* layers : {&z, &a})
      for (const auto& v : *layers) b += v.capacity();
    return b * sizeof(T);
  }
};

// A workspace W (with `size_t bytes() const`) kept by the calling thread for
// its next engine call made from Python: fresh buffers of N x width values lie
// above glibc's mmap threshold, came back zeroed from the kernel at every call
// and were faulted in anew (a 100-10-1 network's gradient on 4000 rows: 1.3 ms
// against 0.7 ms, 200 page faults a call; bench/engine_calls.py). A workspace
// over kKeepBytes is released when the call ends, so that one large batch does
// not stay resident. One per thread and type: calls on one thread never nest.
template <typename W>
class ThreadKept {
 public:
  static constexpr size_t kKeepBytes = size_t{32} << 20;
  ThreadKept() : w_(slot()) {}
  ~ThreadKept() {
    if (w_.bytes() > kKeepBytes) w_ = W();
  }
  ThreadKept(const ThreadKept&) = delete;
  ThreadKept& operator=(const ThreadKept&) = delete;
  W& get() { return w_; }

 private:
  static W& slot() {
    thread_local W w;
    return w;
  }
  W& w_;
};

// The trace of mlp_backward and mlp_nll_grad.
template <typename T>
using ThreadTrace = ThreadKept<Trace<T>>;

// Forward for S parameter vectors params + s * p_stride (p_stride 0: shared)
// on inputs X + s * x_stride, each (N, d_0) row-major (x_stride 0: shared).
template <typename T>
void forward(const Layout& L, Activation f, const T* params, int64_t S, int64_t p_stride, const T* X,
             int64_t N, int64_t x_stride, Trace<T>& tr, const Masks<T>* masks = nullptr);

// Outputs only (S, N, d_L) into out, the same network and arguments as forward
// without keeping a trace: row tiles of each sample run through every layer
// while in cache, tiles in parallel on the pool (prediction: S samples of N
// points; no S x N x width intermediates).
template <typename T>
void forward_outputs(const Layout& L, Activation f, const T* params, int64_t S, int64_t p_stride, const T* X,
                     int64_t N, int64_t x_stride, T* out, const Masks<T>* masks = nullptr);

// Backward through the trace of forward. g_out (S, N, d_L) = dLoss/d(output),
// destroyed (used as workspace). grad + s * g_stride receives dLoss/dparams of
// sample s (overwritten); grad_x (S, N, d_0) receives dLoss/dX when non-null.
template <typename T>
void backward(const Layout& L, Activation f, const T* params, int64_t p_stride, const T* X, int64_t x_stride,
              const Trace<T>& tr, const T* g_out, T* grad, int64_t g_stride, T* grad_x = nullptr,
              const Masks<T>* masks = nullptr);

// forward and backward for one parameter vector (S = 1, no masks) on N rows of X (N, d_0) of a
// narrow network, in row tiles of kTiledRows that run through every layer and back while in cache,
// chunks of consecutive tiles in parallel on the pool: outputs (N, d_L) when non-null, grad (P) = sum
// over rows of dLoss/dparams (each chunk's tiles accumulated into the chunk's slot in order, the slots
// then summed in chunk order; the chunks, at most 31, depend on N alone: the same values for any thread
// count), grad_x (N, d_0) when non-null; g_out (N, d_L) read only. Returns false (and
// does nothing) where the layer-at-a-time forward / backward serve better: fewer than two tiles,
// a hidden layer wider than kTiledMaxHidden or an input wider than kTiledMaxInput.
constexpr int64_t kTiledRows = 256;
constexpr int64_t kTiledMaxHidden = 128;
constexpr int64_t kTiledMaxInput = 1024;
template <typename T>
bool backward_tiled(const Layout& L, Activation f, const T* params, const T* X, int64_t N, const T* g_out, T* grad,
                    T* grad_x, T* outputs);
// The summed NLL *nll of targets y (N, Dy) under one parameter vector's outputs on X (N, d_0), and with
// grad non-null its gradient (P), in backward_tiled's row tiles (each tile's outputs go straight into the
// likelihood and back; the tiles' NLLs summed in tile order): mlp_nll_grad's path for S = 1 without masks
// on a narrow network. Returns false (doing nothing) where backward_tiled would.
template <typename T>
bool nll_grad_tiled(const Layout& L, Activation f, Likelihood lik, const T* params, const T* X, int64_t N,
                    const T* y, const T* log_noise, T* nll, T* grad);

// grad (P) = sum over the N rows of d/dparams [ g_out_r . r(x_r) + g_dot_r . (J_x r(x_r) v_r) ] for
// one parameter vector: the parameter gradient of the network's directional derivatives along the rows
// of V (N, d_0) weighted by g_dot (N, d_L), plus the VJP of g_out (N, d_L; null: none), on the rows
// of X (N, d_0). Exact, forward over reverse: the tangents V push through the layers with the
// activations' first derivatives, then both run back, the activations' second derivatives coupling
// the tangents into the values' adjoints (act_deriv2). Row tiles of kTiledRows (a quarter of that
// with a hidden layer wider than kTiledMaxHidden) in chunks as backward_tiled's: the same values for
// any thread count. (RELAX's surrogate gradient: bayesgrad/estimators/relax.py.)
template <typename T>
void mixed_vjp(const Layout& L, Activation f, const T* params, const T* X, const T* V, int64_t N, const T* g_out,
               const T* g_dot, T* grad);

// Negative log-likelihood of targets y under outputs F (S, N, K), summed over
// the N rows for each sample into nll[s] (nats). y is (N, Dy) with Dy = K
// (gaussian, bernoulli), K/2 (heteroscedastic: K = 2D, mean then log-variance
// heads) or 1 (categorical: class index as a float). log_noise (Dy) is log sigma
// per output of the homoscedastic gaussian (ignored otherwise). When g_F is
// non-null it receives dnll/dF scaled by `scale`; when g_log_noise is non-null,
// g_log_noise[s * Dy + d] receives scale * dnll[s]/dlog_noise[d].
template <typename T>
void nll(Likelihood lik, const T* F, const T* y, int64_t S, int64_t N, int64_t K, const T* log_noise, T* nll,
         T* g_F, T scale, T* g_log_noise);

// Number of target columns Dy for output width K (throws if K does not fit).
int64_t target_dim(Likelihood lik, int64_t K);

// C = op(A_s) op(B_s) (+ beta C) for s < S, through cblas ?gemm_batch_strided
// (row-major; stride 0 shares a matrix between samples).
template <typename T>
void gemm_batch(bool trans_a, bool trans_b, int64_t M, int64_t Nn, int64_t K, const T* A, int64_t lda,
                int64_t stride_a, const T* B, int64_t ldb, int64_t stride_b, T beta, T* C, int64_t ldc,
                int64_t stride_c, int64_t S);

}  // namespace mlp
}  // namespace bayesgrad
