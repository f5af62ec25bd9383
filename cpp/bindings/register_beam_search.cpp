// Sampling-without-replacement kernels of _core.estimators (cpp/src/beam_search.cpp): the unordered
// set's probabilities and outside masses, its logits terms, and the stochastic beam search (part of the
// estimators concept; register_estimators calls register_beam_search).
#include "pybind11.hpp"
// (pybind11.hpp first)
#include <optional>

#include "bayesgrad/estimators.hpp"
#include "estimator_checks.hpp"

namespace bayesgrad {

namespace {

using namespace estimator_checks;  // matrix_shape, check_vec, check_mat, check_out_mat
using D = double;

}  // namespace

void register_beam_search(py::module_& m) {
  m.def(
      "set_order_probabilities",
      [](in_array<D> log_p, in_array<D> log_rest, out_array<D> first, std::optional<out_array<D>> second) {
        int64_t n, k;
        matrix_shape(log_p, "log_p", n, k);
        if (k < 1 || k > 12) throw std::invalid_argument("set_order_probabilities needs 1 <= k <= 12");
        check_vec<D>(log_rest, n, "log_rest");
        check_out_mat(first, n, k, "first");
        if (second) {
          require_writeable(*second, "second");
          if (second->ndim() != 3 || second->shape(0) != n || second->shape(1) != k || second->shape(2) != k)
            throw std::invalid_argument("second must have shape (n, k, k)");
        }
        const D *pl = log_p.data(), *pr = log_rest.data();
        D *pf = first.mutable_data(), *ps = second ? second->mutable_data() : nullptr;
        py::gil_scoped_release rel;
        set_order_probabilities(pl, pr, n, k, pf, ps);
      },
      py::arg("log_p").noconvert(), py::arg("log_rest").noconvert(), py::arg("first").noconvert(),
      py::arg("second").noconvert().none(true),
      "P(B_1 = s | S) (n, k) and P(B_2 = s' | B_1 = s, S) (n, k, k) or None for sets of k <= 12 elements drawn "
      "without replacement, from their log-probabilities log_p (n, k) and log_rest (n,) the log of the mass "
      "outside each set (-inf: none) (float64).");
  m.def(
      "set_outside_mass",
      [](py::array_t<int64_t, py::array::c_style> conf, in_array<D> log_probs, out_array<D> out) {
        if (conf.ndim() != 3) throw std::invalid_argument("conf must have shape (n, k, D)");
        const int64_t n = conf.shape(0), k = conf.shape(1), d = conf.shape(2);
        int64_t dp, kc;
        matrix_shape(log_probs, "log_probs", dp, kc);
        if (dp != d) throw std::invalid_argument("log_probs must have shape (D, K)");
        require_writeable(out, "out");
        check_vec<D>(out, n, "out");
        const int64_t* pc = conf.data();
        const D* pl = log_probs.data();
        D* po = out.mutable_data();
        py::gil_scoped_release rel;
        set_outside_mass(pc, pl, n, k, d, kc, po);
      },
      py::arg("conf").noconvert(), py::arg("log_probs").noconvert(), py::arg("out").noconvert(),
      "log of the probability mass outside each set of k distinct configurations conf (n, k, D) of D Categorical "
      "coordinates with log-probabilities log_probs (D, K), into out (n,) (-inf: the whole support; float64).");
  m.def(
      "categorical_set_terms",
      [](py::array_t<int64_t, py::array::c_style> conf, in_array<D> c, in_array<D> probs, out_array<D> terms) {
        if (conf.ndim() != 3) throw std::invalid_argument("conf must have shape (n, k, D)");
        const int64_t n = conf.shape(0), k = conf.shape(1), d = conf.shape(2);
        check_mat(c, n, k, "c");
        int64_t dp, kc;
        matrix_shape(probs, "probs", dp, kc);
        if (dp != d) throw std::invalid_argument("probs must have shape (D, K)");
        require_writeable(terms, "terms");
        if (terms.ndim() != 3 || terms.shape(0) != n || terms.shape(1) != d || terms.shape(2) != kc)
          throw std::invalid_argument("terms must have shape (n, D, K)");
        const int64_t* pc = conf.data();
        const D *pw = c.data(), *pp = probs.data();
        D* pt = terms.mutable_data();
        py::gil_scoped_release rel;
        categorical_set_terms(pc, pw, pp, n, k, d, kc, pt);
      },
      py::arg("conf").noconvert(), py::arg("c").noconvert(), py::arg("probs").noconvert(),
      py::arg("terms").noconvert(),
      "Logits terms (n, D, K) = sum_s c[:, s] (onehot(conf[:, s]) - probs) of sets conf (n, k, D) with weights "
      "c (n, k) (float64).");
  m.def(
      "gumbel_beam_search",
      [](in_array<D> log_probs, in_array<D> u, py::array_t<int64_t, py::array::c_style> conf, out_array<D> log_prob,
         out_array<D> perturbed) {
        int64_t d, k;
        matrix_shape(log_probs, "log_probs", d, k);
        if (conf.ndim() != 3) throw std::invalid_argument("conf must have shape (n, m, D)");
        const int64_t n = conf.shape(0), mb = conf.shape(1);
        if (conf.shape(2) != d) throw std::invalid_argument("conf must have shape (n, m, D)");
        require_writeable(conf, "conf");
        check_mat(u, n, 1 + d * mb * k, "u");
        check_out_mat(log_prob, n, mb, "log_prob");
        check_out_mat(perturbed, n, mb, "perturbed");
        if (k < 1 || mb < 1) throw std::invalid_argument("need K >= 1 classes and m >= 1 beams");
        double configs = 1.0;
        for (int64_t t = 0; t < d && configs < static_cast<double>(mb); ++t) configs *= static_cast<double>(k);
        if (configs < static_cast<double>(mb)) throw std::invalid_argument("m exceeds the K^D configurations");
        const D *pl = log_probs.data(), *pu = u.data();
        int64_t* pc = conf.mutable_data();
        D *pp = log_prob.mutable_data(), *pg = perturbed.mutable_data();
        py::gil_scoped_release rel;
        gumbel_beam_search(pl, d, k, pu, n, mb, pc, pp, pg);
      },
      py::arg("log_probs").noconvert(), py::arg("u").noconvert(), py::arg("conf").noconvert(),
      py::arg("log_prob").noconvert(), py::arg("perturbed").noconvert(),
      "Stochastic beam search (Gumbel-top-m over the joint configurations of log_probs (D, K)) from uniforms "
      "u (n, 1 + D m K) into conf (n, m, D) int64, log_prob and perturbed (n, m) (float64).");
}

}  // namespace bayesgrad
