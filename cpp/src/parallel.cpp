#include "bayesgrad/parallel.hpp"

#include <stdexcept>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <thread>

namespace bayesgrad {

namespace {
int g_threads = 0;  // 0: not yet chosen
int default_threads() {
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}
}  // namespace

int num_threads() {
  if (g_threads <= 0) g_threads = default_threads();
  return g_threads;
}

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("n_threads must be >= 1, got " + std::to_string(n));
  g_threads = n;
}

bool have_openmp() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

void parallel_chunks(int64_t n_chunks, const std::function<void(int64_t)>& body) {
  if (n_chunks <= 0) return;
  const int nt = num_threads();
  if (nt == 1 || n_chunks == 1) {
    for (int64_t c = 0; c < n_chunks; ++c) body(c);
    return;
  }
#ifdef _OPENMP
  // Exceptions must not escape an OpenMP region: keep the first, rethrow after.
  std::exception_ptr err = nullptr;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (int64_t c = 0; c < n_chunks; ++c) {
    try {
      body(c);
    } catch (...) {
#pragma omp critical(bayesgrad_err)
      if (!err) err = std::current_exception();
    }
  }
  if (err) std::rethrow_exception(err);
#else
  for (int64_t c = 0; c < n_chunks; ++c) body(c);
#endif
}

}  // namespace bayesgrad
