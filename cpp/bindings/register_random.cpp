#include "pybind11.hpp"
// (pybind11.hpp first)
#include "bayesgrad/philox.hpp"
#include "bayesgrad/random.hpp"

namespace bayesgrad {

namespace {

template <typename T>
void bind_fill(py::module_& m, const char* name, void (*fn)(T*, int64_t, uint64_t, uint64_t, uint64_t),
               const char* doc) {
  m.def(
      name,
      [fn](out_array<T> out, uint64_t seed, uint64_t stream, uint64_t offset) {
        require_writeable(out, "out");
        T* p = out.mutable_data();
        const int64_t n = size_of(out);
        py::gil_scoped_release rel;
        fn(p, n, seed, stream, offset);
      },
      py::arg("out").noconvert(), py::arg("seed"), py::arg("stream"), py::arg("offset"), doc);
}

}  // namespace

void register_random(py::module_& m) {
  m.def(
      "philox4x32",
      [](in_array<uint32_t> ctr, in_array<uint32_t> key) {
        if (ctr.ndim() != 2 || ctr.shape(1) != 4) throw std::invalid_argument("counter must have shape (n, 4)");
        if (key.ndim() != 1 || key.shape(0) != 2) throw std::invalid_argument("key must have shape (2,)");
        const int64_t n = ctr.shape(0);
        py::array_t<uint32_t> out({n, static_cast<int64_t>(4)});
        const uint32_t k[2] = {key.data()[0], key.data()[1]};
        const uint32_t* c = ctr.data();
        uint32_t* o = out.mutable_data();
        {
          py::gil_scoped_release rel;
          philox_blocks(c, n, k, o);
        }
        return out;
      },
      py::arg("counter"), py::arg("key"), "Philox4x32-10 blocks: counter (n, 4) uint32, key (2,) -> (n, 4).");
  // One name per kernel; the dtype of `out` (float32 or float64) picks the overload.
  bind_fill<float>(m, "fill_uniform", &fill_uniform<float>, "Uniforms in (0,1) into out, element offset+i.");
  bind_fill<double>(m, "fill_uniform", &fill_uniform<double>, "Uniforms in (0,1) into out, element offset+i.");
  bind_fill<float>(m, "fill_normal", &fill_normal<float>, "Standard normals into out, element offset+i.");
  bind_fill<double>(m, "fill_normal", &fill_normal<double>, "Standard normals into out, element offset+i.");
  m.def("fold_in", &philox::fold_in, py::arg("stream"), py::arg("tag"));
  m.def("simd_limit", &simd_limit, py::arg("path"),
        "Cap the SIMD path of every kernel that has one ('avx512', 'avx2' or 'scalar', the libm "
        "reference); returns the previous cap. Testing and benchmark hook; BAYESGRAD_SIMD sets it at load.");
}

}  // namespace bayesgrad
