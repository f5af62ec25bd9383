// decompose and point_scores (cpp/include/bayesgrad/metrics.hpp) on the GPU.
// decompose: one thread per
// (point, class) accumulates over the samples in sample order with the shared
// exp_floored / entropy_accumulate, one thread per point finishes with
// decompose_point, and one thread per (sample, point) checks its row sum.
#include <cstring>

#include "bayesgrad/metrics.hpp"
#include "common.cuh"

namespace bayesgrad {
namespace cuda {

namespace {

template <typename T>
__global__ void accumulate_kernel(const T* __restrict__ lp, int64_t S, int64_t N, int64_t C, T* __restrict__ ps,
                                  T* __restrict__ en) {
  const int64_t L = N * C;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < L; k += int64_t(gridDim.x) * blockDim.x) {
    T a = 0, b = 0;
    for (int64_t s = 0; s < S; ++s) {
      const T x = lp[s * L + k];
      entropy_accumulate(x, exp_floored(x), a, b);
    }
    ps[k] = a;
    en[k] = b;
  }
}

template <typename T>
__global__ void finish_kernel(const T* __restrict__ ps, const T* __restrict__ en, int64_t N, int64_t C, T invS,
                              T* __restrict__ total, T* __restrict__ aleatoric, T* __restrict__ epistemic) {
  for (int64_t n = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; n < N; n += int64_t(gridDim.x) * blockDim.x)
    decompose_point(ps + n * C, en + n * C, C, invS, total[n], aleatoric[n], epistemic[n]);
}

// worst = max over rows of |sum_c exp(lp) - 1| as the bits of a non-negative
// double: their unsigned order is the numeric order, and a NaN (after fabs)
// sorts above +inf, so a NaN row wins as on the CPU.
template <typename T>
__global__ void deviation_kernel(const T* __restrict__ lp, int64_t rows, int64_t C,
                                 unsigned long long* __restrict__ worst) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < rows; r += int64_t(gridDim.x) * blockDim.x) {
    T sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += exp_floored(lp[r * C + c]);
    const double d = fabs(static_cast<double>(sum) - 1.0);
    atomicMax(worst, static_cast<unsigned long long>(__double_as_longlong(d)));
  }
}

// point_scores: one thread per point accumulates its C per-class sums over
// the samples (argmax counts or sum p; for mean std the shifted double sums of
// mean_std_accumulate) in scratch rows, in sample order as the CPU does, then
// point_score_finish or mean_std_finish.
template <typename T>
__global__ void point_scores_kernel(const T* __restrict__ lp, int64_t S, int64_t N, int64_t C, codes::PointScore kind,
                                    T invS, T* __restrict__ a, double* __restrict__ d2, T* __restrict__ out) {
  for (int64_t n = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; n < N; n += int64_t(gridDim.x) * blockDim.x) {
    T* an = a + n * C;
    if (kind == codes::PointScore::kMeanStd) {
      double* da = d2 + 2 * n * C;
      double* db = da + C;
      const T* x0 = lp + n * C;
      for (int64_t c = 0; c < C; ++c) {
        an[c] = exp_floored(x0[c]);  // the shift p0
        da[c] = 0.0;
        db[c] = 0.0;
      }
      for (int64_t s = 1; s < S; ++s) {
        const T* x = lp + (s * N + n) * C;
        for (int64_t c = 0; c < C; ++c)
          mean_std_accumulate(static_cast<double>(exp_floored(x[c])) - static_cast<double>(an[c]), da[c], db[c]);
      }
      out[n] = mean_std_finish<T>(da, db, C, 1.0 / static_cast<double>(S));
      continue;
    }
    for (int64_t c = 0; c < C; ++c) an[c] = T(0);
    for (int64_t s = 0; s < S; ++s) {
      const T* x = lp + (s * N + n) * C;
      if (kind == codes::PointScore::kVariationRatios) {
        an[row_argmax(x, C)] += T(1);
        continue;
      }
      for (int64_t c = 0; c < C; ++c) an[c] += exp_floored(x[c]);
    }
    out[n] = point_score_finish(kind, an, C, invS);
  }
}

