#include "pybind11.hpp"
// (pybind11.hpp first)
#include "bayesgrad/parallel.hpp"
#include "bayesgrad/random.hpp"

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

void register_runtime(py::module_& m) {
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
