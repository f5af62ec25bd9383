// Samplers and log-density kernels (the conventions are in distributions.hpp).
#include "bayesgrad/distributions.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "bayesgrad/parallel.hpp"
#include "bayesgrad/philox.hpp"
#include "bayesgrad/philox_simd.hpp"
#include "bayesgrad/random.hpp"
#include "bayesgrad/samplers.hpp"
#include "bayesgrad/simd_math.hpp"
#include "bayesgrad/special.hpp"

namespace bayesgrad {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr int64_t kChunk = 4096;           // elements per parallel chunk (fixed)

template <typename F>
void chunked(int64_t n, int64_t chunk, F f) {
  parallel_chunks((n + chunk - 1) / chunk, [&](int64_t ch) {
    const int64_t lo = ch * chunk, hi = lo + chunk < n ? lo + chunk : n;
    f(lo, hi);
  });
}

void check_batch(int64_t n_total, int64_t batch) {
  if (batch <= 0 || n_total % batch != 0)
    throw std::invalid_argument("output size must be a multiple of the parameters' batch size");
}

using samplers::gamma_draw;  // the scalar loop, shared with the CUDA kernels

#if BG_HAVE_X86
// Iteration 0 of gamma_draw for the 8 consecutive elements e0 .. e0+7 (shapes
// alpha[0..7]): per 4 elements, one 8-block Philox call gives blocks 0 and 1
// of their sub-streams (lanes 0-3 and 4-7), the shared vector log / cos replace libm,
// and the squeeze and log tests are those of the scalar loop. Accepted lanes
// get their result in out[m] (ln X when log_out); the returned bit mask marks
// them. Rejected lanes (about 2% for alpha >= 1) go on with the scalar loop
// from iteration 1, so every element reads the words the scalar reference
// reads and the draw is its own up to rounding (a test within an ulp of its
// boundary could be decided differently, as it can between libm and NumPy).
BG_AVX2 int gamma_first8(const double* alpha, uint64_t seed, uint64_t sub, uint64_t e0, bool log_out,
                         double* out) {
  // Two independent groups of 4 (h = 0, 1), written stage by stage so that
  // their long dependency chains (Philox rounds, log, cos) overlap.
  constexpr int H = 2;
  __m256i w[H][4];
  for (int h = 0; h < H; ++h) {
    __m256i lo, hi;
    simd::substream_counters(e0 + static_cast<uint64_t>(4 * h), 0, lo, hi);
    simd::philox8(seed, sub, lo, hi, w[h]);
  }
  const __m256d one = _mm256_set1_pd(1.0);
  __m256d a[H], boost[H], d[H], z[H], z2[H], v[H], live[H], ua[H], ok[H];
  int all = 0;
  for (int h = 0; h < H; ++h) {
    const __m256d u1 = simd::u01x4(_mm256_castsi256_si128(w[h][0]), _mm256_castsi256_si128(w[h][1]));
    const __m256d u2 = simd::u01x4(_mm256_castsi256_si128(w[h][2]), _mm256_castsi256_si128(w[h][3]));
    ua[h] = simd::u01x4(_mm256_extracti128_si256(w[h][0], 1), _mm256_extracti128_si256(w[h][1], 1));
    a[h] = _mm256_loadu_pd(alpha + 4 * h);
    boost[h] = _mm256_cmp_pd(a[h], one, _CMP_LT_OQ);
    d[h] = _mm256_sub_pd(_mm256_blendv_pd(a[h], _mm256_add_pd(a[h], one), boost[h]), _mm256_set1_pd(1.0 / 3.0));
    const __m256d c = _mm256_div_pd(one, _mm256_sqrt_pd(_mm256_mul_pd(_mm256_set1_pd(9.0), d[h])));
    __m256d cs, sn;
    simd::sincos2pix4(u2, cs, sn);
    z[h] = _mm256_mul_pd(_mm256_sqrt_pd(_mm256_mul_pd(_mm256_set1_pd(-2.0), simd::logx4(u1))), cs);
    const __m256d t = _mm256_add_pd(one, _mm256_mul_pd(c, z[h]));
    live[h] = _mm256_cmp_pd(t, _mm256_setzero_pd(), _CMP_GT_OQ);
    // Lanes with t <= 0 are rejected; v = 1 there keeps the logs below finite.
    v[h] = _mm256_blendv_pd(one, _mm256_mul_pd(_mm256_mul_pd(t, t), t), live[h]);
    z2[h] = _mm256_mul_pd(z[h], z[h]);
    const __m256d squeeze = _mm256_sub_pd(one, _mm256_mul_pd(_mm256_set1_pd(0.0331), _mm256_mul_pd(z2[h], z2[h])));
    ok[h] = _mm256_and_pd(live[h], _mm256_cmp_pd(ua[h], squeeze, _CMP_LT_OQ));
    all |= _mm256_movemask_pd(ok[h]) << (4 * h);
  }
  for (int h = 0; h < H && all != 0xFF; ++h) {
    if ((all >> (4 * h) & 0xF) != 0xF) {
      const __m256d rhs = _mm256_add_pd(
          _mm256_mul_pd(_mm256_set1_pd(0.5), z2[h]),
          _mm256_mul_pd(d[h], _mm256_add_pd(_mm256_sub_pd(one, v[h]), simd::logx4(v[h]))));
      ok[h] = _mm256_or_pd(ok[h], _mm256_and_pd(live[h], _mm256_cmp_pd(simd::logx4(ua[h]), rhs, _CMP_LT_OQ)));
    }
  }
  int mask = 0;
  for (int h = 0; h < H; ++h) {
    const int mh = _mm256_movemask_pd(ok[h]);
    mask |= mh << (4 * h);
    const __m256d x = _mm256_mul_pd(d[h], v[h]);
    const int boosted = _mm256_movemask_pd(_mm256_and_pd(boost[h], ok[h]));
    double* o = out + 4 * h;
    if (log_out) {
      __m256d r = simd::logx4(x);
      if (boosted) {
        const __m256d ub = simd::u01x4(_mm256_extracti128_si256(w[h][2], 1), _mm256_extracti128_si256(w[h][3], 1));
        r = _mm256_add_pd(r, _mm256_and_pd(boost[h], _mm256_div_pd(simd::logx4(ub), a[h])));
      }
      _mm256_storeu_pd(o, r);
    } else {
      _mm256_storeu_pd(o, x);
      if (boosted) {
        // X = d v ub^(1/alpha) as the scalar path forms it (libm exp of a log).
        alignas(32) uint32_t q2[8], q3[8];
        _mm256_store_si256(reinterpret_cast<__m256i*>(q2), w[h][2]);
        _mm256_store_si256(reinterpret_cast<__m256i*>(q3), w[h][3]);
        for (int m = 0; m < 4; ++m)
          if (boosted >> m & 1)
            o[m] *= std::exp(std::log(philox::u01_f64(q2[m + 4], q3[m + 4])) / alpha[4 * h + m]);
      }
    }
  }
  return mask;
}
// gamma_first8 on 16 elements with 512-bit vectors: per 8 elements one
// 16-block Philox call gives blocks 0 (lanes 0-7) and 1 (lanes 8-15) of their
// sub-streams; the arithmetic is gamma_first8's operation for operation, so
// both SIMD paths accept the same lanes with the same values.
BG_AVX512 int gamma_first16(const double* alpha, uint64_t seed, uint64_t sub, uint64_t e0, bool log_out,
                            double* out) {
  constexpr int H = 2;
  __m512i w[H][4];
  for (int h = 0; h < H; ++h) {
    __m512i lo, hi;
    simd::substream_counters16(e0 + static_cast<uint64_t>(8 * h), 0, lo, hi);
    simd::philox16(seed, sub, lo, hi, w[h]);
  }
  const __m512d one = _mm512_set1_pd(1.0);
  __m512d a[H], d[H], z[H], z2[H], v[H], ua[H];
  __mmask8 boost[H], live[H], ok[H];
  int all = 0;
  for (int h = 0; h < H; ++h) {
    const __m512d u1 = simd::u01x8d(_mm512_castsi512_si256(w[h][0]), _mm512_castsi512_si256(w[h][1]));
    const __m512d u2 = simd::u01x8d(_mm512_castsi512_si256(w[h][2]), _mm512_castsi512_si256(w[h][3]));
    ua[h] = simd::u01x8d(_mm512_extracti64x4_epi64(w[h][0], 1), _mm512_extracti64x4_epi64(w[h][1], 1));
    a[h] = _mm512_loadu_pd(alpha + 8 * h);
    boost[h] = _mm512_cmp_pd_mask(a[h], one, _CMP_LT_OQ);
    d[h] = _mm512_sub_pd(_mm512_mask_add_pd(a[h], boost[h], a[h], one), _mm512_set1_pd(1.0 / 3.0));
    const __m512d c = _mm512_div_pd(one, _mm512_sqrt_pd(_mm512_mul_pd(_mm512_set1_pd(9.0), d[h])));
    __m512d cs, sn;
    simd::sincos2pix8d(u2, cs, sn);
    z[h] = _mm512_mul_pd(_mm512_sqrt_pd(_mm512_mul_pd(_mm512_set1_pd(-2.0), simd::logx8d(u1))), cs);
    const __m512d t = _mm512_add_pd(one, _mm512_mul_pd(c, z[h]));
    live[h] = _mm512_cmp_pd_mask(t, _mm512_setzero_pd(), _CMP_GT_OQ);
    v[h] = _mm512_mask_mul_pd(one, live[h], _mm512_mul_pd(t, t), t);
    z2[h] = _mm512_mul_pd(z[h], z[h]);
    const __m512d squeeze = _mm512_sub_pd(one, _mm512_mul_pd(_mm512_set1_pd(0.0331), _mm512_mul_pd(z2[h], z2[h])));
    ok[h] = live[h] & _mm512_cmp_pd_mask(ua[h], squeeze, _CMP_LT_OQ);
    all |= static_cast<int>(ok[h]) << (8 * h);
  }
  for (int h = 0; h < H && all != 0xFFFF; ++h) {
    if (ok[h] != 0xFF) {
      const __m512d rhs = _mm512_add_pd(
          _mm512_mul_pd(_mm512_set1_pd(0.5), z2[h]),
          _mm512_mul_pd(d[h], _mm512_add_pd(_mm512_sub_pd(one, v[h]), simd::logx8d(v[h]))));
      ok[h] |= live[h] & _mm512_cmp_pd_mask(simd::logx8d(ua[h]), rhs, _CMP_LT_OQ);
    }
  }
  int mask = 0;
  for (int h = 0; h < H; ++h) {
    mask |= static_cast<int>(ok[h]) << (8 * h);
    const __m512d x = _mm512_mul_pd(d[h], v[h]);
    const __mmask8 boosted = boost[h] & ok[h];
    double* o = out + 8 * h;
    if (log_out) {
      __m512d r = simd::logx8d(x);
      if (boosted) {
        const __m512d ub = simd::u01x8d(_mm512_extracti64x4_epi64(w[h][2], 1), _mm512_extracti64x4_epi64(w[h][3], 1));
        r = _mm512_add_pd(r, _mm512_maskz_mov_pd(boost[h], _mm512_div_pd(simd::logx8d(ub), a[h])));
      }
      _mm512_storeu_pd(o, r);
    } else {
      _mm512_storeu_pd(o, x);
      if (boosted) {
        alignas(64) uint32_t q2[16], q3[16];
        _mm512_store_si512(q2, w[h][2]);
        _mm512_store_si512(q3, w[h][3]);
        for (int m = 0; m < 8; ++m)
          if (boosted >> m & 1)
            o[m] *= std::exp(std::log(philox::u01_f64(q2[m + 8], q3[m + 8])) / alpha[8 * h + m]);
      }
    }
  }
  return mask;
}
#endif

// out[m] = gamma_draw(alpha[m], .., element e0 + m, log_out) for m < n: the
// first iteration on the widest SIMD path the CPU has, the scalar loop for
// the rest.
void gamma_run(const double* alpha, int64_t n, uint64_t seed, uint64_t sub, uint64_t e0, bool log_out,
               double* out) {
  int64_t m = 0;
#if BG_HAVE_X86
  if (simd::use_avx512()) {
    for (; m + 16 <= n; m += 16) {
      const uint64_t e = e0 + static_cast<uint64_t>(m);
      const int ok = gamma_first16(alpha + m, seed, sub, e, log_out, out + m);
      if (ok == 0xFFFF) continue;
      for (int l = 0; l < 16; ++l)
        if (!(ok >> l & 1))
          out[m + l] = gamma_draw(alpha[m + l], seed, sub, e + static_cast<uint64_t>(l), log_out, 1);
    }
  }
  if (simd::use_avx2()) {
    for (; m + 8 <= n; m += 8) {
      const uint64_t e = e0 + static_cast<uint64_t>(m);
      const int ok = gamma_first8(alpha + m, seed, sub, e, log_out, out + m);
      if (ok == 0xFF) continue;
      for (int l = 0; l < 8; ++l)
        if (!(ok >> l & 1))
          out[m + l] = gamma_draw(alpha[m + l], seed, sub, e + static_cast<uint64_t>(l), log_out, 1);
    }
  }
#endif
  for (; m < n; ++m) out[m] = gamma_draw(alpha[m], seed, sub, e0 + static_cast<uint64_t>(m), log_out);
}

}  // namespace

