// GEMMs with one narrow dimension (at most 16), which OpenBLAS runs poorly:
// it packs both operands into panels sized for square products, and for a
// 5000 x 100 by 100 x 10 product the packing took more time than the
// multiply-adds (perf: dgemm_oncopy + itcopy 30% of a small network's VJP,
// the kernel 22%). The MLP engine meets these shapes at every narrow layer:
// output layers of 1-16 units, RELAX's surrogate network.
//
// Two kernels, each keeping its accumulators in registers and streaming the
// long operand once:
//  - rows:   C (M x N) = op(A) P for N <= 2 vectors (P = op(B) packed K x NP,
//            zero-padded): 4 rows of C at a time, one broadcast of op(A)(i, k)
//            per row and k against the P row in registers;
//  - reduce: C (M x N) = A^T B with M <= 16 (A is K x M, B is K x N, K long: a
//            weight gradient G^T X): column blocks of 1-2 vectors, all M rows of
//            the block in registers, one pass over the K rows.
//            A weight gradient with the roles swapped, A^T B with N <= 16, is
//            the same kernel on B^T A, stored transposed.
// Measured against scipy-openblas32 on one core of the Zen 4 VM (the README's
// [C], bench/narrow_gemm.py): see docs/design.md. float32 products with at
// most 8 columns stay with OpenBLAS (about as fast there), as does a short
// inner dimension (K <= 16 by a wide N: a kernel for it here ran at 0.4-0.6x
// of OpenBLAS).
// The vectors are GCC vector extensions of 64 bytes, so one source compiles to
// AVX-512 (one register), AVX2+FMA (two) and scalar code; the three
// instantiations are chosen at run time like every other kernel. Work is split
// into fixed row (or K) chunks whatever the thread count, and reduce's chunk
// partials are added in chunk order, so results do not depend on the count.
#include "bayesgrad/narrow_gemm.hpp"

#include "bayesgrad/parallel.hpp"
#include "bayesgrad/simd_math.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

