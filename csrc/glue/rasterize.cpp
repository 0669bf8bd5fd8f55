// Torch glue of the CPU rasterizer (kernels/rasterize.h): rasterize_fwd, rasterize_bwd.
#include <ATen/Dispatch.h>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include <cstdint>

#include "glue/host_threads.h"
#include "glue/raster.h"
#include "kernels/raster_scratch.h"
#include "kernels/rasterize.h"

namespace morph3d_glue {
namespace {

void check_common(const at::Tensor& pos, const at::Tensor& tri) {
  TORCH_CHECK(pos.device().is_cpu() && tri.device().is_cpu(), "morph3d rasterize: CPU tensors expected");
  TORCH_CHECK(pos.dim() == 3 && pos.size(2) == 4, "morph3d rasterize: pos must be (B, N, 4)");
  TORCH_CHECK(pos.scalar_type() == at::kFloat || pos.scalar_type() == at::kDouble,
              "morph3d rasterize: pos must be float32 or float64");
  TORCH_CHECK(tri.dim() == 2 && tri.size(1) == 3 && tri.scalar_type() == at::kInt,
              "morph3d rasterize: tri must be (F, 3) int32");
}

}  // namespace

at::Tensor pixel_buffer(const at::Tensor& like, at::IntArrayRef sizes) {
  at::Tensor t = like.new_empty(sizes);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(t.data_ptr()) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(t.data_ptr()) + t.nbytes()) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);  // advice only
#endif
  return t;
}

at::Tensor rasterize_fwd(const at::Tensor& pos_in, const at::Tensor& tri_in, int64_t height, int64_t width) {
  check_common(pos_in, tri_in);
  TORCH_CHECK(height > 0 && width > 0 && height <= 8192 && width <= 8192,
              "morph3d rasterize: resolution must be in [1, 8192]");
  const at::Tensor pos = pos_in.contiguous(), tri = tri_in.contiguous();
  const int64_t B = pos.size(0), N = pos.size(1), F = tri.size(0);
  at::Tensor out = pixel_buffer(pos, {B, height, width, 4});
  if (B == 0) return out;
  if (F == 0) return out.zero_();
  const int threads = host_threads().count;
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_fwd", [&] {
    morph3d_raster::rasterize_forward<scalar_t>(pos.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(), B, N, F, height,
                                                width, out.data_ptr<scalar_t>(), threads);
  });
  return out;
}

at::Tensor rasterize_bwd(const at::Tensor& pos_in, const at::Tensor& tri_in, const at::Tensor& rast_in,
                         const at::Tensor& grad_in) {
  check_common(pos_in, tri_in);
  const at::Tensor pos = pos_in.contiguous(), tri = tri_in.contiguous();
  const int64_t B = pos.size(0), N = pos.size(1), F = tri.size(0);
  TORCH_CHECK(rast_in.dim() == 4 && rast_in.size(0) == B && rast_in.size(3) == 4,
              "morph3d rasterize_bwd: rast must be (B, H, W, 4)");
  TORCH_CHECK(grad_in.sizes() == rast_in.sizes(), "morph3d rasterize_bwd: grad must match rast");
  const at::Tensor rast = rast_in.to(pos.scalar_type()).contiguous();
  const at::Tensor grad = grad_in.to(pos.scalar_type()).contiguous();
  if (B == 0 || F == 0) return pos.new_zeros(pos.sizes());
  at::Tensor grad_pos = pos.new_empty(pos.sizes());  // written in full by the kernel
  const int threads = host_threads().count;
  AT_DISPATCH_FLOATING_TYPES(pos.scalar_type(), "rasterize_bwd", [&] {
    morph3d_raster::rasterize_backward<scalar_t>(pos.data_ptr<scalar_t>(), tri.data_ptr<int32_t>(),
                                                 rast.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), B, N, F,
                                                 rast.size(1), rast.size(2), grad_pos.data_ptr<scalar_t>(), threads);
  });
  return grad_pos;
}

int64_t raster_scratch_release() { return morph3d_raster::scratch_release(); }

int64_t raster_scratch_set_limit(int64_t bytes) {
  TORCH_CHECK(bytes >= 0, "morph3d raster_scratch_set_limit: the limit must be >= 0 bytes, got ", bytes);
  return morph3d_raster::scratch_set_limit(bytes);
}

std::vector<int64_t> raster_scratch_stats() {
  const morph3d_raster::ScratchStats s = morph3d_raster::scratch_stats();
  return {s.cached_bytes, s.leased_bytes, s.limit_bytes};
}

}  // namespace morph3d_glue
