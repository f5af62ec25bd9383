#include "pybind11.hpp"
// (pybind11.hpp first)
#include "bayesgrad/curvature.hpp"

namespace bayesgrad {

namespace {

namespace cv = curvature;

void need(bool ok, const std::string& msg) {
  if (!ok) throw std::invalid_argument(msg);
}

template <typename T>
void check_aS(const in_array<T>& a, const in_array<T>& S) {
  need(a.ndim() == 2, "a must have shape (n, I)");
  need(S.ndim() == 3, "S must have shape (n, K, O)");
  need(S.shape(0) == a.shape(0), "a and S must have the same number of rows");
}

template <typename T>
void check_out(const out_array<T>& o, std::initializer_list<int64_t> shape, const char* name) {
  require_writeable(o, name);
  need(o.ndim() == static_cast<py::ssize_t>(shape.size()), std::string(name) + " has the wrong number of dimensions");
  int d = 0;
  for (int64_t s : shape) need(o.shape(d++) == s, std::string(name) + " has the wrong shape");
}

// Shared checks of the whole-MLP kernels: params (P,), X (n, d_0), y and draws
// sized for the likelihood and kind. Returns n.
template <typename T>
int64_t check_mlp_chunk(const mlp::Layout& L, const in_array<T>& params, const in_array<T>& X, const in_array<T>& y,
                        const in_array<T>& draws, cv::Likelihood lik, cv::Kind kind, int64_t K) {
  need(params.ndim() == 1 && params.shape(0) == L.n_params,
       "params must have shape (" + std::to_string(L.n_params) + ",)");
  need(X.ndim() == 2 && X.shape(1) == L.d_input(), "X must have shape (n, " + std::to_string(L.d_input()) + ")");
  const int64_t n = X.shape(0), C = L.d_output();
  need(K >= 1, "n_cols must be >= 1");
  if (lik == cv::Likelihood::kGaussian) {
    need(size_of(y) == n * C, "y must have n*C elements for a gaussian likelihood");
    if (kind == cv::Kind::kFisherMc) need(size_of(draws) == n * K * C, "draws must have shape (n, n_cols, C)");
  } else {
    need(size_of(y) == n, "y must have n elements");
    if (kind == cv::Kind::kFisherMc) need(size_of(draws) == n * K, "draws must have shape (n, n_cols)");
  }
  return n;
}

template <typename T>
void bind(py::module_& m) {
  m.def(
      "curv_sqrt_loss",
      [](in_array<T> f, in_array<T> y, in_array<T> draws, int64_t likelihood, int64_t kind, out_array<T> out) {
        const auto lik = codes::from_int<cv::Likelihood>(likelihood, "likelihood");
        const auto knd = codes::from_int<cv::Kind>(kind, "kind");
        cv::require_supported(lik);
        need(f.ndim() == 2, "f must have shape (n, C)");
        const int64_t n = f.shape(0), C = f.shape(1);
        need(out.ndim() == 3 && out.shape(0) == n && out.shape(2) == C, "out must have shape (n, K, C)");
        require_writeable(out, "out");
        const int64_t K = out.shape(1);
        need(K >= 1, "out must have K >= 1");
        if (lik == cv::Likelihood::kGaussian) {
          need(size_of(y) == n * C, "y must have n*C elements for a gaussian likelihood");
          if (knd == cv::Kind::kGgn) need(K == C, "out must have K == C for the gaussian GGN");
          if (knd == cv::Kind::kFisherMc) need(size_of(draws) == n * K * C, "draws must have shape (n, K, C)");
        } else {
          need(size_of(y) == n, "y must have n elements");
          if (knd == cv::Kind::kFisherMc) need(size_of(draws) == n * K, "draws must have shape (n, K)");
        }
        if (lik == cv::Likelihood::kBernoulli) need(C == 1, "bernoulli needs C == 1");
        if (lik == cv::Likelihood::kCategorical && knd == cv::Kind::kGgn) need(K == C, "out must have K == C");
        if (knd == cv::Kind::kEf) need(K == 1, "out must have K == 1 for the empirical Fisher");
        if (lik == cv::Likelihood::kBernoulli && knd == cv::Kind::kGgn) need(K == 1, "out must have K == 1");
        const T *pf = f.data(), *py_ = y.data(), *pd = draws.data();
        T* po = out.mutable_data();
        py::gil_scoped_release rel;
        return cv::sqrt_loss<T>(pf, py_, pd, n, C, K, lik, knd, po);
      },
      py::arg("f"), py::arg("y"), py::arg("draws"), py::arg("likelihood"), py::arg("kind"),
      py::arg("out").noconvert(),
      "Square-root factors S (n, K, C) of the loss Hessian / Fisher at outputs f (n, C); returns the loss.");
  m.def(
      "linear_diag_accum",
      [](in_array<T> a, in_array<T> S, out_array<T> out_w, out_array<T> out_b) {
        check_aS(a, S);
        const int64_t n = a.shape(0), I = a.shape(1), K = S.shape(1), O = S.shape(2);
        check_out(out_w, {O, I}, "out_w");
        check_out(out_b, {O}, "out_b");
        const T *pa = a.data(), *pS = S.data();
        T *pw = out_w.mutable_data(), *pb = out_b.mutable_data();
        py::gil_scoped_release rel;
        cv::linear_diag_accum<T>(pa, pS, n, I, K, O, pw, pb);
      },
      py::arg("a"), py::arg("S"), py::arg("out_w").noconvert(), py::arg("out_b").noconvert(),
      "out_w (O, I) += sum S^2 a^2; out_b (O,) += sum S^2 (diagonal GGN of a linear layer).");
  m.def(
      "linear_kron_accum",
      [](in_array<T> a, in_array<T> S, out_array<T> out_A, out_array<T> out_B) {
        check_aS(a, S);
        const int64_t n = a.shape(0), I = a.shape(1), K = S.shape(1), O = S.shape(2);
        check_out(out_A, {I, I}, "out_A");
        check_out(out_B, {O, O}, "out_B");
        const T *pa = a.data(), *pS = S.data();
        T *pA = out_A.mutable_data(), *pB = out_B.mutable_data();
        py::gil_scoped_release rel;
        cv::linear_kron_accum<T>(pa, pS, n, I, K, O, pA, pB);
      },
      py::arg("a"), py::arg("S"), py::arg("out_A").noconvert(), py::arg("out_B").noconvert(),
      "out_A (I, I) += a^T a; out_B (O, O) += sum_k S S^T (Kronecker factors of a linear layer).");
  m.def(
      "linear_jacobian",
      [](in_array<T> a, in_array<T> S, out_array<T> out) {
        check_aS(a, S);
        const int64_t n = a.shape(0), I = a.shape(1), K = S.shape(1), O = S.shape(2);
        check_out(out, {n, K, O * I + O}, "out");
        const T *pa = a.data(), *pS = S.data();
        T* po = out.mutable_data();
        py::gil_scoped_release rel;
        cv::linear_jacobian<T>(pa, pS, n, I, K, O, po);
      },
      py::arg("a"), py::arg("S"), py::arg("out").noconvert(), "Jacobian rows out (n, K, O*I + O) = [S ⊗ a, S].");
  m.def(
      "gram_accum",
      [](in_array<T> J, out_array<T> out) {
        need(J.ndim() == 2, "J must have shape (m, P)");
        const int64_t mm = J.shape(0), P = J.shape(1);
        check_out(out, {P, P}, "out");
        const T* pj = J.data();
        T* po = out.mutable_data();
        py::gil_scoped_release rel;
        cv::gram_accum<T>(pj, mm, P, po);
      },
      py::arg("J"), py::arg("out").noconvert(), "out (P, P) += J^T J.");
  m.def(
      "linear_ggn_vp",
      [](in_array<T> a, in_array<T> S, in_array<T> V, out_array<T> out) {
        check_aS(a, S);
        const int64_t n = a.shape(0), I = a.shape(1), K = S.shape(1), O = S.shape(2);
        need(V.ndim() == 2 && V.shape(1) == O * I + O, "V must have shape (m, O*I + O)");
        const int64_t mm = V.shape(0);
        check_out(out, {mm, O * I + O}, "out");
        const T *pa = a.data(), *pS = S.data(), *pv = V.data();
        T* po = out.mutable_data();
        py::gil_scoped_release rel;
        cv::linear_ggn_vp<T>(pa, pS, n, I, K, O, pv, mm, po);
      },
      py::arg("a"), py::arg("S"), py::arg("V"), py::arg("out").noconvert(),
      "out (m, P) += GGN-vector products of a linear layer (jvp, loss Hessian, vjp).");
  m.def(
      "linear_full_accum",
      [](in_array<T> a, in_array<T> S, out_array<T> out) {
        check_aS(a, S);
        const int64_t n = a.shape(0), I = a.shape(1), K = S.shape(1), O = S.shape(2);
        check_out(out, {O * I + O, O * I + O}, "out");
        const T *pa = a.data(), *pS = S.data();
        T* po = out.mutable_data();
        py::gil_scoped_release rel;
        cv::linear_full_accum<T>(pa, pS, n, I, K, O, po);
      },
      py::arg("a"), py::arg("S"), py::arg("out").noconvert(),
      "out (P, P) += the full GGN of a linear layer (P = O*I + O), block by block.");
  m.def(
      "mlp_curv_accum",
      [](const cv::CurvatureConfig& c, in_array<T> params, in_array<T> X, in_array<T> y, in_array<T> draws,
         out_array<T> out) {
        const mlp::Layout& L = c.net.layout;
        const int64_t n = check_mlp_chunk(L, params, X, y, draws, c.lik, c.kind, c.n_cols);
        check_out(out, {c.structure == cv::Structure::kDiag ? L.n_params : cv::kron_packed_size(L)}, "out");
        const T *pp = params.data(), *px = X.data(), *py_ = y.data(), *pd = draws.data();
        T* po = out.mutable_data();
        py::gil_scoped_release rel;
        return cv::mlp_accum<T>(c, pp, px, py_, pd, n, po);
      },
      py::arg("config"), py::arg("params"), py::arg("X"), py::arg("y"), py::arg("draws"), py::arg("out").noconvert(),
      "Add one data chunk's diagonal (out (P,)) or packed Kronecker factors of a whole MLP; returns the loss.");
  m.def(
      "mlp_ggn_vp",
      [](const cv::CurvatureConfig& c, in_array<T> params, in_array<T> X, in_array<T> y, in_array<T> draws,
         in_array<T> V, out_array<T> out) {
        const mlp::Layout& L = c.net.layout;
        const int64_t n = check_mlp_chunk(L, params, X, y, draws, c.lik, c.kind, c.n_cols);
        need(V.ndim() == 2 && V.shape(1) == L.n_params, "V must have shape (m, P)");
        const int64_t mm = V.shape(0);
        check_out(out, {mm, L.n_params}, "out");
        const T *pp = params.data(), *px = X.data(), *py_ = y.data(), *pd = draws.data(), *pv = V.data();
        T* po = out.mutable_data();
        py::gil_scoped_release rel;
        cv::mlp_ggn_vp<T>(c, pp, px, py_, pd, n, pv, mm, po);
      },
      py::arg("config"), py::arg("params"), py::arg("X"), py::arg("y"), py::arg("draws"), py::arg("V"),
      py::arg("out").noconvert(),
      "out (m, P) += one chunk's curvature-vector products of a whole MLP (jvp, loss Hessian, vjp).");
  m.def(
      "mlp_glm_fvar",
      [](const cv::GlmConfig& c, in_array<T> params, in_array<T> X, in_array<T> rot, in_array<T> var,
         out_array<T> f_out, out_array<T> fvar_out) {
        const mlp::Layout& L = c.net.layout;
        need(params.ndim() == 1 && params.shape(0) == L.n_params,
             "params must have shape (" + std::to_string(L.n_params) + ",)");
        need(X.ndim() == 2 && X.shape(1) == L.d_input(), "X must have shape (n, " + std::to_string(L.d_input()) + ")");
        const int64_t n = X.shape(0), C = L.d_output();
        need(size_of(rot) == cv::glm_rot_size(L, c.structure),
             "rot must have " + std::to_string(cv::glm_rot_size(L, c.structure)) + " elements for this structure");
        need(var.ndim() == 1 && var.shape(0) == L.n_params, "var must have shape (P,)");
        check_out(f_out, {n, C}, "f_out");
        check_out(fvar_out, {n, C, C}, "fvar_out");
        const T *pp = params.data(), *px = X.data(), *pr = rot.data(), *pv = var.data();
        T *pf = f_out.mutable_data(), *pfv = fvar_out.mutable_data();
        py::gil_scoped_release rel;
        cv::mlp_glm_fvar<T>(c, pp, px, n, pr, pv, pf, pfv);
      },
      py::arg("config"), py::arg("params"), py::arg("X"), py::arg("rot"), py::arg("var"), py::arg("f_out").noconvert(),
      py::arg("fvar_out").noconvert(),
      "GLM outputs f_out (n, C) and covariances fvar_out (n, C, C) = J Σ Jᵀ for a diagonal or Kronecker Σ, "
      "layer by layer without Jacobians.");
  m.def(
      "mlp_jacobian",
      [](const mlp::NetConfig& net, in_array<T> params, in_array<T> X, out_array<T> f_out, out_array<T> J_out) {
        const mlp::Layout& L = net.layout;
        need(params.ndim() == 1 && params.shape(0) == L.n_params,
             "params must have shape (" + std::to_string(L.n_params) + ",)");
        need(X.ndim() == 2 && X.shape(1) == L.d_input(), "X must have shape (n, " + std::to_string(L.d_input()) + ")");
        const int64_t n = X.shape(0), C = L.d_output();
        check_out(f_out, {n, C}, "f_out");
        check_out(J_out, {n, C, L.n_params}, "J_out");
        const T *pp = params.data(), *px = X.data();
        T *pf = f_out.mutable_data(), *pj = J_out.mutable_data();
        py::gil_scoped_release rel;
        cv::mlp_jacobian<T>(net, pp, px, n, pf, pj);
      },
      py::arg("net"), py::arg("params"), py::arg("X"), py::arg("f_out").noconvert(), py::arg("J_out").noconvert(),
      "Outputs f_out (n, C) and output Jacobians J_out (n, C, P) of a whole MLP.");
}

}  // namespace

void register_curvature(py::module_& m) {
  py::class_<cv::CurvatureConfig>(m, "CurvatureConfig",
                                  "What the whole-network curvature kernels need besides the arrays: the network, "
                                  "the likelihood code, the curvature kind, its K square-root columns per point "
                                  "(n_cols) and the structure accumulated by mlp_curv_accum. Immutable; twin: "
                                  "bayesgrad._numpy.curvature.CurvatureConfig.")
      .def(py::init([](const mlp::NetConfig& net, int64_t likelihood, int64_t kind, int64_t n_cols, int64_t structure) {
             cv::CurvatureConfig c;
             c.net = net;
             c.lik = codes::from_int<cv::Likelihood>(likelihood, "likelihood");
             cv::require_supported(c.lik);
             c.kind = codes::from_int<cv::Kind>(kind, "kind");
             if (n_cols < 1) throw std::invalid_argument("CurvatureConfig: n_cols must be >= 1");
             c.n_cols = n_cols;
             c.structure = codes::from_int<cv::Structure>(structure, "structure");
             return c;
           }),
           py::arg("net"), py::arg("likelihood"), py::arg("kind"), py::arg("n_cols"), py::arg("structure") = 0)
      .def_readonly("net", &cv::CurvatureConfig::net)
      .def_property_readonly("likelihood", [](const cv::CurvatureConfig& c) { return static_cast<int>(c.lik); })
      .def_property_readonly("kind", [](const cv::CurvatureConfig& c) { return static_cast<int>(c.kind); })
      .def_readonly("n_cols", &cv::CurvatureConfig::n_cols)
      .def_property_readonly("structure", [](const cv::CurvatureConfig& c) { return static_cast<int>(c.structure); });
  py::class_<cv::GlmConfig>(m, "GlmConfig",
                            "What mlp_glm_fvar needs besides the arrays: the network and the structure of the "
                            "posterior covariance (diag or kron). Immutable; twin: "
                            "bayesgrad._numpy.curvature.GlmConfig.")
      .def(py::init([](const mlp::NetConfig& net, int64_t structure) {
             cv::GlmConfig c;
             c.net = net;
             c.structure = codes::from_int<cv::Structure>(structure, "structure");
             return c;
           }),
           py::arg("net"), py::arg("structure") = 0)
      .def_readonly("net", &cv::GlmConfig::net)
      .def_property_readonly("structure", [](const cv::GlmConfig& c) { return static_cast<int>(c.structure); });
  bind<float>(m);
  bind<double>(m);
}

}  // namespace bayesgrad
