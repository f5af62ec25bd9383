// Argument checks shared by the training-epoch bindings (optim.map_epoch,
// vi.vi_epoch, vi.vi_grad): data, permutation and minibatch schedule.
#pragma once
#include "pybind11.hpp"
// (pybind11.hpp first)
#include <algorithm>
#include <cmath>
#include <string>

#include "bayesgrad/mlp.hpp"
#include "bayesgrad/optim.hpp"

namespace bayesgrad {

inline void need_len(const py::array& a, int64_t n, const char* name) {
  if (a.ndim() != 1 || a.shape(0) != n)
    throw std::invalid_argument(std::string(name) + " must have shape (" + std::to_string(n) + ",)");
}

// A state vector the kernel updates in place.
inline void need_state(const py::array& a, int64_t n, const char* name) {
  need_len(a, n, name);
  require_writeable(a, name);
}

// The parameters an epoch updates in place and their two Adam moments, each (n,).
inline void need_train_state(const py::array& state, const py::array& m, const py::array& v, int64_t n) {
  need_state(state, n, "state");
  need_state(m, n, "m");
  need_state(v, n, "v");
}

struct EpochData {
  int64_t N, Dy;
  Batches batches;
};

// X (N, d_0), y (N, Dy), perm (L,) row indices in [0, N), L >= 1: the epoch's row
// order or a slice of it that starts at a minibatch boundary (Python runs an epoch
// in slices of ~0.1 s so Ctrl-C is prompt; minibatches are perm[i B, (i+1) B),
// B = min(batch_size, N), the last one ragged). perm is borrowed.
template <typename T>
EpochData epoch_data(const mlp::Layout& L, mlp::Likelihood lik, const in_array<T>& X, const in_array<T>& y,
                     const in_array<int64_t>& perm, int64_t batch_size) {
  EpochData e{0, mlp::target_dim(lik, L.d_output()), Batches{nullptr, 0, 1}};
  if (X.ndim() != 2 || X.shape(1) != L.d_input() || X.shape(0) < 1)
    throw std::invalid_argument("X must have shape (N, " + std::to_string(L.d_input()) + ") with N >= 1");
  e.N = X.shape(0);
  if (y.ndim() != 2 || y.shape(0) != e.N || y.shape(1) != e.Dy)
    throw std::invalid_argument("y must have shape (N, " + std::to_string(e.Dy) + ")");
  if (perm.ndim() != 1 || perm.shape(0) < 1) throw std::invalid_argument("perm must have shape (L,) with L >= 1");
  const int64_t n_perm = perm.shape(0);
  const int64_t* p = perm.data();
  for (int64_t i = 0; i < n_perm; ++i)
    if (p[i] < 0 || p[i] >= e.N) throw std::invalid_argument("perm entries must be row indices in [0, N)");
  if (batch_size < 1) throw std::invalid_argument("batch_size must be >= 1");
  e.batches = Batches{p, n_perm, std::min(batch_size, e.N)};
  return e;
}

// Optional per-row likelihood weights of an epoch: None (an empty array) or (N,)
// finite and >= 0.
template <typename T>
in_array<T> row_weights(const py::object& weights, int64_t N) {
  if (weights.is_none()) return in_array<T>(std::vector<py::ssize_t>{0});
  in_array<T> w = weights.cast<in_array<T>>();
  need_len(w, N, "weights");
  const T* p = w.data();
  for (int64_t i = 0; i < N; ++i)
    if (!(p[i] >= T(0) && std::isfinite(static_cast<double>(p[i]))))
      throw std::invalid_argument("weights must be finite and >= 0");
  return w;
}

}  // namespace bayesgrad
