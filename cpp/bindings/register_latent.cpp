#include "pybind11.hpp"
// (pybind11.hpp first)
#include <optional>
#include <string>

#include "bayesgrad/latent.hpp"

namespace bayesgrad {

namespace {

template <typename T>
void bind(py::module_& m) {
  m.def(
      "latent_logp",
      [](in_array<T> theta, in_array<T> x, in_array<T> y, in_array<T> eps, out_array<T> logp,
         std::optional<out_array<T>> grad) {
        if (x.ndim() != 2 || y.ndim() != 2 || eps.ndim() != 3)
          throw std::invalid_argument("x, y must be 2-d and eps 3-d");
        const LatentDims d{x.shape(0), x.shape(1), eps.shape(2), y.shape(1), eps.shape(0)};
        if (d.N < 1 || d.D < 1 || d.K < 1 || d.P < 1 || d.S < 1)
          throw std::invalid_argument("latent_logp: empty dimension");
        const int64_t np = latent_n_params(d);
        require_shape(theta, "theta", {np});
        require_shape(y, "y", {d.N, d.P});
        require_shape(eps, "eps", {d.S, d.N, d.K});
        require_shape(logp, "logp", {d.N});
        require_writeable(logp, "logp");
        T* g = nullptr;
        if (grad) {
          require_shape(*grad, "grad", {np});
          require_writeable(*grad, "grad");
          g = grad->mutable_data();
        }
        const T *pt = theta.data(), *px = x.data(), *py_ = y.data(), *pe = eps.data();
        T* lp = logp.mutable_data();
        py::gil_scoped_release rel;
        latent_logp<T>(d, px, py_, pt, pe, lp, g);
      },
      py::arg("theta"), py::arg("x"), py::arg("y"), py::arg("eps"), py::arg("logp").noconvert(),
      py::arg("grad").noconvert() = py::none(),
      "MC log p(y|x) per point (N,) of the hidden-variable model with eps (S, N, K); theta packs "
      "[Wz (K, D), bz (K), log_sz (K), Wy (P, K), by (P), log_sy (1)]; grad, when given, receives the gradient "
      "of the sum of logp with respect to theta.");
}

}  // namespace

void register_latent(py::module_& m) {
  bind<float>(m);
  bind<double>(m);
}

}  // namespace bayesgrad
