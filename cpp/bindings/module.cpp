#include "pybind11.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "bayesgrad native core (C++17). Use the public bayesgrad API instead.";
  bayesgrad::register_runtime(m);
  bayesgrad::register_random(m);
}
