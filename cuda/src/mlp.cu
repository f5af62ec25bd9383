// Per-point negative log-likelihoods of network outputs (mlp.likelihood_nll of
// the core): one thread per (sample, point), summing the shared likelihood
// terms of elementwise.hpp over the point's outputs in double, as the core's
// mlp::nll does for one row. The MLP engine itself (cuBLAS) is not written yet.
#include <cmath>

#include "bayesgrad/elementwise.hpp"
#include "common.cuh"

namespace bayesgrad {
namespace cuda {

namespace {

using mlp::Likelihood;

template <typename T>
__global__ void likelihood_nll_kernel(const T* __restrict__ F, const T* __restrict__ y, int64_t S, int64_t N,
                                      int64_t K, int64_t D, Likelihood lik, const T* __restrict__ log_noise,
                                      T* __restrict__ nll, int* __restrict__ bad_label) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < S * N; r += int64_t(gridDim.x) * blockDim.x) {
    const T* f = F + r * K;
    const T* yn = y + (r % N) * D;
    double acc = 0.0;
    switch (lik) {
      case Likelihood::kGaussian:
        for (int64_t d = 0; d < D; ++d)
          acc += mlp::gaussian_term<T>(f[d], yn[d], log_noise[d], T(1), nullptr, nullptr);
        break;
      case Likelihood::kHeteroscedasticGaussian:
        for (int64_t d = 0; d < D; ++d)
          acc += mlp::heteroscedastic_term<T>(f[d], f[D + d], yn[d], T(1), nullptr, nullptr);
        break;
      case Likelihood::kCategorical:
        if (!(yn[0] >= T(0) && yn[0] < T(K))) {  // the core raises; here the host is told after the kernel
          *bad_label = 1;
          acc = nan("");
        } else {
          acc += mlp::categorical_term<T>(f, K, static_cast<int64_t>(yn[0]), T(1), nullptr);
        }
        break;
      case Likelihood::kBernoulli:
        for (int64_t d = 0; d < D; ++d) acc += mlp::bernoulli_term<T>(f[d], yn[d], T(1), nullptr);
        break;
    }
    nll[r] = static_cast<T>(acc);
  }
}

}  // namespace

template <typename T>
void likelihood_nll(const T* F, const T* y, int64_t S, int64_t N, int64_t K, int64_t D, int likelihood,
                    const T* log_noise, T* nll, Stream st) {
  const Likelihood lik = codes::from_int<Likelihood>(likelihood, "likelihood");
  if (S * N == 0) return;
  const cudaStream_t s = as_stream(st);
  const bool labels = lik == Likelihood::kCategorical;
  Scratch<int> bad(labels ? 1 : 0, s, "likelihood_nll");
  if (labels) {
    const cudaError_t e = cudaMemsetAsync(bad.p, 0, sizeof(int), s);
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw std::runtime_error(std::string("bayesgrad._cuda: likelihood_nll: memset failed: ") + cudaGetErrorString(e));
    }
  }
  likelihood_nll_kernel<T><<<grid_for(S * N), kThreads, 0, s>>>(F, y, S, N, K, D, lik, log_noise, nll, bad.p);
  check_launch("likelihood_nll", s);
  if (!labels) return;
  // Class labels are data on the device: reporting a bad one as the core does
  // (ValueError) needs this one 4-byte copy, so categorical waits for the stream.
  int flag = 0;
  cudaError_t e = cudaMemcpyAsync(&flag, bad.p, sizeof flag, cudaMemcpyDeviceToHost, s);
  if (e == cudaSuccess) e = cudaStreamSynchronize(s);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("bayesgrad._cuda: kernel likelihood_nll failed: ") + cudaGetErrorString(e));
  }
  if (flag) throw std::invalid_argument("class label out of range [0, n_classes)");
}

template void likelihood_nll<float>(const float*, const float*, int64_t, int64_t, int64_t, int64_t, int,
                                    const float*, float*, Stream);
template void likelihood_nll<double>(const double*, const double*, int64_t, int64_t, int64_t, int64_t, int,
                                     const double*, double*, Stream);

}  // namespace cuda
}  // namespace bayesgrad
