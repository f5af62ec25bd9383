// Samplers and log-density kernels (the conventions are in distributions.hpp).
#include "bayesgrad/distributions.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "bayesgrad/parallel.hpp"
#include "bayesgrad/philox.hpp"
#include "bayesgrad/random.hpp"
#include "bayesgrad/samplers.hpp"
#include "bayesgrad/simd_math.hpp"
#include "bayesgrad/special.hpp"
#include "gamma_run.hpp"

namespace bayesgrad {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr int64_t kChunk = 4096;           // elements per parallel chunk (fixed)

template <typename F>
void chunked(int64_t n, int64_t chunk, F f) {
  parallel_chunks((n + chunk - 1) / chunk, [&](int64_t ch) {
    const int64_t lo = ch * chunk, hi = lo + chunk < n ? lo + chunk : n;
    f(lo, hi);
  });
}

void check_batch(int64_t n_total, int64_t batch) {
  if (batch <= 0 || n_total % batch != 0)
    throw std::invalid_argument("output size must be a multiple of the parameters' batch size");
}

using samplers::gamma_draw;  // the scalar loop, shared with the CUDA kernels

// Per-thread scratch of the gamma-family chunks (slot 0: shapes, 1: draws),
// reused: zeroing fresh vectors per 4096-element chunk cost a tenth of a draw.
double* scratch(int slot, int64_t n) {
  thread_local std::vector<double> buf[3];
  if (buf[slot].size() < static_cast<size_t>(n)) buf[slot].resize(static_cast<size_t>(n));
  return buf[slot].data();
}

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
    if (batch == 1) {
      const T m = loc[0], s = scale[0];
      for (int64_t i = lo; i < hi; ++i) out[i] = samplers::locscale_transform<T>(fam, m, s, out[i]);
      return;
    }
    // runs of consecutive parameters (a row of the batch, or the part of one in this chunk)
    for (int64_t i = lo, j = lo % batch; i < hi; j = 0) {
      const int64_t len = std::min(hi - i, batch - j);
      T* o = out + i;
      const T *m = loc + j, *s = scale + j;
      if (linear)
        for (int64_t t = 0; t < len; ++t) o[t] = m[t] + s[t] * o[t];
      else
        for (int64_t t = 0; t < len; ++t) o[t] = samplers::locscale_transform<T>(fam, m[t], s[t], o[t]);
      i += len;
    }
  });
}

template <typename T>
void locscale_log_prob(const T* x, int64_t n_total, const T* loc, const T* scale, int64_t batch, LocScale fam,
                       T* logp, T* d_loc, T* d_scale) {
  check_batch(n_total, batch);
  chunked(n_total, kChunk, [&](int64_t lo, int64_t hi) {
    int64_t j = lo % batch;
    for (int64_t i = lo; i < hi; ++i) {
      double gl, gs;
      const double lp = samplers::locscale_log_prob(fam, x[i], loc[j], scale[j], gl, gs);
      logp[i] = static_cast<T>(lp);
      if (d_loc) d_loc[i] = static_cast<T>(gl);
      if (d_scale) d_scale[i] = static_cast<T>(gs);
      if (++j == batch) j = 0;
    }
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

template <typename T>
void gamma_log_prob(const T* x, int64_t n_total, const T* alpha, const T* rate, int64_t batch, T* logp,
                    T* d_alpha, T* d_rate) {
  check_batch(n_total, batch);
  // Per-parameter constants once per batch element (lgamma/digamma are the cost).
  std::vector<double> lg(static_cast<size_t>(batch)), dg(static_cast<size_t>(batch)), rem(static_cast<size_t>(batch));
  for (int64_t j = 0; j < batch; ++j) {
    const double a = alpha[j];
    lg[j] = special::lgamma(a);
    dg[j] = special::digamma(a);
    // large shapes: a ln r + (a-1) ln x and lgamma(a) are ~a ln a each and cancel to O(ln a); with y = r x,
    // u = y / a - 1 and Stirling, log p = a (log1p(u) - u) + ln(a) / 2 - ln(2 pi) / 2 - corr(a) - ln x
    rem[j] = a >= kGammaLargeShape ? 0.5 * std::log(a) - kHalfLog2PiD - special::lgamma_corr(a) : 0.0;
  }
  chunked(n_total, kChunk, [&](int64_t lo, int64_t hi) {
    int64_t j = lo % batch;
    for (int64_t i = lo; i < hi; ++i) {
      const double a = alpha[j], r = rate[j], xi = x[i];
      double lp, ga = 0, gr = 0;
      if (!(xi > 0)) {
        lp = (xi == 0 && a == 1.0) ? std::log(r) : (xi == 0 && a < 1.0 ? std::numeric_limits<double>::infinity()
                                                                          : kNegInf);
      } else {
        const double lr = std::log(r), lx = std::log(xi), y = r * xi;
        if (a >= kGammaLargeShape && y >= std::numeric_limits<double>::min() && y < HUGE_VAL) {
          // ln(y / a) - (y / a - 1): log1p near the mode, where the two cancel; y / a may underflow elsewhere
          const double u = y / a - 1.0;
          const double l = (u > -0.5 && u < 1.0) ? std::log1p(u) : std::log(y) - std::log(a);
          lp = a * (l - u) + rem[j] - lx;
        } else {
          lp = a * lr + (a - 1.0) * lx - y - lg[j];
        }
        ga = lr + lx - dg[j];
        gr = a / r - xi;
      }
      logp[i] = static_cast<T>(lp);
      if (d_alpha) d_alpha[i] = static_cast<T>(ga);
      if (d_rate) d_rate[i] = static_cast<T>(gr);
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
  const uint64_t sub = stream | philox::kSubstreamBit;
  chunked(n_total, kChunk, [&](int64_t lo, int64_t hi) {
    int64_t j = lo % batch;
    for (int64_t i = lo; i < hi; ++i) {
      out[i] = static_cast<T>(samplers::poisson_draw(cs[static_cast<size_t>(j)], seed, sub, static_cast<uint64_t>(i)));
      if (++j == batch) j = 0;
    }
  });
}

template void sample_poisson<float>(float*, int64_t, const float*, int64_t, uint64_t, uint64_t);
template void sample_poisson<double>(double*, int64_t, const double*, int64_t, uint64_t, uint64_t);

}  // namespace bayesgrad
