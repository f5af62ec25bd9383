// Adam (fused: one pass updates both moments and the parameters) and the MAP /
// MC-dropout training epoch. The epoch runs entirely here, with the GIL
// released by the binding; Python calls it once per epoch.
#include "bayesgrad/optim.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "bayesgrad/philox.hpp"
#include "bayesgrad/random.hpp"

namespace bayesgrad {

template <typename T>
void adam_step(T* p, const T* g, T* m, T* v, int64_t n, int64_t t, const AdamConfig& c) {
  if (t < 1) throw std::invalid_argument("Adam step count must be >= 1");
  const T b1 = static_cast<T>(c.beta1), b2 = static_cast<T>(c.beta2);
  // Bias corrections folded into the step size (Kingma & Ba, sec. 2).
  const double bc1 = 1.0 - std::pow(c.beta1, static_cast<double>(t));
  const double bc2 = 1.0 - std::pow(c.beta2, static_cast<double>(t));
  const T lr_t = static_cast<T>(c.lr / bc1);
  const T inv_sqrt_bc2 = static_cast<T>(1.0 / std::sqrt(bc2));
  const T eps = static_cast<T>(c.eps);
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i];
    const T mi = b1 * m[i] + (T(1) - b1) * gi;
    const T vi = b2 * v[i] + (T(1) - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= lr_t * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
  }
}

template <typename T>
void gather_rows(const T* X, int64_t D, const int64_t* rows, int64_t B, T* xb) {
  for (int64_t i = 0; i < B; ++i) std::copy(X + rows[i] * D, X + rows[i] * D + D, xb + i * D);
}

template <typename T>
int64_t map_epoch(const MapConfig& cfg, T* state, T* m, T* v, int64_t step, const T* X, const T* y, int64_t N,
                  const Batches& batches, const T* prior_prec, T* stats) {
  const mlp::Layout& L = cfg.layout;
  const int64_t P = L.n_params, D = L.d_input(), K = L.d_output();
  const int64_t Dy = mlp::target_dim(cfg.lik, K);
  const int64_t n_state = P + Dy;
  const int64_t H = L.n_hidden_units;
  const bool dropout = cfg.dropout_p > 0.0 && H > 0;
  const T keep_scale = dropout ? static_cast<T>(1.0 / (1.0 - cfg.dropout_p)) : T(1);
  std::vector<T> xb, yb, grad(n_state), gF, mask;
  mlp::Trace<T> tr;
  for (int64_t i = 0; i < batches.count(); ++i) {
    const int64_t B = batches.size(i);
    const int64_t* rows = batches.perm + batches.start(i);
    xb.resize(B * D);
    yb.resize(B * Dy);
    gF.resize(B * K);
    gather_rows(X, D, rows, B, xb.data());
    gather_rows(y, Dy, rows, B, yb.data());
    ++step;
    mlp::Masks<T> mk;
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
    mlp::forward<T>(L, cfg.act, state, 1, 0, xb.data(), B, 0, tr, mp);
    const T scale = static_cast<T>(static_cast<double>(N) / static_cast<double>(B));
    T nll_i;
    T* gnoise = cfg.learn_noise ? grad.data() + P : nullptr;
    mlp::nll<T>(cfg.lik, tr.output(), yb.data(), 1, B, K, state + P, &nll_i, gF.data(), scale, gnoise);
    if (!cfg.learn_noise) std::fill(grad.begin() + P, grad.end(), T(0));
    mlp::backward<T>(L, cfg.act, state, 0, xb.data(), 0, tr, gF.data(), grad.data(), 0, nullptr, mp);
    double prior = 0.0;
    for (int64_t j = 0; j < P; ++j) {
      prior += 0.5 * double(prior_prec[j]) * double(state[j]) * double(state[j]);
      grad[j] += prior_prec[j] * state[j];
    }
    stats[2 * i] = nll_i;
    stats[2 * i + 1] = static_cast<T>(double(scale) * double(nll_i) + prior);
    adam_step<T>(state, grad.data(), m, v, n_state, step, cfg.adam);
  }
  return step;
}

template void adam_step<float>(float*, const float*, float*, float*, int64_t, int64_t, const AdamConfig&);
template void adam_step<double>(double*, const double*, double*, double*, int64_t, int64_t, const AdamConfig&);
template void gather_rows<float>(const float*, int64_t, const int64_t*, int64_t, float*);
template void gather_rows<double>(const double*, int64_t, const int64_t*, int64_t, double*);
template int64_t map_epoch<float>(const MapConfig&, float*, float*, float*, int64_t, const float*, const float*,
                                  int64_t, const Batches&, const float*, float*);
template int64_t map_epoch<double>(const MapConfig&, double*, double*, double*, int64_t, const double*,
                                   const double*, int64_t, const Batches&, const double*, double*);

}  // namespace bayesgrad
