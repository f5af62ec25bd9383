// The passes of one network (one parameter vector, no masks) through every layer and back in row tiles
// (docs/design.md, "Row tiles of one network" and "Mixed products"): backward_tiled, nll_grad_tiled
// and the forward-over-reverse mixed_vjp, declared in mlp.hpp beside the layer-at-a-time passes of
// mlp.cpp. A tile's GEMMs run on its own thread (SerialBlas), chunks of tiles in parallel on the pool.
#include "bayesgrad/mlp.hpp"

#include <cblas.h>

#include "bayesgrad/parallel.hpp"
#include "mlp_gemm.hpp"

#include <algorithm>
#include <stdexcept>
#include <vector>

namespace bayesgrad {
namespace mlp {

namespace {

using mlp_gemm::call_gemm;
using mlp_gemm::check_blas_int;

// Row tiles of `rows` over N >= 1 rows in chunks of consecutive tiles (at most 31 chunks, and with
// a gradient at most kSlotValues / P of them: the slots of a wide network's mixed product would
// otherwise take tens of MB a call; the chunks depend on N, rows and P alone), the chunks in parallel
// on the pool: body(slot, t0, t1) runs tiles [t0, t1) one after another, the first setting the chunk's
// P-vector slot (null when grad is) and the others adding to it; the slots are then summed into grad in
// chunk order, so that the sums do not depend on the thread count.
constexpr int64_t kSlotValues = int64_t{1} << 21;
template <typename T, typename Body>
void tile_chunks(int64_t N, int64_t rows, int64_t P, T* grad, const Body& body) {
  const int64_t tiles = (N + rows - 1) / rows;
  const int64_t most = grad ? std::max<int64_t>(1, kSlotValues / std::max<int64_t>(1, P)) : tiles;
  const int64_t per = std::max({int64_t{1}, tiles / 16, (tiles + most - 1) / most}), chunks = (tiles + per - 1) / per;
  std::vector<T> slots(grad ? static_cast<size_t>(chunks * P) : 0);
  parallel_chunks(chunks, [&](int64_t c) {
    body(grad ? slots.data() + c * P : nullptr, c * per, std::min(tiles, (c + 1) * per));
  });
  if (!grad) return;
  std::copy(slots.begin(), slots.begin() + P, grad);
  for (int64_t c = 1; c < chunks; ++c) {
    const T* s = slots.data() + c * P;
    for (int64_t i = 0; i < P; ++i) grad[i] += s[i];
  }
}

// dW (dout x din) = (first ? 0 : dW) + G^T A and db (dout) = (first ? 0 : db) + column sums of G, over R rows.
template <typename T>
void add_layer_grad(const T* G, const T* A, int64_t R, int64_t din, int64_t dout, bool first, T* dW, T* db) {
  call_gemm(CblasTrans, CblasNoTrans, static_cast<blasint>(dout), static_cast<blasint>(din),
            static_cast<blasint>(R), T(1), G, static_cast<blasint>(dout), A, static_cast<blasint>(din),
            first ? T(0) : T(1), dW, static_cast<blasint>(din));
  if (first) std::fill(db, db + dout, T(0));
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < dout; ++j) db[j] += G[r * dout + j];
}

// z (R x dout) = b + A W^T for layer l (A: R x din), or A W^T without the bias.
template <typename T>
void layer_product(const Layout& L, const T* params, int64_t l, const T* A, int64_t R, bool bias, T* z) {
  const int64_t din = L.d_in(l), dout = L.d_out(l);
  if (bias) {
    const T* b = params + L.b_off[l];
    for (int64_t r = 0; r < R; ++r) std::copy(b, b + dout, z + r * dout);
  }
  call_gemm(CblasNoTrans, CblasTrans, static_cast<blasint>(R), static_cast<blasint>(dout),
            static_cast<blasint>(din), T(1), A, static_cast<blasint>(din), params + L.w_off[l],
            static_cast<blasint>(din), bias ? T(1) : T(0), z, static_cast<blasint>(dout));
}

// H (R x din) = G W for layer l (G: R x dout): the adjoint of the layer's input.
template <typename T>
void layer_adjoint(const Layout& L, const T* params, int64_t l, const T* G, int64_t R, T* H) {
  const int64_t din = L.d_in(l), dout = L.d_out(l);
  call_gemm(CblasNoTrans, CblasNoTrans, static_cast<blasint>(R), static_cast<blasint>(din),
            static_cast<blasint>(dout), T(1), G, static_cast<blasint>(dout), params + L.w_off[l],
            static_cast<blasint>(din), T(0), H, static_cast<blasint>(din));
}
}  // namespace

namespace {
// Whether a network and N rows take the row tiles: narrow networks on many rows only (wide layers' GEMMs use
// every thread by themselves).
bool takes_tiles(const Layout& L, int64_t N) {
  int64_t hidden = 0;
  for (int64_t l = 0; l + 1 < L.n_layers(); ++l) hidden = std::max(hidden, L.d_out(l));
  const int64_t tiles = (N + kTiledRows - 1) / kTiledRows;
  if (tiles < 2 || hidden > kTiledMaxHidden || L.d_input() > kTiledMaxInput) return false;
  for (int64_t l = 0; l < L.n_layers(); ++l)
    for (int64_t v : {kTiledRows, L.d_in(l), L.d_out(l)}) check_blas_int(v, "GEMM dimension");
  return true;
}

// Forward and back through every layer, tile by tile (backward_tiled's scheme). After a tile's forward
// pass, seed(t, n0, R, out, buf) gives dLoss/d(output) of its rows (R x K, `out` the tile's outputs,
// `buf` room for R x K values), or null for no backward pass.
template <typename T, typename Seed>
void through_and_back(const Layout& L, Activation f, const T* params, const T* X, int64_t N, const Seed& seed,
                      T* grad, T* grad_x, T* outputs) {
  const int64_t nl = L.n_layers(), K = L.d_output();
  SerialBlas serial;
  // per thread (at most a few MB: the widths are capped by takes_tiles): pre-activations and activations of
  // every layer for one tile, and two gradient buffers
  int64_t width_sum = 0;
  for (int64_t l = 0; l < nl; ++l) width_sum += 2 * L.d_out(l);
  const size_t need = static_cast<size_t>(kTiledRows * (width_sum + 2 * L.max_width));
  tile_chunks(N, kTiledRows, L.n_params, grad, [&](T* slot, int64_t t0, int64_t t1) {
    thread_local std::vector<T> buf;
    if (buf.size() < need) buf.resize(need);
    std::vector<T*> z(static_cast<size_t>(nl)), a(static_cast<size_t>(nl));
    T* at = buf.data();
    for (int64_t l = 0; l < nl; ++l) {
      z[l] = at;
      a[l] = at + kTiledRows * L.d_out(l);
      at += 2 * kTiledRows * L.d_out(l);
    }
    T *gb0 = at, *gb1 = at + kTiledRows * L.max_width;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n0 = t * kTiledRows, R = std::min(kTiledRows, N - n0);
      const T* in = X + n0 * L.d_input();
      for (int64_t l = 0; l < nl; ++l) {  // z = bias + in W^T, a = f(z)
        layer_product(L, params, l, l == 0 ? in : a[l - 1], R, true, z[l]);
        if (l + 1 < nl) act_array(f, z[l], a[l], R * L.d_out(l));
      }
      if (outputs) std::copy(z[nl - 1], z[nl - 1] + R * K, outputs + n0 * K);
      const T* G = seed(t, n0, R, static_cast<const T*>(z[nl - 1]), gb0);
      for (int64_t l = nl - 1; G && l >= 0; --l) {
        const int64_t din = L.d_in(l);
        if (slot)  // the chunk's dW += G^T A and db += column sums of G (the chunk's first tile sets them)
          add_layer_grad(G, l == 0 ? in : a[l - 1], R, din, L.d_out(l), t == t0, slot + L.w_off[l],
                         slot + L.b_off[l]);
        if (l == 0 && grad_x == nullptr) break;
        T* dst = l == 0 ? grad_x + n0 * din : (G == gb0 ? gb1 : gb0);
        layer_adjoint(L, params, l, G, R, dst);
        if (l == 0) break;
        mul_act_deriv_array(f, z[l - 1], a[l - 1], dst, R * din);
        G = dst;
      }
    }
  });
}
}  // namespace

