// MLP forward/backward over S parameter samples and the likelihoods' NLL and
// gradients. GEMMs go through pool_gemm (parallel.hpp: one BLAS thread, large
// products as fixed tiles on our pool, never on OpenBLAS's own threads); the
// elementwise passes are cheap and stay serial; forward_outputs runs its row
// tiles on the pool. The passes of one network through every layer and back in
// row tiles (backward_tiled, nll_grad_tiled, mixed_vjp) are in mlp_tiled.cpp.
#include "bayesgrad/mlp.hpp"

#include <cblas.h>

#include "bayesgrad/narrow_gemm.hpp"
#include "bayesgrad/parallel.hpp"
#include "bayesgrad/simd_math.hpp"
#include "mlp_gemm.hpp"

#include <algorithm>
#include <stdexcept>
#include <vector>

namespace bayesgrad {
namespace mlp {

namespace {

using mlp_gemm::call_gemm;
using mlp_gemm::check_blas_int;

inline void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint M, blasint N, blasint K, float alpha,
                      const float* A, blasint lda, const float* B, blasint ldb, float beta, float* C, blasint ldc) {
  scipy_cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
inline void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint M, blasint N, blasint K, double alpha,
                      const double* A, blasint lda, const double* B, blasint ldb, double beta, double* C,
                      blasint ldc) {
  scipy_cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
// Below this many multiply-adds OpenBLAS runs a GEMM on one thread by itself
// (gemm_batch's small per-sample products need no thread setting).
constexpr int64_t kOpenBlasSerial = int64_t{1} << 18;
constexpr int64_t kTileWork = int64_t{1} << 21;  // pool_gemm's tiling threshold
}  // namespace

Layout::Layout(const int64_t* sz, int64_t n_sizes) {
  if (n_sizes < 2) throw std::invalid_argument("sizes must list at least an input and an output width");
  sizes.assign(sz, sz + n_sizes);
  int64_t off = 0;
  for (int64_t l = 0; l + 1 < n_sizes; ++l) {
    if (sizes[l] < 1 || sizes[l + 1] < 1) throw std::invalid_argument("every layer width must be >= 1");
    w_off.push_back(off);
    off += sizes[l + 1] * sizes[l];
    b_off.push_back(off);
    off += sizes[l + 1];
  }
  n_params = off;
  for (int64_t l = 1; l + 1 < n_sizes; ++l) n_hidden_units += sizes[l];
  max_width = *std::max_element(sizes.begin(), sizes.end());
  check_blas_int(n_params, "number of parameters");
}

int64_t Layout::mask_off(int64_t l) const {
  int64_t off = 0;
  for (int64_t k = 0; k < l; ++k) off += sizes[k + 1];
  return off;
}

int64_t target_dim(Likelihood lik, int64_t K) {
  switch (lik) {
    case Likelihood::kHeteroscedasticGaussian:
      if (K % 2 != 0)
        throw std::invalid_argument("heteroscedastic_gaussian needs an even output width (mean, log-variance)");
      return K / 2;
    case Likelihood::kCategorical:
      if (K < 2) throw std::invalid_argument("categorical needs at least 2 outputs");
      return 1;
    default: return K;
  }
}

namespace {
// The vector tanh and sigmoid of simd_math.hpp over arrays; the tails go
// through the vector functions too (padded / masked), so that an element's
// value does not depend on its position in the array.
#if BG_HAVE_X86
template <bool kTanh>
BG_AVX2 inline __m256 act8(__m256 x) {
  if constexpr (kTanh) return simd::tanhx8(x);
  return simd::sigmoidx8(x);
}

template <bool kTanh>
BG_AVX2 inline __m256d act4(__m256d x) {
  if constexpr (kTanh) return simd::tanhx4(x);
  return simd::sigmoidx4(x);
}

template <bool kTanh>
BG_AVX2 void act_avx2(const float* z, float* a, int64_t n) {
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) _mm256_storeu_ps(a + k, act8<kTanh>(_mm256_loadu_ps(z + k)));
  if (k == n) return;
  float buf[8] = {};
  std::copy(z + k, z + n, buf);
  _mm256_storeu_ps(buf, act8<kTanh>(_mm256_loadu_ps(buf)));
  std::copy(buf, buf + (n - k), a + k);
}

template <bool kTanh>
BG_AVX2 void act_avx2(const double* z, double* a, int64_t n) {
  int64_t k = 0;
  for (; k + 4 <= n; k += 4) _mm256_storeu_pd(a + k, act4<kTanh>(_mm256_loadu_pd(z + k)));
  if (k == n) return;
  double buf[4] = {};
  std::copy(z + k, z + n, buf);
  _mm256_storeu_pd(buf, act4<kTanh>(_mm256_loadu_pd(buf)));
  std::copy(buf, buf + (n - k), a + k);
}

template <bool kTanh>
BG_AVX512 void act_avx512(const float* z, float* a, int64_t n) {
  for (int64_t k = 0; k < n; k += 16) {
    const __mmask16 m = n - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - k)) - 1);
    const __m512 x = _mm512_maskz_loadu_ps(m, z + k);
    _mm512_mask_storeu_ps(a + k, m, kTanh ? simd::tanhx16(x) : simd::sigmoidx16(x));
  }
}

