// Samplers of the continuous families and the location-scale log densities (cpp/include/bayesgrad/distributions.hpp
// has the layouts and word addressing): location-scale families from the
// normal / uniform element of the same index (one thread per Philox block),
// Gamma / Beta / Dirichlet from per-element sub-streams with
// samplers::gamma_draw, the CPU core's scalar loop (one thread per element,
// per row for Dirichlet); the draws agree with
// the CPU and the NumPy twin within the device libm's ulps.
#include <cfloat>

#include "bayesgrad/samplers.hpp"
#include "common.cuh"

namespace bayesgrad {
namespace cuda {

namespace {

using codes::LocScaleFamily;

// One thread per Philox block: its E elements (element i uses element i of
// the normal / uniform stream, as sample_locscale on the CPU).
template <typename T>
__global__ void locscale_kernel(T* __restrict__ out, int64_t n, const T* __restrict__ loc,
                                const T* __restrict__ scale, int64_t batch, LocScaleFamily fam, uint64_t seed,
                                uint64_t stream) {
  constexpr int64_t E = samplers::per_block<T>();
  const bool normal = samplers::locscale_uses_normal(fam);
  const int64_t nb = (n + E - 1) / E;
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < nb; b += int64_t(gridDim.x) * blockDim.x) {
    uint32_t w[4];
    philox::stream_block(seed, stream, static_cast<uint64_t>(b), w);
#pragma unroll
    for (int64_t q = 0; q < E; ++q) {
      const int64_t i = b * E + q;
      if (i >= n) break;
      const T e = normal ? samplers::normal_element<T>(w, q) : samplers::uniform_element<T>(w, q);
      const int64_t j = i % batch;
      out[i] = samplers::locscale_transform<T>(fam, loc[j], scale[j], e);
    }
  }
}

template <typename T>
__global__ void gamma_kernel(T* __restrict__ out, int64_t n, const T* __restrict__ alpha,
                             const T* __restrict__ rate, int64_t batch, uint64_t seed, uint64_t sub) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = i % batch;
    const double x = samplers::gamma_draw(static_cast<double>(alpha[j]), seed, sub, static_cast<uint64_t>(i), false);
    // clamped to the smallest normal number of T, as the core and the twin clamp
    const T tiny = sizeof(T) == 4 ? static_cast<T>(FLT_MIN) : static_cast<T>(DBL_MIN);
    const T v = static_cast<T>(x / static_cast<double>(rate[j]));
    out[i] = v < tiny ? tiny : v;
  }
}

template <typename T>
__global__ void beta_kernel(T* __restrict__ out, int64_t n, const T* __restrict__ a, const T* __restrict__ b,
                            int64_t batch, uint64_t seed, uint64_t sub) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = i % batch;
    const double la = samplers::gamma_draw(static_cast<double>(a[j]), seed, sub, 2 * static_cast<uint64_t>(i), true);
    const double lb =
        samplers::gamma_draw(static_cast<double>(b[j]), seed, sub, 2 * static_cast<uint64_t>(i) + 1, true);
    out[i] = static_cast<T>(samplers::beta_from_log_gammas(la, lb));
  }
}

// Row r = (draw, batch element) of K components; lg (rows, K) is scratch.
template <typename T>
__global__ void dirichlet_kernel(T* __restrict__ out, int64_t rows, const T* __restrict__ alpha, int64_t batch,
                                 int64_t k, uint64_t seed, uint64_t sub, double* __restrict__ lg) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < rows; r += int64_t(gridDim.x) * blockDim.x) {
    const T* ar = alpha + (r % batch) * k;
    double* lr = lg + r * k;
    for (int64_t c = 0; c < k; ++c)
      lr[c] = samplers::gamma_draw(static_cast<double>(ar[c]), seed, sub, static_cast<uint64_t>(r * k + c), true);
    samplers::dirichlet_from_log_gammas<T>(lr, k, out + r * k);
  }
}

template <typename T>
__global__ void locscale_log_prob_kernel(const T* __restrict__ x, int64_t n, const T* __restrict__ loc,
                                         const T* __restrict__ scale, int64_t batch, LocScaleFamily fam,
                                         T* __restrict__ logp, T* __restrict__ d_loc, T* __restrict__ d_scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = i % batch;
    double gl, gs;
    logp[i] = static_cast<T>(samplers::locscale_log_prob(fam, x[i], loc[j], scale[j], gl, gs));
    if (d_loc) d_loc[i] = static_cast<T>(gl);
    if (d_scale) d_scale[i] = static_cast<T>(gs);
  }
}