double log_gamma_draw(double alpha, uint64_t seed, uint64_t stream, uint64_t element) {
  return gamma_draw(alpha, seed, stream | philox::kSubstreamBit, element, true);
}

template <typename T>
void sample_locscale(T* out, int64_t n_total, const T* loc, const T* scale, int64_t batch, LocScale fam,
                     uint64_t seed, uint64_t stream) {
  check_batch(n_total, batch);
  if (samplers::locscale_uses_normal(fam))
    fill_normal<T>(out, n_total, seed, stream, 0);
  else
    fill_uniform<T>(out, n_total, seed, stream, 0);
  chunked(n_total, kChunk, [&](int64_t lo, int64_t hi) {
    int64_t j = lo % batch;
    for (int64_t i = lo; i < hi; ++i) {
      const T m = loc[j], s = scale[j];
      out[i] = samplers::locscale_transform<T>(fam, m, s, out[i]);
      if (++j == batch) j = 0;
    }
  });
}

template <typename T>
void locscale_log_prob(const T* x, int64_t n_total, const T* loc, const T* scale, int64_t batch, LocScale fam,
                       T* logp, T* d_loc, T* d_scale) {
  check_batch(n_total, batch);
  chunked(n_total, kChunk, [&](int64_t lo, int64_t hi) {
    int64_t j = lo % batch;
    for (int64_t i = lo; i < hi; ++i) {
      double gl, gs;
      const double lp = samplers::locscale_log_prob(fam, x[i], loc[j], scale[j], gl, gs);
      logp[i] = static_cast<T>(lp);
      if (d_loc) d_loc[i] = static_cast<T>(gl);
      if (d_scale) d_scale[i] = static_cast<T>(gs);
      if (++j == batch) j = 0;
    }
  });
}

