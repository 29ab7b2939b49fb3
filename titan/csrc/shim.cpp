// titan's C++ shim: the few libtorch entry points tch does not expose, behind a C ABI.
// Tensors cross as `at::Tensor*` (what tch's `C_tensor` is). Every function returns 0 on
// success, or 1 with libtorch's message copied into `err` (never throws into Rust).

#include <ATen/Context.h>
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/_fused_sgd.h>
#include <c10/core/CachingDeviceAllocator.h>

#ifdef TITAN_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/core/Event.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <dlfcn.h>

#include <chrono>
#include <thread>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <optional>
#include <vector>

#include "guarded.h"

namespace {

using titan::guarded;

std::vector<at::Tensor> list(at::Tensor* const* tensors, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(*tensors[i]);
  return out;
}

}  // namespace

extern "C" {

// libtorch's fused AdamW (`torch._fused_adamw_`) over n parameters of one device and dtype;
// `lr` is a one-element float tensor on their device, so a captured step reads the current rate.
// With `found_inf` (a float scalar on their device, may be null) set to 1 the kernel leaves
// parameters and moments as they are, decided on the device.
int titan_fused_adamw(at::Tensor* const* params, at::Tensor* const* grads,
                      at::Tensor* const* exp_avgs, at::Tensor* const* exp_avg_sqs,
                      at::Tensor* const* steps, size_t n, const at::Tensor* lr, double beta1,
                      double beta2, double weight_decay, double eps, const at::Tensor* found_inf,
                      char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    std::optional<at::Tensor> inf;
    if (found_inf != nullptr) inf = *found_inf;
    at::_fused_adamw_(list(params, n), list(grads, n), list(exp_avgs, n), list(exp_avg_sqs, n),
                      {}, list(steps, n), *lr, beta1, beta2, weight_decay, eps,
                      /*amsgrad=*/false, /*maximize=*/false, /*grad_scale=*/std::nullopt, inf);
  });
}

// libtorch's fused SGD (`torch._fused_sgd_`); `momentum_buffers` is null when momentum is 0.
// With `found_inf` (a float scalar on the parameters' device, may be null) set to 1 the kernel
// changes nothing, decided on the device.
int titan_fused_sgd(at::Tensor* const* params, at::Tensor* const* grads,
                    at::Tensor* const* momentum_buffers, size_t n, double weight_decay,
                    double momentum, double lr, double dampening, bool nesterov,
                    bool is_first_step, const at::Tensor* found_inf, char* err,
                    size_t err_len) {
  return guarded(err, err_len, [&] {
    std::vector<at::Tensor> buffers;
    if (momentum_buffers != nullptr) buffers = list(momentum_buffers, n);
    std::optional<at::Tensor> inf;
    if (found_inf != nullptr) inf = *found_inf;
    at::_fused_sgd_(list(params, n), list(grads, n), buffers, weight_decay, momentum, lr,
                    dampening, nesterov, /*maximize=*/false, is_first_step,
                    /*grad_scale=*/std::nullopt, inf);
  });
}

// The caching allocator's bytes for device `index` of type `device_type` (c10::DeviceType):
// out = {allocated now, allocated peak, reserved now, reserved peak}.
int titan_device_memory(int8_t device_type, int8_t index, int64_t* out, char* err,
                        size_t err_len) {
  return guarded(err, err_len, [&] {
    auto type = static_cast<c10::DeviceType>(device_type);
    auto stats = c10::getDeviceAllocator(type)->getDeviceStats(index);
    const auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    out[0] = stats.allocated_bytes[all].current;
    out[1] = stats.allocated_bytes[all].peak;
    out[2] = stats.reserved_bytes[all].current;
    out[3] = stats.reserved_bytes[all].peak;
  });
}

// Resets the peaks that `titan_device_memory` reports.
int titan_reset_peak_memory(int8_t device_type, int8_t index, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    c10::getDeviceAllocator(static_cast<c10::DeviceType>(device_type))->resetPeakStats(index);
  });
}

// Returns the allocator's cached, unused blocks to the device.
int titan_empty_cache(int8_t device_type, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    c10::getDeviceAllocator(static_cast<c10::DeviceType>(device_type))->emptyCache();
  });
}

// The state of the default random generator of a device (c10 device type and index; CUDA's
// through libtorch's hooks, so no CUDA header is needed here): a new byte tensor in *out.
int titan_rng_state(int8_t device_type, int8_t index, at::Tensor** out, char* err,
                    size_t err_len) {
  return guarded(err, err_len, [&] {
    auto device = c10::Device(static_cast<c10::DeviceType>(device_type), index);
    at::Generator gen = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(gen.mutex());
    *out = new at::Tensor(gen.get_state());
  });
}

