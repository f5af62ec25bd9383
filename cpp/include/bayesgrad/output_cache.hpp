// Large output arrays from recycled blocks. A fresh multi-megabyte array costs
// a page fault and the kernel's zeroing per 4 KiB page on first touch (on the
// 2-core Zen 4 EPYC VM: 80 MB of float64 normals 23.6 ms into a new array,
// 14.2 ms into a touched one; MAP_POPULATE was no cheaper there). Blocks of
// freed outputs are kept, up to a byte limit, and handed to the next output
// that fits, already faulted in; new mappings from 4 MiB are madvised for
// transparent huge pages (a fault per 2 MiB, as NumPy's large arrays).
#pragma once
#include <cstddef>
#include <cstdint>

namespace bayesgrad {

struct OutputCacheInfo {
  int64_t blocks, bytes, limit, hits, misses;
};

// Outputs of at least this many bytes come from the cache; smaller ones are
// left to malloc. Not only multi-megabyte ones: glibc serves requests below its
// 32 MiB mmap ceiling from the heap once one such block has been freed, but it
// gives the heap's top back to the system once more than twice that block is
// free there, as after a call's several outputs are freed together (three
// outputs of 0.25-12 MiB: 160-1700 page faults per repeated call, 0.3-5.6 ms).
// 256 KiB: from there the faults cost more than the cache's bookkeeping.
constexpr size_t kOutputCacheMinBytes = size_t(256) << 10;

// A block of at least n bytes (64-byte aligned): a cached one of capacity in
// [n, 2n] (the smallest) or a new mapping. Sets *capacity. Throws
// std::bad_alloc when the system refuses.
void* output_block_acquire(size_t n, size_t* capacity);
// Gives a block back: kept while the cache stays within its limit (the oldest
// blocks unmapped first), unmapped otherwise.
void output_block_release(void* p, size_t capacity);
// Sets the byte limit (0: keep nothing), unmapping what no longer fits; returns the previous one.
int64_t set_output_cache_limit(int64_t bytes);
OutputCacheInfo output_cache_info();

}  // namespace bayesgrad
