#include "pybind11.hpp"
// (pybind11.hpp first)
#include <cmath>
#include <string>

#include "bayesgrad/optim.hpp"
#include "training.hpp"

namespace bayesgrad {

namespace {

AdamConfig adam_config(double lr, double beta1, double beta2, double eps) {
  if (!(lr >= 0) || !std::isfinite(lr)) throw std::invalid_argument("AdamConfig: lr must be finite and >= 0");
  if (!(beta1 >= 0 && beta1 < 1)) throw std::invalid_argument("AdamConfig: beta1 must be in [0, 1)");
  if (!(beta2 >= 0 && beta2 < 1)) throw std::invalid_argument("AdamConfig: beta2 must be in [0, 1)");
  if (!(eps > 0)) throw std::invalid_argument("AdamConfig: eps must be > 0");
  return AdamConfig{lr, beta1, beta2, eps};
}

SgdConfig sgd_config(double a0, double t0, double kappa) {
  if (!(a0 > 0) || !std::isfinite(a0)) throw std::invalid_argument("SgdConfig: a0 must be finite and > 0");
  if (!(t0 >= 0) || !std::isfinite(t0)) throw std::invalid_argument("SgdConfig: t0 must be finite and >= 0");
  if (!(kappa > 0.5 && kappa <= 1)) throw std::invalid_argument("SgdConfig: kappa must be in (0.5, 1]");
  SgdConfig c;
  c.a0 = a0;
  c.t0 = t0;
  c.kappa = kappa;
  return c;
}

template <typename T>
void bind(py::module_& m) {
  m.def(
      "adam_update",
      [](out_array<T> params, in_array<T> grad, out_array<T> m1, out_array<T> m2, int64_t t, const AdamConfig& c) {
        const int64_t n = size_of(params);
        need_state(params, n, "params");
        need_state(m1, n, "m");
        need_state(m2, n, "v");
        need_len(grad, n, "grad");
        if (t < 1) throw std::invalid_argument("t must be >= 1");
        T* p = params.mutable_data();
        const T* g = grad.data();
        T* a = m1.mutable_data();
        T* b = m2.mutable_data();
        py::gil_scoped_release rel;
        adam_step<T>(p, g, a, b, n, t, c);
      },
      py::arg("params").noconvert(), py::arg("grad"), py::arg("m").noconvert(), py::arg("v").noconvert(),
      py::arg("t"), py::arg("config"), "One fused Adam step t (1-based) in place.");
  m.def(
      "sgd_update",
      [](out_array<T> params, in_array<T> grad, int64_t t, const SgdConfig& c) {
        const int64_t n = size_of(params);
        need_state(params, n, "params");
        need_len(grad, n, "grad");
        if (t < 1) throw std::invalid_argument("t must be >= 1");
        T* p = params.mutable_data();
        const T* g = grad.data();
        py::gil_scoped_release rel;
        sgd_step<T>(p, g, n, t, c);
      },
      py::arg("params").noconvert(), py::arg("grad"), py::arg("t"), py::arg("config"),
      "One fused SGD step t (1-based) in place with a_t = a0 / (t0 + t)^kappa.");
  m.def(
      "map_epoch",
      [](const MapConfig& c, out_array<T> state, out_array<T> m1, out_array<T> m2, int64_t step, in_array<T> X,
         in_array<T> y, in_array<int64_t> perm, in_array<T> prior_prec, const py::object& weights) {
        const EpochData e = epoch_data<T>(c.net.layout, c.lik, X, y, perm, c.batch_size);
        const int64_t n = c.net.layout.n_params + e.Dy;
        need_train_state(state, m1, m2, n);
        need_len(prior_prec, c.net.layout.n_params, "prior_prec");
        const in_array<T> w = row_weights<T>(weights, e.N);
        const T* wp = weights.is_none() ? nullptr : w.data();
        out_array<T> stats(std::vector<py::ssize_t>{e.batches.count(), 2});
        T* s = state.mutable_data();
        T* a = m1.mutable_data();
        T* b = m2.mutable_data();
        const T* x = X.data();
        const T* yy = y.data();
        const T* pp = prior_prec.data();
        T* st = stats.mutable_data();
        int64_t new_step;
        {
          py::gil_scoped_release rel;
          new_step = map_epoch<T>(c, s, a, b, step, x, yy, e.N, e.batches, pp, st, wp);
        }
        return py::make_tuple(new_step, stats);
      },
      py::arg("config"), py::arg("state").noconvert(), py::arg("m").noconvert(), py::arg("v").noconvert(),
      py::arg("step"), py::arg("X"), py::arg("y"), py::arg("perm"), py::arg("prior_prec"),
      py::arg("weights") = py::none(),
      "One MAP / MC-dropout epoch (or the slice of it that perm holds) with Adam on state = [theta (P), log_noise (Dy)] in place; returns (the new "
      "step count, stats (n_batches, 2): each batch's summed nll and its objective). weights: None or (N,) finite "
      "non-negative row weights of the likelihood (row n counts weights[n] times).");
}

}  // namespace

void register_ensemble_epoch(py::module_& m);  // register_ensemble.cpp

void register_optim(py::module_& m) {
  py::class_<AdamConfig>(m, "AdamConfig",
                         "Adam's hyper-parameters (Kingma & Ba 2015). Immutable; twin: "
                         "bayesgrad._numpy.optim.AdamConfig.")
      .def(py::init(&adam_config), py::arg("lr") = 1e-3, py::arg("beta1") = 0.9, py::arg("beta2") = 0.999,
           py::arg("eps") = 1e-8)
      .def_readonly("lr", &AdamConfig::lr)
      .def_readonly("beta1", &AdamConfig::beta1)
      .def_readonly("beta2", &AdamConfig::beta2)
      .def_readonly("eps", &AdamConfig::eps);
  py::class_<SgdConfig>(m, "SgdConfig",
                        "Robbins-Monro step sizes a_t = a0 / (t0 + t)^kappa. Immutable; twin: "
                        "bayesgrad._numpy.optim.SgdConfig.")
      .def(py::init(&sgd_config), py::arg("a0") = 1e-2, py::arg("t0") = 0.0, py::arg("kappa") = 1.0)
      .def_readonly("a0", &SgdConfig::a0)
      .def_readonly("t0", &SgdConfig::t0)
      .def_readonly("kappa", &SgdConfig::kappa);
  py::class_<MapConfig>(m, "MapConfig",
                        "What map_epoch needs besides the arrays. Immutable; twin: bayesgrad._numpy.optim.MapConfig.")
      .def(py::init([](const mlp::NetConfig& net, int64_t likelihood, bool learn_noise, double dropout_p,
                       uint64_t seed, uint64_t dropout_stream, int64_t batch_size, const AdamConfig& adam) {
             if (!(dropout_p >= 0 && dropout_p < 1))
               throw std::invalid_argument("MapConfig: dropout_p must be in [0, 1)");
             if (batch_size < 1) throw std::invalid_argument("MapConfig: batch_size must be >= 1");
             return MapConfig{net,  codes::from_int<mlp::Likelihood>(likelihood, "likelihood"),
                              learn_noise, dropout_p, seed, dropout_stream, batch_size, adam};
           }),
           py::arg("net"), py::arg("likelihood"), py::arg("learn_noise") = false, py::arg("dropout_p") = 0.0,
           py::arg("seed") = 0, py::arg("dropout_stream") = 0, py::arg("batch_size") = 32,
           py::arg("adam") = AdamConfig{})
      .def_readonly("net", &MapConfig::net)
      .def_property_readonly("likelihood", [](const MapConfig& c) { return static_cast<int>(c.lik); })
      .def_readonly("learn_noise", &MapConfig::learn_noise)
      .def_readonly("dropout_p", &MapConfig::dropout_p)
      .def_readonly("seed", &MapConfig::seed)
      .def_readonly("dropout_stream", &MapConfig::dropout_stream)
      .def_readonly("batch_size", &MapConfig::batch_size)
      .def_readonly("adam", &MapConfig::adam);
  bind<float>(m);
  bind<double>(m);
  register_ensemble_epoch(m);
}

}  // namespace bayesgrad
