// torch's c10d behind a C ABI: a TCPStore for the rendezvous, and a process group on it
// (ProcessGroupGloo on CPU; ProcessGroupNCCL on CUDA where build.rs found NCCL's headers), with
// the few collectives titan uses. Gloo's own headers are not in the wheel: `gloo_names/`
// declares the names ProcessGroupGloo.hpp mentions (see its README); a two-rank all-reduce test
// checks them against the library. Every function returns 0 on success, or 1 with the C++
// exception's message in `err` (guarded.h); nothing throws into Rust.

#define USE_C10D_GLOO 1
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#ifdef TITAN_NCCL
#define USE_C10D_NCCL 1
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "guarded.h"

namespace {

using titan::guarded;

std::vector<at::Tensor> one(const at::Tensor* tensor) { return {*tensor}; }

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
// client that connects within `timeout_ms`. `port_out` gets the port it is on.
TitanStore* titan_store_new(const char* host, uint16_t port, bool is_server, int world_size,
                            int64_t timeout_ms, uint16_t* port_out, char* err,
                            size_t err_len) {
  TitanStore* out = nullptr;
  guarded(err, err_len, [&] {
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = is_server;
    opts.numWorkers = static_cast<size_t>(world_size);
    // The process group's rendezvous waits for every rank, within the same timeout.
    opts.waitWorkers = false;
    opts.timeout = std::chrono::milliseconds(timeout_ms);
    auto store = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    if (port_out != nullptr) *port_out = store->getPort();
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

void titan_group_free(TitanGroup* group) { delete group; }

// Sums (op 0) or takes the maximum (op 1) of each of `n` tensors over every rank, in place:
// all n collectives are queued before the first is waited for, so they overlap each other.
int titan_group_all_reduce(TitanGroup* group, at::Tensor* const* tensors, size_t n, int op,
                           char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp(op == 1 ? c10d::ReduceOp::MAX : c10d::ReduceOp::SUM);
    opts.timeout = group->timeout;
    std::vector<std::vector<at::Tensor>> lists;
    lists.reserve(n);
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    works.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      lists.push_back(one(tensors[i]));
      works.push_back(group->backend->allreduce(lists.back(), opts));
    }
    for (auto& work : works) work->wait(group->timeout);
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
    std::vector<std::vector<at::Tensor>> lists;
    lists.reserve(n);
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    works.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      lists.push_back(one(tensors[i]));
      works.push_back(group->backend->broadcast(lists.back(), opts));
    }
    for (auto& work : works) work->wait(group->timeout);
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