template <typename T>
void sample_gamma(T* out, int64_t n_total, const T* alpha, const T* rate, int64_t batch, uint64_t seed,
                  uint64_t stream) {
  check_batch(n_total, batch);
  const uint64_t sub = stream | philox::kSubstreamBit;
  chunked(n_total, kChunk, [&](int64_t lo, int64_t hi) {
    const int64_t len = hi - lo;
    std::vector<double> al(static_cast<size_t>(len)), x(static_cast<size_t>(len));
    for (int64_t i = lo, j = lo % batch; i < hi; ++i) {
      al[i - lo] = alpha[j];
      if (++j == batch) j = 0;
    }
    gamma_run(al.data(), len, seed, sub, static_cast<uint64_t>(lo), false, x.data());
    if (batch == 1) {  // the common scalar-parameter case, in a loop the compiler vectorises
      const double r = rate[0];
      for (int64_t i = 0; i < len; ++i) out[lo + i] = static_cast<T>(x[i] / r);
      return;
    }
    for (int64_t i = lo, j = lo % batch; i < hi; ++i) {
      out[i] = static_cast<T>(x[i - lo] / static_cast<double>(rate[j]));
      if (++j == batch) j = 0;
    }
  });
}

template <typename T>
void sample_beta(T* out, int64_t n_total, const T* a, const T* b, int64_t batch, uint64_t seed, uint64_t stream) {
  check_batch(n_total, batch);
  const uint64_t sub = stream | philox::kSubstreamBit;
  chunked(n_total, kChunk, [&](int64_t lo, int64_t hi) {
    // Gamma elements 2i (shape a) and 2i+1 (shape b), drawn as one run.
    const int64_t len = 2 * (hi - lo);
    std::vector<double> al(static_cast<size_t>(len)), lg(static_cast<size_t>(len));
    for (int64_t i = lo, j = lo % batch; i < hi; ++i) {
      al[2 * (i - lo)] = a[j];
      al[2 * (i - lo) + 1] = b[j];
      if (++j == batch) j = 0;
    }
    gamma_run(al.data(), len, seed, sub, 2 * static_cast<uint64_t>(lo), true, lg.data());
    for (int64_t i = lo; i < hi; ++i) {
      out[i] = static_cast<T>(samplers::beta_from_log_gammas(lg[2 * (i - lo)], lg[2 * (i - lo) + 1]));
    }
  });
}

