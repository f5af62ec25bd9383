// Samplers and log-density kernels (the conventions are in distributions.hpp).
#include "bayesgrad/distributions.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "bayesgrad/parallel.hpp"
#include "bayesgrad/philox.hpp"
#include "bayesgrad/philox_simd.hpp"
#include "bayesgrad/random.hpp"
#include "bayesgrad/samplers.hpp"
#include "bayesgrad/simd_map.hpp"
#include "bayesgrad/simd_math.hpp"
#include "bayesgrad/special.hpp"
#include "batch_runs.hpp"
#include "gamma_run.hpp"

namespace bayesgrad {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr int64_t kChunk = 4096;           // elements per parallel chunk (fixed)

void check_batch(int64_t n_total, int64_t batch) {
  if (batch <= 0 || n_total % batch != 0)
    throw std::invalid_argument("output size must be a multiple of the parameters' batch size");
}

using samplers::gamma_draw;  // the scalar loop, shared with the CUDA kernels

// gamma_c of each of n shapes (as doubles), for gamma_run: computed once per parameter, not per draw.
template <typename T>
std::vector<double> gamma_c_table(const T* alpha, int64_t n) {
  std::vector<double> c(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) c[j] = gamma_c(static_cast<double>(alpha[j]));
  return c;
}

}  // namespace

double log_gamma_draw(double alpha, uint64_t seed, uint64_t stream, uint64_t element) {
  return gamma_draw(alpha, seed, stream | philox::kSubstreamBit, element, true);
}

namespace {
// The transcendental part of samplers::locscale_transform for the elements o[0, n) of a chunk
// (element i has parameter (lo + i) % batch), its logs and exps as vector passes over the chunk
// (simd::map_array; libm's on the scalar path, the reference's own calls): each element called
// libm once or twice in a baseline x86-64 loop, about NumPy's own speed per core (Laplace 1.1x,
// Exponential 1.3-1.5x, Gumbel 1.8x). y, b: scratch of n doubles.
template <typename T>
void transform_chunk(LocScale fam, T* o, int64_t n, const T* loc, const T* scale, int64_t lo, int64_t batch,
                     double* y, double* b) {
  // body(i0, m, s, run, step): elements i0 .. i0 + run - 1 have parameters m[t step], s[t step]
  auto runs = [&](const auto& body) {
    if (batch == 1) return body(0, loc, scale, n, 0);
    by_runs(lo, lo + n, batch, [&](int64_t i, int64_t j, int64_t run) { body(i, loc + j, scale + j, run, 1); });
  };
  // o[i] = m + s (T) b[i]
  auto finish = [&]() {
    runs([&](int64_t i0, const T* m, const T* s, int64_t run, int64_t step) {
      for (int64_t t = 0; t < run; ++t) o[i0 + t] = m[t * step] + s[t * step] * static_cast<T>(b[i0 + t]);
    });
  };
  switch (fam) {
    case LocScale::kLognormal: {  // max(exp(m + s e), tiny); the vector exp's range is [-700, 80]
      runs([&](int64_t i0, const T* m, const T* s, int64_t run, int64_t step) {
        for (int64_t t = 0; t < run; ++t) y[i0 + t] = static_cast<double>(m[t * step] + s[t * step] * o[i0 + t]);
      });
      simd::map_array<false>(y, b, n);
      const T tiny = sizeof(T) == 4 ? static_cast<T>(FLT_MIN) : static_cast<T>(DBL_MIN);
      for (int64_t i = 0; i < n; ++i) {
        const bool out = !(y[i] >= -700.0 && y[i] <= 80.0);  // (NaN too) outside the vector exp's range
        const T x = static_cast<T>(out ? std::exp(y[i]) : b[i]);
        o[i] = x < tiny ? tiny : x;
      }
      return;
    }
    case LocScale::kExponential:  // -ln e
      for (int64_t i = 0; i < n; ++i) y[i] = static_cast<double>(o[i]);
      simd::map_array<true>(y, b, n);
      for (int64_t i = 0; i < n; ++i) b[i] = -b[i];
      return finish();
    case LocScale::kGumbel:  // -ln(-ln e)
      for (int64_t i = 0; i < n; ++i) y[i] = static_cast<double>(o[i]);
      simd::map_array<true>(y, b, n);
      for (int64_t i = 0; i < n; ++i) y[i] = -b[i];
      simd::map_array<true>(y, b, n);
      for (int64_t i = 0; i < n; ++i) b[i] = -b[i];
      return finish();
    case LocScale::kLaplace:  // ln 2e or -ln 2(1 - e): exact arguments, without branches (e is random)
      // 2 min(e, 1 - e): 1 - e is exact above 1/2 and, rounded, still above e below it
      for (int64_t i = 0; i < n; ++i) y[i] = 2.0 * std::min(static_cast<double>(o[i]), 1.0 - static_cast<double>(o[i]));
      simd::map_array<true>(y, b, n);
      // the log is <= 0: negated above 1/2 (e is never 1/2: the uniforms' grids are (k + 1/2) 2^-23 and 2^-52)
      for (int64_t i = 0; i < n; ++i) b[i] = -std::copysign(b[i], 0.5 - static_cast<double>(o[i]));
      return finish();
    default: {  // Logistic: ln e - ln(1 - e)
      for (int64_t i = 0; i < n; ++i) y[i] = static_cast<double>(o[i]);
      simd::map_array<true>(y, b, n);
      for (int64_t i = 0; i < n; ++i) y[i] = 1.0 - static_cast<double>(o[i]);
      simd::map_array<true>(y, y, n);
      for (int64_t i = 0; i < n; ++i) b[i] -= y[i];
      return finish();
    }
  }
}
}  // namespace

