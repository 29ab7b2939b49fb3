// titan's C++ shim: the few libtorch entry points tch does not expose, behind a C ABI.
// Tensors cross as `at::Tensor*` (what tch's `C_tensor` is). Every function returns 0 on
// success, or 1 with libtorch's message copied into `err` (never throws into Rust).

#include <ATen/core/Tensor.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/_fused_sgd.h>
#include <c10/core/CachingDeviceAllocator.h>

#ifdef TITAN_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>
#include <vector>

namespace {

int fail(const char* what, char* err, size_t err_len) {
  if (err != nullptr && err_len > 0) {
    std::strncpy(err, what, err_len - 1);
    err[err_len - 1] = '\0';
  }
  return 1;
}

std::vector<at::Tensor> list(at::Tensor* const* tensors, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(*tensors[i]);
  return out;
}

template <typename F>
int guarded(char* err, size_t err_len, F&& body) {
  try {
    body();
    return 0;
  } catch (const c10::Error& e) {
    return fail(e.what_without_backtrace(), err, err_len);
  } catch (const std::exception& e) {
    return fail(e.what(), err, err_len);
  } catch (...) {
    return fail("unknown C++ exception", err, err_len);
  }
}

}  // namespace

extern "C" {

// libtorch's fused AdamW (`torch._fused_adamw_`) over n parameters of one device and dtype;
// `lr` is a one-element float tensor on their device, so a captured step reads the current rate.
int titan_fused_adamw(at::Tensor* const* params, at::Tensor* const* grads,
                      at::Tensor* const* exp_avgs, at::Tensor* const* exp_avg_sqs,
                      at::Tensor* const* steps, size_t n, const at::Tensor* lr, double beta1,
                      double beta2, double weight_decay, double eps, char* err,
                      size_t err_len) {
  return guarded(err, err_len, [&] {
    at::_fused_adamw_(list(params, n), list(grads, n), list(exp_avgs, n), list(exp_avg_sqs, n),
                      {}, list(steps, n), *lr, beta1, beta2, weight_decay, eps,
                      /*amsgrad=*/false, /*maximize=*/false);
  });
}

// libtorch's fused SGD (`torch._fused_sgd_`); `momentum_buffers` is null when momentum is 0.
int titan_fused_sgd(at::Tensor* const* params, at::Tensor* const* grads,
                    at::Tensor* const* momentum_buffers, size_t n, double weight_decay,
                    double momentum, double lr, double dampening, bool nesterov,
                    bool is_first_step, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    std::vector<at::Tensor> buffers;
    if (momentum_buffers != nullptr) buffers = list(momentum_buffers, n);
    at::_fused_sgd_(list(params, n), list(grads, n), buffers, weight_decay, momentum, lr,
                    dampening, nesterov, /*maximize=*/false, is_first_step);
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

// Whether this build holds the CUDA graph functions below.
bool titan_has_cuda_graphs() {
#ifdef TITAN_CUDA
  return true;
#else
  return false;
#endif
}

#ifdef TITAN_CUDA
// A CUDA graph and the side stream it is captured on.
struct TitanGraph {
  at::cuda::CUDAGraph graph;
  std::optional<c10::cuda::CUDAStream> previous;
};

TitanGraph* titan_graph_new(char* err, size_t err_len) {
  TitanGraph* graph = nullptr;
  guarded(err, err_len, [&] { graph = new TitanGraph(); });
  return graph;
}

void titan_graph_free(TitanGraph* graph) { delete graph; }

// Makes a side stream current on `device` (graphs are not captured on the default stream),
// waiting for the work queued so far; work queued until `titan_graph_end_side` runs there.
int titan_graph_begin_side(TitanGraph* graph, int8_t device, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    c10::cuda::device_synchronize();
    graph->previous = c10::cuda::getCurrentCUDAStream(device);
    c10::cuda::setCurrentCUDAStream(c10::cuda::getStreamFromPool(false, device));
  });
}

// Waits for the side stream and makes the previous stream current again.
int titan_graph_end_side(TitanGraph* graph, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    c10::cuda::device_synchronize();
    if (graph->previous) c10::cuda::setCurrentCUDAStream(*graph->previous);
    graph->previous.reset();
  });
}

// Starts capturing on the current (side) stream, into the graph's private memory pool.
int titan_graph_capture_begin(TitanGraph* graph, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { graph->graph.capture_begin(); });
}

// Ends the capture and instantiates the graph.
int titan_graph_capture_end(TitanGraph* graph, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { graph->graph.capture_end(); });
}

// Launches the captured work on the current stream.
int titan_graph_replay(TitanGraph* graph, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { graph->graph.replay(); });
}
#endif

}  // extern "C"