template <typename T>
bool backward_tiled(const Layout& L, Activation f, const T* params, const T* X, int64_t N, const T* g_out, T* grad,
                    T* grad_x, T* outputs) {
  if (!takes_tiles(L, N)) return false;
  const int64_t K = L.d_output();
  through_and_back(
      L, f, params, X, N, [&](int64_t, int64_t n0, int64_t, const T*, T*) { return g_out + n0 * K; }, grad, grad_x,
      outputs);
  return true;
}

template <typename T>
bool nll_grad_tiled(const Layout& L, Activation f, Likelihood lik, const T* params, const T* X, int64_t N,
                    const T* y, const T* log_noise, T* nll_out, T* grad) {
  if (!takes_tiles(L, N)) return false;
  const int64_t K = L.d_output(), Dy = target_dim(lik, K);
  if (lik == Likelihood::kCategorical)  // the labels checked before any work (nll checks them per tile)
    for (int64_t n = 0; n < N; ++n)
      if (!(y[n] >= T(0) && y[n] < T(K))) throw std::invalid_argument("class label out of range [0, n_classes)");
  // each tile's NLL, summed in tile order afterwards: the same total for any thread count
  std::vector<T> part(static_cast<size_t>((N + kTiledRows - 1) / kTiledRows));
  through_and_back(
      L, f, params, X, N,
      [&](int64_t t, int64_t n0, int64_t R, const T* out, T* g) -> const T* {
        nll<T>(lik, out, y + n0 * Dy, 1, R, K, log_noise, &part[t], grad ? g : nullptr, T(1), nullptr);
        return grad ? g : nullptr;
      },
      grad, static_cast<T*>(nullptr), static_cast<T*>(nullptr));
  double total = 0.0;
  for (T v : part) total += static_cast<double>(v);
  *nll_out = static_cast<T>(total);
  return true;
}