template <typename T>
void sample_locscale(T* out, int64_t n_total, const T* loc, const T* scale, int64_t batch, LocScale fam,
                     uint64_t seed, uint64_t stream) {
  check_batch(n_total, batch);
  const bool normal = samplers::locscale_uses_normal(fam);
  const bool linear = fam == LocScale::kNormal || fam == LocScale::kUniform;  // m + s e
  const uint64_t total = static_cast<uint64_t>(n_total);
  // Each chunk's base draws (fill_normal's / fill_uniform's values for these elements) and their
  // transform while the chunk is in cache: one pass over the output, not two (the draws were a
  // separate parallel pass, the transform a scalar loop with a counter per element).
  chunked(n_total, kChunk, [&](int64_t lo, int64_t hi) {
    const uint64_t a = static_cast<uint64_t>(lo), b = static_cast<uint64_t>(hi);
    if (normal)
      normal_piece<T>(out + lo, a, b, 0, total, seed, stream);
    else
      uniform_piece<T>(out + lo, a, b, 0, total, seed, stream);
    if (!linear) {
      double y[kChunk], b[kChunk];
      return transform_chunk<T>(fam, out + lo, hi - lo, loc, scale, lo, batch, y, b);
    }
    if (batch == 1) {
      const T m = loc[0], s = scale[0];
      for (int64_t i = lo; i < hi; ++i) out[i] = m + s * out[i];
      return;
    }
    // runs of consecutive parameters (a row of the batch, or the part of one in this chunk)
    by_runs(lo, hi, batch, [&](int64_t i, int64_t j, int64_t run) {
      T* o = out + lo + i;
      const T *m = loc + j, *s = scale + j;
      for (int64_t t = 0; t < run; ++t) o[t] = m[t] + s[t] * o[t];
    });
  });
}

