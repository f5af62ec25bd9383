// Bulk Gamma draws (internal to the core): samplers::gamma_draw for a run of
// consecutive gamma elements, on the widest SIMD path the CPU has.
#pragma once
#include <cstdint>

namespace bayesgrad {

// out[m] = samplers::gamma_draw(alpha_m, seed, sub, e0 + m, log_out) for m < n,
// up to rounding (vector log / exp / sin instead of libm; an accept / reject
// test within an ulp of its boundary may be decided differently), with
// alpha_m = alpha[0] when same_alpha, else alpha[m]. The AVX2 and AVX-512
// paths give bit-identical results; n is at most 2^31 - 8.
void gamma_run(const double* alpha, bool same_alpha, int64_t n, uint64_t seed, uint64_t sub, uint64_t e0,
               bool log_out, double* out);

// out[m] = max(T(x[m] / rate), the smallest normal T) for m < n (rate 1: no
// division): sample_gamma's last pass, on the widest vector path (the core is
// compiled for baseline x86-64, where this loop ran two doubles at a time).
template <typename T>
void gamma_finish(const double* x, int64_t n, double rate, T* out);

}  // namespace bayesgrad