namespace {
// d1 = f'(z) and d2 = f''(z) over n elements given z and a = f(z), the switch on f outside the loops.
template <typename T>
void act_derivs_array(Activation f, const T* __restrict z, const T* __restrict a, T* __restrict d1,
                      T* __restrict d2, int64_t n) {
  switch (f) {
    case Activation::kTanh:
      for (int64_t k = 0; k < n; ++k) {
        d1[k] = T(1) - a[k] * a[k];
        d2[k] = T(-2) * a[k] * d1[k];
      }
      break;
    case Activation::kSigmoid:
      for (int64_t k = 0; k < n; ++k) {
        d1[k] = a[k] * (T(1) - a[k]);
        d2[k] = d1[k] * (T(1) - T(2) * a[k]);
      }
      break;
    case Activation::kRelu:
      for (int64_t k = 0; k < n; ++k) {
        d1[k] = z[k] > T(0) ? T(1) : T(0);
        d2[k] = T(0);
      }
      break;
    case Activation::kIdentity:
      std::fill(d1, d1 + n, T(1));
      std::fill(d2, d2 + n, T(0));
      break;
    default:  // GELU: erf and exp per element
      for (int64_t k = 0; k < n; ++k) {
        d1[k] = act_deriv(f, z[k], a[k]);
        d2[k] = act_deriv2(f, z[k], a[k]);
      }
  }
}
}  // namespace

