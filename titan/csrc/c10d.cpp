// torch's c10d behind a C ABI: a TCPStore for the rendezvous, and a process group on it
// (ProcessGroupGloo on CPU; ProcessGroupNCCL on CUDA where build.rs found NCCL's headers), with
// the few collectives titan uses. Gloo's own headers are not in the wheel: `gloo_names/`
// declares the names ProcessGroupGloo.hpp mentions (see its README); a two-rank all-reduce test
// checks them against the library. Every function returns 0 on success, or 1 with the C++
// exception's message in `err` (guarded.h); nothing throws into Rust.

#define USE_C10D_GLOO 1
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#ifdef TITAN_NCCL
#define USE_C10D_NCCL 1
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "guarded.h"

namespace {

using titan::guarded;

// Names a comma-separated GLOO_SOCKET_IFNAME, as torch.distributed reads it.
std::vector<std::string> interfaces() {
  std::vector<std::string> out;
  const char* names = std::getenv("GLOO_SOCKET_IFNAME");
  if (names == nullptr) return out;
  std::stringstream list(names);
  std::string name;
  while (std::getline(list, name, ',')) {
    if (!name.empty()) out.push_back(name);
  }
  return out;
}

}  // namespace

// The store every rank meets at; held by the process groups made on it.
struct TitanStore {
  c10::intrusive_ptr<c10d::Store> store;
};

// A process group: one c10d backend over a store.
struct TitanGroup {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
};

namespace {

// Queues one collective per tensor (`launch` on a one-tensor list), then waits for all within
// the group's timeout: the collectives overlap each other.
template <typename Launch>
void queue_then_wait(TitanGroup* group, at::Tensor* const* tensors, size_t n, Launch launch) {
  std::deque<std::vector<at::Tensor>> lists;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  works.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    lists.push_back({*tensors[i]});
    works.push_back(launch(lists.back()));
  }
  for (auto& work : works) work->wait(group->timeout);
}

}  // namespace

extern "C" {

// Whether this build has NCCL's process group (CUDA tensors across GPUs).
bool titan_has_nccl() {
#ifdef TITAN_NCCL
  return true;
#else
  return false;
#endif
}

// A TCPStore at host:port: the server when `is_server` (port 0 picks a free one), else a
// client that connects within `timeout_ms`; with a non-empty `prefix`, every key is under it
// (torchrun's agent store: "/worker/attempt_N"). `port_out` gets the port it is on.
TitanStore* titan_store_new(const char* host, uint16_t port, bool is_server, int world_size,
                            int64_t timeout_ms, const char* prefix, uint16_t* port_out,
                            char* err, size_t err_len) {
  TitanStore* out = nullptr;
  guarded(err, err_len, [&] {
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server;
    opts.numWorkers = static_cast<size_t>(world_size);
    // The process group's rendezvous waits for every rank, within the same timeout.
    opts.waitWorkers = false;
    opts.timeout = std::chrono::milliseconds(timeout_ms);
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    if (port_out != nullptr) *port_out = tcp->getPort();
    c10::intrusive_ptr<c10d::Store> store = tcp;
    if (prefix != nullptr && prefix[0] != '\0')
      store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), store);
    out = new TitanStore{store};
  });
  return out;
}

void titan_store_free(TitanStore* store) { delete store; }

// Sets `key` to `len` bytes.
int titan_store_set(TitanStore* store, const char* key, const uint8_t* data, size_t len,
                    char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    store->store->set(std::string(key), std::vector<uint8_t>(data, data + len));
  });
}

// Waits (within the store's timeout) for `key` and returns its value in a buffer the caller
// frees with `titan_bytes_free`.
int titan_store_get(TitanStore* store, const char* key, uint8_t** out, size_t* len, char* err,
                    size_t err_len) {
  return guarded(err, err_len, [&] {
    auto value = store->store->get(std::string(key));
    *len = value.size();
    *out = static_cast<uint8_t*>(std::malloc(value.empty() ? 1 : value.size()));
    if (*out == nullptr) throw std::bad_alloc();
    if (!value.empty()) std::memcpy(*out, value.data(), value.size());
  });
}

