// A small thread pool for parallel_chunks. It replaces OpenMP because of how
// the core alternates with BLAS: libgomp's workers spin after a parallel
// region (OMP_WAIT_POLICY) and took the cores from the scipy-openblas32 and
// NumPy OpenBLAS pools that run next, and an OpenMP region ends in a barrier
// that waits for every thread, even one the OS has not yet scheduled (on a
// loaded 2-core machine two threads were many times slower than one). Here
//  - idle workers sleep on a condition variable (no spinning);
//  - the calling thread takes chunks itself from a shared counter, so a job
//    never waits for a worker that has not started: it waits only for chunks
//    that a worker has actually taken;
//  - chunks are the caller's fixed chunks, so results do not depend on which
//    thread ran which chunk.
// Nested calls (a body calling parallel_chunks) and concurrent calls from a
// second Python thread while the pool is busy run serially on their caller.
#include "bayesgrad/parallel.hpp"

#include "bayesgrad/narrow_gemm.hpp"

#include <cblas.h>

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace bayesgrad {

namespace {
int g_threads = 0;  // 0: not yet chosen
// The CPUs this process may run on (its affinity mask), not the machine's
// core count. Python replaces this at import with the full budget rule
// (environment, worker processes, cgroup quota: bayesgrad/_threads.py).
int default_threads() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

thread_local bool t_in_job = false;

struct Job {
  const std::function<void(int64_t)>* body;  // dereferenced only for chunks < n
  int64_t n;
  int max_helpers;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::atomic<int> helpers{0};
  std::mutex m;  // guards err and the completion wait
  std::condition_variable finished;
  std::exception_ptr err;

  // Runs chunks until none are left; the thread that completes the last one
  // wakes the caller.
  void work() {
    t_in_job = true;
    for (;;) {
      const int64_t c = next.fetch_add(1);
      if (c >= n) break;
      try {
        (*body)(c);
      } catch (...) {
        std::lock_guard<std::mutex> lk(m);
        if (!err) err = std::current_exception();
      }
      if (done.fetch_add(1) + 1 == n) {
        std::lock_guard<std::mutex> lk(m);
        finished.notify_all();
      }
    }
    t_in_job = false;
  }
};

class Pool {
 public:
  // Runs job on the caller and up to job->max_helpers workers.
  void run(const std::shared_ptr<Job>& job) {
    grow(job->max_helpers);
    {
      std::lock_guard<std::mutex> lk(m_);
      job_ = job;
      ++generation_;
    }
    wake_.notify_all();
    job->work();
    {
      std::unique_lock<std::mutex> lk(job->m);
      job->finished.wait(lk, [&] { return job->done.load() == job->n; });
    }
    std::lock_guard<std::mutex> lk(m_);
    job_.reset();
  }

  std::mutex busy;  // one job at a time

 private:
  void grow(int n) {
    std::lock_guard<std::mutex> lk(m_);
    while (static_cast<int>(workers_.size()) < n) workers_.emplace_back([this] { loop(); });
  }

  void loop() {
    uint64_t seen = 0;
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lk(m_);
        wake_.wait(lk, [&] { return generation_ != seen; });
        seen = generation_;
        job = job_;
      }
      // A worker that wakes late finds the job gone or its chunks taken.
      if (job && job->helpers.fetch_add(1) < job->max_helpers) job->work();
    }
  }

  std::mutex m_;
  std::condition_variable wake_;
  std::vector<std::thread> workers_;
  std::shared_ptr<Job> job_;
  uint64_t generation_ = 0;
};

// Never destroyed: joining threads from a static destructor at interpreter
// exit can hang. After fork() the child has none of the parent's workers, so
// it starts a fresh pool (the old one is leaked there on purpose).
Pool* g_pool = nullptr;
std::once_flag g_atfork_once;

