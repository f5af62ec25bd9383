#include "bayesgrad/curvature.hpp"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "bayesgrad/parallel.hpp"

namespace bayesgrad {
namespace curvature {

namespace {

constexpr int64_t kRows = 64;  // fixed row chunk: results do not depend on the thread count

int64_t n_chunks(int64_t n) { return (n + kRows - 1) / kRows; }

blasint bi(int64_t v) {
  if (v < 0 || v > INT_MAX) throw std::invalid_argument("curvature: dimension too large for 32-bit BLAS");
  return static_cast<blasint>(v);
}

// C (m, n) row-major += op(A) op(B).
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const double* A, int64_t lda, const double* B,
          int64_t ldb, double* C, int64_t ldc) {
  if (m == 0 || n == 0 || k == 0) return;
  scipy_cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, bi(m), bi(n),
                    bi(k), 1.0, A, bi(lda), B, bi(ldb), 1.0, C, bi(ldc));
}
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* A, int64_t lda, const float* B,
          int64_t ldb, float* C, int64_t ldc) {
  if (m == 0 || n == 0 || k == 0) return;
  scipy_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, bi(m), bi(n),
                    bi(k), 1.0f, A, bi(lda), B, bi(ldb), 1.0f, C, bi(ldc));
}

// C (p, p) += X^T X for X (m, p), full symmetric result (syrk on the upper
// triangle, then mirrored: the lower triangle is always rewritten from it).
void gram(const double* X, int64_t m, int64_t p, double* C) {
  if (m > 0) scipy_cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, bi(p), bi(m), 1.0, X, bi(p), 1.0, C, bi(p));
  for (int64_t i = 0; i < p; ++i)
    for (int64_t j = 0; j < i; ++j) C[i * p + j] = C[j * p + i];
}
void gram(const float* X, int64_t m, int64_t p, float* C) {
  if (m > 0) scipy_cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, bi(p), bi(m), 1.0f, X, bi(p), 1.0f, C, bi(p));
  for (int64_t i = 0; i < p; ++i)
    for (int64_t j = 0; j < i; ++j) C[i * p + j] = C[j * p + i];
}

// Column sums of X (n, p) added to out (p), in a fixed order.
template <typename T>
void colsum_add(const T* X, int64_t n, int64_t p, T* out) {
  const int64_t pc = (p + 255) / 256;
  parallel_chunks(pc, [&](int64_t c) {
    const int64_t j0 = c * 256, j1 = std::min(p, j0 + 256);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = j0; j < j1; ++j) out[j] += X[i * p + j];
  });
}

