// The Bernoulli log probability x ln p + (1 - x) ln(1 - p) in one pass over x (distributions.hpp), with
// ln p and ln(1 - p) per coordinate from the caller (its softplus forms).
//
// Why a kernel: NumPy needs four passes and two temporaries of x's size for the two products (x = 1 must give
// ln p exactly, x = 0 ln(1 - p), also where the other is -inf), which made the family's log_prob about as fast
// as the formula a user would write; here one pass per run of consecutive parameters, the ends chosen by
// selects (no product with an infinite log), vectorised for each ISA. The twin is
// _numpy/_densities.py's bernoulli_log_prob.
#include <algorithm>
#include <cstdint>

#include "bayesgrad/distributions.hpp"
#include "bayesgrad/parallel.hpp"
#include "bayesgrad/simd_math.hpp"
#include "batch_runs.hpp"

namespace bayesgrad {

namespace {

constexpr int64_t kChunk = int64_t{1} << 15;  // elements per parallel chunk (fixed)

template <typename T>
__attribute__((always_inline)) inline void bernoulli_run(const T* __restrict x, const T* __restrict lp1,
                                                         const T* __restrict lp0, int64_t run, T* __restrict out) {
  for (int64_t k = 0; k < run; ++k) {
    const T xi = x[k], a = lp1[k], b = lp0[k];
    const T mid = xi * a + (T(1) - xi) * b;
    out[k] = xi == T(1) ? a : (xi == T(0) ? b : mid);
  }
}

#define BG_BERNOULLI_ISA(ATTR, NAME)                                                                    \
  template <typename T>                                                                                 \
  ATTR void bernoulli_rows_##NAME(const T* x, const T* lp1, const T* lp0, int64_t lo, int64_t hi,       \
                                  int64_t batch, T* out) {                                              \
    by_runs(lo, hi, batch, [&](int64_t o, int64_t j, int64_t run) {                                     \
      bernoulli_run<T>(x + lo + o, lp1 + j, lp0 + j, run, out + lo + o);                                \
    });                                                                                                 \
  }
#if BG_HAVE_X86
BG_BERNOULLI_ISA(BG_AVX512, avx512)
BG_BERNOULLI_ISA(BG_AVX2, avx2)
#endif
BG_BERNOULLI_ISA(, base)
#undef BG_BERNOULLI_ISA

}  // namespace

template <typename T>
void bernoulli_log_prob(const T* x, int64_t n_total, const T* lp1, const T* lp0, int64_t batch, T* out) {
  auto rows = bernoulli_rows_base<T>;
#if BG_HAVE_X86
  if (simd::use_avx512()) rows = bernoulli_rows_avx512<T>;
  else if (simd::use_avx2()) rows = bernoulli_rows_avx2<T>;
#endif
  chunked(n_total, kChunk, [&](int64_t lo, int64_t hi) { rows(x, lp1, lp0, lo, hi, batch, out); });
}

template void bernoulli_log_prob<float>(const float*, int64_t, const float*, const float*, int64_t, float*);
template void bernoulli_log_prob<double>(const double*, int64_t, const double*, const double*, int64_t, double*);

}  // namespace bayesgrad
