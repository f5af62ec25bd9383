// Bayes by Backprop epochs: weight-space reparameterisation (through the MLP
// engine with S sampled parameter vectors), the local reparameterisation trick
// (Kingma, Salimans & Welling 2015: sample pre-activations from their exact
// Gaussian given the layer input) and Flipout (Wen et al. 2018: one weight
// perturbation per sample, decorrelated across rows by random sign flips).
// Random words of step t come from stream fold_in(cfg.stream, t):
//   normals  [0, S*P)            eps, laid out like the parameters (weight
//                                space, Flipout's perturbations, the MC KL)
//   normals  [S*P, ...)          local reparameterisation: zeta of layer l
//                                (S, B, d_out(l)), layers one after another
//   uniforms of fold_in(stream_t, codes::kTagFlipout), Flipout's signs: per layer R_in
//                                (S, B, d_in) then R_out (S, B, d_out)
#include "bayesgrad/vi.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "bayesgrad/parallel.hpp"
#include "bayesgrad/philox.hpp"
#include "bayesgrad/random.hpp"
#include "bayesgrad/simd_math.hpp"
#include "vi_layers.hpp"

namespace bayesgrad {

namespace {

constexpr double kHalfLog2Pi = 0.91893853320467274178;

using vi_layers::Stoch;
using vi_layers::stoch_backward;
using vi_layers::stoch_forward;

}  // namespace

template <typename T>
double vi_kl(const ViConfig& cfg, const T* mu, const T* sigma, const T* eps, int64_t S, T* gmu, T* gsigma,
             T scale) {
  const int64_t P = cfg.net.layout.n_params;
  double kl = 0.0;
  if (cfg.prior == ViPrior::kGaussian) {
    const double s2 = cfg.prior_sigma * cfg.prior_sigma;
    const double log_s = std::log(cfg.prior_sigma);
    for (int64_t j = 0; j < P; ++j) {
      const double m = mu[j], sg = sigma[j];
      kl += log_s - std::log(sg) + 0.5 * (sg * sg + m * m) / s2 - 0.5;
      if (gmu) {
        gmu[j] += scale * static_cast<T>(m / s2);
        gsigma[j] += scale * static_cast<T>(sg / s2 - 1.0 / sg);
      }
    }
    return kl;
  }
  // Scale mixture: KL_s = sum_j log q(w_j) - log p(w_j) at w = mu + sigma eps_s;
  // log q(w) = -log sigma - eps^2/2 - log(2 pi)/2 does not depend on mu.
  const double pi = cfg.mix_pi, s1 = cfg.mix_s1, s2 = cfg.mix_s2;
  const double la = std::log(pi) - std::log(s1), lb = std::log1p(-pi) - std::log(s2);
  const T inv_s = scale / static_cast<T>(S);
  for (int64_t s = 0; s < S; ++s)
    for (int64_t j = 0; j < P; ++j) {
      const double e = eps[s * P + j], sg = sigma[j];
      const double w = mu[j] + sg * e;
      const double ta = la - 0.5 * (w / s1) * (w / s1), tb = lb - 0.5 * (w / s2) * (w / s2);
      const double mx = std::max(ta, tb);
      const double lse = mx + std::log(std::exp(ta - mx) + std::exp(tb - mx));
      const double ra = std::exp(ta - lse), rb = std::exp(tb - lse);  // responsibilities
      const double log_p = lse - kHalfLog2Pi;
      const double log_q = -std::log(sg) - 0.5 * e * e - kHalfLog2Pi;
      kl += (log_q - log_p) / static_cast<double>(S);
      if (gmu) {
        const double dlogp = -w * (ra / (s1 * s1) + rb / (s2 * s2));
        gmu[j] += inv_s * static_cast<T>(-dlogp);
        gsigma[j] += inv_s * static_cast<T>(-1.0 / sg - e * dlogp);
      }
    }
  return kl;
}

// The transcendental parts of the element-wise passes, as a policy: Scalar
// (libm, the reference path) and Avx2 (simd_math.hpp). The passes themselves
// are written once (PrePass, PostPass::block_impl) and compiled twice: as is,
// and inlined (flatten) into a BG_AVX2 wrapper, where the plain loops
// vectorise 8 (float) / 4 (double) lanes wide and the Avx2 ops are inlined.
struct ScalarOps {
  // sigma = softplus(rho) = log1p(exp(rho)) and its derivative, the logistic,
  // sharing one exp: both from e = exp(-|rho|), stable for either sign.
  template <typename T>
  static void softplus(const T* rho, T* sigma, T* dsig, int64_t n) {
    for (int64_t j = 0; j < n; ++j) {
      const T r = rho[j];
      const T e = std::exp(-std::abs(r));
      sigma[j] = (r > T(0) ? r : T(0)) + std::log1p(e);
      dsig[j] = (r >= T(0) ? T(1) : e) / (T(1) + e);
    }
  }
  // The sums of the Gaussian KL in double: quad += sum_j sigma_j^2 + mu_j^2,
  // logs += sum_j ln sigma_j.
  template <typename T>
  static void kl_sums(const T* mu, const T* sigma, int64_t n, double& quad, double& logs) {
    for (int64_t k = 0; k < n; ++k) {
      const double md = mu[k], sd = sigma[k];
      quad += sd * sd + md * md;
      logs += static_cast<double>(std::log(sigma[k]));
    }
  }
};

#if BG_HAVE_X86
struct Avx2Ops {
  BG_AVX2 static void softplus(const float* rho, float* sigma, float* dsig, int64_t n) {
    const __m256 neg = _mm256_set1_ps(-0.0f), zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      const __m256 r = _mm256_loadu_ps(rho + j);
      const __m256 e = simd::expx8(_mm256_or_ps(r, neg));  // exp(-|r|)
      _mm256_storeu_ps(sigma + j, _mm256_add_ps(_mm256_max_ps(r, zero), simd::log1px8(e)));
      const __m256 num = _mm256_blendv_ps(e, one, _mm256_cmp_ps(r, zero, _CMP_GE_OQ));
      _mm256_storeu_ps(dsig + j, _mm256_div_ps(num, _mm256_add_ps(one, e)));
    }
    ScalarOps::softplus(rho + j, sigma + j, dsig + j, n - j);
  }
  BG_AVX2 static void softplus(const double* rho, double* sigma, double* dsig, int64_t n) {
    const __m256d neg = _mm256_set1_pd(-0.0), zero = _mm256_setzero_pd(), one = _mm256_set1_pd(1.0);
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
      const __m256d r = _mm256_loadu_pd(rho + j);
      const __m256d e = simd::expx4(_mm256_or_pd(r, neg));
      _mm256_storeu_pd(sigma + j, _mm256_add_pd(_mm256_max_pd(r, zero), simd::log1px4(e)));
      const __m256d num = _mm256_blendv_pd(e, one, _mm256_cmp_pd(r, zero, _CMP_GE_OQ));
      _mm256_storeu_pd(dsig + j, _mm256_div_pd(num, _mm256_add_pd(one, e)));
    }
    ScalarOps::softplus(rho + j, sigma + j, dsig + j, n - j);
  }
  // Lane sums in double, then the lanes: the order differs from the scalar
  // loop only by double rounding. logx8 needs normal positive finite
  // sigma: a group of lanes with any other (0, subnormal, inf, NaN) takes
  // the scalar path, so that log 0 = -inf and NaN come out as with libm.
  BG_AVX2 static void kl_sums(const float* mu, const float* sigma, int64_t n, double& quad, double& logs) {
    __m256d q = _mm256_setzero_pd(), lg = _mm256_setzero_pd();
    const __m256 lo = _mm256_set1_ps(1.17549435e-38f), hi = _mm256_set1_ps(3.40282347e+38f);
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
      const __m256 s = _mm256_loadu_ps(sigma + k);
      const __m256 bad = _mm256_or_ps(_mm256_cmp_ps(s, lo, _CMP_NGE_UQ), _mm256_cmp_ps(s, hi, _CMP_GT_OQ));
      if (_mm256_movemask_ps(bad)) {
        ScalarOps::kl_sums(mu + k, sigma + k, 8, quad, logs);
        continue;
      }
      const __m256 l = simd::logx8(s);
      const __m256 m = _mm256_loadu_ps(mu + k);
      for (int h = 0; h < 2; ++h) {
        const __m256d sd = _mm256_cvtps_pd(h ? _mm256_extractf128_ps(s, 1) : _mm256_castps256_ps128(s));
        const __m256d md = _mm256_cvtps_pd(h ? _mm256_extractf128_ps(m, 1) : _mm256_castps256_ps128(m));
        const __m256d ld = _mm256_cvtps_pd(h ? _mm256_extractf128_ps(l, 1) : _mm256_castps256_ps128(l));
        q = _mm256_add_pd(q, _mm256_add_pd(_mm256_mul_pd(sd, sd), _mm256_mul_pd(md, md)));
        lg = _mm256_add_pd(lg, ld);
      }
    }
    quad += hsum(q);
    logs += hsum(lg);
    ScalarOps::kl_sums(mu + k, sigma + k, n - k, quad, logs);
  }
  BG_AVX2 static void kl_sums(const double* mu, const double* sigma, int64_t n, double& quad, double& logs) {
    __m256d q = _mm256_setzero_pd(), lg = _mm256_setzero_pd();
    const __m256d lo = _mm256_set1_pd(2.2250738585072014e-308), hi = _mm256_set1_pd(1.7976931348623157e308);
    int64_t k = 0;
    for (; k + 4 <= n; k += 4) {
      const __m256d s = _mm256_loadu_pd(sigma + k);
      const __m256d bad = _mm256_or_pd(_mm256_cmp_pd(s, lo, _CMP_NGE_UQ), _mm256_cmp_pd(s, hi, _CMP_GT_OQ));
      if (_mm256_movemask_pd(bad)) {
        ScalarOps::kl_sums(mu + k, sigma + k, 4, quad, logs);
        continue;
      }
      const __m256d m = _mm256_loadu_pd(mu + k);
      q = _mm256_add_pd(q, _mm256_add_pd(_mm256_mul_pd(s, s), _mm256_mul_pd(m, m)));
      lg = _mm256_add_pd(lg, simd::logx4(s));
    }
    quad += hsum(q);
    logs += hsum(lg);
    ScalarOps::kl_sums(mu + k, sigma + k, n - k, quad, logs);
  }
  BG_AVX2 static double hsum(__m256d a) {
    alignas(32) double t[4];
    _mm256_store_pd(t, a);
    return (t[0] + t[1]) + (t[2] + t[3]);
  }
};
#endif

