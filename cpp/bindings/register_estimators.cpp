#include "pybind11.hpp"
// (pybind11.hpp first)
#include <cmath>
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
      throw std::invalid_argument("terms_out must have shape (2, " + std::to_string(n) + ", " + std::to_string(p) + ")");
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
        if (x.ndim() != 2 || x.shape(0) != n || x.shape(1) != p) throw std::invalid_argument("x must have the shape of g");
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
      [](in_array<T> x, in_array<T> loc, in_array<T> scale, in_array<T> f, std::optional<in_array<T>> baseline, bool loo,
         out_array<T> mean_out, out_array<T> var_out, std::optional<out_array<T>> terms_out) {
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

void check_mat(const in_array<D>& a, int64_t n, int64_t p, const char* name) {
  if (a.ndim() != 2 || a.shape(0) != n || a.shape(1) != p)
    throw std::invalid_argument(std::string(name) + " must have shape (" + std::to_string(n) + ", " +
                                std::to_string(p) + ")");
}

void check_out_mat(out_array<D>& a, int64_t n, int64_t p, const char* name) {
  require_writeable(a, name);
  if (a.ndim() != 2 || a.shape(0) != n || a.shape(1) != p)
    throw std::invalid_argument(std::string(name) + " must have shape (" + std::to_string(n) + ", " +
                                std::to_string(p) + ")");
}

// The five (n, p) outputs of the REBAR/RELAX Bernoulli draws.
template <typename T>
void check_draw_outputs(int64_t n, int64_t p, out_array<T>& z, out_array<T>& zt, out_array<T>& dzt, out_array<T>& b,
                        out_array<T>& score) {
  check_out_mat(z, n, p, "z");
  check_out_mat(zt, n, p, "zt");
  check_out_mat(dzt, n, p, "dzt");
  check_out_mat(b, n, p, "b");
  check_out_mat(score, n, p, "score");
}

// The float64-only kernels of the issue-16 estimators (their callers work in float64).
void check_temps(double lam, double step, int temps) {
  if (!(lam > 0) || !std::isfinite(lam)) throw std::invalid_argument("lam must be positive and finite");
  if (temps == 3 && !(step > 0 && step < 1)) throw std::invalid_argument("step must be in (0, 1)");
}

// The streams and the relaxation's output of relax_*_sample: y (2n, p) for one temperature, (3, 2n, p)
// for three, or None; returns the count (0 for None).
int sample_temps(std::optional<out_array<D>>& y, int64_t n, int64_t p, double lam, double step, uint64_t stream_u,
                 uint64_t stream_v) {
  if (stream_u >= (uint64_t{1} << 63) || stream_v >= (uint64_t{1} << 63))
    throw std::invalid_argument("stream_u and stream_v must be in [0, 2**63)");
  if (!y) return 0;
  require_writeable(*y, "y");
  const auto& s = *y;
  int temps;
  if (s.ndim() == 2 && s.shape(0) == 2 * n && s.shape(1) == p)
    temps = 1;
  else if (s.ndim() == 3 && s.shape(0) == 3 && s.shape(1) == 2 * n && s.shape(2) == p)
    temps = 3;
  else
    throw std::invalid_argument("y must have shape (2n, p) or (3, 2n, p)");
  check_temps(lam, step, temps);
  return temps;
}

// The arrays of relax_*_combine beside the family's own: a_f (n, p) or (2, n, p) (the part and a
// second array dotted with g; returns whether it is the latter), the network's r (2n,) and gx (2n, p)
// together, and out: (n, p) without the network, (`with_net`, n, p) and gs (n,) with it.
bool check_combine(const std::optional<in_array<D>>& a_f, const std::optional<in_array<D>>& r,
                   const std::optional<in_array<D>>& gx, out_array<D>& out, std::optional<out_array<D>>& gs,
                   int64_t n, int64_t p, int64_t with_net) {
  bool two = false;
  if (a_f) {
    two = a_f->ndim() == 3;
    if (two && (a_f->shape(0) != 2 || a_f->shape(1) != n || a_f->shape(2) != p))
      throw std::invalid_argument("a_f must have shape (n, p) or (2, n, p)");
    if (!two) check_mat(*a_f, n, p, "a_f");
  }
  if (r.has_value() != gx.has_value())
    throw std::invalid_argument("r and gx must be given together (the network's terms)");
  if (r) {
    check_vec<D>(*r, 2 * n, "r");
    check_mat(*gx, 2 * n, p, "gx");
  }
  require_writeable(out, "out");
  const std::string np_ = std::to_string(n) + ", " + std::to_string(p);
  if (r) {
    if (out.ndim() != 3 || out.shape(0) != with_net || out.shape(1) != n || out.shape(2) != p)
      throw std::invalid_argument("out must have shape (" + std::to_string(with_net) + ", " + np_ +
                                  ") with the network's terms");
    if (!gs) throw std::invalid_argument("gs must be given with the network's terms");
    require_writeable(*gs, "gs");
    check_vec<D>(*gs, n, "gs");
  } else {
    if (out.ndim() != 2 || out.shape(0) != n || out.shape(1) != p)
      throw std::invalid_argument("out must have shape (" + np_ + ") without the network's terms");
    if (gs) throw std::invalid_argument("gs must be None without the network's terms");
  }
  return two;
}

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
        if (mode < 0 || mode > 3) throw std::invalid_argument("mode must be 0 (iwae), 1 (dreg), 2 (dreg rws) or 3 (vimco)");
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
  m.def(
      "relax_bernoulli_draws",
      [](in_array<D> eta, in_array<D> u, in_array<D> v, out_array<D> z, out_array<D> zt, out_array<D> dzt,
         out_array<D> b, out_array<D> score) {
        int64_t n, p;
        matrix_shape(u, "u", n, p);
        check_vec<D>(eta, p, "eta");
        check_mat(v, n, p, "v");
        check_draw_outputs(n, p, z, zt, dzt, b, score);
        const D *pe = eta.data(), *pu = u.data(), *pv = v.data();
        D *pz = z.mutable_data(), *pzt = zt.mutable_data(), *pd = dzt.mutable_data(), *pb = b.mutable_data();
        D* ps = score.mutable_data();
        py::gil_scoped_release rel;
        relax_bernoulli_draws(pe, pu, pv, n, p, pz, pzt, pd, pb, ps);
      },
      py::arg("eta").noconvert(), py::arg("u").noconvert(), py::arg("v").noconvert(), py::arg("z").noconvert(),
      py::arg("zt").noconvert(), py::arg("dzt").noconvert(), py::arg("b").noconvert(), py::arg("score").noconvert(),
      "REBAR/RELAX Bernoulli draws: z, the conditional z~, dz~/deta, b and the score b - p from eta (p,) and "
      "uniforms u, v (n, p).");
  m.def(
      "relax_bernoulli_sample",
      [](in_array<D> eta, uint64_t seed, uint64_t stream_u, uint64_t stream_v, double lam, double step,
         out_array<D> draws, std::optional<out_array<D>> y) {
        require_writeable(draws, "draws");
        if (draws.ndim() != 3 || draws.shape(0) != 5) throw std::invalid_argument("draws must have shape (5, n, p)");
        const int64_t n = draws.shape(1), p = draws.shape(2);
        check_vec<D>(eta, p, "eta");
        const int temps = sample_temps(y, n, p, lam, step, stream_u, stream_v);
        const D* pe = eta.data();
        D* pd = draws.mutable_data();
        D* py_ = y ? y->mutable_data() : nullptr;
        py::gil_scoped_release rel;
        relax_bernoulli_sample(pe, seed, stream_u, stream_v, n, p, pd, lam, temps, step, py_);
      },
      py::arg("eta").noconvert(), py::arg("seed"), py::arg("stream_u"), py::arg("stream_v"), py::arg("lam"),
      py::arg("step"), py::arg("draws").noconvert(), py::arg("y").noconvert().none(true),
      "relax_bernoulli_draws into draws (5, n, p) = [z, z~, dz~/deta, b, score] with u, v (n, p) the uniforms of "
      "random.uniform((n, p), seed, stream_u / stream_v), generated inside the pass (the same values), and the "
      "relaxation of [z; z~] (2n, p) in the same pass: y (2n, p) concrete_bernoulli at lam, y (3, 2n, p) "
      "concrete_bernoulli_fd at lam, step, or None (step is read only for the latter; float64).");
  m.def(
      "relax_bernoulli_part",
      [](in_array<D> fzt, in_array<D> gz, in_array<D> gzt, in_array<D> y, in_array<D> yt, in_array<D> dzt,
         in_array<D> score, double lam, out_array<D> out) {
        int64_t n, p;
        matrix_shape(y, "y", n, p);
        check_vec<D>(fzt, n, "fzt");
        check_mat(gz, n, p, "gz");
        check_mat(gzt, n, p, "gzt");
        check_mat(yt, n, p, "yt");
        check_mat(dzt, n, p, "dzt");
        check_mat(score, n, p, "score");
        check_out_mat(out, n, p, "out");
        if (!(lam > 0)) throw std::invalid_argument("lam must be positive");
        const D *a = fzt.data(), *b = gz.data(), *c = gzt.data(), *d = y.data(), *e = yt.data(), *g = dzt.data(),
                *s = score.data();
        D* po = out.mutable_data();
        py::gil_scoped_release rel;
        relax_bernoulli_part(a, b, c, d, e, g, s, lam, n, p, po);
      },
      py::arg("fzt").noconvert(), py::arg("gz").noconvert(), py::arg("gzt").noconvert(), py::arg("y").noconvert(),
      py::arg("yt").noconvert(), py::arg("dzt").noconvert(), py::arg("score").noconvert(), py::arg("lam"),
      py::arg("out").noconvert(),
      "REBAR's relaxed-f part per unit scale for Bernoulli coordinates (n, p) from the relaxations y, y~ into out "
      "(float64).");
  m.def(
      "relax_bernoulli_part_fd",
      [](in_array<D> fv, in_array<D> gv, in_array<D> y, in_array<D> dzt, in_array<D> score, double lam, double step,
         out_array<D> out) {
        int64_t n, p;
        matrix_shape(dzt, "dzt", n, p);
        check_vec<D>(fv, 6 * n, "fv");
        check_mat(gv, 6 * n, p, "gv");
        check_mat(y, 6 * n, p, "y");
        check_mat(score, n, p, "score");
        require_writeable(out, "out");
        if (out.ndim() != 3 || out.shape(0) != 2 || out.shape(1) != n || out.shape(2) != p)
          throw std::invalid_argument("out must have shape (2, n, p)");
        if (!(lam > 0) || !std::isfinite(lam)) throw std::invalid_argument("lam must be positive and finite");
        if (!(step > 0) || !(step < 1)) throw std::invalid_argument("step must be in (0, 1)");
        const D *a = fv.data(), *b = gv.data(), *c = y.data(), *d = dzt.data(), *s = score.data();
        D* po = out.mutable_data();
        py::gil_scoped_release rel;
        relax_bernoulli_part_fd(a, b, c, d, s, lam, step, n, p, po);
      },
      py::arg("fv").noconvert(), py::arg("gv").noconvert(), py::arg("y").noconvert(), py::arg("dzt").noconvert(),
      py::arg("score").noconvert(), py::arg("lam"), py::arg("step"), py::arg("out").noconvert(),
      "relax_bernoulli_part at lam, lam e^step, lam e^-step in one pass: out[0] the part at lam, out[1] the part at "
      "lam e^step minus the part at lam e^-step (fv (6n,), gv and y (6n, p) in concrete_bernoulli_fd's order; "
      "float64).");
  m.def(
      "concrete_bernoulli",
      [](in_array<D> z, double lam, out_array<D> y) {
        require_writeable(y, "y");
        if (y.size() != z.size() || y.ndim() != z.ndim()) throw std::invalid_argument("y must have the shape of z");
        for (py::ssize_t a = 0; a < z.ndim(); ++a)
          if (y.shape(a) != z.shape(a)) throw std::invalid_argument("y must have the shape of z");
        if (!(lam > 0)) throw std::invalid_argument("lam must be positive");
        const D* pz = z.data();
        D* py_ = y.mutable_data();
        const int64_t count = z.size();
        py::gil_scoped_release rel;
        concrete_bernoulli(pz, lam, count, py_);
      },
      py::arg("z").noconvert(), py::arg("lam"), py::arg("y").noconvert(),
      "sigmoid(z / lam) elementwise into y (the Bernoulli Concrete relaxation; float64).");
  m.def(
      "concrete_bernoulli_fd",
      [](in_array<D> z, double lam, double step, out_array<D> y) {
        require_writeable(y, "y");
        bool ok = y.ndim() == z.ndim() + 1 && y.shape(0) == 3;
        for (py::ssize_t a = 0; ok && a < z.ndim(); ++a) ok = y.shape(a + 1) == z.shape(a);
        if (!ok) throw std::invalid_argument("y must have shape (3, *z.shape)");
        if (!(lam > 0) || !std::isfinite(lam)) throw std::invalid_argument("lam must be positive and finite");
        if (!(step > 0) || !(step < 1)) throw std::invalid_argument("step must be in (0, 1)");
        const D* pz = z.data();
        D* py_ = y.mutable_data();
        const int64_t count = z.size();
        py::gil_scoped_release rel;
        concrete_bernoulli_fd(pz, lam, step, count, py_);
      },
      py::arg("z").noconvert(), py::arg("lam"), py::arg("step"), py::arg("y").noconvert(),
      "sigmoid(z / lam_k) for lam_k = lam, lam e^step, lam e^-step into y (3, *z.shape) (REBAR's temperature "
      "difference; float64).");
  m.def(
      "relax_bernoulli_combine",
      [](in_array<D> fb, in_array<D> score, std::optional<in_array<D>> a_f, double sc, std::optional<in_array<D>> r,
         std::optional<in_array<D>> gx, in_array<D> dzt, out_array<D> out, std::optional<out_array<D>> gs) {
        int64_t n, p;
        matrix_shape(score, "score", n, p);
        check_vec<D>(fb, n, "fb");
        // a_f (n, p), or (2, n, p): the part and a second array dotted with g (REBAR's temperature difference);
        // with the network: out (2, n, p) = [g; g dzt] and gs; without: out (n, p) = g, gs None
        const bool two = check_combine(a_f, r, gx, out, gs, n, p, 2);
        check_mat(dzt, n, p, "dzt");
        const D *pf = fb.data(), *ps = score.data(), *pd = dzt.data();
        const D* pa = a_f ? a_f->data() : nullptr;
        const D* pad = two ? pa + n * p : nullptr;
        const D* pr = r ? r->data() : nullptr;
        const D* px = gx ? gx->data() : nullptr;
        D* po = out.mutable_data();
        D* pgd = r ? po + n * p : nullptr;
        D* pgs = gs ? gs->mutable_data() : nullptr;
        double sums[3];
        {
          py::gil_scoped_release rel;
          relax_bernoulli_combine(pf, ps, pa, pad, sc, pr, px, pd, n, p, po, pgd, pgs, sums);
        }
        return py::make_tuple(sums[0], sums[1], sums[2]);
      },
      py::arg("fb").noconvert(), py::arg("score").noconvert(), py::arg("a_f").noconvert(), py::arg("sc"),
      py::arg("r").noconvert(), py::arg("gx").noconvert(), py::arg("dzt").noconvert(), py::arg("out").noconvert(),
      py::arg("gs").noconvert().none(true),
      "REBAR/RELAX per-draw terms for Bernoulli coordinates (n, p): g = (fb - r[n:]) score + sc a_f + gx[:n] - "
      "gx[n:] dzt (a_f, or the network's r (2n,) and gx (2n, p) at [z; z~], may be None; a_f (2, n, p): a_f[0] the "
      "part, a_f[1] a second array dotted with g); with the network's terms out (2, n, p) = [g; g dzt] and gs (n,) = "
      "rowwise sum of g score, without them out (n, p) = g and gs None (float64); returns (sum g^2, sum g a_f[0], "
      "sum g a_f[1]), 0.0 for what is absent.");
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

// The measure-valued evaluation points: x, values (m, D) float64 in, out (m, D, D) of either dtype.
template <typename T>
void bind_points(py::module_& m) {
  m.def(
      "coordinate_points",
      [](in_array<double> x, in_array<double> values, out_array<T> out) {
        int64_t n, p;
        matrix_shape(x, "x", n, p);
        if (values.ndim() != 2 || values.shape(0) != n || values.shape(1) != p)
          throw std::invalid_argument("values must have the shape of x");
        require_writeable(out, "out");
        if (out.ndim() != 3 || out.shape(0) != n || out.shape(1) != p || out.shape(2) != p)
          throw std::invalid_argument("out must have shape (" + std::to_string(n) + ", " + std::to_string(p) +
                                      ", " + std::to_string(p) + ")");
        const double *px = x.data(), *pv = values.data();
        T* po = out.mutable_data();
        py::gil_scoped_release rel;
        coordinate_points<T>(px, pv, n, p, po);
      },
      py::arg("x"), py::arg("values"), py::arg("out").noconvert(),
      "Measure-valued evaluation points: out[i, d, :] = x[i, :] with coordinate d replaced by values[i, d]; "
      "x, values (m, D) float64, out (m, D, D).");
}


// REBAR / RELAX for Categorical coordinates (relax_categorical.cpp). pr / lp (D, K) give the
// shape of a draw's values; draws (5, n, D K) = [z, z~, r, b, score] as the sample writes them.
void check_draws(const py::array& draws, int64_t& n, int64_t p) {
  if (draws.ndim() != 3 || draws.shape(0) != 5 || draws.shape(2) != p)
    throw std::invalid_argument("draws must have shape (5, n, " + std::to_string(p) + ")");
  n = draws.shape(1);
}
void check_probs(const in_array<D>& a, const char* name, int64_t& d, int64_t& k) {
  if (a.ndim() != 2 || a.shape(0) < 1 || a.shape(1) < 1)
    throw std::invalid_argument(std::string(name) + " must have shape (D, K) with D, K >= 1");
  d = a.shape(0);
  k = a.shape(1);
}

void bind_relax_categorical(py::module_& m) {
  m.def(
      "relax_categorical_sample",
      [](in_array<D> lp, uint64_t seed, uint64_t stream_u, uint64_t stream_v, double lam, double step,
         out_array<D> draws, std::optional<out_array<D>> y) {
        int64_t d, k, n;
        check_probs(lp, "lp", d, k);
        const int64_t p = d * k;
        require_writeable(draws, "draws");
        check_draws(draws, n, p);
        const int temps = sample_temps(y, n, p, lam, step, stream_u, stream_v);
        const D* pl = lp.data();
        D* pd = draws.mutable_data();
        D* py_ = y ? y->mutable_data() : nullptr;
        py::gil_scoped_release rel;
        relax_categorical_sample(pl, d, k, seed, stream_u, stream_v, n, pd, lam, temps, step, py_);
      },
      py::arg("lp").noconvert(), py::arg("seed"), py::arg("stream_u"), py::arg("stream_v"), py::arg("lam"),
      py::arg("step"), py::arg("draws").noconvert(), py::arg("y").noconvert().none(true),
      "REBAR/RELAX draws for D Categorical coordinates of K classes, lp (D, K) their log-probabilities, into "
      "draws (5, n, D K) = [z, z~, r, b, score] (u, v the uniforms of random.uniform((n, D K), seed, stream_u / "
      "stream_v), z = lp - log(-log u), b the one-hot argmax per row of K, z~ the conditional Gumbel draw given b, "
      "r its Jacobian's diagonal, score = b - p), and the softmax relaxation of [z; z~] (2n, D K) per row of K: "
      "y (2n, D K) at lam, y (3, 2n, D K) at lam, lam e^step, lam e^-step, or None (float64).");
  m.def(
      "relax_categorical_part",
      [](in_array<D> fv, in_array<D> gv, in_array<D> y, in_array<D> draws, in_array<D> pr, double lam, double step,
         out_array<D> out) {
        int64_t d, k, n;
        check_probs(pr, "pr", d, k);
        const int64_t p = d * k;
        check_draws(draws, n, p);
        require_writeable(out, "out");
        int temps;
        if (out.ndim() == 2 && out.shape(0) == n && out.shape(1) == p)
          temps = 1;
        else if (out.ndim() == 3 && out.shape(0) == 2 && out.shape(1) == n && out.shape(2) == p)
          temps = 3;
        else
          throw std::invalid_argument("out must have shape (n, p) or (2, n, p)");
        check_vec<D>(fv, 2 * temps * n, "fv");
        check_mat(gv, 2 * temps * n, p, "gv");
        check_mat(y, 2 * temps * n, p, "y");
        check_temps(lam, step, temps);
        const D *pf = fv.data(), *pg = gv.data(), *py_ = y.data(), *pdr = draws.data(), *pp = pr.data();
        D* po = out.mutable_data();
        py::gil_scoped_release rel;
        relax_categorical_part(pf, pg, py_, pdr + 2 * n * p, pdr + 4 * n * p, pp, n, d, k, lam, temps, step, po);
      },
      py::arg("fv").noconvert(), py::arg("gv").noconvert(), py::arg("y").noconvert(), py::arg("draws").noconvert(),
      py::arg("pr").noconvert(), py::arg("lam"), py::arg("step"), py::arg("out").noconvert(),
      "REBAR/RELAX's relaxed-f part per unit scale for Categorical coordinates from f and grad_f (fv (T 2n,), "
      "gv (T 2n, p)) at the relaxation y (T 2n, p) of relax_categorical_sample, draws its (5, n, p) and pr (D, K) "
      "the probabilities: out (n, p) the part at lam (T = 1), or out (2, n, p) also the part at lam e^step minus "
      "the part at lam e^-step (T = 3; float64).");
  m.def(
      "relax_categorical_combine",
      [](in_array<D> fb, in_array<D> draws, in_array<D> pr, std::optional<in_array<D>> a_f, double sc,
         std::optional<in_array<D>> r, std::optional<in_array<D>> gx, out_array<D> out,
         std::optional<out_array<D>> gs) {
        int64_t d, k, n;
        check_probs(pr, "pr", d, k);
        const int64_t p = d * k;
        check_draws(draws, n, p);
        check_vec<D>(fb, n, "fb");
        const bool two = check_combine(a_f, r, gx, out, gs, n, p, 3);  // out (3, n, p) = [g; d1; d2] with the network
        const D *pf = fb.data(), *pdr = draws.data(), *pp = pr.data();
        const D* pa = a_f ? a_f->data() : nullptr;
        const D* pad = two ? pa + n * p : nullptr;
        const D* prn = r ? r->data() : nullptr;
        const D* px = gx ? gx->data() : nullptr;
        D* po = out.mutable_data();
        D* pd1 = r ? po + n * p : nullptr;
        D* pd2 = r ? po + 2 * n * p : nullptr;
        D* pgs = gs ? gs->mutable_data() : nullptr;
        double sums[3];
        {
          py::gil_scoped_release rel;
          relax_categorical_combine(pf, pdr + 4 * n * p, pdr + 2 * n * p, pp, pa, pad, sc, prn, px, n, d, k, po, pd1,
                                    pd2, pgs, sums);
        }
        return py::make_tuple(sums[0], sums[1], sums[2]);
      },
      py::arg("fb").noconvert(), py::arg("draws").noconvert(), py::arg("pr").noconvert(), py::arg("a_f").noconvert(),
      py::arg("sc"), py::arg("r").noconvert(), py::arg("gx").noconvert(), py::arg("out").noconvert(),
      py::arg("gs").noconvert().none(true),
      "REBAR/RELAX per-draw terms for Categorical coordinates (n, p): g = (fb - r[n:]) score + sc a_f + Jz gx[:n] - "
      "Jt gx[n:] with Jz h = h - p sum h and Jt h = r h - p sum r h per row of K (score and r from draws (5, n, p), "
      "pr (D, K)); with the network's terms out (3, n, p) = [g; Jz^T g; Jt^T g] and gs (n,) = rowwise sum of "
      "g score, without them out (n, p) = g and gs None (float64); returns (sum g^2, sum g a_f[0], sum g a_f[1]).");
}

}  // namespace

void register_estimators(py::module_& m) {
  // One name per kernel; the dtype of the arrays (all float32 or all float64) picks the overload.
  bind<float>(m);
  bind<double>(m);
  bind_f64(m);
  bind_relax_categorical(m);
  bind_points<float>(m);
  bind_points<double>(m);
}

}  // namespace bayesgrad
