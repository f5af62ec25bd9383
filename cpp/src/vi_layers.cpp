// Local reparameterisation and Flipout layers of mean-field VI (vi_layers.hpp).
#include "vi_layers.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "bayesgrad/philox.hpp"
#include "bayesgrad/random.hpp"

namespace bayesgrad {
namespace vi_layers {


template <typename T>
void stoch_forward(const ViConfig& cfg, const T* mu, const T* sigma, const T* eps, const T* xb, int64_t B,
                   uint64_t stream_t, Stoch<T>& st) {
  const mlp::Layout& L = cfg.net.layout;
  const int64_t S = cfg.n_samples, P = L.n_params, R = S * B;
  const int64_t nl = L.n_layers();
  st.in.resize(nl);
  st.z.resize(nl);
  st.aux1.resize(nl);
  st.aux2.resize(nl);
  std::vector<T>& tmp = st.tmp;
  std::vector<T>& sq = st.sq;
  uint64_t zeta_off = static_cast<uint64_t>(S * P), sign_off = 0;
  const uint64_t sign_stream = philox::fold_in(stream_t, codes::kTagFlipout);
  // The S samples share the input rows xb: the first layer's mean (and, for
  // the local reparameterisation, variance) path is one GEMM over the B rows,
  // copied to the other samples; st.in[0] stays empty (layer 0 reads xb).
  for (int64_t l = 0; l < nl; ++l) {
    const int64_t din = L.d_in(l), dout = L.d_out(l);
    const bool shared = l == 0;
    const int64_t Rl = shared ? B : R;  // rows the mean-path GEMMs run over
    const T* A = shared ? xb : st.in[l].data();
    std::vector<T>& z = st.z[l];
    z.resize(R * dout);
    const T* mW = mu + L.w_off[l];
    const T* mb = mu + L.b_off[l];
    for (int64_t r = 0; r < Rl; ++r) std::copy(mb, mb + dout, z.data() + r * dout);
    mlp::gemm_batch<T>(false, true, Rl, dout, din, A, din, 0, mW, din, 0, T(1), z.data(), dout, 0, 1);
    for (int64_t s = 1; s < R / Rl; ++s) std::copy(z.data(), z.data() + Rl * dout, z.data() + s * Rl * dout);
    if (cfg.estimator == ViEstimator::kLocalReparam) {
      // V = A^2 (sigma_W^2)^T + sigma_b^2; aux1 = sqrt(V), aux2 = zeta
      sq.resize(Rl * din);
      for (int64_t k = 0; k < Rl * din; ++k) sq[k] = A[k] * A[k];
      tmp.resize(dout * din);
      for (int64_t k = 0; k < dout * din; ++k) tmp[k] = sigma[L.w_off[l] + k] * sigma[L.w_off[l] + k];
      std::vector<T>& sv = st.aux1[l];
      sv.resize(R * dout);
      for (int64_t r = 0; r < Rl; ++r)
        for (int64_t j = 0; j < dout; ++j) sv[r * dout + j] = sigma[L.b_off[l] + j] * sigma[L.b_off[l] + j];
      mlp::gemm_batch<T>(false, true, Rl, dout, din, sq.data(), din, 0, tmp.data(), din, 0, T(1), sv.data(), dout,
                         0, 1);
      for (int64_t s = 1; s < R / Rl; ++s) std::copy(sv.data(), sv.data() + Rl * dout, sv.data() + s * Rl * dout);
      std::vector<T>& zeta = st.aux2[l];
      zeta.resize(R * dout);
      fill_normal<T>(zeta.data(), R * dout, cfg.seed, stream_t, zeta_off);
      zeta_off += static_cast<uint64_t>(R * dout);
      for (int64_t k = 0; k < R * dout; ++k) {
        sv[k] = std::sqrt(sv[k]);
        z[k] += sv[k] * zeta[k];
      }
    } else {  // Flipout: z += ((A o R_in) dW_s^T) o R_out + db_s
      std::vector<T>& rin = st.aux1[l];
      std::vector<T>& rout = st.aux2[l];
      rin.resize(R * din);
      rout.resize(R * dout);
      fill_uniform<T>(rin.data(), R * din, cfg.seed, sign_stream, sign_off);
      sign_off += static_cast<uint64_t>(R * din);
      fill_uniform<T>(rout.data(), R * dout, cfg.seed, sign_stream, sign_off);
      sign_off += static_cast<uint64_t>(R * dout);
      for (T& u : rin) u = u < T(0.5) ? T(-1) : T(1);
      for (T& u : rout) u = u < T(0.5) ? T(-1) : T(1);
      // perturbations dW_s = sigma o eps_s (S, dout*din), db_s = sigma_b o eps_b,s
      tmp.resize(S * dout * din);
      for (int64_t s = 0; s < S; ++s)
        for (int64_t k = 0; k < dout * din; ++k)
          tmp[s * dout * din + k] = sigma[L.w_off[l] + k] * eps[s * P + L.w_off[l] + k];
      sq.resize(R * din);
      for (int64_t k = 0; k < R * din; ++k) sq[k] = A[shared ? k % (B * din) : k] * rin[k];
      std::vector<T>& pert = st.pert;
      pert.resize(R * dout);
      mlp::gemm_batch<T>(false, true, B, dout, din, sq.data(), din, B * din, tmp.data(), din, dout * din, T(0),
                         pert.data(), dout, B * dout, S);
      for (int64_t s = 0; s < S; ++s)
        for (int64_t b = 0; b < B; ++b) {
          const int64_t r = s * B + b;
          for (int64_t j = 0; j < dout; ++j)
            z[r * dout + j] += pert[r * dout + j] * rout[r * dout + j] +
                               sigma[L.b_off[l] + j] * eps[s * P + L.b_off[l] + j];
        }
    }
    if (l + 1 < nl) {
      st.in[l + 1].resize(R * dout);
      T* a = st.in[l + 1].data();
      mlp::act_array(cfg.net.act, z.data(), a, R * dout);
    }
  }
}

template <typename T>
void stoch_backward(const ViConfig& cfg, const T* mu, const T* sigma, const T* eps, const T* xb, int64_t B,
                    Stoch<T>& st, T* G0, T* gmu, T* gsigma) {
  const mlp::Layout& L = cfg.net.layout;
  const int64_t S = cfg.n_samples, P = L.n_params, R = S * B;
  std::vector<T>& Gbuf = st.Gbuf;
  std::vector<T>& dA = st.dA;
  std::vector<T>& tmp = st.tmp;
  std::vector<T>& tmp2 = st.tmp2;
  std::vector<T>& sq = st.sq;
  T* G = G0;
  for (int64_t l = L.n_layers() - 1; l >= 0; --l) {
    const int64_t din = L.d_in(l), dout = L.d_out(l);
    const bool shared = l == 0;  // the input xb, the same for every sample (st.in[0] is empty)
    const T* A = shared ? xb : st.in[l].data();
    const T* mW = mu + L.w_off[l];
    // mean path: d mu_W = G^T A over all S*B rows (layer 0: (sum_s G_s)^T xb over B rows); d mu_b = column sums
    if (shared) {
      std::vector<T>& Gsum = st.Gsum;
      Gsum.assign(G, G + B * dout);
      for (int64_t s = 1; s < S; ++s)
        for (int64_t k = 0; k < B * dout; ++k) Gsum[k] += G[s * B * dout + k];
      mlp::gemm_batch<T>(true, false, dout, din, B, Gsum.data(), dout, 0, A, din, 0, T(0), gmu + L.w_off[l], din, 0,
                         1);
    } else {
      mlp::gemm_batch<T>(true, false, dout, din, R, G, dout, 0, A, din, 0, T(0), gmu + L.w_off[l], din, 0, 1);
    }
    T* gb = gmu + L.b_off[l];
    T* gsb = gsigma + L.b_off[l];
    std::fill(gb, gb + dout, T(0));
    std::fill(gsb, gsb + dout, T(0));
    for (int64_t r = 0; r < R; ++r)
      for (int64_t j = 0; j < dout; ++j) gb[j] += G[r * dout + j];
    if (l > 0) {
      dA.assign(R * din, T(0));
      mlp::gemm_batch<T>(false, false, R, din, dout, G, dout, 0, mW, din, 0, T(0), dA.data(), din, 0, 1);
    }
    T* gsW = gsigma + L.w_off[l];
    if (cfg.estimator == ViEstimator::kLocalReparam) {
      const std::vector<T>& sv = st.aux1[l];
      const std::vector<T>& zeta = st.aux2[l];
      std::vector<T>& dV = st.dV;
      dV.resize(R * dout);
      for (int64_t k = 0; k < R * dout; ++k) dV[k] = G[k] * zeta[k] / (T(2) * sv[k]);
      const int64_t Rl = shared ? B : R;
      sq.resize(Rl * din);
      for (int64_t k = 0; k < Rl * din; ++k) sq[k] = A[k] * A[k];
      // d sigma_W^2 = dV^T A^2 (layer 0: (sum_s dV_s)^T xb^2); d sigma = 2 sigma d sigma^2
      const T* dVr = dV.data();
      if (shared && S > 1) {
        std::vector<T>& Gsum = st.Gsum;
        Gsum.assign(dV.begin(), dV.begin() + B * dout);
        for (int64_t s = 1; s < S; ++s)
          for (int64_t k = 0; k < B * dout; ++k) Gsum[k] += dV[s * B * dout + k];
        dVr = Gsum.data();
      }
      mlp::gemm_batch<T>(true, false, dout, din, Rl, dVr, dout, 0, sq.data(), din, 0, T(0), gsW, din, 0, 1);
      for (int64_t k = 0; k < dout * din; ++k) gsW[k] *= T(2) * sigma[L.w_off[l] + k];
      for (int64_t r = 0; r < R; ++r)
        for (int64_t j = 0; j < dout; ++j) gsb[j] += dV[r * dout + j];
      for (int64_t j = 0; j < dout; ++j) gsb[j] *= T(2) * sigma[L.b_off[l] + j];
      if (l > 0) {  // dA += 2 A o (dV sigma_W^2)
        tmp.resize(dout * din);
        for (int64_t k = 0; k < dout * din; ++k) tmp[k] = sigma[L.w_off[l] + k] * sigma[L.w_off[l] + k];
        tmp2.resize(R * din);
        mlp::gemm_batch<T>(false, false, R, din, dout, dV.data(), dout, 0, tmp.data(), din, 0, T(0), tmp2.data(),
                           din, 0, 1);
        for (int64_t k = 0; k < R * din; ++k) dA[k] += T(2) * A[k] * tmp2[k];
      }
    } else {  // Flipout
      const std::vector<T>& rin = st.aux1[l];
      const std::vector<T>& rout = st.aux2[l];
      std::vector<T>& Gs = st.Gs;
      Gs.resize(R * dout);
      for (int64_t k = 0; k < R * dout; ++k) Gs[k] = G[k] * rout[k];
      sq.resize(R * din);
      for (int64_t k = 0; k < R * din; ++k) sq[k] = A[shared ? k % (B * din) : k] * rin[k];
      // d dW_s = Gs_s^T (A o R_in)_s, then d sigma_W = sum_s d dW_s o eps_s
      tmp.resize(S * dout * din);
      mlp::gemm_batch<T>(true, false, dout, din, B, Gs.data(), dout, B * dout, sq.data(), din, B * din, T(0),
                         tmp.data(), din, dout * din, S);
      std::fill(gsW, gsW + dout * din, T(0));
      for (int64_t s = 0; s < S; ++s) {
        const T* e = eps + s * P + L.w_off[l];
        const T* t = tmp.data() + s * dout * din;
        for (int64_t k = 0; k < dout * din; ++k) gsW[k] += t[k] * e[k];
        const T* eb = eps + s * P + L.b_off[l];
        for (int64_t b = 0; b < B; ++b)
          for (int64_t j = 0; j < dout; ++j) gsb[j] += G[(s * B + b) * dout + j] * eb[j];
      }
      if (l > 0) {  // dA += (Gs_s dW_s) o R_in
        tmp2.resize(S * dout * din);
        for (int64_t s = 0; s < S; ++s)
          for (int64_t k = 0; k < dout * din; ++k)
            tmp2[s * dout * din + k] = sigma[L.w_off[l] + k] * eps[s * P + L.w_off[l] + k];
        std::vector<T>& pa = st.pa;
        pa.resize(R * din);
        mlp::gemm_batch<T>(false, false, B, din, dout, Gs.data(), dout, B * dout, tmp2.data(), din, dout * din, T(0),
                           pa.data(), din, B * din, S);
        for (int64_t k = 0; k < R * din; ++k) dA[k] += pa[k] * rin[k];
      }
    }
    if (l == 0) break;
    const std::vector<T>& zp = st.z[l - 1];
    const T* ap = st.in[l].data();
    mlp::mul_act_deriv_array(cfg.net.act, zp.data(), ap, dA.data(), R * din);
    Gbuf.swap(dA);
    G = Gbuf.data();
  }
}

template <typename T>
void wide_forward(const mlp::Layout& L, mlp::Activation f, const T* W, int64_t S, const T* X, int64_t B,
                  WideTrace<T>& tr) {
  const int64_t nl = L.n_layers();
  tr.z.resize(nl);
  tr.a.resize(nl);
  for (int64_t l = 0; l < nl; ++l) {
    const int64_t din = L.d_in(l), dout = L.d_out(l);
    const bool last = l + 1 == nl;
    // input: X shared, or the layer below as (B, S din)
    const T* A = l == 0 ? X : tr.a[l - 1].data();
    const int64_t lda = l == 0 ? din : S * din, sa = l == 0 ? 0 : din;
    // output: (S, B, dout) for the last layer, (B, S dout) below it
    const int64_t ldc = last ? dout : S * dout, sc = last ? B * dout : dout;
    std::vector<T>& z = tr.z[l];
    z.resize(S * B * dout);
    const T* Wl = W + S * L.w_off[l];
    const T* bl = W + S * L.b_off[l];
    for (int64_t s = 0; s < S; ++s)
      for (int64_t b = 0; b < B; ++b) std::copy(bl + s * dout, bl + (s + 1) * dout, z.data() + s * sc + b * ldc);
    if (l == 0 && !last)  // one GEMM for every sample: (B, din) x (S dout, din)^T
      mlp::gemm_batch<T>(false, true, B, S * dout, din, X, din, 0, Wl, din, 0, T(1), z.data(), S * dout, 0, 1);
    else
      mlp::gemm_batch<T>(false, true, B, dout, din, A, lda, sa, Wl, din, dout * din, T(1), z.data(), ldc, sc, S);
    if (last) break;
    tr.a[l].resize(z.size());
    mlp::act_array(f, z.data(), tr.a[l].data(), S * B * dout);
  }
}

template <typename T>
void wide_backward(const mlp::Layout& L, mlp::Activation f, const T* W, int64_t S, const T* X, int64_t B,
                   WideTrace<T>& tr, T* G, T* gW) {
  const int64_t nl = L.n_layers();
  for (int64_t l = nl - 1; l >= 0; --l) {
    const int64_t din = L.d_in(l), dout = L.d_out(l);
    const bool last = l + 1 == nl;
    const T* A = l == 0 ? X : tr.a[l - 1].data();
    const int64_t lda = l == 0 ? din : S * din, sa = l == 0 ? 0 : din;
    const int64_t ldg = last ? dout : S * dout, sg = last ? B * dout : dout;
    T* gWl = gW + S * L.w_off[l];
    if (l == 0 && !last)  // (S dout, B) x (B, din): every sample's first-layer gradient at once
      mlp::gemm_batch<T>(true, false, S * dout, din, B, G, S * dout, 0, X, din, 0, T(0), gWl, din, 0, 1);
    else
      mlp::gemm_batch<T>(true, false, dout, din, B, G, ldg, sg, A, lda, sa, T(0), gWl, din, dout * din, S);
    T* gb = gW + S * L.b_off[l];
    std::fill(gb, gb + S * dout, T(0));
    for (int64_t s = 0; s < S; ++s)
      for (int64_t b = 0; b < B; ++b) {
        const T* g = G + s * sg + b * ldg;
        T* d = gb + s * dout;
        for (int64_t j = 0; j < dout; ++j) d[j] += g[j];
      }
    if (l == 0) break;
    // dA (B, S din) = G_s W_s per sample, then times the activation's derivative
    tr.g_next.resize(S * B * din);
    mlp::gemm_batch<T>(false, false, B, din, dout, G, ldg, sg, W + S * L.w_off[l], din, dout * din, T(0),
                       tr.g_next.data(), S * din, din, S);
    mlp::mul_act_deriv_array(f, tr.z[l - 1].data(), tr.a[l - 1].data(), tr.g_next.data(), S * B * din);
    tr.g_cur.swap(tr.g_next);
    G = tr.g_cur.data();
  }
}

template void wide_forward<float>(const mlp::Layout&, mlp::Activation, const float*, int64_t, const float*, int64_t,
                                  WideTrace<float>&);
template void wide_forward<double>(const mlp::Layout&, mlp::Activation, const double*, int64_t, const double*,
                                   int64_t, WideTrace<double>&);
template void wide_backward<float>(const mlp::Layout&, mlp::Activation, const float*, int64_t, const float*, int64_t,
                                   WideTrace<float>&, float*, float*);
template void wide_backward<double>(const mlp::Layout&, mlp::Activation, const double*, int64_t, const double*,
                                    int64_t, WideTrace<double>&, double*, double*);

template void stoch_forward<float>(const ViConfig&, const float*, const float*, const float*, const float*, int64_t,
                                   uint64_t, Stoch<float>&);
template void stoch_forward<double>(const ViConfig&, const double*, const double*, const double*, const double*,
                                    int64_t, uint64_t, Stoch<double>&);
template void stoch_backward<float>(const ViConfig&, const float*, const float*, const float*, const float*, int64_t,
                                    Stoch<float>&, float*, float*, float*);
template void stoch_backward<double>(const ViConfig&, const double*, const double*, const double*, const double*,
                                     int64_t, Stoch<double>&, double*, double*, double*);

}  // namespace vi_layers
}  // namespace bayesgrad
