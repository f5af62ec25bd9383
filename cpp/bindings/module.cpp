#include "pybind11.hpp"

// One submodule per concept (docs/design.md, "Kernel namespaces"), mirrored by
// bayesgrad/_numpy/<concept>.py and the stubs in bayesgrad/_core/.
namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
  m.doc() = "bayesgrad native core (C++17). Use the public bayesgrad API instead.";
#define BAYESGRAD_REGISTER(name)                                                  \
  {                                                                               \
    py::module_ sub = m.def_submodule(#name, "bayesgrad native kernels: " #name); \
    bayesgrad::register_##name(sub);                                              \
  }
  BAYESGRAD_CONCEPTS(BAYESGRAD_REGISTER)
#undef BAYESGRAD_REGISTER
}
