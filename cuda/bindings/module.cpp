// bayesgrad._cuda: the CUDA kernels (cuda/src/kernels.hpp) with the concept
// submodules, names and argument order of bayesgrad._core for what they
// implement (docs/design.md, "CUDA backend"). Arrays are CUDA device arrays
// (CuPy, or anything with __cuda_array_interface__ v2/v3), C-contiguous, all
// of the output's dtype (float32 or float64: the output picks, as in _core; no
// silent conversion, which would be a hidden copy). Work is enqueued on the
// stream the output's interface names (CuPy's current stream), so results are
// ordered with the caller's CuPy work and nothing waits for the device except
// decompose and point_scores, which return a number, and categorical
// likelihood_nll, which reports bad class labels.
#include "../../cpp/bindings/pybind11.hpp"
// (pybind11.hpp first)
#include <optional>
#include <vector>

#include "bayesgrad/philox.hpp"
#include "../src/kernels.hpp"

#ifndef BAYESGRAD_CUDA_STATUS
#define BAYESGRAD_CUDA_STATUS "unknown"
#endif

namespace bayesgrad {
namespace cuda {
namespace {

// One array argument as its __cuda_array_interface__ describes it.
struct Dev {
  void* ptr = nullptr;
  std::vector<int64_t> shape;
  int itemsize = 0;
  bool readonly = false;
  int64_t size = 1;
  Stream stream = nullptr;
  int64_t ndim() const { return static_cast<int64_t>(shape.size()); }
};

std::string type_name(py::handle obj) { return py::str(py::type::of(obj).attr("__name__")); }

Dev dev(py::handle obj, const char* name) {
  if (obj.is_none() || !py::hasattr(obj, "__cuda_array_interface__"))
    throw py::type_error(std::string(name) + " must be a CUDA device array (CuPy, __cuda_array_interface__), got " +
                         type_name(obj));
  const py::dict cai = obj.attr("__cuda_array_interface__");
  Dev d;
  for (auto v : cai["shape"].cast<py::tuple>()) d.shape.push_back(v.cast<int64_t>());
  const std::string ts = cai["typestr"].cast<std::string>();
  if (ts.size() != 3 || ts[1] != 'f' || (ts[2] != '4' && ts[2] != '8') || ts[0] == '>')
    throw py::type_error(std::string(name) + " must be float32 or float64, got typestr " + ts);
  d.itemsize = ts[2] - '0';
  const py::tuple data = cai["data"].cast<py::tuple>();
  d.ptr = reinterpret_cast<void*>(data[0].cast<uintptr_t>());
  d.readonly = data[1].cast<bool>();
  for (int64_t s : d.shape) d.size *= s;
  if (cai.contains("mask") && !cai["mask"].is_none())
    throw std::invalid_argument(std::string(name) + ": masked arrays are not supported");
  if (cai.contains("strides") && !cai["strides"].is_none()) {
    const py::tuple st = cai["strides"].cast<py::tuple>();
    int64_t expect = d.itemsize;
    for (int64_t k = d.ndim() - 1; k >= 0; --k) {
      if (d.shape[k] > 1 && st[k].cast<int64_t>() != expect)
        throw std::invalid_argument(std::string(name) + " must be C-contiguous");
      expect *= d.shape[k];
    }
  }
  // CAI v3: None = no stream semantics (legacy default stream), 1 = legacy
  // default, 2 = per-thread default; both equal the cudaStream_t handles.
  if (cai.contains("stream") && !cai["stream"].is_none())
    d.stream = reinterpret_cast<Stream>(cai["stream"].cast<uintptr_t>());
  if (d.size > 0) check_device_pointer(d.ptr, name);
  return d;
}

Dev out_dev(py::handle obj, const char* name) {
  Dev d = dev(obj, name);
  if (d.readonly) throw std::invalid_argument(std::string(name) + " must be writeable");
  return d;
}

// An input of the output's dtype.
Dev in_dev(py::handle obj, const char* name, const Dev& out, const char* out_name) {
  Dev d = dev(obj, name);
  if (d.itemsize != out.itemsize)
    throw py::type_error(std::string(name) + " must have the dtype of " + out_name + " (float" +
                         std::to_string(8 * out.itemsize) + "), got float" + std::to_string(8 * d.itemsize));
  return d;
}

template <typename T>
T* ptr(const Dev& d) { return static_cast<T*>(d.ptr); }

void same_size(const Dev& a, const Dev& b, const char* na, const char* nb) {
  if (a.size != b.size)
    throw std::invalid_argument(std::string(na) + " and " + nb + " must have the same size, got " +
                                std::to_string(a.size) + " and " + std::to_string(b.size));
}

void batch_of(const Dev& out, const Dev& p, const char* no, const char* np_) {
  if (p.size == 0 || out.size % p.size != 0)
    throw std::invalid_argument(std::string(no) + " size must be a multiple of " + np_ + " size (the batch)");
}

void check_vec(const Dev& a, int64_t len, const char* name) {
  if (a.ndim() != 1 || a.shape[0] != len)
    throw std::invalid_argument(std::string(name) + " must have shape (" + std::to_string(len) + ",)");
}

// Calls fn<float> or fn<double> by the output's dtype.
#define BG_DISPATCH(out, CALL)             \
  do {                                     \
    if ((out).itemsize == 4) {             \
      using T = float;                     \
      CALL;                                \
    } else {                               \
      using T = double;                    \
      CALL;                                \
    }                                      \
  } while (0)

void register_random(py::module_ m) {
  m.def(
      "fill_uniform",
      [](py::object out, uint64_t seed, uint64_t stream, uint64_t offset) {
        const Dev o = out_dev(out, "out");
        py::gil_scoped_release rel;
        BG_DISPATCH(o, fill_uniform<T>(ptr<T>(o), o.size, seed, stream, offset, o.stream));
      },
      py::arg("out"), py::arg("seed"), py::arg("stream"), py::arg("offset"),
      "Uniforms in (0,1) into the device array out, element offset+i (bit-identical to _core).");
  m.def(
      "fill_normal",
      [](py::object out, uint64_t seed, uint64_t stream, uint64_t offset) {
        const Dev o = out_dev(out, "out");
        py::gil_scoped_release rel;
        BG_DISPATCH(o, fill_normal<T>(ptr<T>(o), o.size, seed, stream, offset, o.stream));
      },
      py::arg("out"), py::arg("seed"), py::arg("stream"), py::arg("offset"),
      "Standard normals into the device array out, element offset+i.");
  m.def("fold_in", &philox::fold_in, py::arg("stream"), py::arg("tag"),
        "Derive an independent stream (< 2^63) from a stream and an integer tag (host computation).");
}

void register_distributions(py::module_ m) {
  m.def(
      "sample_locscale",
      [](py::object out, py::object loc, py::object scale, int64_t family, uint64_t seed, uint64_t stream) {
        const Dev o = out_dev(out, "out"), l = in_dev(loc, "loc", o, "out"), s = in_dev(scale, "scale", o, "out");
        same_size(l, s, "loc", "scale");
        batch_of(o, l, "out", "loc");
        codes::from_int<codes::LocScaleFamily>(family, "family");  // a bad code is a ValueError before any work
        py::gil_scoped_release rel;
        BG_DISPATCH(o, sample_locscale<T>(ptr<T>(o), o.size, ptr<T>(l), ptr<T>(s), l.size, static_cast<int>(family),
                                          seed, stream, o.stream));
      },
      py::arg("out"), py::arg("loc"), py::arg("scale"), py::arg("family"), py::arg("seed"), py::arg("stream"),
      "Location-scale draws into out (n, B): loc + scale * base(family); loc, scale (B,).");
  m.def(
      "locscale_log_prob",
      [](py::object x, py::object loc, py::object scale, int64_t family, py::object logp, py::object d_loc,
         py::object d_scale) {
        const Dev lp = out_dev(logp, "logp"), dl = out_dev(d_loc, "d_loc"), ds = out_dev(d_scale, "d_scale");
        const Dev dx = in_dev(x, "x", lp, "logp"), l = in_dev(loc, "loc", lp, "logp"), s = in_dev(scale, "scale", lp, "logp");
        in_dev(d_loc, "d_loc", lp, "logp");
        in_dev(d_scale, "d_scale", lp, "logp");
        codes::from_int<codes::LocScaleFamily>(family, "family");
        same_size(l, s, "loc", "scale");
        batch_of(dx, l, "x", "loc");
        same_size(dx, lp, "x", "logp");
        same_size(dx, dl, "x", "d_loc");
        same_size(dx, ds, "x", "d_scale");
        py::gil_scoped_release rel;
        BG_DISPATCH(lp, locscale_log_prob<T>(ptr<T>(dx), dx.size, ptr<T>(l), ptr<T>(s), l.size, static_cast<int>(family),
                                             ptr<T>(lp), ptr<T>(dl), ptr<T>(ds), lp.stream));
      },
      py::arg("x"), py::arg("loc"), py::arg("scale"), py::arg("family"), py::arg("logp"), py::arg("d_loc"),
      py::arg("d_scale"), "log p(x) and d/dloc, d/dscale elementwise for x (n, B); loc, scale (B,).");
  m.def(
      "sample_gamma",
      [](py::object out, py::object alpha, py::object rate, uint64_t seed, uint64_t stream) {
        const Dev o = out_dev(out, "out"), a = in_dev(alpha, "alpha", o, "out"), r = in_dev(rate, "rate", o, "out");
        same_size(a, r, "alpha", "rate");
        batch_of(o, a, "out", "alpha");
        py::gil_scoped_release rel;
        BG_DISPATCH(o, sample_gamma<T>(ptr<T>(o), o.size, ptr<T>(a), ptr<T>(r), a.size, seed, stream, o.stream));
      },
      py::arg("out"), py::arg("alpha"), py::arg("rate"), py::arg("seed"), py::arg("stream"),
      "Gamma(alpha, rate) draws into out (n, B) from per-element sub-streams.");
  m.def(
      "sample_beta",
      [](py::object out, py::object a, py::object b, uint64_t seed, uint64_t stream) {
        const Dev o = out_dev(out, "out"), da = in_dev(a, "a", o, "out"), db = in_dev(b, "b", o, "out");
        same_size(da, db, "a", "b");
        batch_of(o, da, "out", "a");
        py::gil_scoped_release rel;
        BG_DISPATCH(o, sample_beta<T>(ptr<T>(o), o.size, ptr<T>(da), ptr<T>(db), da.size, seed, stream, o.stream));
      },
      py::arg("out"), py::arg("a"), py::arg("b"), py::arg("seed"), py::arg("stream"),
      "Beta(a, b) draws into out (n, B): gamma elements 2i and 2i+1, log space.");
  m.def(
      "sample_dirichlet",
      [](py::object out, py::object alpha, uint64_t seed, uint64_t stream) {
        const Dev o = out_dev(out, "out"), a = in_dev(alpha, "alpha", o, "out");
        if (a.ndim() != 2) throw std::invalid_argument("alpha must have shape (B, K)");
        batch_of(o, a, "out", "alpha");
        py::gil_scoped_release rel;
        BG_DISPATCH(o, sample_dirichlet<T>(ptr<T>(o), o.size, ptr<T>(a), a.shape[0], a.shape[1], seed, stream,
                                           o.stream));
      },
      py::arg("out"), py::arg("alpha"), py::arg("seed"), py::arg("stream"),
      "Dirichlet(alpha) draws into out (n, B, K); alpha (B, K).");
}

void register_estimators(py::module_ m) {
  auto outputs = [](const Dev& mean, const Dev& var, const Dev* terms, int64_t n, int64_t p) {
    check_vec(mean, p, "mean_out");
    check_vec(var, p, "var_out");
    if (terms && (terms->ndim() != 2 || terms->shape[0] != n || terms->shape[1] != p))
      throw std::invalid_argument("terms_out must have shape (" + std::to_string(n) + ", " + std::to_string(p) + ")");
  };
  auto matrix = [](const Dev& a, const char* name) {
    if (a.ndim() != 2) throw std::invalid_argument(std::string(name) + " must have shape (n, p)");
  };
  m.def(
      "column_mean_var",
      [=](py::object x, py::object mean_out, py::object var_out) {
        const Dev mo = out_dev(mean_out, "mean_out");
        const Dev vo = out_dev(var_out, "var_out"), dx = in_dev(x, "x", mo, "mean_out");
        in_dev(var_out, "var_out", mo, "mean_out");
        matrix(dx, "x");
        outputs(mo, vo, nullptr, dx.shape[0], dx.shape[1]);
        py::gil_scoped_release rel;
        BG_DISPATCH(mo, column_mean_var<T>(ptr<T>(dx), dx.shape[0], dx.shape[1], ptr<T>(mo), ptr<T>(vo), mo.stream));
      },
      py::arg("x"), py::arg("mean_out"), py::arg("var_out"),
      "Column means and ddof=1 variances of x (n, p) into mean_out, var_out (p,) (Welford, fixed chunking).");
  m.def(
      "score_accumulate",
      [=](py::object score, py::object f, py::object baseline, bool loo, py::object mean_out, py::object var_out,
          py::object terms_out) {
        const Dev mo = out_dev(mean_out, "mean_out");
        const Dev vo = out_dev(var_out, "var_out"), ds = in_dev(score, "score", mo, "mean_out");
        const Dev df = in_dev(f, "f", mo, "mean_out");
        in_dev(var_out, "var_out", mo, "mean_out");
        matrix(ds, "score");
        const int64_t n = ds.shape[0], p = ds.shape[1];
        check_vec(df, n, "f");
        std::optional<Dev> db, dt;
        if (!baseline.is_none()) {
          db = in_dev(baseline, "baseline", mo, "mean_out");
          check_vec(*db, n, "baseline");
        }
        if (loo && db) throw std::invalid_argument("pass either baseline or loo=True, not both");
        if (loo && n < 2) throw std::invalid_argument("a leave-one-out baseline needs n >= 2 samples");
        if (!terms_out.is_none()) {
          dt = in_dev(terms_out, "terms_out", mo, "mean_out");
          if (dt->readonly) throw std::invalid_argument("terms_out must be writeable");
        }
        outputs(mo, vo, dt ? &*dt : nullptr, n, p);
        py::gil_scoped_release rel;
        BG_DISPATCH(mo, score_accumulate<T>(ptr<T>(ds), ptr<T>(df), db ? ptr<T>(*db) : nullptr, loo, n, p, ptr<T>(mo),
                                            ptr<T>(vo), dt ? ptr<T>(*dt) : nullptr, mo.stream));
      },
      py::arg("score"), py::arg("f"), py::arg("baseline").none(true), py::arg("loo"), py::arg("mean_out"),
      py::arg("var_out"), py::arg("terms_out") = py::none(),
      "Mean/var over samples of score (n, p) * (f - b) (n,), b = baseline, leave-one-out mean, or 0.");
  m.def(
      "pathwise_accumulate",
      [=](py::object g, py::object jac, py::object mean_out, py::object var_out, py::object terms_out) {
        const Dev mo = out_dev(mean_out, "mean_out");
        const Dev vo = out_dev(var_out, "var_out"), dg = in_dev(g, "g", mo, "mean_out");
        in_dev(var_out, "var_out", mo, "mean_out");
        matrix(dg, "g");
        const int64_t n = dg.shape[0], p = dg.shape[1];
        std::optional<Dev> dj, dt;
        if (!jac.is_none()) {
          dj = in_dev(jac, "jac", mo, "mean_out");
          if (dj->ndim() != 2 || dj->shape[0] != n || dj->shape[1] != p)
            throw std::invalid_argument("jac must have the shape of g");
        }
        if (!terms_out.is_none()) {
          dt = in_dev(terms_out, "terms_out", mo, "mean_out");
          if (dt->readonly) throw std::invalid_argument("terms_out must be writeable");
        }
        outputs(mo, vo, dt ? &*dt : nullptr, n, p);
        py::gil_scoped_release rel;
        BG_DISPATCH(mo, pathwise_accumulate<T>(ptr<T>(dg), dj ? ptr<T>(*dj) : nullptr, n, p, ptr<T>(mo), ptr<T>(vo),
                                               dt ? ptr<T>(*dt) : nullptr, mo.stream));
      },
      py::arg("g"), py::arg("jac").none(true), py::arg("mean_out"), py::arg("var_out"),
      py::arg("terms_out") = py::none(),
      "Mean/var over samples of g (n, p) * jac (n, p) (jac None: ones), the pathwise chain rule.");
}

void register_metrics(py::module_ m) {
  m.def(
      "decompose",
      [](py::object log_probs, py::object total, py::object aleatoric, py::object epistemic) {
        const Dev t = out_dev(total, "total");
        const Dev a = out_dev(aleatoric, "aleatoric"), e = out_dev(epistemic, "epistemic");
        const Dev lp = in_dev(log_probs, "log_probs", t, "total");
        in_dev(aleatoric, "aleatoric", t, "total");
        in_dev(epistemic, "epistemic", t, "total");
        if (lp.ndim() != 3 || lp.shape[0] < 1 || lp.shape[1] < 1 || lp.shape[2] < 1)
          throw std::invalid_argument("log_probs must be a non-empty (S, N, C) array");
        const int64_t S = lp.shape[0], N = lp.shape[1], C = lp.shape[2];
        check_vec(t, N, "total");
        check_vec(a, N, "aleatoric");
        check_vec(e, N, "epistemic");
        py::gil_scoped_release rel;
        double dev_ = 0;
        BG_DISPATCH(t, dev_ = decompose<T>(ptr<T>(lp), S, N, C, ptr<T>(t), ptr<T>(a), ptr<T>(e), t.stream));
        return dev_;
      },
      py::arg("log_probs"), py::arg("total"), py::arg("aleatoric"), py::arg("epistemic"),
      "Entropy decomposition of log_probs (S, N, C) into total/aleatoric/epistemic (N,) in nats; returns the "
      "largest |sum_c p - 1| (NaN if any input is NaN); waits for the stream to return it.");
}

void register_acquisition(py::module_ m) {
  m.def(
      "point_scores",
      [](py::object log_probs, int64_t kind, py::object out) {
        const Dev o = out_dev(out, "out"), lp = in_dev(log_probs, "log_probs", o, "out");
        codes::from_int<codes::PointScore>(kind, "kind");
        if (lp.ndim() != 3 || lp.shape[0] < 1 || lp.shape[1] < 1 || lp.shape[2] < 1)
          throw std::invalid_argument("log_probs must be a non-empty (S, N, C) array");
        check_vec(o, lp.shape[1], "out");
        py::gil_scoped_release rel;
        double dev_ = 0;
        BG_DISPATCH(o, dev_ = point_scores<T>(ptr<T>(lp), lp.shape[0], lp.shape[1], lp.shape[2], static_cast<int>(kind),
                                              ptr<T>(o), o.stream));
        return dev_;
      },
      py::arg("log_probs"), py::arg("kind"), py::arg("out"),
      "Acquisition scores of log_probs (S, N, C) into out (N,), kind a PointScore code; returns the largest "
      "|sum_c p - 1| (waits for the stream to return it).");
}

void register_mlp(py::module_ m) {
  m.def(
      "likelihood_nll",
      [](py::object F, py::object y, int64_t likelihood, py::object log_noise, py::object nll) {
        const auto lik = codes::from_int<codes::Likelihood>(likelihood, "likelihood");
        const Dev o = out_dev(nll, "nll"), f = in_dev(F, "F", o, "nll"), dy = in_dev(y, "y", o, "nll");
        const Dev ln = in_dev(log_noise, "log_noise", o, "nll");
        if (f.ndim() != 3) throw std::invalid_argument("F must have shape (S, N, K)");
        const int64_t S = f.shape[0], N = f.shape[1], K = f.shape[2];
        int64_t D = K;  // the core's mlp::target_dim, with its messages
        if (lik == codes::Likelihood::kHeteroscedasticGaussian) {
          if (K % 2 != 0)
            throw std::invalid_argument("heteroscedastic_gaussian needs an even output width (mean, log-variance)");
          D = K / 2;
        } else if (lik == codes::Likelihood::kCategorical) {
          if (K < 2) throw std::invalid_argument("categorical needs at least 2 outputs");
          D = 1;
        }
        auto shape = [](const Dev& a, const char* name, std::initializer_list<int64_t> want) {
          if (a.shape != std::vector<int64_t>(want)) {
            std::string t = "(";
            for (int64_t v : want) t += std::to_string(v) + ",";
            throw std::invalid_argument(std::string(name) + " must have shape " + t + ")");
          }
        };
        shape(dy, "y", {N, D});
        shape(ln, "log_noise", {D});
        shape(o, "nll", {S, N});
        py::gil_scoped_release rel;
        BG_DISPATCH(o, likelihood_nll<T>(ptr<T>(f), ptr<T>(dy), S, N, K, D, static_cast<int>(likelihood),
                                         ptr<T>(ln), ptr<T>(o), o.stream));
      },
      py::arg("F"), py::arg("y"), py::arg("likelihood"), py::arg("log_noise"), py::arg("nll"),
      "Per-point NLL (S, N) of targets y (N, Dy) under network outputs F (S, N, K).");
}

#undef BG_DISPATCH

}  // namespace
}  // namespace cuda
}  // namespace bayesgrad

