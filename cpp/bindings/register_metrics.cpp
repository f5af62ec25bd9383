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
}

}  // namespace

void register_metrics(py::module_& m) {
  bind<float>(m);
  bind<double>(m);
}

}  // namespace bayesgrad
