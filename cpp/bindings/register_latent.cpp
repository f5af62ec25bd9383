#include "pybind11.hpp"
// (pybind11.hpp first)
#include <string>

#include "bayesgrad/latent.hpp"

namespace bayesgrad {

namespace {

template <typename T>
void bind(py::module_& m) {
  m.def(
      "latent_logp",
      [](in_array<T> x, in_array<T> y, in_array<T> Wz, in_array<T> bz, in_array<T> log_sz, in_array<T> Wy,
         in_array<T> by, in_array<T> log_sy, in_array<T> eps, out_array<T> logp, out_array<T> gWz, out_array<T> gbz,
         out_array<T> glog_sz, out_array<T> gWy, out_array<T> gby, out_array<T> glog_sy, bool with_grad) {
        if (x.ndim() != 2 || y.ndim() != 2 || eps.ndim() != 3)
          throw std::invalid_argument("x, y must be 2-d and eps 3-d");
        LatentDims d{x.shape(0), x.shape(1), eps.shape(2), y.shape(1), eps.shape(0)};
        if (d.N < 1 || d.D < 1 || d.K < 1 || d.P < 1 || d.S < 1)
          throw std::invalid_argument("latent_logp: empty dimension");
        require_shape(y, "y", {d.N, d.P});
        require_shape(eps, "eps", {d.S, d.N, d.K});
        require_shape(Wz, "Wz", {d.K, d.D});
        require_shape(bz, "bz", {d.K});
        require_shape(log_sz, "log_sz", {d.K});
        require_shape(Wy, "Wy", {d.P, d.K});
        require_shape(by, "by", {d.P});
        require_shape(log_sy, "log_sy", {1});
        require_shape(logp, "logp", {d.N});
        require_shape(gWz, "gWz", {d.K, d.D});
        require_shape(gbz, "gbz", {d.K});
        require_shape(glog_sz, "glog_sz", {d.K});
        require_shape(gWy, "gWy", {d.P, d.K});
        require_shape(gby, "gby", {d.P});
        require_shape(glog_sy, "glog_sy", {1});
        for (py::array* o : {static_cast<py::array*>(&logp), static_cast<py::array*>(&gWz), static_cast<py::array*>(&gbz),
                             static_cast<py::array*>(&glog_sz), static_cast<py::array*>(&gWy),
                             static_cast<py::array*>(&gby), static_cast<py::array*>(&glog_sy)})
          require_writeable(*o, "out");
        const T *px = x.data(), *py_ = y.data(), *pWz = Wz.data(), *pbz = bz.data(), *pls = log_sz.data(),
                *pWy = Wy.data(), *pby = by.data(), *ply = log_sy.data(), *pe = eps.data();
        T* lp = logp.mutable_data();
        T *g1 = gWz.mutable_data(), *g2 = gbz.mutable_data(), *g3 = glog_sz.mutable_data(), *g4 = gWy.mutable_data(),
          *g5 = gby.mutable_data(), *g6 = glog_sy.mutable_data();
        py::gil_scoped_release rel;
        if (!with_grad) g1 = nullptr;
        latent_logp<T>(d, px, py_, pWz, pbz, pls, pWy, pby, ply, pe, lp, g1, g2, g3, g4, g5, g6);
      },
      py::arg("x"), py::arg("y"), py::arg("Wz"), py::arg("bz"), py::arg("log_sz"), py::arg("Wy"), py::arg("by"),
      py::arg("log_sy"), py::arg("eps"), py::arg("logp").noconvert(), py::arg("gWz").noconvert(),
      py::arg("gbz").noconvert(), py::arg("glog_sz").noconvert(), py::arg("gWy").noconvert(),
      py::arg("gby").noconvert(), py::arg("glog_sy").noconvert(), py::arg("with_grad"),
      "MC log p(y|x) per point (N,) of the hidden-variable model with eps (S, N, K); with_grad fills the "
      "gradients of its sum with respect to every parameter.");
}

}  // namespace

void register_latent(py::module_& m) {
  bind<float>(m);
  bind<double>(m);
}

}  // namespace bayesgrad