// The pass before the forward pass over parameters [j0, j1): sigma =
// softplus(rho), d sigma / d rho, and (S > 0, weight space) the sampled
// weights W_s = mu + sigma eps_s.
template <typename T>
struct PrePass {
  int64_t P, S;
  const T *mu, *rho, *eps;
  T *sigma, *dsig, *W;

  void run(int64_t j0, int64_t j1) const {
#if BG_HAVE_X86
    if (simd::use_avx2()) return run_avx2(j0, j1);
#endif
    run_impl<ScalarOps>(j0, j1);
  }
#if BG_HAVE_X86
  BG_AVX2 __attribute__((flatten)) void run_avx2(int64_t j0, int64_t j1) const { run_impl<Avx2Ops>(j0, j1); }
#endif

  template <class Ops>
  void run_impl(int64_t j0, int64_t j1) const {
    Ops::softplus(rho + j0, sigma + j0, dsig + j0, j1 - j0);
    const T* __restrict m = mu + j0;
    const T* __restrict sg = sigma + j0;
    for (int64_t s = 0; s < S; ++s) {
      const T* __restrict e = eps + s * P + j0;
      T* __restrict w = W + s * P + j0;
      for (int64_t j = 0; j < j1 - j0; ++j) w[j] = m[j] + sg[j] * e[j];
    }
  }
};

