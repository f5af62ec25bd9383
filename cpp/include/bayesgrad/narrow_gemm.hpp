// GEMMs with one narrow dimension (cpp/src/narrow_gemm.cpp): pool_gemm and the
// MLP engine's per-sample products try these before OpenBLAS.
#pragma once
#include <cstdint>

namespace bayesgrad {

// C (M x N, row-major, ldc) = alpha op(A) op(B) + beta C (C not read when beta
// is 0) when the shape is one the narrow kernels take (a weight gradient A^T B
// with M <= 16 or with N <= 16; N at most two 64-byte vectors), on the pool's threads
// when `parallel`; returns false without touching C otherwise. Values are the
// same for every thread count.
template <typename T>
bool narrow_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                 const T* B, int64_t ldb, T beta, T* C, int64_t ldc, bool parallel);

}  // namespace bayesgrad