// Whether `key` is set now (no waiting).
int titan_store_check(TitanStore* store, const char* key, bool* present, char* err,
                      size_t err_len) {
  return guarded(err, err_len, [&] {
    *present = store->store->check({std::string(key)});
  });
}

// Removes `key` (absent: nothing).
int titan_store_delete(TitanStore* store, const char* key, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { store->store->deleteKey(std::string(key)); });
}

void titan_bytes_free(uint8_t* bytes) { std::free(bytes); }

// Rank `rank` of `size` joins the process group on `store`: Gloo for CPU tensors (device_type
// 0), NCCL for CUDA ones (device_type 1). Blocks until every rank joined, or `timeout_ms`
// passed; collectives then fail after `timeout_ms` too.
TitanGroup* titan_group_new(TitanStore* store, int rank, int size, int8_t device_type,
                            int64_t timeout_ms, char* err, size_t err_len) {
  TitanGroup* out = nullptr;
  guarded(err, err_len, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10::intrusive_ptr<c10d::Backend> backend;
    if (device_type == 0) {
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      auto names = interfaces();
      if (names.empty()) {
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      } else {
        for (const auto& name : names)
          opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
      }
      backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store->store, rank, size, opts);
    } else {
#ifdef TITAN_NCCL
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout;
      backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store->store, rank, size, opts);
#else
      throw std::runtime_error(
          "this titan was built without NCCL's headers, so it has no process group for CUDA "
          "tensors (see titan/build.rs)");
#endif
    }
    out = new TitanGroup{store->store, backend, timeout};
  });
  return out;
}

// Shuts the backend down (NCCL's communicators and watchdog, as destroy_process_group does),
// then frees it; after a failure (`abort`), aborts it instead, so work a peer will never match
// is not waited for.
void titan_group_free(TitanGroup* group, bool abort) {
  if (group == nullptr) return;
  try {
    if (abort) {
      group->backend->abort();
    } else {
      group->backend->shutdown();
    }
  } catch (...) {
  }
  delete group;
}

// Sums (op 0) or takes the maximum (op 1) of each of `n` tensors over every rank, in place:
// all n collectives are queued before the first is waited for, so they overlap each other.
int titan_group_all_reduce(TitanGroup* group, at::Tensor* const* tensors, size_t n, int op,
                           char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp(op == 1 ? c10d::ReduceOp::MAX : c10d::ReduceOp::SUM);
    opts.timeout = group->timeout;
    queue_then_wait(group, tensors, n, [&](std::vector<at::Tensor>& list) {
      return group->backend->allreduce(list, opts);
    });
  });
}

// Copies rank `root`'s values of `n` tensors into every rank's.
int titan_group_broadcast(TitanGroup* group, at::Tensor* const* tensors, size_t n, int root,
                          char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.rootTensor = 0;
    opts.timeout = group->timeout;
    queue_then_wait(group, tensors, n, [&](std::vector<at::Tensor>& list) {
      return group->backend->broadcast(list, opts);
    });
  });
}

// Returns once every rank reached it.
int titan_group_barrier(TitanGroup* group, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    c10d::BarrierOptions opts;
    opts.timeout = group->timeout;
    group->backend->barrier(opts)->wait(group->timeout);
  });
}


}  // extern "C"