namespace {
// locscale_log_prob per run of consecutive parameters, compiled per vector path: ln(scale) once per
// parameter (ls), and the one transcendental of LogNormal (y = ln x) and Gumbel (e = exp(-z)) from a
// vector pass over the chunk (aux, indexed like x; elements outside its range are redone by the
// scalar rules afterwards). The operations of samplers::locscale_log_prob in its order (no
// contraction in this file: every path the scalar path's values). The per-element form took 9-19 ns
// an element, a libm log each: slower than NumPy's own expression.
template <typename T, LocScale F, bool kGrad>
__attribute__((always_inline)) inline void plain_lp_run(const T* __restrict x, const T* __restrict loc,
                                                        const T* __restrict scale, const double* __restrict ls,
                                                        const double* __restrict aux, int64_t run, T* __restrict lp,
                                                        T* __restrict gl, T* __restrict gs) {
  constexpr double kHalfLog2Pi = 0.91893853320467274178032973640562;
  for (int64_t k = 0; k < run; ++k) {
    const double xi = x[k], m = loc[k], s = scale[k], l = ls[k];
    double p, a = 0.0, b = 0.0;
    if (F == LocScale::kNormal || F == LocScale::kLognormal) {
      const double y = F == LocScale::kNormal ? xi : aux[k];
      const double z = (y - m) / s;
      p = F == LocScale::kNormal ? -0.5 * z * z - l - kHalfLog2Pi : -0.5 * z * z - l - kHalfLog2Pi - y;
      a = z / s;
      b = (z * z - 1.0) / s;
    } else if (F == LocScale::kGumbel) {
      const double z = (xi - m) / s, e = aux[k];
      p = -(z + e) - l;
      a = (1.0 - e) / s;
      b = (z - z * e - 1.0) / s;
    } else if (F == LocScale::kUniform) {
      const bool out = xi < m || xi > m + s;
      p = out ? kNegInf : -l;
      b = out ? 0.0 : -1.0 / s;
    } else if (F == LocScale::kExponential) {
      const bool out = xi < m;
      const double z = (xi - m) / s;
      p = out ? kNegInf : -z - l;
      a = out ? 0.0 : 1.0 / s;
      b = out ? 0.0 : (z - 1.0) / s;
    } else {  // Laplace
      const double z = (xi - m) / s, az = std::fabs(z);
      p = -az - l - 0.69314718055994530942;
      a = (z > 0 ? 1.0 : (z < 0 ? -1.0 : 0.0)) / s;
      b = (az - 1.0) / s;
    }
    lp[k] = static_cast<T>(p);
    if (kGrad) {
      gl[k] = static_cast<T>(a);
      gs[k] = static_cast<T>(b);
    }
  }
}

template <typename T, bool kGrad>
__attribute__((always_inline)) inline void plain_lp_rows(LocScale fam, const T* x, const T* loc, const T* scale,
                                                         const double* ls, const double* aux, int64_t lo, int64_t hi,
                                                         int64_t batch, T* lp, T* gl, T* gs) {
  by_runs(lo, hi, batch, [&](int64_t o, int64_t j, int64_t run) {
    const int64_t i = lo + o;
    T *a = kGrad ? gl + i : nullptr, *b = kGrad ? gs + i : nullptr;
    const T *xi = x + i, *m = loc + j, *s = scale + j;
    const double *l = ls + j, *v = aux ? aux + o : nullptr;
    switch (fam) {
      case LocScale::kNormal: return plain_lp_run<T, LocScale::kNormal, kGrad>(xi, m, s, l, v, run, lp + i, a, b);
      case LocScale::kLognormal: return plain_lp_run<T, LocScale::kLognormal, kGrad>(xi, m, s, l, v, run, lp + i, a, b);
      case LocScale::kGumbel: return plain_lp_run<T, LocScale::kGumbel, kGrad>(xi, m, s, l, v, run, lp + i, a, b);
      case LocScale::kUniform: return plain_lp_run<T, LocScale::kUniform, kGrad>(xi, m, s, l, v, run, lp + i, a, b);
      case LocScale::kExponential:
        return plain_lp_run<T, LocScale::kExponential, kGrad>(xi, m, s, l, v, run, lp + i, a, b);
      default: return plain_lp_run<T, LocScale::kLaplace, kGrad>(xi, m, s, l, v, run, lp + i, a, b);  // (not Logistic)
    }
  });
}

// Gumbel's exponent -z = -(x - m) / s of the elements [lo, hi), into nz (chunk-relative).
template <typename T>
__attribute__((always_inline)) inline void gumbel_exponents(const T* x, const T* loc, const T* scale, int64_t lo,
                                                            int64_t hi, int64_t batch, double* __restrict nz) {
  by_runs(lo, hi, batch, [&](int64_t o, int64_t j, int64_t run) {
    const T *__restrict xi = x + lo + o, *__restrict m = loc + j, *__restrict s = scale + j;
    for (int64_t k = 0; k < run; ++k) nz[o + k] = -((static_cast<double>(xi[k]) - m[k]) / s[k]);
  });
}

#define BG_PLAIN_LP_ISA(ATTR, NAME)                                                                          \
  template <typename T>                                                                                      \
  ATTR void plain_lp_##NAME(LocScale fam, const T* x, const T* loc, const T* scale, const double* ls,         \
                            const double* aux, int64_t lo, int64_t hi, int64_t batch, T* lp, T* gl, T* gs) { \
    if (gl) plain_lp_rows<T, true>(fam, x, loc, scale, ls, aux, lo, hi, batch, lp, gl, gs);                  \
    else plain_lp_rows<T, false>(fam, x, loc, scale, ls, aux, lo, hi, batch, lp, gl, gs);                    \
  }                                                                                                          \
  template <typename T>                                                                                      \
  ATTR void gumbel_exponents_##NAME(const T* x, const T* loc, const T* scale, int64_t lo, int64_t hi,        \
                                    int64_t batch, double* nz) {                                             \
    gumbel_exponents<T>(x, loc, scale, lo, hi, batch, nz);                                                   \
  }
#if BG_HAVE_X86
BG_PLAIN_LP_ISA(BG_AVX512, avx512)
BG_PLAIN_LP_ISA(BG_AVX2, avx2)
#endif
BG_PLAIN_LP_ISA(, base)
#undef BG_PLAIN_LP_ISA
}  // namespace

template <typename T>
void locscale_log_prob(const T* x, int64_t n_total, const T* loc, const T* scale, int64_t batch, LocScale fam,
                       T* logp, T* d_loc, T* d_scale) {
  check_batch(n_total, batch);
  if ((d_loc == nullptr) != (d_scale == nullptr))
    throw std::invalid_argument("d_loc and d_scale must both be given or both be None");
  // element i (parameter j) by the scalar rules
  auto element = [&](int64_t i, int64_t j) {
    double gl, gs;
    logp[i] = static_cast<T>(samplers::locscale_log_prob(fam, x[i], loc[j], scale[j], gl, gs));
    if (d_loc) d_loc[i] = static_cast<T>(gl);
    if (d_scale) d_scale[i] = static_cast<T>(gs);
  };
  if (fam == LocScale::kLogistic) {  // (only sampled by the package) element by element, libm's log1p / exp / tanh
    chunked(n_total, kChunk, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo, j = lo % batch; i < hi; ++i, j = j + 1 == batch ? 0 : j + 1) element(i, j);
    });
    return;
  }
  std::vector<double> ls(static_cast<size_t>(batch));
  for (int64_t j = 0; j < batch; ++j) ls[j] = std::log(static_cast<double>(scale[j]));
  auto rows = plain_lp_base<T>;
  auto exponents = gumbel_exponents_base<T>;
