#include "pybind11.hpp"
// (pybind11.hpp first)

namespace bayesgrad {

void register_optim(py::module_& m) {
  (void)m;
}

}  // namespace bayesgrad