// Gradient buckets reduced while backward runs (what DDP's reducer does, without its Python
// half): a post-hook on each parameter's gradient accumulator copies its gradient into its
// bucket's flat buffer once the step's last micro-batch is under way (armed), and the moment a
// bucket is full, it and every full bucket before it are all-reduced asynchronously, strictly in
// bucket order, so every rank issues the same collectives in the same order. `finish` fills what
// backward did not reach, queues the rest and the step's loss and token sums, waits for all and
// copies the sums back into the gradients.
namespace {

struct DdpState {
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
  // NCCL's work is waited for on the stream, not the host (see `wait_for`).
  bool stream_ordered = false;
  std::vector<at::Tensor> params;
  std::vector<size_t> bucket_of;
  std::vector<int64_t> offset_of;
  std::vector<size_t> bucket_size;
  std::vector<at::Tensor> flats;
  std::vector<size_t> pending;
  std::vector<bool> filled;
  size_t next = 0;
  size_t launched_in_backward = 0;
  bool armed = false;
  // A parameter whose accumulator ran twice in one backward on this rank (a weight used twice,
  // e.g. tied embeddings under activation checkpointing, which runs backward per block): its
  // bucket may have left with part of its gradient. Backward still queues every bucket, so the
  // ranks' collectives pair up whatever each saw; `finish` sums this flag with the stats, and if
  // any rank's is set, every rank reduces every bucket again from the whole gradients and later
  // steps reduce only in `finish`. The flag is summed where `finish` reads on the host anyway
  // (Gloo, or while `undecided` is not empty, as at every first step): on NCCL a rank whose
  // gradient arrives twice at a later step (a weight reused through data-dependent control flow)
  // stops with an error rather than reduce a partial gradient.
  bool refired = false;
  // The first parameter whose gradient arrived twice on this rank, for the error that names it.
  int64_t refired_index = -1;
  bool overlap = true;
  // The order in which parameters became ready in the last armed backward.
  std::vector<size_t> order;
  // Parameters that no rank had a gradient for at the last `finish` (all of them before the
  // first): the same list on every rank. `finish` sums a flag per such parameter with the stats,
  // and one that no rank used keeps no gradient, as in one process (where AdamW then skips it).
  // One that any rank used leaves the list: the optimizers zero gradients in place, so it keeps
  // a gradient on every rank from then on, as in one process. While the list is not empty, the
  // summed flags are read on the host (on CUDA, a wait for the reduction each step): only a
  // model with a parameter that no rank ever uses pays it after the first step.
  std::vector<size_t> undecided;
  std::deque<std::vector<at::Tensor>> lists;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  std::mutex mu;

  void fill(size_t i) {
    auto& p = params[i];
    auto slot = flats[bucket_of[i]].narrow(0, offset_of[i], p.numel());
    const auto& grad = p.grad();
    if (grad.defined()) {
      slot.copy_(grad.reshape({-1}));
    } else {
      slot.zero_();
    }
    filled[i] = true;
    pending[bucket_of[i]] -= 1;
  }

  void launch(const at::Tensor& flat) {
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp(c10d::ReduceOp::SUM);
    opts.timeout = timeout;
    lists.push_back({flat});
    works.push_back(backend->allreduce(lists.back(), opts));
  }

  // Queues every full bucket from `next` on, in order.
  void launch_ready() {
    while (next < flats.size() && pending[next] == 0) launch(flats[next++]);
  }

  void ready(size_t i) {
    std::lock_guard<std::mutex> lock(mu);
    // Without overlap, `finish` copies every gradient itself.
    if (!armed || !overlap) return;
    if (filled[i]) {
      if (!refired) refired_index = int64_t(i);
      refired = true;
      return;
    }
    order.push_back(i);
    at::NoGradGuard no_grad;
    fill(i);
    size_t before = next;
    launch_ready();
    launched_in_backward += next - before;
  }

  // Makes what follows wait for `work`. NCCL: the current stream waits for it and the host goes
  // on, so the step runs ahead and a captured CUDA graph holds the wait (a timeout here would
  // block the host until the reduction ends: `WorkNCCL::wait`); the group's watchdog enforces
  // its timeout, as in torch.distributed. Gloo: the host waits, within the timeout.
  void wait_for(const c10::intrusive_ptr<c10d::Work>& work) {
    if (stream_ordered) {
      work->wait();
    } else {
      work->wait(timeout);
    }
  }

  // Waits for everything queued, and forgets it.
  void drain() {
    for (auto& work : works) wait_for(work);
    works.clear();
    lists.clear();
  }

  // Starts a reduction round: nothing filled or queued.
  void reset() {
    pending = bucket_size;
    filled.assign(params.size(), false);
    next = 0;
    lists.clear();
    works.clear();
  }
};

class ReadyHook : public torch::autograd::FunctionPostHook {
 public:
  ReadyHook(std::weak_ptr<DdpState> state, size_t index)
      : state_(std::move(state)), index_(index) {}
  torch::autograd::variable_list operator()(
      const torch::autograd::variable_list& outputs,
      const torch::autograd::variable_list& /*inputs*/) override {
    if (auto state = state_.lock()) state->ready(index_);
    return outputs;
  }

 private:
  std::weak_ptr<DdpState> state_;
  size_t index_;
};

}  // namespace

