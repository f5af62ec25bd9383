#include "pybind11.hpp"
// (pybind11.hpp first)

namespace bayesgrad {

void register_mlp(py::module_& m) {
  (void)m;
}

}  // namespace bayesgrad