// The pass after the backward pass over parameters [j0, j1), in blocks small
// enough for stack buffers, written as simple loops the compiler vectorises
// (the only calls left are the logs of the KL): gradients w.r.t. mu and
// sigma (sums over the S samples, or the stochastic-layer gradients g2), the
// KL (Gaussian prior closed form, or the precomputed Monte Carlo gradient kg),
// the chain rule through softplus, then either the gradient into grad or the
// Adam update of mu and rho. Returns the KL of the block (Gaussian prior).
constexpr int64_t kPostBlock = 256;

template <typename T>
struct PostPass {
  int64_t P, S;  // S = 0: gradients come from g2 (stochastic layers)
  const T *gW, *eps, *g2, *kg, *sigma, *dsig;
  T *mu, *rho, *grad, *m, *v;
  T klscale;
  double inv_ps2, log_ps;
  const AdamCoeffs<T>* adam;

  double block(int64_t j0, int64_t j1) const {
#if BG_HAVE_X86
    if (simd::use_avx2()) return block_avx2(j0, j1);
#endif
    return block_impl<ScalarOps>(j0, j1);
  }
#if BG_HAVE_X86
  BG_AVX2 __attribute__((flatten)) double block_avx2(int64_t j0, int64_t j1) const {
    return block_impl<Avx2Ops>(j0, j1);
  }
#endif

