// The element-wise passes of the MFVI step over the P parameters (internal to
// the core, included by vi.cpp only): the transcendental operations as
// policies (ScalarOps: libm, the reference; Avx2Ops: vi_ops.hpp; Avx512Ops:
// vi_ops512.hpp, with the float fused passes as single loops), the general passes
// before and after the forward / backward (PrePass, PostPass) and the fused
// ones of weight space with the Gaussian prior (FusedPre, FusedPost).
// docs/design.md, "MFVI step", says what each stores and why.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "bayesgrad/optim.hpp"
#include "bayesgrad/random.hpp"
#include "bayesgrad/simd_math.hpp"
#include "vi_layers.hpp"
#include "vi_ops.hpp"
#include "vi_ops512.hpp"

namespace bayesgrad {
namespace vi_passes {

// The pass before the forward pass over parameters [j0, j1): sigma =
// softplus(rho), d sigma / d rho, the draws eps_s of these parameters (when
// eps is non-null: elements s P + j of the step's normals, drawn here chunk
// by chunk with the values fill_normal gives) and (S > 0, weight space) the
// sampled weights W_s = mu + sigma eps_s.
template <typename T>
struct PrePass {
  int64_t P, S, S_eps;
  const T *mu, *rho;
  T *eps, *sigma, *dsig, *W;
  uint64_t seed, stream;

  void run(int64_t j0, int64_t j1) const {
#if BG_HAVE_X86
    if (simd::use_avx512()) return run_avx512(j0, j1);
    if (simd::use_avx2()) return run_avx2(j0, j1);
#endif
    run_impl<ScalarOps>(j0, j1);
  }
#if BG_HAVE_X86
  BG_AVX2 __attribute__((flatten)) void run_avx2(int64_t j0, int64_t j1) const { run_impl<Avx2Ops>(j0, j1); }
  BG_AVX512 __attribute__((flatten)) void run_avx512(int64_t j0, int64_t j1) const { run_impl<Avx512Ops>(j0, j1); }
#endif

  template <class Ops>
  void run_impl(int64_t j0, int64_t j1) const {
    Ops::softplus(rho + j0, sigma + j0, dsig + j0, j1 - j0);
    const uint64_t total = static_cast<uint64_t>(S_eps * P);
    if (j0 == 0 && j1 == P)  // one chunk: the whole draw at once (no part-filled groups at sample boundaries)
      normal_piece<T>(eps, 0, total, 0, total, seed, stream);
    else
      for (int64_t s = 0; s < S_eps; ++s)
        normal_piece<T>(eps + s * P + j0, static_cast<uint64_t>(s * P + j0), static_cast<uint64_t>(s * P + j1), 0,
                        total, seed, stream);
    const T* __restrict m = mu + j0;
    const T* __restrict sg = sigma + j0;
    for (int64_t s = 0; s < S; ++s) {
      const T* __restrict e = eps + s * P + j0;
      T* __restrict w = W + s * P + j0;
      for (int64_t j = 0; j < j1 - j0; ++j) w[j] = m[j] + sg[j] * e[j];
    }
  }
};

// Weight space with the Gaussian prior, the common case, in two passes that
// keep to the fewest bytes per parameter (memory traffic, not arithmetic,
// bounds these passes). Before the forward pass, over a chunk: sigma and
// d sigma / d rho (scratch of the chunk), the KL's sums, kr = d KL / d rho,
// and per sample the draws eps_s (scratch), W_s = mu + sigma eps_s and
// ed_s = eps_s d sigma / d rho: the gradient w.r.t. rho is then
// sum_s gW_s ed_s + klscale kr, so that neither eps, sigma nor d sigma is
// stored for the pass after the backward pass. W, ed and the gradients gW
// are in the wide layout of vi_layers.hpp (first layer one GEMM for all S).
template <typename T>
struct FusedPre {
  const mlp::Layout* L;
  int64_t P, S;
  const T *mu, *rho;
  T *W, *ed, *kr;
  double inv_ps2;
  uint64_t seed, stream;

