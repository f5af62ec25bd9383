// glibc's libmvec vector exp/log against the core's hand-written vector math
// (simd_math.hpp), AVX2 and AVX-512, float32 and float64: throughput over an
// L1-resident block and the largest error against libm in double. Compiled and
// run by bench/libmvec.py; prints one JSON object.
#include <immintrin.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>

#include "bayesgrad/simd_math.hpp"

extern "C" {
__m512 _ZGVeN16v_expf(__m512);
__m512 _ZGVeN16v_logf(__m512);
__m512d _ZGVeN8v_exp(__m512d);
__m512d _ZGVeN8v_log(__m512d);
__m256 _ZGVdN8v_expf(__m256);
__m256 _ZGVdN8v_logf(__m256);
__m256d _ZGVdN4v_exp(__m256d);
__m256d _ZGVdN4v_log(__m256d);
}

using namespace bayesgrad::simd;
constexpr int kN = 4096, kReps = 20000;

template <typename T, typename F>
double time_ns(std::vector<T>& x, std::vector<T>& y, F body) {
  double best = 1e30;
  for (int trial = 0; trial < 5; ++trial) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < kReps / 5; ++r) body(x.data(), y.data());
    const auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double, std::nano>(t1 - t0).count() / (kReps / 5) / kN);
  }
  return best;
}

template <typename T>
double max_rel_err(const std::vector<T>& x, const std::vector<T>& y, double (*ref)(double)) {
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double r = ref(static_cast<double>(x[i]));
    worst = std::max(worst, std::abs((static_cast<double>(y[i]) - r) / r));
  }
  return worst;
}

#define CASE(name, T, W, LOAD, STORE, FN, lo, hi, REF)                                              \
  BG_AVX512 void run_##name(bool first) {                                                           \
    std::vector<T> x(kN), y(kN);                                                                    \
    for (int i = 0; i < kN; ++i) x[i] = static_cast<T>(lo + (hi - lo) * (i + 0.5) / kN);            \
    auto body = [](T* a, T* b) __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma"))) { \
      for (int i = 0; i < kN; i += W) STORE(b + i, FN(LOAD(a + i)));                               \
    };                                                                                              \
    const double ns = time_ns(x, y, body);                                                          \
    std::printf("%s\"%s\": {\"ns_per_element\": %.4f, \"max_rel_err\": %.3g}", first ? "" : ", ", #name, ns, \
                max_rel_err(x, y, REF));                                                            \
  }

static double ref_exp(double v) { return std::exp(v); }
static double ref_log(double v) { return std::log(v); }

CASE(expf_libmvec_avx512, float, 16, _mm512_loadu_ps, _mm512_storeu_ps, _ZGVeN16v_expf, -80.0, 80.0, ref_exp)
CASE(expf_core_avx512, float, 16, _mm512_loadu_ps, _mm512_storeu_ps, expx16, -80.0, 80.0, ref_exp)
CASE(expf_libmvec_avx2, float, 8, _mm256_loadu_ps, _mm256_storeu_ps, _ZGVdN8v_expf, -80.0, 80.0, ref_exp)
CASE(expf_core_avx2, float, 8, _mm256_loadu_ps, _mm256_storeu_ps, expx8, -80.0, 80.0, ref_exp)
CASE(logf_libmvec_avx512, float, 16, _mm512_loadu_ps, _mm512_storeu_ps, _ZGVeN16v_logf, 1e-6, 1e3, ref_log)
CASE(logf_core_avx512, float, 16, _mm512_loadu_ps, _mm512_storeu_ps, logx16, 1e-6, 1e3, ref_log)
CASE(exp_libmvec_avx512, double, 8, _mm512_loadu_pd, _mm512_storeu_pd, _ZGVeN8v_exp, -700.0, 80.0, ref_exp)
CASE(exp_core_avx512, double, 8, _mm512_loadu_pd, _mm512_storeu_pd, expx8d, -700.0, 80.0, ref_exp)
CASE(log_libmvec_avx512, double, 8, _mm512_loadu_pd, _mm512_storeu_pd, _ZGVeN8v_log, 1e-6, 1e3, ref_log)
CASE(log_core_avx512, double, 8, _mm512_loadu_pd, _mm512_storeu_pd, logx8d, 1e-6, 1e3, ref_log)

int main() {
  if (!cpu_has_avx512()) {
    std::printf("{\"error\": \"CPU without AVX-512\"}\n");
    return 0;
  }
  std::printf("{");
  run_expf_libmvec_avx512(true);
  run_expf_core_avx512(false);
  run_expf_libmvec_avx2(false);
  run_expf_core_avx2(false);
  run_logf_libmvec_avx512(false);
  run_logf_core_avx512(false);
  run_exp_libmvec_avx512(false);
  run_exp_core_avx512(false);
  run_log_libmvec_avx512(false);
  run_log_core_avx512(false);
  std::printf("}\n");
}
