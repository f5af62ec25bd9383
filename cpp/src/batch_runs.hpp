// The distributions kernels' chunks (internal to the core): fixed chunks on the pool with per-thread
// scratch (chunked, scratch), and runs of consecutive parameters: the elements [lo, hi) of a batch of
// `batch` parameters cycling along the draws (element i has parameter i % batch) as runs in
// which both the elements and the parameters are consecutive, so that per-element loops over
// a run vectorise (a counter wrapping at `batch` per element kept them scalar).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "bayesgrad/parallel.hpp"

namespace bayesgrad {

// body(o, j, run): elements lo + o .. lo + o + run - 1 have parameters j .. j + run - 1.
template <typename Body>
__attribute__((always_inline)) inline void by_runs(int64_t lo, int64_t hi, int64_t batch, const Body& body) {
  for (int64_t i = lo, j = lo % batch; i < hi; j = 0) {
    const int64_t run = std::min(hi - i, batch - j);
    body(i - lo, j, run);
    i += run;
  }
}

// f(lo, hi) for the fixed chunks [lo, hi) of `chunk` elements of [0, n), in parallel on the pool (the chunks,
// and so the values, do not depend on the thread count).
template <typename F>
void chunked(int64_t n, int64_t chunk, F f) {
  parallel_chunks((n + chunk - 1) / chunk, [&](int64_t ch) {
    const int64_t lo = ch * chunk, hi = lo + chunk < n ? lo + chunk : n;
    f(lo, hi);
  });
}

// Per-thread scratch of a chunk (slots 0-2), kept between calls: zeroing fresh vectors per 4096-element chunk
// cost a tenth of a Gamma draw. A chunk's body owns the slots while it runs (no kernel calls another inside one).
inline double* scratch(int slot, int64_t n) {
  thread_local std::vector<double> buf[3];
  if (buf[slot].size() < static_cast<size_t>(n)) buf[slot].resize(static_cast<size_t>(n));
  return buf[slot].data();
}

}  // namespace bayesgrad