#if BG_HAVE_X86
  if (simd::use_avx512()) {
    rows = plain_lp_avx512<T>;
    exponents = gumbel_exponents_avx512<T>;
  } else if (simd::use_avx2()) {
    rows = plain_lp_avx2<T>;
    exponents = gumbel_exponents_avx2<T>;
  }
#endif
  const bool logn = fam == LocScale::kLognormal, gumbel = fam == LocScale::kGumbel;
  if (!(logn || gumbel)) {  // no transcendental per element
    chunked(n_total, kChunk, [&](int64_t lo, int64_t hi) {
      rows(fam, x, loc, scale, ls.data(), nullptr, lo, hi, batch, logp, d_loc, d_scale);
    });
    return;
  }
  chunked(n_total, kChunk, [&](int64_t lo, int64_t hi) {
    // the chunk's y = ln x (LogNormal: x a positive normal finite number) or e = exp(-z) (Gumbel:
    // -z in [-700, 80]) in one vector pass; the other elements by the scalar rules below
    const int64_t len = hi - lo;
    double *arg = scratch(0, len), *aux = scratch(1, len);
    constexpr double kMin = std::numeric_limits<double>::min();
    // whether element i (parameter j) is in the vector pass's range (its argument there is otherwise 1 / 0);
    // recomputed only for the rare chunks with such elements
    auto inside = [&](int64_t i, int64_t j) {
      if (logn) return static_cast<double>(x[i]) >= kMin && static_cast<double>(x[i]) < HUGE_VAL;
      const double v = -((static_cast<double>(x[i]) - loc[j]) / scale[j]);  // gumbel_exponents' value
      return v >= -700.0 && v <= 80.0;
    };
    bool all_inside = true;
    if (logn) {
      for (int64_t i = 0; i < len; ++i) {
        const double v = x[lo + i];
        const bool in = v >= kMin && v < HUGE_VAL;
        all_inside = all_inside && in;
        arg[i] = in ? v : 1.0;
      }
    } else {
      exponents(x, loc, scale, lo, hi, batch, arg);
      for (int64_t i = 0; i < len; ++i) {
        const bool in = arg[i] >= -700.0 && arg[i] <= 80.0;
        all_inside = all_inside && in;
        arg[i] = in ? arg[i] : 0.0;
      }
    }
    if (logn) simd::map_array<true>(arg, aux, len);
    else simd::map_array<false>(arg, aux, len);
    rows(fam, x, loc, scale, ls.data(), aux, lo, hi, batch, logp, d_loc, d_scale);
    if (all_inside) return;
    for (int64_t i = lo, j = lo % batch; i < hi; ++i, j = j + 1 == batch ? 0 : j + 1)
      if (!inside(i, j)) element(i, j);
  });
}

template <typename T>
void sample_gamma(T* out, int64_t n_total, const T* alpha, const T* rate, int64_t batch, uint64_t seed,
                  uint64_t stream) {
  check_batch(n_total, batch);
  const uint64_t sub = stream | philox::kSubstreamBit;
  // Draws below the smallest normal number of T are returned as that number
  // (clamp_into_support in Python said so before; done here, in the last pass).
  const std::vector<double> ctab = batch > 1 ? gamma_c_table(alpha, batch) : std::vector<double>();
  chunked(n_total, kChunk, [&](int64_t lo, int64_t hi) {
    const int64_t len = hi - lo;
    double* x = scratch(1, len);
    if (batch == 1) {  // the common scalar-parameter case: no shape array, no division by a unit rate
      const double a = alpha[0], r = rate[0];
      gamma_run(&a, true, len, seed, sub, static_cast<uint64_t>(lo), false, x);
      gamma_finish<T>(x, len, r, out + lo);
      return;
    }
    double *al = scratch(0, len), *cv = scratch(2, len);
    gamma_shapes<T>(alpha, ctab.data(), lo, hi, batch, al, cv);
    gamma_run(al, false, len, seed, sub, static_cast<uint64_t>(lo), false, x, cv);
    gamma_finish_batched<T>(x, lo, hi, rate, batch, out);
  });
}