template <bool kTanh>
BG_AVX512 void act_avx512(const double* z, double* a, int64_t n) {
  for (int64_t k = 0; k < n; k += 8) {
    const __mmask8 m = n - k >= 8 ? __mmask8(0xFF) : __mmask8((1u << (n - k)) - 1);
    const __m512d x = _mm512_maskz_loadu_pd(m, z + k);
    _mm512_mask_storeu_pd(a + k, m, kTanh ? simd::tanhx8d(x) : simd::sigmoidx8d(x));
  }
}
#endif

template <bool kTanh, typename T>
void act_dispatch(const T* z, T* a, int64_t n) {
#if BG_HAVE_X86
  if (simd::use_avx512()) return act_avx512<kTanh>(z, a, n);
  if (simd::use_avx2()) return act_avx2<kTanh>(z, a, n);
#endif
  const Activation f = kTanh ? Activation::kTanh : Activation::kSigmoid;
  for (int64_t k = 0; k < n; ++k) a[k] = act(f, z[k]);
}
}  // namespace

void tanh_array(const float* z, float* a, int64_t n) { act_dispatch<true>(z, a, n); }
void tanh_array(const double* z, double* a, int64_t n) { act_dispatch<true>(z, a, n); }
void sigmoid_array(const float* z, float* a, int64_t n) { act_dispatch<false>(z, a, n); }
void sigmoid_array(const double* z, double* a, int64_t n) { act_dispatch<false>(z, a, n); }