  // Returns the chunk's sums (sum sigma^2 + mu^2, sum ln sigma).
  void run(int64_t j0, int64_t j1, double& quad, double& logs) const {
#if BG_HAVE_X86
    if (simd::use_avx512()) return run_avx512(j0, j1, quad, logs);
    if (simd::use_avx2()) return run_avx2(j0, j1, quad, logs);
#endif
    run_impl<ScalarOps>(j0, j1, quad, logs);
  }
#if BG_HAVE_X86
  BG_AVX2 __attribute__((flatten)) void run_avx2(int64_t j0, int64_t j1, double& quad, double& logs) const {
    run_impl<Avx2Ops>(j0, j1, quad, logs);
  }
  BG_AVX512 __attribute__((flatten)) void run_avx512(int64_t j0, int64_t j1, double& quad, double& logs) const {
    run_impl<Avx512Ops>(j0, j1, quad, logs);
  }
#endif

  template <class Ops>
  void run_impl(int64_t j0, int64_t j1, double& quad, double& logs) const {
    const int64_t n = j1 - j0;
    // Scratch of the chunk; with one chunk (small networks) the draws of every
    // sample at once (no part-filled groups at sample boundaries).
    const bool whole = j0 == 0 && j1 == P;
    static thread_local std::vector<T> scratch;
    scratch.resize(2 * kElementChunk + (whole ? S * P : kElementChunk));
    T* __restrict sg = scratch.data();
    T* __restrict ds = sg + kElementChunk;
    T* __restrict e0 = ds + kElementChunk;
    const uint64_t total = static_cast<uint64_t>(S * P);
    if (whole) normal_piece<T>(e0, 0, total, 0, total, seed, stream);
    int64_t s0 = 0;  // the first sample the loop below makes W_s, ed_s of
#if BG_HAVE_X86
    if constexpr (kFused512<Ops, T>) {
      // One loop per block piece: sample 0's W and ed come out of the pass
      // that computes sigma, d sigma and the KL's parts, all in registers;
      // sigma and d sigma go to the scratch only for the samples after it.
      if (!whole) normal_piece<T>(e0, static_cast<uint64_t>(j0), static_cast<uint64_t>(j1), 0, total, seed, stream);
      KlAcc16 acc;
      acc.init();
      vi_layers::for_blocks(*L, j0, j1, [&](int64_t a, int64_t b, int64_t seg, int64_t len) {
        const int64_t k0 = a - j0, o = S * seg + (a - seg);
        Ops::fused_pre_f32(mu + a, rho + a, e0 + k0, W + o, ed + o, kr + a, S > 1 ? sg + k0 : nullptr, ds + k0,
                           b - a, inv_ps2, acc, quad, logs);
      });
      acc.finish(quad, logs);
      s0 = 1;
    } else
#endif
    {
      Ops::softplus(rho + j0, sg, ds, n);
      Ops::kl_pass(mu + j0, sg, ds, inv_ps2, kr + j0, n, quad, logs);
    }
    const T* __restrict m = mu + j0;
    for (int64_t s = s0; s < S; ++s) {
      const T* __restrict e = whole ? e0 + s * P : e0;
      if (!whole)
        normal_piece<T>(e0, static_cast<uint64_t>(s * P + j0), static_cast<uint64_t>(s * P + j1), 0, total, seed,
                        stream);
      vi_layers::for_blocks(*L, j0, j1, [&](int64_t a, int64_t b, int64_t seg, int64_t len) {
        // W and ed in the wide layout (vi_layers.hpp); k indexes the chunk's scratch
        T* __restrict w = W + (S * seg + s * len + (a - seg));
        T* __restrict d = ed + (S * seg + s * len + (a - seg));
        const int64_t k0 = a - j0;
        for (int64_t k = 0; k < b - a; ++k) {
          w[k] = m[k0 + k] + sg[k0 + k] * e[k0 + k];
          d[k] = e[k0 + k] * ds[k0 + k];
        }
      });
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
    if (simd::use_avx512()) return block_avx512(j0, j1);
    if (simd::use_avx2()) return block_avx2(j0, j1);
#endif
    return block_impl<ScalarOps>(j0, j1);
  }
#if BG_HAVE_X86
  BG_AVX2 __attribute__((flatten)) double block_avx2(int64_t j0, int64_t j1) const {
    return block_impl<Avx2Ops>(j0, j1);
  }
  BG_AVX512 __attribute__((flatten)) double block_avx512(int64_t j0, int64_t j1) const {
    return block_impl<Avx512Ops>(j0, j1);
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
    Ops::adam(mu + j0, gm, m + j0, v + j0, n, *adam);
    Ops::adam(rho + j0, gs, m + P + j0, v + P + j0, n, *adam);
    return kl;
  }
};

// The pass after the backward pass of FusedPre's case over parameters [j0,
// j1): gm = sum_s gW_s + klscale mu / prior_sigma^2, gr = sum_s gW_s ed_s +
// klscale kr, then either the gradient into grad or the Adam update of mu and
// rho. Run piece by piece (a piece: parameters [a, b) of one block of the wide
// layout, whose sample s of parameter j is at base + s len + j); in blocks of
// kPostBlock through stack buffers (the sums over samples first, two streams
// at a time, then Adam), or on the float AVX-512 path with S = 1 in one loop
// with gm and gr in registers. (With S > 1 one loop over all 2 S streams of
// gW and ed was measured no faster than the blocks at S = 10.)
template <typename T>
struct FusedPost {
  int64_t P, S;
  const T *gW, *ed, *kr;
  T *mu, *rho, *grad, *m, *v;
  T klscale, prior_prec;  // prior_prec = klscale / prior_sigma^2
  const AdamCoeffs<T>* adam;

