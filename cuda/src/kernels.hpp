// Host entry points of the CUDA kernels (cuda/src/*.cu), called by the
// bindings (cuda/bindings/module.cpp). Pointers are device pointers; `stream`
// is a cudaStream_t passed as a void* so that this header needs no CUDA
// headers. Every function only enqueues work on `stream` (no host round-trip),
// except decompose and point_scores, which return a value (metrics.cu), and
// categorical likelihood_nll, which checks the labels (mlp.cu). Launch failures
// throw std::runtime_error naming the kernel (RuntimeError in Python).
// The conventions (layouts, word addressing, chunking) are those of the C++
// core's headers in cpp/include/bayesgrad/, whose per-element functions these
// kernels call (hd.hpp).
#pragma once
#include <cstdint>

namespace bayesgrad {
namespace cuda {

using Stream = void*;

// random.cu: element offset+i of the (seed, stream) uniform / normal stream into out[i].
template <typename T>
void fill_uniform(T* out, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset, Stream s);
template <typename T>
void fill_normal(T* out, int64_t n, uint64_t seed, uint64_t stream, uint64_t offset, Stream s);

// distributions.cu: the samplers of cpp/include/bayesgrad/distributions.hpp.
template <typename T>
void sample_locscale(T* out, int64_t n_total, const T* loc, const T* scale, int64_t batch, int family,
                     uint64_t seed, uint64_t stream, Stream s);
// log p(x) and d/dloc, d/dscale (nullable) for x (n, B); samplers::locscale_log_prob per element.
template <typename T>
void locscale_log_prob(const T* x, int64_t n_total, const T* loc, const T* scale, int64_t batch, int family, T* logp,
                       T* d_loc, T* d_scale, Stream s);
template <typename T>
void sample_gamma(T* out, int64_t n_total, const T* alpha, const T* rate, int64_t batch, uint64_t seed,
                  uint64_t stream, Stream s);
template <typename T>
void sample_beta(T* out, int64_t n_total, const T* a, const T* b, int64_t batch, uint64_t seed, uint64_t stream,
                 Stream s);
template <typename T>
void sample_dirichlet(T* out, int64_t n_total, const T* alpha, int64_t batch, int64_t k, uint64_t seed,
                      uint64_t stream, Stream s);

// estimators.cu: cpp/include/bayesgrad/estimators.hpp, the same chunking.
template <typename T>
void column_mean_var(const T* x, int64_t n, int64_t p, T* mean, T* var, Stream s);
template <typename T>
void score_accumulate(const T* score, const T* f, const T* baseline, bool loo, int64_t n, int64_t p, T* mean,
                      T* var, T* terms_out, Stream s);
template <typename T>
void pathwise_accumulate(const T* g, const T* jac, int64_t n, int64_t p, T* mean, T* var, T* terms_out, Stream s);

// metrics.cu: cpp/include/bayesgrad/metrics.hpp's decompose; returns the
// largest |sum_c p - 1| (NaN if any row sum is NaN) after synchronising `s`.
template <typename T>
double decompose(const T* log_probs, int64_t S, int64_t N, int64_t C, T* total, T* aleatoric, T* epistemic,
                 Stream s);

// metrics.cu: metrics.hpp's point_scores (bound as acquisition.point_scores, as
// in _core); returns the deviation as decompose does.
template <typename T>
double point_scores(const T* log_probs, int64_t S, int64_t N, int64_t C, int kind, T* out, Stream s);

// mlp.cu: per-point NLL (S, N) of outputs F (S, N, K) for targets y (N, D), D
// checked by the caller (the core's mlp::target_dim); the likelihood terms of
// elementwise.hpp. A categorical label out of range is a std::invalid_argument
// raised after the kernel (the stream is synchronised for categorical only).
template <typename T>
void likelihood_nll(const T* F, const T* y, int64_t S, int64_t N, int64_t K, int64_t D, int likelihood,
                    const T* log_noise, T* nll, Stream s);

// device.cu
int device_count();
int runtime_version();
int driver_version();
int current_device();
// Throws std::invalid_argument naming `what` unless ptr is device (or managed)
// memory of the current device.
void check_device_pointer(const void* ptr, const char* what);

}  // namespace cuda
}  // namespace bayesgrad
