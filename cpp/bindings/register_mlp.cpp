#include "pybind11.hpp"
// (pybind11.hpp first)
#include <optional>

#include "bayesgrad/mlp.hpp"
#include "bayesgrad/parallel.hpp"

namespace bayesgrad {

namespace {

using mlp::Layout;
using mlp::NetConfig;

// Parameters (S, P) and inputs (N, D) shared, or (S, N, D) per sample.
struct Inputs {
  int64_t S, N, x_stride;
};

template <typename T>
Inputs check_inputs(const Layout& L, const in_array<T>& params, const in_array<T>& X) {
  if (params.ndim() != 2 || params.shape(1) != L.n_params)
    throw std::invalid_argument("params must have shape (S, " + std::to_string(L.n_params) + ")");
  Inputs r{params.shape(0), 0, 0};
  if (X.ndim() == 2 && X.shape(1) == L.d_input()) {
    r.N = X.shape(0);
  } else if (X.ndim() == 3 && X.shape(0) == r.S && X.shape(2) == L.d_input()) {
    r.N = X.shape(1);
    r.x_stride = r.N * L.d_input();
  } else {
    throw std::invalid_argument("X must have shape (N, " + std::to_string(L.d_input()) + ") or (S, N, " +
                                std::to_string(L.d_input()) + ")");
  }
  return r;
}

template <typename T>
std::optional<mlp::Masks<T>> check_masks(const Layout& L, const std::optional<in_array<T>>& masks, int64_t S,
                                         int64_t N) {
  if (!masks) return std::nullopt;
  const auto& m = *masks;
  if (L.n_hidden_units == 0) throw std::invalid_argument("masks given but the network has no hidden layer");
  if (m.ndim() != 3 || m.shape(0) != S || (m.shape(1) != 1 && m.shape(1) != N) || m.shape(2) != L.n_hidden_units)
    throw std::invalid_argument("masks must have shape (S, 1 or N, " + std::to_string(L.n_hidden_units) + ")");
  mlp::Masks<T> r;
  r.m = m.data();
  r.row_stride = m.shape(1) == 1 ? 0 : L.n_hidden_units;
  r.s_stride = m.shape(1) * L.n_hidden_units;
  return r;
}

template <typename T>
void bind(py::module_& m) {
  m.def(
      "gemm",
      [](in_array<T> a, in_array<T> b, out_array<T> c, bool trans_a, bool trans_b, double alpha, double beta) {
        require_writeable(c, "c");
        if (a.ndim() != 2 || b.ndim() != 2 || c.ndim() != 2) throw std::invalid_argument("a, b and c must be 2-d");
        const int64_t M = trans_a ? a.shape(1) : a.shape(0), K = trans_a ? a.shape(0) : a.shape(1);
        const int64_t Kb = trans_b ? b.shape(1) : b.shape(0), N = trans_b ? b.shape(0) : b.shape(1);
        if (Kb != K) throw std::invalid_argument("b: op(a) is (M, K) and op(b) must be (K, N): inner sizes differ");
        if (c.shape(0) != M || c.shape(1) != N) throw std::invalid_argument("c must have shape (M, N) of op(a) op(b)");
        if (M == 0 || N == 0) return;
        if (K == 0) throw std::invalid_argument("a and b must have a nonzero inner dimension");
        const T *pa = a.data(), *pb = b.data();
        T* pc = c.mutable_data();
        py::gil_scoped_release rel;
        pool_gemm(trans_a, trans_b, M, N, K, static_cast<T>(alpha), pa, a.shape(1), pb, b.shape(1), static_cast<T>(beta),
                  pc, N);
      },
      py::arg("a").noconvert(), py::arg("b").noconvert(), py::arg("c").noconvert(), py::arg("trans_a"),
      py::arg("trans_b"), py::arg("alpha"), py::arg("beta"),
      "c = alpha op(a) op(b) + beta c (c not read when beta is 0) through the engine's GEMM: the narrow-dimension "
      "kernels or scipy-openblas32, on the core's pool.");
  m.def(
      "mlp_forward",
      [](const NetConfig& net, in_array<T> params, in_array<T> X, out_array<T> out,
         std::optional<in_array<T>> masks) {
        const Layout& L = net.layout;
        const auto f = net.act;
        Inputs in = check_inputs<T>(L, params, X);
        // One network under S dropout masks: params (1, P), S from the masks, so the
        // first layer's product, the same for every mask, is formed once per row tile.
        int64_t p_stride = L.n_params;
        if (masks && in.S == 1 && in.x_stride == 0 && masks->ndim() == 3 && masks->shape(0) > 1) {
          in.S = masks->shape(0);
          p_stride = 0;
        }
        require_shape(out, "out", {in.S, in.N, L.d_output()});
        require_writeable(out, "out");
        const auto mk = check_masks<T>(L, masks, in.S, in.N);
        const T* p = params.data();
        const T* x = X.data();
        T* o = out.mutable_data();
        py::gil_scoped_release rel;
        mlp::forward_outputs<T>(L, f, p, in.S, p_stride, x, in.N, in.x_stride, o, mk ? &*mk : nullptr);
      },
      py::arg("net"), py::arg("params"), py::arg("X"), py::arg("out").noconvert(), py::arg("masks") = py::none(),
      "Network outputs (S, N, K) for S parameter vectors (S, P) on X (N, D) or (S, N, D); params (1, P) "
      "with masks (S, 1 or N, H) and X (N, D): one network under S masks (MC dropout).");
  m.def(
      "mlp_backward",
      [](const NetConfig& net, in_array<T> params, in_array<T> X, in_array<T> g_out, std::optional<out_array<T>> grad,
         std::optional<out_array<T>> grad_x, std::optional<in_array<T>> masks, std::optional<out_array<T>> outputs) {
        const Layout& L = net.layout;
        const auto f = net.act;
        const Inputs in = check_inputs<T>(L, params, X);
        require_shape(g_out, "g_out", {in.S, in.N, L.d_output()});
        T* fo = nullptr;
        if (outputs) {
          require_shape(*outputs, "outputs", {in.S, in.N, L.d_output()});
          require_writeable(*outputs, "outputs");
          fo = outputs->mutable_data();
        }
        if (!grad && !grad_x) throw std::invalid_argument("grad and grad_x are both None: nothing to compute");
        T* g = nullptr;
        if (grad) {
          require_shape(*grad, "grad", {in.S, L.n_params});
          require_writeable(*grad, "grad");
          g = grad->mutable_data();
        }
        T* gx = nullptr;
        if (grad_x) {
          require_shape(*grad_x, "grad_x", {in.S, in.N, L.d_input()});
          require_writeable(*grad_x, "grad_x");
          gx = grad_x->mutable_data();
        }
        const auto mk = check_masks<T>(L, masks, in.S, in.N);
        const T* p = params.data();
        const T* x = X.data();
        const T* go = g_out.data();
        py::gil_scoped_release rel;
        if (in.S == 1 && !mk && mlp::backward_tiled<T>(L, f, p, x, in.N, go, g, gx, fo)) return;
        mlp::ThreadTrace<T> lease;
        mlp::Trace<T>& tr = lease.get();
        mlp::forward<T>(L, f, p, in.S, L.n_params, x, in.N, in.x_stride, tr, mk ? &*mk : nullptr);
        if (fo) std::copy(tr.output(), tr.output() + in.S * in.N * L.d_output(), fo);
        mlp::backward<T>(L, f, p, L.n_params, x, in.x_stride, tr, go, g, L.n_params, gx, mk ? &*mk : nullptr);
      },
      py::arg("net"), py::arg("params"), py::arg("X"), py::arg("g_out"), py::arg("grad").noconvert().none(true), py::arg("grad_x").noconvert() = py::none(), py::arg("masks") = py::none(),
      py::arg("outputs").noconvert() = py::none(),
      "Vector-Jacobian product: g_out (S, N, K) -> grad (S, P) (or None: grad_x alone) and optionally grad_x "
      "(S, N, D); outputs (S, N, K), when given, receives the network outputs of the forward pass the product "
      "runs.");
  m.def(
      "mlp_mixed_vjp",
      [](const NetConfig& net, in_array<T> params, in_array<T> X, in_array<T> V, std::optional<in_array<T>> g_out,
         in_array<T> g_dot, out_array<T> grad) {
        const Layout& L = net.layout;
        const Inputs in = check_inputs<T>(L, params, X);
        if (in.S != 1 || X.ndim() != 2)
          throw std::invalid_argument("mlp_mixed_vjp takes one parameter vector: params (1, P) and X (N, D)");
        require_shape(V, "V", {in.N, L.d_input()});
        if (g_out) require_shape(*g_out, "g_out", {1, in.N, L.d_output()});
        require_shape(g_dot, "g_dot", {1, in.N, L.d_output()});
        require_shape(grad, "grad", {1, L.n_params});
        require_writeable(grad, "grad");
        const T *p = params.data(), *x = X.data(), *v = V.data(), *go = g_out ? g_out->data() : nullptr,
                *gd = g_dot.data();
        T* g = grad.mutable_data();
        py::gil_scoped_release rel;
        mlp::mixed_vjp<T>(L, net.act, p, x, v, in.N, go, gd, g);
      },
      py::arg("net"), py::arg("params"), py::arg("X"), py::arg("V"), py::arg("g_out").none(true), py::arg("g_dot"),
      py::arg("grad").noconvert(),
      "grad (1, P) = sum over rows of d/dparams [g_out . r(x) + g_dot . (J_x r(x) v)]: the parameter gradient of "
      "the directional derivatives along V (N, D) weighted by g_dot (1, N, K), plus the VJP of g_out (1, N, K) "
      "or None; params (1, P), X (N, D). Exact (forward over reverse).");
  m.def(
      "mlp_nll_grad",
      [](const NetConfig& net, int64_t likelihood, in_array<T> params, in_array<T> X, in_array<T> y,
         in_array<T> log_noise, out_array<T> nll, std::optional<out_array<T>> grad,
         std::optional<in_array<T>> masks) {
        const Layout& L = net.layout;
        const auto f = net.act;
        const auto lik = codes::from_int<mlp::Likelihood>(likelihood, "likelihood");
        const Inputs in = check_inputs<T>(L, params, X);
        const int64_t K = L.d_output();
        const int64_t Dy = mlp::target_dim(lik, K);
        require_shape(y, "y", {in.N, Dy});
        require_shape(log_noise, "log_noise", {Dy});
        require_shape(nll, "nll", {in.S});
        require_writeable(nll, "nll");
        T* g = nullptr;
        if (grad) {
          require_shape(*grad, "grad", {in.S, L.n_params});
          require_writeable(*grad, "grad");
          g = grad->mutable_data();
        }
        const auto mk = check_masks<T>(L, masks, in.S, in.N);
        const T* p = params.data();
        const T* x = X.data();
        const T* yy = y.data();
        const T* ln = log_noise.data();
        T* o = nll.mutable_data();
        py::gil_scoped_release rel;
        if (in.S == 1 && !mk && mlp::nll_grad_tiled<T>(L, f, lik, p, x, in.N, yy, ln, o, g)) return;
        mlp::ThreadTrace<T> lease;
        mlp::Trace<T>& tr = lease.get();
        mlp::forward<T>(L, f, p, in.S, L.n_params, x, in.N, in.x_stride, tr, mk ? &*mk : nullptr);
        std::vector<T> gF(g ? static_cast<size_t>(in.S * in.N * K) : 0);
        mlp::nll<T>(lik, tr.output(), yy, in.S, in.N, K, ln, o, g ? gF.data() : nullptr, T(1), nullptr);
        if (g) mlp::backward<T>(L, f, p, L.n_params, x, in.x_stride, tr, gF.data(), g, L.n_params, nullptr,
                                mk ? &*mk : nullptr);
      },
      py::arg("net"), py::arg("likelihood"), py::arg("params"), py::arg("X"), py::arg("y"), py::arg("log_noise"),
      py::arg("nll").noconvert(), py::arg("grad").noconvert() = py::none(), py::arg("masks") = py::none(),
      "Summed NLL (S,) of targets y and its gradient (S, P) w.r.t. params.");
  m.def(
      "likelihood_nll",
      [](in_array<T> F, in_array<T> y, int64_t likelihood, in_array<T> log_noise, out_array<T> nll) {
        const auto lik = codes::from_int<mlp::Likelihood>(likelihood, "likelihood");
        if (F.ndim() != 3) throw std::invalid_argument("F must have shape (S, N, K)");
        const int64_t S = F.shape(0), N = F.shape(1), K = F.shape(2);
        const int64_t Dy = mlp::target_dim(lik, K);
        require_shape(y, "y", {N, Dy});
        require_shape(log_noise, "log_noise", {Dy});
        require_shape(nll, "nll", {S, N});
        require_writeable(nll, "nll");
        const T* pf = F.data();
        const T* py_ = y.data();
        const T* ln = log_noise.data();
        T* o = nll.mutable_data();
        py::gil_scoped_release rel;
        // per-point NLL: one row at a time through the summing kernel
        for (int64_t s = 0; s < S; ++s)
          for (int64_t n = 0; n < N; ++n)
            mlp::nll<T>(lik, pf + (s * N + n) * K, py_ + n * Dy, 1, 1, K, ln, o + s * N + n, nullptr, T(1), nullptr);
      },
      py::arg("F"), py::arg("y"), py::arg("likelihood"), py::arg("log_noise"), py::arg("nll").noconvert(),
      "Per-point NLL (S, N) of targets y (N, Dy) under network outputs F (S, N, K).");
}

}  // namespace

void register_mlp(py::module_& m) {
  py::class_<NetConfig>(m, "NetConfig",
                        "A network as the kernels see it: layer widths (d_0, ..., d_L) and the hidden activation "
                        "code (bayesgrad._codes.Activation). Immutable; twin: bayesgrad._numpy.mlp.NetConfig.")
      .def(py::init([](const std::vector<int64_t>& sizes, int64_t activation) {
             return NetConfig{Layout(sizes.data(), static_cast<int64_t>(sizes.size())),
                              codes::from_int<mlp::Activation>(activation, "activation")};
           }),
           py::arg("sizes"), py::arg("activation"))
      .def_property_readonly("sizes", [](const NetConfig& c) { return py::tuple(py::cast(c.layout.sizes)); })
      .def_property_readonly("activation", [](const NetConfig& c) { return static_cast<int>(c.act); })
      .def_property_readonly("n_params", [](const NetConfig& c) { return c.layout.n_params; })
      .def("__repr__", [](const NetConfig& c) {
        return "NetConfig(sizes=" + py::repr(py::tuple(py::cast(c.layout.sizes))).cast<std::string>() +
               ", activation=" + std::to_string(static_cast<int>(c.act)) + ")";
      });
  bind<float>(m);
  bind<double>(m);
}

}  // namespace bayesgrad