template <typename T>
void mixed_vjp(const Layout& L, Activation f, const T* params, const T* X, const T* V, int64_t N, const T* g_out,
               const T* g_dot, T* grad) {
  const int64_t nl = L.n_layers(), K = L.d_output(), P = L.n_params, D = L.d_input();
  if (N <= 0) {
    std::fill(grad, grad + P, T(0));
    return;
  }
  int64_t hidden = 0, hidden_sum = 0;
  for (int64_t l = 0; l + 1 < nl; ++l) {
    hidden = std::max(hidden, L.d_out(l));
    hidden_sum += L.d_out(l);
  }
  const int64_t rows = hidden <= kTiledMaxHidden ? kTiledRows : kTiledRows / 4;
  for (int64_t l = 0; l < nl; ++l)
    for (int64_t v : {rows, L.d_in(l), L.d_out(l)}) check_blas_int(v, "GEMM dimension");
  SerialBlas serial;
  // per thread and hidden layer: the tangent pre-activation zd, the activation a, its tangent ad, f' and
  // f''; then the adjoints G, Gd, the products H, Hd, and one layer's pre-activation z
  const int64_t wg = std::max(hidden, K);
  const size_t need = static_cast<size_t>(rows * (5 * hidden_sum + 5 * wg));
  tile_chunks(N, rows, P, grad, [&](T* slot, int64_t t0, int64_t t1) {
    thread_local std::vector<T> buf;
    if (buf.size() < need) buf.resize(need);
    struct Hidden { T *zd, *a, *ad, *d1, *d2; };
    std::vector<Hidden> h(static_cast<size_t>(std::max<int64_t>(0, nl - 1)));
    T* at = buf.data();
    for (int64_t l = 0; l + 1 < nl; ++l) {
      const int64_t m = rows * L.d_out(l);
      h[l] = {at, at + m, at + 2 * m, at + 3 * m, at + 4 * m};
      at += 5 * m;
    }
    T *bg = at, *bgd = at + rows * wg, *bh = at + 2 * rows * wg, *bhd = at + 3 * rows * wg, *bz = bh + 2 * rows * wg;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n0 = t * rows, R = std::min(rows, N - n0);
      const T *x = X + n0 * D, *v = V + n0 * D;
      // forward with tangents through the hidden layers (the output's value is not needed)
      for (int64_t l = 0; l + 1 < nl; ++l) {
        const Hidden& c = h[l];
        const int64_t m = R * L.d_out(l);
        layer_product(L, params, l, l == 0 ? x : h[l - 1].a, R, true, bz);
        layer_product(L, params, l, l == 0 ? v : h[l - 1].ad, R, false, c.zd);
        act_array(f, bz, c.a, m);
        act_derivs_array(f, bz, c.a, c.d1, c.d2, m);
        for (int64_t k = 0; k < m; ++k) c.ad[k] = c.d1[k] * c.zd[k];
      }
      // back through both: at a hidden layer G <- f' (G W) + f'' zd (Gd W), Gd <- f' (Gd W)
      const T* G = bg;
      if (g_out) {
        G = g_out + n0 * K;
      } else {
        std::fill(bg, bg + R * K, T(0));
      }
      const T* Gd = g_dot + n0 * K;
      for (int64_t l = nl - 1; l >= 0; --l) {
        const int64_t din = L.d_in(l), dout = L.d_out(l);
        const bool first = t == t0;
        T *dW = slot + L.w_off[l], *db = slot + L.b_off[l];
        add_layer_grad(G, l == 0 ? x : h[l - 1].a, R, din, dout, first, dW, db);
        call_gemm(CblasTrans, CblasNoTrans, static_cast<blasint>(dout), static_cast<blasint>(din),
                  static_cast<blasint>(R), T(1), Gd, static_cast<blasint>(dout), l == 0 ? v : h[l - 1].ad,
                  static_cast<blasint>(din), T(1), dW, static_cast<blasint>(din));
        if (l == 0) break;
        layer_adjoint(L, params, l, G, R, bh);
        layer_adjoint(L, params, l, Gd, R, bhd);
        const Hidden& c = h[l - 1];
        const int64_t m = R * din;
        for (int64_t k = 0; k < m; ++k) {
          bg[k] = c.d1[k] * bh[k] + c.d2[k] * c.zd[k] * bhd[k];
          bgd[k] = c.d1[k] * bhd[k];
        }
        G = bg;
        Gd = bgd;
      }
    }
  });
}

#define BG_MLP_TILED_INSTANTIATE(T)                                                                                  \
  template bool backward_tiled<T>(const Layout&, Activation, const T*, const T*, int64_t, const T*, T*, T*, T*); \
  template bool nll_grad_tiled<T>(const Layout&, Activation, Likelihood, const T*, const T*, int64_t, const T*,     \
                                  const T*, T*, T*);                                                                \
  template void mixed_vjp<T>(const Layout&, Activation, const T*, const T*, const T*, int64_t, const T*, const T*, T*);

BG_MLP_TILED_INSTANTIATE(float)
BG_MLP_TILED_INSTANTIATE(double)

}  // namespace mlp
}  // namespace bayesgrad
