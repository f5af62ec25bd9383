#include "pybind11.hpp"
// (pybind11.hpp first)
#include <string>

#include "bayesgrad/metrics.hpp"

namespace bayesgrad {

namespace {

void need_3d(const py::array& a, const char* name) {
  if (a.ndim() != 3 || a.shape(0) < 1 || a.shape(1) < 1 || a.shape(2) < 1)
    throw std::invalid_argument(std::string(name) + " must be a non-empty (S, N, C) array");
}

template <typename T>
void bind(py::module_& m) {
  m.def(
      "decompose",
      [](in_array<T> lp, out_array<T> total, out_array<T> aleatoric, out_array<T> epistemic) {
        need_3d(lp, "log_probs");
        const int64_t S = lp.shape(0), N = lp.shape(1), C = lp.shape(2);
        for (auto* o : {&total, &aleatoric, &epistemic}) {
          require_shape(*o, "out", {N});
          require_writeable(*o, "out");
        }
        const T* x = lp.data();
        T *t = total.mutable_data(), *a = aleatoric.mutable_data(), *e = epistemic.mutable_data();
        py::gil_scoped_release rel;
        return decompose<T>(x, S, N, C, t, a, e);
      },
      py::arg("log_probs"), py::arg("total").noconvert(), py::arg("aleatoric").noconvert(),
      py::arg("epistemic").noconvert(),
      "Entropy decomposition of log_probs (S, N, C) into total/aleatoric/epistemic (N,) in nats; returns the "
      "largest |sum_c p - 1| (NaN if any input is NaN).");
  m.def(
      "point_scores",
      [](in_array<T> lp, int kind, out_array<T> out) {
        need_3d(lp, "log_probs");
        const int64_t S = lp.shape(0), N = lp.shape(1), C = lp.shape(2);
        require_shape(out, "out", {N});
        require_writeable(out, "out");
        const T* x = lp.data();
        T* o = out.mutable_data();
        py::gil_scoped_release rel;
        return point_scores<T>(x, S, N, C, kind, o);
      },
      py::arg("log_probs"), py::arg("kind"), py::arg("out").noconvert(),
      "Acquisition scores of log_probs (S, N, C) into out (N,): kind 0 variation ratios, 1 mean std, 2 margin; "
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

void register_metrics(py::module_& m) {
  bind<float>(m);
  bind<double>(m);
}

}  // namespace bayesgrad
