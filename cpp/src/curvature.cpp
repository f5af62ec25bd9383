#include "bayesgrad/curvature.hpp"

#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <initializer_list>
#include <stdexcept>
#include <vector>

#include "bayesgrad/parallel.hpp"

namespace bayesgrad {
namespace curvature {

namespace {

constexpr int64_t kRows = 64;  // fixed row chunk: results do not depend on the thread count

// The whole-network passes alternate GEMMs with short elementwise loops; running
// those loops on our pool right after OpenBLAS's pool (whose threads spin-wait
// after each call) made a chunk ~5x slower on 2 busy cores, so inside those
// passes they run serially (same chunking, same results). (Measured when the
// products still ran on OpenBLAS's threads; they now go through pool_gemm.)
thread_local bool t_serial = false;
struct SerialScope {
  bool old;
  SerialScope() : old(t_serial) { t_serial = true; }
  ~SerialScope() { t_serial = old; }
};
template <class F>
void for_chunks(int64_t n, F&& body) {
  if (t_serial) {
    for (int64_t c = 0; c < n; ++c) body(c);
  } else {
    parallel_chunks(n, body);
  }
}

int64_t n_chunks(int64_t n) { return (n + kRows - 1) / kRows; }

blasint bi(int64_t v) {
  if (v < 0 || v > INT_MAX) throw std::invalid_argument("curvature: dimension too large for 32-bit BLAS");
  return static_cast<blasint>(v);
}

// C (m, n) row-major += op(A) op(B) (pool_gemm: never on OpenBLAS's threads).
template <typename T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* A, int64_t lda, const T* B, int64_t ldb, T* C,
          int64_t ldc) {
  if (m == 0 || n == 0 || k == 0) return;
  pool_gemm(ta, tb, m, n, k, T(1), A, lda, B, ldb, T(1), C, ldc);
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
  for_chunks(pc, [&](int64_t c) {
    const int64_t j0 = c * 256, j1 = std::min(p, j0 + 256);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = j0; j < j1; ++j) out[j] += X[i * p + j];
  });
}

template <typename T>
double sqrt_loss_row(const T* f, const T* y, const T* draws, int64_t C, int64_t K, Likelihood lik, Kind kind, T* S,
                     std::vector<T>& p) {
  const T rk = T(1) / std::sqrt(static_cast<T>(K));
  if (lik == Likelihood::kGaussian) {
    double loss = 0;
    for (int64_t c = 0; c < C; ++c) {
      const double r = static_cast<double>(f[c]) - static_cast<double>(y[c]);
      loss += 0.5 * r * r;
    }
    if (kind == Kind::kGgn) {
      for (int64_t k = 0; k < K; ++k)
        for (int64_t c = 0; c < C; ++c) S[k * C + c] = (k == c) ? T(1) : T(0);
    } else if (kind == Kind::kEf) {
      for (int64_t c = 0; c < C; ++c) S[c] = f[c] - y[c];
    } else {
      for (int64_t i = 0; i < K * C; ++i) S[i] = draws[i] * rk;
    }
    return loss;
  }
  if (lik == Likelihood::kCategorical) {
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
    if (kind == Kind::kGgn) {
      for (int64_t k = 0; k < K; ++k) {
        const T sk = std::sqrt(p[k]);
        for (int64_t c = 0; c < C; ++c) S[k * C + c] = -sk * p[c];
        S[k * C + k] += sk;
      }
    } else if (kind == Kind::kEf) {
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
  if (kind == Kind::kGgn) {
    S[0] = std::sqrt(pr * (T(1) - pr));
  } else if (kind == Kind::kEf) {
    S[0] = pr - yb;
  } else {
    for (int64_t k = 0; k < K; ++k) S[k] = (pr - (draws[k] < pr ? T(1) : T(0))) * rk;
  }
  return loss;
}

}  // namespace

void require_supported(Likelihood lik) {
  if (lik == Likelihood::kHeteroscedasticGaussian)
    throw std::invalid_argument("likelihood: curvature supports gaussian, categorical and bernoulli, not "
                                "heteroscedastic_gaussian");
}

template <typename T>
double sqrt_loss(const T* f, const T* y, const T* draws, int64_t n, int64_t C, int64_t K, Likelihood lik, Kind kind,
                 T* S) {
  require_supported(lik);
  const int64_t nc = n_chunks(n);
  std::vector<double> part(static_cast<size_t>(nc), 0.0);
  const int64_t ystride = lik == Likelihood::kGaussian ? C : 1;
  const int64_t dstride = (lik == Likelihood::kGaussian) ? K * C : K;
  for_chunks(nc, [&](int64_t c) {
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

// linear_diag_accum with its (n, O) and (n, I) squares in s2 and a2 (resized, every element written).
template <typename T>
void linear_diag_accum_in(const T* a, const T* S, int64_t n, int64_t I, int64_t K, int64_t O, T* out_w, T* out_b,
                          std::vector<T>& s2, std::vector<T>& a2) {
  s2.resize(static_cast<size_t>(n * O));
  a2.resize(static_cast<size_t>(n * I));
  for_chunks(n_chunks(n), [&](int64_t c) {
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
void linear_diag_accum(const T* a, const T* S, int64_t n, int64_t I, int64_t K, int64_t O, T* out_w, T* out_b) {
  std::vector<T> s2, a2;
  linear_diag_accum_in(a, S, n, I, K, O, out_w, out_b, s2, a2);
}

template <typename T>
void linear_kron_accum(const T* a, const T* S, int64_t n, int64_t I, int64_t K, int64_t O, T* out_A, T* out_B) {
  gram(a, n, I, out_A);
  gram(S, n * K, O, out_B);
}

template <typename T>
void linear_jacobian(const T* a, const T* S, int64_t n, int64_t I, int64_t K, int64_t O, T* out) {
  const int64_t P = O * I + O;
  for_chunks(n_chunks(n), [&](int64_t c) {
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
    for_chunks(n_chunks(n), [&](int64_t c) {
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


template <typename T>
void linear_full_accum(const T* a, const T* S, int64_t n, int64_t I, int64_t K, int64_t O, T* out) {
  const int64_t P = O * I + O;
  SerialScope serial;
  // Λ_i = Σ_k S_ik S_ikᵀ (n, O, O): the Gram of the rows [S ⊗ a, S] has blocks
  // (c, d) = Σ_i Λ_i[c, d] a_i a_iᵀ, so only the O(O+1)/2 upper blocks need GEMMs
  std::vector<T> lam(static_cast<size_t>(n * O * O));
  for_chunks(n_chunks(n), [&](int64_t ch) {
    for (int64_t i = ch * kRows; i < std::min(n, (ch + 1) * kRows); ++i) {
      T* Li = lam.data() + i * O * O;
      std::fill(Li, Li + O * O, T(0));
      for (int64_t k = 0; k < K; ++k) {
        const T* s = S + (i * K + k) * O;
        for (int64_t c = 0; c < O; ++c)
          for (int64_t d = 0; d < O; ++d) Li[c * O + d] += s[c] * s[d];
      }
    }
  });
  // W-W blocks (c, d >= c) in one GEMM per c: aᵀ [a λ_cc | a λ_c,c+1 | ...] lands on
  // the contiguous row band c*I.. of out at columns c*I..O*I
  std::vector<T> M(static_cast<size_t>(n * O * I));
  for (int64_t c = 0; c < O; ++c) {
    const int64_t w = (O - c) * I;
    for_chunks(n_chunks(n), [&](int64_t ch) {
      for (int64_t i = ch * kRows; i < std::min(n, (ch + 1) * kRows); ++i)
        for (int64_t d = c; d < O; ++d) {
          const T l = lam[(i * O + c) * O + d];
          T* dst = M.data() + i * w + (d - c) * I;
          for (int64_t j = 0; j < I; ++j) dst[j] = a[i * I + j] * l;
        }
    });
    gemm(true, false, I, w, n, a, I, M.data(), w, out + (c * I) * P + c * I, P);
    // W-b cross block: out[c*I + i, O*I + d] += Σ_n a_ni Λ_n[c, d]
    gemm(true, false, I, O, n, a, I, lam.data() + c * O, O * O, out + (c * I) * P + O * I, P);
  }
  std::vector<T> bb(static_cast<size_t>(O * O), T(0));
  colsum_add(lam.data(), n, O * O, bb.data());
  for (int64_t c = 0; c < O; ++c)
    for (int64_t d = 0; d < O; ++d) out[(O * I + c) * P + O * I + d] += bb[c * O + d];
  // the strict lower triangle is always rewritten from the upper one
  const int64_t pc = (P + 63) / 64;
  for_chunks(pc, [&](int64_t ch) {
    for (int64_t i = ch * 64; i < std::min(P, (ch + 1) * 64); ++i)
      for (int64_t j = 0; j < i; ++j) out[i * P + j] = out[j * P + i];
  });
}

int64_t kron_packed_size(const mlp::Layout& L) {
  int64_t t = 0;
  for (int64_t l = 0; l < L.n_layers(); ++l) t += L.d_in(l) * L.d_in(l) + L.d_out(l) * L.d_out(l);
  return t;
}

namespace {

// G (n*K rows, I) *= f'(z) of the n rows of the layer below, broadcast over k.
template <typename T>
void times_act_deriv(mlp::Activation f, const T* z, const T* a, int64_t n, int64_t K, int64_t I, T* G) {
  for_chunks(n_chunks(n), [&](int64_t ch) {
    std::vector<T> d(static_cast<size_t>(I));
    for (int64_t i = ch * kRows; i < std::min(n, (ch + 1) * kRows); ++i) {
      for (int64_t j = 0; j < I; ++j) d[j] = mlp::act_deriv(f, z[i * I + j], a[i * I + j]);
      for (int64_t k = 0; k < K; ++k) {
        T* g = G + (i * K + k) * I;
        for (int64_t j = 0; j < I; ++j) g[j] *= d[j];
      }
    }
  });
}

template <typename T>
void check_sqrt_args(int64_t n, int64_t C, int64_t K, Likelihood lik, Kind kind) {
  if (n < 0 || K < 1) throw std::invalid_argument("n_cols must be >= 1");
  if (lik == Likelihood::kBernoulli && C != 1) throw std::invalid_argument("bernoulli needs 1 output");
  if (kind == Kind::kEf && K != 1) throw std::invalid_argument("n_cols must be 1 for the empirical Fisher");
  if (kind == Kind::kGgn && K != (lik == Likelihood::kBernoulli ? 1 : C))
    throw std::invalid_argument("n_cols must be the number of outputs for the GGN (1 for bernoulli)");
}

}  // namespace

// Bytes a workspace holds in its trace and vectors, capacity included (mlp::ThreadKept's cap).
template <typename T>
size_t held_bytes(const mlp::Trace<T>& tr, std::initializer_list<const std::vector<T>*> vs) {
  size_t b = 0;
  for (const auto* v : vs) b += v->capacity();
  return tr.bytes() + b * sizeof(T);
}

// mlp_accum's buffers: the forward trace, the square-root factors at a layer and the one below, the
// diagonal's squares.
template <typename T>
struct AccumWork {
  mlp::Trace<T> tr;
  std::vector<T> G, Gn, s2, a2;
  size_t bytes() const { return held_bytes(tr, {&G, &Gn, &s2, &a2}); }
};

template <typename T>
double mlp_accum(const CurvatureConfig& c, const T* theta, const T* X, const T* y, const T* draws, int64_t n,
                 T* out) {
  const mlp::Layout& L = c.net.layout;
  const mlp::Activation f = c.net.act;
  const Likelihood lik = c.lik;
  const Kind kind = c.kind;
  const int64_t K = c.n_cols;
  const Structure st = c.structure;
  const int64_t nl = L.n_layers(), C = L.d_output();
  check_sqrt_args<T>(n, C, K, lik, kind);
  if (n == 0) return 0.0;
  SerialScope serial;
  // Python calls this once per chunk of rows: the buffers are the calling thread's, kept between calls
  // (fresh ones were faulted in and zero-filled at every call: 36 000 page faults per diagonal fit of
  // 784-400-400-10 on 2000 rows)
  mlp::ThreadKept<AccumWork<T>> lease;
  AccumWork<T>& w = lease.get();
  mlp::Trace<T>& tr = w.tr;
  std::vector<T>& G = w.G;
  std::vector<T>& Gn = w.Gn;
  mlp::forward<T>(L, f, theta, 1, 0, X, n, 0, tr);
  G.resize(static_cast<size_t>(n * K * C));  // every element written by sqrt_loss
  const double loss = sqrt_loss<T>(tr.output(), y, draws, n, C, K, lik, kind, G.data());
  // packed Kronecker offsets
  std::vector<int64_t> koff(static_cast<size_t>(nl) + 1, 0);
  for (int64_t l = 0; l < nl; ++l) koff[l + 1] = koff[l] + L.d_in(l) * L.d_in(l) + L.d_out(l) * L.d_out(l);
  for (int64_t l = nl - 1; l >= 0; --l) {
    const int64_t I = L.d_in(l), O = L.d_out(l);
    const T* a = l == 0 ? X : tr.a[l - 1].data();
    if (st == Structure::kDiag)
      linear_diag_accum_in<T>(a, G.data(), n, I, K, O, out + L.w_off[l], out + L.b_off[l], w.s2, w.a2);
    else
      linear_kron_accum<T>(a, G.data(), n, I, K, O, out + koff[l], out + koff[l] + I * I);
    if (l == 0) break;
    // square-root factors at the layer below: (G W) ⊙ f'(z), G W written over Gn (beta 0)
    Gn.resize(static_cast<size_t>(n * K * I));
    pool_gemm(false, false, n * K, I, O, T(1), G.data(), O, theta + L.w_off[l], I, T(0), Gn.data(), I);
    times_act_deriv<T>(f, tr.z[l - 1].data(), tr.a[l - 1].data(), n, K, I, Gn.data());
    G.swap(Gn);
  }
  return loss;
}

// mlp_ggn_vp's buffers: the trace, the loss Hessian's square roots, the JVP's directions, the VJP.
template <typename T>
struct GgnVpWork {
  mlp::Trace<T> tr;
  std::vector<T> S, dz, dprev, g;
  size_t bytes() const { return held_bytes(tr, {&S, &dz, &dprev, &g}); }
};

template <typename T>
void mlp_ggn_vp(const CurvatureConfig& c, const T* theta, const T* X, const T* y, const T* draws, int64_t n,
                const T* V, int64_t m, T* out) {
  const mlp::Layout& L = c.net.layout;
  const mlp::Activation f = c.net.act;
  const Likelihood lik = c.lik;
  const Kind kind = c.kind;
  const int64_t K = c.n_cols;
  const int64_t nl = L.n_layers(), C = L.d_output(), P = L.n_params;
  check_sqrt_args<T>(n, C, K, lik, kind);
  if (n == 0 || m == 0) return;
  SerialScope serial;
  // Python calls this once per chunk of rows (and per Lanczos step): the calling thread's buffers,
  // kept between calls (see AccumWork)
  mlp::ThreadKept<GgnVpWork<T>> lease;
  GgnVpWork<T>& w = lease.get();
  mlp::Trace<T>& tr = w.tr;
  mlp::forward<T>(L, f, theta, 1, 0, X, n, 0, tr);
  std::vector<T>& S = w.S;
  S.resize(static_cast<size_t>(n * K * C));  // every element written by sqrt_loss
  sqrt_loss<T>(tr.output(), y, draws, n, C, K, lik, kind, S.data());
  std::vector<T>& dz = w.dz;
  std::vector<T>& dprev = w.dprev;
  std::vector<T>& g = w.g;
  g.resize(static_cast<size_t>(P));  // written by backward
  for (int64_t j = 0; j < m; ++j) {
    const T* v = V + j * P;
    // jvp: dz_l = a_{l-1} dW_lᵀ + db_l + (da_{l-1}) W_lᵀ, da_l = f'(z_l) dz_l
    for (int64_t l = 0; l < nl; ++l) {
      const int64_t I = L.d_in(l), O = L.d_out(l);
      const T* a = l == 0 ? X : tr.a[l - 1].data();
      dz.resize(static_cast<size_t>(n * O));
      for (int64_t i = 0; i < n; ++i) std::copy(v + L.b_off[l], v + L.b_off[l] + O, dz.data() + i * O);
      gemm(false, true, n, O, I, a, I, v + L.w_off[l], I, dz.data(), O);
      if (l > 0) gemm(false, true, n, O, I, dprev.data(), I, theta + L.w_off[l], I, dz.data(), O);
      if (l + 1 < nl) {
        times_act_deriv<T>(f, tr.z[l].data(), tr.a[l].data(), n, 1, O, dz.data());
        dprev.swap(dz);
      }
    }
    // loss Hessian at the output: r = Σ_k S_k (S_k · u), written over dz
    for_chunks(n_chunks(n), [&](int64_t ch) {
      std::vector<T> r(static_cast<size_t>(C));
      for (int64_t i = ch * kRows; i < std::min(n, (ch + 1) * kRows); ++i) {
        T* u = dz.data() + i * C;
        std::fill(r.begin(), r.end(), T(0));
        for (int64_t k = 0; k < K; ++k) {
          const T* s = S.data() + (i * K + k) * C;
          T t = 0;
          for (int64_t c = 0; c < C; ++c) t += s[c] * u[c];
          for (int64_t c = 0; c < C; ++c) r[c] += t * s[c];
        }
        std::copy(r.begin(), r.end(), u);
      }
    });
    mlp::backward<T>(L, f, theta, 0, X, 0, tr, dz.data(), g.data(), P);
    T* o = out + j * P;
    for (int64_t p = 0; p < P; ++p) o[p] += g[p];
  }
}


int64_t glm_rot_size(const mlp::Layout& L, Structure s) { return s == Structure::kKron ? kron_packed_size(L) : 0; }

namespace {

// Identity output directions G (n, C, C).
template <typename T>
void eye_dirs(int64_t n, int64_t C, std::vector<T>& G) {
  G.assign(static_cast<size_t>(n * C * C), T(0));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < C; ++c) G[static_cast<size_t>((i * C + c) * C + c)] = T(1);
}

// Σ x_o y_o with kLanes independent partial sums, so that the compiler vectorises the
// loop without fast-math (a single running sum is a serial dependency chain).
template <typename T>
T dot(const T* x, const T* y, int64_t n) {
  constexpr int64_t kLanes = 16;
  T acc[kLanes] = {};
  int64_t o = 0;
  for (; o + kLanes <= n; o += kLanes)
    for (int64_t k = 0; k < kLanes; ++k) acc[k] += x[o + k] * y[o + k];
  T t = 0;
  for (; o < n; ++o) t += x[o] * y[o];
  for (int64_t k = 0; k < kLanes; ++k) t += acc[k];
  return t;
}

int64_t max_width(const mlp::Layout& L) {
  int64_t w = 1;
  for (int64_t l = 0; l < L.n_layers(); ++l) w = std::max({w, L.d_in(l), L.d_out(l)});
  return w;
}

// glm_fvar_rows' buffers, kept by each thread that runs its chunks (the caller's and the pool's).
template <typename T>
struct GlmWork {
  mlp::Trace<T> tr;
  std::vector<T> G, Gn, Gt, at, sq, w, gw;
  size_t bytes() const { return held_bytes(tr, {&G, &Gn, &Gt, &at, &sq, &w, &gw}); }
};

// One chunk of mlp_glm_fvar: rows [s, s + m) of X, each row's f and fvar from that row alone.
template <typename T>
void glm_fvar_rows(const GlmConfig& c, const T* theta, const T* Xs, int64_t m, const T* rot, const T* var,
                   const std::vector<int64_t>& roff, T* fout, T* V) {
  const mlp::Layout& L = c.net.layout;
  const mlp::Activation act = c.net.act;
  const int64_t nl = L.n_layers(), C = L.d_output();
  const bool kron = c.structure == Structure::kKron;
  SerialScope serial;  // this thread's elementwise loops: serial (see SerialScope)
  // the thread's workspace, kept between chunks and calls: fresh buffers per chunk were faulted in
  // and zero-filled every time (18 000 page faults per 1000-row diagonal predictive of 784-400-400-10)
  mlp::ThreadKept<GlmWork<T>> lease;
  GlmWork<T>& ws = lease.get();
  mlp::Trace<T>& tr = ws.tr;
  std::vector<T>& G = ws.G;
  std::vector<T>& Gn = ws.Gn;
  std::vector<T>& Gt = ws.Gt;
  std::vector<T>& at = ws.at;
  std::vector<T>& sq = ws.sq;
  std::vector<T>& w = ws.w;
  std::vector<T>& gw = ws.gw;
  gw.resize(static_cast<size_t>(max_width(L)));
  mlp::forward<T>(L, act, theta, 1, 0, Xs, m, 0, tr);
  std::copy(tr.output(), tr.output() + m * C, fout);
  std::fill(V, V + m * C * C, T(0));
  eye_dirs<T>(m, C, G);
  for (int64_t l = nl - 1; l >= 0; --l) {
    const int64_t I = L.d_in(l), O = L.d_out(l);
    const T* a = l == 0 ? Xs : tr.a[l - 1].data();
    const T* Gl = G.data();
    if (kron) {  // into the eigenbasis: ã = a Q_A, G̃ = G Q_B
      const T* QA = rot + roff[l];
      const T* QB = QA + I * I;
      at.resize(static_cast<size_t>(m * I));  // written by the GEMMs (beta 0)
      pool_gemm(false, false, m, I, I, T(1), a, I, QA, I, T(0), at.data(), I);
      a = at.data();
      Gt.resize(static_cast<size_t>(m * C * O));
      pool_gemm(false, false, m * C, O, O, T(1), G.data(), O, QB, O, T(0), Gt.data(), O);
      Gl = Gt.data();
    }
    // w (m, O) = ã² var_Wᵀ + var_b: the variance each output unit's direction carries
    sq.resize(static_cast<size_t>(m * I));
    for (int64_t i = 0; i < m * I; ++i) sq[i] = a[i] * a[i];
    w.resize(static_cast<size_t>(m * O));
    for (int64_t i = 0; i < m; ++i) std::copy(var + L.b_off[l], var + L.b_off[l] + O, w.data() + i * O);
    gemm(false, true, m, O, I, sq.data(), I, var + L.w_off[l], I, w.data(), O);
    // V_i += G̃_i diag(w_i) G̃_iᵀ, upper triangle (mirrored below)
    for (int64_t i = 0; i < m; ++i) {
      const T* wi = w.data() + i * O;
      T* Vi = V + i * C * C;
      for (int64_t cc = 0; cc < C; ++cc) {
        const T* gc = Gl + (i * C + cc) * O;
        for (int64_t o = 0; o < O; ++o) gw[o] = gc[o] * wi[o];
        for (int64_t dd = cc; dd < C; ++dd) Vi[cc * C + dd] += dot(gw.data(), Gl + (i * C + dd) * O, O);
      }
    }
    if (l == 0) break;
    Gn.resize(static_cast<size_t>(m * C * I));  // written by the GEMM (beta 0)
    pool_gemm(false, false, m * C, I, O, T(1), G.data(), O, theta + L.w_off[l], I, T(0), Gn.data(), I);
    times_act_deriv<T>(act, tr.z[l - 1].data(), tr.a[l - 1].data(), m, C, I, Gn.data());
    G.swap(Gn);
  }
  for (int64_t i = 0; i < m; ++i)
    for (int64_t cc = 0; cc < C; ++cc)
      for (int64_t dd = 0; dd < cc; ++dd) V[(i * C + cc) * C + dd] = V[(i * C + dd) * C + cc];
}
}  // namespace

template <typename T>
void mlp_glm_fvar(const GlmConfig& c, const T* theta, const T* X, int64_t n, const T* rot, const T* var, T* fout,
                  T* fvar) {
  const mlp::Layout& L = c.net.layout;
  const int64_t nl = L.n_layers(), C = L.d_output(), D = L.d_input();
  if (n <= 0) return;
  // rows per chunk (fixed: results do not depend on the thread count): G is (rows, C, width),
  // a few of them alive at once per thread
  const int64_t rows = std::max<int64_t>(1, std::min<int64_t>(256, (int64_t(1) << 21) / (C * max_width(L))));
  const int64_t n_ch = (n + rows - 1) / rows;
  std::vector<int64_t> roff(static_cast<size_t>(nl) + 1, 0);
  for (int64_t l = 0; l < nl; ++l) roff[l + 1] = roff[l] + L.d_in(l) * L.d_in(l) + L.d_out(l) * L.d_out(l);
  const auto chunk = [&](int64_t ch) {
    const int64_t s = ch * rows, m = std::min(rows, n - s);
    glm_fvar_rows<T>(c, theta, X + s * D, m, rot, var, roff, fout + s * C, fvar + s * C * C);
  };
  if (n_ch == 1 || num_threads() == 1) {  // one chunk: its GEMMs on BLAS's own threads
    for (int64_t ch = 0; ch < n_ch; ++ch) chunk(ch);
    return;
  }
  // Several chunks: each on one of our pool's threads with one-thread BLAS. Measured (784-400-400-10,
  // 1000 rows, 2 threads on 2 loaded cores): BLAS's own pool between these medium GEMMs took 4x
  // the CPU time of one thread (its workers spin between calls), the chunks in parallel do not.
  SerialBlas one;
  parallel_chunks(n_ch, chunk);
}

template <typename T>
void mlp_jacobian(const mlp::NetConfig& net, const T* theta, const T* X, int64_t n, T* fout, T* J) {
  const mlp::Layout& L = net.layout;
  const int64_t nl = L.n_layers(), C = L.d_output(), P = L.n_params;
  if (n <= 0) return;
  SerialScope serial;
  mlp::Trace<T> tr;
  mlp::forward<T>(L, net.act, theta, 1, 0, X, n, 0, tr);
  std::copy(tr.output(), tr.output() + n * C, fout);
  std::vector<T> G, Gn;
  eye_dirs<T>(n, C, G);
  for (int64_t l = nl - 1; l >= 0; --l) {
    const int64_t I = L.d_in(l), O = L.d_out(l);
    const T* a = l == 0 ? X : tr.a[l - 1].data();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < C; ++k) {
        const T* g = G.data() + (i * C + k) * O;
        T* row = J + (i * C + k) * P;
        for (int64_t o = 0; o < O; ++o) {
          T* rw = row + L.w_off[l] + o * I;
          for (int64_t j = 0; j < I; ++j) rw[j] = g[o] * a[i * I + j];
          row[L.b_off[l] + o] = g[o];
        }
      }
    if (l == 0) break;
    Gn.assign(static_cast<size_t>(n * C * I), T(0));
    gemm(false, false, n * C, I, O, G.data(), O, theta + L.w_off[l], I, Gn.data(), I);
    times_act_deriv<T>(net.act, tr.z[l - 1].data(), tr.a[l - 1].data(), n, C, I, Gn.data());
    G.swap(Gn);
  }
}

#define BAYESGRAD_CURV_INST(T)                                                                                   \
  template double sqrt_loss<T>(const T*, const T*, const T*, int64_t, int64_t, int64_t, Likelihood, Kind, T*);   \
  template void linear_diag_accum<T>(const T*, const T*, int64_t, int64_t, int64_t, int64_t, T*, T*);            \
  template void linear_kron_accum<T>(const T*, const T*, int64_t, int64_t, int64_t, int64_t, T*, T*);            \
  template void linear_jacobian<T>(const T*, const T*, int64_t, int64_t, int64_t, int64_t, T*);                  \
  template void gram_accum<T>(const T*, int64_t, int64_t, T*);                                                   \
  template void linear_ggn_vp<T>(const T*, const T*, int64_t, int64_t, int64_t, int64_t, const T*, int64_t, T*);   \
  template void linear_full_accum<T>(const T*, const T*, int64_t, int64_t, int64_t, int64_t, T*);                \
  template double mlp_accum<T>(const CurvatureConfig&, const T*, const T*, const T*, const T*, int64_t, T*);      \
  template void mlp_ggn_vp<T>(const CurvatureConfig&, const T*, const T*, const T*, const T*, int64_t, const T*,  \
                              int64_t, T*);                                                          \
  template void mlp_glm_fvar<T>(const GlmConfig&, const T*, const T*, int64_t, const T*, const T*, T*, T*);       \
  template void mlp_jacobian<T>(const mlp::NetConfig&, const T*, const T*, int64_t, T*, T*);
BAYESGRAD_CURV_INST(float)
BAYESGRAD_CURV_INST(double)
#undef BAYESGRAD_CURV_INST

}  // namespace curvature
}  // namespace bayesgrad