template <typename T>
double sqrt_loss_row(const T* f, const T* y, const T* draws, int64_t C, int64_t K, Likelihood lik, Kind kind, T* S,
                     std::vector<T>& p) {
  const T rk = T(1) / std::sqrt(static_cast<T>(K));
  if (lik == Likelihood::gaussian) {
    double loss = 0;
    for (int64_t c = 0; c < C; ++c) {
      const double r = static_cast<double>(f[c]) - static_cast<double>(y[c]);
      loss += 0.5 * r * r;
    }
    if (kind == Kind::ggn) {
      for (int64_t k = 0; k < K; ++k)
        for (int64_t c = 0; c < C; ++c) S[k * C + c] = (k == c) ? T(1) : T(0);
    } else if (kind == Kind::ef) {
      for (int64_t c = 0; c < C; ++c) S[c] = f[c] - y[c];
    } else {
      for (int64_t i = 0; i < K * C; ++i) S[i] = draws[i] * rk;
    }
    return loss;
  }
  if (lik == Likelihood::categorical) {
    const double yv = static_cast<double>(y[0]);
    if (!(yv >= 0 && yv < static_cast<double>(C))) throw std::invalid_argument("y: class label out of range");
    const int64_t yi = static_cast<int64_t>(yv);
    T mx = f[0];
    for (int64_t c = 1; c < C; ++c) mx = std::max(mx, f[c]);
    T se = 0;
    for (int64_t c = 0; c < C; ++c) {
      p[c] = std::exp(f[c] - mx);
      se += p[c];
    }
    for (int64_t c = 0; c < C; ++c) p[c] /= se;
    const double loss = static_cast<double>(std::log(se)) - static_cast<double>(f[yi] - mx);
    if (kind == Kind::ggn) {
      for (int64_t k = 0; k < K; ++k) {
        const T sk = std::sqrt(p[k]);
        for (int64_t c = 0; c < C; ++c) S[k * C + c] = -sk * p[c];
        S[k * C + k] += sk;
      }
    } else if (kind == Kind::ef) {
      for (int64_t c = 0; c < C; ++c) S[c] = p[c];
      S[yi] -= T(1);
    } else {
      for (int64_t k = 0; k < K; ++k) {
        // inverse CDF: the sampled class is the number of cumulative sums below u
        const T u = draws[k];
        T cdf = 0;
        int64_t ys = 0;
        for (int64_t c = 0; c < C; ++c) {
          cdf += p[c];
          if (u > cdf) ++ys;
        }
        ys = std::min(ys, C - 1);
        for (int64_t c = 0; c < C; ++c) S[k * C + c] = p[c] * rk;
        S[k * C + ys] = (p[ys] - T(1)) * rk;
      }
    }
    return loss;
  }
  // bernoulli (C == 1)
  const T fl = f[0], yb = y[0];
  const T pr = T(0.5) * (T(1) + std::tanh(T(0.5) * fl));
  const double fd = static_cast<double>(fl);
  const double loss = std::max(fd, 0.0) + std::log1p(std::exp(-std::abs(fd))) - static_cast<double>(yb) * fd;
  if (kind == Kind::ggn) {
    S[0] = std::sqrt(pr * (T(1) - pr));
  } else if (kind == Kind::ef) {
    S[0] = pr - yb;
  } else {
    for (int64_t k = 0; k < K; ++k) S[k] = (pr - (draws[k] < pr ? T(1) : T(0))) * rk;
  }
  return loss;
}

}  // namespace

Likelihood parse_likelihood(const std::string& s) {
  if (s == "gaussian") return Likelihood::gaussian;
  if (s == "categorical") return Likelihood::categorical;
  if (s == "bernoulli") return Likelihood::bernoulli;
  throw std::invalid_argument("likelihood must be 'gaussian', 'categorical' or 'bernoulli', got '" + s + "'");
}

Kind parse_kind(const std::string& s) {
  if (s == "ggn") return Kind::ggn;
  if (s == "ef") return Kind::ef;
  if (s == "fisher_mc") return Kind::fisher_mc;
  throw std::invalid_argument("kind must be 'ggn', 'ef' or 'fisher_mc', got '" + s + "'");
}

template <typename T>
double sqrt_loss(const T* f, const T* y, const T* draws, int64_t n, int64_t C, int64_t K, Likelihood lik, Kind kind,
                 T* S) {
  const int64_t nc = n_chunks(n);
  std::vector<double> part(static_cast<size_t>(nc), 0.0);
  const int64_t ystride = lik == Likelihood::gaussian ? C : 1;
  const int64_t dstride = (lik == Likelihood::gaussian) ? K * C : K;
  parallel_chunks(nc, [&](int64_t c) {
    std::vector<T> p(static_cast<size_t>(C));
    double acc = 0;
    for (int64_t i = c * kRows; i < std::min(n, (c + 1) * kRows); ++i)
      acc += sqrt_loss_row(f + i * C, y + i * ystride, draws + i * dstride, C, K, lik, kind, S + i * K * C, p);
    part[static_cast<size_t>(c)] = acc;
  });
  double loss = 0;
  for (double v : part) loss += v;
  return loss;
}

template <typename T>
void linear_diag_accum(const T* a, const T* S, int64_t n, int64_t I, int64_t K, int64_t O, T* out_w, T* out_b) {
  std::vector<T> s2(static_cast<size_t>(n * O)), a2(static_cast<size_t>(n * I));
  parallel_chunks(n_chunks(n), [&](int64_t c) {
    for (int64_t i = c * kRows; i < std::min(n, (c + 1) * kRows); ++i) {
      T* s = s2.data() + i * O;
      for (int64_t o = 0; o < O; ++o) s[o] = 0;
      for (int64_t k = 0; k < K; ++k) {
        const T* Sk = S + (i * K + k) * O;
        for (int64_t o = 0; o < O; ++o) s[o] += Sk[o] * Sk[o];
      }
      for (int64_t j = 0; j < I; ++j) a2[i * I + j] = a[i * I + j] * a[i * I + j];
    }
  });
  gemm(true, false, O, I, n, s2.data(), O, a2.data(), I, out_w, I);
  colsum_add(s2.data(), n, O, out_b);
}