void check_batch(int64_t n_total, int64_t batch) {
  if (batch <= 0 || n_total % batch != 0)
    throw std::invalid_argument("output size must be a multiple of the parameters' batch size");
}

}  // namespace

template <typename T>
void sample_locscale(T* out, int64_t n_total, const T* loc, const T* scale, int64_t batch, int family,
                     uint64_t seed, uint64_t stream, Stream s) {
  const LocScaleFamily fam = codes::from_int<LocScaleFamily>(family, "family");
  check_batch(n_total, batch);
  if (n_total == 0) return;
  const int64_t blocks = (n_total + samplers::per_block<T>() - 1) / samplers::per_block<T>();
  locscale_kernel<T><<<grid_for(blocks), kThreads, 0, as_stream(s)>>>(out, n_total, loc, scale, batch, fam, seed,
                                                                        stream);
  check_launch("sample_locscale", as_stream(s));
}

template <typename T>
void locscale_log_prob(const T* x, int64_t n_total, const T* loc, const T* scale, int64_t batch, int family, T* logp,
                       T* d_loc, T* d_scale, Stream s) {
  const LocScaleFamily fam = codes::from_int<LocScaleFamily>(family, "family");
  check_batch(n_total, batch);
  if (n_total == 0) return;
  locscale_log_prob_kernel<T><<<grid_for(n_total), kThreads, 0, as_stream(s)>>>(x, n_total, loc, scale, batch, fam,
                                                                                   logp, d_loc, d_scale);
  check_launch("locscale_log_prob", as_stream(s));
}

template <typename T>
void sample_gamma(T* out, int64_t n_total, const T* alpha, const T* rate, int64_t batch, uint64_t seed,
                  uint64_t stream, Stream s) {
  check_batch(n_total, batch);
  if (n_total == 0) return;
  gamma_kernel<T><<<grid_for(n_total), kThreads, 0, as_stream(s)>>>(out, n_total, alpha, rate, batch, seed,
                                                                      stream | philox::kSubstreamBit);
  check_launch("sample_gamma", as_stream(s));
}

template <typename T>
void sample_beta(T* out, int64_t n_total, const T* a, const T* b, int64_t batch, uint64_t seed, uint64_t stream,
                 Stream s) {
  check_batch(n_total, batch);
  if (n_total == 0) return;
  beta_kernel<T><<<grid_for(n_total), kThreads, 0, as_stream(s)>>>(out, n_total, a, b, batch, seed,
                                                                     stream | philox::kSubstreamBit);
  check_launch("sample_beta", as_stream(s));
}

template <typename T>
void sample_dirichlet(T* out, int64_t n_total, const T* alpha, int64_t batch, int64_t k, uint64_t seed,
                      uint64_t stream, Stream s) {
  if (k <= 0) throw std::invalid_argument("concentration must have a non-empty last axis");
  check_batch(n_total, batch * k);
  if (n_total == 0) return;
  const int64_t rows = n_total / k;
  Scratch<double> lg(static_cast<size_t>(n_total), as_stream(s), "sample_dirichlet");
  dirichlet_kernel<T><<<grid_for(rows), kThreads, 0, as_stream(s)>>>(out, rows, alpha, batch, k, seed,
                                                                       stream | philox::kSubstreamBit, lg.p);
  check_launch("sample_dirichlet", as_stream(s));
}

#define BG_INSTANTIATE(T)                                                                                      \
  template void sample_locscale<T>(T*, int64_t, const T*, const T*, int64_t, int, uint64_t, uint64_t, Stream); \
  template void locscale_log_prob<T>(const T*, int64_t, const T*, const T*, int64_t, int, T*, T*, T*, Stream);   \
  template void sample_gamma<T>(T*, int64_t, const T*, const T*, int64_t, uint64_t, uint64_t, Stream);         \
  template void sample_beta<T>(T*, int64_t, const T*, const T*, int64_t, uint64_t, uint64_t, Stream);          \
  template void sample_dirichlet<T>(T*, int64_t, const T*, int64_t, int64_t, uint64_t, uint64_t, Stream);
BG_INSTANTIATE(float)
BG_INSTANTIATE(double)
#undef BG_INSTANTIATE

}  // namespace cuda
}  // namespace bayesgrad