template <typename T>
void sample_beta(T* out, int64_t n_total, const T* a, const T* b, int64_t batch, uint64_t seed, uint64_t stream) {
  check_batch(n_total, batch);
  const uint64_t sub = stream | philox::kSubstreamBit;
  const std::vector<double> ca = gamma_c_table(a, batch), cb = gamma_c_table(b, batch);
  chunked(n_total, kChunk, [&](int64_t lo, int64_t hi) {
    // Gamma elements 2i (shape a) and 2i+1 (shape b), drawn as one run.
    const int64_t len = 2 * (hi - lo);
    double *al = scratch(0, len), *lg = scratch(1, len), *cv = scratch(2, len);
    for (int64_t i = lo, j = lo % batch; i < hi; ++i) {
      al[2 * (i - lo)] = a[j];
      al[2 * (i - lo) + 1] = b[j];
      cv[2 * (i - lo)] = ca[j];
      cv[2 * (i - lo) + 1] = cb[j];
      if (++j == batch) j = 0;
    }
    gamma_run(al, false, len, seed, sub, 2 * static_cast<uint64_t>(lo), true, lg, cv);
    for (int64_t i = lo; i < hi; ++i) {
      out[i] = static_cast<T>(samplers::beta_from_log_gammas(lg[2 * (i - lo)], lg[2 * (i - lo) + 1]));
    }
  });
}

template <typename T>
void sample_dirichlet(T* out, int64_t n_total, const T* alpha, int64_t batch, int64_t k, uint64_t seed,
                      uint64_t stream) {
  if (k <= 0) throw std::invalid_argument("concentration must have a non-empty last axis");
  check_batch(n_total, batch * k);
  const uint64_t sub = stream | philox::kSubstreamBit;
  const int64_t rows = n_total / k;
  const std::vector<double> ctab = gamma_c_table(alpha, batch * k);
  chunked(rows, (kChunk + k - 1) / k, [&](int64_t lo, int64_t hi) {
    const int64_t len = (hi - lo) * k;
    double *al = scratch(0, len), *lgall = scratch(1, len), *cv = scratch(2, len);
    for (int64_t r = lo; r < hi; ++r) {
      const T* ar = alpha + (r % batch) * k;
      const double* cr = ctab.data() + (r % batch) * k;
      for (int64_t c = 0; c < k; ++c) {
        al[(r - lo) * k + c] = ar[c];
        cv[(r - lo) * k + c] = cr[c];
      }
    }
    gamma_run(al, false, len, seed, sub, static_cast<uint64_t>(lo * k), true, lgall, cv);
    for (int64_t r = lo; r < hi; ++r) samplers::dirichlet_from_log_gammas<T>(lgall + (r - lo) * k, k, out + r * k);
  });
}

// Shapes from which gamma_log_prob uses the Stirling form (its twin uses the same bound): below it the
// direct form's cancellation costs at most ~1e4 ulps of a ln a, about 1e-11 nats.
constexpr double kGammaLargeShape = 1e4;
constexpr double kHalfLog2PiD = 0.91893853320467274178032973640562;

namespace {
// Per-parameter constants of gamma_log_prob (lgamma / digamma are the cost; ln r once per parameter).
struct GammaLpConsts {
  std::vector<double> lg, dg, rem, lr;
  std::vector<unsigned char> large;  // shapes >= kGammaLargeShape (their elements take the Stirling form)
};

// The common case of an element (x > 0 normal finite, shape below kGammaLargeShape) over a run of
// consecutive parameters, compiled per vector path: the operations of the element loop below in its
// order (no contraction in this file), with lx from the chunk's vector log. Other elements get any
// value here and are recomputed by gamma_lp_element.
template <typename T>
__attribute__((always_inline)) inline void gamma_lp_run(const T* __restrict x, const double* __restrict lxv,
                                                        const T* __restrict alpha, const T* __restrict rate,
                                                        const double* __restrict lr, const double* __restrict lg,
                                                        const double* __restrict dg, int64_t run, T* __restrict lp,
                                                        T* __restrict ga, T* __restrict gr) {
  for (int64_t k = 0; k < run; ++k) {
    const double a = alpha[k], r = rate[k], xi = x[k], lx = lxv[k], y = r * xi;
    lp[k] = static_cast<T>(a * lr[k] + (a - 1.0) * lx - y - lg[k]);
    ga[k] = static_cast<T>(lr[k] + lx - dg[k]);
    gr[k] = static_cast<T>(a / r - xi);
  }
}

#define BG_GAMMA_LP_ISA(ATTR, NAME)                                                                          \
  template <typename T>                                                                                      \
  ATTR void gamma_lp_rows_##NAME(const T* x, const double* lxv, const T* alpha, const T* rate,                \
                                 const GammaLpConsts& c, int64_t lo, int64_t hi, int64_t batch, T* lp, T* ga, \
                                 T* gr) {                                                                    \
    by_runs(lo, hi, batch, [&](int64_t o, int64_t j, int64_t run) {                                          \
      const int64_t i = lo + o;                                                                              \
      gamma_lp_run<T>(x + i, lxv + o, alpha + j, rate + j, c.lr.data() + j, c.lg.data() + j, c.dg.data() + j, \
                      run, lp + i, ga + i, gr + i);                                                          \
    });                                                                                                      \
  }