  // Parameters [a, b) inside the block that starts at seg with len elements.
  void piece(int64_t a, int64_t b, int64_t seg, int64_t len) const {
#if BG_HAVE_X86
    if (simd::use_avx512()) return piece_avx512(a, b, seg, len);
    if (simd::use_avx2()) return piece_avx2(a, b, seg, len);
#endif
    piece_impl<ScalarOps>(a, b, seg, len);
  }
#if BG_HAVE_X86
  BG_AVX2 __attribute__((flatten)) void piece_avx2(int64_t a, int64_t b, int64_t seg, int64_t len) const {
    piece_impl<Avx2Ops>(a, b, seg, len);
  }
  BG_AVX512 __attribute__((flatten)) void piece_avx512(int64_t a, int64_t b, int64_t seg, int64_t len) const {
    piece_impl<Avx512Ops>(a, b, seg, len);
  }
#endif

  template <class Ops>
  void piece_impl(int64_t a, int64_t b, int64_t seg, int64_t len) const {
    const int64_t base = S * seg - seg;
#if BG_HAVE_X86
    if constexpr (kFused512<Ops, T>) {
      if (S == 1) {
        const bool g = grad != nullptr;  // then m and v may be null: no offsets from them
        Ops::fused_post_f32(gW + a, ed + a, kr + a, mu + a, rho + a, g ? grad + a : nullptr,
                            g ? grad + P + a : nullptr, g ? nullptr : m + a, g ? nullptr : v + a,
                            g ? nullptr : m + P + a, g ? nullptr : v + P + a, b - a, klscale, prior_prec, *adam);
        return;
      }
    }
#endif
    for (int64_t j = a; j < b; j += kPostBlock) block_impl<Ops>(j, std::min(b, j + kPostBlock), base, len);
  }

  template <class Ops>
  void block_impl(int64_t j0, int64_t j1, int64_t base, int64_t len) const {
    const int64_t n = j1 - j0;
    T gm[kPostBlock], gr[kPostBlock];
    const T* __restrict mj = mu + j0;
    const T* __restrict k0 = kr + j0;
    {
      const T* __restrict g = gW + base + j0;
      const T* __restrict d = ed + base + j0;
      for (int64_t k = 0; k < n; ++k) {
        gm[k] = g[k] + prior_prec * mj[k];
        gr[k] = g[k] * d[k] + klscale * k0[k];
      }
    }
    for (int64_t s = 1; s < S; ++s) {
      const T* __restrict g = gW + base + s * len + j0;
      const T* __restrict d = ed + base + s * len + j0;
      for (int64_t k = 0; k < n; ++k) {
        gm[k] += g[k];
        gr[k] += g[k] * d[k];
      }
    }
    if (grad) {
      std::copy(gm, gm + n, grad + j0);
      std::copy(gr, gr + n, grad + P + j0);
      return;
    }
    Ops::adam(mu + j0, gm, m + j0, v + j0, n, *adam);
    Ops::adam(rho + j0, gr, m + P + j0, v + P + j0, n, *adam);
  }
};

}  // namespace vi_passes
}  // namespace bayesgrad
