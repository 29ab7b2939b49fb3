// Cross-entropy summed over the rows of logits (n, vocab) of any float dtype, computed in f32 a
// chunk of rows at a time: no f32 copy of the whole logits, nor their log-softmax, is ever made
// (what `cross_entropy(logits.float())` keeps for backward: 8 bytes per logit on top of the
// logits). Forward keeps each row's log-sum-exp; backward recomputes a chunk's softmax from the
// logits and writes the gradient in the logits' dtype. ATen ops only, so the same code runs on
// CPU and CUDA (and inside a captured CUDA graph: no host sync). Same C ABI as shim.cpp.

#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cstdint>

#include "guarded.h"

namespace {

using titan::guarded;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct ChunkedCrossEntropy : torch::autograd::Function<ChunkedCrossEntropy> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& logits,
                            const at::Tensor& targets, int64_t ignore, int64_t chunk) {
    auto n = logits.size(0);
    auto f32 = logits.options().dtype(at::kFloat);
    auto valid = targets.ne(ignore);
    // Ignored rows gather a valid index and are masked out.
    auto safe = targets.masked_fill(valid.logical_not(), 0);
    auto lse = at::empty({n}, f32);
    auto picked = at::empty({n}, f32);
    for (int64_t s = 0; s < n; s += chunk) {
      auto len = std::min(chunk, n - s);
      auto x = logits.narrow(0, s, len).to(at::kFloat);
      lse.narrow(0, s, len).copy_(at::logsumexp(x, {1}));
      picked.narrow(0, s, len).copy_(x.gather(1, safe.narrow(0, s, len).unsqueeze(1)).squeeze(1));
    }
    auto weight = valid.to(at::kFloat);
    ctx->save_for_backward({logits, safe, weight, lse});
    ctx->saved_data["chunk"] = chunk;
    return lse.sub(picked).mul_(weight).sum();
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& logits = saved[0];
    const auto& safe = saved[1];
    const auto& weight = saved[2];
    const auto& lse = saved[3];
    auto chunk = ctx->saved_data["chunk"].toInt();
    auto g = grads[0].to(at::kFloat);
    auto n = logits.size(0);
    auto out = at::empty_like(logits);
    for (int64_t s = 0; s < n; s += chunk) {
      auto len = std::min(chunk, n - s);
      // softmax - one_hot(target), times the incoming gradient, zero on ignored rows.
      // A copy even when the logits are f32 already: it is changed in place below.
      auto p = logits.narrow(0, s, len).to(at::kFloat, false, true);
      p.sub_(lse.narrow(0, s, len).unsqueeze(1));
      p.exp_();
      auto index = safe.narrow(0, s, len).unsqueeze(1);
      p.scatter_add_(1, index, at::full({len, 1}, -1.0, p.options()));
      p.mul_(weight.narrow(0, s, len).unsqueeze(1).mul(g));
      out.narrow(0, s, len).copy_(p);
    }
    return {out, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" {

// Summed cross-entropy of `logits` (n, vocab) against int64 `targets` (n), rows equal to
// `ignore` skipped, `chunk` rows at a time; *out receives the 0-dim f32 sum.
int titan_chunked_cross_entropy(const at::Tensor* logits, const at::Tensor* targets,
                                int64_t ignore, int64_t chunk, at::Tensor** out, char* err,
                                size_t err_len) {
  return guarded(err, err_len, [&] {
    TORCH_CHECK(logits->dim() == 2, "logits must be (rows, vocab), got ", logits->sizes());
    TORCH_CHECK(at::isFloatingType(logits->scalar_type()), "logits must be floating point, got ",
                logits->scalar_type());
    TORCH_CHECK(targets->dim() == 1 && targets->size(0) == logits->size(0),
                "targets must be (rows) with ", logits->size(0), " rows, got ",
                targets->sizes());
    TORCH_CHECK(targets->scalar_type() == at::kLong, "targets must be int64, got ",
                targets->scalar_type());
    TORCH_CHECK(chunk > 0, "chunk must be at least 1 row, got ", chunk);
    *out = new at::Tensor(ChunkedCrossEntropy::apply(*logits, *targets, ignore, chunk));
  });
}

}  // extern "C"
