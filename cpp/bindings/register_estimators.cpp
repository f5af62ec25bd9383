// The estimators concept's bindings (_core.estimators): the score-function, pathwise and
// control-variate accumulations, the IWAE-family terms and the measure-valued points; the REBAR /
// RELAX kernels are bound in register_relax.cpp, sampling without replacement in
// register_beam_search.cpp (both called from register_estimators), the shared checks in estimator_checks.hpp.
#include "pybind11.hpp"
// (pybind11.hpp first)
#include <optional>
#include <string>

#include "bayesgrad/estimators.hpp"
#include "estimator_checks.hpp"

namespace bayesgrad {

namespace {

using namespace estimator_checks;  // matrix_shape, check_vec, check_mat, check_out_mat

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

// Outputs of the fused Normal kernels: mean / var (2, p), terms (2, n, p).
template <typename T>
void check_pair_outputs(out_array<T>& mean, out_array<T>& var, std::optional<out_array<T>>& terms, int64_t n,
                        int64_t p) {
  for (auto* a : {&mean, &var}) {
    const char* name = a == &mean ? "mean_out" : "var_out";
    require_writeable(*a, name);
    if (a->ndim() != 2 || a->shape(0) != 2 || a->shape(1) != p)
      throw std::invalid_argument(std::string(name) + " must have shape (2, " + std::to_string(p) + ")");
  }
  if (terms) {
    require_writeable(*terms, "terms_out");
    if (terms->ndim() != 3 || terms->shape(0) != 2 || terms->shape(1) != n || terms->shape(2) != p)
      throw std::invalid_argument("terms_out must have shape (2, " + std::to_string(n) + ", " + std::to_string(p) +
                                  ")");
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
  m.def(
      "pathwise_normal_accumulate",
      [](in_array<T> g, in_array<T> x, in_array<T> loc, in_array<T> scale, out_array<T> mean_out,
         out_array<T> var_out, std::optional<out_array<T>> terms_out) {
        int64_t n, p;
        matrix_shape(g, "g", n, p);
        if (x.ndim() != 2 || x.shape(0) != n || x.shape(1) != p)
          throw std::invalid_argument("x must have the shape of g");
        check_vec<T>(loc, p, "loc");
        check_vec<T>(scale, p, "scale");
        check_pair_outputs(mean_out, var_out, terms_out, n, p);
        const T *pg = g.data(), *px = x.data(), *pl = loc.data(), *ps = scale.data();
        T *pm = mean_out.mutable_data(), *pv = var_out.mutable_data();
        T* pt = terms_out ? terms_out->mutable_data() : nullptr;
        py::gil_scoped_release rel;
        pathwise_normal_accumulate(pg, px, pl, ps, n, p, pm, pv, pt);
      },
      py::arg("g").noconvert(), py::arg("x").noconvert(), py::arg("loc").noconvert(), py::arg("scale").noconvert(),
      py::arg("mean_out").noconvert(), py::arg("var_out").noconvert(), py::arg("terms_out").noconvert() = py::none(),
      "Pathwise terms of a Normal(loc, scale) (p,) at x (n, p): mean/var (2, p) of g (loc) and g (x - loc) / scale "
      "(scale).");
  m.def(
      "score_normal_accumulate",
      [](in_array<T> x, in_array<T> loc, in_array<T> scale, in_array<T> f, std::optional<in_array<T>> baseline,
         bool loo, out_array<T> mean_out, out_array<T> var_out, std::optional<out_array<T>> terms_out) {
        int64_t n, p;
        matrix_shape(x, "x", n, p);
        check_vec<T>(loc, p, "loc");
        check_vec<T>(scale, p, "scale");
        check_vec<T>(f, n, "f");
        if (baseline) check_vec<T>(*baseline, n, "baseline");
        if (loo && baseline) throw std::invalid_argument("pass either baseline or loo=True, not both");
        if (loo && n < 2) throw std::invalid_argument("a leave-one-out baseline needs n >= 2 samples");
        check_pair_outputs(mean_out, var_out, terms_out, n, p);
        const T *px = x.data(), *pl = loc.data(), *ps = scale.data(), *pf = f.data();
        const T* pb = baseline ? baseline->data() : nullptr;
        T *pm = mean_out.mutable_data(), *pv = var_out.mutable_data();
        T* pt = terms_out ? terms_out->mutable_data() : nullptr;
        py::gil_scoped_release rel;
        score_normal_accumulate(px, pl, ps, pf, pb, loo, n, p, pm, pv, pt);
      },
      py::arg("x").noconvert(), py::arg("loc").noconvert(), py::arg("scale").noconvert(), py::arg("f").noconvert(),
      py::arg("baseline").noconvert().none(true), py::arg("loo"), py::arg("mean_out").noconvert(),
      py::arg("var_out").noconvert(), py::arg("terms_out").noconvert() = py::none(),
      "Score-function terms of a Normal(loc, scale) (p,) at x (n, p) times f - b: mean/var (2, p) of the loc and "
      "scale scores' terms.");
}

using D = double;

// The float64-only kernels of the issue-16 estimators (their callers work in float64).
void bind_f64(py::module_& m) {
  m.def(
      "control_variate_accumulate",
      [](in_array<D> score, in_array<D> f, in_array<D> h, in_array<D> beta, in_array<D> eg, in_array<D> shift,
         out_array<D> mean_out, out_array<D> var_out, std::optional<out_array<D>> terms_out) {
        int64_t n, p;
        matrix_shape(score, "score", n, p);
        check_vec<D>(f, n, "f");
        check_vec<D>(h, n, "h");
        check_vec<D>(beta, p, "beta");
        check_vec<D>(eg, p, "eg");
        check_vec<D>(shift, 3, "shift");
        check_outputs(mean_out, var_out, terms_out, n, p);
        const double scale = shift.data()[0], f_shift = shift.data()[1], h_shift = shift.data()[2];
        const D *ps = score.data(), *pf = f.data(), *ph = h.data(), *pb = beta.data(), *pe = eg.data();
        D *pm = mean_out.mutable_data(), *pv = var_out.mutable_data();
        D* pt = terms_out ? terms_out->mutable_data() : nullptr;
        py::gil_scoped_release rel;
        control_variate_accumulate(ps, pf, ph, pb, pe, scale, f_shift, h_shift, n, p, pm, pv, pt);
      },
      py::arg("score").noconvert(), py::arg("f").noconvert(), py::arg("h").noconvert(), py::arg("beta").noconvert(),
      py::arg("eg").noconvert(), py::arg("shift").noconvert(), py::arg("mean_out").noconvert(),
      py::arg("var_out").noconvert(), py::arg("terms_out").noconvert() = py::none(),
      "Mean/var over samples of scale * score * ((f - f_shift) - beta (h - h_shift)) + beta eg, with shift = "
      "(scale, f_shift, h_shift) (float64).");
  m.def(
      "control_coefficient",
      [](in_array<D> score, in_array<D> f, in_array<D> h, out_array<D> beta_out) {
        int64_t n, p;
        matrix_shape(score, "score", n, p);
        check_vec<D>(f, n, "f");
        check_vec<D>(h, n, "h");
        require_writeable(beta_out, "beta_out");
        check_vec<D>(beta_out, p, "beta_out");
        if (n < 2) throw std::invalid_argument("control_coefficient needs n >= 2 samples");
        const D *ps = score.data(), *pf = f.data(), *ph = h.data();
        D* pb = beta_out.mutable_data();
        py::gil_scoped_release rel;
        control_coefficient(ps, pf, ph, n, p, pb);
      },
      py::arg("score").noconvert(), py::arg("f").noconvert(), py::arg("h").noconvert(),
      py::arg("beta_out").noconvert(),
      "Per-column Cov(score f, score h) / Var(score h) into beta_out (p,) (0 where the variance is at the values' "
      "rounding: below n 1e-28 of the largest squared |score h|; float64).");
  m.def(
      "quadratic_values",
      [](in_array<D> x, in_array<D> mu, in_array<D> g, in_array<D> h, double f0, out_array<D> out) {
        int64_t n, p;
        matrix_shape(x, "x", n, p);
        check_vec<D>(mu, p, "mu");
        check_vec<D>(g, p, "g");
        check_vec<D>(h, p, "h");
        require_writeable(out, "out");
        check_vec<D>(out, n, "out");
        const D *px = x.data(), *pm = mu.data(), *pg = g.data(), *ph = h.data();
        D* po = out.mutable_data();
        py::gil_scoped_release rel;
        quadratic_values(px, pm, pg, ph, f0, n, p, po);
      },
      py::arg("x").noconvert(), py::arg("mu").noconvert(), py::arg("g").noconvert(), py::arg("h").noconvert(),
      py::arg("f0"), py::arg("out").noconvert(),
      "f0 + sum_j g_j d_ij + h_j d_ij^2 / 2 with d = x - mu, per row of x (n, p) into out (n,) (float64).");
  m.def(
      "vimco_signal",
      [](in_array<D> logw, out_array<D> out) {
        int64_t n, k;
        matrix_shape(logw, "logw", n, k);
        if (k < 2) throw std::invalid_argument("vimco_signal needs k >= 2 draws per row");
        check_out_mat(out, n, k, "out");
        const D* pl = logw.data();
        D* po = out.mutable_data();
        py::gil_scoped_release rel;
        vimco_signal(pl, n, k, po);
      },
      py::arg("logw").noconvert(), py::arg("out").noconvert(),
      "VIMCO's per-draw learning signal L - L_{-j} - w~_j for log-weights (n, k) into out (n, k) (float64).");
  m.def(
      "normal_multisample_terms",
      [](in_array<D> z, in_array<D> fz, std::optional<in_array<D>> g, in_array<D> loc, in_array<D> scale, int mode,
         out_array<D> terms, out_array<D> wt, out_array<D> bound) {
        if (z.ndim() != 3) throw std::invalid_argument("z must have shape (n, k, p)");
        const int64_t n = z.shape(0), k = z.shape(1), p = z.shape(2);
        if (mode < 0 || mode > 3)
          throw std::invalid_argument("mode must be 0 (iwae), 1 (dreg), 2 (dreg rws) or 3 (vimco)");
        if (mode < 3 && !g) throw std::invalid_argument("g is required for modes 0-2");
        if (mode == 3 && k < 2) throw std::invalid_argument("vimco needs k >= 2 draws per group");
        check_mat(fz, n, k, "fz");
        if (g && (g->ndim() != 3 || g->shape(0) != n || g->shape(1) != k || g->shape(2) != p))
          throw std::invalid_argument("g must have the shape of z");
        check_vec<D>(loc, p, "loc");
        check_vec<D>(scale, p, "scale");
        require_writeable(terms, "terms");
        if (terms.ndim() != 3 || terms.shape(0) != 2 || terms.shape(1) != n || terms.shape(2) != p)
          throw std::invalid_argument("terms must have shape (2, n, p)");
        check_out_mat(wt, n, k, "wt");
        require_writeable(bound, "bound");
        check_vec<D>(bound, n, "bound");
        const D *pz = z.data(), *pf = fz.data(), *pg = g ? g->data() : nullptr, *pl = loc.data(), *ps = scale.data();
        D *pt = terms.mutable_data(), *pw = wt.mutable_data(), *pb = bound.mutable_data();
        py::gil_scoped_release rel;
        normal_multisample_terms(pz, pf, pg, pl, ps, mode, n, k, p, pt, pw, pb);
      },
      py::arg("z").noconvert(), py::arg("fz").noconvert(), py::arg("g").noconvert().none(true),
      py::arg("loc").noconvert(), py::arg("scale").noconvert(), py::arg("mode"), py::arg("terms").noconvert(),
      py::arg("wt").noconvert(), py::arg("bound").noconvert(),
      "IWAE-bound estimators for a Normal q: groups z (n, k, p), log joint fz (n, k), grad g (n, k, p) or None -> "
      "per-group loc/scale terms (2, n, p), normalised weights wt (n, k) and bound (n,); mode 0 iwae, 1 dreg, "
      "2 dreg rws, 3 vimco (float64).");
  m.def(
      "gamma_weak_parts",
      [](in_array<D> alpha, in_array<D> eps, in_array<D> psi, double sign, uint64_t seed, uint64_t stream,
         int64_t max_rounds, out_array<D> out) {
        int64_t n, p;
        if (out.ndim() != 2) throw std::invalid_argument("out must have shape (n, p)");
        n = out.shape(0);
        p = out.shape(1);
        require_writeable(out, "out");
        check_vec<D>(alpha, p, "alpha");
        check_vec<D>(eps, p, "eps");
        check_vec<D>(psi, p, "psi");
        for (int64_t j = 0; j < p; ++j)
          if (!(alpha.data()[j] > 0)) throw std::invalid_argument("alpha must be positive");
        if (!(sign == 1.0 || sign == -1.0)) throw std::invalid_argument("sign must be 1 or -1");
        if (max_rounds < 1) throw std::invalid_argument("max_rounds must be >= 1");
        const D *pa = alpha.data(), *pe = eps.data(), *pp = psi.data();
        D* po = out.mutable_data();
        py::gil_scoped_release rel;
        gamma_weak_parts(pa, pe, pp, sign, seed, stream, n, p, max_rounds, po);
      },
      py::arg("alpha").noconvert(), py::arg("eps").noconvert(), py::arg("psi").noconvert(), py::arg("sign"),
      py::arg("seed"), py::arg("stream"), py::arg("max_rounds"), py::arg("out").noconvert(),
      "Rejection draws (n, p) of the Gamma shape's weak-derivative part p+ (sign 1) / p- (sign -1) into out: "
      "proposals Gamma(alpha, 1), acceptance eps sign t exp(-sign eps t), t = log x - psi (float64).");
  m.def(
      "normal_scores",
      [](in_array<D> x, in_array<D> loc, in_array<D> scale, out_array<D> out) {
        int64_t n, p;
        matrix_shape(x, "x", n, p);
        check_vec<D>(loc, p, "loc");
        check_vec<D>(scale, p, "scale");
        require_writeable(out, "out");
        if (out.ndim() != 3 || out.shape(0) != 2 || out.shape(1) != n || out.shape(2) != p)
          throw std::invalid_argument("out must have shape (2, n, p)");
        const D *px = x.data(), *pl = loc.data(), *ps = scale.data();
        D* po = out.mutable_data();
        py::gil_scoped_release rel;
        normal_scores(px, pl, ps, n, p, po);
      },
      py::arg("x").noconvert(), py::arg("loc").noconvert(), py::arg("scale").noconvert(), py::arg("out").noconvert(),
      "The scores (2, n, p) of a Normal(loc, scale) (p,) at x (n, p): d log q / d loc and d log q / d scale "
      "(float64).");
}

// The measure-valued evaluation points: x (m, D) and values (m, D) or (m, parts, D) float64 in,
// out (m, D, D) or (m, parts, D, D) of either dtype.
template <typename T>
void bind_points(py::module_& m) {
  m.def(
      "coordinate_points",
      [](in_array<double> x, in_array<double> values, out_array<T> out) {
        int64_t n, p;
        matrix_shape(x, "x", n, p);
        const bool stacked = values.ndim() == 3;
        const int64_t parts = stacked ? values.shape(1) : 1;
        if (!(values.ndim() == 2 || stacked) || values.shape(0) != n || values.shape(values.ndim() - 1) != p)
          throw std::invalid_argument("values must have shape (m, D) or (m, parts, D) with x (m, D)");
        require_writeable(out, "out");
        const std::string want = "(" + std::to_string(n) + (stacked ? ", " + std::to_string(parts) : "") + ", " +
                                 std::to_string(p) + ", " + std::to_string(p) + ")";
        if (out.ndim() != values.ndim() + 1 || out.shape(0) != n || (stacked && out.shape(1) != parts) ||
            out.shape(out.ndim() - 2) != p || out.shape(out.ndim() - 1) != p)
          throw std::invalid_argument("out must have shape " + want);
        const double *px = x.data(), *pv = values.data();
        T* po = out.mutable_data();
        py::gil_scoped_release rel;
        coordinate_points<T>(px, pv, n, parts, p, po);
      },
      py::arg("x"), py::arg("values"), py::arg("out").noconvert(),
      "Measure-valued evaluation points: out[i, (j,) d, :] = x[i, :] with coordinate d replaced by "
      "values[i, (j,) d]; x (m, D), values (m, D) or (m, parts, D) float64, out (m, (parts,) D, D).");
}

}  // namespace

void register_relax(py::module_& m);        // register_relax.cpp
void register_beam_search(py::module_& m);  // register_beam_search.cpp

void register_estimators(py::module_& m) {
  // One name per kernel; the dtype of the arrays (all float32 or all float64) picks the overload.
  bind<float>(m);
  bind<double>(m);
  bind_f64(m);
  register_beam_search(m);
  register_relax(m);
  bind_points<float>(m);
  bind_points<double>(m);
}

}  // namespace bayesgrad
