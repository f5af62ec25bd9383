// Device queries for bayesgrad._cuda. The kernels of the CUDA backend are a
// later piece of work (see the CUDA issue); this target proves the toolchain
// builds for the named architectures and reports what the machine has.
#include <cuda_runtime.h>

namespace bayesgrad {
namespace cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device / no driver" error
    return 0;
  }
  return n;
}

int runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return v;
}

}  // namespace cuda
}  // namespace bayesgrad