template <typename T>
void linear_kron_accum(const T* a, const T* S, int64_t n, int64_t I, int64_t K, int64_t O, T* out_A, T* out_B) {
  gram(a, n, I, out_A);
  gram(S, n * K, O, out_B);
}

template <typename T>
void linear_jacobian(const T* a, const T* S, int64_t n, int64_t I, int64_t K, int64_t O, T* out) {
  const int64_t P = O * I + O;
  parallel_chunks(n_chunks(n), [&](int64_t c) {
    for (int64_t i = c * kRows; i < std::min(n, (c + 1) * kRows); ++i)
      for (int64_t k = 0; k < K; ++k) {
        const T* s = S + (i * K + k) * O;
        T* row = out + (i * K + k) * P;
        for (int64_t o = 0; o < O; ++o) {
          for (int64_t j = 0; j < I; ++j) row[o * I + j] = s[o] * a[i * I + j];
          row[O * I + o] = s[o];
        }
      }
  });
}

template <typename T>
void gram_accum(const T* J, int64_t m, int64_t P, T* out) {
  gram(J, m, P, out);
}

template <typename T>
void linear_ggn_vp(const T* a, const T* S, int64_t n, int64_t I, int64_t K, int64_t O, const T* V, int64_t m,
                   T* out) {
  const int64_t P = O * I + O;
  std::vector<T> u(static_cast<size_t>(n * O)), r(static_cast<size_t>(n * O));
  for (int64_t j = 0; j < m; ++j) {
    const T* vw = V + j * P;
    const T* vb = vw + O * I;
    // jvp: u = a Vw^T + vb
    for (int64_t i = 0; i < n; ++i)
      for (int64_t o = 0; o < O; ++o) u[i * O + o] = vb[o];
    gemm(false, true, n, O, I, a, I, vw, I, u.data(), O);
    // loss Hessian: r = sum_k S_k (S_k . u)
    parallel_chunks(n_chunks(n), [&](int64_t c) {
      for (int64_t i = c * kRows; i < std::min(n, (c + 1) * kRows); ++i) {
        T* ri = r.data() + i * O;
        const T* ui = u.data() + i * O;
        for (int64_t o = 0; o < O; ++o) ri[o] = 0;
        for (int64_t k = 0; k < K; ++k) {
          const T* s = S + (i * K + k) * O;
          T t = 0;
          for (int64_t o = 0; o < O; ++o) t += s[o] * ui[o];
          for (int64_t o = 0; o < O; ++o) ri[o] += t * s[o];
        }
      }
    });
    // vjp: out_W += r^T a, out_b += colsum r
    gemm(true, false, O, I, n, r.data(), O, a, I, out + j * P, I);
    colsum_add(r.data(), n, O, out + j * P + O * I);
  }
}

#define BAYESGRAD_CURV_INST(T)                                                                                   \
  template double sqrt_loss<T>(const T*, const T*, const T*, int64_t, int64_t, int64_t, Likelihood, Kind, T*);   \
  template void linear_diag_accum<T>(const T*, const T*, int64_t, int64_t, int64_t, int64_t, T*, T*);            \
  template void linear_kron_accum<T>(const T*, const T*, int64_t, int64_t, int64_t, int64_t, T*, T*);            \
  template void linear_jacobian<T>(const T*, const T*, int64_t, int64_t, int64_t, int64_t, T*);                  \
  template void gram_accum<T>(const T*, int64_t, int64_t, T*);                                                   \
  template void linear_ggn_vp<T>(const T*, const T*, int64_t, int64_t, int64_t, int64_t, const T*, int64_t, T*);
BAYESGRAD_CURV_INST(float)
BAYESGRAD_CURV_INST(double)
#undef BAYESGRAD_CURV_INST

}  // namespace curvature
}  // namespace bayesgrad