Pool& pool() {
  std::call_once(g_atfork_once, [] { pthread_atfork(nullptr, nullptr, [] { g_pool = nullptr; }); });
  if (g_pool == nullptr) g_pool = new Pool();
  return *g_pool;
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

void parallel_chunks(int64_t n_chunks, const std::function<void(int64_t)>& body) {
  if (n_chunks <= 0) return;
  const int nt = num_threads();
  auto serial = [&] {
    for (int64_t c = 0; c < n_chunks; ++c) body(c);
  };
  if (nt == 1 || n_chunks == 1 || t_in_job) return serial();
  Pool& p = pool();
  std::unique_lock<std::mutex> busy(p.busy, std::try_to_lock);
  if (!busy.owns_lock()) return serial();
  auto job = std::make_shared<Job>();
  job->body = &body;
  job->n = n_chunks;
  job->max_helpers = static_cast<int>(std::min<int64_t>(nt - 1, n_chunks - 1));
  p.run(job);
  if (job->err) std::rethrow_exception(job->err);
}

extern "C" int scipy_openblas_get_num_threads(void);
extern "C" void scipy_openblas_set_num_threads(int);

SerialBlas::SerialBlas() : prev_(scipy_openblas_get_num_threads()) {
  if (prev_ != 1) scipy_openblas_set_num_threads(1);
}

SerialBlas::~SerialBlas() {
  if (prev_ != 1) scipy_openblas_set_num_threads(prev_);
}

namespace {

inline void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint M, blasint N, blasint K, float alpha,
                      const float* A, blasint lda, const float* B, blasint ldb, float beta, float* C, blasint ldc) {
  scipy_cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
inline void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint M, blasint N, blasint K, double alpha,
                      const double* A, blasint lda, const double* B, blasint ldb, double beta, double* C,
                      blasint ldc) {
  scipy_cblas_dgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Multiply-adds from which a product is split into tiles (about 50 us on one
// core: below it a second thread's wake-up costs more than it saves).
constexpr int64_t kTileWork = int64_t{1} << 21;

// Below this many multiply-adds OpenBLAS runs a GEMM on one thread by itself
// (its SMP threshold, 65536 x GEMM_MULTITHREAD_THRESHOLD 4), so no thread
// setting is needed: setting it twice per product cost a small network's
// ensemble epoch half its time.
constexpr int64_t kOpenBlasSerial = int64_t{1} << 18;

// C (M x N, row-major) = alpha op(A) op(B) + beta C on one BLAS thread; from
// kTileWork multiply-adds on, as up to 4 tiles of the larger of M and N (at
// least 64 rows or columns, a multiple of 16; each tile repacks the other
// operand, so more tiles cost more than they balance) run on the pool. The tiles
// depend on the shapes only, so every thread count gives the same values.
template <typename T>
void tiled_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, blasint M, blasint N, blasint K, T alpha, const T* A,
                blasint lda, const T* B, blasint ldb, T beta, T* C, blasint ldc) {
  if (narrow_gemm<T>(ta == CblasTrans, tb == CblasTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, true)) return;
  const int64_t work = int64_t{M} * N * K;
  if (work < kOpenBlasSerial) {
    blas_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  SerialBlas serial;
  if (work < kTileWork) {  // (at 1 thread or nested in a parallel region the tiles run in turn)
    blas_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const bool by_rows = M >= N;
  const int64_t D = by_rows ? M : N;
  const int64_t want = std::min<int64_t>(4, work / (kTileWork / 2));
  const int64_t len = std::max<int64_t>(64, ((D + want - 1) / want + 15) / 16 * 16);
  const int64_t tiles = (D + len - 1) / len;
  if (tiles < 2) {
    blas_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  parallel_chunks(tiles, [&](int64_t t) {
    const int64_t d0 = t * len;
    const blasint n = static_cast<blasint>(std::min(len, D - d0));
    if (by_rows)  // rows d0.. of op(A) and C
      blas_gemm(ta, tb, n, N, K, alpha, ta == CblasNoTrans ? A + d0 * lda : A + d0, lda, B, ldb, beta, C + d0 * ldc,
                ldc);
    else  // columns d0.. of op(B) and C
      blas_gemm(ta, tb, M, n, K, alpha, A, lda, tb == CblasNoTrans ? B + d0 : B + d0 * ldb, ldb, beta, C + d0, ldc);
  });
}

blasint blas_dim(int64_t v) {
  if (v < 0 || v > std::numeric_limits<int32_t>::max())
    throw std::invalid_argument("GEMM dimension too large for 32-bit BLAS");
  return static_cast<blasint>(v);
}
}  // namespace

void pool_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
               int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  tiled_gemm(trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, blas_dim(M), blas_dim(N),
             blas_dim(K), alpha, A, blas_dim(lda), B, blas_dim(ldb), beta, C, blas_dim(ldc));
}
void pool_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
               int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  tiled_gemm(trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, blas_dim(M), blas_dim(N),
             blas_dim(K), alpha, A, blas_dim(lda), B, blas_dim(ldb), beta, C, blas_dim(ldc));
}

}  // namespace bayesgrad
