// Device queries and the launch check shared by every kernel.
#include <cstdlib>

#include "common.cuh"

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

int driver_version() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return v;
}

int current_device() {
  int d = -1;
  if (cudaGetDevice(&d) != cudaSuccess) {
    cudaGetLastError();
    return -1;
  }
  return d;
}

void check_device_pointer(const void* ptr, const char* what) {
  cudaPointerAttributes attr{};
  const cudaError_t e = cudaPointerGetAttributes(&attr, ptr);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw std::invalid_argument(std::string(what) + ": not a CUDA device pointer (" + cudaGetErrorString(e) + ")");
  }
  if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
    throw std::invalid_argument(std::string(what) + ": memory is not on a CUDA device");
  const int dev = current_device();
  if (attr.device != dev)
    throw std::invalid_argument(std::string(what) + ": array is on device " + std::to_string(attr.device) +
                                " but the current device is " + std::to_string(dev));
}

namespace {
bool sync_mode() {
  static const bool on = [] {
    const char* v = std::getenv("BAYESGRAD_CUDA_SYNC");
    return v != nullptr && v[0] != '\0' && v[0] != '0';
  }();
  return on;
}
}  // namespace

void check_launch(const char* kernel, cudaStream_t s) {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess && sync_mode()) e = cudaStreamSynchronize(s);
  if (e != cudaSuccess) {
    cudaGetLastError();
    throw std::runtime_error(std::string("bayesgrad._cuda: kernel ") + kernel + " failed: " + cudaGetErrorString(e));
  }
}

}  // namespace cuda
}  // namespace bayesgrad
