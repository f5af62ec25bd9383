#include "pybind11.hpp"
// (pybind11.hpp first)
#include <optional>

#include "bayesgrad/estimators.hpp"

namespace bayesgrad {

namespace {

// (n, p) matrix argument; returns n and p.
template <typename T>
void matrix_shape(const in_array<T>& a, const char* name, int64_t& n, int64_t& p) {
  if (a.ndim() != 2) throw std::invalid_argument(std::string(name) + " must have shape (n, p)");
  n = a.shape(0);
  p = a.shape(1);
}

template <typename T>
void check_vec(const py::array& a, int64_t len, const char* name) {
  if (a.ndim() != 1 || a.shape(0) != len)
    throw std::invalid_argument(std::string(name) + " must have shape (" + std::to_string(len) + ",)");
}

template <typename T>
void check_outputs(out_array<T>& mean, out_array<T>& var, std::optional<out_array<T>>& terms, int64_t n, int64_t p) {
  require_writeable(mean, "mean_out");
  require_writeable(var, "var_out");
  check_vec<T>(mean, p, "mean_out");
  check_vec<T>(var, p, "var_out");
  if (terms) {
    require_writeable(*terms, "terms_out");
    if (terms->ndim() != 2 || terms->shape(0) != n || terms->shape(1) != p)
      throw std::invalid_argument("terms_out must have shape (" + std::to_string(n) + ", " + std::to_string(p) + ")");
  }
}

template <typename T>
void bind(py::module_& m) {
  m.def(
      "column_mean_var",
      [](in_array<T> x, out_array<T> mean_out, out_array<T> var_out) {
        int64_t n, p;
        matrix_shape(x, "x", n, p);
        std::optional<out_array<T>> none;
        check_outputs(mean_out, var_out, none, n, p);
        const T* px = x.data();
        T *pm = mean_out.mutable_data(), *pv = var_out.mutable_data();
        py::gil_scoped_release rel;
        column_mean_var(px, n, p, pm, pv);
      },
      py::arg("x").noconvert(), py::arg("mean_out").noconvert(), py::arg("var_out").noconvert(),
      "Column means and ddof=1 variances of x (n, p) into mean_out, var_out (p,) (Welford, fixed chunking).");
  m.def(
      "score_accumulate",
      [](in_array<T> score, in_array<T> f, std::optional<in_array<T>> baseline, bool loo, out_array<T> mean_out,
         out_array<T> var_out, std::optional<out_array<T>> terms_out) {
        int64_t n, p;
        matrix_shape(score, "score", n, p);
        check_vec<T>(f, n, "f");
        if (baseline) check_vec<T>(*baseline, n, "baseline");
        if (loo && baseline) throw std::invalid_argument("pass either baseline or loo=True, not both");
        if (loo && n < 2) throw std::invalid_argument("a leave-one-out baseline needs n >= 2 samples");
        check_outputs(mean_out, var_out, terms_out, n, p);
        const T *ps = score.data(), *pf = f.data(), *pb = baseline ? baseline->data() : nullptr;
        T *pm = mean_out.mutable_data(), *pv = var_out.mutable_data();
        T* pt = terms_out ? terms_out->mutable_data() : nullptr;
        py::gil_scoped_release rel;
        score_accumulate(ps, pf, pb, loo, n, p, pm, pv, pt);
      },
      py::arg("score").noconvert(), py::arg("f").noconvert(), py::arg("baseline").noconvert().none(true),
      py::arg("loo"), py::arg("mean_out").noconvert(), py::arg("var_out").noconvert(),
      py::arg("terms_out").noconvert() = py::none(),
      "Mean/var over samples of score (n, p) * (f - b) (n,), b = baseline, leave-one-out mean, or 0.");
  m.def(
      "pathwise_accumulate",
      [](in_array<T> g, std::optional<in_array<T>> jac, out_array<T> mean_out, out_array<T> var_out,
         std::optional<out_array<T>> terms_out) {
        int64_t n, p;
        matrix_shape(g, "g", n, p);
        if (jac && (jac->ndim() != 2 || jac->shape(0) != n || jac->shape(1) != p))
          throw std::invalid_argument("jac must have the shape of g");
        check_outputs(mean_out, var_out, terms_out, n, p);
        const T *pg = g.data(), *pj = jac ? jac->data() : nullptr;
        T *pm = mean_out.mutable_data(), *pv = var_out.mutable_data();
        T* pt = terms_out ? terms_out->mutable_data() : nullptr;
        py::gil_scoped_release rel;
        pathwise_accumulate(pg, pj, n, p, pm, pv, pt);
      },
      py::arg("g").noconvert(), py::arg("jac").noconvert().none(true), py::arg("mean_out").noconvert(),
      py::arg("var_out").noconvert(), py::arg("terms_out").noconvert() = py::none(),
      "Mean/var over samples of g (n, p) * jac (n, p) (jac None: ones), the pathwise chain rule.");
}

}  // namespace

void register_estimators(py::module_& m) {
  // One name per kernel; the dtype of the arrays (all float32 or all float64) picks the overload.
  bind<float>(m);
  bind<double>(m);
}

}  // namespace bayesgrad