#if BG_HAVE_X86
BG_GAMMA_LP_ISA(BG_AVX512, avx512)
BG_GAMMA_LP_ISA(BG_AVX2, avx2)
#endif
BG_GAMMA_LP_ISA(, base)
#undef BG_GAMMA_LP_ISA

// One element by the full rules: x <= 0 (or NaN), ln x by libm outside the vector log's range, and
// the Stirling form for large shapes.
template <typename T>
inline void gamma_lp_element(double xi, double a, double r, int64_t j, double lx_vec, const GammaLpConsts& c,
                             T& lp_out, T& ga_out, T& gr_out) {
  double lp, ga = 0, gr = 0;
  if (!(xi > 0)) {
    lp = (xi == 0 && a == 1.0) ? c.lr[j] : (xi == 0 && a < 1.0 ? std::numeric_limits<double>::infinity() : kNegInf);
  } else {
    const double lr = c.lr[j], y = r * xi;
    const double lx = xi >= std::numeric_limits<double>::min() && xi < HUGE_VAL ? lx_vec : std::log(xi);
    if (c.large[j] && y >= std::numeric_limits<double>::min() && y < HUGE_VAL) {
      // ln(y / a) - (y / a - 1): log1p near the mode, where the two cancel; y / a may underflow elsewhere
      const double u = y / a - 1.0;
      const double l = (u > -0.5 && u < 1.0) ? std::log1p(u) : std::log(y) - std::log(a);
      lp = a * (l - u) + c.rem[j] - lx;
    } else {
      lp = a * lr + (a - 1.0) * lx - y - c.lg[j];
    }
    ga = lr + lx - c.dg[j];
    gr = a / r - xi;
  }
  lp_out = static_cast<T>(lp);
  ga_out = static_cast<T>(ga);
  gr_out = static_cast<T>(gr);
}
}  // namespace

template <typename T>
void gamma_log_prob(const T* x, int64_t n_total, const T* alpha, const T* rate, int64_t batch, T* logp,
                    T* d_alpha, T* d_rate) {
  check_batch(n_total, batch);
  if (d_alpha == nullptr || d_rate == nullptr) throw std::invalid_argument("d_alpha and d_rate are required");
  GammaLpConsts c;
  for (auto* v : {&c.lg, &c.dg, &c.rem, &c.lr}) v->resize(static_cast<size_t>(batch));
  c.large.resize(static_cast<size_t>(batch));
  bool any_large = false;
  for (int64_t j = 0; j < batch; ++j) {
    const double a = alpha[j];
    c.lr[j] = std::log(static_cast<double>(rate[j]));
    c.lg[j] = special::lgamma(a);
    c.dg[j] = special::digamma(a);
    // large shapes: a ln r + (a-1) ln x and lgamma(a) are ~a ln a each and cancel to O(ln a); with y = r x,
    // u = y / a - 1 and Stirling, log p = a (log1p(u) - u) + ln(a) / 2 - ln(2 pi) / 2 - corr(a) - ln x
    c.large[j] = a >= kGammaLargeShape;
    any_large = any_large || c.large[j];
    c.rem[j] = c.large[j] ? 0.5 * std::log(a) - kHalfLog2PiD - special::lgamma_corr(a) : 0.0;
  }
  auto rows = gamma_lp_rows_base<T>;
#if BG_HAVE_X86
  if (simd::use_avx512()) rows = gamma_lp_rows_avx512<T>;
  else if (simd::use_avx2()) rows = gamma_lp_rows_avx2<T>;
#endif
  chunked(n_total, kChunk, [&](int64_t lo, int64_t hi) {
    // ln x of the chunk in one vector pass, then the common case per run of parameters (a libm log and
    // a branchy loop per element were slower than NumPy's formula); x outside the vector log's range
    // (not a positive normal finite number) takes 1 there, and its element the full rules
    const int64_t len = hi - lo;
    double *xd = scratch(0, len), *lxv = scratch(1, len);
    constexpr double kMin = std::numeric_limits<double>::min();
    bool odd = false;
    for (int64_t i = 0; i < len; ++i) {
      const double v = x[lo + i];
      const bool ok = v >= kMin && v < HUGE_VAL;
      xd[i] = ok ? v : 1.0;
      odd = odd || !ok;
    }
    simd::map_array<true>(xd, lxv, len);
    rows(x, lxv, alpha, rate, c, lo, hi, batch, logp, d_alpha, d_rate);
    if (!odd && !any_large) return;
    for (int64_t i = lo, j = lo % batch; i < hi; ++i) {
      const double xi = x[i];
      if (!(xi >= kMin && xi < HUGE_VAL) || c.large[j])
        gamma_lp_element<T>(xi, alpha[j], rate[j], j, lxv[i - lo], c, logp[i], d_alpha[i], d_rate[i]);
      if (++j == batch) j = 0;
    }
  });
}

