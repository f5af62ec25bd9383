// Per-element work of the samplers (and the location-scale log densities), shared by the C++ core (random.cpp,
// distributions.cpp: the scalar reference path) and the CUDA kernels
// (cuda/src/*.cu). The word layouts are those of docs/design.md "RNG" and
// distributions.hpp; the AVX paths (philox_simd.hpp, simd_math.hpp) compute
// the same quantities with vector math and are checked against these.
#pragma once
#include <cfloat>
#include <cmath>
#include <cstdint>

#include "bayesgrad/codes.hpp"
#include "bayesgrad/hd.hpp"
#include "bayesgrad/philox.hpp"

namespace bayesgrad {
namespace samplers {

constexpr double kTwoPi = 6.283185307179586476925286766559;
// Marsaglia-Tsang iterations per gamma element: blocks 2k and 2k+1 belong to
// iteration k, 2^16 blocks per sub-stream (distributions.hpp says why the cap
// is never reached in practice).
constexpr uint32_t kGammaMaxIter = 1u << 15;

// Elements of type T one Philox block gives (float32: 4 words, float64: 2 pairs).
template <typename T>
BG_HD constexpr int64_t per_block() { return sizeof(T) == 4 ? 4 : 2; }

// Box-Muller in double from two uniforms: the cosine branch for even
// elements, the sine branch for odd ones.
BG_HD double box_muller(double u1, double u2, bool odd) {
  const double r = std::sqrt(-2.0 * std::log(u1));
  return odd ? r * std::sin(kTwoPi * u2) : r * std::cos(kTwoPi * u2);
}

// Element q (< per_block<T>()) of block w as a uniform.
template <typename T>
BG_HD T uniform_element(const uint32_t w[4], int64_t q);
template <>
BG_HD float uniform_element<float>(const uint32_t w[4], int64_t q) {
  return philox::u01_f32(w[q]);
}
template <>
BG_HD double uniform_element<double>(const uint32_t w[4], int64_t q) {
  return philox::u01_f64(w[2 * q], w[2 * q + 1]);
}

// Element q of block w as a standard normal: float32 normals 2k, 2k+1 from
// words 2k, 2k+1; float64 normals 0, 1 from the pairs (w0, w1), (w2, w3).
template <typename T>
BG_HD T normal_element(const uint32_t w[4], int64_t q);
template <>
BG_HD float normal_element<float>(const uint32_t w[4], int64_t q) {
  const int64_t p = q >> 1;  // pair within the block
  return static_cast<float>(
      box_muller(static_cast<double>(philox::u01_f32(w[2 * p])), static_cast<double>(philox::u01_f32(w[2 * p + 1])),
                 (q & 1) != 0));
}
template <>
BG_HD double normal_element<double>(const uint32_t w[4], int64_t q) {
  return box_muller(philox::u01_f64(w[0], w[1]), philox::u01_f64(w[2], w[3]), (q & 1) != 0);
}

// Whether a location-scale family starts from a normal (else from a uniform).
BG_HD bool locscale_uses_normal(codes::LocScaleFamily fam) {
  return fam == codes::LocScaleFamily::kNormal || fam == codes::LocScaleFamily::kLognormal;
}

// One location-scale draw from the base element e (a standard normal or a
// uniform, per locscale_uses_normal); distributions.hpp lists the families.
template <typename T>
BG_HD T locscale_transform(codes::LocScaleFamily fam, T m, T s, T e) {
  using F = codes::LocScaleFamily;
  switch (fam) {
    case F::kNormal: return m + s * e;
    case F::kLognormal: {
      // clamped into (0, inf) like the Gamma draws: exp below the smallest normal number of T (loc -800)
      // would round to 0 or a subnormal, where log p is -inf or has lost its digits
      const T x = static_cast<T>(std::exp(static_cast<double>(m + s * e)));
      const T tiny = sizeof(T) == 4 ? static_cast<T>(FLT_MIN) : static_cast<T>(DBL_MIN);
      return x < tiny ? tiny : x;
    }
    case F::kUniform: return m + s * e;
    case F::kExponential: return m + s * static_cast<T>(-std::log(static_cast<double>(e)));
    case F::kLaplace: {
      // ln 2e below 1/2, -ln 2(1 - e) above: logs (the vector paths have no log1p) of exact arguments,
      // the values of log1p(+-2 (e - 1/2)) to rounding
      const double u = static_cast<double>(e);
      const double b = u > 0.5 ? -std::log(2.0 * (1.0 - u)) : std::log(2.0 * u);
      return m + s * static_cast<T>(b);
    }
    case F::kGumbel: return m + s * static_cast<T>(-std::log(-std::log(static_cast<double>(e))));
    case F::kLogistic: {
      const double u = static_cast<double>(e);  // (ln(1 - u): 1 - u within 2^-53, ln's absolute error)
      return m + s * static_cast<T>(std::log(u) - std::log(1.0 - u));
    }
  }
  return e;  // unreachable: the family was checked at the boundary
}

// A uniform in (0, 1) from one 32-bit word, in double: (w + 1/2) 2^-32 (exact).
BG_HD double u01_word(uint32_t w) { return (static_cast<double>(w) + 0.5) * (1.0 / 4294967296.0); }

// One Marsaglia-Tsang Gamma(alpha, 1) draw of gamma element `element` of the
// sub-stream `sub` (= stream | 2^63); returns X, or ln X when log_out.
// Iterations before k_first are skipped (the AVX paths have rejected them).
// Iteration k reads one block (2k: u1 from two words, the angle u2 and the
// acceptance uniform ua from one word each); only the accepted iteration of a
// shape below 1 reads a second block (2k+1: the boost uniform), so the SIMD
// paths spend one Philox block per draw. The word layout is documented in
// distributions.hpp and mirrored by the twin.
BG_HD double gamma_draw(double alpha, uint64_t seed, uint64_t sub, uint64_t element, bool log_out,
                        uint32_t k_first = 0) {
  const bool boost = alpha < 1.0;
  const double d = (boost ? alpha + 1.0 : alpha) - 1.0 / 3.0;
  const double c = 1.0 / std::sqrt(9.0 * d);
  const uint64_t base = element * philox::kSubstreamBlocks;
  uint32_t w[4];
  for (uint32_t k = k_first; k < kGammaMaxIter; ++k) {
    philox::stream_block(seed, sub, base + 2 * static_cast<uint64_t>(k), w);
    const double u1 = philox::u01_f64(w[0], w[1]);
    const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u01_word(w[2]));
    const double t = 1.0 + c * z;
    if (t <= 0.0) continue;
    const double v = t * t * t;
    const double ua = u01_word(w[3]);
    const double z2 = z * z;
    if (!(ua < 1.0 - 0.0331 * (z2 * z2)) && !(std::log(ua) < 0.5 * z2 + d * (1.0 - v + std::log(v))))
      continue;
    const double x = d * v;
    if (!boost) return log_out ? std::log(x) : x;
    philox::stream_block(seed, sub, base + 2 * static_cast<uint64_t>(k) + 1, w);
    const double lb = std::log(philox::u01_f64(w[0], w[1])) / alpha;
    return log_out ? std::log(x) + lb : x * std::exp(lb);
  }
  return log_out ? std::log(d) : d;
}

// Beta draw from ln G_a and ln G_b: 1 / (1 + exp(lb - la)), or the
// complementary form when la < lb, stable for tiny shapes.
BG_HD double beta_from_log_gammas(double la, double lb) {
  if (la >= lb) return 1.0 / (1.0 + std::exp(lb - la));
  const double r = std::exp(la - lb);
  return r / (1.0 + r);
}

// One Dirichlet row from its K log-gamma draws lg (overwritten with
// exp(lg - max)): out[c] = exp(lg[c] - max) / sum, normalised in log space.
template <typename T>
BG_HD void dirichlet_from_log_gammas(double* lg, int64_t k, T* out) {
  double mx = -HUGE_VAL;
  for (int64_t c = 0; c < k; ++c)
    if (lg[c] > mx) mx = lg[c];
  double s = 0.0;
  for (int64_t c = 0; c < k; ++c) {
    lg[c] = std::exp(lg[c] - mx);
    s += lg[c];
  }
  for (int64_t c = 0; c < k; ++c) out[c] = static_cast<T>(lg[c] / s);
}

// log p(x) of a location-scale family at x with location m and scale s, in
// double; gl, gs receive d/dm and d/ds (0 outside the support, where the
// density is 0; inside it they are kept where log p overflows to -inf). The families are those of locscale_transform.
BG_HD double locscale_log_prob(codes::LocScaleFamily fam, double xi, double m, double s, double& gl, double& gs) {
  using F = codes::LocScaleFamily;
  constexpr double kHalfLog2Pi = 0.91893853320467274178032973640562;
  const double neg_inf = -HUGE_VAL;
  const double ls = std::log(s);
  double lp = 0;
  gl = 0;
  gs = 0;
  switch (fam) {
    case F::kNormal:
    case F::kLognormal: {
      double y = xi;
      double jac = 0.0;
      if (fam == F::kLognormal) {
        if (!(xi > 0)) { lp = neg_inf; break; }
        y = std::log(xi);
        jac = y;
      }
      const double z = (y - m) / s;
      lp = -0.5 * z * z - ls - kHalfLog2Pi - jac;
      gl = z / s;
      gs = (z * z - 1.0) / s;
      break;
    }
    case F::kUniform:
      if (xi < m || xi > m + s) { lp = neg_inf; break; }
      lp = -ls;
      gs = -1.0 / s;
      break;
    case F::kExponential: {
      if (xi < m) { lp = neg_inf; break; }
      const double z = (xi - m) / s;
      lp = -z - ls;
      gl = 1.0 / s;
      gs = (z - 1.0) / s;
      break;
    }
    case F::kLaplace: {
      const double z = (xi - m) / s, a = std::fabs(z);
      lp = -a - ls - 0.69314718055994530942;
      gl = (z > 0 ? 1.0 : (z < 0 ? -1.0 : 0.0)) / s;
      gs = (a - 1.0) / s;
      break;
    }
    case F::kGumbel: {
      const double z = (xi - m) / s, e = std::exp(-z);
      if (e == HUGE_VAL) {  // z below about -709 (or -inf): e dominates; z + e and z - z e would be inf - inf
        lp = neg_inf;
        gl = neg_inf;
        gs = HUGE_VAL;
        break;
      }
      lp = -(z + e) - ls;
      gl = (1.0 - e) / s;
      gs = (z - z * e - 1.0) / s;
      break;
    }
    case F::kLogistic: {
      const double z = (xi - m) / s, a = std::fabs(z);
      lp = -a - 2.0 * std::log1p(std::exp(-a)) - ls;
      const double th = std::tanh(0.5 * z);
      gl = th / s;
      gs = (z * th - 1.0) / s;
      break;
    }
  }
  // The gradients are 0 only outside the support (the branches above): inside it a log-density that
  // overflows to -inf (z * z = inf far in a tail) still has its finite or infinite exact gradients.
  return lp;
}


// ---------------------------------------------------------------- Poisson
// Poisson(lam) draws (layout and algorithms in distributions.hpp): inversion by
// sequential search from 0 below kPoissonPtrsMin, Hoermann's PTRS at and above it.
constexpr double kPoissonPtrsMin = 10.0;
// Rates above this are refused: PTRS's acceptance test forms k ln lam - lam - ln k!
// in float64, whose rounding (about lam ln lam 2^-52) stays below 1e-4 only up to here.
constexpr double kPoissonMaxRate = 1e10;
// PTRS rounds per element: one block each, a whole sub-stream; the acceptance
// rate is above 0.9 for lam >= 10, so the cap (which returns floor(lam)) is never met.
constexpr uint32_t kPoissonMaxIter = 1u << 16;

// The per-rate constants, computed once per batch element.
struct PoissonConsts {
  double lam;     // the rate
  double p0;      // exp(-lam), P(X = 0): inversion's first term
  double loglam;  // PTRS from here on (set only when lam >= kPoissonPtrsMin)
  double b, a;    // the hat's b = 0.931 + 2.53 sqrt(lam), a = -0.059 + 0.02483 b
  double lia;     // ln(1 / alpha) = ln(1.1239 + 1.1328 / (b - 3.4))
  double vr;      // the quick-acceptance bound 0.9277 - 3.6224 / (b - 2)
};

BG_HD PoissonConsts poisson_consts(double lam) {
  PoissonConsts c{lam, std::exp(-lam), 0.0, 0.0, 0.0, 0.0, 0.0};
  if (lam >= kPoissonPtrsMin) {
    c.loglam = std::log(lam);
    c.b = 0.931 + 2.53 * std::sqrt(lam);
    c.a = -0.059 + 0.02483 * c.b;
    c.lia = std::log(1.1239 + 1.1328 / (c.b - 3.4));
    c.vr = 0.9277 - 3.6224 / (c.b - 2.0);
  }
  return c;
}

// ln k! for an integral k >= 0 (lgamma_r on the host: glibc's lgamma writes the
// global signgam, a data race between the pool's threads).
BG_HD double log_factorial(double k) {
#ifdef __CUDA_ARCH__
  return lgamma(k + 1.0);
#else
  int sign;
  return lgamma_r(k + 1.0, &sign);
#endif
}

// One Poisson draw of element `element` of the sub-stream `sub` (= stream | 2^63).
BG_HD double poisson_draw(const PoissonConsts& c, uint64_t seed, uint64_t sub, uint64_t element) {
  const uint64_t base = element * philox::kSubstreamBlocks;
  uint32_t w[4];
  if (c.lam < kPoissonPtrsMin) {
    // Inversion: the smallest x with u <= F(x), F summed term by term; a term
    // too small to move F ends the search (u is then within rounding of 1).
    philox::stream_block(seed, sub, base, w);
    const double u = philox::u01_f64(w[0], w[1]);
    double x = 0.0, p = c.p0, F = c.p0;
    while (u > F) {
      x += 1.0;
      p *= c.lam / x;
      const double Fn = F + p;
      if (Fn == F) break;
      F = Fn;
    }
    return x;
  }
  // PTRS (Hoermann 1993): round j reads block j, U = u01(w0, w1) - 1/2, V = u01(w2, w3).
  for (uint32_t j = 0; j < kPoissonMaxIter; ++j) {
    philox::stream_block(seed, sub, base + j, w);
    const double U = philox::u01_f64(w[0], w[1]) - 0.5;
    const double V = philox::u01_f64(w[2], w[3]);
    const double us = 0.5 - std::fabs(U);
    const double k = std::floor((2.0 * c.a / us + c.b) * U + c.lam + 0.43);
    if (us >= 0.07 && V <= c.vr) return k;
    if (k < 0.0 || (us < 0.013 && V > us)) continue;
    const double lhs = std::log(V) + c.lia - std::log(c.a / (us * us) + c.b);
    if (lhs <= -c.lam + k * c.loglam - log_factorial(k)) return k;
  }
  return std::floor(c.lam);
}

}  // namespace samplers
}  // namespace bayesgrad
