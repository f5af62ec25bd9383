// MC log-likelihood of the linear-Gaussian hidden-variable model and its
// reparameterisation gradient. Per point n with weights w_s = softmax_s(lp_s):
//   d/dtheta log (1/S) sum_s p(y|z_s(theta)) = sum_s w_s d/dtheta log p(y|z_s(theta)),
// and with r_s = y - Wy z_s - by, g_s = Wy^T r_s / sy^2 = d log p(y|z) / dz:
//   dWy = sum_s w_s r_s z_s^T / sy^2     dby = sum_s w_s r_s / sy^2
//   dlog_sy = sum_s w_s (|r_s|^2 / sy^2 - P)
//   dbz = sum_s w_s g_s   dWz = dbz x^T   dlog_sz = sum_s w_s g_s * sz * eps_s
// Accumulated in double; problems are small per point (K, P ~ tens), so the
// loops are plain C++ rather than BLAS calls.
#include "bayesgrad/latent.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <stdexcept>
#include <vector>

#include "bayesgrad/parallel.hpp"

namespace bayesgrad {

namespace {

template <typename T>
void logp_impl(const LatentDims& d, const T* x, const T* y, const T* Wz, const T* bz, const T* log_sz, const T* Wy,
               const T* by, const T* log_sy, const T* eps, T* logp, T* gWz, T* gbz, T* glog_sz, T* gWy, T* gby,
               T* glog_sy) {
  const int64_t N = d.N, D = d.D, K = d.K, P = d.P, S = d.S;
  if (N < 1 || D < 1 || K < 1 || P < 1 || S < 1) throw std::invalid_argument("latent_logp: all dimensions must be >= 1");
  const bool grad = gWz != nullptr;
  const int64_t nch = std::min<int64_t>(256, (N + 63) / 64);
  const int64_t rows = (N + nch - 1) / nch;
  const int64_t nparam = K * D + K + K + P * K + P + 1;
  std::vector<double> part(static_cast<size_t>(grad ? nch * nparam : 0), 0.0);
  const double sy = std::exp(static_cast<double>(log_sy[0]));
  const double inv_v = 1.0 / (sy * sy);
  const double lconst = -static_cast<double>(P) * (static_cast<double>(log_sy[0]) + 0.5 * std::log(2.0 * M_PI));
  std::vector<double> sz(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) sz[k] = std::exp(static_cast<double>(log_sz[k]));

  // Small problems (minibatch steps of a fit) run serially: a parallel region
  // costs more than the work. The chunking, hence the result, is the same.
  const bool small = N * S * (K * (P + D) + P) < (1 << 16);
  auto run = [&](const std::function<void(int64_t)>& body) {
    if (small) for (int64_t c = 0; c < nch; ++c) body(c);
    else parallel_chunks(nch, body);
  };
  run([&](int64_t ch) {
    const int64_t n0 = ch * rows, n1 = std::min(N, n0 + rows);
    std::vector<double> mu(K), z(S * K), r(S * P), lp(S), gz(K), acc_gz(K);
    double* g = grad ? part.data() + ch * nparam : nullptr;
    double *gWz_ = g, *gbz_ = g + K * D, *gls_ = gbz_ + K, *gWy_ = gls_ + K, *gby_ = gWy_ + P * K,
           *gly_ = gby_ + P;
    if (!grad) gWz_ = gbz_ = gls_ = gWy_ = gby_ = gly_ = nullptr;
    for (int64_t n = n0; n < n1; ++n) {
      const T* xn = x + n * D;
      const T* yn = y + n * P;
      for (int64_t k = 0; k < K; ++k) {
        double a = static_cast<double>(bz[k]);
        for (int64_t j = 0; j < D; ++j) a += static_cast<double>(Wz[k * D + j]) * static_cast<double>(xn[j]);
        mu[k] = a;
      }
      double mx = -INFINITY;
      for (int64_t s = 0; s < S; ++s) {
        const T* e = eps + (s * N + n) * K;
        double* zs = z.data() + s * K;
        for (int64_t k = 0; k < K; ++k) zs[k] = mu[k] + sz[k] * static_cast<double>(e[k]);
        double* rs = r.data() + s * P;
        double ss = 0.0;
        for (int64_t p = 0; p < P; ++p) {
          double a = static_cast<double>(yn[p]) - static_cast<double>(by[p]);
          for (int64_t k = 0; k < K; ++k) a -= static_cast<double>(Wy[p * K + k]) * zs[k];
          rs[p] = a;
          ss += a * a;
        }
        lp[s] = lconst - 0.5 * ss * inv_v;
        mx = std::max(mx, lp[s]);
      }
      double tot = 0.0;
      for (int64_t s = 0; s < S; ++s) tot += std::exp(lp[s] - mx);
      logp[n] = static_cast<T>(mx + std::log(tot) - std::log(static_cast<double>(S)));
      if (!grad) continue;
      std::fill(acc_gz.begin(), acc_gz.end(), 0.0);
      for (int64_t s = 0; s < S; ++s) {
        const double w = std::exp(lp[s] - mx) / tot;
        const double* zs = z.data() + s * K;
        const double* rs = r.data() + s * P;
        const T* e = eps + (s * N + n) * K;
        double ss = 0.0;
        std::fill(gz.begin(), gz.end(), 0.0);
        for (int64_t p = 0; p < P; ++p) {
          const double rv = rs[p] * inv_v;
          ss += rs[p] * rs[p];
          gby_[p] += w * rv;
          for (int64_t k = 0; k < K; ++k) {
            gWy_[p * K + k] += w * rv * zs[k];
            gz[k] += static_cast<double>(Wy[p * K + k]) * rv;
          }
        }
        gly_[0] += w * (ss * inv_v - static_cast<double>(P));
        for (int64_t k = 0; k < K; ++k) {
          acc_gz[k] += w * gz[k];
          gls_[k] += w * gz[k] * sz[k] * static_cast<double>(e[k]);
        }
      }
      for (int64_t k = 0; k < K; ++k) {
        gbz_[k] += acc_gz[k];
        for (int64_t j = 0; j < D; ++j) gWz_[k * D + j] += acc_gz[k] * static_cast<double>(xn[j]);
      }
    }
  });
  if (!grad) return;
  std::vector<double> sum(static_cast<size_t>(nparam), 0.0);
  for (int64_t ch = 0; ch < nch; ++ch)
    for (int64_t i = 0; i < nparam; ++i) sum[i] += part[ch * nparam + i];
  const double* s = sum.data();
  for (int64_t i = 0; i < K * D; ++i) gWz[i] = static_cast<T>(s[i]);
  s += K * D;
  for (int64_t i = 0; i < K; ++i) gbz[i] = static_cast<T>(s[i]);
  s += K;
  for (int64_t i = 0; i < K; ++i) glog_sz[i] = static_cast<T>(s[i]);
  s += K;
  for (int64_t i = 0; i < P * K; ++i) gWy[i] = static_cast<T>(s[i]);
  s += P * K;
  for (int64_t i = 0; i < P; ++i) gby[i] = static_cast<T>(s[i]);
  s += P;
  glog_sy[0] = static_cast<T>(s[0]);
}

}  // namespace

int64_t latent_n_params(const LatentDims& d) { return d.K * d.D + 2 * d.K + d.P * d.K + d.P + 1; }

template <typename T>
void latent_logp(const LatentDims& d, const T* x, const T* y, const T* theta, const T* eps, T* logp, T* grad) {
  // offsets of the packed layout (latent.hpp)
  const int64_t o_bz = d.K * d.D, o_lsz = o_bz + d.K, o_Wy = o_lsz + d.K, o_by = o_Wy + d.P * d.K,
                o_lsy = o_by + d.P;
  T* g = grad;
  logp_impl<T>(d, x, y, theta, theta + o_bz, theta + o_lsz, theta + o_Wy, theta + o_by, theta + o_lsy, eps, logp,
               g, g ? g + o_bz : nullptr, g ? g + o_lsz : nullptr, g ? g + o_Wy : nullptr, g ? g + o_by : nullptr,
               g ? g + o_lsy : nullptr);
}

template void latent_logp<float>(const LatentDims&, const float*, const float*, const float*, const float*, float*,
                                 float*);
template void latent_logp<double>(const LatentDims&, const double*, const double*, const double*, const double*,
                                  double*, double*);

}  // namespace bayesgrad
