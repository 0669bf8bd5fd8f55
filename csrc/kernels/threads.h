// The threads a kernel may use, handed over by the torch glue (csrc/glue). Kernels never call
// torch themselves: the glue reads torch's intra-op settings and passes them in, so the kernel
// translation units compile without any torch header.
#pragma once

#include <cstdint>
#include <functional>

namespace morph3d_kernels {

// Calls body(begin, end) on contiguous chunks covering [0, n), each at least `grain` items
// (except the last), on the host's intra-op thread pool (the glue passes at::parallel_for).
using ParallelFor = void (*)(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body);

struct Threads {
  int count;                 // intra-op threads, torch.get_num_threads() (>= 1)
  ParallelFor parallel_for;  // torch's parallel loop over those threads
};

}  // namespace morph3d_kernels
