// Fused CPU kernels for the memory-bound steps of a Llama block: RMSNorm, rotary embedding and
// the SwiGLU gate. Each is a libtorch autograd function whose forward and backward read and write
// every element once (libtorch's composite versions take 5 to 15 passes over memory each), over
// contiguous f32 tensors, rows split across libtorch's own OpenMP threads (`at::parallel_for`;
// build.rs compiles with -fopenmp and links libtorch's libgomp, so there is one thread pool).
// The math is the composite ops' to float rounding; `titan::model::fused` checks both against
// them. Same C ABI as shim.cpp: 0 on success, or 1 with the message copied into `err`.

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <vector>

#include "guarded.h"

namespace {

using titan::guarded;

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Rows per task: about 32K elements, so small tensors stay on one thread.
int64_t grain(int64_t width) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(width, 1)); }

// The kernels' backward passes are not themselves differentiable: refuse a double backward
// (`create_graph`) rather than return gradients without a graph.
void check_once_differentiable(const char* name) {
  TORCH_CHECK(!at::GradMode::is_enabled(), name,
              " is differentiable once: its backward cannot build a graph (create_graph)");
}

void check_f32_cpu(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU, got ", t.device());
  TORCH_CHECK(t.scalar_type() == at::kFloat, name, " must be float32, got ", t.scalar_type());
}

// Sum of a[k] * b[k] over n floats, in 8 independent lanes so the compiler vectorizes it.
inline float dot(const float* a, const float* b, int64_t n) {
  float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) {
    for (int l = 0; l < 8; ++l) lanes[l] += a[k + l] * b[k + l];
  }
  float sum = 0;
  for (; k < n; ++k) sum += a[k] * b[k];
  for (int l = 0; l < 8; ++l) sum += lanes[l];
  return sum;
}

// y = x * rsqrt(mean(x^2) + eps) * w over the last dimension.
struct RmsNorm : torch::autograd::Function<RmsNorm> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            double eps) {
    auto x = input.contiguous();
    auto w = weight.contiguous();
    const int64_t d = x.size(-1);
    TORCH_CHECK(w.numel() == d, "RMSNorm weight has ", w.numel(), " elements for width ", d);
    const int64_t rows = d == 0 ? 0 : x.numel() / d;
    auto y = at::empty_like(x);
    auto rstd = at::empty({rows}, x.options());
    const float* xp = x.const_data_ptr<float>();
    const float* wp = w.const_data_ptr<float>();
    float* yp = y.mutable_data_ptr<float>();
    float* rp = rstd.mutable_data_ptr<float>();
    at::parallel_for(0, rows, grain(d), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const float* xr = xp + r * d;
        float* yr = yp + r * d;
        const float rs = 1.0f / std::sqrt(dot(xr, xr, d) / static_cast<float>(d) +
                                          static_cast<float>(eps));
        rp[r] = rs;
        for (int64_t k = 0; k < d; ++k) yr[k] = (xr[k] * rs) * wp[k];
      }
    });
    ctx->save_for_backward({x, w, rstd});
    return y;
  }

  // dx = r * w * dy - x * r^3 / d * sum(dy * w * x);  dw = sum over rows of dy * x * r.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    check_once_differentiable("fused RMSNorm");
    auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1], &rstd = saved[2];
    auto dy = grads[0].contiguous();
    const int64_t d = x.size(-1);
    const int64_t rows = d == 0 ? 0 : x.numel() / d;
    auto dx = at::empty_like(x);
    // One partial sum of dw per thread (in f64: a thread may add thousands of rows), added up
    // at the end.
    const int64_t threads = at::get_num_threads();
    auto partial = at::zeros({threads, d}, x.options().dtype(at::kDouble));
    const float* xp = x.const_data_ptr<float>();
    const float* wp = w.const_data_ptr<float>();
    const float* rp = rstd.const_data_ptr<float>();
    const float* gp = dy.const_data_ptr<float>();
    float* dxp = dx.mutable_data_ptr<float>();
    double* pp = partial.mutable_data_ptr<double>();
    at::parallel_for(0, rows, grain(d), [&](int64_t begin, int64_t end) {
      double* acc = pp + std::min<int64_t>(at::get_thread_num(), threads - 1) * d;
      std::vector<float> gw(d);
      for (int64_t r = begin; r < end; ++r) {
        const float* xr = xp + r * d;
        const float* gr = gp + r * d;
        float* dxr = dxp + r * d;
        const float rs = rp[r];
        for (int64_t k = 0; k < d; ++k) gw[k] = gr[k] * wp[k];
        const float c = dot(gw.data(), xr, d) * rs * rs * rs / static_cast<float>(d);
        for (int64_t k = 0; k < d; ++k) {
          dxr[k] = rs * gw[k] - xr[k] * c;
          acc[k] += gr[k] * (xr[k] * rs);
        }
      }
    });
    return {dx, partial.sum(0).to(at::kFloat).view_as(w), at::Tensor()};
  }
};

