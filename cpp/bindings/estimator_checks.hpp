// Argument checks shared by the estimators' binding files (register_estimators.cpp,
// register_relax.cpp, register_beam_search.cpp): the shapes of matrix and vector arguments.
#pragma once
#include "pybind11.hpp"
// (pybind11.hpp first)
#include <string>

namespace bayesgrad {
namespace estimator_checks {

// (n, p) matrix argument; returns n and p.
template <typename T>
inline void matrix_shape(const in_array<T>& a, const char* name, int64_t& n, int64_t& p) {
  if (a.ndim() != 2) throw std::invalid_argument(std::string(name) + " must have shape (n, p)");
  n = a.shape(0);
  p = a.shape(1);
}

template <typename T>
inline void check_vec(const py::array& a, int64_t len, const char* name) {
  if (a.ndim() != 1 || a.shape(0) != len)
    throw std::invalid_argument(std::string(name) + " must have shape (" + std::to_string(len) + ",)");
}

inline void check_mat(const in_array<double>& a, int64_t n, int64_t p, const char* name) {
  if (a.ndim() != 2 || a.shape(0) != n || a.shape(1) != p)
    throw std::invalid_argument(std::string(name) + " must have shape (" + std::to_string(n) + ", " +
                                std::to_string(p) + ")");
}

inline void check_out_mat(out_array<double>& a, int64_t n, int64_t p, const char* name) {
  require_writeable(a, name);
  if (a.ndim() != 2 || a.shape(0) != n || a.shape(1) != p)
    throw std::invalid_argument(std::string(name) + " must have shape (" + std::to_string(n) + ", " +
                                std::to_string(p) + ")");
}

}  // namespace estimator_checks
}  // namespace bayesgrad
