// Python module for morph3d._C. Every op registers itself in its own source
// file with TORCH_LIBRARY_FRAGMENT(morph3d, m) / TORCH_LIBRARY_IMPL(morph3d,
// CPU|CUDA, m); importing this module loads those registrations.
#include <torch/extension.h>

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "morph3d C++/CUDA kernels; ops live under torch.ops.morph3d";
#ifdef MORPH3D_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}