// Rotary embedding, Hugging Face's half rotation: y = x * cos + rotate_half(x) * sin with
// rotate_half(x) = cat(-x[half:], x[:half]); x is (b, heads, t, head_dim), cos and sin (t, head_dim).
struct Rotary : torch::autograd::Function<Rotary> {
  // Applies the rotation (sign +1) or its transpose (sign -1, the backward) to each row.
  static at::Tensor rotate(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                           bool transpose) {
    const int64_t t = x.size(2), d = x.size(3), half = d / 2;
    const int64_t rows = x.numel() / d;
    auto y = at::empty_like(x, at::MemoryFormat::Contiguous);
    const float* xp = x.const_data_ptr<float>();
    const float* cp = cos.const_data_ptr<float>();
    const float* sp = sin.const_data_ptr<float>();
    float* yp = y.mutable_data_ptr<float>();
    at::parallel_for(0, rows, grain(d), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const float* xr = xp + r * d;
        const float* c = cp + (r % t) * d;
        const float* s = sp + (r % t) * d;
        float* yr = yp + r * d;
        if (!transpose) {
          // y[k] = x[k] c[k] - x[k+h] s[k];  y[k+h] = x[k+h] c[k+h] + x[k] s[k+h]
          for (int64_t k = 0; k < half; ++k) yr[k] = xr[k] * c[k] - xr[k + half] * s[k];
          for (int64_t k = half; k < d; ++k) yr[k] = xr[k] * c[k] + xr[k - half] * s[k];
        } else {
          // dx[k] = dy[k] c[k] + dy[k+h] s[k+h];  dx[k+h] = dy[k+h] c[k+h] - dy[k] s[k]
          for (int64_t k = 0; k < half; ++k) yr[k] = xr[k] * c[k] + xr[k + half] * s[k + half];
          for (int64_t k = half; k < d; ++k) yr[k] = xr[k] * c[k] - xr[k - half] * s[k - half];
        }
      }
    });
    return y;
  }

  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& cos,
                            const at::Tensor& sin) {
    TORCH_CHECK(input.dim() == 4, "rotary input must be (batch, heads, seq, head_dim), got ",
                input.sizes());
    TORCH_CHECK(input.size(3) > 0 && input.size(3) % 2 == 0,
                "rotary head_dim must be even and positive, got ", input.size(3));
    auto c = cos.contiguous();
    auto s = sin.contiguous();
    TORCH_CHECK(c.dim() == 2 && c.size(0) == input.size(2) && c.size(1) == input.size(3) &&
                    s.sizes() == c.sizes(),
                "rotary tables must be (seq, head_dim) = (", input.size(2), ", ", input.size(3),
                "), got cos ", c.sizes(), " and sin ", s.sizes());
    ctx->save_for_backward({c, s});
    return rotate(input.contiguous(), c, s, false);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    check_once_differentiable("fused rotary embedding");
    auto saved = ctx->get_saved_variables();
    return {rotate(grads[0].contiguous(), saved[0], saved[1], true), at::Tensor(), at::Tensor()};
  }
};

