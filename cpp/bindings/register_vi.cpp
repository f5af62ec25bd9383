#include "pybind11.hpp"
// (pybind11.hpp first)
#include <cmath>
#include <string>

#include "bayesgrad/vi.hpp"
#include "training.hpp"

namespace bayesgrad {

namespace {

ViConfig vi_config(const mlp::NetConfig& net, int64_t likelihood, bool learn_noise, int64_t estimator, int64_t prior,
                   double prior_sigma, double mix_pi, double mix_s1, double mix_s2, int64_t n_samples, uint64_t seed,
                   uint64_t stream, int64_t batch_size, const AdamConfig& adam) {
  ViConfig c;
  c.net = net;
  c.lik = codes::from_int<mlp::Likelihood>(likelihood, "likelihood");
  c.learn_noise = learn_noise;
  c.estimator = codes::from_int<ViEstimator>(estimator, "estimator");
  c.prior = codes::from_int<ViPrior>(prior, "prior");
  if (!(prior_sigma > 0) || !std::isfinite(prior_sigma))
    throw std::invalid_argument("ViConfig: prior_sigma must be finite and > 0");
  if (!(mix_pi > 0 && mix_pi < 1)) throw std::invalid_argument("ViConfig: mix_pi must be in (0, 1)");
  if (!(mix_s1 > 0) || !(mix_s2 > 0)) throw std::invalid_argument("ViConfig: mix_s1 and mix_s2 must be > 0");
  if (n_samples < 1) throw std::invalid_argument("ViConfig: n_samples must be >= 1");
  if (batch_size < 1) throw std::invalid_argument("ViConfig: batch_size must be >= 1");
  c.prior_sigma = prior_sigma;
  c.mix_pi = mix_pi;
  c.mix_s1 = mix_s1;
  c.mix_s2 = mix_s2;
  c.n_samples = n_samples;
  c.seed = seed;
  c.stream = stream;
  c.batch_size = batch_size;
  c.adam = adam;
  return c;
}

template <typename T>
void bind(py::module_& m) {
  m.def(
      "vi_epoch",
      [](const ViConfig& c, out_array<T> state, out_array<T> m1, out_array<T> m2, int64_t step, in_array<T> X,
         in_array<T> y, in_array<int64_t> perm, in_array<T> kl_weights, const py::object& weights) {
        const EpochData e = epoch_data<T>(c.net.layout, c.lik, X, y, perm, c.batch_size);
        const int64_t n = 2 * c.net.layout.n_params + e.Dy;
        need_train_state(state, m1, m2, n);
        need_len(kl_weights, e.batches.count(), "kl_weights");
        const in_array<T> w = row_weights<T>(weights, e.N);
        const T* wp = weights.is_none() ? nullptr : w.data();
        out_array<T> stats(std::vector<py::ssize_t>{e.batches.count(), 3});
        T* s = state.mutable_data();
        T* a = m1.mutable_data();
        T* b = m2.mutable_data();
        const T* x = X.data();
        const T* yy = y.data();
        const T* kw = kl_weights.data();
        T* st = stats.mutable_data();
        int64_t new_step;
        {
          py::gil_scoped_release rel;
          new_step = vi_epoch<T>(c, s, a, b, step, x, yy, e.N, e.batches, kw, st, wp);
        }
        return py::make_tuple(new_step, stats);
      },
      py::arg("config"), py::arg("state").noconvert(), py::arg("m").noconvert(), py::arg("v").noconvert(),
      py::arg("step"), py::arg("X"), py::arg("y"), py::arg("perm"), py::arg("kl_weights"),
      py::arg("weights") = py::none(),
      "One Bayes-by-Backprop epoch (or the slice of it that perm holds; kl_weights: its batches') on state = [mu (P), rho (P), log_noise (Dy)] in place; returns (the new step "
      "count, stats (n_batches, 3): each batch's mean-over-samples nll, KL and objective). weights: None or (N,) "
      "finite non-negative row weights of the likelihood (row n counts weights[n] times).");
  m.def(
      "vi_grad",
      [](const ViConfig& c, in_array<T> state, in_array<T> X, in_array<T> y, int64_t step, double kl_weight,
         out_array<T> grad) {
        const int64_t N = X.ndim() == 2 ? X.shape(0) : 0;
        in_array<int64_t> perm(std::vector<py::ssize_t>{N});
        for (int64_t i = 0; i < N; ++i) perm.mutable_data()[i] = i;
        const EpochData e = epoch_data<T>(c.net.layout, c.lik, X, y, perm, 1);
        const int64_t n = 2 * c.net.layout.n_params + e.Dy;
        need_len(state, n, "state");
        need_state(grad, n, "grad");
        out_array<T> stats(std::vector<py::ssize_t>{3});
        const T* s = state.data();
        const T* x = X.data();
        const T* yy = y.data();
        T* g = grad.mutable_data();
        T* st = stats.mutable_data();
        {
          py::gil_scoped_release rel;
          vi_grad<T>(c, s, x, yy, e.N, step, static_cast<T>(kl_weight), g, st);
        }
        return stats;
      },
      py::arg("config"), py::arg("state"), py::arg("X"), py::arg("y"), py::arg("step"), py::arg("kl_weight"),
      py::arg("grad").noconvert(),
      "The objective N (mean nll + kl_weight KL) / N on all rows at step `step` with its gradient (2P + Dy) "
      "written into grad; returns (mean nll, KL, objective).");
}

}  // namespace

void register_vi(py::module_& m) {
  py::class_<ViConfig>(m, "ViConfig",
                       "What the mean-field VI kernels need besides the arrays. Immutable; twin: "
                       "bayesgrad._numpy.vi.ViConfig.")
      .def(py::init(&vi_config), py::arg("net"), py::arg("likelihood"), py::arg("learn_noise") = false,
           py::arg("estimator") = 0, py::arg("prior") = 0, py::arg("prior_sigma") = 1.0, py::arg("mix_pi") = 0.5,
           py::arg("mix_s1") = 1.0, py::arg("mix_s2") = 1e-3, py::arg("n_samples") = 1, py::arg("seed") = 0,
           py::arg("stream") = 0, py::arg("batch_size") = 32, py::arg("adam") = AdamConfig{})
      .def_readonly("net", &ViConfig::net)
      .def_property_readonly("likelihood", [](const ViConfig& c) { return static_cast<int>(c.lik); })
      .def_readonly("learn_noise", &ViConfig::learn_noise)
      .def_property_readonly("estimator", [](const ViConfig& c) { return static_cast<int>(c.estimator); })
      .def_property_readonly("prior", [](const ViConfig& c) { return static_cast<int>(c.prior); })
      .def_readonly("prior_sigma", &ViConfig::prior_sigma)
      .def_readonly("mix_pi", &ViConfig::mix_pi)
      .def_readonly("mix_s1", &ViConfig::mix_s1)
      .def_readonly("mix_s2", &ViConfig::mix_s2)
      .def_readonly("n_samples", &ViConfig::n_samples)
      .def_readonly("seed", &ViConfig::seed)
      .def_readonly("stream", &ViConfig::stream)
      .def_readonly("batch_size", &ViConfig::batch_size)
      .def_readonly("adam", &ViConfig::adam);
  bind<float>(m);
  bind<double>(m);
}

}  // namespace bayesgrad