template <typename T>
void gemm_batch(bool trans_a, bool trans_b, int64_t M, int64_t Nn, int64_t K, const T* A, int64_t lda,
                int64_t stride_a, const T* B, int64_t ldb, int64_t stride_b, T beta, T* C, int64_t ldc,
                int64_t stride_c, int64_t S) {
  if (S <= 0 || M <= 0 || Nn <= 0) return;
  const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
  for (int64_t v : {M, Nn, K, lda, ldb, ldc, stride_a, stride_b, stride_c, S}) check_blas_int(v, "GEMM dimension");
  if (S == 1) {
    call_gemm(ta, tb, M, Nn, K, T(1), A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // The S products on the pool, one per chunk on one BLAS thread (OpenBLAS's
  // ?gemm_batch_strided hands them to its own threads: ~10x slower than a loop
  // for a small MLP's products on 2 shared cores).
  const auto one = [&](int64_t s) {
    if (narrow_gemm<T>(ta == CblasTrans, tb == CblasTrans, M, Nn, K, T(1), A + s * stride_a, lda, B + s * stride_b,
                       ldb, beta, C + s * stride_c, ldc, false))
      return;
    blas_gemm(ta, tb, M, Nn, K, T(1), A + s * stride_a, lda, B + s * stride_b, ldb, beta, C + s * stride_c, ldc);
  };
  if (M * Nn * K * S >= kTileWork) {
    SerialBlas serial;
    parallel_chunks(S, one);
  } else if (M * Nn * K >= kOpenBlasSerial) {
    SerialBlas serial;
    for (int64_t s = 0; s < S; ++s) one(s);
  } else {
    for (int64_t s = 0; s < S; ++s) one(s);
  }
}

template <typename T>
void forward(const Layout& L, Activation f, const T* params, int64_t S, int64_t p_stride, const T* X, int64_t N,
             int64_t x_stride, Trace<T>& tr, const Masks<T>* masks) {
  const int64_t nl = L.n_layers();
  tr.S = S;
  tr.N = N;
  tr.z.resize(nl);
  tr.a.resize(nl);
  for (int64_t l = 0; l < nl; ++l) {
    const int64_t din = L.d_in(l), dout = L.d_out(l);
    std::vector<T>& z = tr.z[l];
    z.resize(static_cast<size_t>(S * N * dout));
    // z = bias, then z += A W^T (beta = 1) saves a pass over z.
    for (int64_t s = 0; s < S; ++s) {
      const T* b = params + s * p_stride + L.b_off[l];
      T* zs = z.data() + s * N * dout;
      for (int64_t n = 0; n < N; ++n) std::copy(b, b + dout, zs + n * dout);
    }
    const T* A = l == 0 ? X : tr.a[l - 1].data();
    const int64_t a_stride = l == 0 ? x_stride : N * din;
    gemm_batch<T>(false, true, N, dout, din, A, din, a_stride, params + L.w_off[l], din, p_stride, T(1), z.data(),
                  dout, N * dout, S);
    if (l + 1 == nl) break;
    std::vector<T>& a = tr.a[l];
    a.resize(z.size());
    act_array(f, z.data(), a.data(), S * N * dout);
    const int64_t moff = masks ? L.mask_off(l) : 0;
    if (masks)
      for (int64_t s = 0; s < S; ++s)
        for (int64_t n = 0; n < N; ++n) {
          const int64_t r = (s * N + n) * dout;
          for (int64_t j = 0; j < dout; ++j) a[r + j] *= masks->at(s, n, moff + j);
        }
  }
}

template <typename T>
void backward(const Layout& L, Activation f, const T* params, int64_t p_stride, const T* X, int64_t x_stride,
              const Trace<T>& tr, const T* g_out, T* grad, int64_t g_stride, T* grad_x, const Masks<T>* masks) {
  const int64_t nl = L.n_layers();
  const int64_t S = tr.S, N = tr.N;
  std::vector<T>& buf = tr.g_cur;  // dLoss/dz of the layer below
  const T* G = g_out;  // read only: each layer below writes its own into the trace's scratch
  for (int64_t l = nl - 1; l >= 0; --l) {
    const int64_t din = L.d_in(l), dout = L.d_out(l);
    const T* A = l == 0 ? X : tr.a[l - 1].data();
    const int64_t a_stride = l == 0 ? x_stride : N * din;
    // dW_s = G_s^T A_s  (dout x din); grad null: the input gradient alone
    if (grad) {
      gemm_batch<T>(true, false, dout, din, N, G, dout, N * dout, A, din, a_stride, T(0), grad + L.w_off[l], din,
                    g_stride, S);
      for (int64_t s = 0; s < S; ++s) {
        T* db = grad + s * g_stride + L.b_off[l];
        std::fill(db, db + dout, T(0));
        const T* Gs = G + s * N * dout;
        for (int64_t n = 0; n < N; ++n)
          for (int64_t j = 0; j < dout; ++j) db[j] += Gs[n * dout + j];
      }
    }
    if (l == 0 && grad_x == nullptr) break;
    // dA_s = G_s W_s  (N x din)
    std::vector<T>& dA = tr.g_next;
    if (l > 0) dA.resize(static_cast<size_t>(S * N * din));  // layer 0 writes grad_x
    T* dst = l == 0 ? grad_x : dA.data();
    gemm_batch<T>(false, false, N, din, dout, G, dout, N * dout, params + L.w_off[l], din, p_stride, T(0), dst, din,
                  N * din, S);
    if (l == 0) break;
    const std::vector<T>& z = tr.z[l - 1];
    const std::vector<T>& a = tr.a[l - 1];
    if (!masks) {
      mul_act_deriv_array(f, z.data(), a.data(), dA.data(), S * N * din);
      buf.swap(dA);
      G = buf.data();
      continue;
    }
    const int64_t moff = L.mask_off(l - 1);
    for (int64_t s = 0; s < S; ++s)
      for (int64_t n = 0; n < N; ++n) {
        const int64_t r = (s * N + n) * din;
        for (int64_t j = 0; j < din; ++j) {
          T m = T(1);
          T av = a[r + j];
          if (masks) {
            m = masks->at(s, n, moff + j);
            // a stores f(z) * m; tanh/sigmoid derivatives need f(z) itself.
            av = m != T(0) ? av / m : act(f, z[r + j]);
          }
          dA[r + j] *= m * act_deriv(f, z[r + j], av);
        }
      }
    buf.swap(dA);
    G = buf.data();
  }
}

template <typename T>
void nll(Likelihood lik, const T* F, const T* y, int64_t S, int64_t N, int64_t K, const T* log_noise, T* out,
         T* g_F, T scale, T* g_log_noise) {
  const int64_t D = target_dim(lik, K);
  for (int64_t s = 0; s < S; ++s) {
    double acc = 0.0;
    const T* Fs = F + s * N * K;
    T* gs = g_F ? g_F + s * N * K : nullptr;
    T* gn = g_log_noise ? g_log_noise + s * D : nullptr;
    if (gn) std::fill(gn, gn + D, T(0));
    for (int64_t n = 0; n < N; ++n) {
      const T* f = Fs + n * K;
      const T* yn = y + n * D;
      T* g = gs ? gs + n * K : nullptr;
      switch (lik) {
        case Likelihood::kGaussian:
          for (int64_t d = 0; d < D; ++d)
            acc += gaussian_term<T>(f[d], yn[d], log_noise[d], scale, g ? g + d : nullptr, gn ? gn + d : nullptr);
          break;
        case Likelihood::kHeteroscedasticGaussian:
          for (int64_t d = 0; d < D; ++d)
            acc += heteroscedastic_term<T>(f[d], f[D + d], yn[d], scale, g ? g + d : nullptr, g ? g + D + d : nullptr);
          break;
        case Likelihood::kCategorical: {
          if (!(yn[0] >= T(0) && yn[0] < T(K))) throw std::invalid_argument("class label out of range [0, n_classes)");
          acc += categorical_term<T>(f, K, static_cast<int64_t>(yn[0]), scale, g);
          break;
        }
        case Likelihood::kBernoulli:
          for (int64_t d = 0; d < D; ++d) acc += bernoulli_term<T>(f[d], yn[d], scale, g ? g + d : nullptr);
          break;
      }
    }
    out[s] = static_cast<T>(acc);
  }
}

// ---------------------------------------------------------------- outputs only
// While tiles run on the pool's threads, each tile's GEMMs run on its own
// thread (SerialBlas, parallel.hpp).

template <typename T>
void forward_outputs(const Layout& L, Activation f, const T* params, int64_t S, int64_t p_stride, const T* X,
                     int64_t N, int64_t x_stride, T* out, const Masks<T>* masks) {
  const int64_t nl = L.n_layers(), K = L.d_output();
  if (S <= 0 || N <= 0) return;
  // Rows per tile: the activation buffers (rows x widest layer) of about 1 MiB
  // of values, so a tile's layers run from cache, within [128, 1024] rows so
  // that each GEMM amortises the packing of its weight matrix.
  const int64_t rows = std::min<int64_t>(N, std::clamp<int64_t>((int64_t{1} << 18) / L.max_width, 128, 1024));
  const int64_t row_tiles = (N + rows - 1) / rows;
  for (int64_t l = 0; l < nl; ++l)
    for (int64_t v : {rows, L.d_in(l), L.d_out(l)}) check_blas_int(v, "GEMM dimension");
  // One network and one input for every sample (MC dropout's masks): the first
  // layer's pre-activations are the same for all samples, formed once per tile.
  const bool shared = p_stride == 0 && x_stride == 0 && S > 1 && nl > 1;
  // z = bias + in W_l^T for R rows
  const auto layer = [&](const T* p, int64_t l, const T* in, int64_t R, T* z) {
    const int64_t din = L.d_in(l), dout = L.d_out(l);
    const T* b = p + L.b_off[l];
    for (int64_t r = 0; r < R; ++r) std::copy(b, b + dout, z + r * dout);
    call_gemm(CblasNoTrans, CblasTrans, static_cast<blasint>(R), static_cast<blasint>(dout),
              static_cast<blasint>(din), T(1), in, static_cast<blasint>(din), p + L.w_off[l],
              static_cast<blasint>(din), T(1), z, static_cast<blasint>(dout));
  };
  // Layers from l0 on for sample s, rows n0..n0+R-1, from pre-activations z0 of layer l0 - 1.
  const auto rest = [&](int64_t s, int64_t n0, int64_t R, int64_t l0, const T* z0, T* zb, T* ab) {
    const T* p = params + s * p_stride;
    const T* z = z0;
    for (int64_t l = l0;; ++l) {
      const int64_t dprev = L.d_out(l - 1);
      act_array(f, z, ab, R * dprev);  // activations overwrite the layer's input once it is read
      if (masks) {
        const int64_t moff = L.mask_off(l - 1);
        for (int64_t r = 0; r < R; ++r)
          for (int64_t j = 0; j < dprev; ++j) ab[r * dprev + j] *= masks->at(s, n0 + r, moff + j);
      }
      T* zn = l + 1 == nl ? out + (s * N + n0) * K : zb;
      layer(p, l, ab, R, zn);
      if (l + 1 == nl) return;
      z = zn;
    }
  };
  SerialBlas serial;
  if (shared && row_tiles < num_threads()) {
    // Fewer row tiles than threads (a few hundred rows, e.g. a pool's tile): the
    // tiles' first layers once, then (sample, tile) pairs in parallel, so that the
    // S masked passes still use every thread.
    std::vector<T> z0(static_cast<size_t>(N * L.d_out(0)));
    for (int64_t t = 0; t < row_tiles; ++t) {
      const int64_t n0 = t * rows, R = std::min(rows, N - n0);
      layer(params, 0, X + n0 * L.d_in(0), R, z0.data() + n0 * L.d_out(0));
    }
    parallel_chunks(S * row_tiles, [&](int64_t c) {
      const int64_t s = c / row_tiles, n0 = (c % row_tiles) * rows, R = std::min(rows, N - n0);
      thread_local std::vector<T> buf_a, buf_b;
      const size_t need = static_cast<size_t>(rows * L.max_width);
      if (buf_a.size() < need) buf_a.resize(need);
      if (buf_b.size() < need) buf_b.resize(need);
      rest(s, n0, R, 1, z0.data() + n0 * L.d_out(0), buf_b.data(), buf_a.data());
    });
    return;
  }
  parallel_chunks(shared ? row_tiles : S * row_tiles, [&](int64_t t) {
    const int64_t s0 = shared ? 0 : t / row_tiles, n0 = (t % row_tiles) * rows, R = std::min(rows, N - n0);
    thread_local std::vector<T> buf_a, buf_b, buf_z0;
    const size_t need = static_cast<size_t>(rows * L.max_width);
    if (buf_a.size() < need) buf_a.resize(need);
    if (buf_b.size() < need) buf_b.resize(need);
    const T* in = X + s0 * x_stride + n0 * L.d_in(0);
    if (nl == 1) {
      layer(params + s0 * p_stride, 0, in, R, out + (s0 * N + n0) * K);
      return;
    }
    if (!shared) {
      layer(params + s0 * p_stride, 0, in, R, buf_b.data());
      rest(s0, n0, R, 1, buf_b.data(), buf_b.data(), buf_a.data());
      return;
    }
    if (buf_z0.size() < need) buf_z0.resize(need);
    layer(params, 0, in, R, buf_z0.data());
    for (int64_t s = 0; s < S; ++s) rest(s, n0, R, 1, buf_z0.data(), buf_b.data(), buf_a.data());
  });
}

#define BG_MLP_INSTANTIATE(T)                                                                                        \
  template void gemm_batch<T>(bool, bool, int64_t, int64_t, int64_t, const T*, int64_t, int64_t, const T*, int64_t, \
                              int64_t, T, T*, int64_t, int64_t, int64_t);                                           \
  template void forward<T>(const Layout&, Activation, const T*, int64_t, int64_t, const T*, int64_t, int64_t,       \
                           Trace<T>&, const Masks<T>*);                                                             \
  template void forward_outputs<T>(const Layout&, Activation, const T*, int64_t, int64_t, const T*, int64_t,       \
                                   int64_t, T*, const Masks<T>*);                                                   \
  template void backward<T>(const Layout&, Activation, const T*, int64_t, const T*, int64_t, const Trace<T>&,       \
                            const T*, T*, int64_t, T*, const Masks<T>*);                                            \
  template void nll<T>(Likelihood, const T*, const T*, int64_t, int64_t, int64_t, const T*, T*, T*, T, T*);

BG_MLP_INSTANTIATE(float)
BG_MLP_INSTANTIATE(double)

}  // namespace mlp
}  // namespace bayesgrad