  template <class Ops>
  double block_impl(int64_t j0, int64_t j1) const {
    const int64_t n = j1 - j0;
    T gm[kPostBlock], gs[kPostBlock];
    const T* __restrict sg = sigma + j0;
    const T* __restrict mj = mu + j0;
    if (S > 0) {
      for (int64_t k = 0; k < n; ++k) gm[k] = gs[k] = T(0);
      for (int64_t s = 0; s < S; ++s) {
        const T* __restrict g = gW + s * P + j0;
        const T* __restrict e = eps + s * P + j0;
        for (int64_t k = 0; k < n; ++k) {
          gm[k] += g[k];
          gs[k] += g[k] * e[k];
        }
      }
    } else {
      std::copy(g2 + j0, g2 + j1, gm);
      std::copy(g2 + P + j0, g2 + P + j1, gs);
    }
    double kl = 0.0;
    if (kg == nullptr) {
      // KL(N(mu, sigma^2) || N(0, prior_sigma^2)) summed; its gradient in double as the float64 reference does.
      double quad = 0.0, logs = 0.0;
      Ops::kl_sums(mj, sg, n, quad, logs);
      kl = static_cast<double>(n) * (log_ps - 0.5) - logs + 0.5 * quad * inv_ps2;
      for (int64_t k = 0; k < n; ++k) {
        const double md = mj[k], sd = sg[k];
        gm[k] += klscale * static_cast<T>(md * inv_ps2);
        gs[k] += klscale * static_cast<T>(sd * inv_ps2 - 1.0 / sd);
      }
    } else {
      for (int64_t k = 0; k < n; ++k) {
        gm[k] += kg[j0 + k];
        gs[k] += kg[P + j0 + k];
      }
    }
    const T* __restrict ds = dsig + j0;
    for (int64_t k = 0; k < n; ++k) gs[k] *= ds[k];
    if (grad) {
      std::copy(gm, gm + n, grad + j0);
      std::copy(gs, gs + n, grad + P + j0);
      return kl;
    }
    const AdamCoeffs<T> a = *adam;
    T* __restrict pm = mu + j0;
    T* __restrict mm = m + j0;
    T* __restrict vm = v + j0;
    for (int64_t k = 0; k < n; ++k) a.update(pm[k], gm[k], mm[k], vm[k]);
    T* __restrict pr = rho + j0;
    T* __restrict mr = m + P + j0;
    T* __restrict vr = v + P + j0;
    for (int64_t k = 0; k < n; ++k) a.update(pr[k], gs[k], mr[k], vr[k]);
    return kl;
  }
};

// Work buffers reused across the steps of an epoch (no allocation after the first step).
template <typename T>
struct ViWork {
  std::vector<T> sigma, dsig, eps, gF, nlls, W, gW, gn, g2, kg;
  std::vector<double> kl_part;
  mlp::Trace<T> tr;
  Stoch<T> st;
};