// Enqueues the row-sum check of lp (S*N rows of C) and returns the deviation
// after one 8-byte copy (the stream is synchronised).
template <typename T>
double deviation(const T* lp, int64_t rows, int64_t C, cudaStream_t s, const char* name) {
  Scratch<unsigned long long> worst(1, s, name);
  cudaError_t e = cudaMemsetAsync(worst.p, 0, sizeof(unsigned long long), s);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("bayesgrad._cuda: ") + name + ": memset failed: " + cudaGetErrorString(e));
  }
  deviation_kernel<T><<<grid_for(rows), kThreads, 0, s>>>(lp, rows, C, worst.p);
  check_launch(name, s);
  unsigned long long bits = 0;
  e = cudaMemcpyAsync(&bits, worst.p, sizeof bits, cudaMemcpyDeviceToHost, s);
  if (e == cudaSuccess) e = cudaStreamSynchronize(s);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("bayesgrad._cuda: kernel ") + name + " failed: " + cudaGetErrorString(e));
  }
  double d;
  static_assert(sizeof d == sizeof bits, "64-bit double");
  memcpy(&d, &bits, sizeof d);
  return d;
}

}  // namespace

template <typename T>
double point_scores(const T* lp, int64_t S, int64_t N, int64_t C, int kind, T* out, Stream st) {
  const codes::PointScore k = codes::from_int<codes::PointScore>(kind, "kind");
  if (S < 1 || N < 1 || C < 1) throw std::invalid_argument("log_probs must have shape (S, N, C) with S, N, C >= 1");
  const cudaStream_t s = as_stream(st);
  Scratch<T> a(static_cast<size_t>(N * C), s, "point_scores");
  Scratch<double> d2(k == codes::PointScore::kMeanStd ? static_cast<size_t>(2 * N * C) : 0, s, "point_scores");
  point_scores_kernel<T><<<grid_for(N), kThreads, 0, s>>>(lp, S, N, C, k, T(1) / static_cast<T>(S), a.p, d2.p, out);
  check_launch("point_scores", s);
  return deviation<T>(lp, S * N, C, s, "point_scores");
}

template <typename T>
double decompose(const T* lp, int64_t S, int64_t N, int64_t C, T* total, T* aleatoric, T* epistemic, Stream st) {
  if (S < 1 || N < 1 || C < 1) throw std::invalid_argument("log_probs must have shape (S, N, C) with S, N, C >= 1");
  const cudaStream_t s = as_stream(st);
  Scratch<T> ps(static_cast<size_t>(N * C), s, "decompose"), en(static_cast<size_t>(N * C), s, "decompose");
  accumulate_kernel<T><<<grid_for(N * C), kThreads, 0, s>>>(lp, S, N, C, ps.p, en.p);
  check_launch("decompose", s);
  finish_kernel<T><<<grid_for(N), kThreads, 0, s>>>(ps.p, en.p, N, C, T(1) / static_cast<T>(S), total, aleatoric,
                                                    epistemic);
  check_launch("decompose", s);
  // The deviation is decompose's return value (as in the CPU core), so this waits for the stream.
  return deviation<T>(lp, S * N, C, s, "decompose");
}

template double decompose<float>(const float*, int64_t, int64_t, int64_t, float*, float*, float*, Stream);
template double decompose<double>(const double*, int64_t, int64_t, int64_t, double*, double*, double*, Stream);
template double point_scores<float>(const float*, int64_t, int64_t, int64_t, int, float*, Stream);
template double point_scores<double>(const double*, int64_t, int64_t, int64_t, int, double*, Stream);

}  // namespace cuda
}  // namespace bayesgrad