// The vector helpers below are always inlined into the ISA-specific kernels, so
// no vector ever crosses a call boundary: the ABI note GCC gives for them does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace bayesgrad {
namespace {

template <typename T>
struct Vec;
template <>
struct Vec<double> {
  typedef double type __attribute__((vector_size(64)));
};
template <>
struct Vec<float> {
  typedef float type __attribute__((vector_size(64)));
};

template <typename T>
constexpr int64_t kLanes = 64 / sizeof(T);

template <typename T>
inline __attribute__((always_inline)) typename Vec<T>::type load(const T* p) {
  typename Vec<T>::type v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <typename T>
inline __attribute__((always_inline)) void store(T* p, typename Vec<T>::type v) {
  std::memcpy(p, &v, sizeof(v));
}

// C row r (n values) = alpha acc + beta C (C not read when beta == 0: it may be uninitialised).
template <typename T>
inline __attribute__((always_inline)) void put(T* c, const T* acc, int64_t n, T alpha, T beta) {
  if (beta == T(0))
    for (int64_t j = 0; j < n; ++j) c[j] = alpha * acc[j];
  else
    for (int64_t j = 0; j < n; ++j) c[j] = alpha * acc[j] + beta * c[j];
}

// rows: rows [i0, i1) of C; op(A)(i, k) = A[i ars + k acs]; P is K x (NV lanes) with zeros past N.
template <typename T, int NV>
inline __attribute__((always_inline)) void rows_body(int64_t i0, int64_t i1, int64_t N, int64_t K, T alpha,
                                                     const T* A, int64_t ars, int64_t acs, const T* P, T beta, T* C,
                                                     int64_t ldc) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = kLanes<T>, NP = NV * L;
  alignas(64) T buf[4 * NP];
  int64_t i = i0;
  for (; i + 4 <= i1; i += 4) {
    V acc[4][NV] = {};
    const T* a0 = A + i * ars;
    for (int64_t k = 0; k < K; ++k) {
      V p[NV];
      for (int v = 0; v < NV; ++v) p[v] = load(P + k * NP + v * L);
      for (int r = 0; r < 4; ++r) {
        const T a = a0[r * ars + k * acs];
        for (int v = 0; v < NV; ++v) acc[r][v] += a * p[v];
      }
    }
    for (int r = 0; r < 4; ++r)
      for (int v = 0; v < NV; ++v) store(buf + r * NP + v * L, acc[r][v]);
    for (int r = 0; r < 4; ++r) put(C + (i + r) * ldc, buf + r * NP, N, alpha, beta);
  }
  for (; i < i1; ++i) {
    V acc[NV] = {};
    const T* a0 = A + i * ars;
    for (int64_t k = 0; k < K; ++k)
      for (int v = 0; v < NV; ++v) acc[v] += a0[k * acs] * load(P + k * NP + v * L);
    for (int v = 0; v < NV; ++v) store(buf + v * L, acc[v]);
    put(C + i * ldc, buf, N, alpha, beta);
  }
}

// reduce: the partial sum over rows [r0, r1) of A (K x M, lda) and B (K x N, ldb) into part (M x N).
// Rows go in blocks of about 16 KiB of B (kept in L1 while every column block of NV vectors takes its
// turn, the block's M x NV accumulators in registers and in part between row blocks); a last column
// block that N does not fill is taken at N - NV lanes (overlapping the one before) and accumulated in
// `tail` (M x NB), whose new columns are copied at the end.
template <typename T, int NV>
inline __attribute__((always_inline)) void reduce_body(int64_t r0, int64_t r1, int64_t M, int64_t N, const T* A,
                                                       int64_t lda, const T* B, int64_t ldb, T* part) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = kLanes<T>, NB = NV * L;
  alignas(64) T tail[16 * NB];
  const int64_t full = N / NB * NB, rb = std::max<int64_t>(16, 16384 / static_cast<int64_t>(N * sizeof(T)));
  for (int64_t b0 = r0; b0 < r1; b0 += rb) {
    const int64_t b1 = std::min(r1, b0 + rb);
    const bool first = b0 == r0;
    for (int64_t c0 = 0; c0 < N; c0 += NB) {
      const bool last = c0 >= full;  // the overlapping block (only when N is not a multiple of NB)
      const int64_t c = last ? N - NB : c0;
      T* dst = last ? tail : part + c0;
      const int64_t ld = last ? NB : N;
      V acc[16][NV] = {};
      if (!first)
        for (int64_t j = 0; j < 16; ++j) {
          if (j >= M) break;
          for (int v = 0; v < NV; ++v) acc[j][v] = load(dst + j * ld + v * L);
        }
      for (int64_t r = b0; r < b1; ++r) {
        V bv[NV];
        for (int v = 0; v < NV; ++v) bv[v] = load(B + r * ldb + c + v * L);
        const T* a = A + r * lda;
        for (int64_t j = 0; j < 16; ++j) {
          if (j >= M) break;
          for (int v = 0; v < NV; ++v) acc[j][v] += a[j] * bv[v];
        }
      }
      for (int64_t j = 0; j < 16; ++j) {
        if (j >= M) break;
        for (int v = 0; v < NV; ++v) store(dst + j * ld + v * L, acc[j][v]);
      }
    }
  }
  if (full < N)
    for (int64_t j = 0; j < M; ++j)
      std::memcpy(part + j * N + full, tail + j * NB + (full - (N - NB)), sizeof(T) * (N - full));
}

// The kernels for one ISA (AVX-512, AVX2+FMA, the compiler's baseline).
#define BG_NARROW_ISA(ATTR, NAME)                                                                                  \
  template <typename T, int NV>                                                                                    \
  ATTR void rows_##NAME(int64_t i0, int64_t i1, int64_t N, int64_t K, T alpha, const T* A, int64_t ars,           \
                        int64_t acs, const T* P, T beta, T* C, int64_t ldc) {                                      \
    rows_body<T, NV>(i0, i1, N, K, alpha, A, ars, acs, P, beta, C, ldc);                                           \
  }                                                                                                                \
  template <typename T, int NV>                                                                                    \
  ATTR void reduce_##NAME(int64_t r0, int64_t r1, int64_t M, int64_t N, const T* A, int64_t lda, const T* B,      \
                          int64_t ldb, T* part) {                                                                  \
    reduce_body<T, NV>(r0, r1, M, N, A, lda, B, ldb, part);                                                        \
  }

