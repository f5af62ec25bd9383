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

}  // namespace bayesgrad
