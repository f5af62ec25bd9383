// Included first by every binding file so that all translation units see the
// same pybind11 configuration (iminuit's ODR lesson).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <initializer_list>

#include "bayesgrad/codes.hpp"
#include <stdexcept>
#include <string>

namespace bayesgrad {
namespace py = pybind11;

// Input arrays: C-contiguous, converted to T by pybind11 if needed.
template <typename T>
using in_array = py::array_t<T, py::array::c_style | py::array::forcecast>;
// Output arrays: written in place, so they must already be C-contiguous T
// (bind with .noconvert() so that a mismatch is an error, not a silent copy).
template <typename T>
using out_array = py::array_t<T, py::array::c_style>;

inline void require_writeable(const py::array& a, const char* name) {
  if (!a.writeable()) throw std::invalid_argument(std::string(name) + " must be writeable");
}

inline int64_t size_of(const py::array& a) { return static_cast<int64_t>(a.size()); }

// Throws std::invalid_argument ("<name> must have shape (d0,d1,...)") unless a
// has exactly this shape.
inline void require_shape(const py::array& a, const char* name, std::initializer_list<int64_t> shape) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  int i = 0;
  for (int64_t d : shape) {
    if (!ok) break;
    ok = a.shape(i++) == d;
  }
  if (!ok) {
    std::string s = "(";
    for (int64_t d : shape) s += std::to_string(d) + ",";
    throw std::invalid_argument(std::string(name) + " must have shape " + s + ")");
  }
}

// log_probs-like inputs of the metric and acquisition kernels.
inline void need_3d(const py::array& a, const char* name) {
  if (a.ndim() != 3 || a.shape(0) < 1 || a.shape(1) < 1 || a.shape(2) < 1)
    throw std::invalid_argument(std::string(name) + " must be a non-empty (S, N, C) array");
}

// Registration functions, one per concept: register_<concept> fills the
// submodule _core.<concept> (module.cpp creates them, in dependency order: the
// config types of mlp and optim are used by vi and curvature).
#define BAYESGRAD_CONCEPTS(X) \
  X(runtime) X(random) X(distributions) X(estimators) X(mlp) X(optim) X(vi) X(curvature) X(metrics) \
  X(acquisition) X(latent)
#define BAYESGRAD_DECLARE_REGISTER(name) void register_##name(py::module_& m);
BAYESGRAD_CONCEPTS(BAYESGRAD_DECLARE_REGISTER)
#undef BAYESGRAD_DECLARE_REGISTER

}  // namespace bayesgrad
