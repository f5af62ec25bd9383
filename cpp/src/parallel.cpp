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

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
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

}  // namespace bayesgrad