#if BG_HAVE_X86
BG_NARROW_ISA(BG_AVX512, avx512)
BG_NARROW_ISA(BG_AVX2, avx2)
#endif
BG_NARROW_ISA(, base)
#undef BG_NARROW_ISA

int isa() {
#if BG_HAVE_X86
  if (simd::use_avx512()) return 2;
  if (simd::use_avx2()) return 1;
#endif
  return 0;
}

// From this many multiply-adds a product runs on the pool, in at most 4 chunks (pool_gemm's
// kTileWork and tile count: below it, or in smaller chunks, a second thread's wake-up and the risk
// of waiting on a descheduled one cost more than they save on a shared machine).
constexpr int64_t kParallelWork = int64_t{1} << 21;

// Rows of C per chunk: the whole product serially, else 2-4 chunks of at least 2^20 multiply-adds
// (a multiple of 4 rows). A row's values do not depend on the chunking.
int64_t row_chunk(int64_t M, int64_t N, int64_t K, bool parallel) {
  const int64_t work = M * N * K;
  if (!parallel || work < kParallelWork) return M;
  const int64_t chunks = std::min<int64_t>(4, work >> 20);
  return std::max<int64_t>(4, ((M + chunks - 1) / chunks + 3) / 4 * 4);
}

template <typename T>
void run_rows(int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t ars, int64_t acs, const T* P, T beta,
              T* C, int64_t ldc, bool parallel) {
  const int64_t rows = row_chunk(M, N, K, parallel), n_ch = (M + rows - 1) / rows;
  const bool two = N > kLanes<T>;
  const int path = isa();
  const auto body = [&](int64_t ch) {
    const int64_t i0 = ch * rows, i1 = std::min(M, i0 + rows);
#if BG_HAVE_X86
    if (path == 2) return two ? rows_avx512<T, 2>(i0, i1, N, K, alpha, A, ars, acs, P, beta, C, ldc)
                              : rows_avx512<T, 1>(i0, i1, N, K, alpha, A, ars, acs, P, beta, C, ldc);
    if (path == 1) return two ? rows_avx2<T, 2>(i0, i1, N, K, alpha, A, ars, acs, P, beta, C, ldc)
                              : rows_avx2<T, 1>(i0, i1, N, K, alpha, A, ars, acs, P, beta, C, ldc);
#endif
    two ? rows_base<T, 2>(i0, i1, N, K, alpha, A, ars, acs, P, beta, C, ldc)
        : rows_base<T, 1>(i0, i1, N, K, alpha, A, ars, acs, P, beta, C, ldc);
  };
  if (n_ch > 1) parallel_chunks(n_ch, body);
  else body(0);
}

// K rows per reduce chunk: fixed, so the partial sums and their order do not depend on the threads.
constexpr int64_t kReduceRows = 2048;

