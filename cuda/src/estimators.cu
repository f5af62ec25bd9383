// Accumulation kernels of the Monte Carlo gradient estimators
// (cpp/include/bayesgrad/estimators.hpp): the same fixed chunks of
// kEstSampleChunk rows, Welford within a chunk (one thread per (chunk,
// column)) and Chan's merge in sample order (one thread per column), through
// the shared welford_update / chan_merge. The library is built with
// --fmad=false, so the arithmetic is the CPU core's operation for operation.
#include <limits>

#include "bayesgrad/estimators.hpp"
#include "common.cuh"

namespace bayesgrad {
namespace cuda {

namespace {

enum TermKind { kPlain = 0, kScore = 1, kPathwise = 2 };

// Term (i, j): x (plain), a (i, j) * r[i] (score, r the residuals), a (i, j) *
// b (i, j) (pathwise; b null: ones). Written to terms when non-null.
template <typename T, int K>
__device__ __forceinline__ double term(const T* a, const T* b, const double* r, int64_t i, int64_t j, int64_t p,
                                       T* terms) {
  const int64_t k = i * p + j;
  double t;
  if (K == kPlain) t = static_cast<double>(a[k]);
  else if (K == kScore) t = static_cast<double>(a[k]) * r[i];
  else t = b ? static_cast<double>(a[k]) * static_cast<double>(b[k]) : static_cast<double>(a[k]);
  if (terms) terms[k] = static_cast<T>(t);
  return t;
}

template <typename T, int K>
__global__ void chunk_kernel(const T* __restrict__ a, const T* __restrict__ b, const double* __restrict__ r,
                             int64_t n, int64_t p, int64_t n_sc, double* __restrict__ pm, double* __restrict__ pm2,
                             T* __restrict__ terms) {
  for (int64_t task = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; task < n_sc * p;
       task += int64_t(gridDim.x) * blockDim.x) {
    const int64_t sc = task / p, j = task % p;  // adjacent threads: adjacent columns (coalesced)
    const int64_t i0 = sc * kEstSampleChunk, i1 = n < i0 + kEstSampleChunk ? n : i0 + kEstSampleChunk;
    double m = 0.0, m2 = 0.0;
    for (int64_t i = i0; i < i1; ++i)
      welford_update(term<T, K>(a, b, r, i, j, p, terms), 1.0 / static_cast<double>(i - i0 + 1), m, m2);
    pm[sc * p + j] = m;
    pm2[sc * p + j] = m2;
  }
}

template <typename T>
__global__ void merge_kernel(const double* __restrict__ pm, const double* __restrict__ pm2, int64_t n, int64_t p,
                             int64_t n_sc, T* __restrict__ mean, T* __restrict__ var) {
  const double nan = __longlong_as_double(0x7ff8000000000000ll);
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < p; j += int64_t(gridDim.x) * blockDim.x) {
    double cnt = 0.0, mu = 0.0, s2 = 0.0;
    for (int64_t sc = 0; sc < n_sc; ++sc) {
      const int64_t end = n < (sc + 1) * kEstSampleChunk ? n : (sc + 1) * kEstSampleChunk;
      chan_merge(static_cast<double>(end - sc * kEstSampleChunk), pm[sc * p + j], pm2[sc * p + j], cnt, mu, s2);
    }
    mean[j] = static_cast<T>(n > 0 ? mu : nan);
    var[j] = static_cast<T>(n > 1 ? s2 / (cnt - 1.0) : nan);
  }
}

// r[i] = f[i] - b_i with b from baseline, the leave-one-out mean or 0; the
// leave-one-out total is summed by one thread in sample order, as the CPU does.
template <typename T>
__global__ void residual_kernel(const T* __restrict__ f, const T* __restrict__ baseline, bool loo, int64_t n,
                                double* __restrict__ r) {
  __shared__ double total;
  if (threadIdx.x == 0) {
    double t = 0.0;
    if (loo)
      for (int64_t i = 0; i < n; ++i) t += static_cast<double>(f[i]);
    total = t;
  }
  __syncthreads();
  const double inv_nm1 = loo ? 1.0 / static_cast<double>(n - 1) : 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const double fi = static_cast<double>(f[i]);
    double b = 0.0;
    if (loo) b = (total - fi) * inv_nm1;
    else if (baseline) b = static_cast<double>(baseline[i]);
    r[i] = fi - b;
  }
}

template <typename T, int K>
void blocked(const T* a, const T* b, const double* r, int64_t n, int64_t p, T* mean, T* var, T* terms,
             cudaStream_t s, const char* name) {
  if (n < 0 || p < 0) throw std::invalid_argument("negative size");
  if (p == 0) return;
  const int64_t n_sc = n == 0 ? 0 : (n + kEstSampleChunk - 1) / kEstSampleChunk;
  Scratch<double> pm(static_cast<size_t>(n_sc * p), s, name), pm2(static_cast<size_t>(n_sc * p), s, name);
  if (n_sc > 0) {
    chunk_kernel<T, K><<<grid_for(n_sc * p), kThreads, 0, s>>>(a, b, r, n, p, n_sc, pm.p, pm2.p, terms);
    check_launch(name, s);
  }
  merge_kernel<T><<<grid_for(p), kThreads, 0, s>>>(pm.p, pm2.p, n, p, n_sc, mean, var);
  check_launch(name, s);
}

}  // namespace

template <typename T>
void column_mean_var(const T* x, int64_t n, int64_t p, T* mean, T* var, Stream s) {
  blocked<T, kPlain>(x, nullptr, nullptr, n, p, mean, var, nullptr, as_stream(s), "column_mean_var");
}

template <typename T>
void score_accumulate(const T* score, const T* f, const T* baseline, bool loo, int64_t n, int64_t p, T* mean,
                      T* var, T* terms_out, Stream s) {
  if (loo && n < 2) throw std::invalid_argument("a leave-one-out baseline needs n_samples >= 2");
  if (n < 0 || p < 0) throw std::invalid_argument("negative size");
  Scratch<double> r(static_cast<size_t>(n), as_stream(s), "score_accumulate");
  if (n > 0) {
    residual_kernel<T><<<1, kThreads, 0, as_stream(s)>>>(f, baseline, loo, n, r.p);
    check_launch("score_accumulate", as_stream(s));
  }
  blocked<T, kScore>(score, nullptr, r.p, n, p, mean, var, terms_out, as_stream(s), "score_accumulate");
}

template <typename T>
void pathwise_accumulate(const T* g, const T* jac, int64_t n, int64_t p, T* mean, T* var, T* terms_out, Stream s) {
  blocked<T, kPathwise>(g, jac, nullptr, n, p, mean, var, terms_out, as_stream(s), "pathwise_accumulate");
}

#define BG_INSTANTIATE(T)                                                                                         \
  template void column_mean_var<T>(const T*, int64_t, int64_t, T*, T*, Stream);                                   \
  template void score_accumulate<T>(const T*, const T*, const T*, bool, int64_t, int64_t, T*, T*, T*, Stream);    \
  template void pathwise_accumulate<T>(const T*, const T*, int64_t, int64_t, T*, T*, T*, Stream);
BG_INSTANTIATE(float)
BG_INSTANTIATE(double)
#undef BG_INSTANTIATE

}  // namespace cuda
}  // namespace bayesgrad
