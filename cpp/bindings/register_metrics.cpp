#include "pybind11.hpp"
// (pybind11.hpp first)

namespace bayesgrad {

void register_metrics(py::module_& m) {
  (void)m;
}

}  // namespace bayesgrad