// One minibatch (rows xb, yb) at step `step`: the objective
// (N / B) (mean_s nll_s + kl_weight KL) and its gradient w.r.t. state =
// [mu, rho, log_noise]. With grad non-null the gradient is written there;
// otherwise Adam step `step` (moments m, v) is applied to state in place.
// stats3 = (mean nll, KL, objective).
//
// The element-wise work over the P parameters is two parallel passes, each
// outside any BLAS call: before the forward pass sigma = softplus(rho),
// d sigma / d rho and the sampled weights; after the backward pass the sums
// over samples, the KL and its gradient, the chain rule through softplus and
// the Adam update.
template <typename T>
void vi_batch(const ViConfig& cfg, T* state, const T* xb, const T* yb, int64_t B, int64_t N, int64_t step,
              T kl_weight, T* grad, T* m, T* v, T* stats3, ViWork<T>& w, const T* wb = nullptr) {
  const mlp::Layout& L = cfg.net.layout;
  const int64_t P = L.n_params, K = L.d_output(), S = cfg.n_samples;
  const int64_t Dy = mlp::target_dim(cfg.lik, K);
  T* mu = state;
  T* rho = state + P;
  const T* log_noise = state + 2 * P;
  const bool weight_space = cfg.estimator == ViEstimator::kWeightSpace;
  const bool gauss_prior = cfg.prior == ViPrior::kGaussian;
  const bool need_eps = cfg.estimator != ViEstimator::kLocalReparam || !gauss_prior;
  const int64_t n_chunks = (P + kElementChunk - 1) / kElementChunk;
  w.sigma.resize(P);
  w.dsig.resize(P);
  w.eps.resize(need_eps ? S * P : 0);
  w.nlls.resize(S);
  if (weight_space) w.W.resize(S * P);
  const uint64_t stream_t = philox::fold_in(cfg.stream, static_cast<uint64_t>(step));
  if (need_eps) fill_normal<T>(w.eps.data(), S * P, cfg.seed, stream_t, 0);
  T* sigma = w.sigma.data();
  T* dsig = w.dsig.data();
  const T* eps = w.eps.data();
  T* W = w.W.data();
  const PrePass<T> pre{P, weight_space ? S : 0, mu, rho, eps, sigma, dsig, W};
  parallel_chunks(n_chunks, [&](int64_t ci) { pre.run(ci * kElementChunk, std::min(P, (ci + 1) * kElementChunk)); });
  const double scale_d = static_cast<double>(N) / static_cast<double>(B);
  const T gscale = static_cast<T>(scale_d / static_cast<double>(S));
  w.gF.resize(S * B * K);
  w.gn.assign(S * Dy, T(0));
  if (weight_space) {
    w.gW.resize(S * P);
    mlp::forward<T>(L, cfg.net.act, W, S, P, xb, B, 0, w.tr);
    if (wb)
      weighted_nll<T>(cfg.lik, w.tr.output(), yb, S, B, K, log_noise, wb, w.nlls.data(), w.gF.data(), gscale,
                      w.gn.data());
    else
      mlp::nll<T>(cfg.lik, w.tr.output(), yb, S, B, K, log_noise, w.nlls.data(), w.gF.data(), gscale, w.gn.data());
    mlp::backward<T>(L, cfg.net.act, W, P, xb, 0, w.tr, w.gF.data(), w.gW.data(), P);
  } else {
    w.g2.resize(2 * P);
    stoch_forward<T>(cfg, mu, sigma, eps, xb, B, stream_t, w.st);
    if (wb)
      weighted_nll<T>(cfg.lik, w.st.z.back().data(), yb, S, B, K, log_noise, wb, w.nlls.data(), w.gF.data(),
                      gscale, w.gn.data());
    else
      mlp::nll<T>(cfg.lik, w.st.z.back().data(), yb, S, B, K, log_noise, w.nlls.data(), w.gF.data(), gscale,
                  w.gn.data());
    stoch_backward<T>(cfg, mu, sigma, eps, B, w.st, w.gF.data(), w.g2.data(), w.g2.data() + P);
  }
  const T klscale = static_cast<T>(scale_d * static_cast<double>(kl_weight));
  double kl = 0.0;
  if (!gauss_prior) {  // Monte Carlo KL of the scale mixture (its gradient into kg)
    w.kg.assign(2 * P, T(0));
    kl = vi_kl<T>(cfg, mu, sigma, eps, S, w.kg.data(), w.kg.data() + P, klscale);
  }
  PostPass<T> pp;
  pp.P = P;
  pp.S = weight_space ? S : 0;
  pp.gW = w.gW.data();
  pp.eps = eps;
  pp.g2 = w.g2.data();
  pp.kg = gauss_prior ? nullptr : w.kg.data();
  pp.mu = mu;
  pp.rho = rho;
  pp.sigma = sigma;
  pp.dsig = dsig;
  pp.grad = grad;
  pp.m = m;
  pp.v = v;
  pp.klscale = klscale;
  pp.inv_ps2 = 1.0 / (cfg.prior_sigma * cfg.prior_sigma);
  pp.log_ps = std::log(cfg.prior_sigma);
  const AdamCoeffs<T> adam(cfg.adam, step < 1 ? 1 : step);
  pp.adam = &adam;
  w.kl_part.assign(n_chunks, 0.0);
  parallel_chunks(n_chunks, [&](int64_t ci) {
    const int64_t j0 = ci * kElementChunk, j1 = std::min(P, j0 + kElementChunk);
    double acc = 0.0;
    for (int64_t j = j0; j < j1; j += kPostBlock) acc += pp.block(j, std::min(j1, j + kPostBlock));
    w.kl_part[ci] = acc;
  });
  if (gauss_prior)
    for (double a : w.kl_part) kl += a;
  for (int64_t d = 0; d < Dy; ++d) {
    T acc = T(0);
    if (cfg.learn_noise)
      for (int64_t s = 0; s < S; ++s) acc += w.gn[s * Dy + d];
    if (grad)
      grad[2 * P + d] = acc;
    else
      adam.update(state[2 * P + d], acc, m[2 * P + d], v[2 * P + d]);
  }
  double nll_mean = 0.0;
  for (int64_t s = 0; s < S; ++s) nll_mean += double(w.nlls[s]);
  nll_mean /= static_cast<double>(S);
  stats3[0] = static_cast<T>(nll_mean);
  stats3[1] = static_cast<T>(kl);
  stats3[2] = static_cast<T>(scale_d * (nll_mean + double(kl_weight) * kl));
}

