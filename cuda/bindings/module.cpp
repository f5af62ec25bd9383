#include "../../cpp/bindings/pybind11.hpp"

#ifndef BAYESGRAD_CUDA_STATUS
#define BAYESGRAD_CUDA_STATUS "unknown"
#endif

namespace bayesgrad {
namespace cuda {
int device_count();
int runtime_version();
}  // namespace cuda
}  // namespace bayesgrad

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "bayesgrad CUDA module: device queries (kernels: see the CUDA backend issue).";
  m.def("device_count", &bayesgrad::cuda::device_count, "Number of visible CUDA devices (0 without a driver).");
  m.def("runtime_version", &bayesgrad::cuda::runtime_version);
  m.attr("build_status") = BAYESGRAD_CUDA_STATUS;
}
