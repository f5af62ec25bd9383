// Philox4x32-10 (Salmon et al., SC'11) and the word addressing of docs/design.md.
// Plain C++17 usable from CUDA: every function is BG_HD (hd.hpp) and header-only.
#pragma once
#include <cstdint>

#include "bayesgrad/hd.hpp"

namespace bayesgrad {
namespace philox {

constexpr uint32_t kM0 = 0xD2511F53u;
constexpr uint32_t kM1 = 0xCD9E8D57u;
constexpr uint32_t kW0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kW1 = 0xBB67AE85u;  // sqrt(3) - 1
// Sub-streams for samplers that use a variable number of words per element
// (Gamma, Beta, ...): stream | kSubstreamBit, block = element * 2^16 + k.
constexpr uint64_t kSubstreamBit = 0x8000000000000000ull;
constexpr uint64_t kSubstreamBlocks = 1ull << 16;

BG_HD void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// One Philox4x32 block with R rounds; ctr and key as Random123 orders them.
template <int R = 10>
BG_HD void block(const uint32_t ctr_in[4], const uint32_t key_in[2], uint32_t out[4]) {
  uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
  uint32_t k0 = key_in[0], k1 = key_in[1];
  for (int r = 0; r < R; ++r) {
    if (r > 0) { k0 += kW0; k1 += kW1; }
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kM0, c0, hi0, lo0);
    mulhilo(kM1, c2, hi1, lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0;
    const uint32_t n2 = hi0 ^ c3 ^ k1;
    c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

// Block `blk` of stream `stream` under `seed` (docs/design.md "RNG").
BG_HD void stream_block(uint64_t seed, uint64_t stream, uint64_t blk, uint32_t out[4]) {
  const uint32_t key[2] = {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)};
  const uint32_t ctr[4] = {static_cast<uint32_t>(blk), static_cast<uint32_t>(blk >> 32),
                           static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)};
  block<10>(ctr, key, out);
}

// Uniforms that are exact in their precision and never 0 or 1.
BG_HD float u01_f32(uint32_t w) {
  return (static_cast<float>(w >> 9) + 0.5f) * (1.0f / 8388608.0f);  // 2^-23
}
BG_HD double u01_f64(uint32_t lo, uint32_t hi) {
  const uint64_t m = (static_cast<uint64_t>(hi) << 20) | static_cast<uint64_t>(lo >> 12);
  return (static_cast<double>(m) + 0.5) * (1.0 / 4503599627370496.0);  // 2^-52
}

// SplitMix64 finaliser (Steele, Lea & Flood 2014): a bijection on 64 bits.
BG_HD uint64_t mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Derive an independent user stream (< 2^63) from a stream and an integer tag.
BG_HD uint64_t fold_in(uint64_t stream, uint64_t tag) {
  return mix64(stream ^ mix64(tag)) & ~kSubstreamBit;
}

// A sequential reader of one element's sub-stream: 4 words per block, at most
// kSubstreamBlocks blocks, so that rejection samplers stay per-element deterministic.
struct SubStream {
  uint64_t seed, stream, base;
  uint32_t buf[4];
  uint32_t k;     // next block within this element
  int pos;        // next word in buf (4 = empty)
  BG_HD SubStream(uint64_t seed_, uint64_t stream_, uint64_t element)
      : seed(seed_), stream(stream_ | kSubstreamBit), base(element * kSubstreamBlocks),
        buf{0, 0, 0, 0}, k(0), pos(4) {}
  BG_HD uint32_t next() {
    if (pos == 4) {
      // Wrapping after 2^16 blocks would only repeat words; samplers bound
      // their loops far below that (documented at each sampler).
      stream_block(seed, stream, base + (k & (kSubstreamBlocks - 1)), buf);
      ++k;
      pos = 0;
    }
    return buf[pos++];
  }
  BG_HD float uniform_f32() { return u01_f32(next()); }
  BG_HD double uniform_f64() {
    const uint32_t lo = next();
    const uint32_t hi = next();
    return u01_f64(lo, hi);
  }
};

}  // namespace philox
}  // namespace bayesgrad
