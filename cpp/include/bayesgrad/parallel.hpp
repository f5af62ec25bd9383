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

}  // namespace bayesgrad
