#include "pybind11.hpp"
// (pybind11.hpp first)
#include <string>

#include "bayesgrad/metrics.hpp"

namespace bayesgrad {

namespace {

template <typename T>
void bind(py::module_& m) {
  m.def(
      "point_scores",
      [](in_array<T> lp, int64_t kind, out_array<T> out) {
        const auto k = codes::from_int<PointScore>(kind, "kind");
        need_3d(lp, "log_probs");
        const int64_t S = lp.shape(0), N = lp.shape(1), C = lp.shape(2);
        require_shape(out, "out", {N});
        require_writeable(out, "out");
        const T* x = lp.data();
        T* o = out.mutable_data();
        py::gil_scoped_release rel;
        return point_scores<T>(x, S, N, C, k, o);
      },
      py::arg("log_probs"), py::arg("kind"), py::arg("out").noconvert(),
      "Acquisition scores of log_probs (S, N, C) into out (N,), kind a PointScore code; "
      "returns the largest |sum_c p - 1|.");
  m.def(
      "joint_entropy",
      [](in_array<T> probs, in_array<T> P, in_array<T> w, out_array<T> out) {
        need_3d(probs, "probs");
        const int64_t S = probs.shape(0), N = probs.shape(1), C = probs.shape(2);
        if (P.ndim() != 2 || P.shape(0) != S || P.shape(1) < 1)
          throw std::invalid_argument("P must have shape (S, M) with M >= 1");
        const int64_t M = P.shape(1);
        require_shape(w, "weights", {M});
        require_shape(out, "out", {N});
        require_writeable(out, "out");
        const T *pp = probs.data(), *pc = P.data(), *pw = w.data();
        T* o = out.mutable_data();
        py::gil_scoped_release rel;
        joint_entropy<T>(pp, S, N, C, pc, M, pw, o);
      },
      py::arg("probs"), py::arg("P"), py::arg("weights"), py::arg("out").noconvert(),
      "Joint entropy of the batch configurations P (S, M) (weights (M,)) with each candidate of probs (S, N, C) "
      "into out (N,).");
  m.def(
      "batch_configs",
      [](in_array<T> probs, in_array<T> u, out_array<T> P) {
        need_3d(probs, "probs");
        const int64_t S = probs.shape(0), K = probs.shape(1), C = probs.shape(2);
        if (u.ndim() != 2 || u.shape(1) != K + 1 || u.shape(0) < 1)
          throw std::invalid_argument("u must have shape (M, K + 1)");
        const int64_t M = u.shape(0);
        require_shape(P, "P", {S, M});
        require_writeable(P, "P");
        const T *pp = probs.data(), *pu = u.data();
        T* o = P.mutable_data();
        py::gil_scoped_release rel;
        batch_configs<T>(pp, S, K, C, pu, M, o);
      },
      py::arg("probs"), py::arg("u"), py::arg("P").noconvert(),
      "Sampled label configurations of the batch probs (S, K, C) from uniforms u (M, K+1); writes P (S, M).");
}

}  // namespace

void register_acquisition(py::module_& m) {
  bind<float>(m);
  bind<double>(m);
}

}  // namespace bayesgrad
