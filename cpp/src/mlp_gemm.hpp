// The GEMM helpers of the MLP engine (internal to the core), shared by mlp.cpp and mlp_tiled.cpp:
// the 32-bit BLAS range check and the row-major product on our pool.
#pragma once
#include <cblas.h>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

#include "bayesgrad/parallel.hpp"

namespace bayesgrad {
namespace mlp_gemm {

inline void check_blas_int(int64_t v, const char* what) {
  if (v < 0 || v > std::numeric_limits<int32_t>::max())
    throw std::invalid_argument(std::string(what) + " too large for 32-bit BLAS");
}

inline void call_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint M, blasint N, blasint K, float alpha,
                      const float* A, blasint lda, const float* B, blasint ldb, float beta, float* C, blasint ldc) {
  pool_gemm(ta == CblasTrans, tb == CblasTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
inline void call_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint M, blasint N, blasint K, double alpha,
                      const double* A, blasint lda, const double* B, blasint ldb, double beta, double* C,
                      blasint ldc) {
  pool_gemm(ta == CblasTrans, tb == CblasTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace mlp_gemm
}  // namespace bayesgrad
