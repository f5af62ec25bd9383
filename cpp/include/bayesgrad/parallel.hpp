// Thread control shared by every kernel. Work is split into fixed chunks that
// do not depend on the thread count, so results are identical for any count.
#pragma once
#include <cstdint>
#include <functional>

namespace bayesgrad {

int num_threads();
void set_num_threads(int n);

// Runs body(chunk) for chunk in [0, n_chunks) on the calling thread and up to
// num_threads() - 1 pool workers, which sleep when idle. The caller never
// holds the GIL here; body should not call BLAS (its own threads would
// oversubscribe the cores the pool is using). Exceptions thrown by body are
// rethrown (the first one) after every chunk has run.
void parallel_chunks(int64_t n_chunks, const std::function<void(int64_t)>& body);

// BLAS (scipy-openblas32) on one thread for the scope of an object, restored
// after: for regions whose GEMMs run on this pool's threads, where BLAS's own
// pool would compete with ours for the same cores (mlp forward tiles, the GLM
// predictive's row chunks, ensemble members on worker threads).
class SerialBlas {
 public:
  SerialBlas();
  ~SerialBlas();
  SerialBlas(const SerialBlas&) = delete;
  SerialBlas& operator=(const SerialBlas&) = delete;

 private:
  int prev_;
};

// C (M x N, row-major) = alpha op(A) op(B) + beta C through scipy-openblas32,
// never on OpenBLAS's own threads. OpenBLAS splits a product statically
// between its threads and waits for the slowest: on a shared machine a
// descheduled BLAS thread cost a scheduler time slice per call (2 cores, one
// busy process beside: a 100 x 10 x 4000 product 0.13 ms on one thread, 8-12
// ms on two; 512^3 2.3 ms vs 24 ms). From 2^21 multiply-adds the product runs
// as up to 4 fixed tiles of the larger output dimension on this pool, whose
// dynamic chunks let the caller take the tiles a late thread has not started;
// the tiles depend on the shapes only, so every thread count gives the same
// values. Products with a narrow dimension go to narrow_gemm.hpp's kernels
// instead. Used by the MLP engine and the curvature kernels.
void pool_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
               int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);
void pool_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
               int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc);

}  // namespace bayesgrad