// Sets the default random generator of a device to a state `titan_rng_state` gave.
int titan_set_rng_state(int8_t device_type, int8_t index, const at::Tensor* state, char* err,
                        size_t err_len) {
  return guarded(err, err_len, [&] {
    auto device = c10::Device(static_cast<c10::DeviceType>(device_type), index);
    at::Generator gen = at::globalContext().defaultGenerator(device);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(*state);
  });
}

// TF32 for float32 matmuls on CUDA (PyTorch's `torch.backends.cuda.matmul.allow_tf32`), a
// process-wide flag of libtorch's context. The legacy setter keeps the legacy and the new
// (`fp32_precision`) flags equal, which cuBLAS's getter checks.
int titan_set_cuda_matmul_tf32(int on, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { at::globalContext().setAllowTF32CuBLAS(on != 0); });
}

// Whether float32 matmuls on CUDA may use TF32.
int titan_cuda_matmul_tf32(int* on, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { *on = at::globalContext().allowTF32CuBLAS() ? 1 : 0; });
}

// Whether this build holds the CUDA graph functions below.
bool titan_has_cuda_graphs() {
#ifdef TITAN_CUDA
  return true;
#else
  return false;
#endif
}

// MKL chooses its kernels by CPU vendor: on x86 CPUs that are not Intel's (AMD EPYC, Ryzen) its
// sgemm takes a generic path, measured 15-40% slower on this model's shapes than the AVX2
// kernels the same CPU runs when MKL believes it is Intel's. This definition, exported from the
// executable (build.rs adds `--export-dynamic-symbol`), takes the place of the one inside
// libtorch_cpu.so, whose calls to it go through the PLT: MKL then dispatches on the CPU's
// instruction sets alone, as it does on Intel. On Intel CPUs nothing changes.
// TITAN_MKL_VENDOR_CHECK=1 keeps MKL's own answer.
__attribute__((visibility("default"), used)) int mkl_serv_intel_cpu_true() {
  static const int answer = [] {
    const char* keep = std::getenv("TITAN_MKL_VENDOR_CHECK");
    if (keep != nullptr && std::strcmp(keep, "1") == 0) {
      using Check = int (*)();
      auto own = reinterpret_cast<Check>(dlsym(RTLD_NEXT, "mkl_serv_intel_cpu_true"));
      return own != nullptr ? own() : 0;
    }
    return 1;
  }();
  return answer;
}

// 1 when libtorch carries MKL's own vendor check (found after the executable) and the global
// lookup resolves the check to the definition above, so MKL dispatches on instruction sets;
// 0 without MKL, when the executable does not export it, or with TITAN_MKL_VENDOR_CHECK=1.
int titan_mkl_vendor_check_off() {
  const char* keep = std::getenv("TITAN_MKL_VENDOR_CHECK");
  if (keep != nullptr && std::strcmp(keep, "1") == 0) return 0;
  if (dlsym(RTLD_NEXT, "mkl_serv_intel_cpu_true") == nullptr) return 0;
  auto resolved = dlsym(RTLD_DEFAULT, "mkl_serv_intel_cpu_true");
  return resolved == reinterpret_cast<void*>(&mkl_serv_intel_cpu_true) ? 1 : 0;
}

#ifdef TITAN_CUDA
// A CUDA graph for one device, the side stream it is warmed up and captured on, the private
// memory pool it captures into, and what `begin_side` replaced (device and stream).
// libtorch's graph, with whether its capture ended (its `capture_ended_`) made readable.
struct Graph : at::cuda::CUDAGraph {
  bool ended() const { return capture_ended_; }
};

struct TitanGraph {
  Graph graph;
  c10::DeviceIndex device = 0;
  std::optional<c10::cuda::CUDAStream> side;
  std::optional<c10::cuda::CUDAStream> previous;
  c10::DeviceIndex previous_device = -1;
  at::cuda::MempoolId_t pool{0, 0};
  bool capturing = false;
};

