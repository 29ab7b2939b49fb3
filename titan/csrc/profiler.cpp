// libtorch's Kineto profiler, as torch.profiler drives it: started over CPU operators (and
// CUDA kernels), each step marked `ProfilerStep#N`, stopped into a Chrome trace file.

#include <ATen/record_function.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <memory>
#include <set>
#include <string>

#include "guarded.h"

namespace profiler = torch::autograd::profiler;
namespace impl = torch::profiler::impl;

using titan::guarded;

extern "C" {

// Starts the profiler on this thread (and the autograd threads it starts): CPU operators with
// their input shapes, and with `cuda` the CUDA runtime and kernels.
int titan_profiler_start(bool cuda, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    TORCH_CHECK(!impl::profilerEnabled(), "a profiler is running already (one at a time)");
    std::set<impl::ActivityType> activities{impl::ActivityType::CPU};
    if (cuda) activities.insert(impl::ActivityType::CUDA);
    impl::ProfilerConfig config(impl::ProfilerState::KINETO, /*report_input_shapes=*/true);
    profiler::prepareProfiler(config, activities);
    profiler::enableProfiler(config, activities);
  });
}

// Stops the profiler and writes what it recorded to `path` (Chrome trace JSON).
int titan_profiler_stop(const char* path, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto result = profiler::disableProfiler();
    TORCH_CHECK(result != nullptr, "the profiler was not running");
    result->save(path);
  });
}

// Stops the profiler, if it runs, keeping nothing (a run that stopped mid-trace).
void titan_profiler_drop() {
  try {
    if (impl::profilerEnabled()) profiler::disableProfiler();
  } catch (...) {
  }
}

// Opens a user scope named `name` (e.g. `ProfilerStep#3`) in the trace; closed by
// `titan_scope_end`.
void* titan_scope_begin(const char* name, char* err, size_t err_len) {
  at::RecordFunction* out = nullptr;
  guarded(err, err_len, [&] {
    auto scope = std::make_unique<at::RecordFunction>(at::RecordScope::USER_SCOPE);
    if (scope->isActive()) scope->before(std::string(name));
    out = scope.release();
  });
  return out;
}

// Closes a scope `titan_scope_begin` opened.
void titan_scope_end(void* scope) {
  delete static_cast<at::RecordFunction*>(scope);
}

}  // extern "C"
