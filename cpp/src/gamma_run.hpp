// Bulk Gamma draws (internal to the core): samplers::gamma_draw for a run of
// consecutive gamma elements, on the widest SIMD path the CPU has.
#pragma once
#include <cmath>
#include <cstdint>

namespace bayesgrad {

// out[m] = samplers::gamma_draw(alpha_m, seed, sub, e0 + m, log_out) for m < n,
// up to rounding (vector log / exp / sin instead of libm; an accept / reject
// test within an ulp of its boundary may be decided differently), with
// alpha_m = alpha[0] when same_alpha, else alpha[m]. The AVX2 and AVX-512
// paths give bit-identical results; n is at most 2^31 - 8. c (not same_alpha;
// optional): c[m] = gamma_c(alpha_m), which the lanes otherwise compute per
// draw (a division and a square root: a fifth of a draw's time on Zen 4);
// callers with a few shapes repeated over many elements pass them from a table.
void gamma_run(const double* alpha, bool same_alpha, int64_t n, uint64_t seed, uint64_t sub, uint64_t e0,
               bool log_out, double* out, const double* c = nullptr);

// Marsaglia-Tsang's c = 1 / sqrt(9 d), d = (alpha < 1 ? alpha + 1 : alpha) - 1/3, in the operations and
// IEEE roundings of the vector lanes (the same bits).
inline double gamma_c(double alpha) {
  const double d = (alpha < 1.0 ? alpha + 1.0 : alpha) - 1.0 / 3.0;
  return 1.0 / std::sqrt(9.0 * d);
}

// out[m] = max(T(x[m] / rate), the smallest normal T) for m < n (rate 1: no
// division): sample_gamma's last pass, on the widest vector path (the core is
// compiled for baseline x86-64, where this loop ran two doubles at a time).
template <typename T>
void gamma_finish(const double* x, int64_t n, double rate, T* out);

// Elements [lo, hi) of a batch of `batch` parameters cycling along the draws (element i has
// parameter i % batch), in runs of consecutive parameters so that the loops vectorise:
// gamma_shapes: al[i - lo] = alpha[i % batch] and cv[i - lo] = ctab[i % batch];
// gamma_finish_batched: out[i] = max(T(x[i - lo] / rate[i % batch]), the smallest normal T).
template <typename T>
void gamma_shapes(const T* alpha, const double* ctab, int64_t lo, int64_t hi, int64_t batch, double* al,
                  double* cv);
template <typename T>
void gamma_finish_batched(const double* x, int64_t lo, int64_t hi, const T* rate, int64_t batch, T* out);

}  // namespace bayesgrad