// exp(v) for v in float range, as a polynomial the compiler vectorizes (std::exp does not
// vectorize without -ffast-math): 2^n * e^f with n = round(v / ln 2), |f| <= ln2 / 2 (ln 2 split
// in two for precision), and a degree-6 Taylor polynomial for e^f (relative error below 2e-7).
inline float fast_exp(float v) {
  v = std::min(88.0f, std::max(-87.0f, v));
  // Round to nearest by adding and subtracting 1.5 * 2^23 (vectorizes where nearbyint may not).
  const float n = (v * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float f = v - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.0f / 720;
  p = p * f + 1.0f / 120;
  p = p * f + 1.0f / 24;
  p = p * f + 1.0f / 6;
  p = p * f + 0.5f;
  p = p * f + 1.0f;
  p = p * f + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// The SwiGLU loops, compiled twice: for AVX2 (8 lanes; the exponential is compute-bound) and for
// the x86-64 baseline, chosen once at load time by the CPU.
__attribute__((target_clones("avx2", "default"))) void swiglu_forward(
    const float* __restrict g, const float* __restrict u, float* __restrict h, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float sig = 1.0f / (1.0f + fast_exp(-g[i]));
    h[i] = g[i] * sig * u[i];
  }
}

// dgate = dh * up * sig * (1 + gate * (1 - sig));  dup = dh * gate * sig.
__attribute__((target_clones("avx2", "default"))) void swiglu_backward(
    const float* __restrict g, const float* __restrict u, const float* __restrict dh,
    float* __restrict dg, float* __restrict du, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float sig = 1.0f / (1.0f + fast_exp(-g[i]));
    du[i] = dh[i] * (g[i] * sig);
    dg[i] = dh[i] * u[i] * (sig * (1.0f + g[i] * (1.0f - sig)));
  }
}

// h = silu(gate) * up over same-shaped contiguous gate and up.
struct SwiGlu : torch::autograd::Function<SwiGlu> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gate, const at::Tensor& up) {
    TORCH_CHECK(gate.sizes() == up.sizes(), "SwiGLU gate ", gate.sizes(), " and up ", up.sizes(),
                " differ in shape");
    auto g = gate.contiguous();
    auto u = up.contiguous();
    auto h = at::empty_like(g);
    const int64_t n = g.numel();
    const float* gp = g.const_data_ptr<float>();
    const float* up_ = u.const_data_ptr<float>();
    float* hp = h.mutable_data_ptr<float>();
    at::parallel_for(0, n, 32768, [&](int64_t begin, int64_t end) {
      swiglu_forward(gp + begin, up_ + begin, hp + begin, end - begin);
    });
    ctx->save_for_backward({g, u});
    return h;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    check_once_differentiable("fused SwiGLU");
    auto saved = ctx->get_saved_variables();
    const auto &g = saved[0], &u = saved[1];
    auto dh = grads[0].contiguous();
    auto dg = at::empty_like(g);
    auto du = at::empty_like(u);
    const int64_t n = g.numel();
    const float* gp = g.const_data_ptr<float>();
    const float* up_ = u.const_data_ptr<float>();
    const float* hp = dh.const_data_ptr<float>();
    float* dgp = dg.mutable_data_ptr<float>();
    float* dup = du.mutable_data_ptr<float>();
    at::parallel_for(0, n, 32768, [&](int64_t begin, int64_t end) {
      swiglu_backward(gp + begin, up_ + begin, hp + begin, dgp + begin, dup + begin, end - begin);
    });
    return {dg, du};
  }
};

}  // namespace

extern "C" {

// Fused RMSNorm of f32 CPU `x` over its last dimension with `weight`; *out receives a new tensor.
int titan_fused_rms_norm(const at::Tensor* x, const at::Tensor* weight, double eps,
                         at::Tensor** out, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    check_f32_cpu(*x, "RMSNorm input");
    check_f32_cpu(*weight, "RMSNorm weight");
    *out = new at::Tensor(RmsNorm::apply(*x, *weight, eps));
  });
}

// Fused rotary embedding of f32 CPU `x` (b, heads, t, head_dim) with tables (t, head_dim).
int titan_fused_rotary(const at::Tensor* x, const at::Tensor* cos, const at::Tensor* sin,
                       at::Tensor** out, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    check_f32_cpu(*x, "rotary input");
    check_f32_cpu(*cos, "rotary cos table");
    check_f32_cpu(*sin, "rotary sin table");
    *out = new at::Tensor(Rotary::apply(*x, *cos, *sin));
  });
}

// Fused silu(gate) * up of same-shaped f32 CPU tensors.
int titan_fused_swiglu(const at::Tensor* gate, const at::Tensor* up, at::Tensor** out, char* err,
                       size_t err_len) {
  return guarded(err, err_len, [&] {
    check_f32_cpu(*gate, "SwiGLU gate");
    check_f32_cpu(*up, "SwiGLU up");
    *out = new at::Tensor(SwiGlu::apply(*gate, *up));
  });
}

}  // extern "C"
