#include "bayesgrad/output_cache.hpp"

#if defined(_WIN32)
#include <malloc.h>
#else
#include <sys/mman.h>
#endif

#include <deque>
#include <mutex>
#include <new>
#include <utility>

namespace bayesgrad {
namespace {

// Whole pages from the system and back (anonymous mappings; aligned heap
// blocks where there is no mmap).
void* map_pages(size_t n) {
#if defined(_WIN32)
  void* p = _aligned_malloc(n, 4096);
  if (p == nullptr) throw std::bad_alloc();
#else
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
  if (n >= (size_t(4) << 20)) madvise(p, n, MADV_HUGEPAGE);
#endif
#endif
  return p;
}
void unmap_pages(void* p, size_t n) {
#if defined(_WIN32)
  (void)n;
  _aligned_free(p);
#else
  munmap(p, n);
#endif
}

struct Cache {
  std::mutex mu;
  std::deque<std::pair<void*, size_t>> blocks;  // oldest first
  int64_t bytes = 0, limit = int64_t(256) << 20, hits = 0, misses = 0;

  void trim_locked() {
    while (bytes > limit && !blocks.empty()) {
      auto [p, cap] = blocks.front();
      blocks.pop_front();
      bytes -= int64_t(cap);
      unmap_pages(p, cap);
    }
  }
};

// Never destroyed: arrays may be freed during interpreter shutdown, after
// static destructors would have run.
Cache& cache() {
  static Cache* c = new Cache;
  return *c;
}

size_t round_to_pages(size_t n) {
  const size_t page = 4096;
  return (n + page - 1) / page * page;
}

}  // namespace

void* output_block_acquire(size_t n, size_t* capacity) {
  n = round_to_pages(n == 0 ? 1 : n);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto best = c.blocks.end();
    for (auto it = c.blocks.begin(); it != c.blocks.end(); ++it)
      if (it->second >= n && it->second / 2 <= n && (best == c.blocks.end() || it->second < best->second))
        best = it;
    if (best != c.blocks.end()) {
      void* p = best->first;
      *capacity = best->second;
      c.bytes -= int64_t(best->second);
      c.blocks.erase(best);
      ++c.hits;
      return p;
    }
    ++c.misses;
  }
  void* p = map_pages(n);
  *capacity = n;
  return p;
}

void output_block_release(void* p, size_t capacity) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  if (int64_t(capacity) > c.limit) {
    unmap_pages(p, capacity);
    return;
  }
  c.blocks.emplace_back(p, capacity);
  c.bytes += int64_t(capacity);
  c.trim_locked();
}

int64_t set_output_cache_limit(int64_t bytes) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  int64_t prev = c.limit;
  c.limit = bytes;
  c.trim_locked();
  return prev;
}

OutputCacheInfo output_cache_info() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return {int64_t(c.blocks.size()), c.bytes, c.limit, c.hits, c.misses};
}

}  // namespace bayesgrad
