#include "pybind11.hpp"
// (pybind11.hpp first)
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "bayesgrad/ensemble.hpp"
#include "training.hpp"

// optim.EnsembleConfig and optim.ensemble_epoch (part of the optim concept;
// register_optim calls register_ensemble_epoch).
namespace bayesgrad {

namespace {

template <typename T>
void bind_epoch(py::module_& m) {
  m.def(
      "ensemble_epoch",
      [](const EnsembleConfig& c, out_array<T> state, out_array<T> m1, out_array<T> m2, int64_t step, in_array<T> X,
         in_array<T> y, in_array<int64_t> perms, std::optional<in_array<T>> sample_weight) {
        const mlp::Layout& L = c.net.layout;
        const bool epochs = perms.ndim() == 3;
        if ((perms.ndim() != 2 && !epochs) || perms.shape(0) < 1 || perms.shape(1) < 1 ||
            (epochs && perms.shape(2) < 1))
          throw std::invalid_argument("perms must have shape (M, L) or (E, M, L) with E, M, L >= 1");
        const int64_t E = epochs ? perms.shape(0) : 1;
        const int64_t M = perms.shape(epochs ? 1 : 0), n_perm = perms.shape(epochs ? 2 : 1);
        // epoch_data checks X, y and the row indices (perms read as one flat (E M L,) list).
        const in_array<int64_t> flat = perms.reshape(std::vector<py::ssize_t>{E * M * n_perm});
        const EpochData e = epoch_data<T>(L, c.lik, X, y, flat, c.batch_size);
        const int64_t n = L.n_params + e.Dy;
        for (auto [a, name] : {std::pair<const py::array*, const char*>{&state, "state"}, {&m1, "m"}, {&m2, "v"}}) {
          require_shape(*a, name, {M, n});
          require_writeable(*a, name);
        }
        const T* w = nullptr;
        if (sample_weight) {
          const auto& sw = *sample_weight;
          need_len(sw, e.N, "sample_weight");
          w = sw.data();
          for (int64_t i = 0; i < e.N; ++i)
            if (!(w[i] >= T(0)) || !std::isfinite(w[i]))
              throw std::invalid_argument("sample_weight must be finite and >= 0");
        }
        const int64_t B = std::min(c.batch_size, e.N);
        out_array<T> stats(std::vector<py::ssize_t>{E * ((n_perm + B - 1) / B), M, 2});
        T* s = state.mutable_data();
        T* a = m1.mutable_data();
        T* b = m2.mutable_data();
        const T* x = X.data();
        const T* yy = y.data();
        const int64_t* p = flat.data();
        T* st = stats.mutable_data();
        int64_t new_step;
        {
          py::gil_scoped_release rel;
          new_step = ensemble_epoch<T>(c, M, s, a, b, step, x, yy, e.N, p, E, n_perm, w, st);
        }
        return py::make_tuple(new_step, stats);
      },
      py::arg("config"), py::arg("state").noconvert(), py::arg("m").noconvert(), py::arg("v").noconvert(),
      py::arg("step"), py::arg("X"), py::arg("y"), py::arg("perms"), py::arg("sample_weight") = py::none(),
      "One epoch (or the slice of it that perms holds), or E whole epochs, of M independent MAP trainings with Adam: "
      "state, m, v (M, P + Dy) are the members' [theta, log_noise] and moments, updated in place; perms (M, L) each "
      "member's minibatch rows, or (E, M, L) those of E epochs run in order; sample_weight (N,) or None; returns (the "
      "new step count, stats (E n_batches, M, 2): each batch's weighted clean nll sum and its objective per member).");
}

}  // namespace

void register_ensemble_epoch(py::module_& m) {
  m.def(
      "ensemble_orders",
      [](uint64_t seed, in_array<uint64_t> streams, int64_t epoch0, out_array<int64_t> out) {
        if (streams.ndim() != 1 || streams.shape(0) < 1)
          throw std::invalid_argument("streams must have shape (M,) with M >= 1");
        const int64_t M = streams.shape(0);
        for (int64_t s = 0; s < M; ++s)
          if (streams.data()[s] >> 63) throw std::invalid_argument("streams entries must be < 2**63");
        if (epoch0 < 0) throw std::invalid_argument("epoch0 must be >= 0");
        if (out.ndim() != 3 || out.shape(0) < 1 || out.shape(1) != M || out.shape(2) < 1)
          throw std::invalid_argument("out must have shape (E, M, N) with E, N >= 1 and M = len(streams)");
        require_writeable(out, "out");
        const int64_t E = out.shape(0), N = out.shape(2);
        const uint64_t* st = streams.data();
        int64_t* o = out.mutable_data();
        py::gil_scoped_release rel;
        ensemble_orders(seed, st, M, epoch0, E, N, o);
      },
      py::arg("seed"), py::arg("streams"), py::arg("epoch0"), py::arg("out").noconvert(),
      "The minibatch orders of E epochs for M members into out (E, M, N) int64: out[e, s] is the stable argsort of "
      "the float64 uniforms 0..N-1 of (seed, fold_in(streams[s], epoch0 + e)), as _training.permutation draws them.");
  py::class_<EnsembleConfig>(m, "EnsembleConfig",
                             "What ensemble_epoch needs besides the arrays. Immutable; twin: "
                             "bayesgrad._numpy.optim.EnsembleConfig.")
      .def(py::init([](const mlp::NetConfig& net, int64_t likelihood, bool learn_noise, double weight_decay,
                       int64_t batch_size, const AdamConfig& adam, std::vector<double> adv_eps) {
             if (!(weight_decay >= 0) || !std::isfinite(weight_decay))
               throw std::invalid_argument("EnsembleConfig: weight_decay must be finite and >= 0");
             if (batch_size < 1) throw std::invalid_argument("EnsembleConfig: batch_size must be >= 1");
             if (!adv_eps.empty() && static_cast<int64_t>(adv_eps.size()) != net.layout.d_input())
               throw std::invalid_argument("EnsembleConfig: adv_eps must be empty or have one entry per input");
             for (double e : adv_eps)
               if (!(e >= 0) || !std::isfinite(e))
                 throw std::invalid_argument("EnsembleConfig: adv_eps entries must be finite and >= 0");
             return EnsembleConfig{net,       codes::from_int<mlp::Likelihood>(likelihood, "likelihood"),
                                   learn_noise, weight_decay, batch_size, adam, std::move(adv_eps)};
           }),
           py::arg("net"), py::arg("likelihood"), py::arg("learn_noise") = false, py::arg("weight_decay") = 0.0,
           py::arg("batch_size") = 32, py::arg("adam") = AdamConfig{}, py::arg("adv_eps") = std::vector<double>{})
      .def_readonly("net", &EnsembleConfig::net)
      .def_property_readonly("likelihood", [](const EnsembleConfig& c) { return static_cast<int>(c.lik); })
      .def_readonly("learn_noise", &EnsembleConfig::learn_noise)
      .def_readonly("weight_decay", &EnsembleConfig::weight_decay)
      .def_readonly("batch_size", &EnsembleConfig::batch_size)
      .def_readonly("adam", &EnsembleConfig::adam)
      .def_property_readonly("adv_eps", [](const EnsembleConfig& c) { return py::tuple(py::cast(c.adv_eps)); });
  bind_epoch<float>(m);
  bind_epoch<double>(m);
}

}  // namespace bayesgrad