struct TitanDdp {
  std::shared_ptr<DdpState> state;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;
  std::vector<uintptr_t> hooks;
};

extern "C" {

// Gradient buckets of `n` parameters over `group`: parameter i goes to bucket `bucket_of[i]`
// (buckets numbered in the order backward fills them; each of one dtype and device).
TitanDdp* titan_ddp_new(TitanGroup* group, at::Tensor* const* params, const uint64_t* bucket_of,
                        size_t n, char* err, size_t err_len) {
  TitanDdp* out = nullptr;
  guarded(err, err_len, [&] {
    auto state = std::make_shared<DdpState>();
    state->backend = group->backend;
    state->timeout = group->timeout;
    state->stream_ordered = group->backend->getBackendName() == "nccl";
    size_t buckets = 0;
    for (size_t i = 0; i < n; ++i) buckets = std::max(buckets, size_t(bucket_of[i]) + 1);
    std::vector<int64_t> sizes(buckets, 0);
    state->bucket_size.assign(buckets, 0);
    std::vector<at::Tensor> first(buckets);
    for (size_t i = 0; i < n; ++i) {
      const auto& p = *params[i];
      TORCH_CHECK(p.requires_grad(), "parameter ", i, " does not require a gradient");
      size_t b = bucket_of[i];
      state->params.push_back(p);
      state->bucket_of.push_back(b);
      state->offset_of.push_back(sizes[b]);
      sizes[b] += p.numel();
      state->bucket_size[b] += 1;
      if (!first[b].defined()) first[b] = p;
      TORCH_CHECK(first[b].scalar_type() == p.scalar_type() && first[b].device() == p.device(),
                  "bucket ", b, " mixes dtypes or devices");
    }
    for (size_t b = 0; b < buckets; ++b) {
      TORCH_CHECK(first[b].defined(), "bucket ", b, " is empty");
      state->flats.push_back(at::zeros({sizes[b]}, first[b].options().requires_grad(false)));
    }
    state->pending = state->bucket_size;
    state->filled.assign(n, false);
    for (size_t i = 0; i < n; ++i) state->undecided.push_back(i);
    auto ddp = std::make_unique<TitanDdp>();
    ddp->state = state;
    for (size_t i = 0; i < n; ++i) {
      auto acc = torch::autograd::impl::grad_accumulator(state->params[i]);
      TORCH_CHECK(acc, "parameter ", i, " has no gradient accumulator (is it a leaf?)");
      ddp->hooks.push_back(acc->add_post_hook(std::make_unique<ReadyHook>(state, i)));
      // Held here: the tensor itself keeps its accumulator only weakly.
      ddp->accumulators.push_back(std::move(acc));
    }
    out = ddp.release();
  });
  return out;
}

void titan_ddp_free(TitanDdp* ddp) {
  if (ddp == nullptr) return;
  try {
    for (size_t i = 0; i < ddp->accumulators.size(); ++i)
      ddp->accumulators[i]->del_post_hook(ddp->hooks[i]);
  } catch (...) {
  }
  delete ddp;
}

// The next backward pass (the step's last micro-batch) reduces buckets as it fills them.
int titan_ddp_arm(TitanDdp* ddp, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    auto& s = *ddp->state;
    std::lock_guard<std::mutex> lock(s.mu);
    s.reset();
    s.launched_in_backward = 0;
    s.order.clear();
    s.armed = true;
  });
}

