// Vector log / exp over whole arrays (simd_math.hpp's logx8d / expx8d and their AVX2
// twins), dispatched at run time: for kernels that gather an array of arguments
// between scalar steps (argmax, rejection decisions) and map it in one pass.
//
// y[k] = log x[k] (x[k] > 0 and normal) or exp x[k] for k < m; y may be x. The vector
// exp gives 0 below -700 and e^80 above 80 (simd_math.hpp): a caller whose arguments
// can leave [-700, 80] fixes those elements with std::exp. The tail is one masked
// vector, so that an element's value does not depend on its place in the array.
#pragma once
#include <cmath>
#include <cstdint>

#include "bayesgrad/simd_math.hpp"

namespace bayesgrad {
namespace simd {

#if BG_HAVE_X86
template <bool kLog>
BG_AVX512 void map_avx512(const double* x, double* y, int64_t m) {
  for (int64_t e = 0; e < m; e += 8) {
    const __mmask8 msk = static_cast<__mmask8>(m - e >= 8 ? 0xFFu : (1u << (m - e)) - 1u);
    const __m512d v = _mm512_mask_loadu_pd(_mm512_set1_pd(1.0), msk, x + e);
    _mm512_mask_storeu_pd(y + e, msk, kLog ? logx8d(v) : expx8d(v));
  }
}

template <bool kLog>
BG_AVX2 void map_avx2(const double* x, double* y, int64_t m) {
  for (int64_t e = 0; e < m; e += 4) {
    const int64_t left = m - e;
    const __m256i msk = _mm256_setr_epi64x(-1, left > 1 ? -1 : 0, left > 2 ? -1 : 0, left > 3 ? -1 : 0);
    const __m256d one = _mm256_set1_pd(1.0);
    const __m256d v = _mm256_blendv_pd(one, _mm256_maskload_pd(x + e, msk), _mm256_castsi256_pd(msk));
    _mm256_maskstore_pd(y + e, msk, kLog ? logx4(v) : expx4(v));
  }
}
#endif

template <bool kLog>
inline void map_array(const double* x, double* y, int64_t m) {
#if BG_HAVE_X86
  if (use_avx512()) return map_avx512<kLog>(x, y, m);
  if (use_avx2()) return map_avx2<kLog>(x, y, m);
#endif
  for (int64_t e = 0; e < m; ++e) y[e] = kLog ? std::log(x[e]) : std::exp(x[e]);
}

}  // namespace simd
}  // namespace bayesgrad