template <typename T>
void vi_grad(const ViConfig& cfg, const T* state, const T* X, const T* y, int64_t N, int64_t step, T kl_weight,
             T* grad, T* stats3) {
  ViWork<T> w;
  // With grad given, vi_batch leaves state untouched.
  vi_batch<T>(cfg, const_cast<T*>(state), X, y, N, N, step, kl_weight, grad, nullptr, nullptr, stats3, w);
}

template <typename T>
int64_t vi_epoch(const ViConfig& cfg, T* state, T* m, T* v, int64_t step, const T* X, const T* y, int64_t N,
                 const Batches& batches, const T* kl_weight, T* stats, const T* weights) {
  const mlp::Layout& L = cfg.net.layout;
  const int64_t D = L.d_input();
  const int64_t Dy = mlp::target_dim(cfg.lik, L.d_output());
  std::vector<T> xb, yb, wb;
  ViWork<T> w;
  for (int64_t i = 0; i < batches.count(); ++i) {
    const int64_t B = batches.size(i);
    const int64_t* rows = batches.perm + batches.start(i);
    xb.resize(B * D);
    yb.resize(B * Dy);
    gather_rows(X, D, rows, B, xb.data());
    gather_rows(y, Dy, rows, B, yb.data());
    if (weights) {
      wb.resize(B);
      gather_rows(weights, 1, rows, B, wb.data());
    }
    ++step;
    vi_batch<T>(cfg, state, xb.data(), yb.data(), B, N, step, kl_weight[i], nullptr, m, v, stats + 3 * i, w,
                weights ? wb.data() : nullptr);
  }
  return step;
}

template double vi_kl<float>(const ViConfig&, const float*, const float*, const float*, int64_t, float*, float*,
                             float);
template double vi_kl<double>(const ViConfig&, const double*, const double*, const double*, int64_t, double*,
                              double*, double);
template void vi_grad<float>(const ViConfig&, const float*, const float*, const float*, int64_t, int64_t, float,
                             float*, float*);
template void vi_grad<double>(const ViConfig&, const double*, const double*, const double*, int64_t, int64_t,
                              double, double*, double*);
template int64_t vi_epoch<float>(const ViConfig&, float*, float*, float*, int64_t, const float*, const float*,
                                 int64_t, const Batches&, const float*, float*, const float*);
template int64_t vi_epoch<double>(const ViConfig&, double*, double*, double*, int64_t, const double*,
                                  const double*, int64_t, const Batches&, const double*, double*, const double*);

}  // namespace bayesgrad