// C (M x N) = alpha A^T B + beta C, or with `ct` its transpose: C (N x M) = alpha (A^T B)^T + beta C.
template <typename T>
void run_reduce(int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B, int64_t ldb, T beta,
                T* C, int64_t ldc, bool parallel, bool ct) {
  const int64_t n_ch = (K + kReduceRows - 1) / kReduceRows;
  std::vector<T> parts(static_cast<size_t>(n_ch * M * N));
  const bool two = M <= 8 && N >= 2 * kLanes<T>;
  const int path = isa();
  const auto body = [&](int64_t ch) {
    const int64_t r0 = ch * kReduceRows, r1 = std::min(K, r0 + kReduceRows);
    T* part = parts.data() + ch * M * N;
#if BG_HAVE_X86
    if (path == 2) return two ? reduce_avx512<T, 2>(r0, r1, M, N, A, lda, B, ldb, part)
                              : reduce_avx512<T, 1>(r0, r1, M, N, A, lda, B, ldb, part);
    if (path == 1) return two ? reduce_avx2<T, 2>(r0, r1, M, N, A, lda, B, ldb, part)
                              : reduce_avx2<T, 1>(r0, r1, M, N, A, lda, B, ldb, part);
#endif
    two ? reduce_base<T, 2>(r0, r1, M, N, A, lda, B, ldb, part) : reduce_base<T, 1>(r0, r1, M, N, A, lda, B, ldb, part);
  };
  if (parallel && n_ch > 1 && M * N * K >= kParallelWork) parallel_chunks(n_ch, body);
  else for (int64_t c = 0; c < n_ch; ++c) body(c);
  for (int64_t j = 0; j < M; ++j)
    for (int64_t n = 0; n < N; ++n) {
      T s = T(0);
      for (int64_t ch = 0; ch < n_ch; ++ch) s += parts[(ch * M + j) * N + n];
      T& c = ct ? C[n * ldc + j] : C[j * ldc + n];
      c = beta == T(0) ? alpha * s : alpha * s + beta * c;
    }
}

// op(B) (K x N) as a packed K x np row-major copy, zeros in columns N..np.
template <typename T>
std::vector<T> pack(bool tb, int64_t K, int64_t N, const T* B, int64_t ldb, int64_t np) {
  std::vector<T> P(static_cast<size_t>(K * np), T(0));
  for (int64_t k = 0; k < K; ++k)
    for (int64_t n = 0; n < N; ++n) P[k * np + n] = tb ? B[n * ldb + k] : B[k * ldb + n];
  return P;
}

}  // namespace

template <typename T>
bool narrow_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
                 int64_t ldb, T beta, T* C, int64_t ldc, bool parallel) {
  constexpr int64_t L = kLanes<T>;
  if (M <= 0 || N <= 0 || K <= 0) return false;
  // op(A)(i, k) = A[i ars + k acs]
  const int64_t ars = ta ? 1 : lda, acs = ta ? lda : 1;
  // a weight gradient G^T X with 2-16 outputs (one output: OpenBLAS's GEMV is as fast)
  if (ta && !tb && M >= 2 && M <= 16 && K >= 256 && N >= L) {
    run_reduce(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, parallel, false);
    return true;
  }
  // the same product with the roles swapped, X^T G with 2-16 columns, as (G^T X)^T: the rows kernel
  // below would read A down its columns (a line per element; 1.7-2x slower for a 5000 x 100 by
  // 5000 x 10 product, and beyond K N = 2^16 OpenBLAS's packing again). From 128 rows: at 64 it was
  // at parity with OpenBLAS (0.94-1.09x), the rows kernel at 0.87x on 400 x 10 over 128 rows
  // (bench/narrow_gemm.py)
  if (ta && !tb && N >= 2 && N <= 16 && K >= 128 && M >= L) {
    run_reduce(N, M, K, alpha, B, ldb, A, lda, beta, C, ldc, parallel, true);
    return true;
  }
  // few output columns (float32 from 9, more than half a vector: with fewer OpenBLAS's own narrow path is
  // as fast or faster, bench/results/narrow_gemm_zen4.json): P in registers
  if (N <= 2 * L && (sizeof(T) == 8 || 2 * N > L) && M >= 16 && K * N <= (int64_t{1} << 16)) {
    const int64_t np = N > L ? 2 * L : L;
    const std::vector<T> P = pack(tb, K, N, B, ldb, np);
    run_rows(M, N, K, alpha, A, ars, acs, P.data(), beta, C, ldc, parallel);
    return true;
  }
  return false;
}

template bool narrow_gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                                 int64_t, float, float*, int64_t, bool);
template bool narrow_gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t,
                                  const double*, int64_t, double, double*, int64_t, bool);

}  // namespace bayesgrad
