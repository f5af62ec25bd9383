// Special functions (see special.hpp for the methods and their ranges).
#include "bayesgrad/special.hpp"

#include <cmath>
#include <limits>

#include "bayesgrad/parallel.hpp"

namespace bayesgrad {
namespace special {

namespace {

constexpr double kEps = 1e-16;
constexpr double kTiny = 1e-300;
constexpr int kMaxIter = 100000;  // series/CF terms; convergence needs O(sqrt(a)) for large a
constexpr double kLargeShape = 1e8;  // from here the gamma functions use large-a asymptotics
constexpr double kHalfLog2Pi = 0.91893853320467274178032973640562;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Forward-mode dual number with N derivative components.
template <int N>
struct Dual {
  double v;
  double d[N];
};
template <int N>
Dual<N> constant(double v) {
  Dual<N> r;
  r.v = v;
  for (int i = 0; i < N; ++i) r.d[i] = 0.0;
  return r;
}
template <int N>
Dual<N> operator+(const Dual<N>& a, const Dual<N>& b) {
  Dual<N> r;
  r.v = a.v + b.v;
  for (int i = 0; i < N; ++i) r.d[i] = a.d[i] + b.d[i];
  return r;
}
template <int N>
Dual<N> operator+(const Dual<N>& a, double b) {
  Dual<N> r = a;
  r.v += b;
  return r;
}
template <int N>
Dual<N> operator*(const Dual<N>& a, const Dual<N>& b) {
  Dual<N> r;
  r.v = a.v * b.v;
  for (int i = 0; i < N; ++i) r.d[i] = a.d[i] * b.v + a.v * b.d[i];
  return r;
}
template <int N>
Dual<N> operator*(const Dual<N>& a, double b) {
  Dual<N> r;
  r.v = a.v * b;
  for (int i = 0; i < N; ++i) r.d[i] = a.d[i] * b;
  return r;
}
template <int N>
Dual<N> inv(const Dual<N>& a) {
  Dual<N> r;
  r.v = 1.0 / a.v;
  const double s = -r.v * r.v;
  for (int i = 0; i < N; ++i) r.d[i] = a.d[i] * s;
  return r;
}
template <int N>
Dual<N> operator/(const Dual<N>& a, const Dual<N>& b) {
  return a * inv(b);
}
// Keep Lentz's denominators away from zero (the derivative part is kept).
template <int N>
void guard(Dual<N>& a) {
  if (std::fabs(a.v) < kTiny) a.v = kTiny;
}

// Correction term of Stirling's series: log Gamma(z) - ((z-1/2) ln z - z + ln(2 pi)/2), z >= 8.
double stirling_corr(double z) {
  const double r = 1.0 / z, r2 = r * r;
  return r * (1.0 / 12 + r2 * (-1.0 / 360 + r2 * (1.0 / 1260 + r2 * (-1.0 / 1680 + r2 * (
      1.0 / 1188 + r2 * (-691.0 / 360360 + r2 * (1.0 / 156)))))));
}
// Stirling series of log Gamma(z) for z >= 8 (error < 1e-16).
double lgamma_stirling(double z) { return (z - 0.5) * std::log(z) - z + kHalfLog2Pi + stirling_corr(z); }

// Series part of P(a, x): S = sum_n x^n / ((a+1)...(a+n)) as a dual in a.
Dual<1> gamma_series(double a, double x) {
  Dual<1> term = constant<1>(1.0), sum = constant<1>(1.0);
  Dual<1> ap = constant<1>(a);
  ap.d[0] = 1.0;
  for (int n = 1; n < kMaxIter; ++n) {
    ap = ap + 1.0;
    term = term * (inv(ap) * x);
    sum = sum + term;
    if (std::fabs(term.v) <= kEps * std::fabs(sum.v) && std::fabs(term.d[0]) <= kEps * std::fabs(sum.d[0]))
      break;
  }
  return sum;
}

// Continued fraction part of Q(a, x) (modified Lentz) as a dual in a:
// Q = x^a e^-x / Gamma(a) * h.
Dual<1> gamma_cf(double a, double x) {
  Dual<1> b = constant<1>(x + 1.0 - a);
  b.d[0] = -1.0;
  Dual<1> c = constant<1>(1.0 / kTiny);
  Dual<1> d = b;
  guard(d);
  d = inv(d);
  Dual<1> h = d;
  for (int i = 1; i < kMaxIter; ++i) {
    Dual<1> an = constant<1>(-i * (i - a));
    an.d[0] = i;
    b = b + 2.0;
    d = an * d + b;
    guard(d);
    c = b + an / c;
    guard(c);
    d = inv(d);
    const Dual<1> del = d * c;
    h = h * del;
    if (std::fabs(del.v - 1.0) <= kEps && std::fabs(del.d[0]) <= kEps * std::fabs(h.d[0] / h.v)) break;
  }
  return h;
}

// Beta continued fraction: I_x(a, b) = x^a (1-x)^b / (a B(a, b)) * h, dual in (a, b).
Dual<2> beta_cf(double a, double b, double x) {
  Dual<2> A = constant<2>(a), B = constant<2>(b);
  A.d[0] = 1.0;
  B.d[1] = 1.0;
  const Dual<2> qab = A + B, qap = A + 1.0, qam = A + (-1.0);
  Dual<2> c = constant<2>(1.0);
  Dual<2> d = constant<2>(1.0) + (qab * inv(qap)) * (-x);
  guard(d);
  d = inv(d);
  Dual<2> h = d;
  for (int m = 1; m < kMaxIter; ++m) {
    const double m2 = 2.0 * m;
    Dual<2> aa = (B + (-double(m))) * (m * x) / ((qam + m2) * (A + m2));
    d = constant<2>(1.0) + aa * d;
    guard(d);
    c = constant<2>(1.0) + aa / c;
    guard(c);
    d = inv(d);
    h = h * d * c;
    aa = (A + double(m)) * (qab + double(m)) * (-x) / ((A + m2) * (qap + m2));
    d = constant<2>(1.0) + aa * d;
    guard(d);
    c = constant<2>(1.0) + aa / c;
    guard(c);
    d = inv(d);
    const Dual<2> del = d * c;
    h = h * del;
    if (std::fabs(del.v - 1.0) <= kEps && std::fabs(del.d[0]) <= kEps * std::fabs(h.d[0] / h.v) &&
        std::fabs(del.d[1]) <= kEps * std::fabs(h.d[1] / h.v))
      break;
  }
  return h;
}

// log B(a, b) without the cancellation of large log-gammas: the Stirling
// main terms are combined analytically when an argument is >= 8.
double lbeta(double a, double b) {
  const double s = a < b ? a : b, l = a < b ? b : a;
  if (s >= 8.0) {
    // (s-1/2) ln s + (l-1/2) ln l - (s+l-1/2) ln(s+l)
    //   = -s ln(1 + l/s) - l ln(1 + s/l) + (ln(1 + l/s) - ln l) / 2
    const double q = std::log1p(l / s);
    return kHalfLog2Pi - s * q - l * std::log1p(s / l) + 0.5 * (q - std::log(l)) + stirling_corr(s) +
           stirling_corr(l) - stirling_corr(s + l);
  }
  if (l >= 8.0)
    return lgamma(s) - (l - 0.5) * std::log1p(s / l) - s * std::log(s + l) + s + stirling_corr(l) -
           stirling_corr(s + l);
  return lgamma(a) + lgamma(b) - lgamma(a + b);
}

// I_x(a, b) and R = (dI/da, dI/db) / p(x) without the swap (x below the CF's switch point).
double beta_direct(double a, double b, double x, double* ra, double* rb) {
  const Dual<2> h = beta_cf(a, b, x);
  const double lx = std::log(x), l1x = std::log1p(-x);
  if (ra) {
    const double pab = digamma(a + b);
    const double k = x * (1.0 - x) / a;  // prefactor / density
    // -1/a - psi(a) = -psi(a + 1): the two cancel to O(1) from ~1/a (tiny a: StudentT's df = 1e-300)
    *ra = k * (h.v * (lx - digamma(a + 1.0) + pab) + h.d[0]);
    *rb = k * (h.v * (l1x - digamma(b) + pab) + h.d[1]);
  }
  return std::exp(a * lx + b * l1x - std::log(a) - lbeta(a, b)) * h.v;
}

bool beta_swap(double a, double b, double x) { return x > (a + 1.0) / (a + b + 2.0); }

template <typename F>
void elementwise(int64_t n, F f) {
  constexpr int64_t kChunk = 1024;
  parallel_chunks((n + kChunk - 1) / kChunk, [&](int64_t ch) {
    const int64_t lo = ch * kChunk, hi = lo + kChunk < n ? lo + kChunk : n;
    for (int64_t i = lo; i < hi; ++i) f(i);
  });
}

}  // namespace

double lgamma_corr(double z) { return stirling_corr(z); }

double lgamma(double x) {
  if (!(x > 0)) return x == 0 ? std::numeric_limits<double>::infinity() : kNaN;
  if (x >= 8.0) return lgamma_stirling(x);
  // Shift up: Gamma(x) = Gamma(x + k) / (x (x+1) ... (x+k-1)).
  double p = 1.0, z = x;
  while (z < 8.0) {
    p *= z;
    z += 1.0;
  }
  return lgamma_stirling(z) - std::log(p);
}

double digamma(double x) {
  if (!(x > 0)) return kNaN;
  double acc = 0.0;
  while (x < 10.0) {
    acc -= 1.0 / x;
    x += 1.0;
  }
  const double r = 1.0 / x, r2 = r * r;
  const double s = r2 * (1.0 / 12 - r2 * (1.0 / 120 - r2 * (1.0 / 252 - r2 * (1.0 / 240 - r2 * (
      1.0 / 132 - r2 * (691.0 / 32760 - r2 * (1.0 / 12)))))));
  return acc + std::log(x) - 0.5 * r - s;
}

double trigamma(double x) {
  if (!(x > 0)) return kNaN;
  double acc = 0.0;
  while (x < 10.0) {
    acc += 1.0 / (x * x);
    x += 1.0;
  }
  const double r = 1.0 / x, r2 = r * r;
  const double s = r * (1.0 + r * (0.5 + r * (1.0 / 6 - r2 * (1.0 / 30 - r2 * (1.0 / 42 - r2 * (
      1.0 / 30 - r2 * (5.0 / 66 - r2 * (691.0 / 2730 - r2 * (7.0 / 6)))))))));
  return acc + s;
}

// t - log(1 + t) >= 0 (half of Temme's eta^2): a series below |t| = 0.1, where the difference cancels
// (t ~ z / sqrt(a) at a = 1e10 lost 4e-11 of it, and Q as much).
static double half_eta2(double t) {
  if (std::fabs(t) >= 0.1) return t - std::log1p(t);
  double sum = 0.0, term = t * t;
  for (int k = 2; k < 60; ++k) {
    const double add = (k % 2 == 0 ? term : -term) / k;
    sum += add;
    if (std::fabs(add) <= 1e-17 * std::fabs(sum)) break;
    term *= t;
  }
  return sum;
}

// P(a, x) (upper = false) or Q(a, x) for a >= kLargeShape by Temme's uniform expansion (DLMF 8.12):
// Q = erfc(eta sqrt(a / 2)) / 2 + R, P = erfc(-eta sqrt(a / 2)) / 2 - R, R = e^{-a eta^2 / 2} /
// sqrt(2 pi a) (c0(eta) + c1(eta) / a), eta^2 / 2 = lambda - 1 - log(lambda), lambda = x / a, with the sign
// of lambda - 1; c0, c1 by their Taylor series near eta = 0 (removable singularities), the closed forms
// elsewhere. The next term is O(a^-2) of R: below 1e-16 / sqrt(a). Matches scipy's gammainc /
// gammaincc to ~1e-14 for a in [1e8, 1e16], |z| <= 30; the series and continued fraction need
// O(sqrt(a)) terms and ran out of kMaxIter (P(1e10, 1e10) came out 0.341).
static double temme_pq(double a, double x, bool upper) {
  const double t = (x - a) / a, h = half_eta2(t), eta = std::copysign(std::sqrt(2.0 * h), t);
  double c0, c1;
  if (std::fabs(eta) < 0.05) {
    const double e2 = eta * eta;
    c0 = -1.0 / 3.0 + eta / 12.0 - 2.0 * e2 / 135.0 + e2 * eta / 864.0 + e2 * e2 / 2835.0 -
         139.0 * e2 * e2 * eta / 777600.0;
    c1 = -1.0 / 540.0 - eta / 288.0;
  } else {
    c0 = 1.0 / t - 1.0 / eta;
    c1 = 1.0 / (eta * eta * eta) - 1.0 / (t * t * t) - 1.0 / (t * t) - 1.0 / (12.0 * t);
  }
  const double r = std::exp(-a * h) / std::sqrt(6.283185307179586 * a) * (c0 + c1 / a);  // 2 pi a
  const double arg = eta * std::sqrt(0.5 * a);
  return upper ? 0.5 * std::erfc(arg) + r : 0.5 * std::erfc(-arg) - r;
}

double gammainc(double a, double x) {
  if (!(a > 0) || !(x >= 0)) return kNaN;
  if (x == 0) return 0.0;
  if (std::isinf(x)) return 1.0;
  if (a >= kLargeShape) return temme_pq(a, x, false);
  if (x < a + 1.0) return std::exp(a * std::log(x) - x - lgamma(a + 1.0)) * gamma_series(a, x).v;
  return 1.0 - gammaincc(a, x);
}

double gammaincc(double a, double x) {
  if (!(a > 0) || !(x >= 0)) return kNaN;
  if (x == 0) return 1.0;
  if (std::isinf(x)) return 0.0;
  if (a >= kLargeShape) return temme_pq(a, x, true);
  if (x < a + 1.0) return 1.0 - gammainc(a, x);
  return std::exp(a * std::log(x) - x - lgamma(a)) * gamma_cf(a, x).v;
}

double betainc(double a, double b, double x) {
  if (!(a > 0) || !(b > 0) || !(x >= 0 && x <= 1)) return kNaN;
  if (x == 0) return 0.0;
  if (x == 1) return 1.0;
  if (beta_swap(a, b, x)) return 1.0 - beta_direct(b, a, 1.0 - x, nullptr, nullptr);
  return beta_direct(a, b, x, nullptr, nullptr);
}

double gamma_dx_da(double a, double x) {
  if (!(a > 0) || !(x >= 0) || std::isinf(x)) return kNaN;
  if (x == 0) return 0.0;
  if (a >= kLargeShape) {
    // The series and the continued fraction need O(sqrt(a)) terms (kMaxIter ran out: 3% off at
    // a = 1e10). Wilson-Hilferty, x = a w^3 with w = 1 - 1 / (9 a) + z / (3 sqrt(a)), differentiated at
    // fixed z: its relative error falls as a^{-3/2} (1.7e-10 at a = 1e6 and z = -3 against mpmath,
    // so ~2e-13 from a = 1e8).
    const double w = std::cbrt(x / a), z = (w - 1.0 + 1.0 / (9.0 * a)) * 3.0 * std::sqrt(a);
    const double dw = 1.0 / (9.0 * a * a) - z / (6.0 * a * std::sqrt(a));
    return w * w * w + 3.0 * a * w * w * dw;
  }
  const double lx = std::log(x);
  if (x < a + 1.0) {
    // P = x^a e^-x / Gamma(a+1) * S; prefactor / density = x / a.
    const Dual<1> s = gamma_series(a, x);
    return -(x / a) * (s.v * (lx - digamma(a + 1.0)) + s.d[0]);
  }
  // Q = x^a e^-x / Gamma(a) * h; prefactor / density = x; dP/da = -dQ/da.
  const Dual<1> h = gamma_cf(a, x);
  return x * (h.v * (lx - digamma(a)) + h.d[0]);
}

void beta_dx_dab(double a, double b, double x, double* dx_da, double* dx_db) {
  if (!(a > 0) || !(b > 0) || !(x >= 0 && x <= 1)) {
    *dx_da = *dx_db = kNaN;
    return;
  }
  if (x == 0 || x == 1) {  // the transport vanishes at the ends of the support
    *dx_da = *dx_db = 0.0;
    return;
  }
  double ra, rb;
  if (beta_swap(a, b, x)) {
    // I_x(a, b) = 1 - I_{1-x}(b, a): derivatives change sign and swap roles;
    // the density is the same number.
    beta_direct(b, a, 1.0 - x, &rb, &ra);
    ra = -ra;
    rb = -rb;
  } else {
    beta_direct(a, b, x, &ra, &rb);
  }
  *dx_da = -ra;
  *dx_db = -rb;
}

double studentt_dt_ddf(double df, double t) {
  if (!(df > 0) || std::isnan(t) || std::isinf(t)) return kNaN;
  if (t == 0) return 0.0;
  const double t2 = t * t;
  if (df >= 1e4 && t2 <= 1e-4 * df) {
    // large df: the general form's two terms cancel (relative error ~1e-4 at df = 1e6). The t quantile's
    // Cornish-Fisher series (Abramowitz-Stegun 26.7.5, terms to df^-4) differentiated at fixed level and
    // re-expanded in t: dT/d df = -(t / (4 df^2)) B with
    //   B = t^2 + 1 - t^2 (t^2 - 1) / (3 df) + (t^6 - t^4 - t^2 - 3) / (6 df^2)
    //       - t^2 (t^2 + 1)(3 t^4 - 6 t^2 + 5) / (30 df^3),
    // written in w = t^2 / df, e = 1 / df (no overflow); truncation ~(t^8 + 1) / df^4 relative
    const double e = 1.0 / df, w = t2 * e;
    const double B = t2 + 1.0 - w * (t2 - 1.0) / 3.0 + (w * w * t2 - w * w - w * e - 3.0 * e * e) / 6.0 -
                     w * (t2 + 1.0) * (3.0 * w * w - 6.0 * w * e + 5.0 * e * e) / 30.0;
    return -(0.25 * t * e) * (B * e);
  }
  if (t2 < 1e-17 * df) {
    // |t| small against sqrt(df) (t * t may underflow): F(t) = 1/2 + p(0) t (1 + O(t^2 / df)), so
    // dT/d df = -t d ln p(0) / d df = -t (psi((df+1)/2) - psi(df/2) - 1/df) / 2
    return -0.5 * t * (digamma(0.5 * df + 0.5) - digamma(0.5 * df) - 1.0 / df);
  }
  if (t2 > 1e17 * df * (df + 1.0)) {
    // far tail (s * s and t * t overflow from |t| ~ 1e77 and 1e154): 1 - F(|t|) = K |t|^-df / df
    // (1 + O(df (df+1) / t^2)) with K = Gamma((df+1)/2) df^(df/2) / (sqrt(pi) Gamma(df/2)), and
    // (1 - F) / p = |t| / df, so dT/d df = (t / df) (d ln(K / df) / d df - ln |t|); in that derivative
    // psi(df/2) / 2 + 1/df = psi(df/2 + 1) / 2 keeps tiny df from cancelling
    const double c = 0.5 * (digamma(0.5 * df + 0.5) - digamma(0.5 * df + 1.0)) + 0.5 * std::log(df) + 0.5;
    return (t / df) * (c - std::log(std::fabs(t)));
  }
  // F(t) = 1 - I_z(df/2, 1/2) / 2 for t > 0 (mirror for t < 0), z = df / (df + t^2).
  // With R_a = (dI/da) / p_B(z) and p_B(z) / p_T(t) = (df + t^2)^2 / (df |t|):
  //   dT/d df = (df + t^2)^2 R_a / (4 df t) + t / (2 df).
  const double s = df + t2;
  const double z = df / s;
  const double a = 0.5 * df, b = 0.5;
  double ra, rb;
  if (beta_swap(a, b, z)) {
    // 1 - z = t^2 / (df + t^2) computed without cancellation.
    beta_direct(b, a, t2 / s, &rb, &ra);
    ra = -ra;
  } else {
    beta_direct(a, b, z, &ra, &rb);
  }
  return s * s * ra / (4.0 * df * t) + t / (2.0 * df);
}

void lgamma_v(const double* x, int64_t n, double* out) {
  elementwise(n, [&](int64_t i) { out[i] = lgamma(x[i]); });
}
void digamma_v(const double* x, int64_t n, double* out) {
  elementwise(n, [&](int64_t i) { out[i] = digamma(x[i]); });
}
void trigamma_v(const double* x, int64_t n, double* out) {
  elementwise(n, [&](int64_t i) { out[i] = trigamma(x[i]); });
}
void gammainc_v(const double* a, const double* x, int64_t n, double* out) {
  elementwise(n, [&](int64_t i) { out[i] = gammainc(a[i], x[i]); });
}
void gammaincc_v(const double* a, const double* x, int64_t n, double* out) {
  elementwise(n, [&](int64_t i) { out[i] = gammaincc(a[i], x[i]); });
}
void betainc_v(const double* a, const double* b, const double* x, int64_t n, double* out) {
  elementwise(n, [&](int64_t i) { out[i] = betainc(a[i], b[i], x[i]); });
}
void gamma_dx_da_v(const double* a, const double* x, int64_t n, double* out) {
  elementwise(n, [&](int64_t i) { out[i] = gamma_dx_da(a[i], x[i]); });
}
void beta_dx_dab_v(const double* a, const double* b, const double* x, int64_t n, double* out_a,
                   double* out_b) {
  elementwise(n, [&](int64_t i) { beta_dx_dab(a[i], b[i], x[i], &out_a[i], &out_b[i]); });
}
void studentt_dt_ddf_v(const double* df, const double* t, int64_t n, double* out) {
  elementwise(n, [&](int64_t i) { out[i] = studentt_dt_ddf(df[i], t[i]); });
}

}  // namespace special
}  // namespace bayesgrad
