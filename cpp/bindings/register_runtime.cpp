#include "pybind11.hpp"
// (pybind11.hpp first)
#include "bayesgrad/output_cache.hpp"
#include "bayesgrad/parallel.hpp"
#include "bayesgrad/random.hpp"
#include "bayesgrad/value_range.hpp"

#ifndef BAYESGRAD_BLAS_INFO
#define BAYESGRAD_BLAS_INFO "none"
#endif
#ifndef BAYESGRAD_CUDA_STATUS
#define BAYESGRAD_CUDA_STATUS "not configured"
#endif

extern "C" {
// scipy-openblas32 exports its symbols with the scipy_ prefix.
void scipy_openblas_set_num_threads(int);
int scipy_openblas_get_num_threads(void);
char* scipy_openblas_get_config(void);
}

namespace bayesgrad {

namespace {

struct CachedBlock {
  void* p;
  size_t capacity;
};

// An uninitialised C-contiguous array; from the output cache from
// kOutputCacheMinBytes up, its block going back to the cache when the last
// array or view on it is freed (the capsule is the base of every view).
py::array cached_empty(const std::vector<py::ssize_t>& shape, const py::dtype& dt) {
  size_t n = size_t(dt.itemsize());
  for (py::ssize_t s : shape) {
    if (s < 0) throw py::value_error("shape must be non-negative");
    if (s != 0 && n > (size_t(1) << 62) / size_t(s)) throw py::value_error("shape is too large");
    n *= size_t(s);
  }
  if (n < kOutputCacheMinBytes) return py::array(dt, shape);
  size_t cap = 0;
  void* p = output_block_acquire(n, &cap);
  CachedBlock* blk = nullptr;
  try {
    blk = new CachedBlock{p, cap};
  } catch (...) {
    output_block_release(p, cap);
    throw;
  }
  py::capsule base(blk, [](void* b) {
    auto* k = static_cast<CachedBlock*>(b);
    output_block_release(k->p, k->capacity);
    delete k;
  });
  return py::array(dt, shape, p, base);
}

template <typename T>
void bind_value_range(py::module_& m) {
  m.def(
      "value_range",
      [](out_array<T> x) {  // (read only; out_array: C-contiguous T, never a converted copy)
        if (x.size() == 0) throw std::invalid_argument("x must not be empty");
        const T* p = x.data();
        const int64_t n = size_of(x);
        T lo, hi;
        {
          py::gil_scoped_release rel;
          value_range(p, n, &lo, &hi);
        }
        return py::make_tuple(static_cast<double>(lo), static_cast<double>(hi));
      },
      py::arg("x").noconvert(),
      "(min, max) of a non-empty C-contiguous float array in one pass, both NaN when it holds a NaN.");
  m.def(
      "integer_range",
      [](out_array<T> x) {
        if (x.size() == 0) throw std::invalid_argument("x must not be empty");
        const T* p = x.data();
        const int64_t n = size_of(x);
        T lo, hi;
        bool whole;
        {
          py::gil_scoped_release rel;
          whole = integer_range(p, n, &lo, &hi);
        }
        return py::make_tuple(static_cast<double>(lo), static_cast<double>(hi), whole);
      },
      py::arg("x").noconvert(),
      "value_range's (min, max) and whether every value is an integer (rint(x) == x), in one pass.");
}

}  // namespace

void register_runtime(py::module_& m) {
  m.def("empty", &cached_empty, py::arg("shape"), py::arg("dtype"),
        "An uninitialised C-contiguous array; outputs of 256 KiB and more from the output cache "
        "(blocks of freed outputs, already faulted in).");
  bind_value_range<float>(m);
  bind_value_range<double>(m);
  m.def("set_output_cache_limit", &set_output_cache_limit, py::arg("n_bytes"),
        "Bytes of freed output blocks kept for reuse (0: none); returns the previous limit.");
  m.def("output_cache_info", []() {
    OutputCacheInfo i = output_cache_info();
    py::dict d;
    d["blocks"] = i.blocks;
    d["bytes"] = i.bytes;
    d["limit"] = i.limit;
    d["hits"] = i.hits;
    d["misses"] = i.misses;
    return d;
  });
  m.def("get_num_threads", &num_threads, "Worker threads used by native kernels.");
  m.def(
      "set_num_threads",
      [](int n) {
        set_num_threads(n);
        scipy_openblas_set_num_threads(n);
      },
      py::arg("n"), "Set the worker threads of the native kernels and of scipy-openblas32.");
  m.def("blas_num_threads", []() { return scipy_openblas_get_num_threads(); });
  m.def("build_info", []() {
    py::dict d;
    d["compiler"] = std::string(
#if defined(__clang__)
        "clang "
#elif defined(__GNUC__)
        "gcc "
#endif
        __VERSION__);
    d["blas"] = std::string(BAYESGRAD_BLAS_INFO);
    d["blas_config"] = std::string(scipy_openblas_get_config());
    d["cuda"] = std::string(BAYESGRAD_CUDA_STATUS);
    d["simd"] = std::string(random_simd());
    return d;
  });
  m.def(
      "codes",
      []() {
        py::dict d;
#define BAYESGRAD_EXPORT_ENUM(E)                                                  \
  {                                                                               \
    py::dict members;                                                             \
    using Tr = codes::traits<codes::E>;                                           \
    for (int v = Tr::lo; v <= Tr::hi; ++v)                                        \
      members[codes::name_of(codes::from_int<codes::E>(v, #E))] = v;              \
    d[Tr::name] = members;                                                        \
  }
        BAYESGRAD_FOR_EACH_CODE_ENUM(BAYESGRAD_EXPORT_ENUM)
#undef BAYESGRAD_EXPORT_ENUM
        d["flipout_tag"] = codes::kTagFlipout;
        return d;
      },
      "The enum codes (name -> {member: value}) and the stream tag the core was compiled with, for the test that "
      "checks them against bayesgrad._codes.");
}

}  // namespace bayesgrad