PYBIND11_MODULE(_cuda, m) {
  namespace bc = bayesgrad::cuda;
  m.doc() = "bayesgrad CUDA kernels on CuPy arrays (partial: see docs/design.md, 'CUDA backend').";
  m.def("device_count", &bc::device_count, "Number of visible CUDA devices (0 without a driver).");
  m.def("runtime_version", &bc::runtime_version, "CUDA runtime version the module was built with (e.g. 13000).");
  m.def("driver_version", &bc::driver_version, "CUDA version of the installed driver (0 without a driver).");
  m.attr("build_status") = BAYESGRAD_CUDA_STATUS;
  // The concept submodules this module implements; _backend refuses the
  // backend until every concept of _core is here and a GPU run verified them.
  bc::register_random(m.def_submodule("random", "bayesgrad CUDA kernels: random"));
  bc::register_distributions(m.def_submodule("distributions", "bayesgrad CUDA kernels: distributions"));
  bc::register_estimators(m.def_submodule("estimators", "bayesgrad CUDA kernels: estimators"));
  bc::register_mlp(m.def_submodule("mlp", "bayesgrad CUDA kernels: mlp"));
  bc::register_metrics(m.def_submodule("metrics", "bayesgrad CUDA kernels: metrics"));
  bc::register_acquisition(m.def_submodule("acquisition", "bayesgrad CUDA kernels: acquisition"));
}
