// Thread control shared by every kernel. Work is split into fixed chunks that
// do not depend on the thread count, so results are identical for any count.
#pragma once
#include <cstdint>
#include <functional>

namespace bayesgrad {

int num_threads();
void set_num_threads(int n);
bool have_openmp();

// Runs body(chunk) for chunk in [0, n_chunks) on the worker threads. The
// caller never holds the GIL here; body must not call BLAS (scipy-openblas32's
// own pthreads pool may deadlock inside an OpenMP region).
void parallel_chunks(int64_t n_chunks, const std::function<void(int64_t)>& body);

}  // namespace bayesgrad
