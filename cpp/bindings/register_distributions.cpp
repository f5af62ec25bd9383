#include "pybind11.hpp"
// (pybind11.hpp first)
#include <optional>

#include "bayesgrad/distributions.hpp"
#include "bayesgrad/special.hpp"

namespace bayesgrad {

namespace {

void same_size(const py::array& a, const py::array& b, const char* na, const char* nb) {
  if (a.size() != b.size())
    throw std::invalid_argument(std::string(na) + " and " + nb + " must have the same size, got " +
                                std::to_string(a.size()) + " and " + std::to_string(b.size()));
}

void batch_of(const py::array& out, const py::array& p, const char* no, const char* np_) {
  if (p.size() == 0 || out.size() % p.size() != 0)
    throw std::invalid_argument(std::string(no) + " size must be a multiple of " + np_ + " size (the batch)");
}

// out = f(x), elementwise on float64.
void bind_unary(py::module_& m, const char* name, void (*fn)(const double*, int64_t, double*), const char* doc) {
  m.def(
      name,
      [fn](in_array<double> x, out_array<double> out) {
        same_size(x, out, "x", "out");
        require_writeable(out, "out");
        const double* px = x.data();
        double* po = out.mutable_data();
        const int64_t n = size_of(out);
        py::gil_scoped_release rel;
        fn(px, n, po);
      },
      py::arg("x"), py::arg("out").noconvert(), doc);
}

void bind_binary(py::module_& m, const char* name, void (*fn)(const double*, const double*, int64_t, double*),
                 const char* a_name, const char* b_name, const char* doc) {
  m.def(
      name,
      [fn, a_name, b_name](in_array<double> a, in_array<double> b, out_array<double> out) {
        same_size(a, out, a_name, "out");
        same_size(b, out, b_name, "out");
        require_writeable(out, "out");
        const double *pa = a.data(), *pb = b.data();
        double* po = out.mutable_data();
        const int64_t n = size_of(out);
        py::gil_scoped_release rel;
        fn(pa, pb, n, po);
      },
      py::arg(a_name), py::arg(b_name), py::arg("out").noconvert(), doc);
}

template <typename T>
void bind_typed(py::module_& m) {
  m.def(
      "sample_locscale",
      [](out_array<T> out, in_array<T> loc, in_array<T> scale, int64_t family, uint64_t seed,
         uint64_t stream) {
        const LocScale fam = codes::from_int<LocScale>(family, "family");
        same_size(loc, scale, "loc", "scale");
        batch_of(out, loc, "out", "loc");
        require_writeable(out, "out");
        T* po = out.mutable_data();
        const T *pl = loc.data(), *ps = scale.data();
        const int64_t n = size_of(out), b = size_of(loc);
        py::gil_scoped_release rel;
        sample_locscale<T>(po, n, pl, ps, b, fam, seed, stream);
      },
      py::arg("out").noconvert(), py::arg("loc"), py::arg("scale"), py::arg("family"), py::arg("seed"),
      py::arg("stream"),
      "Location-scale draws into out (n, B): loc + scale * base(family); loc, scale (B,).");
  m.def(
      "locscale_log_prob",
      [](in_array<T> x, in_array<T> loc, in_array<T> scale, int64_t family, out_array<T> logp,
         std::optional<out_array<T>> d_loc, std::optional<out_array<T>> d_scale) {
        const LocScale fam = codes::from_int<LocScale>(family, "family");
        same_size(loc, scale, "loc", "scale");
        batch_of(x, loc, "x", "loc");
        same_size(x, logp, "x", "logp");
        require_writeable(logp, "logp");
        if (d_loc.has_value() != d_scale.has_value())
          throw std::invalid_argument("d_loc and d_scale must both be given or both be None");
        T *o1 = nullptr, *o2 = nullptr;
        if (d_loc) {
          same_size(x, *d_loc, "x", "d_loc");
          same_size(x, *d_scale, "x", "d_scale");
          require_writeable(*d_loc, "d_loc");
          require_writeable(*d_scale, "d_scale");
          o1 = d_loc->mutable_data();
          o2 = d_scale->mutable_data();
        }
        const T *px = x.data(), *pl = loc.data(), *ps = scale.data();
        T* o0 = logp.mutable_data();
        const int64_t n = size_of(x), b = size_of(loc);
        py::gil_scoped_release rel;
        locscale_log_prob<T>(px, n, pl, ps, b, fam, o0, o1, o2);
      },
      py::arg("x"), py::arg("loc"), py::arg("scale"), py::arg("family"), py::arg("logp").noconvert(),
      py::arg("d_loc").noconvert(), py::arg("d_scale").noconvert(),
      "log p(x) and d/dloc, d/dscale elementwise for x (n, B); loc, scale (B,); d_loc and d_scale None "
      "together: log p only.");
  m.def(
      "sample_gamma",
      [](out_array<T> out, in_array<T> alpha, in_array<T> rate, uint64_t seed, uint64_t stream) {
        same_size(alpha, rate, "alpha", "rate");
        batch_of(out, alpha, "out", "alpha");
        require_writeable(out, "out");
        T* po = out.mutable_data();
        const T *pa = alpha.data(), *pr = rate.data();
        const int64_t n = size_of(out), b = size_of(alpha);
        py::gil_scoped_release rel;
        sample_gamma<T>(po, n, pa, pr, b, seed, stream);
      },
      py::arg("out").noconvert(), py::arg("alpha"), py::arg("rate"), py::arg("seed"), py::arg("stream"),
      "Gamma(alpha, rate) draws into out (n, B) from per-element sub-streams.");
  m.def(
      "sample_beta",
      [](out_array<T> out, in_array<T> a, in_array<T> b, uint64_t seed, uint64_t stream) {
        same_size(a, b, "a", "b");
        batch_of(out, a, "out", "a");
        require_writeable(out, "out");
        T* po = out.mutable_data();
        const T *pa = a.data(), *pb = b.data();
        const int64_t n = size_of(out), nb = size_of(a);
        py::gil_scoped_release rel;
        sample_beta<T>(po, n, pa, pb, nb, seed, stream);
      },
      py::arg("out").noconvert(), py::arg("a"), py::arg("b"), py::arg("seed"), py::arg("stream"),
      "Beta(a, b) draws into out (n, B): gamma elements 2i and 2i+1, log space.");
  m.def(
      "sample_dirichlet",
      [](out_array<T> out, in_array<T> alpha, uint64_t seed, uint64_t stream) {
        if (alpha.ndim() != 2) throw std::invalid_argument("alpha must have shape (B, K)");
        batch_of(out, alpha, "out", "alpha");
        require_writeable(out, "out");
        T* po = out.mutable_data();
        const T* pa = alpha.data();
        const int64_t n = size_of(out), b = alpha.shape(0), k = alpha.shape(1);
        py::gil_scoped_release rel;
        sample_dirichlet<T>(po, n, pa, b, k, seed, stream);
      },
      py::arg("out").noconvert(), py::arg("alpha"), py::arg("seed"), py::arg("stream"),
      "Dirichlet(alpha) draws into out (n, B, K); alpha (B, K).");
  m.def(
      "gamma_log_prob",
      [](in_array<T> x, in_array<T> alpha, in_array<T> rate, out_array<T> logp, out_array<T> d_alpha,
         out_array<T> d_rate) {
        same_size(alpha, rate, "alpha", "rate");
        batch_of(x, alpha, "x", "alpha");
        same_size(x, logp, "x", "logp");
        same_size(x, d_alpha, "x", "d_alpha");
        same_size(x, d_rate, "x", "d_rate");
        require_writeable(logp, "logp");
        require_writeable(d_alpha, "d_alpha");
        require_writeable(d_rate, "d_rate");
        const T *px = x.data(), *pa = alpha.data(), *pr = rate.data();
        T *o0 = logp.mutable_data(), *o1 = d_alpha.mutable_data(), *o2 = d_rate.mutable_data();
        const int64_t n = size_of(x), b = size_of(alpha);
        py::gil_scoped_release rel;
        gamma_log_prob<T>(px, n, pa, pr, b, o0, o1, o2);
      },
      py::arg("x"), py::arg("alpha"), py::arg("rate"), py::arg("logp").noconvert(), py::arg("d_alpha").noconvert(),
      py::arg("d_rate").noconvert(), "Gamma(alpha, rate) log p(x) and d/dalpha, d/drate for x (n, B).");
  m.def(
      "studentt_log_prob",
      [](in_array<T> x, in_array<T> df, in_array<T> loc, in_array<T> scale, in_array<double> c,
         std::optional<in_array<double>> psi, out_array<T> logp, std::optional<out_array<T>> grads) {
        if (grads.has_value() != psi.has_value())
          throw std::invalid_argument("psi and grads go together (both arrays or both None)");
        same_size(df, loc, "df", "loc");
        same_size(df, scale, "df", "scale");
        same_size(df, c, "df", "c");
        batch_of(x, df, "x", "df");
        same_size(x, logp, "x", "logp");
        require_writeable(logp, "logp");
        if (grads) {
          same_size(df, *psi, "df", "psi");
          if (grads->size() != 3 * x.size())
            throw std::invalid_argument("grads must have 3 times the size of x (d/d df, d/d loc, d/d scale)");
          require_writeable(*grads, "grads");
        }
        const T *px = x.data(), *pd = df.data(), *pl = loc.data(), *ps = scale.data();
        const double *pc = c.data(), *pp = psi ? psi->data() : nullptr;
        T *o0 = logp.mutable_data(), *og = grads ? grads->mutable_data() : nullptr;
        const int64_t n = size_of(x), b = size_of(df);
        py::gil_scoped_release rel;
        studentt_log_prob<T>(px, n, pd, pl, ps, pc, pp, b, o0, og);
      },
      py::arg("x"), py::arg("df"), py::arg("loc"), py::arg("scale"), py::arg("c"), py::arg("psi").none(true),
      py::arg("logp").noconvert(), py::arg("grads").noconvert().none(true) = py::none(),
      "Student t(df, loc, scale) log p(x) for x (n, B) into logp and, with grads (3, n, B) (and psi), its "
      "derivatives in df, loc and scale; c = lgamma((df + 1) / 2) - lgamma(df / 2) - ln(pi df) / 2 - ln scale and "
      "psi = psi((df + 1) / 2) - psi(df / 2) - 1 / df per coordinate (float64, B).");
  m.def(
      "bernoulli_log_prob",
      [](in_array<T> x, in_array<T> lp1, in_array<T> lp0, out_array<T> out) {
        same_size(lp1, lp0, "lp1", "lp0");
        batch_of(x, lp1, "x", "lp1");
        same_size(x, out, "x", "out");
        require_writeable(out, "out");
        const T *px = x.data(), *p1 = lp1.data(), *p0 = lp0.data();
        T* po = out.mutable_data();
        const int64_t n = size_of(x), b = size_of(lp1);
        py::gil_scoped_release rel;
        bernoulli_log_prob<T>(px, n, p1, p0, b, po);
      },
      py::arg("x"), py::arg("lp1"), py::arg("lp0"), py::arg("out").noconvert(),
      "Bernoulli log probability x lp1 + (1 - x) lp0 for x (n, B) in [0, 1] into out, lp1 = ln p and lp0 = "
      "ln(1 - p) (B,): exactly lp1 at x = 1 and lp0 at x = 0.");
  m.def(
      "relaxed_bernoulli_log_prob",
      [](in_array<T> x, in_array<T> temperature, in_array<T> logits, std::optional<out_array<T>> logp,
         std::optional<out_array<T>> grads) {
        if (!logp && !grads) throw std::invalid_argument("give logp, grads or both");
        same_size(temperature, logits, "temperature", "logits");
        batch_of(x, temperature, "x", "temperature");
        if (logp) {
          same_size(x, *logp, "x", "logp");
          require_writeable(*logp, "logp");
        }
        if (grads) {
          if (grads->size() != 2 * x.size())
            throw std::invalid_argument("grads must have 2 times the size of x (d/d temperature, d/d logits)");
          require_writeable(*grads, "grads");
        }
        const T *px = x.data(), *pt = temperature.data(), *pl = logits.data();
        T *o0 = logp ? logp->mutable_data() : nullptr, *og = grads ? grads->mutable_data() : nullptr;
        const int64_t n = size_of(x), b = size_of(temperature);
        py::gil_scoped_release rel;
        relaxed_bernoulli_log_prob<T>(px, n, pt, pl, b, o0, og);
      },
      py::arg("x"), py::arg("temperature"), py::arg("logits"), py::arg("logp").noconvert().none(true),
      py::arg("grads").noconvert().none(true) = py::none(),
      "RelaxedBernoulli(temperature, logits) log p(x) for x (n, B) into logp (-inf outside (0, 1)) and its "
      "derivatives in temperature and logits into grads (2, n, B), each unless None (not both).");
  m.def(
      "relaxed_categorical_log_prob",
      [](in_array<T> x, in_array<T> temperature, in_array<T> logits, in_array<double> c, out_array<T> logp,
         std::optional<out_array<T>> d_t, std::optional<out_array<T>> d_logits) {
        if (d_t.has_value() != d_logits.has_value())
          throw std::invalid_argument("d_t and d_logits go together (both arrays or both None)");
        const int64_t b = size_of(temperature);
        if (b == 0 || size_of(logits) % b != 0 || size_of(logits) / b < 1)
          throw std::invalid_argument("logits must have K times the size of temperature (K classes per coordinate)");
        same_size(temperature, c, "temperature", "c");
        batch_of(x, logits, "x", "logits");
        const int64_t k = size_of(logits) / b;
        if (size_of(logp) * k != size_of(x))
          throw std::invalid_argument("logp must have the size of x over K (one value per row of K classes)");
        require_writeable(logp, "logp");
        if (d_t) {
          same_size(logp, *d_t, "logp", "d_t");
          same_size(x, *d_logits, "x", "d_logits");
          require_writeable(*d_t, "d_t");
          require_writeable(*d_logits, "d_logits");
        }
        const T *px = x.data(), *pt = temperature.data(), *pl = logits.data();
        const double* pc = c.data();
        T *o0 = logp.mutable_data(), *o1 = d_t ? d_t->mutable_data() : nullptr,
          *o2 = d_logits ? d_logits->mutable_data() : nullptr;
        const int64_t rows = size_of(logp);
        py::gil_scoped_release rel;
        relaxed_categorical_log_prob<T>(px, rows, k, pt, pl, pc, b, o0, o1, o2);
      },
      py::arg("x"), py::arg("temperature"), py::arg("logits"), py::arg("c"), py::arg("logp").noconvert(),
      py::arg("d_t").noconvert().none(true) = py::none(), py::arg("d_logits").noconvert().none(true) = py::none(),
      "RelaxedCategorical(temperature, logits) log p(x) for x (n, B, K) into logp (n, B) (-inf where a value of "
      "a row is not positive and finite), temperature (B,), logits (B, K) and c = lgamma(K) + (K - 1) ln t + "
      "sum_k logits_k (float64, B); with d_t (n, B) and d_logits (n, B, K) also its gradients in temperature and "
      "logits (NaN where the density vanishes).");
}

// Poisson: its own function so that the Gamma bindings above stay untouched.
template <typename T>
void bind_poisson(py::module_& m) {
  m.def(
      "sample_poisson",
      [](out_array<T> out, in_array<T> rate, uint64_t seed, uint64_t stream) {
        batch_of(out, rate, "out", "rate");
        require_writeable(out, "out");
        T* po = out.mutable_data();
        const T* pr = rate.data();
        const int64_t n = size_of(out), b = size_of(rate);
        py::gil_scoped_release rel;
        sample_poisson<T>(po, n, pr, b, seed, stream);
      },
      py::arg("out").noconvert(), py::arg("rate"), py::arg("seed"), py::arg("stream"),
      "Poisson(rate) draws into out (n, B) from per-element sub-streams: inversion below rate 10, PTRS above.");
  m.def(
      "categorical_from_uniform",
      [](in_array<T> u, in_array<T> cdf, out_array<int64_t> out) {
        if (cdf.ndim() != 2) throw std::invalid_argument("cdf must be a (B, K - 1) array");
        const int64_t b = cdf.shape(0), k = cdf.shape(1) + 1;
        if (b < 1) throw std::invalid_argument("cdf must have at least one row");
        if (size_of(out) != size_of(u)) throw std::invalid_argument("out must have the size of u");
        if (size_of(u) % b != 0) throw std::invalid_argument("u's size must be a multiple of cdf's rows");
        require_writeable(out, "out");
        const T *pu = u.data(), *pc = cdf.data();
        int64_t* po = out.mutable_data();
        const int64_t n = size_of(u);
        py::gil_scoped_release rel;
        categorical_from_uniform<T>(pu, n, pc, b, k, po);
      },
      py::arg("u"), py::arg("cdf"), py::arg("out").noconvert(),
      "Categorical draws by inversion: out[i] = #{cdf row i % B entries < u[i]} (int64) for uniforms u (n, B) and "
      "cdf (B, K - 1), the partial sums of the probabilities.");
}

}  // namespace

void register_distributions(py::module_& m) {
  bind_unary(m, "lgamma", &special::lgamma_v, "log Gamma(x) into out (float64, x > 0).");
  bind_unary(m, "digamma", &special::digamma_v, "psi(x) into out (float64, x > 0).");
  bind_unary(m, "trigamma", &special::trigamma_v, "psi'(x) into out (float64, x > 0).");
  bind_binary(m, "gammainc", &special::gammainc_v, "a", "x", "Regularised lower incomplete gamma P(a, x).");
  bind_binary(m, "gammaincc", &special::gammaincc_v, "a", "x", "Regularised upper incomplete gamma Q(a, x).");
  bind_binary(m, "gamma_dx_da", &special::gamma_dx_da_v, "a", "x",
              "Implicit reparameterisation dX/da = -(dP/da)/p(x) of X ~ Gamma(a, 1).");
  bind_binary(m, "studentt_dt_ddf", &special::studentt_dt_ddf_v, "df", "t",
              "Implicit reparameterisation dT/d(df) = -(dF/d df)/p(t) of a standard Student t.");
  m.def(
      "betainc",
      [](in_array<double> a, in_array<double> b, in_array<double> x, out_array<double> out) {
        same_size(a, out, "a", "out");
        same_size(b, out, "b", "out");
        same_size(x, out, "x", "out");
        require_writeable(out, "out");
        const double *pa = a.data(), *pb = b.data(), *px = x.data();
        double* po = out.mutable_data();
        const int64_t n = size_of(out);
        py::gil_scoped_release rel;
        special::betainc_v(pa, pb, px, n, po);
      },
      py::arg("a"), py::arg("b"), py::arg("x"), py::arg("out").noconvert(),
      "Regularised incomplete beta I_x(a, b).");
  m.def(
      "beta_dx_dab",
      [](in_array<double> a, in_array<double> b, in_array<double> x, out_array<double> out_a,
         out_array<double> out_b) {
        same_size(a, x, "a", "x");
        same_size(b, x, "b", "x");
        same_size(out_a, x, "out_a", "x");
        same_size(out_b, x, "out_b", "x");
        require_writeable(out_a, "out_a");
        require_writeable(out_b, "out_b");
        const double *pa = a.data(), *pb = b.data(), *px = x.data();
        double *oa = out_a.mutable_data(), *ob = out_b.mutable_data();
        const int64_t n = size_of(x);
        py::gil_scoped_release rel;
        special::beta_dx_dab_v(pa, pb, px, n, oa, ob);
      },
      py::arg("a"), py::arg("b"), py::arg("x"), py::arg("out_a").noconvert(), py::arg("out_b").noconvert(),
      "Implicit reparameterisation dX/da, dX/db = -(dI_x/da, dI_x/db)/p(x) of X ~ Beta(a, b).");
  bind_typed<float>(m);
  bind_typed<double>(m);
  bind_poisson<float>(m);
  bind_poisson<double>(m);
}

}  // namespace bayesgrad