#define BG_INSTANTIATE(T)                                                                                     \
  template void sample_locscale<T>(T*, int64_t, const T*, const T*, int64_t, LocScale, uint64_t, uint64_t);    \
  template void locscale_log_prob<T>(const T*, int64_t, const T*, const T*, int64_t, LocScale, T*, T*, T*);    \
  template void sample_gamma<T>(T*, int64_t, const T*, const T*, int64_t, uint64_t, uint64_t);                 \
  template void sample_beta<T>(T*, int64_t, const T*, const T*, int64_t, uint64_t, uint64_t);                  \
  template void sample_dirichlet<T>(T*, int64_t, const T*, int64_t, int64_t, uint64_t, uint64_t);              \
  template void gamma_log_prob<T>(const T*, int64_t, const T*, const T*, int64_t, T*, T*, T*);
BG_INSTANTIATE(float)
BG_INSTANTIATE(double)
#undef BG_INSTANTIATE

// ---------------------------------------------------------------- Poisson
// (layout and algorithms in distributions.hpp; per element samplers::poisson_draw)
namespace {
// u[i] = u01_f64(w0, w1) of block 0 of the sub-streams of elements lo .. lo + n - 1 (the uniform of
// poisson_draw's inversion), 16 or 8 blocks at a time: the scalar Philox block was most of a draw.
void poisson_uniforms_scalar(uint64_t seed, uint64_t sub, int64_t lo, int64_t n, double* u) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t w[4];
    philox::stream_block(seed, sub, static_cast<uint64_t>(lo + i) * philox::kSubstreamBlocks, w);
    u[i] = philox::u01_f64(w[0], w[1]);
  }
}
#if BG_HAVE_X86
static_assert(philox::kSubstreamBlocks == (1ull << 16), "an element's block 0 is element << 16");
BG_AVX512 void poisson_uniforms_avx512(uint64_t seed, uint64_t sub, int64_t lo, int64_t n, double* u) {
  const __m512i iota = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i b07 = _mm512_slli_epi64(_mm512_add_epi64(_mm512_set1_epi64(lo + i), iota), 16);
    const __m512i b815 = _mm512_add_epi64(b07, _mm512_set1_epi64(8ll << 16));
    __m512i blo, bhi, c[4];
    simd::split_counters16(b07, b815, blo, bhi);
    simd::philox16(seed, sub, blo, bhi, c);
    _mm512_storeu_pd(u + i, simd::u01x8d(_mm512_castsi512_si256(c[0]), _mm512_castsi512_si256(c[1])));
    _mm512_storeu_pd(u + i + 8,
                     simd::u01x8d(_mm512_extracti64x4_epi64(c[0], 1), _mm512_extracti64x4_epi64(c[1], 1)));
  }
  poisson_uniforms_scalar(seed, sub, lo + i, n - i, u + i);
}
BG_AVX2 void poisson_uniforms_avx2(uint64_t seed, uint64_t sub, int64_t lo, int64_t n, double* u) {
  const __m256i iota = _mm256_setr_epi64x(0, 1, 2, 3);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i b03 = _mm256_slli_epi64(_mm256_add_epi64(_mm256_set1_epi64x(lo + i), iota), 16);
    const __m256i b47 = _mm256_add_epi64(b03, _mm256_set1_epi64x(4ll << 16));
    __m256i blo, bhi, c[4];
    simd::split_counters(b03, b47, blo, bhi);
    simd::philox8(seed, sub, blo, bhi, c);
    _mm256_storeu_pd(u + i, simd::u01x4(_mm256_castsi256_si128(c[0]), _mm256_castsi256_si128(c[1])));
    _mm256_storeu_pd(u + i + 4,
                     simd::u01x4(_mm256_extracti128_si256(c[0], 1), _mm256_extracti128_si256(c[1], 1)));
  }
  poisson_uniforms_scalar(seed, sub, lo + i, n - i, u + i);
}
#endif
void poisson_uniforms(uint64_t seed, uint64_t sub, int64_t lo, int64_t n, double* u) {
#if BG_HAVE_X86
  if (simd::use_avx512()) return poisson_uniforms_avx512(seed, sub, lo, n, u);
  if (simd::use_avx2()) return poisson_uniforms_avx2(seed, sub, lo, n, u);
#endif
  poisson_uniforms_scalar(seed, sub, lo, n, u);
}
}  // namespace

