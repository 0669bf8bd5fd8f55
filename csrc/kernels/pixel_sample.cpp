// CPU kernels of morph3d.ops.pixel_sample: torch.nn.functional.grid_sample
// (bilinear | nearest, zeros | border padding) of several NCHW inputs that share
// one sampling grid, in one fused pass.
//
// Layout: per batch item the inputs are packed into one channels-last buffer
// X[(y * W + x) * C + c] holding the channels of all inputs in order, so the
// four corners of a sample are four contiguous runs of C values and the inner
// loops run over channels (contiguous, vectorised by the compiler, no gathers).
// Output rows are built channels-last and unpacked into the NCHW outputs. The
// taps of an output row (corner indices, in-bounds masks, weights) are computed
// once and shared by every channel of every input. Out-of-bounds corners read a
// run of zeros, which is what grid_sample's masked reads give.
//
// Backward: the output gradients are packed the same way; the grid gradient of
// a pixel sums its channels in a fixed lane order; input gradients are
// accumulated channels-last in output-pixel order and unpacked. Threads split
// the work by batch items, or by rows and channel ranges, never by output
// pixels of one gradient element, so results are bit-identical from run to run
// and for any number of threads.
//
// On x86-64 everything is compiled twice, for the baseline ISA and for AVX2
// (picked at run time; float32 layout changes use 8 x 8 register transposes);
// both do the same IEEE operations in the same order.
//
// The contract is in kernels/pixel_sample.h; glue/pixel_sample.cpp wraps it for torch.
#include "kernels/pixel_sample.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <tuple>
#include <type_traits>
#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#include <unistd.h>
#endif

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define M3D_HAVE_AVX2_VARIANT 1
#define M3D_INLINE inline __attribute__((always_inline))
#else
#define M3D_HAVE_AVX2_VARIANT 0
#define M3D_INLINE inline
#endif

