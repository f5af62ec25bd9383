// The range of an array's values in one pass: the input checks' kernel
// (bayesgrad/_checks.py value_range). NumPy's np.all(np.isfinite(x)) writes a
// boolean array and reads it back, and a range check (x >= 0, x <= 1) takes a
// min and a max pass besides; on an array in memory each pass is a read of it.
#pragma once
#include <cstdint>

namespace bayesgrad {

// lo = min(x), hi = max(x) over n >= 1 values, both NaN when any value is NaN
// (as NumPy's min and max); float32 or float64.
template <typename T>
void value_range(const T* x, int64_t n, T* lo, T* hi);

// value_range, and whether every value is an integer (rint(x) == x: +-inf are,
// NaN is not), in the same pass: the count distributions' check of x.
template <typename T>
bool integer_range(const T* x, int64_t n, T* lo, T* hi);

}  // namespace bayesgrad
