#include "pybind11.hpp"
// (pybind11.hpp first)
#include <string>

#include "bayesgrad/optim.hpp"
#include "bayesgrad/vi.hpp"

namespace bayesgrad {

namespace {

void need_len(const py::array& a, int64_t n, const char* name) {
  if (a.ndim() != 1 || a.shape(0) != n)
    throw std::invalid_argument(std::string(name) + " must have shape (" + std::to_string(n) + ",)");
}

AdamConfig adam_of(const in_array<double>& a) {
  need_len(a, 4, "adam");
  AdamConfig c;
  c.lr = a.data()[0];
  c.beta1 = a.data()[1];
  c.beta2 = a.data()[2];
  c.eps = a.data()[3];
  if (!(c.lr >= 0) || !(c.beta1 >= 0 && c.beta1 < 1) || !(c.beta2 >= 0 && c.beta2 < 1) || !(c.eps > 0))
    throw std::invalid_argument("adam = (lr >= 0, 0 <= beta1 < 1, 0 <= beta2 < 1, eps > 0)");
  return c;
}

// Shared checks of an epoch call: data, permutation and batch schedule.
template <typename T>
struct EpochArgs {
  mlp::Layout L;
  mlp::Activation act;
  mlp::Likelihood lik;
  int64_t N, Dy;
  Batches batches;
};

template <typename T>
EpochArgs<T> epoch_args(const in_array<int64_t>& sizes, int activation, int likelihood, const in_array<T>& X,
                        const in_array<T>& y, const in_array<int64_t>& perm, int64_t batch_size) {
  if (sizes.ndim() != 1) throw std::invalid_argument("sizes must be a 1-D integer array");
  EpochArgs<T> a{mlp::Layout(sizes.data(), sizes.shape(0)), mlp::activation_from_int(activation),
                 mlp::likelihood_from_int(likelihood), 0, 0, Batches{nullptr, 0, 1}};
  a.Dy = mlp::target_dim(a.lik, a.L.d_output());
  if (X.ndim() != 2 || X.shape(1) != a.L.d_input() || X.shape(0) < 1)
    throw std::invalid_argument("X must have shape (N, " + std::to_string(a.L.d_input()) + ") with N >= 1");
  a.N = X.shape(0);
  if (y.ndim() != 2 || y.shape(0) != a.N || y.shape(1) != a.Dy)
    throw std::invalid_argument("y must have shape (N, " + std::to_string(a.Dy) + ")");
  need_len(perm, a.N, "perm");
  const int64_t* p = perm.data();
  for (int64_t i = 0; i < a.N; ++i)
    if (p[i] < 0 || p[i] >= a.N) throw std::invalid_argument("perm entries must be row indices in [0, N)");
  if (batch_size < 1) throw std::invalid_argument("batch_size must be >= 1");
  a.batches = Batches{p, a.N, std::min(batch_size, a.N)};
  return a;
}

template <typename T>
void need_state(const py::array& a, int64_t n, const char* name) {
  need_len(a, n, name);
  if (!a.writeable()) throw std::invalid_argument(std::string(name) + " must be writeable");
}

template <typename T>
ViConfig vi_config(const EpochArgs<T>& e, bool learn_noise, int estimator, int prior,
                   const in_array<double>& prior_params, int64_t n_samples, uint64_t seed, uint64_t stream) {
  ViConfig c;
  c.layout = e.L;
  c.act = e.act;
  c.lik = e.lik;
  c.learn_noise = learn_noise;
  if (estimator < 0 || estimator > 2) throw std::invalid_argument("estimator code out of range");
  if (prior < 0 || prior > 1) throw std::invalid_argument("prior code out of range");
  c.estimator = static_cast<ViEstimator>(estimator);
  c.prior = static_cast<ViPrior>(prior);
  need_len(prior_params, 4, "prior_params");
  const double* pp = prior_params.data();
  c.prior_sigma = pp[0];
  c.mix_pi = pp[1];
  c.mix_s1 = pp[2];
  c.mix_s2 = pp[3];
  if (!(c.prior_sigma > 0) || !(c.mix_pi > 0 && c.mix_pi < 1) || !(c.mix_s1 > 0) || !(c.mix_s2 > 0))
    throw std::invalid_argument("prior_params = (sigma > 0, 0 < pi < 1, s1 > 0, s2 > 0)");
  if (n_samples < 1) throw std::invalid_argument("n_samples must be >= 1");
  c.n_samples = n_samples;
  c.seed = seed;
  c.stream = stream;
  return c;
}

template <typename T>
void bind(py::module_& m) {
  m.def(
      "adam_update",
      [](out_array<T> params, in_array<T> grad, out_array<T> m1, out_array<T> m2, int64_t t, in_array<double> adam) {
        const int64_t n = size_of(params);
        for (auto* a : {&params, &m1, &m2}) need_state<T>(*a, n, "params, m and v");
        need_len(grad, n, "grad");
        const AdamConfig c = adam_of(adam);
        if (t < 1) throw std::invalid_argument("t must be >= 1");
        T* p = params.mutable_data();
        const T* g = grad.data();
        T* a = m1.mutable_data();
        T* b = m2.mutable_data();
        py::gil_scoped_release rel;
        adam_step<T>(p, g, a, b, n, t, c);
      },
      py::arg("params").noconvert(), py::arg("grad"), py::arg("m").noconvert(), py::arg("v").noconvert(),
      py::arg("t"), py::arg("adam"),
      "One fused Adam step t (1-based) in place; adam = (lr, beta1, beta2, eps).");
  m.def(
      "map_epoch",
      [](out_array<T> state, out_array<T> m1, out_array<T> m2, int64_t step, in_array<T> X, in_array<T> y,
         in_array<int64_t> perm, int64_t batch_size, in_array<T> prior_prec, in_array<int64_t> sizes, int activation,
         int likelihood, bool learn_noise, double dropout_p, uint64_t seed, uint64_t dropout_stream,
         in_array<double> adam, out_array<T> stats) {
        const EpochArgs<T> e = epoch_args<T>(sizes, activation, likelihood, X, y, perm, batch_size);
        const int64_t n = e.L.n_params + e.Dy;
        need_state<T>(state, n, "state");
        need_state<T>(m1, n, "m");
        need_state<T>(m2, n, "v");
        need_len(prior_prec, e.L.n_params, "prior_prec");
        if (stats.ndim() != 2 || stats.shape(0) != e.batches.count() || stats.shape(1) != 2)
          throw std::invalid_argument("stats must have shape (n_batches, 2)");
        require_writeable(stats, "stats");
        if (!(dropout_p >= 0 && dropout_p < 1)) throw std::invalid_argument("dropout_p must be in [0, 1)");
        MapConfig c{e.L, e.act, e.lik, learn_noise, dropout_p, seed, dropout_stream, adam_of(adam)};
        T* s = state.mutable_data();
        T* a = m1.mutable_data();
        T* b = m2.mutable_data();
        const T* x = X.data();
        const T* yy = y.data();
        const T* pp = prior_prec.data();
        T* st = stats.mutable_data();
        py::gil_scoped_release rel;
        return map_epoch<T>(c, s, a, b, step, x, yy, e.N, e.batches, pp, st);
      },
      py::arg("state").noconvert(), py::arg("m").noconvert(), py::arg("v").noconvert(), py::arg("step"),
      py::arg("X"), py::arg("y"), py::arg("perm"), py::arg("batch_size"), py::arg("prior_prec"), py::arg("sizes"),
      py::arg("activation"), py::arg("likelihood"), py::arg("learn_noise"), py::arg("dropout_p"), py::arg("seed"),
      py::arg("dropout_stream"), py::arg("adam"), py::arg("stats").noconvert(),
      "One MAP / MC-dropout epoch with Adam on state = [theta (P), log_noise (Dy)]; returns the new step count.");
  m.def(
      "vi_epoch",
      [](out_array<T> state, out_array<T> m1, out_array<T> m2, int64_t step, in_array<T> X, in_array<T> y,
         in_array<int64_t> perm, int64_t batch_size, in_array<T> kl_weights, in_array<int64_t> sizes, int activation,
         int likelihood, bool learn_noise, int estimator, int prior, in_array<double> prior_params,
         int64_t n_samples, uint64_t seed, uint64_t stream, in_array<double> adam, out_array<T> stats) {
        const EpochArgs<T> e = epoch_args<T>(sizes, activation, likelihood, X, y, perm, batch_size);
        const ViConfig c0 = vi_config<T>(e, learn_noise, estimator, prior, prior_params, n_samples, seed, stream);
        ViConfig c = c0;
        c.adam = adam_of(adam);
        const int64_t n = 2 * e.L.n_params + e.Dy;
        need_state<T>(state, n, "state");
        need_state<T>(m1, n, "m");
        need_state<T>(m2, n, "v");
        need_len(kl_weights, e.batches.count(), "kl_weights");
        if (stats.ndim() != 2 || stats.shape(0) != e.batches.count() || stats.shape(1) != 3)
          throw std::invalid_argument("stats must have shape (n_batches, 3)");
        require_writeable(stats, "stats");
        T* s = state.mutable_data();
        T* a = m1.mutable_data();
        T* b = m2.mutable_data();
        const T* x = X.data();
        const T* yy = y.data();
        const T* kw = kl_weights.data();
        T* st = stats.mutable_data();
        py::gil_scoped_release rel;
        return vi_epoch<T>(c, s, a, b, step, x, yy, e.N, e.batches, kw, st);
      },
      py::arg("state").noconvert(), py::arg("m").noconvert(), py::arg("v").noconvert(), py::arg("step"),
      py::arg("X"), py::arg("y"), py::arg("perm"), py::arg("batch_size"), py::arg("kl_weights"), py::arg("sizes"),
      py::arg("activation"), py::arg("likelihood"), py::arg("learn_noise"), py::arg("estimator"), py::arg("prior"),
      py::arg("prior_params"), py::arg("n_samples"), py::arg("seed"), py::arg("stream"), py::arg("adam"),
      py::arg("stats").noconvert(),
      "One Bayes-by-Backprop epoch on state = [mu (P), rho (P), log_noise (Dy)]; returns the new step count.");
  m.def(
      "vi_grad",
      [](in_array<T> state, in_array<T> X, in_array<T> y, in_array<int64_t> sizes, int activation, int likelihood,
         bool learn_noise, int estimator, int prior, in_array<double> prior_params, int64_t n_samples,
         uint64_t seed, uint64_t stream, int64_t step, double kl_weight, out_array<T> grad, out_array<T> stats) {
        in_array<int64_t> perm(std::vector<py::ssize_t>{X.ndim() == 2 ? X.shape(0) : 0});
        for (py::ssize_t i = 0; i < perm.size(); ++i) perm.mutable_data()[i] = i;
        const EpochArgs<T> e = epoch_args<T>(sizes, activation, likelihood, X, y, perm, 1);
        const ViConfig c = vi_config<T>(e, learn_noise, estimator, prior, prior_params, n_samples, seed, stream);
        const int64_t n = 2 * e.L.n_params + e.Dy;
        need_len(state, n, "state");
        need_state<T>(grad, n, "grad");
        need_state<T>(stats, 3, "stats");
        const T* s = state.data();
        const T* x = X.data();
        const T* yy = y.data();
        T* g = grad.mutable_data();
        T* st = stats.mutable_data();
        py::gil_scoped_release rel;
        vi_grad<T>(c, s, x, yy, e.N, step, static_cast<T>(kl_weight), g, st);
      },
      py::arg("state"), py::arg("X"), py::arg("y"), py::arg("sizes"), py::arg("activation"), py::arg("likelihood"),
      py::arg("learn_noise"), py::arg("estimator"), py::arg("prior"), py::arg("prior_params"), py::arg("n_samples"),
      py::arg("seed"), py::arg("stream"), py::arg("step"), py::arg("kl_weight"), py::arg("grad").noconvert(),
      py::arg("stats").noconvert(),
      "Objective N*(mean nll + kl_weight*KL)/N on all rows at step `step` and its gradient (2P + Dy).");
}

}  // namespace

void register_optim(py::module_& m) {
  bind<float>(m);
  bind<double>(m);
}

}  // namespace bayesgrad
