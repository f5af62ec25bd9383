// Bayes by Backprop epochs: weight-space reparameterisation (S sampled
// parameter vectors: with the Gaussian prior through vi_layers' wide forward /
// backward and the fused passes of vi_passes.hpp, with the scale mixture
// through the MLP engine), the local reparameterisation trick
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
#include "vi_passes.hpp"

namespace bayesgrad {

namespace {

constexpr double kHalfLog2Pi = 0.91893853320467274178;

using vi_layers::Stoch;
using vi_layers::stoch_backward;
using vi_layers::stoch_forward;
using vi_passes::FusedPost;
using vi_passes::FusedPre;
using vi_passes::PostPass;
using vi_passes::PrePass;
using vi_passes::kPostBlock;

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

// Work buffers reused across the steps of an epoch (no allocation after the first step).
template <typename T>
struct ViWork {
  std::vector<T> sigma, dsig, eps, gF, nlls, W, gW, gn, g2, kg, ed, kr;
  std::vector<double> kl_part;
  mlp::Trace<T> tr;
  vi_layers::WideTrace<T> wt;
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
  const bool fused = weight_space && gauss_prior;
  const int64_t n_chunks = (P + kElementChunk - 1) / kElementChunk;
  const double inv_ps2 = 1.0 / (cfg.prior_sigma * cfg.prior_sigma), log_ps = std::log(cfg.prior_sigma);
  w.nlls.resize(S);
  if (weight_space) w.W.resize(S * P);
  const uint64_t stream_t = philox::fold_in(cfg.stream, static_cast<uint64_t>(step));
  T* W = w.W.data();
  double kl = 0.0;
  if (fused) {
    w.ed.resize(S * P);
    w.kr.resize(P);
    w.kl_part.assign(n_chunks, 0.0);
    const FusedPre<T> fp{&L, P, S, mu, rho, W, w.ed.data(), w.kr.data(), inv_ps2, cfg.seed, stream_t};
    parallel_chunks(n_chunks, [&](int64_t ci) {
      const int64_t j0 = ci * kElementChunk, j1 = std::min(P, j0 + kElementChunk);
      double quad = 0.0, logs = 0.0;
      fp.run(j0, j1, quad, logs);
      w.kl_part[ci] = static_cast<double>(j1 - j0) * (log_ps - 0.5) - logs + 0.5 * quad * inv_ps2;
    });
    for (double a : w.kl_part) kl += a;  // chunk order: the same for any thread count
  } else {
    w.sigma.resize(P);
    w.dsig.resize(P);
    w.eps.resize(need_eps ? S * P : 0);
    const PrePass<T> pre{P, weight_space ? S : 0, need_eps ? S : 0, mu, rho, w.eps.data(), w.sigma.data(),
                         w.dsig.data(), W, cfg.seed, stream_t};
    parallel_chunks(n_chunks,
                    [&](int64_t ci) { pre.run(ci * kElementChunk, std::min(P, (ci + 1) * kElementChunk)); });
  }
  T* sigma = w.sigma.data();
  T* dsig = w.dsig.data();
  const T* eps = w.eps.data();
  const double scale_d = static_cast<double>(N) / static_cast<double>(B);
  const T gscale = static_cast<T>(scale_d / static_cast<double>(S));
  w.gF.resize(S * B * K);
  w.gn.assign(S * Dy, T(0));
  if (fused) {
    w.gW.resize(S * P);
    vi_layers::wide_forward<T>(L, cfg.net.act, W, S, xb, B, w.wt);
    const T* out = w.wt.z.back().data();
    if (wb)
      weighted_nll<T>(cfg.lik, out, yb, S, B, K, log_noise, wb, w.nlls.data(), w.gF.data(), gscale, w.gn.data());
    else
      mlp::nll<T>(cfg.lik, out, yb, S, B, K, log_noise, w.nlls.data(), w.gF.data(), gscale, w.gn.data());
    vi_layers::wide_backward<T>(L, cfg.net.act, W, S, xb, B, w.wt, w.gF.data(), w.gW.data());
  } else if (weight_space) {
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
    stoch_backward<T>(cfg, mu, sigma, eps, xb, B, w.st, w.gF.data(), w.g2.data(), w.g2.data() + P);
  }
  const T klscale = static_cast<T>(scale_d * static_cast<double>(kl_weight));
  const AdamCoeffs<T> adam(cfg.adam, step < 1 ? 1 : step);
  if (fused) {
    FusedPost<T> fq;
    fq.P = P;
    fq.S = S;
    fq.gW = w.gW.data();
    fq.ed = w.ed.data();
    fq.kr = w.kr.data();
    fq.mu = mu;
    fq.rho = rho;
    fq.grad = grad;
    fq.m = m;
    fq.v = v;
    fq.klscale = klscale;
    fq.prior_prec = static_cast<T>(static_cast<double>(klscale) * inv_ps2);
    fq.adam = &adam;
    parallel_chunks(n_chunks, [&](int64_t ci) {
      vi_layers::for_blocks(L, ci * kElementChunk, std::min(P, (ci + 1) * kElementChunk),
                            [&](int64_t a, int64_t b, int64_t seg, int64_t len) { fq.piece(a, b, seg, len); });
    });
  } else {
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
    pp.inv_ps2 = inv_ps2;
    pp.log_ps = log_ps;
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
  }
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