template <typename T>
void sample_dirichlet(T* out, int64_t n_total, const T* alpha, int64_t batch, int64_t k, uint64_t seed,
                      uint64_t stream) {
  if (k <= 0) throw std::invalid_argument("concentration must have a non-empty last axis");
  check_batch(n_total, batch * k);
  const uint64_t sub = stream | philox::kSubstreamBit;
  const int64_t rows = n_total / k;
  chunked(rows, (kChunk + k - 1) / k, [&](int64_t lo, int64_t hi) {
    const int64_t len = (hi - lo) * k;
    std::vector<double> al(static_cast<size_t>(len)), lgall(static_cast<size_t>(len));
    for (int64_t r = lo; r < hi; ++r) {
      const T* ar = alpha + (r % batch) * k;
      for (int64_t c = 0; c < k; ++c) al[(r - lo) * k + c] = ar[c];
    }
    gamma_run(al.data(), len, seed, sub, static_cast<uint64_t>(lo * k), true, lgall.data());
    for (int64_t r = lo; r < hi; ++r)
      samplers::dirichlet_from_log_gammas<T>(lgall.data() + (r - lo) * k, k, out + r * k);
  });
}

template <typename T>
void gamma_log_prob(const T* x, int64_t n_total, const T* alpha, const T* rate, int64_t batch, T* logp,
                    T* d_alpha, T* d_rate) {
  check_batch(n_total, batch);
  // Per-parameter constants once per batch element (lgamma/digamma are the cost).
  std::vector<double> lg(static_cast<size_t>(batch)), dg(static_cast<size_t>(batch));
  for (int64_t j = 0; j < batch; ++j) {
    lg[j] = special::lgamma(alpha[j]);
    dg[j] = special::digamma(alpha[j]);
  }
  chunked(n_total, kChunk, [&](int64_t lo, int64_t hi) {
    int64_t j = lo % batch;
    for (int64_t i = lo; i < hi; ++i) {
      const double a = alpha[j], r = rate[j], xi = x[i];
      double lp, ga = 0, gr = 0;
      if (!(xi > 0)) {
        lp = (xi == 0 && a == 1.0) ? std::log(r) : (xi == 0 && a < 1.0 ? std::numeric_limits<double>::infinity()
                                                                          : kNegInf);
      } else {
        const double lr = std::log(r), lx = std::log(xi);
        lp = a * lr + (a - 1.0) * lx - r * xi - lg[j];
        ga = lr + lx - dg[j];
        gr = a / r - xi;
      }
      logp[i] = static_cast<T>(lp);
      if (d_alpha) d_alpha[i] = static_cast<T>(ga);
      if (d_rate) d_rate[i] = static_cast<T>(gr);
      if (++j == batch) j = 0;
    }
  });
}