// Queues what backward did not, then `stats` (summed too), waits for every bucket and writes the
// sums into the gradients; a parameter that no rank has a gradient for keeps none. `launched`
// gets how many buckets backward itself had queued.
int titan_ddp_finish(TitanDdp* ddp, at::Tensor* stats, size_t* launched, char* err,
                     size_t err_len) {
  return guarded(err, err_len, [&] {
    auto& s = *ddp->state;
    std::lock_guard<std::mutex> lock(s.mu);
    s.armed = false;
    at::NoGradGuard no_grad;
    // Read on the host after the reduction: the same choice on every rank (the backend and the
    // undecided list are).
    const bool host_reads = !s.stream_ordered || !s.undecided.empty();
    TORCH_CHECK(host_reads || !s.refired, "the gradient of parameter ", s.refired_index,
                " (in the model's parameters() order) arrived twice in one backward pass on "
                "this rank after the first steps (a weight reused through data-dependent "
                "control flow, e.g. under activation checkpointing): its bucket left with part "
                "of the gradient, and on NCCL the ranks cannot agree to reduce it again without "
                "a host synchronisation every step; use the same weights the same number of "
                "times on every step");
    // Whether this rank has a gradient for each parameter no rank had one for so far, then
    // whether a gradient arrived twice here.
    auto sums = *stats;
    if (host_reads) {
      std::vector<float> here;
      for (size_t i : s.undecided) here.push_back(s.params[i].grad().defined() ? 1.0f : 0.0f);
      here.push_back(s.refired ? 1.0f : 0.0f);
      auto flags = at::tensor(here).to(stats->options());
      sums = at::cat({stats->reshape({-1}), flags});
    }
    for (size_t i = 0; i < s.params.size(); ++i)
      if (!s.filled[i]) s.fill(i);
    s.launch_ready();
    s.launch(sums);
    if (launched != nullptr) *launched = s.launched_in_backward;
    s.drain();
    std::vector<bool> unused(s.params.size(), false);
    if (host_reads) {
      auto n = stats->numel();
      stats->copy_(sums.narrow(0, 0, n).view(stats->sizes()));
      auto k_flags = int64_t(s.undecided.size()) + 1;
      auto flags = sums.narrow(0, n, k_flags).to(at::kCPU, at::kFloat);
      auto flag = flags.accessor<float, 1>();
      std::vector<size_t> still;
      for (size_t k = 0; k < s.undecided.size(); ++k) {
        if (flag[k] == 0.0f) {
          still.push_back(s.undecided[k]);
          unused[s.undecided[k]] = true;
        }
      }
      s.undecided = std::move(still);
      if (flag[k_flags - 1] != 0.0f) {
        // Some rank's buckets went out with part of a gradient: every rank reduces every bucket
        // again from the whole gradients, and from now on only after backward.
        s.reset();
        for (size_t i = 0; i < s.params.size(); ++i) s.fill(i);
        s.launch_ready();
        s.drain();
        s.overlap = false;
        if (launched != nullptr) *launched = 0;
      }
    }
    s.refired = false;
    s.refired_index = -1;
    for (size_t i = 0; i < s.params.size(); ++i) {
      if (unused[i]) continue;
      auto& p = s.params[i];
      auto summed = s.flats[s.bucket_of[i]].narrow(0, s.offset_of[i], p.numel()).view(p.sizes());
      if (p.grad().defined()) {
        p.mutable_grad().copy_(summed);
      } else {
        p.mutable_grad() = summed.clone();
      }
    }
  });
}

// The order in which the parameters became ready in the last armed backward (indices, first
// ready first; those that never did are left out): `*len` of them, at most `cap` written.
int titan_ddp_order(TitanDdp* ddp, uint64_t* out, size_t cap, size_t* len, char* err,
                    size_t err_len) {
  return guarded(err, err_len, [&] {
    auto& s = *ddp->state;
    std::lock_guard<std::mutex> lock(s.mu);
    *len = s.order.size();
    for (size_t k = 0; k < s.order.size() && k < cap; ++k) out[k] = s.order[k];
  });
}

// Whether `finish` can be captured in a CUDA graph: on NCCL it reads nothing on the host (no
// parameter is still unused by every rank, whose flags it would read); on Gloo (CPU, no graph)
// it always reads the flags.
bool titan_ddp_capturable(TitanDdp* ddp) {
  std::lock_guard<std::mutex> lock(ddp->state->mu);
  return ddp->state->undecided.empty();
}

// The first parameter whose gradient arrived twice in the last armed backward on this rank, or
// -1 (kept past a `finish` that refused it, for the error's name).
int64_t titan_ddp_refired(TitanDdp* ddp) {
  std::lock_guard<std::mutex> lock(ddp->state->mu);
  return ddp->state->refired_index;
}

// Whether backward still queues buckets (false on every rank after a parameter's gradient
// arrived twice in one backward on any rank).
bool titan_ddp_overlaps(TitanDdp* ddp) {
  std::lock_guard<std::mutex> lock(ddp->state->mu);
  return ddp->state->overlap;
}

}  // extern "C"
