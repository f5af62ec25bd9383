// REBAR / RELAX kernels of _core.estimators (cpp/src/relax_bernoulli.cpp, relax_categorical.cpp):
// the Bernoulli draws, their Concrete relaxation, relaxed-f parts and combination, and the same for
// Categorical coordinates (part of the estimators concept; register_estimators calls register_relax).
#include "pybind11.hpp"
// (pybind11.hpp first)
#include <cmath>
#include <optional>
#include <string>

#include "bayesgrad/estimators.hpp"
#include "estimator_checks.hpp"

namespace bayesgrad {

namespace {

using namespace estimator_checks;  // matrix_shape, check_vec, check_mat, check_out_mat
using D = double;

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

// The relaxation's temperature lam, and the step of its central difference for three temperatures.
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

void bind_relax_bernoulli(py::module_& m) {
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

void register_relax(py::module_& m) {
  bind_relax_bernoulli(m);
  bind_relax_categorical(m);
}

}  // namespace bayesgrad
