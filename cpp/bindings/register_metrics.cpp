#include "pybind11.hpp"
// (pybind11.hpp first)
#include <string>

#include "bayesgrad/metrics.hpp"

namespace bayesgrad {

namespace {

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
      "mean_probs",
      [](in_array<T> lp, out_array<T> out) {
        need_3d(lp, "log_probs");
        const int64_t S = lp.shape(0), N = lp.shape(1), C = lp.shape(2);
        require_shape(out, "out", {N, C});
        require_writeable(out, "out");
        const T* x = lp.data();
        T* o = out.mutable_data();
        py::gil_scoped_release rel;
        return mean_probs<T>(x, S, N, C, o);
      },
      py::arg("log_probs"), py::arg("out").noconvert(),
      "Mixture probabilities out (N, C) = mean over s of exp(log_probs (S, N, C)); returns the largest "
      "|sum_c p - 1| (NaN if any input is NaN).");
  m.def(
      "log_softmax",
      [](out_array<T> values) {
        require_writeable(values, "values");
        if (values.ndim() < 1 || values.shape(values.ndim() - 1) < 1)
          throw py::value_error("values must have a last axis of length >= 1");
        const int64_t C = values.shape(values.ndim() - 1), R = values.size() / C;
        T* x = values.mutable_data();
        py::gil_scoped_release rel;
        log_softmax<T>(x, R, C);
      },
      py::arg("values").noconvert(), "In place: values (..., C) <- values - logsumexp over the last axis.");
}

}  // namespace

void register_metrics(py::module_& m) {
  bind<float>(m);
  bind<double>(m);
}

}  // namespace bayesgrad
