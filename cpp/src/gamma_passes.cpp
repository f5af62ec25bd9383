// The passes around the bulk Gamma draws of sample_gamma (gamma_run.hpp): the shapes and
// per-shape constants of a chunk and the last pass (division by the rate, clamping into the
// support), on the widest vector path; kept apart from the draws' engine in gamma_run.cpp.
#include <algorithm>
#include <cmath>
#include <limits>

#include "batch_runs.hpp"
#include "bayesgrad/simd_math.hpp"
#include "gamma_run.hpp"

namespace bayesgrad {
namespace {

// gamma_finish's loop, inlined into the per-path wrappers below so that the
// compiler vectorises it for their instruction sets (IEEE division, rounding
// and max: the same values on every path).
template <typename T, bool kDiv>
__attribute__((always_inline)) inline void finish_loop(const double* x, int64_t n, double rate, T* out) {
  const T tiny = std::numeric_limits<T>::min();
  for (int64_t m = 0; m < n; ++m) {
    const T v = static_cast<T>(kDiv ? x[m] / rate : x[m]);
    out[m] = v < tiny ? tiny : v;
  }
}
template <typename T, bool kDiv>
void finish_scalar(const double* x, int64_t n, double rate, T* out) { finish_loop<T, kDiv>(x, n, rate, out); }
#if BG_HAVE_X86
template <typename T, bool kDiv>
BG_AVX512 void finish_avx512(const double* x, int64_t n, double rate, T* out) { finish_loop<T, kDiv>(x, n, rate, out); }
template <typename T, bool kDiv>
BG_AVX2 void finish_avx2(const double* x, int64_t n, double rate, T* out) { finish_loop<T, kDiv>(x, n, rate, out); }
#endif

// The two loops of gamma_shapes and gamma_finish_batched over runs of consecutive parameters.
template <typename T>
__attribute__((always_inline)) inline void shapes_loop(const T* alpha, const double* ctab, int64_t lo, int64_t hi,
                                                       int64_t batch, double* __restrict al, double* __restrict cv) {
  by_runs(lo, hi, batch, [&](int64_t o, int64_t j, int64_t run) {
    for (int64_t k = 0; k < run; ++k) {
      al[o + k] = static_cast<double>(alpha[j + k]);
      cv[o + k] = ctab[j + k];
    }
  });
}
template <typename T>
__attribute__((always_inline)) inline void scaled_loop(const double* __restrict x, int64_t lo, int64_t hi,
                                                       const T* __restrict rate, int64_t batch, T* __restrict out) {
  const T tiny = std::numeric_limits<T>::min();
  by_runs(lo, hi, batch, [&](int64_t o, int64_t j, int64_t run) {
    for (int64_t k = 0; k < run; ++k) {
      const T v = static_cast<T>(x[o + k] / static_cast<double>(rate[j + k]));
      out[lo + o + k] = v < tiny ? tiny : v;
    }
  });
}
#define BG_BATCHED_ISA(ATTR, NAME)                                                                         \
  template <typename T>                                                                                    \
  ATTR void shapes_##NAME(const T* alpha, const double* ctab, int64_t lo, int64_t hi, int64_t batch, double* al, \
                          double* cv) {                                                                    \
    shapes_loop<T>(alpha, ctab, lo, hi, batch, al, cv);                                                    \
  }                                                                                                        \
  template <typename T>                                                                                    \
  ATTR void scaled_##NAME(const double* x, int64_t lo, int64_t hi, const T* rate, int64_t batch, T* out) {   \
    scaled_loop<T>(x, lo, hi, rate, batch, out);                                                           \
  }
#if BG_HAVE_X86
BG_BATCHED_ISA(BG_AVX512, avx512)
BG_BATCHED_ISA(BG_AVX2, avx2)
#endif
BG_BATCHED_ISA(, base)
#undef BG_BATCHED_ISA

}  // namespace

template <typename T>
void gamma_shapes(const T* alpha, const double* ctab, int64_t lo, int64_t hi, int64_t batch, double* al,
                  double* cv) {
#if BG_HAVE_X86
  if (simd::use_avx512()) return shapes_avx512<T>(alpha, ctab, lo, hi, batch, al, cv);
  if (simd::use_avx2()) return shapes_avx2<T>(alpha, ctab, lo, hi, batch, al, cv);
#endif
  shapes_base<T>(alpha, ctab, lo, hi, batch, al, cv);
}
template <typename T>
void gamma_finish_batched(const double* x, int64_t lo, int64_t hi, const T* rate, int64_t batch, T* out) {
#if BG_HAVE_X86
  if (simd::use_avx512()) return scaled_avx512<T>(x, lo, hi, rate, batch, out);
  if (simd::use_avx2()) return scaled_avx2<T>(x, lo, hi, rate, batch, out);
#endif
  scaled_base<T>(x, lo, hi, rate, batch, out);
}
template void gamma_shapes<float>(const float*, const double*, int64_t, int64_t, int64_t, double*, double*);
template void gamma_shapes<double>(const double*, const double*, int64_t, int64_t, int64_t, double*, double*);
template void gamma_finish_batched<float>(const double*, int64_t, int64_t, const float*, int64_t, float*);
template void gamma_finish_batched<double>(const double*, int64_t, int64_t, const double*, int64_t, double*);

template <typename T>
void gamma_finish(const double* x, int64_t n, double rate, T* out) {
  const bool div = rate != 1.0;
#if BG_HAVE_X86
  if (simd::use_avx512()) return div ? finish_avx512<T, true>(x, n, rate, out) : finish_avx512<T, false>(x, n, rate, out);
  if (simd::use_avx2()) return div ? finish_avx2<T, true>(x, n, rate, out) : finish_avx2<T, false>(x, n, rate, out);
#endif
  return div ? finish_scalar<T, true>(x, n, rate, out) : finish_scalar<T, false>(x, n, rate, out);
}
template void gamma_finish<float>(const double*, int64_t, double, float*);
template void gamma_finish<double>(const double*, int64_t, double, double*);

}  // namespace bayesgrad
