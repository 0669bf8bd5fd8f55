// torch's intra-op threads in the form the kernels take them (kernels/threads.h).
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <functional>

#include "kernels/threads.h"

namespace morph3d_glue {

inline void torch_parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body) {
  at::parallel_for(0, n, grain, body);
}

// torch.get_num_threads() threads, and at::parallel_for to run work on them.
inline morph3d_kernels::Threads host_threads() {
  return {std::max(1, at::get_num_threads()), &torch_parallel_for};
}

}  // namespace morph3d_glue
