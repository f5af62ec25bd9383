// The deep-ensemble epoch: M independent MAP trainings in lockstep through the
// S axis of the MLP engine (mlp.hpp), with per-member minibatches, Adam moments
// and priors, optional row weights and fast-gradient-sign adversarial training.
// Members never interact: member s's trajectory equals a one-member run on its
// own rows (tested against the NumPy twin, which loops over members).
#include "bayesgrad/ensemble.hpp"

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "bayesgrad/parallel.hpp"
#include "bayesgrad/philox.hpp"
#include "bayesgrad/random.hpp"
#include "bayesgrad/simd_math.hpp"

namespace bayesgrad {

namespace {

// Summed (weighted) nll of each member on its own minibatch rows, dnll/dF
// scaled by `scale` (times the row weight) into gF, and, when gn is non-null,
// scale * dnll/dlog_noise added into gn + s * gn_stride.
template <typename T>
void member_nll(const EnsembleConfig& cfg, int64_t M, int64_t B, const T* F, const T* yb, const T* wb,
                const T* state, int64_t n_state, T* gF, T scale, T* gn, int64_t gn_stride, double* out) {
  const mlp::Layout& L = cfg.net.layout;
  const int64_t P = L.n_params, K = L.d_output();
  const int64_t Dy = mlp::target_dim(cfg.lik, K);
  std::vector<T> gtmp(Dy);
  for (int64_t s = 0; s < M; ++s) {
    const T* ln = state + s * n_state + P;
    const T* Fs = F + s * B * K;
    const T* ys = yb + s * B * Dy;
    T* gs = gF + s * B * K;
    T* gns = gn ? gn + s * gn_stride : nullptr;
    if (wb == nullptr) {
      T o;
      mlp::nll<T>(cfg.lik, Fs, ys, 1, B, K, ln, &o, gs, scale, gns ? gtmp.data() : nullptr);
      out[s] = double(o);
      if (gns)
        for (int64_t d = 0; d < Dy; ++d) gns[d] += gtmp[d];
      continue;
    }
    // Row by row, so each row's gradient carries its own weight and the sum is
    // the exact weighted likelihood (not an average of unweighted batches).
    const T* ws = wb + s * B;
    double acc = 0.0;
    for (int64_t r = 0; r < B; ++r) {
      T o;
      mlp::nll<T>(cfg.lik, Fs + r * K, ys + r * Dy, 1, 1, K, ln, &o, gs + r * K, scale * ws[r],
                  gns ? gtmp.data() : nullptr);
      acc += double(ws[r]) * double(o);
      if (gns)
        for (int64_t d = 0; d < Dy; ++d) gns[d] += gtmp[d];
    }
    out[s] = acc;
  }
}

// Weight decay, its energy and the Adam update of member s's parameters
// [j0, j1); the energy is summed in its own loop (see MapUpdate in optim.cpp).
template <typename T>
double decay_and_adam_impl(T* __restrict p, T* __restrict mm, T* __restrict vv, const T* __restrict g, int64_t n,
                           T wd, const AdamCoeffs<T>& a) {
  double acc[4] = {0.0, 0.0, 0.0, 0.0};
  int64_t k = 0;
  for (; k + 4 <= n; k += 4)
    for (int u = 0; u < 4; ++u) acc[u] += double(p[k + u]) * double(p[k + u]);
  for (; k < n; ++k) acc[0] += double(p[k]) * double(p[k]);
  for (k = 0; k < n; ++k) a.update(p[k], g[k] + wd * p[k], mm[k], vv[k]);
  return 0.5 * double(wd) * ((acc[0] + acc[1]) + (acc[2] + acc[3]));
}

#if BG_HAVE_X86
// The same loops compiled for AVX2 (as MapUpdate in optim.cpp): on 784-400-400-10
// the update of 5 x 478k parameters per step is a tenth of the step.
template <typename T>
BG_AVX2 __attribute__((flatten)) double decay_and_adam_avx2(T* p, T* mm, T* vv, const T* g, int64_t n, T wd,
                                                            const AdamCoeffs<T>& a) {
  return decay_and_adam_impl<T>(p, mm, vv, g, n, wd, a);
}
#endif

template <typename T>
double decay_and_adam(T* p, T* mm, T* vv, const T* g, int64_t n, T wd, const AdamCoeffs<T>& a) {
#if BG_HAVE_X86
  if (simd::use_avx2()) return decay_and_adam_avx2<T>(p, mm, vv, g, n, wd, a);
#endif
  return decay_and_adam_impl<T>(p, mm, vv, g, n, wd, a);
}

}  // namespace

// Scratch of one group of members (all of them, or one member on a worker thread).
template <typename T>
struct GroupWork {
  std::vector<T> xb, yb, wb, gF, gx, xa;
  std::vector<double> prior_part;
  mlp::Trace<T> tr;
};

template <typename T>
int64_t ensemble_epoch(const EnsembleConfig& cfg, int64_t M, T* state, T* m, T* v, int64_t step, const T* X,
                       const T* y, int64_t N, const int64_t* perms, int64_t n_epochs, int64_t n_perm,
                       const T* weights, T* stats) {
  const mlp::Layout& L = cfg.net.layout;
  const int64_t P = L.n_params, D = L.d_input(), K = L.d_output();
  const int64_t Dy = mlp::target_dim(cfg.lik, K);
  const int64_t n_state = P + Dy;
  const int64_t Bmax = std::min(cfg.batch_size, N);
  const int64_t n_batches = (n_perm + Bmax - 1) / Bmax;
  const int64_t total_batches = n_epochs * n_batches;
  const bool adv = !cfg.adv_eps.empty();
  const T wd = static_cast<T>(cfg.weight_decay);
  // Three schedules, the same numbers (members never interact; gemm_batch
  // loops over samples below its 2^18 threshold, so one S = M pass does each
  // member's arithmetic as a lone pass would; tested for 1-3 threads):
  //  - big: some product of a step has >= 2^18 multiply-adds. Member after
  //    member, each GEMM threaded by OpenBLAS (one S = M pass goes through
  //    ?gemm_batch_strided there, measured 15% slower per epoch on
  //    784-400-400-10 at batch 128, and its traces take M times the cache).
  //  - per member: small products, several threads, and enough work in the
  //    call. Each worker trains members through runs of consecutive minibatches
  //    of the call (shares of all its epochs, below), so the pool is woken
  //    once per call, not once per step: per step, waking a worker cost more
  //    than it saved on 13-50-2 at batch 32 (0.35-1.1 ms per epoch on two
  //    threads against 0.29 ms on one).
  //  - else one S = M pass per minibatch on the calling thread.
  int64_t biggest = 0;
  for (int64_t l = 0; l < L.n_layers(); ++l) biggest = std::max(biggest, Bmax * L.d_in(l) * L.d_out(l));
  const bool big = biggest >= (int64_t(1) << 18);
  const bool per_member =
      M > 1 && num_threads() > 1 && !big && n_epochs * n_perm * P >= (int64_t(1) << 16);
  std::vector<T> grad(M * n_state), grad_adv;
  std::vector<double> nll_c(M), nll_a(M);
  if (adv) grad_adv.resize(M * n_state);
  std::vector<GroupWork<T>> work(per_member ? M : 1);
  const int64_t n_chunks = (P + kElementChunk - 1) / kElementChunk;

  // Global minibatch g (epoch g / n_batches) for members [s0, s0 + S): gather
  // their rows, forward, nll, backward (twice with adversarial training),
  // weight decay and Adam at step `step + g + 1`, the stats of the batch.
  // Member s's parameters are state + s * n_state.
  const auto run_group = [&](int64_t g, int64_t s0, int64_t S, GroupWork<T>& w, bool parallel_update) {
    const int64_t e = g / n_batches, i = g % n_batches;
    const int64_t start = i * Bmax;
    const int64_t B = std::min(Bmax, n_perm - start);
    w.xb.resize(S * B * D);
    w.yb.resize(S * B * Dy);
    if (weights) w.wb.resize(S * B);
    for (int64_t s = 0; s < S; ++s) {
      const int64_t* rows = perms + (e * M + s0 + s) * n_perm + start;
      gather_rows(X, D, rows, B, w.xb.data() + s * B * D);
      gather_rows(y, Dy, rows, B, w.yb.data() + s * B * Dy);
      if (weights)
        for (int64_t r = 0; r < B; ++r) w.wb[s * B + r] = weights[rows[r]];
    }
    const T scale = static_cast<T>(static_cast<double>(N) / static_cast<double>(B));
    const AdamCoeffs<T> k(cfg.adam, step + g + 1);
    T* st = state + s0 * n_state;
    T* gr = grad.data() + s0 * n_state;
    const T* xs = w.xb.data();
    const T* ys = w.yb.data();
    const T* ws = weights ? w.wb.data() : nullptr;
    w.gF.resize(S * B * K);
    for (int64_t s = 0; s < S; ++s) std::fill(gr + s * n_state + P, gr + (s + 1) * n_state, T(0));
    T* gn = cfg.learn_noise ? gr + P : nullptr;
    mlp::forward<T>(L, cfg.net.act, st, S, n_state, xs, B, B * D, w.tr);
    member_nll<T>(cfg, S, B, w.tr.output(), ys, ws, st, n_state, w.gF.data(), scale, gn, n_state, nll_c.data() + s0);
    if (adv) w.gx.resize(S * B * D);
    mlp::backward<T>(L, cfg.net.act, st, n_state, xs, B * D, w.tr, w.gF.data(), gr, n_state,
                     adv ? w.gx.data() : nullptr);
    if (adv) {
      // x + eps sign(d loss / d x): the weights and N/B are positive, so the
      // sign is that of the row's own nll gradient (0 where it vanishes).
      w.xa.resize(S * B * D);
      for (int64_t r = 0; r < S * B; ++r)
        for (int64_t d = 0; d < D; ++d) {
          const T gv = w.gx[r * D + d];
          const T sg = static_cast<T>((gv > T(0)) - (gv < T(0)));
          w.xa[r * D + d] = xs[r * D + d] + static_cast<T>(cfg.adv_eps[d]) * sg;
        }
      T* ga = grad_adv.data() + s0 * n_state;
      mlp::forward<T>(L, cfg.net.act, st, S, n_state, w.xa.data(), B, B * D, w.tr);
      member_nll<T>(cfg, S, B, w.tr.output(), ys, ws, st, n_state, w.gF.data(), scale, gn, n_state,
                    nll_a.data() + s0);
      mlp::backward<T>(L, cfg.net.act, st, n_state, w.xa.data(), B * D, w.tr, w.gF.data(), ga, n_state);
      for (int64_t s = 0; s < S; ++s)
        for (int64_t j = 0; j < P; ++j) gr[s * n_state + j] += ga[s * n_state + j];
    }
    // Weight decay, its energy and Adam in fixed chunks. Small members (one
    // partial chunk each) stay on this thread: waking the pool every step
    // cost more than the update itself (3x per epoch on 13-50-2).
    w.prior_part.assign(S * n_chunks, 0.0);
    const auto update = [&](int64_t c) {
      const int64_t s = c / n_chunks, ci = c % n_chunks;
      const int64_t j0 = ci * kElementChunk, j1 = std::min(P, j0 + kElementChunk);
      const int64_t o = s * n_state + j0;
      w.prior_part[c] = decay_and_adam<T>(st + o, m + s0 * n_state + o, v + s0 * n_state + o, gr + o, j1 - j0, wd, k);
    };
    if (parallel_update && S * P > kElementChunk) {
      parallel_chunks(S * n_chunks, update);
    } else {
      for (int64_t c = 0; c < S * n_chunks; ++c) update(c);
    }
    for (int64_t s = 0; s < S; ++s) {
      const int64_t o = (s0 + s) * n_state;
      for (int64_t j = o + P; j < o + n_state; ++j) k.update(state[j], grad[j], m[j], v[j]);
      double prior = 0.0;
      for (int64_t ci = 0; ci < n_chunks; ++ci) prior += w.prior_part[s * n_chunks + ci];
      const double data = nll_c[s0 + s] + (adv ? nll_a[s0 + s] : 0.0);
      stats[(g * M + s0 + s) * 2] = static_cast<T>(nll_c[s0 + s]);
      stats[(g * M + s0 + s) * 2 + 1] = static_cast<T>(double(scale) * data + prior);
    }
  };
  if (per_member) {
    // Each member's G minibatch steps cut into H = threads consecutive parts:
    // M H chunks, part-major (all members' first parts, then their second
    // ...), claimed in increasing order by whichever thread is free, so the
    // work shares out evenly (5 members on 2 threads: 2.5 members each, not 3
    // and 2 as whole members were) and a thread the scheduler holds back
    // leaves its share to the others. Part h of member s waits (rarely: it is
    // claimed M chunks later) until part h - 1 is done, so each member still
    // takes its steps in order: the same numbers.
    // With more threads than members, whole members (H = 1): a later part would
    // have a thread waiting on its member's earlier one for no gain.
    const int64_t G = total_batches;
    const int64_t H = M >= num_threads() ? num_threads() : 1;
    std::vector<std::atomic<int>> part_done(M * H);  // 0 not yet, 1 done, 2 failed
    for (auto& d : part_done) d.store(0);
    SerialBlas serial;
    parallel_chunks(M * H, [&](int64_t c) {
      const int64_t h = c / M, s = c % M;
      if (h > 0) {
        int d;
        while ((d = part_done[c - M].load(std::memory_order_acquire)) == 0) std::this_thread::yield();
        if (d == 2) {  // an earlier part threw (parallel_chunks rethrows that)
          part_done[c].store(2, std::memory_order_release);
          return;
        }
      }
      try {
        for (int64_t g = h * G / H; g < (h + 1) * G / H; ++g) run_group(g, s, 1, work[s], false);
      } catch (...) {
        part_done[c].store(2, std::memory_order_release);  // releases the parts after it
        throw;
      }
      part_done[c].store(1, std::memory_order_release);
    });
  } else if (big) {
    for (int64_t g = 0; g < total_batches; ++g)
      for (int64_t s = 0; s < M; ++s) run_group(g, s, 1, work[0], true);
  } else {
    for (int64_t g = 0; g < total_batches; ++g) run_group(g, 0, M, work[0], true);
  }
  return step + total_batches;
}

namespace {

// The stable argsort of u (N values in (0, 1)) into out: a stable counting sort
// into 2^b >= N equal-width buckets, then an insertion sort that moves entries
// only within their bucket (strict comparison, so equal values keep index
// order). Expected O(N) for uniforms; 4x faster than std::stable_sort at N = 455.
void argsort_unit(const double* u, int64_t N, int64_t* out, std::vector<int64_t>& count) {
  int b = 0;
  while ((int64_t(1) << b) < N && b < 30) ++b;
  const int64_t nb = int64_t(1) << b;
  const auto bucket = [&](double x) { return std::min<int64_t>(nb - 1, static_cast<int64_t>(x * double(nb))); };
  count.assign(nb + 1, 0);
  for (int64_t i = 0; i < N; ++i) ++count[bucket(u[i]) + 1];
  for (int64_t j = 0; j < nb; ++j) count[j + 1] += count[j];
  for (int64_t i = 0; i < N; ++i) out[count[bucket(u[i])]++] = i;
  for (int64_t i = 1; i < N; ++i) {
    const int64_t x = out[i];
    const double ux = u[x];
    int64_t j = i;
    for (; j > 0 && u[out[j - 1]] > ux; --j) out[j] = out[j - 1];
    out[j] = x;
  }
}

}  // namespace

void ensemble_orders(uint64_t seed, const uint64_t* streams, int64_t M, int64_t epoch0, int64_t n_epochs, int64_t N,
                     int64_t* out) {
  // Drawn here rather than in Python: argsort of M uniform vectors per epoch
  // was most of the Python time per epoch of a small ensemble.
  parallel_chunks(n_epochs * M, [&](int64_t c) {
    const int64_t e = c / M, s = c % M;
    thread_local std::vector<double> u;
    thread_local std::vector<int64_t> count;
    u.resize(N);
    fill_uniform<double>(u.data(), N, seed, philox::fold_in(streams[s], static_cast<uint64_t>(epoch0 + e)), 0);
    argsort_unit(u.data(), N, out + c * N, count);
  });
}

template int64_t ensemble_epoch<float>(const EnsembleConfig&, int64_t, float*, float*, float*, int64_t, const float*,
                                       const float*, int64_t, const int64_t*, int64_t, int64_t, const float*, float*);
template int64_t ensemble_epoch<double>(const EnsembleConfig&, int64_t, double*, double*, double*, int64_t,
                                        const double*, const double*, int64_t, const int64_t*, int64_t, int64_t,
                                        const double*, double*);

}  // namespace bayesgrad