namespace morph3d {
namespace pixel_sample {
namespace {

// floor(x) for every x (NaN and +-Inf included), built on nearbyint, which GCC
// vectorises where it leaves std::floor scalar.
template <typename T>
M3D_INLINE T floor_of(T x) {
  const T r = std::nearbyint(x);
  const int32_t above = r > x;
  return r - static_cast<T>(above);
}

// One image axis: grid coordinate -> pixel coordinate, with CPU grid_sample's formulas.
template <typename T>
struct Axis {
  T scale;    // d pixel / d grid
  T shift;    // 0 with align_corners, else 0.5
  T max_val;  // size - 1
  int32_t size;
  Axis(int64_t n, bool align_corners)
      : scale(align_corners ? T(n - 1) / 2 : T(n) / 2),
        shift(align_corners ? T(0) : T(0.5)),
        max_val(T(n - 1)),
        size(static_cast<int32_t>(n)) {}
  M3D_INLINE T unnormalize(T g) const { return (g + T(1)) * scale - shift; }
  // Border padding: clamp to [0, size - 1], NaN -> 0.
  M3D_INLINE T clip(T x) const {
    x = x > T(0) ? x : T(0);
    return x < max_val ? x : max_val;
  }
  // d clip(x) / d grid: 0 on and beyond the borders, as grid_sample.
  M3D_INLINE T clip_grad(T x) const { return ((x > T(0)) & (x < max_val)) ? scale : T(0); }
  // Integer index of an integral coordinate; values far outside (and NaN)
  // become -2 or size + 1, which keeps them and their neighbour out of bounds.
  M3D_INLINE int32_t index(T x) const {
    T c = x > T(-2) ? x : T(-2);
    c = c < T(size + 1) ? c : T(size + 1);
    return static_cast<int32_t>(c);
  }
};

// Taps of the pixels of one output row.
template <typename T>
struct RowTaps {
  std::vector<int32_t> idx;  // pixel index y0 * W + x0 of the nw corner (or of the nearest pixel)
  std::vector<int32_t> mask_buf;
  std::vector<T> val_buf;
  int32_t* mask[4];  // -1 where the nw, ne, sw, se corner lies inside the input, else 0
  T* wt[4];          // bilinear weights of the corners
  T *e, *w, *s, *n;  // distances to the east / west / south / north neighbours
  T *mx, *my;        // d pixel coordinate / d grid coordinate
  explicit RowTaps(int64_t len) : idx(len), mask_buf(4 * len), val_buf(10 * len) {
    for (int q = 0; q < 4; ++q) {
      mask[q] = mask_buf.data() + q * len;
      wt[q] = val_buf.data() + q * len;
    }
    T* v = val_buf.data() + 4 * len;
    e = v;
    w = v + len;
    s = v + 2 * len;
    n = v + 3 * len;
    mx = v + 4 * len;
    my = v + 5 * len;
  }
};

// The taps loops are written so that the compiler vectorises them: restrict
// pointer parameters (GCC ignores restrict on locals), no branches.
template <typename T, bool Border>
M3D_INLINE void bilinear_taps_loop(int64_t len, const T* __restrict g, const Axis<T> ax, const Axis<T> ay,
                                   int32_t* __restrict idx, int32_t* __restrict m0, int32_t* __restrict m1,
                                   int32_t* __restrict m2, int32_t* __restrict m3, T* __restrict w0,
                                   T* __restrict w1, T* __restrict w2, T* __restrict w3, T* __restrict de,
                                   T* __restrict dw, T* __restrict ds, T* __restrict dn, T* __restrict mx,
                                   T* __restrict my) {
  const int32_t W = ax.size, H = ay.size;
  for (int64_t k = 0; k < len; ++k) {
    T x = ax.unnormalize(g[2 * k]);
    T y = ay.unnormalize(g[2 * k + 1]);
    if (Border) {
      mx[k] = ax.clip_grad(x);
      my[k] = ay.clip_grad(y);
      x = ax.clip(x);
      y = ay.clip(y);
    } else {
      mx[k] = ax.scale;
      my[k] = ay.scale;
    }
    const T xf = floor_of(x), yf = floor_of(y);
    const T w = x - xf, e = T(1) - w, n = y - yf, s = T(1) - n;
    dw[k] = w;
    de[k] = e;
    dn[k] = n;
    ds[k] = s;
    w0[k] = s * e;
    w1[k] = s * w;
    w2[k] = n * e;
    w3[k] = n * w;
    const int32_t x0 = ax.index(xf), y0 = ay.index(yf);
    const int32_t in_w = (x0 >= 0) & (x0 < W), in_e = (x0 >= -1) & (x0 + 1 < W);
    const int32_t in_n = (y0 >= 0) & (y0 < H), in_s = (y0 >= -1) & (y0 + 1 < H);
    idx[k] = y0 * W + x0;
    m0[k] = -(in_n & in_w);
    m1[k] = -(in_n & in_e);
    m2[k] = -(in_s & in_w);
    m3[k] = -(in_s & in_e);
  }
}

template <typename T, bool Border>
M3D_INLINE void nearest_taps_loop(int64_t len, const T* __restrict g, const Axis<T> ax, const Axis<T> ay,
                                  int32_t* __restrict idx, int32_t* __restrict m0) {
  const int32_t W = ax.size, H = ay.size;
  for (int64_t k = 0; k < len; ++k) {
    T x = ax.unnormalize(g[2 * k]);
    T y = ay.unnormalize(g[2 * k + 1]);
    if (Border) {
      x = ax.clip(x);
      y = ay.clip(y);
    }
    // Round half to even, as grid_sample.
    const int32_t xi = ax.index(std::nearbyint(x)), yi = ay.index(std::nearbyint(y));
    idx[k] = yi * W + xi;
    m0[k] = -((xi >= 0) & (xi < W) & (yi >= 0) & (yi < H));
  }
}

template <typename T>
struct Problem {
  int64_t B, H, W, Ho, Wo;
  int64_t C;  // channels of all inputs
  Axis<T> ax, ay;
  const T* grid;                 // (B, Ho, Wo, 2), contiguous
  std::vector<Source<T>> input;  // one per input, channels in this order
};

template <typename T, bool Bilinear, bool Border>
M3D_INLINE void row_taps(const Problem<T>& P, int64_t row, RowTaps<T>& t) {
  const T* g = P.grid + row * P.Wo * 2;
  if (Bilinear) {
    bilinear_taps_loop<T, Border>(P.Wo, g, P.ax, P.ay, t.idx.data(), t.mask[0], t.mask[1], t.mask[2], t.mask[3],
                                  t.wt[0], t.wt[1], t.wt[2], t.wt[3], t.e, t.w, t.s, t.n, t.mx, t.my);
  } else {
    nearest_taps_loop<T, Border>(P.Wo, g, P.ax, P.ay, t.idx.data(), t.mask[0]);
  }
}

// ---- layout changes between NCHW tensors and channels-last buffers ----

// Channel c of the inputs (or of the output gradients) of one batch item:
// element (y, x) is at p[y * sH + x * sW].
template <typename Ptr>
struct ChannelRef {
  Ptr p;
  int64_t sH, sW;
};

template <typename T>
std::vector<ChannelRef<const T*>> channels_of(const std::vector<Source<T>>& src, int64_t b) {
  std::vector<ChannelRef<const T*>> ch;
  for (const auto& s : src) {
    for (int64_t c = 0; c < s.C; ++c) ch.push_back({s.data + b * s.sB + c * s.sC, s.sH, s.sW});
  }
  return ch;
}

// dst[x * C + c] = channel c at (y, x), for c in [c0, c1) and x < W.
template <typename T>
M3D_INLINE void pack_row(const ChannelRef<const T*>* ch, int64_t c0, int64_t c1, int64_t y, int64_t W, int64_t C,
                         T* __restrict dst) {
  for (int64_t c = c0; c < c1; ++c) {
    const T* __restrict p = ch[c].p + y * ch[c].sH;
    const int64_t sW = ch[c].sW;
    for (int64_t x = 0; x < W; ++x) dst[x * C + c] = p[x * sW];
  }
}

// dst[c][offset + x] = src[x * C + c], for c in [c0, c1) and x < len.
template <typename T>
M3D_INLINE void unpack(const T* __restrict src, int64_t len, int64_t C, int64_t c0, int64_t c1, T* const* dst,
                       int64_t offset) {
  for (int64_t c = c0; c < c1; ++c) {
    T* __restrict d = dst[c] + offset;
    for (int64_t x = 0; x < len; ++x) d[x] = src[x * C + c];
  }
}

#if M3D_HAVE_AVX2_VARIANT
// AVX2 float32 versions: 8 x 8 blocks transposed in registers. Channels go in
// groups of 8, the last group overlapping the one before when the count is not
// a multiple of 8 (those values are simply written twice).

__attribute__((target("avx2"))) inline void transpose8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

__attribute__((target("avx2"))) void pack_row_avx2(const ChannelRef<const float*>* ch, int64_t y, int64_t W,
                                                   int64_t C, float* dst) {
  if (C < 8) return pack_row(ch, 0, C, y, W, C, dst);
  for (int64_t c = 0; c < C; c += 8) {
    const int64_t g = std::min(c, C - 8);
    const float* row[8];
    bool unit = true;
    for (int i = 0; i < 8; ++i) {
      row[i] = ch[g + i].p + y * ch[g + i].sH;
      unit = unit && ch[g + i].sW == 1;
    }
    if (!unit) {
      pack_row(ch, g, g + 8, y, W, C, dst);  // rows with other strides
      continue;
    }
    int64_t x = 0;
    for (; x + 8 <= W; x += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(row[i] + x);
      transpose8(r);
      for (int j = 0; j < 8; ++j) _mm256_storeu_ps(dst + (x + j) * C + g, r[j]);
    }
    for (; x < W; ++x) {
      for (int i = 0; i < 8; ++i) dst[x * C + g + i] = row[i][x];
    }
  }
}

__attribute__((target("avx2"))) void unpack_avx2(const float* src, int64_t len, int64_t C, int64_t c0, int64_t c1,
                                                 float* const* dst, int64_t offset) {
  if (c1 - c0 < 8) return unpack(src, len, C, c0, c1, dst, offset);
  for (int64_t c = c0; c < c1; c += 8) {
    const int64_t g = std::min(c, c1 - 8);
    int64_t x = 0;
    for (; x + 8 <= len; x += 8) {
      __m256 r[8];
      for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(src + (x + j) * C + g);
      transpose8(r);
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(dst[g + i] + offset + x, r[i]);
    }
    for (; x < len; ++x) {
      for (int i = 0; i < 8; ++i) dst[g + i][offset + x] = src[x * C + g + i];
    }
  }
}
#endif

// Picks the AVX2 layout change for float32 in the AVX2 variant.
template <typename T, bool Avx2>
M3D_INLINE void pack_row_any(const ChannelRef<const T*>* ch, int64_t y, int64_t W, int64_t C, T* dst) {
#if M3D_HAVE_AVX2_VARIANT
  if constexpr (Avx2 && std::is_same_v<T, float>) return pack_row_avx2(ch, y, W, C, dst);
#endif
  pack_row(ch, 0, C, y, W, C, dst);
}

template <typename T, bool Avx2>
M3D_INLINE void unpack_any(const T* src, int64_t len, int64_t C, int64_t c0, int64_t c1, T* const* dst,
                           int64_t offset) {
#if M3D_HAVE_AVX2_VARIANT
  if constexpr (Avx2 && std::is_same_v<T, float>) return unpack_avx2(src, len, C, c0, c1, dst, offset);
#endif
  unpack(src, len, C, c0, c1, dst, offset);
}

// ---- per-pixel loops over channels (contiguous, vectorised) ----

template <typename T>
M3D_INLINE void blend4(int64_t C, const T* __restrict a, const T* __restrict b, const T* __restrict c,
                       const T* __restrict d, T wa, T wb, T wc, T wd, T* __restrict out) {
  for (int64_t j = 0; j < C; ++j) out[j] = a[j] * wa + b[j] * wb + c[j] * wc + d[j] * wd;
}

template <typename T>
M3D_INLINE void copy_run(int64_t C, const T* __restrict a, T* __restrict out) {
  for (int64_t j = 0; j < C; ++j) out[j] = a[j];
}

// Sums t[0, padded) (padded: a multiple of kLanes) in kLanes interleaved
// partial sums, added in a fixed order: the same bits in every variant.
constexpr int64_t kLanes = 8;
static_assert(kLanes == 8, "lane_sum adds 8 lanes");

M3D_INLINE int64_t padded_channels(int64_t C) { return (C + kLanes - 1) / kLanes * kLanes; }

template <typename T>
struct LanesOf {
  typedef T type __attribute__((vector_size(kLanes * sizeof(T))));
};

template <typename T>
M3D_INLINE T lane_sum(const T* __restrict t, int64_t padded) {
  using V = typename LanesOf<T>::type;
  V acc = {};
  for (int64_t j = 0; j < padded; j += kLanes) {
    V v;
    std::memcpy(&v, t + j, sizeof(V));
    acc += v;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// d <go, bilinear sample> / d (x, y) of one pixel: per-channel terms into tx,
// ty (padded with zeros to a multiple of kLanes), then lane sums.
template <typename T>
M3D_INLINE void grid_grad_pixel(int64_t C, const T* __restrict a, const T* __restrict b, const T* __restrict c,
                                const T* __restrict d, const T* __restrict go, T s, T n, T e, T w, T* __restrict tx,
                                T* __restrict ty, T& gx, T& gy) {
  for (int64_t j = 0; j < C; ++j) {
    tx[j] = ((b[j] - a[j]) * s + (d[j] - c[j]) * n) * go[j];
    ty[j] = ((c[j] - a[j]) * e + (d[j] - b[j]) * w) * go[j];
  }
  gx = lane_sum(tx, padded_channels(C));
  gy = lane_sum(ty, padded_channels(C));
}

template <typename T>
M3D_INLINE void add_scaled(int64_t C, T wt, const T* __restrict go, T* __restrict dst) {
  for (int64_t j = 0; j < C; ++j) dst[j] += wt * go[j];
}

template <typename T>
M3D_INLINE void add_run(int64_t C, const T* __restrict go, T* __restrict dst) {
  for (int64_t j = 0; j < C; ++j) dst[j] += go[j];
}

// Channels-last runs of the four corners of pixel k (a zero run where outside).
template <typename T>
struct Corners {
  const T* r[4];
  M3D_INLINE Corners(const RowTaps<T>& t, int64_t k, const T* X, const T* zeros, int64_t W, int64_t C, int corners) {
    const int64_t i = t.idx[k];
    for (int q = 0; q < corners; ++q) {
      const int64_t d = (q & 1) + (q >> 1) * W;
      r[q] = t.mask[q][k] ? X + (i + d) * C : zeros;
    }
  }
};

// ---- forward ----

// Output row ho of batch item b: sampled channels-last into R (Wo, C), then
// unpacked to the outputs (out[c]: plane of channel c of item b).
template <typename T, bool Bilinear, bool Border, bool Avx2>
M3D_INLINE void forward_row(const Problem<T>& P, const T* X, const T* zeros, T* const* out, int64_t b, int64_t ho,
                            RowTaps<T>& t, T* R) {
  const int64_t C = P.C;
  row_taps<T, Bilinear, Border>(P, b * P.Ho + ho, t);
  for (int64_t k = 0; k < P.Wo; ++k) {
    const Corners<T> v(t, k, X, zeros, P.W, C, Bilinear ? 4 : 1);
    if (Bilinear) {
      blend4(C, v.r[0], v.r[1], v.r[2], v.r[3], t.wt[0][k], t.wt[1][k], t.wt[2][k], t.wt[3][k], R + k * C);
    } else {
      copy_run(C, v.r[0], R + k * C);
    }
  }
  unpack_any<T, Avx2>(R, P.Wo, C, 0, C, out, ho * P.Wo);
}

// ---- backward ----

template <typename T>
struct BackwardJob {
  std::vector<Source<T>> grad_out;  // (B, C_i, Ho, Wo) each, arbitrary strides
  std::vector<T*> grad_in;          // (B, C_i, H, W) contiguous each; nullptr where not needed
  T* grad_grid;                     // (B, Ho, Wo, 2) or nullptr
  std::vector<int64_t> pieces;      // channel ranges [c0, c1) to scatter, flattened
};

// Packs the output gradient of row ho into GO (Ho, Wo, C) and, when the grid
// needs a gradient, computes it for the row from the packed input X.
// terms: 2 * padded_channels(C) values, zero-initialised.
template <typename T, bool Bilinear, bool Border, bool Avx2>
M3D_INLINE void grid_grad_row(const Problem<T>& P, const BackwardJob<T>& J, const ChannelRef<const T*>* go_ch,
                              const T* X, T* GO, const T* zeros, int64_t b, int64_t ho, RowTaps<T>& t, T* terms) {
  const int64_t C = P.C, row = b * P.Ho + ho;
  T* go = GO + ho * P.Wo * C;
  pack_row_any<T, Avx2>(go_ch, ho, P.Wo, C, go);
  if (!J.grad_grid) return;
  row_taps<T, Bilinear, Border>(P, row, t);
  T* gg = J.grad_grid + row * P.Wo * 2;
  for (int64_t k = 0; k < P.Wo; ++k) {
    const Corners<T> v(t, k, X, zeros, P.W, C, 4);
    T gx, gy;
    grid_grad_pixel(C, v.r[0], v.r[1], v.r[2], v.r[3], go + k * C, t.s[k], t.n[k], t.e[k], t.w[k], terms,
                    terms + padded_channels(C), gx, gy);
    gg[2 * k] = gx * t.mx[k];
    gg[2 * k + 1] = gy * t.my[k];
  }
}

// Accumulates the input gradient of channels [c0, c1) of batch item b into G
// (H, W, C), all output rows in order, then unpacks those channels (grad[c]:
// gradient plane of channel c of item b).
template <typename T, bool Bilinear, bool Border, bool Avx2>
M3D_INLINE void scatter_piece(const Problem<T>& P, const T* GO, T* G, T* const* grad, int64_t b, int64_t c0,
                              int64_t c1, RowTaps<T>& t) {
  const int64_t C = P.C, HW = P.H * P.W, len = c1 - c0;
  if (len == C) {
    std::fill(G, G + HW * C, T(0));
  } else {
    for (int64_t p = 0; p < HW; ++p) {
      for (int64_t j = c0; j < c1; ++j) G[p * C + j] = T(0);
    }
  }
  for (int64_t ho = 0; ho < P.Ho; ++ho) {
    row_taps<T, Bilinear, Border>(P, b * P.Ho + ho, t);
    const T* go = GO + ho * P.Wo * C + c0;
    for (int64_t k = 0; k < P.Wo; ++k) {
      const int64_t i = t.idx[k];
      for (int q = 0; q < (Bilinear ? 4 : 1); ++q) {
        if (!t.mask[q][k]) continue;
        T* dst = G + (i + (q & 1) + (q >> 1) * P.W) * C + c0;
        if (Bilinear) {
          add_scaled(len, t.wt[q][k], go + k * C, dst);
        } else {
          add_run(len, go + k * C, dst);
        }
      }
    }
  }
  unpack_any<T, Avx2>(G, HW, C, c0, c1, grad, 0);
}

// ---- scheduling ----
// With at least as many batch items as threads, each thread takes whole batch
// items with its own scratch buffers (one parallel region, no barriers).
// Otherwise the batch items are processed in turn, each split across threads
// by rows (packing, sampling, grid gradient) and by channel pieces (input
// gradient) with shared scratch buffers. Both orders give the same bits.

enum class Pass { kItems, kPackRows, kRows, kPieces };

template <typename T>
struct Work {
  const Problem<T>& P;
  const T* zeros;                // C zeros: the run of an out-of-bounds corner
  const std::vector<T*>* out;    // forward outputs, or nullptr in the backward pass
  const BackwardJob<T>* job;     // backward, or nullptr in the forward pass
  int64_t b;                     // kPackRows, kRows, kPieces: the batch item
  const T* X;                    // kRows: packed input of item b
  T* buf;                        // kPackRows: where to pack; kRows, kPieces (backward): GO
  T* G;                          // kPieces: input gradients of item b
};

// Uninitialised scratch memory: every element is written before it is read.
template <typename T>
std::unique_ptr<T[]> scratch(int64_t n) {
  return std::unique_ptr<T[]>(new T[n]);
}

template <typename T>
M3D_INLINE bool input_is_packed(const Problem<T>& P) {
  const Source<T>& s = P.input[0];
  return P.input.size() == 1 && (s.C == 1 || s.sC == 1) && s.sW == s.C && s.sH == P.W * s.C;
}

// Per-channel planes of batch item b of NCHW tensors `t` (one per input, nullptr allowed).
template <typename T>
std::vector<T*> planes_of(const Problem<T>& P, const std::vector<T*>& t, int64_t b, int64_t plane_size) {
  std::vector<T*> planes;
  for (size_t i = 0; i < P.input.size(); ++i) {
    const int64_t Ci = P.input[i].C;
    for (int64_t c = 0; c < Ci; ++c) planes.push_back(t[i] ? t[i] + (b * Ci + c) * plane_size : nullptr);
  }
  return planes;
}

template <typename T, bool Avx2>
M3D_INLINE void pack_rows(const Problem<T>& P, int64_t b, int64_t y0, int64_t y1, T* dst) {
  const auto ch = channels_of(P.input, b);
  for (int64_t y = y0; y < y1; ++y) pack_row_any<T, Avx2>(ch.data(), y, P.W, P.C, dst + y * P.W * P.C);
}

// Packed input of batch item b: the single channels-last input itself, or packed into buf.
template <typename T, bool Avx2>
M3D_INLINE const T* packed_input(const Problem<T>& P, int64_t b, T* buf) {
  if (input_is_packed(P)) return P.input[0].data + b * P.input[0].sB;
  pack_rows<T, Avx2>(P, b, 0, P.H, buf);
  return buf;
}

template <typename T, bool Bilinear, bool Border, bool Avx2>
M3D_INLINE void forward_items(const Work<T>& w, Pass pass, int64_t begin, int64_t end) {
  const Problem<T>& P = w.P;
  RowTaps<T> t(P.Wo);
  const auto R = scratch<T>(P.Wo * P.C);
  if (pass == Pass::kRows) {  // rows [begin, end) of item w.b
    const auto out = planes_of(P, *w.out, w.b, P.Ho * P.Wo);
    for (int64_t ho = begin; ho < end; ++ho)
      forward_row<T, Bilinear, Border, Avx2>(P, w.X, w.zeros, out.data(), w.b, ho, t, R.get());
    return;
  }
  const auto X = scratch<T>(input_is_packed(P) ? 0 : P.H * P.W * P.C);  // items [begin, end)
  for (int64_t b = begin; b < end; ++b) {
    const T* Xb = packed_input<T, Avx2>(P, b, X.get());
    const auto out = planes_of(P, *w.out, b, P.Ho * P.Wo);
    for (int64_t ho = 0; ho < P.Ho; ++ho)
      forward_row<T, Bilinear, Border, Avx2>(P, Xb, w.zeros, out.data(), b, ho, t, R.get());
  }
}

template <typename T, bool Bilinear, bool Border, bool Avx2>
M3D_INLINE void backward_items(const Work<T>& w, Pass pass, int64_t begin, int64_t end) {
  const Problem<T>& P = w.P;
  const BackwardJob<T>& J = *w.job;
  const int64_t HW = P.H * P.W;
  RowTaps<T> t(P.Wo);
  std::vector<T> terms(2 * padded_channels(P.C), T(0));
  if (pass == Pass::kRows) {
    const auto go_ch = channels_of(J.grad_out, w.b);
    for (int64_t ho = begin; ho < end; ++ho)
      grid_grad_row<T, Bilinear, Border, Avx2>(P, J, go_ch.data(), w.X, w.buf, w.zeros, w.b, ho, t, terms.data());
  } else if (pass == Pass::kPieces) {
    const auto grad = planes_of(P, J.grad_in, w.b, HW);
    for (int64_t p = begin; p < end; ++p)
      scatter_piece<T, Bilinear, Border, Avx2>(P, w.buf, w.G, grad.data(), w.b, J.pieces[2 * p],
                                               J.pieces[2 * p + 1], t);
  } else {
    const bool grid = J.grad_grid != nullptr;
    const auto X = scratch<T>(grid && !input_is_packed(P) ? HW * P.C : 0);
    const auto GO = scratch<T>(P.Ho * P.Wo * P.C);
    const auto G = scratch<T>(J.pieces.empty() ? 0 : HW * P.C);
    for (int64_t b = begin; b < end; ++b) {
      const T* Xb = grid ? packed_input<T, Avx2>(P, b, X.get()) : nullptr;
      const auto go_ch = channels_of(J.grad_out, b);
      for (int64_t ho = 0; ho < P.Ho; ++ho)
        grid_grad_row<T, Bilinear, Border, Avx2>(P, J, go_ch.data(), Xb, GO.get(), w.zeros, b, ho, t, terms.data());
      const auto grad = planes_of(P, J.grad_in, b, HW);
      for (size_t p = 0; p < J.pieces.size(); p += 2)
        scatter_piece<T, Bilinear, Border, Avx2>(P, GO.get(), G.get(), grad.data(), b, J.pieces[p],
                                                 J.pieces[p + 1], t);
    }
  }
}

template <typename T, bool Bilinear, bool Border, bool Avx2>
M3D_INLINE void run_body(const Work<T>& w, Pass pass, int64_t begin, int64_t end) {
  if (pass == Pass::kPackRows) return pack_rows<T, Avx2>(w.P, w.b, begin, end, w.buf);
  if (w.out) return forward_items<T, Bilinear, Border, Avx2>(w, pass, begin, end);
  backward_items<T, Bilinear, Border, Avx2>(w, pass, begin, end);
}

template <typename T, bool Bilinear, bool Border>
void run_base(const Work<T>& w, Pass pass, int64_t begin, int64_t end) {
  run_body<T, Bilinear, Border, false>(w, pass, begin, end);
}

#if M3D_HAVE_AVX2_VARIANT
template <typename T, bool Bilinear, bool Border>
__attribute__((target("avx2"))) void run_avx2(const Work<T>& w, Pass pass, int64_t begin, int64_t end) {
  run_body<T, Bilinear, Border, true>(w, pass, begin, end);
}
#endif

bool cpu_has_avx2() {
#if M3D_HAVE_AVX2_VARIANT
  static const bool ok = __builtin_cpu_supports("avx2");
  return ok;
#else
  return false;
#endif
}

constexpr int64_t kSerialWork = 1 << 15;

// Runs `pass` over tasks [0, tasks) on the intra-op threads.
template <typename T>
void run(const Work<T>& w, Pass pass, int64_t tasks, int64_t mode, int64_t padding,
         const morph3d_kernels::Threads& threads) {
  using Fn = void (*)(const Work<T>&, Pass, int64_t, int64_t);
  const bool bilinear = mode == kBilinear, border = padding == kBorder;
  Fn fn = bilinear ? (border ? run_base<T, true, true> : run_base<T, true, false>)
                   : (border ? run_base<T, false, true> : run_base<T, false, false>);
#if M3D_HAVE_AVX2_VARIANT
  if (cpu_has_avx2()) {
    fn = bilinear ? (border ? run_avx2<T, true, true> : run_avx2<T, true, false>)
                  : (border ? run_avx2<T, false, true> : run_avx2<T, false, false>);
  }
#endif
  // Small problems run on the calling thread: waking the pool would cost more than the work.
  const int64_t work = w.P.Ho * w.P.Wo * (w.P.C + 4) * (pass == Pass::kItems ? w.P.B : 1);
  const int64_t grain = work < kSerialWork ? tasks : 1;
  threads.parallel_for(tasks, grain, [&](int64_t begin, int64_t end) { fn(w, pass, begin, end); });
}

template <typename T>
Problem<T> make_problem(const Call<T>& call) {
  Problem<T> P{call.B, call.H, call.W, call.Ho, call.Wo, 0, Axis<T>(call.W, call.align_corners),
               Axis<T>(call.H, call.align_corners), call.grid, call.inputs};
  for (const auto& x : call.inputs) P.C += x.C;
  return P;
}

// Pieces of the channel ranges `ranges` ([c0, c1) pairs), about `share` channels each.
std::vector<int64_t> split_channels(const std::vector<std::pair<int64_t, int64_t>>& ranges, int64_t share) {
  std::vector<int64_t> pieces;
  int64_t filled = 0;  // channels in the current share so far
  for (const auto& r : ranges) {
    for (int64_t c = r.first; c < r.second;) {
      const int64_t end = std::min(r.second, c + share - filled);
      pieces.push_back(c);
      pieces.push_back(end);
      filled = (filled + end - c) % share;
      c = end;
    }
  }
  return pieces;
}

// Large results are written once in full by these kernels, and with 4 KiB pages
// the first touch of every page (a fault plus zeroing) can cost more than the
// sampling itself. Ask Linux for transparent huge pages on the pages that lie
// wholly inside the buffer, as torch's allocator does with
// THP_MEM_ALLOC_ENABLE=1. Advisory only: without THP nothing changes.
void advise_huge_pages(void* ptr, size_t bytes) {
#ifdef __linux__
  constexpr size_t kMinBytes = size_t(32) << 20;  // buffers glibc always maps on their own
  if (bytes < kMinBytes) return;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t data = reinterpret_cast<uintptr_t>(ptr);
  const uintptr_t begin = (data + page - 1) / page * page, end = (data + bytes) / page * page;
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)ptr;
  (void)bytes;
#endif
}

}  // namespace

template <typename T>
void forward(const Call<T>& call, const std::vector<T*>& out, const morph3d_kernels::Threads& threads) {
  for (size_t i = 0; i < out.size(); ++i)
    advise_huge_pages(out[i], sizeof(T) * call.B * call.inputs[i].C * call.Ho * call.Wo);
  const int64_t mode = call.mode, padding = call.padding;
  const auto P = make_problem<T>(call);
  const std::vector<T> zeros(P.C, T(0));
  Work<T> w{P, zeros.data(), &out, nullptr, 0, nullptr, nullptr, nullptr};
  if (P.B >= threads.count) return run(w, Pass::kItems, P.B, mode, padding, threads);
  const auto X = scratch<T>(input_is_packed(P) ? 0 : P.H * P.W * P.C);
  for (w.b = 0; w.b < P.B; ++w.b) {
    w.buf = X.get();
    if (!input_is_packed(P)) run(w, Pass::kPackRows, P.H, mode, padding, threads);
    w.X = input_is_packed(P) ? P.input[0].data + w.b * P.input[0].sB : X.get();
    run(w, Pass::kRows, P.Ho, mode, padding, threads);
  }
}

template <typename T>
void backward(const Call<T>& call, const std::vector<Source<T>>& grad_outputs, const std::vector<T*>& grad_inputs,
              T* grad_grid, const morph3d_kernels::Threads& threads) {
  std::vector<std::pair<int64_t, int64_t>> ranges;  // channels of the inputs that need a gradient
  int64_t first = 0, wanted = 0;
  for (size_t i = 0; i < call.inputs.size(); ++i) {
    const int64_t Ci = call.inputs[i].C;
    if (grad_inputs[i]) {
      advise_huge_pages(grad_inputs[i], sizeof(T) * call.B * Ci * call.H * call.W);
      if (!ranges.empty() && ranges.back().second == first) {
        ranges.back().second += Ci;
      } else {
        ranges.emplace_back(first, first + Ci);
      }
      wanted += Ci;
    }
    first += Ci;
  }
  const bool bilinear_grid = grad_grid != nullptr;
  if (wanted == 0 && !bilinear_grid) return;
  const int64_t mode = call.mode, padding = call.padding;
  const auto P = make_problem<T>(call);
  const int64_t nthreads = threads.count;
  BackwardJob<T> J{grad_outputs, grad_inputs, grad_grid, {}};
  const std::vector<T> zeros(P.C, T(0));
  Work<T> w{P, zeros.data(), nullptr, &J, 0, nullptr, nullptr, nullptr};
  if (P.B >= nthreads) {
    J.pieces = split_channels(ranges, std::max<int64_t>(wanted, 1));
    return run(w, Pass::kItems, P.B, mode, padding, threads);
  }
  J.pieces = split_channels(ranges, std::max<int64_t>(1, (wanted + nthreads - 1) / nthreads));
  const bool packed = input_is_packed(P);
  const auto X = scratch<T>(bilinear_grid && !packed ? P.H * P.W * P.C : 0);
  const auto GO = scratch<T>(P.Ho * P.Wo * P.C);
  const auto G = scratch<T>(wanted > 0 ? P.H * P.W * P.C : 0);
  for (w.b = 0; w.b < P.B; ++w.b) {
    if (bilinear_grid && !packed) {
      w.buf = X.get();
      run(w, Pass::kPackRows, P.H, mode, padding, threads);
    }
    w.X = packed ? P.input[0].data + w.b * P.input[0].sB : X.get();
    w.buf = GO.get();
    w.G = G.get();
    run(w, Pass::kRows, P.Ho, mode, padding, threads);
    if (wanted > 0) run(w, Pass::kPieces, static_cast<int64_t>(J.pieces.size() / 2), mode, padding, threads);
  }
}

template void forward<float>(const Call<float>&, const std::vector<float*>&, const morph3d_kernels::Threads&);
template void forward<double>(const Call<double>&, const std::vector<double*>&, const morph3d_kernels::Threads&);
template void backward<float>(const Call<float>&, const std::vector<Source<float>>&, const std::vector<float*>&,
                              float*, const morph3d_kernels::Threads&);
template void backward<double>(const Call<double>&, const std::vector<Source<double>>&, const std::vector<double*>&,
                               double*, const morph3d_kernels::Threads&);

}  // namespace pixel_sample
}  // namespace morph3d