#define BG_INSTANTIATE(T)                                                                                     \
  template void sample_locscale<T>(T*, int64_t, const T*, const T*, int64_t, LocScale, uint64_t, uint64_t);    \
  template void locscale_log_prob<T>(const T*, int64_t, const T*, const T*, int64_t, LocScale, T*, T*, T*);    \
  template void sample_gamma<T>(T*, int64_t, const T*, const T*, int64_t, uint64_t, uint64_t);                 \
  template void sample_beta<T>(T*, int64_t, const T*, const T*, int64_t, uint64_t, uint64_t);                  \
  template void sample_dirichlet<T>(T*, int64_t, const T*, int64_t, int64_t, uint64_t, uint64_t);              \
  template void gamma_log_prob<T>(const T*, int64_t, const T*, const T*, int64_t, T*, T*, T*);
BG_INSTANTIATE(float)
BG_INSTANTIATE(double)
#undef BG_INSTANTIATE

// ---------------------------------------------------------------- Poisson
// (layout and algorithms in distributions.hpp; per element samplers::poisson_draw)
template <typename T>
void sample_poisson(T* out, int64_t n_total, const T* rate, int64_t batch, uint64_t seed, uint64_t stream) {
  check_batch(n_total, batch);
  std::vector<samplers::PoissonConsts> cs(static_cast<size_t>(batch));
  for (int64_t j = 0; j < batch; ++j) {
    const double lam = static_cast<double>(rate[j]);
    if (!(lam >= 0.0 && lam <= samplers::kPoissonMaxRate))  // NaN fails too
      throw std::invalid_argument("rate must be finite and in [0, 1e10]; index " + std::to_string(j) + " is not");
    cs[static_cast<size_t>(j)] = samplers::poisson_consts(lam);
  }
  const uint64_t sub = stream | philox::kSubstreamBit;
  chunked(n_total, kChunk, [&](int64_t lo, int64_t hi) {
    int64_t j = lo % batch;
    for (int64_t i = lo; i < hi; ++i) {
      out[i] = static_cast<T>(samplers::poisson_draw(cs[static_cast<size_t>(j)], seed, sub, static_cast<uint64_t>(i)));
      if (++j == batch) j = 0;
    }
  });
}

template void sample_poisson<float>(float*, int64_t, const float*, int64_t, uint64_t, uint64_t);
template void sample_poisson<double>(double*, int64_t, const double*, int64_t, uint64_t, uint64_t);

}  // namespace bayesgrad