template <typename T>
void sample_poisson(T* out, int64_t n_total, const T* rate, int64_t batch, uint64_t seed, uint64_t stream) {
  check_batch(n_total, batch);
  std::vector<samplers::PoissonConsts> cs(static_cast<size_t>(batch));
  for (int64_t j = 0; j < batch; ++j) {
    const double lam = static_cast<double>(rate[j]);
    if (!(lam >= 0.0 && lam <= samplers::kPoissonMaxRate))  // NaN fails too
      throw std::invalid_argument("rate must be finite and in [0, 1e10]; index " + std::to_string(j) + " is not");
    cs[static_cast<size_t>(j)] = samplers::poisson_consts(lam);
  }
  // When every rate is below kPoissonPtrsMin: inversion's partial sums F(0), F(1), ... per rate, formed
  // as poisson_draw's search forms them (p *= lam / x; F + p) up to the first term that no longer moves
  // F; a draw is then the number of them below its u (the search's x), the uniforms from the vector
  // Philox, no division per step per draw (10^6 draws of rates 0.5-9.5: 32 -> 19 ms at one thread). With
  // PTRS rates in the batch the same tables made the whole batch slower (40 -> 51 ms at rates 0.5-20,
  // cause not found): those batches keep poisson_draw per element.
  const bool all_inversion = std::all_of(cs.begin(), cs.end(), [](const samplers::PoissonConsts& c) {
    return c.lam < samplers::kPoissonPtrsMin;
  });
  std::vector<double> cdf;  // the rates' partial sums one after another: rate j's are [first[j], first[j + 1])
  std::vector<int64_t> first(all_inversion ? static_cast<size_t>(batch) + 1 : 0);
  for (int64_t j = 0; j < static_cast<int64_t>(first.size()) - 1; ++j) {
    const samplers::PoissonConsts& c = cs[static_cast<size_t>(j)];
    first[static_cast<size_t>(j)] = static_cast<int64_t>(cdf.size());
    double x = 0.0, p = c.p0, F = c.p0;
    cdf.push_back(F);
    for (;;) {
      x += 1.0;
      p *= c.lam / x;
      const double Fn = F + p;
      if (Fn == F) break;
      F = Fn;
      cdf.push_back(F);
    }
  }
  if (all_inversion) first[static_cast<size_t>(batch)] = static_cast<int64_t>(cdf.size());
  const uint64_t sub = stream | philox::kSubstreamBit;
  chunked(n_total, kChunk, [&](int64_t lo, int64_t hi) {
    if (!all_inversion) {  // poisson_draw per element: with PTRS rates in the batch the tables ran slower
      int64_t j = lo % batch;
      for (int64_t i = lo; i < hi; ++i) {
        const samplers::PoissonConsts& c = cs[static_cast<size_t>(j)];
        out[i] = static_cast<T>(samplers::poisson_draw(c, seed, sub, static_cast<uint64_t>(i)));
        if (++j == batch) j = 0;
      }
      return;
    }
    double ub[kChunk];
    poisson_uniforms(seed, sub, lo, hi - lo, ub);
    for (int64_t i = lo, j = lo % batch; i < hi; ++i, j = j + 1 == batch ? 0 : j + 1) {
      const size_t js = static_cast<size_t>(j);
      // inversion: the uniform poisson_draw reads, then the count of partial sums below it
      const double u = ub[i - lo];
      const double* F = cdf.data() + first[js];
      const int64_t m = first[js + 1] - first[js];
      int64_t x = 0;
      while (x < m && F[x] < u) ++x;
      out[i] = static_cast<T>(x);
    }
  });
}

template void sample_poisson<float>(float*, int64_t, const float*, int64_t, uint64_t, uint64_t);
template void sample_poisson<double>(double*, int64_t, const double*, int64_t, uint64_t, uint64_t);

template <typename T>
void categorical_from_uniform(const T* u, int64_t n_total, const T* cdf, int64_t batch, int64_t k, int64_t* out) {
  check_batch(n_total, batch);
  if (k < 1) throw std::invalid_argument("a Categorical needs at least one class");
  const int64_t m = k - 1;
  chunked(n_total, kChunk, [&](int64_t lo, int64_t hi) {
    by_runs(lo, hi, batch, [&](int64_t o, int64_t j, int64_t run) {
      const T* uu = u + lo + o;
      int64_t* oo = out + lo + o;
      if (m <= 32) {
        for (int64_t t = 0; t < run; ++t) {
          const T* row = cdf + (j + t) * m;
          int64_t c = 0;
          for (int64_t q = 0; q < m; ++q) c += row[q] < uu[t];
          oo[t] = c;
        }
      } else {
        for (int64_t t = 0; t < run; ++t) {
          const T* row = cdf + (j + t) * m;
          oo[t] = std::lower_bound(row, row + m, uu[t]) - row;  // the first entry >= u: the count below it
        }
      }
    });
  });
}
template void categorical_from_uniform<float>(const float*, int64_t, const float*, int64_t, int64_t, int64_t*);
template void categorical_from_uniform<double>(const double*, int64_t, const double*, int64_t, int64_t, int64_t*);

}  // namespace bayesgrad