namespace {

// Makes `device` current for one call and restores the previous one after it, as c10's
// device guards do: restoring a device with no context yet (a rank's GPU 0 that it never
// used) creates none there.
struct DeviceScope {
  c10::DeviceIndex previous;
  explicit DeviceScope(c10::DeviceIndex device) : previous(c10::cuda::ExchangeDevice(device)) {}
  ~DeviceScope() {
    try {
      (void)c10::cuda::MaybeSetDevice(previous);
    } catch (...) {
    }
  }
};

// Ends a capture that failed or was abandoned, so the stream leaves capture mode. When libtorch
// could not end it (an invalidated capture), the allocator still routes the stream's
// allocations into the graph's pool: stop that and free the pool.
void abandon_capture(TitanGraph* graph) {
  if (!graph->capturing) return;
  graph->capturing = false;
  try {
    graph->graph.capture_end();
  } catch (...) {
  }
  if (!graph->graph.ended()) {
    c10::cuda::CUDACachingAllocator::endAllocateToPool(graph->device, graph->pool);
    c10::cuda::CUDACachingAllocator::releasePool(graph->device, graph->pool);
  }
}

}  // namespace

TitanGraph* titan_graph_new(int8_t device, char* err, size_t err_len) {
  TitanGraph* graph = nullptr;
  guarded(err, err_len, [&] {
    DeviceScope scope(device);
    graph = new TitanGraph();
    graph->device = device;
  });
  return graph;
}

void titan_graph_free(TitanGraph* graph) {
  if (graph == nullptr) return;
  try {
    DeviceScope scope(graph->device);
    abandon_capture(graph);
  } catch (...) {
  }
  delete graph;
}

// Makes the graph's device and its side stream current (graphs are not captured on the
// default stream), after the work queued so far; work queued until `titan_graph_end_side`
// runs there.
int titan_graph_begin_side(TitanGraph* graph, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    graph->previous_device = c10::cuda::current_device();
    if (graph->previous_device != graph->device) c10::cuda::set_device(graph->device);
    c10::cuda::device_synchronize();
    if (!graph->side) graph->side = c10::cuda::getStreamFromPool(false, graph->device);
    graph->previous = c10::cuda::getCurrentCUDAStream(graph->device);
    c10::cuda::setCurrentCUDAStream(*graph->side);
  });
}

// Ends a capture left open (the work between failed), waits for the side stream and makes the
// previous stream and device current again.
int titan_graph_end_side(TitanGraph* graph, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    abandon_capture(graph);
    c10::cuda::device_synchronize();
    if (graph->previous) c10::cuda::setCurrentCUDAStream(*graph->previous);
    graph->previous.reset();
    if (graph->previous_device >= 0 && graph->previous_device != graph->device)
      (void)c10::cuda::MaybeSetDevice(graph->previous_device);
  });
}

// Starts capturing on the side stream, into a private memory pool.
int titan_graph_capture_begin(TitanGraph* graph, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    graph->pool = at::cuda::graph_pool_handle();
    graph->graph.capture_begin(graph->pool);
    graph->capturing = true;
  });
}

// Ends the capture and instantiates the graph; on failure the capture is abandoned cleanly.
int titan_graph_capture_end(TitanGraph* graph, char* err, size_t err_len) {
  graph->capturing = false;
  int rc = guarded(err, err_len, [&] { graph->graph.capture_end(); });
  if (rc != 0 && !graph->graph.ended()) {
    try {
      c10::cuda::CUDACachingAllocator::endAllocateToPool(graph->device, graph->pool);
      c10::cuda::CUDACachingAllocator::releasePool(graph->device, graph->pool);
    } catch (...) {
    }
  }
  return rc;
}

// Launches the captured work on the graph's device, on that device's current stream.
int titan_graph_replay(TitanGraph* graph, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    DeviceScope scope(graph->device);
    graph->graph.replay();
  });
}

// Makes `device` this thread's current CUDA device (a rank's own GPU, as torchtitan's
// `torch.cuda.set_device(local_rank)`), so nothing else creates a context on GPU 0.
int titan_cuda_set_device(int8_t device, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { c10::cuda::set_device(device); });
}

// Waits, polling, for the work queued so far on `device`'s current stream, at most `timeout_ms`:
// `*done` says whether it finished. What a replayed graph holds (its collectives included) is
// in no watchdog, so this is where a peer that stopped or hung is noticed.
int titan_cuda_finish_within(int8_t device, int64_t timeout_ms, bool* done, char* err,
                             size_t err_len) {
  return guarded(err, err_len, [&] {
    DeviceScope scope(device);
    // c10's device-generic event: its calls go through libc10_cuda, not the CUDA runtime,
    // which titan does not link.
    c10::Event event(c10::DeviceType::CUDA);
    event.record(c10::cuda::getCurrentCUDAStream(device).unwrap());
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    *done = event.query();
    while (!*done && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
      *done = event.query();
    }
  });
}
#endif

}  // extern "C"
