// Adam (fused: one pass updates both moments and the parameters) and the MAP /
// MC-dropout training epoch. The epoch (or a slice of its minibatches, ~0.1 s,
// so that Ctrl-C is prompt) runs entirely here, with the GIL released by the binding.
#include "bayesgrad/optim.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "bayesgrad/parallel.hpp"
#include "bayesgrad/philox.hpp"
#include "bayesgrad/random.hpp"
#include "bayesgrad/simd_math.hpp"

namespace bayesgrad {

template <typename T>
AdamCoeffs<T>::AdamCoeffs(const AdamConfig& c, int64_t t) {
  if (t < 1) throw std::invalid_argument("Adam step count must be >= 1");
  const double bc1 = 1.0 - std::pow(c.beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(c.beta2, static_cast<double>(t));
  b1 = static_cast<T>(c.beta1);
  b2 = static_cast<T>(c.beta2);
  lr_t = static_cast<T>(c.lr / bc1);
  inv_sqrt_bc2 = static_cast<T>(1.0 / std::sqrt(bc2));
  eps = static_cast<T>(c.eps);
}

template <typename T>
void adam_step(T* p, const T* g, T* m, T* v, int64_t n, int64_t t, const AdamConfig& c) {
  const AdamCoeffs<T> k(c, t);
  const int64_t n_chunks = (n + kElementChunk - 1) / kElementChunk;
  parallel_chunks(n_chunks, [&](int64_t ci) {
    const int64_t end = std::min(n, (ci + 1) * kElementChunk);
    for (int64_t i = ci * kElementChunk; i < end; ++i) k.update(p[i], g[i], m[i], v[i]);
  });
}

double SgdConfig::rate(int64_t t) const { return a0 / std::pow(t0 + static_cast<double>(t), kappa); }

template <typename T>
void sgd_step(T* p, const T* g, int64_t n, int64_t t, const SgdConfig& c) {
  if (t < 1) throw std::invalid_argument("SGD step count must be >= 1");
  const T a = static_cast<T>(c.rate(t));
  for (int64_t i = 0; i < n; ++i) p[i] -= a * g[i];
}

template <typename T>
void gather_rows(const T* X, int64_t D, const int64_t* rows, int64_t B, T* xb) {
  for (int64_t i = 0; i < B; ++i) std::copy(X + rows[i] * D, X + rows[i] * D + D, xb + i * D);
}

namespace {

// The MAP pass over parameters [j0, j1): weight decay, its energy (returned)
// and the Adam update. The energy has its own loop with four partial sums: a
// double reduction inside the Adam loop would keep that loop scalar (no
// reassociation without fast-math).
template <typename T>
struct MapUpdate {
  T *state, *m, *v;
  const T *grad, *prior_prec;
  const AdamCoeffs<T>* adam;

  double run(int64_t j0, int64_t j1) const {
#if BG_HAVE_X86
    if (simd::use_avx2()) return run_avx2(j0, j1);
#endif
    return run_impl(j0, j1);
  }
#if BG_HAVE_X86
  // The same loops compiled for AVX2 (8 float / 4 double lanes).
  BG_AVX2 __attribute__((flatten)) double run_avx2(int64_t j0, int64_t j1) const { return run_impl(j0, j1); }
#endif
  double run_impl(int64_t j0, int64_t j1) const {
    const T* __restrict th = state + j0;
    const T* __restrict pp = prior_prec + j0;
    const int64_t n = j1 - j0;
    double acc[4] = {0.0, 0.0, 0.0, 0.0};
    int64_t k = 0;
    for (; k + 4 <= n; k += 4)
      for (int u = 0; u < 4; ++u) acc[u] += 0.5 * double(pp[k + u]) * double(th[k + u]) * double(th[k + u]);
    for (; k < n; ++k) acc[0] += 0.5 * double(pp[k]) * double(th[k]) * double(th[k]);
    const AdamCoeffs<T> a = *adam;
    T* __restrict p = state + j0;
    T* __restrict mm = m + j0;
    T* __restrict vv = v + j0;
    const T* __restrict g = grad + j0;
    for (k = 0; k < n; ++k) a.update(p[k], g[k] + pp[k] * p[k], mm[k], vv[k]);
    return (acc[0] + acc[1]) + (acc[2] + acc[3]);
  }
};

}  // namespace

template <typename T>
void weighted_nll(mlp::Likelihood lik, const T* F, const T* y, int64_t S, int64_t N, int64_t K, const T* log_noise,
                  const T* w, T* out, T* g_F, T scale, T* g_log_noise) {
  // Row by row through mlp::nll (one definition of each likelihood): the weight
  // enters the gradient through the scale and the value through the sum.
  const int64_t Dy = mlp::target_dim(lik, K);
  std::vector<T> gn(Dy);
  for (int64_t s = 0; s < S; ++s) {
    double acc = 0.0;
    T* gns = g_log_noise ? g_log_noise + s * Dy : nullptr;
    if (gns) std::fill(gns, gns + Dy, T(0));
    for (int64_t n = 0; n < N; ++n) {
      const int64_t off = (s * N + n) * K;
      T r;
      mlp::nll<T>(lik, F + off, y + n * Dy, 1, 1, K, log_noise, &r, g_F ? g_F + off : nullptr, scale * w[n],
                  gns ? gn.data() : nullptr);
      acc += double(w[n]) * double(r);
      if (gns)
        for (int64_t d = 0; d < Dy; ++d) gns[d] += gn[d];
    }
    out[s] = static_cast<T>(acc);
  }
}

template <typename T>
int64_t map_epoch(const MapConfig& cfg, T* state, T* m, T* v, int64_t step, const T* X, const T* y, int64_t N,
                  const Batches& batches, const T* prior_prec, T* stats, const T* weights) {
  const mlp::Layout& L = cfg.net.layout;
  const int64_t P = L.n_params, D = L.d_input(), K = L.d_output();
  const int64_t Dy = mlp::target_dim(cfg.lik, K);
  const int64_t n_state = P + Dy;
  const int64_t H = L.n_hidden_units;
  const bool dropout = cfg.dropout_p > 0.0 && H > 0;
  const T keep_scale = dropout ? static_cast<T>(1.0 / (1.0 - cfg.dropout_p)) : T(1);
  std::vector<T> xb, yb, grad(n_state), gF, mask, wb;
  std::vector<double> prior_part;
  mlp::Trace<T> tr;
  mlp::Masks<T> mk;
  for (int64_t i = 0; i < batches.count(); ++i) {
    const int64_t B = batches.size(i);
    const int64_t* rows = batches.perm + batches.start(i);
    xb.resize(B * D);
    yb.resize(B * Dy);
    gF.resize(B * K);
    gather_rows(X, D, rows, B, xb.data());
    gather_rows(y, Dy, rows, B, yb.data());
    if (weights) {
      wb.resize(B);
      gather_rows(weights, 1, rows, B, wb.data());
    }
    ++step;
    if (dropout) {
      mask.resize(B * H);
      fill_uniform<T>(mask.data(), B * H, cfg.seed, philox::fold_in(cfg.dropout_stream, step), 0);
      const T p = static_cast<T>(cfg.dropout_p);
      for (T& u : mask) u = u > p ? keep_scale : T(0);
      mk.m = mask.data();
      mk.row_stride = H;
      mk.s_stride = B * H;
    }
    const mlp::Masks<T>* mp = dropout ? &mk : nullptr;
    mlp::forward<T>(L, cfg.net.act, state, 1, 0, xb.data(), B, 0, tr, mp);
    const T scale = static_cast<T>(static_cast<double>(N) / static_cast<double>(B));
    T nll_i;
    T* gnoise = cfg.learn_noise ? grad.data() + P : nullptr;
    if (weights)
      weighted_nll<T>(cfg.lik, tr.output(), yb.data(), 1, B, K, state + P, wb.data(), &nll_i, gF.data(), scale,
                      gnoise);
    else
      mlp::nll<T>(cfg.lik, tr.output(), yb.data(), 1, B, K, state + P, &nll_i, gF.data(), scale, gnoise);
    if (!cfg.learn_noise) std::fill(grad.begin() + P, grad.end(), T(0));
    mlp::backward<T>(L, cfg.net.act, state, 0, xb.data(), 0, tr, gF.data(), grad.data(), 0, nullptr, mp);
    // Weight decay, its energy and the Adam update in one parallel pass.
    const AdamCoeffs<T> k(cfg.adam, step);
    const int64_t n_chunks = (P + kElementChunk - 1) / kElementChunk;
    prior_part.assign(n_chunks, 0.0);
    const MapUpdate<T> upd{state, m, v, grad.data(), prior_prec, &k};
    parallel_chunks(n_chunks, [&](int64_t ci) {
      prior_part[ci] = upd.run(ci * kElementChunk, std::min(P, (ci + 1) * kElementChunk));
    });
    for (int64_t j = P; j < n_state; ++j) k.update(state[j], grad[j], m[j], v[j]);
    double prior = 0.0;
    for (double a : prior_part) prior += a;
    stats[2 * i] = nll_i;
    stats[2 * i + 1] = static_cast<T>(double(scale) * double(nll_i) + prior);
  }
  return step;
}

template struct AdamCoeffs<float>;
template struct AdamCoeffs<double>;
template void adam_step<float>(float*, const float*, float*, float*, int64_t, int64_t, const AdamConfig&);
template void adam_step<double>(double*, const double*, double*, double*, int64_t, int64_t, const AdamConfig&);
template void sgd_step<float>(float*, const float*, int64_t, int64_t, const SgdConfig&);
template void sgd_step<double>(double*, const double*, int64_t, int64_t, const SgdConfig&);
template void gather_rows<float>(const float*, int64_t, const int64_t*, int64_t, float*);
template void gather_rows<double>(const double*, int64_t, const int64_t*, int64_t, double*);
template int64_t map_epoch<float>(const MapConfig&, float*, float*, float*, int64_t, const float*, const float*,
                                  int64_t, const Batches&, const float*, float*, const float*);
template int64_t map_epoch<double>(const MapConfig&, double*, double*, double*, int64_t, const double*,
                                   const double*, int64_t, const Batches&, const double*, double*, const double*);
template void weighted_nll<float>(mlp::Likelihood, const float*, const float*, int64_t, int64_t, int64_t,
                                  const float*, const float*, float*, float*, float, float*);
template void weighted_nll<double>(mlp::Likelihood, const double*, const double*, int64_t, int64_t, int64_t,
                                   const double*, const double*, double*, double*, double, double*);

}  // namespace bayesgrad
