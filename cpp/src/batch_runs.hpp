// Runs of consecutive parameters (internal to the core): the elements [lo, hi) of a batch of
// `batch` parameters cycling along the draws (element i has parameter i % batch) as runs in
// which both the elements and the parameters are consecutive, so that per-element loops over
// a run vectorise (a counter wrapping at `batch` per element kept them scalar).
#pragma once
#include <algorithm>
#include <cstdint>

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

}  // namespace bayesgrad
