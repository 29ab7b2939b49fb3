//! Llama 3 (Touvron et al. 2023; Meta's Llama 3 report 2024), as Hugging Face's
//! `LlamaForCausalLM` computes it: RMSNorm, rotary embeddings, grouped-query attention through
//! libtorch's fused causal `scaled_dot_product_attention`, and a SwiGLU MLP.
//!
//! Variable names are exactly Hugging Face's (`model.layers.0.self_attn.q_proj.weight`, …), so
//! a `model.safetensors` from the Hub loads into [`Llama`] and ours loads into transformers.
//!
//! One file of about 800 lines on purpose: a model file reads top to bottom (config, then the
//! private blocks, then the public model and its tests), as candle's and transformers' do.

mod documents;
mod hf;

pub use documents::AttnMaskType;
use documents::Documents;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor, nn};

use super::{Model, ParamGroup, Parameters, ScoreLogits, SpecialTokens};
use crate::batch::TokenIds;
use crate::checkpoint::Stateless;
use crate::loss::LogitRows;
use crate::shim;
use crate::{Error, Result};

/// The architecture's hyper-parameters, with Hugging Face's `config.json` field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlamaConfig {
    /// Number of token ids (rows of the embedding).
    pub vocab_size: i64,
    /// Width of the residual stream.
    pub hidden_size: i64,
    /// Width of the SwiGLU MLP's hidden layer.
    pub intermediate_size: i64,
    /// Number of transformer blocks.
    pub num_hidden_layers: i64,
    /// Number of query heads.
    pub num_attention_heads: i64,
    /// Number of key/value heads (fewer than query heads: grouped-query attention).
    pub num_key_value_heads: i64,
    /// Longest sequence the rotary cache covers.
    pub max_position_embeddings: i64,
    /// Base of the rotary frequencies.
    pub rope_theta: f64,
    /// Epsilon inside RMSNorm's square root.
    pub rms_norm_eps: f64,
    /// Share the input embedding with the output projection.
    pub tie_word_embeddings: bool,
    /// Standard deviation of the normal initialisation of linear and embedding weights.
    pub initializer_range: f64,
    /// Llama 3's rotary scaling (Hugging Face's `rope_scaling`); `None`: plain RoPE.
    pub rope_scaling: Option<RopeScaling>,
    /// Whether a token of a row attends across the documents packed into it (`causal`) or
    /// within its own only, positions restarting at each (`block_causal`, torchtitan's mask).
    pub attn_mask_type: AttnMaskType,
    /// The token that ends a document (`block_causal` needs it); [`LlamaConfig::with_tokenizer`]
    /// takes the tokenizer's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<u32>,
}

/// Llama 3's scaling of the rotary frequencies (`rope_type = "llama3"`, as in Llama 3.1 and
/// 3.2): wavelengths longer than `original_max_position_embeddings / low_freq_factor` are
/// divided by `factor`, those shorter than `… / high_freq_factor` kept, and those between
/// interpolated; computed as transformers computes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RopeScaling {
    /// Always `"llama3"` (the only scaling titan's Llama has).
    pub rope_type: String,
    /// How much the low frequencies are slowed.
    pub factor: f64,
    /// Divides the original context into the wavelength above which frequencies are scaled.
    pub low_freq_factor: f64,
    /// Divides the original context into the wavelength below which frequencies are kept.
    pub high_freq_factor: f64,
    /// The context length the model was first trained at.
    pub original_max_position_embeddings: i64,
}

impl RopeScaling {
    /// Llama 3.2's (1B and 3B): factor 32, frequency factors 1 and 4, original context 8192.
    pub fn llama3_2() -> Self {
        Self {
            rope_type: "llama3".into(),
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        }
    }

    /// `inv_freq` scaled, in transformers' order of operations (`_compute_llama3_parameters`).
    fn apply(&self, inv_freq: &Tensor) -> Result<Tensor> {
        let old_context = self.original_max_position_embeddings as f64;
        let low_freq_wavelen = old_context / self.low_freq_factor;
        let high_freq_wavelen = old_context / self.high_freq_factor;
        let wavelen = inv_freq
            .f_reciprocal()?
            .f_mul_scalar(2.0 * std::f64::consts::PI)?;
        let long = wavelen.f_gt(low_freq_wavelen)?;
        let scaled = inv_freq
            .f_div_scalar(self.factor)?
            .f_where_self(&long, inv_freq)?;
        let smooth = wavelen
            .f_reciprocal()?
            .f_mul_scalar(old_context)?
            .f_sub_scalar(self.low_freq_factor)?
            .f_div_scalar(self.high_freq_factor - self.low_freq_factor)?;
        let smoothed = smooth
            .f_neg()?
            .f_add_scalar(1.0)?
            .f_mul(&scaled)?
            .f_div_scalar(self.factor)?
            .f_add(&smooth.f_mul(&scaled)?)?;
        let medium = wavelen
            .f_lt(high_freq_wavelen)?
            .f_logical_not()?
            .f_logical_and(&long.f_logical_not()?)?;
        Ok(smoothed.f_where_self(&medium, &scaled)?)
    }

    fn validate(&self) -> Result<()> {
        if self.rope_type != "llama3" {
            return Err(Error::config(
                "LlamaConfig.rope_scaling.rope_type",
                format!("{:?}", self.rope_type),
                "titan's Llama has Llama 3's scaling only: \"llama3\"",
            ));
        }
        if !(self.factor.is_finite() && self.factor > 0.0) {
            return Err(Error::config(
                "LlamaConfig.rope_scaling.factor",
                self.factor,
                "must be positive",
            ));
        }
        if !(self.low_freq_factor > 0.0 && self.high_freq_factor > self.low_freq_factor) {
            return Err(Error::config(
                "LlamaConfig.rope_scaling.high_freq_factor",
                self.high_freq_factor,
                format!(
                    "must be above low_freq_factor = {}, which must be positive",
                    self.low_freq_factor
                ),
            ));
        }
        if self.original_max_position_embeddings <= 0 {
            return Err(Error::config(
                "LlamaConfig.rope_scaling.original_max_position_embeddings",
                self.original_max_position_embeddings,
                "must be positive",
            ));
        }
        Ok(())
    }
}

impl Default for LlamaConfig {
    fn default() -> Self {
        Self::tiny()
    }
}

impl LlamaConfig {
    /// The Tiny Titan model: 4 layers of width 256, 2 heads, about 4.4M parameters.
    pub fn tiny() -> Self {
        Self {
            vocab_size: 2000,
            hidden_size: 256,
            intermediate_size: 768,
            num_hidden_layers: 4,
            num_attention_heads: 2,
            num_key_value_heads: 2,
            max_position_embeddings: 512,
            rope_theta: 10_000.0,
            rms_norm_eps: 1e-6,
            tie_word_embeddings: false,
            initializer_range: 0.02,
            rope_scaling: None,
            attn_mask_type: AttnMaskType::Causal,
            eos_token_id: None,
        }
    }

    /// A ~125M-parameter Llama 3 (GPT-2 small's size): 12 layers of width 768, 12 query and 4
    /// key/value heads, SwiGLU width 2048, a 32K vocabulary, sequences of 2048, rope θ 500,000.
    pub fn llama3_125m() -> Self {
        Self {
            vocab_size: 32_768,
            hidden_size: 768,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_key_value_heads: 4,
            max_position_embeddings: 2048,
            rope_theta: 500_000.0,
            rms_norm_eps: 1e-5,
            tie_word_embeddings: false,
            initializer_range: 0.02,
            rope_scaling: None,
            attn_mask_type: AttnMaskType::Causal,
            eos_token_id: None,
        }
    }

    /// Llama 3.2 1B's shape (~1.24B parameters): 16 layers of width 2048, 32 query and 8
    /// key/value heads, SwiGLU width 8192, Llama 3's 128,256-token vocabulary with tied
    /// embeddings, sequences of 2048 (its recipe's), rope θ 500,000 with Llama 3.2's scaling
    /// ([`RopeScaling::llama3_2`], factor 32, as Meta's config: its weights load with
    /// `--init-from-hf`). torchtitan's 1B flavour scales by its default factor 8: set
    /// `rope_scaling.factor` to 8 to match it.
    pub fn llama3_1b() -> Self {
        Self {
            vocab_size: 128_256,
            hidden_size: 2048,
            intermediate_size: 8192,
            num_hidden_layers: 16,
            num_attention_heads: 32,
            num_key_value_heads: 8,
            max_position_embeddings: 2048,
            rope_theta: 500_000.0,
            rms_norm_eps: 1e-5,
            tie_word_embeddings: true,
            initializer_range: 0.02,
            rope_scaling: Some(RopeScaling::llama3_2()),
            attn_mask_type: AttnMaskType::Causal,
            eos_token_id: None,
        }
    }

    /// Parameters of a model of this shape (embeddings and, when untied, the output head
    /// included), without building it.
    pub fn num_parameters(&self) -> i64 {
        let (h, kv) = (self.hidden_size, self.num_key_value_heads * self.head_dim());
        let attention = 2 * h * h + 2 * h * kv;
        let mlp = 3 * h * self.intermediate_size;
        let layer = attention + mlp + 2 * h;
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * h
        };
        self.vocab_size * h + self.num_hidden_layers * layer + h + head
    }

    /// Training FLOPs per token at `seq_len` (PaLM's count, as the step metrics' MFU), without
    /// building the model. A tied embedding counts as the output head's matmul, as torchtitan
    /// counts it.
    pub fn flops_per_token(&self, seq_len: i64) -> f64 {
        let lookup_only = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * self.hidden_size
        };
        crate::metrics::palm_flops_per_token(
            self.num_parameters(),
            lookup_only,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.head_dim(),
            seq_len,
        )
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }

    /// Checks the shapes fit together; each error names the field and its value.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("LlamaConfig.vocab_size", self.vocab_size),
            ("LlamaConfig.hidden_size", self.hidden_size),
            ("LlamaConfig.intermediate_size", self.intermediate_size),
            ("LlamaConfig.num_hidden_layers", self.num_hidden_layers),
            ("LlamaConfig.num_attention_heads", self.num_attention_heads),
            ("LlamaConfig.num_key_value_heads", self.num_key_value_heads),
            (
                "LlamaConfig.max_position_embeddings",
                self.max_position_embeddings,
            ),
        ];
        for (field, value) in positive {
            if value <= 0 {
                return Err(Error::config(field, value, "must be positive"));
            }
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(Error::config(
                "LlamaConfig.hidden_size",
                self.hidden_size,
                format!(
                    "must be divisible by num_attention_heads = {}",
                    self.num_attention_heads
                ),
            ));
        }
        if self.num_attention_heads % self.num_key_value_heads != 0 {
            return Err(Error::config(
                "LlamaConfig.num_key_value_heads",
                self.num_key_value_heads,
                format!(
                    "must divide num_attention_heads = {}",
                    self.num_attention_heads
                ),
            ));
        }
        for (field, value, reason) in [
            (
                "LlamaConfig.rope_theta",
                self.rope_theta,
                "must be a finite number above 0",
            ),
            (
                "LlamaConfig.rms_norm_eps",
                self.rms_norm_eps,
                "must be a finite number, 0 or above",
            ),
            (
                "LlamaConfig.initializer_range",
                self.initializer_range,
                "must be a finite number above 0 (at 0 every weight is 0 and nothing trains)",
            ),
        ] {
            let ok = value.is_finite()
                && match field {
                    "LlamaConfig.rms_norm_eps" => value >= 0.0,
                    _ => value > 0.0,
                };
            if !ok {
                return Err(Error::config(field, value, reason));
            }
            // The model computes in f32: a larger value would overflow it (libtorch refuses it,
            // or it trains NaN).
            if value > f64::from(f32::MAX) {
                return Err(Error::config(
                    field,
                    value,
                    format!("must fit in f32 (at most {:e})", f32::MAX),
                ));
            }
        }
        // The rotary tables (cos and sin, f32) hold every position: refused before they are
        // made when they would not fit in memory.
        let table_bytes = 8.0 * self.max_position_embeddings as f64 * self.head_dim() as f64;
        if table_bytes > 16.0 * f64::from(1u32 << 30) {
            return Err(Error::config(
                "LlamaConfig.max_position_embeddings",
                self.max_position_embeddings,
                format!(
                    "its rotary tables would take {:.0} GiB (at most 16)",
                    table_bytes / f64::from(1u32 << 30)
                ),
            ));
        }
        if let Some(scaling) = &self.rope_scaling {
            scaling.validate()?;
        }
        if let Some(eos) = self
            .eos_token_id
            .filter(|&eos| i64::from(eos) >= self.vocab_size)
        {
            return Err(Error::config(
                "LlamaConfig.eos_token_id",
                eos,
                format!("must be below vocab_size = {}", self.vocab_size),
            ));
        }
        if self.head_dim() % 2 != 0 {
            return Err(Error::config(
                "LlamaConfig.hidden_size",
                self.hidden_size,
                format!(
                    "head_dim {} must be even for rotary embeddings",
                    self.head_dim()
                ),
            ));
        }
        Ok(())
    }
}

/// `weight @ xs^T` with no bias, Hugging Face's `nn.Linear(bias=False)`.
#[derive(Debug)]
struct Linear {
    weight: Tensor,
}

impl Linear {
    fn new(path: nn::Path<'_>, in_dim: i64, out_dim: i64, std: f64) -> Result<Self> {
        let weight = path.f_var("weight", &[out_dim, in_dim], normal(std))?;
        Ok(Self { weight })
    }

    /// Computes in `xs`'s precision: the (f32 master) weight is cast to it, differentiably.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(xs.f_linear::<Tensor>(&self.weight.f_to_kind(xs.kind())?, None)?)
    }
}

fn normal(stdev: f64) -> nn::Init {
    nn::Init::Randn { mean: 0.0, stdev }
}

/// Whether titan's fused CPU kernels (`shim::fused_*`) take `xs`: f32 on the CPU, when enabled.
fn fused_for(xs: &Tensor, fused: bool) -> bool {
    fused && xs.device() == Device::Cpu && xs.kind() == Kind::Float
}

/// Root-mean-square normalisation (Zhang & Sennrich 2019), computed in f32.
#[derive(Debug)]
struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    fn new(path: nn::Path<'_>, dim: i64, eps: f64) -> Result<Self> {
        let weight = path.f_var("weight", &[dim], nn::Init::Const(1.0))?;
        Ok(Self { weight, eps })
    }

    fn forward(&self, xs: &Tensor, fused: bool) -> Result<Tensor> {
        if fused_for(xs, fused) && self.weight.kind() == Kind::Float {
            return shim::fused_rms_norm(xs, &self.weight, self.eps);
        }
        if fused && xs.device().is_cuda() {
            return self.libtorch_fused(xs);
        }
        let kind = xs.kind();
        let xs32 = xs.f_to_kind(Kind::Float)?;
        let variance = xs32
            .f_pow_tensor_scalar(2)?
            .f_mean_dim(-1, true, Kind::Float)?;
        let normed = xs32.f_mul(&variance.f_add_scalar(self.eps)?.f_rsqrt()?)?;
        Ok(normed
            .f_to_kind(kind)?
            .f_mul(&self.weight.f_to_kind(kind)?)?)
    }

    /// libtorch's fused RMSNorm (`at::_fused_rms_norm`): on CUDA one kernel each way, summing
    /// in f32 whatever the dtype and scaling by the weight before the one rounding; elsewhere
    /// its composite ops.
    fn libtorch_fused(&self, xs: &Tensor) -> Result<Tensor> {
        let weight = self.weight.f_to_kind(xs.kind())?;
        let (ys, _rstd) =
            xs.f_internal_fused_rms_norm(weight.size().as_slice(), Some(&weight), self.eps)?;
        Ok(ys)
    }
}

/// Rotary position embedding tables (Su et al. 2021), Hugging Face's half-rotation layout.
#[derive(Debug)]
struct Rotary {
    cos: Tensor, // (max_pos, head_dim)
    sin: Tensor, // (max_pos, head_dim)
}

impl Rotary {
    fn new(cfg: &LlamaConfig, device: Device) -> Result<Self> {
        let dim = cfg.head_dim();
        let opts = (Kind::Float, device);
        // Computed in f32 in the same order as transformers, so logits match to the last bits.
        let exponents = Tensor::f_arange_start_step(0, dim, 2, (Kind::Int64, device))?
            .f_to_kind(Kind::Float)?
            .f_div_scalar(dim as f64)?;
        let inv_freq = Tensor::f_full([dim / 2], cfg.rope_theta, opts)?
            .f_pow(&exponents)?
            .f_reciprocal()?;
        let inv_freq = match &cfg.rope_scaling {
            Some(scaling) => scaling.apply(&inv_freq)?,
            None => inv_freq,
        };
        let positions = Tensor::f_arange(cfg.max_position_embeddings, opts)?;
        let freqs = positions.f_unsqueeze(1)?.f_mul(&inv_freq.f_unsqueeze(0)?)?;
        let emb = Tensor::f_cat(&[&freqs, &freqs], -1)?;
        Ok(Self {
            cos: emb.f_cos()?,
            sin: emb.f_sin()?,
        })
    }
}

/// What attention needs of one batch, made once for every block: the rotary tables at each
/// token's position in the compute precision, (t, head_dim) for positions 0..t or
/// (b, 1, t, head_dim) per row, and for `block_causal` the documents' mask as an additive bias
/// (0 or −∞, (b, 1, t, t)) that every layer shares (none: plain causal).
#[derive(Debug)]
struct Attend {
    cos: Tensor,
    sin: Tensor,
    bias: Option<Tensor>,
}

impl Attend {
    /// The context of the rows `input_ids` (b, t) under `config`'s mask type, computing in
    /// `kind`.
    fn new(rotary: &Rotary, config: &LlamaConfig, input_ids: &Tensor, kind: Kind) -> Result<Self> {
        let (_, t) = input_ids.size2()?;
        match (config.attn_mask_type, config.eos_token_id) {
            (AttnMaskType::BlockCausal, Some(eos)) => {
                let docs = Documents::of(input_ids, i64::from(eos))?;
                let at = |table: &Tensor| -> Result<Tensor> {
                    Ok(
                        Tensor::f_embedding(table, &docs.positions, -1, false, false)?
                            .f_unsqueeze(1)?
                            .f_to_kind(kind)?,
                    )
                };
                // Made once here: SDPA would turn a boolean mask into this in every layer (and
                // autograd keep each).
                let bias = Tensor::f_zeros(docs.mask.size(), (kind, input_ids.device()))?
                    .f_masked_fill(&docs.mask.f_logical_not()?, f64::NEG_INFINITY)?;
                Ok(Self {
                    cos: at(&rotary.cos)?,
                    sin: at(&rotary.sin)?,
                    bias: Some(bias),
                })
            }
            // `Llama::new` refused block_causal without an EOS.
            _ => Ok(Self {
                cos: rotary.cos.f_narrow(0, 0, t)?.f_to_kind(kind)?,
                sin: rotary.sin.f_narrow(0, 0, t)?.f_to_kind(kind)?,
                bias: None,
            }),
        }
    }

    /// Rotates `xs` of shape (b, heads, t, head_dim) by its tokens' positions.
    fn rotate(&self, xs: &Tensor, fused: bool) -> Result<Tensor> {
        // Already in the compute precision: no copy per call.
        let cos = self.cos.f_to_kind(xs.kind())?;
        let sin = self.sin.f_to_kind(xs.kind())?;
        // The fused kernel takes one table for every row: positions 0..t.
        if fused_for(xs, fused) && self.cos.dim() == 2 {
            return shim::fused_rotary(xs, &cos, &sin);
        }
        let half = xs.size().last().copied().unwrap_or(0) / 2;
        let x1 = xs.f_narrow(-1, 0, half)?;
        let x2 = xs.f_narrow(-1, half, half)?;
        let rotated = Tensor::f_cat(&[&x2.f_neg()?, &x1], -1)?;
        Ok(xs.f_mul(&cos)?.f_add(&rotated.f_mul(&sin)?)?)
    }
}

/// Grouped-query causal self-attention.
#[derive(Debug)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    num_heads: i64,
    num_kv_heads: i64,
    head_dim: i64,
}

impl Attention {
    fn new(path: nn::Path<'_>, cfg: &LlamaConfig) -> Result<Self> {
        let (h, hd, std) = (cfg.hidden_size, cfg.head_dim(), cfg.initializer_range);
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        Ok(Self {
            q_proj: Linear::new(&path / "q_proj", h, nh * hd, std)?,
            k_proj: Linear::new(&path / "k_proj", h, nkv * hd, std)?,
            v_proj: Linear::new(&path / "v_proj", h, nkv * hd, std)?,
            o_proj: Linear::new(&path / "o_proj", nh * hd, h, std)?,
            num_heads: nh,
            num_kv_heads: nkv,
            head_dim: hd,
        })
    }

    fn forward(&self, xs: &Tensor, attend: &Attend, fused: bool) -> Result<Tensor> {
        let (b, t, c) = xs.size3()?; // (b, t, c)
        let heads = |ys: Tensor, n: i64| -> Result<Tensor> {
            Ok(ys.f_view([b, t, n, self.head_dim])?.f_transpose(1, 2)?) // (b, n, t, hd)
        };
        let q = heads(self.q_proj.forward(xs)?, self.num_heads)?;
        let k = heads(self.k_proj.forward(xs)?, self.num_kv_heads)?;
        let v = heads(self.v_proj.forward(xs)?, self.num_kv_heads)?;
        let q = attend.rotate(&q, fused)?;
        let k = attend.rotate(&k, fused)?;
        let mut gqa = self.num_kv_heads != self.num_heads;
        let (k, v) = match &attend.bias {
            // With a mask, libtorch's memory-efficient kernel takes no grouped heads (the
            // composite one would): each key/value head is repeated for its query heads, as
            // torchtitan's `repeat_kv` does.
            Some(_) if gqa => {
                gqa = false;
                let group = self.num_heads / self.num_kv_heads;
                (
                    k.f_repeat_interleave_self_int(group, 1, None)?,
                    v.f_repeat_interleave_self_int(group, 1, None)?,
                )
            }
            _ => (k, v),
        };
        // Causal by the kernel's own flag, or by the documents' mask.
        let ys = Tensor::f_scaled_dot_product_attention(
            &q,
            &k,
            &v,
            attend.bias.as_ref(),
            0.0,
            attend.bias.is_none(),
            None,
            gqa,
        )?; // (b, nh, t, hd)
        let ys = ys.f_transpose(1, 2)?.f_contiguous()?.f_view([b, t, c])?;
        self.o_proj.forward(&ys)
    }
}

/// SwiGLU feed-forward: `down(silu(gate(x)) * up(x))` (Shazeer 2020).
#[derive(Debug)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn new(path: nn::Path<'_>, cfg: &LlamaConfig) -> Result<Self> {
        let (h, i, std) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.initializer_range,
        );
        Ok(Self {
            gate_proj: Linear::new(&path / "gate_proj", h, i, std)?,
            up_proj: Linear::new(&path / "up_proj", h, i, std)?,
            down_proj: Linear::new(&path / "down_proj", i, h, std)?,
        })
    }

    fn forward(&self, xs: &Tensor, fused: bool) -> Result<Tensor> {
        let gate = self.gate_proj.forward(xs)?;
        let up = self.up_proj.forward(xs)?;
        let hidden = if fused_for(&gate, fused) {
            shim::fused_swiglu(&gate, &up)?
        } else {
            gate.f_silu()?.f_mul(&up)?
        };
        self.down_proj.forward(&hidden)
    }
}

/// One pre-norm transformer block.
#[derive(Debug)]
struct Block {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl Block {
    fn new(path: nn::Path<'_>, cfg: &LlamaConfig) -> Result<Self> {
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        Ok(Self {
            input_layernorm: RmsNorm::new(&path / "input_layernorm", h, eps)?,
            self_attn: Attention::new(&path / "self_attn", cfg)?,
            post_attention_layernorm: RmsNorm::new(&path / "post_attention_layernorm", h, eps)?,
            mlp: Mlp::new(&path / "mlp", cfg)?,
        })
    }

    fn forward(&self, xs: &Tensor, attend: &Attend, fused: bool) -> Result<Tensor> {
        let attn =
            self.self_attn
                .forward(&self.input_layernorm.forward(xs, fused)?, attend, fused)?;
        let xs = xs.f_add(&attn)?;
        let mlp = self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&xs, fused)?, fused)?;
        Ok(xs.f_add(&mlp)?)
    }
}

/// A Llama causal language model: token ids (b, t) in, logits (b, t, vocab) out.
#[derive(Debug)]
pub struct Llama {
    vs: nn::VarStore,
    config: LlamaConfig,
    embed_tokens: Tensor,
    layers: Vec<Block>,
    norm: RmsNorm,
    lm_head: Tensor,
    rotary: Rotary,
    compute: Kind,
    checkpoint: bool,
    fused: bool,
    logits_chunk: i64,
}

/// Logits a training pass holds at once by default ([`Llama::with_logits_chunk`]): 2^27, 256
/// MiB in bf16, so a 128K vocabulary is scored about 1,000 positions at a time and a small one
/// all at once.
const LOGITS_CHUNK: i64 = 1 << 27;

impl Llama {
    /// Builds a randomly initialised model (normal, std `initializer_range`) on `device`.
    pub fn new(config: LlamaConfig, device: Device) -> Result<Self> {
        config.validate()?;
        // A configuration may leave the id to the tokenizer; the model needs it.
        if config.attn_mask_type == AttnMaskType::BlockCausal && config.eos_token_id.is_none() {
            return Err(Error::config(
                "LlamaConfig.attn_mask_type",
                "block_causal",
                "needs the token that ends a document, and eos_token_id is not set: build the \
                 model from `config.with_tokenizer(&tokenizer)` (a tokenizer with an \
                 end-of-sequence token), or set eos_token_id",
            ));
        }
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let model = &root / "model";
        let (v, h, std) = (
            config.vocab_size,
            config.hidden_size,
            config.initializer_range,
        );
        let embed_tokens = (&model / "embed_tokens").f_var("weight", &[v, h], normal(std))?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| Block::new(&model / "layers" / i, &config))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::new(&model / "norm", h, config.rms_norm_eps)?;
        let lm_head = if config.tie_word_embeddings {
            embed_tokens.shallow_clone()
        } else {
            (&root / "lm_head").f_var("weight", &[v, h], normal(std))?
        };
        let rotary = Rotary::new(&config, device)?;
        Ok(Self {
            vs,
            config,
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary,
            compute: Kind::Float,
            checkpoint: false,
            fused: true,
            logits_chunk: LOGITS_CHUNK,
        })
    }

    /// With `on`, training keeps only each block's input in the forward pass and recomputes
    /// the block's activations during backward (per-layer activation checkpointing): less
    /// memory for one more forward pass of the blocks.
    pub fn with_activation_checkpointing(mut self, on: bool) -> Self {
        self.checkpoint = on;
        self
    }

    /// With `on` (the default), f32 work on the CPU runs titan's fused kernels for RMSNorm, the
    /// rotary embedding and the SwiGLU gate (`csrc/fused_cpu.cpp`: one pass over memory where
    /// libtorch's composite ops take several), and RMSNorm on CUDA runs libtorch's fused kernel
    /// (`at::_fused_rms_norm`); off, or for other cases, the composite ops Hugging Face's
    /// model uses.
    pub fn with_fused_kernels(mut self, on: bool) -> Self {
        self.fused = on;
        self
    }

    /// Re-initialises the weights as torchtitan's Llama 3 does, for runs compared with its loss
    /// curves (titan's default is Hugging Face's: every weight N(0, `initializer_range`)):
    /// projections trunc-normal with std 0.02, except each layer's `o_proj`, `up_proj` and
    /// `down_proj`, whose std is 0.02 / √(2·(layer + 1)); the embedding N(0, 1); the output head
    /// trunc-normal with std `hidden_size`^-½ cut at 3 std (a tied embedding takes the head's);
    /// norms 1. Draws from the default generator, as `Llama::new` does.
    pub fn with_torchtitan_init(self) -> Result<Self> {
        let _guard = tch::no_grad_guard();
        let (h, tied) = (self.config.hidden_size, self.config.tie_word_embeddings);
        let head_std = (h as f64).powf(-0.5);
        for (name, mut weight) in self.parameters().named() {
            if name.ends_with("norm.weight") {
                let _ = weight.f_fill_(1.0)?;
                continue;
            }
            let layer = name
                .strip_prefix("model.layers.")
                .and_then(|rest| rest.split('.').next())
                .and_then(|i| i.parse::<u32>().ok());
            let depth_scaled = ["o_proj.weight", "up_proj.weight", "down_proj.weight"]
                .iter()
                .any(|p| name.ends_with(p));
            match (name.as_str(), layer) {
                ("model.embed_tokens.weight", _) if tied => {
                    trunc_normal_(&mut weight, head_std, 3.0 * head_std)?
                }
                ("model.embed_tokens.weight", _) => {
                    let _ = weight.f_normal_(0.0, 1.0)?;
                }
                ("lm_head.weight", _) => trunc_normal_(&mut weight, head_std, 3.0 * head_std)?,
                (_, Some(layer)) if depth_scaled => {
                    let std = 0.02 / (2.0 * (f64::from(layer) + 1.0)).sqrt();
                    trunc_normal_(&mut weight, std, 2.0)?
                }
                _ => trunc_normal_(&mut weight, 0.02, 2.0)?,
            }
        }
        Ok(self)
    }

    /// The former name of [`Llama::with_fused_kernels`], from before it switched CUDA's
    /// RMSNorm too.
    #[deprecated(note = "use `with_fused_kernels`, which also switches CUDA's fused RMSNorm")]
    pub fn with_fused_cpu_kernels(self, on: bool) -> Self {
        self.with_fused_kernels(on)
    }

    /// Training scores a batch's logits at most `logits` (positions × vocabulary) at a time,
    /// when the loss can score a slice of rows ([`crate::Loss::scores_rows`]): the output
    /// projection, the loss and their backward run one slice of positions after another, so
    /// the whole batch's logits and their gradient never exist. Default 2^27; a chunk under
    /// the vocabulary still takes one position at a time. At least 1.
    pub fn with_logits_chunk(mut self, logits: i64) -> Result<Self> {
        if logits < 1 {
            return Err(Error::config("logits chunk", logits, "must be at least 1"));
        }
        self.logits_chunk = logits;
        Ok(self)
    }

    /// Whether blocks are recomputed in backward.
    pub fn activation_checkpointing(&self) -> bool {
        self.checkpoint
    }

    /// Token embeddings in the compute precision.
    fn embed(&self, input_ids: &Tensor) -> Result<Tensor> {
        let table = self.embed_tokens.f_to_kind(self.compute)?;
        Ok(Tensor::f_embedding(&table, input_ids, -1, false, false)?)
    }

    /// Final norm and output projection.
    fn head(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = self.norm.forward(xs, self.fused)?;
        Ok(xs.f_linear::<Tensor>(&self.lm_head.f_to_kind(xs.kind())?, None)?)
    }

    /// The final hidden states (b, t, hidden) for token ids (b, t), before the final norm.
    fn hidden(&self, input_ids: &Tensor) -> Result<Tensor> {
        self.check_len(input_ids)?;
        let attend = Attend::new(&self.rotary, &self.config, input_ids, self.compute)?;
        let mut xs = self.embed(input_ids)?;
        for layer in &self.layers {
            xs = layer.forward(&xs, &attend, self.fused)?;
        }
        Ok(xs)
    }

    /// The head, the loss and their backward from the final hidden states `xs`, into `xs`'s
    /// graph; returns the loss sum (detached) and count. The batch's logits are made whole,
    /// unless they number over [`Llama::with_logits_chunk`]'s and the loss scores rows: then
    /// each slice of positions runs the projection, the loss and their backward on its own
    /// (its logits and their gradient freed before the next), the head weight's gradient is
    /// summed over the slices in f32, and one backward carries both gradients on, so every
    /// parameter receives its gradient once, as from the whole.
    fn head_loss_backward(
        &self,
        xs: &Tensor,
        loss: &mut dyn ScoreLogits,
    ) -> Result<(Tensor, Tensor)> {
        let (b, t, h) = xs.size3()?;
        let (rows, v) = (b * t, self.config.vocab_size);
        if !loss.scores_rows() || rows * v <= self.logits_chunk {
            let (sum, count) = loss.whole(&self.head(xs)?)?;
            sum.f_backward()?;
            return Ok((sum.f_detach()?, count));
        }
        let normed = self.norm.forward(xs, self.fused)?;
        let flat = normed.f_detach()?.f_reshape([rows, h])?;
        // The slices run outside autograd but for the loss: each slice's logits are a leaf
        // whose gradient is returned, not accumulated, and the projection's two products are
        // written out, so no parameter (nor data parallel's hook) sees a slice.
        let weight = self.lm_head.f_to_kind(normed.kind())?.f_detach()?;
        let per = (self.logits_chunk / v).max(1);
        let mut grad_rows = Vec::new();
        let mut grad_weight = Tensor::f_zeros([v, h], (Kind::Float, xs.device()))?;
        let zero = || Tensor::f_zeros([], (Kind::Float, xs.device()));
        let (mut sum, mut count) = (zero()?, zero()?);
        let mut start = 0;
        while start < rows {
            let n = per.min(rows - start);
            let slice = flat.f_narrow(0, start, n)?;
            let logits = slice
                .f_mm(&weight.f_transpose(0, 1)?)?
                .f_requires_grad_(true)?;
            let (s, c) = loss.rows(&LogitRows {
                logits: &logits,
                start,
                batch: b,
                seq_len: t,
            })?;
            let grad_logits = Tensor::f_run_backward(&[&s], &[&logits], false, false)?
                .pop()
                .ok_or_else(|| Error::Training("a logit slice's backward gave nothing".into()))?;
            grad_rows.push(grad_logits.f_mm(&weight)?);
            // The head weight's gradient, summed over the slices in f32: by the product itself
            // where it is f32, else through one product per slice in the compute dtype.
            let grad_t = grad_logits.f_transpose(0, 1)?;
            if grad_logits.kind() == Kind::Float {
                let _ = grad_weight.f_addmm_(&grad_t, &slice)?;
            } else {
                let _ = grad_weight.f_add_(&grad_t.f_mm(&slice)?)?;
            }
            sum = sum.f_add(&s.f_detach()?)?;
            count = count.f_add(&c)?;
            start += n;
        }
        drop((weight, flat));
        let grad = Tensor::f_cat(&grad_rows, 0)?.f_reshape([b, t, h])?;
        drop(grad_rows);
        // The vector-Jacobian products of both: <normed, grad> reaches the final norm and
        // `xs`, <lm_head, grad_weight> the head's weight (a tied embedding's with the rest),
        // as dot products, so no weight-sized product is kept through the backward.
        let grad_weight = grad_weight.f_to_kind(self.lm_head.kind())?;
        let vjp = normed
            .f_reshape([-1])?
            .f_dot(&grad.f_reshape([-1])?)?
            .f_to_kind(Kind::Float)?
            .f_add(
                &self
                    .lm_head
                    .f_reshape([-1])?
                    .f_dot(&grad_weight.f_reshape([-1])?)?
                    .f_to_kind(Kind::Float)?,
            )?;
        drop((grad, grad_weight));
        vjp.f_backward()?;
        Ok((sum, count))
    }

    /// The training pass with per-layer recomputation: blocks run without a graph, keeping
    /// their inputs; the head and the loss run with one; then, last block first, each block is
    /// recomputed with a graph and back-propagated from the gradient of its output.
    fn checkpointed_forward_backward(
        &self,
        input_ids: &Tensor,
        loss: &mut dyn ScoreLogits,
    ) -> Result<(Tensor, Tensor)> {
        self.check_len(input_ids)?;
        let attend = Attend::new(&self.rotary, &self.config, input_ids, self.compute)?;
        let mut inputs = Vec::with_capacity(self.layers.len());
        let top = {
            let _no_grad = tch::no_grad_guard();
            let mut xs = self.embed(input_ids)?;
            for layer in &self.layers {
                let next = layer.forward(&xs, &attend, self.fused)?;
                inputs.push(xs);
                xs = next;
            }
            xs
        };
        let top = top.f_detach()?.f_requires_grad_(true)?;
        let (sum, count) = self.head_loss_backward(&top, loss)?;
        let mut grad = top.f_grad()?;
        for (i, layer) in self.layers.iter().enumerate().rev() {
            // Block 0 recomputes from the embedding, so the embedding's gradient flows too.
            let xs = if i == 0 {
                self.embed(input_ids)?
            } else {
                inputs[i].f_detach()?.f_requires_grad_(true)?
            };
            let ys = layer.forward(&xs, &attend, self.fused)?;
            // Backward of <ys, grad> is the vector-Jacobian product with the incoming gradient.
            ys.f_mul(&grad)?.f_sum(Kind::Float)?.f_backward()?;
            if i > 0 {
                grad = xs.f_grad()?;
            }
        }
        Ok((sum, count))
    }

    fn check_len(&self, input_ids: &Tensor) -> Result<()> {
        let (_, t) = input_ids.size2()?;
        if t == 0 {
            return Err(Error::Mismatch(
                "rows of no token: a sequence needs at least one".into(),
            ));
        }
        if t > self.config.max_position_embeddings {
            return Err(Error::Mismatch(format!(
                "sequence length {t} exceeds the model's max_position_embeddings {}",
                self.config.max_position_embeddings
            )));
        }
        Ok(())
    }

    /// Computes the forward pass in `kind` (`BFloat16` for mixed precision), keeping the f32
    /// parameters as master weights: each weight is cast on use and its gradient arrives in f32.
    /// Norms and the loss still compute in f32.
    pub fn with_compute_kind(mut self, kind: Kind) -> Result<Self> {
        if !matches!(kind, Kind::Float | Kind::BFloat16 | Kind::Half) {
            return Err(Error::config(
                "compute kind",
                format!("{kind:?}"),
                "use Float, BFloat16 or Half",
            ));
        }
        self.compute = kind;
        Ok(self)
    }

    /// The precision the forward pass computes in.
    pub fn compute_kind(&self) -> Kind {
        self.compute
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// Logits (b, t, vocab) for token ids (b, t).
    pub fn logits(&self, input_ids: &Tensor) -> Result<Tensor> {
        self.head(&self.hidden(input_ids)?)
    }

    /// Loads weights from a safetensors file with Hugging Face names (e.g. `model.safetensors`).
    pub fn load_safetensors(&mut self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let path = path.as_ref();
        self.vs
            .load(path)
            .map_err(|e| Error::Mismatch(format!("loading weights from {}: {e}", path.display())))
    }

    /// Saves the weights as safetensors with Hugging Face names.
    pub fn save_safetensors(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        Ok(self.vs.save(path)?)
    }
}

/// Fills `t` in place from N(0, `std`) truncated to ±`bound`, as `torch.nn.init.trunc_normal_`
/// computes it (uniform draws through the inverse normal CDF; its default bound is ±2, not
/// ±2 std), but for one flaw: an f32 uniform draw lands exactly on ±1 about once in 2^24, and
/// the inverse CDF of ±1 is infinite, so torch's gives that weight the bound itself (±2, a
/// hundred std at 0.02: dozens of such weights in a 1B model). Such draws are kept a step
/// inside ±1 (about 5.4 std).
fn trunc_normal_(t: &mut Tensor, std: f64, bound: f64) -> Result<()> {
    // Φ(x) for the bounds, through libtorch's erf (no scalar erf in Rust's std).
    let cdf = |x: f64| -> Result<f64> {
        let erf = Tensor::f_from_slice(&[x / (std * std::f64::consts::SQRT_2)])?
            .f_erf()?
            .f_double_value(&[0])?;
        Ok((1.0 + erf) / 2.0)
    };
    let (low, high) = (cdf(-bound)?, cdf(bound)?);
    let _ = t.f_uniform_(2.0 * low - 1.0, 2.0 * high - 1.0)?;
    normal_from_uniform_(t, std, bound)
}

/// [`trunc_normal_`]'s second half: uniform draws in [-1, 1] in `t` become N(0, `std`) values
/// within ±`bound`, a draw of exactly ±1 kept a step inside.
fn normal_from_uniform_(t: &mut Tensor, std: f64, bound: f64) -> Result<()> {
    // The largest f32 below 1 (2^-24 under it).
    let inside = 1.0 - f64::from(f32::EPSILON) / 2.0;
    let _ = t.f_clamp_(-inside, inside)?;
    let _ = t.f_erfinv_()?;
    let _ = t.f_mul_scalar_(std * std::f64::consts::SQRT_2)?;
    let _ = t.f_clamp_(-bound, bound)?;
    Ok(())
}

/// Llama's parameter groups, by Hugging Face name: norm weights and the token embedding take
/// no weight decay, the projection matrices and an untied `lm_head` do (a tied head is the
/// embedding, so takes none). This is titan's own choice:
/// torchtitan's default AdamW decays every parameter (`model.parameters().regrouped(|_, _|
/// ParamGroup::Decay)` in the optimizer's expression does the same), and nanoGPT and Hugging
/// Face's Trainer exempt the norms but decay the embedding.
fn param_group(name: &str) -> ParamGroup {
    if name.ends_with("norm.weight") || name == "model.embed_tokens.weight" {
        ParamGroup::NoDecay
    } else {
        ParamGroup::Decay
    }
}

/// Its weights are its parameters (saved as such); its rotary tables follow from its config.
impl Stateless for Llama {}

impl Model for Llama {
    type Input = TokenIds;

    fn save_hf(&self, dir: &std::path::Path, tokens: &SpecialTokens) -> Result<()> {
        hf::save(self, dir, tokens)
    }

    fn load_hf(&mut self, dir: &std::path::Path) -> Result<()> {
        hf::load(self, dir)
    }

    fn forward(&self, input: &TokenIds) -> Result<Tensor> {
        self.logits(&input.0)
    }

    fn forward_backward(
        &self,
        input: &TokenIds,
        loss: &mut dyn ScoreLogits,
    ) -> Result<(Tensor, Tensor)> {
        if self.checkpoint {
            self.checkpointed_forward_backward(&input.0, loss)
        } else {
            self.head_loss_backward(&self.hidden(&input.0)?, loss)
        }
    }

    fn parameters(&self) -> Parameters {
        Parameters::grouped(&self.vs, param_group)
    }

    fn device(&self) -> Device {
        self.vs.device()
    }

    fn vocab_size(&self) -> i64 {
        self.config.vocab_size
    }

    fn flops_per_token(&self, seq_len: i64) -> f64 {
        self.config.flops_per_token(seq_len)
    }

    fn max_seq_len(&self) -> i64 {
        self.config.max_position_embeddings
    }
}

impl LlamaConfig {
    /// This configuration with the tokenizer's vocab size in place of the configured one (as
    /// torchtitan sizes its model from the tokenizer), its end-of-sequence id (where it has
    /// one), and positions enough for the tokenizer's max length (a larger configured value is
    /// kept).
    /// A configured value it replaces is said (from rank 0): setting `vocab_size` alone changes
    /// nothing, the tokenizer's size (`bpe.vocab_size`) does.
    pub fn with_tokenizer<T: crate::Tokenizer + ?Sized>(&self, tokenizer: &T) -> Self {
        let sized = Self {
            vocab_size: tokenizer.vocab_size() as i64,
            eos_token_id: tokenizer.eos_id().or(self.eos_token_id),
            max_position_embeddings: self.max_position_embeddings.max(tokenizer.max_len() as i64),
            ..self.clone()
        };
        if crate::dist::speaks() {
            for note in self.replaced_by(&sized) {
                tracing::info!("{note}");
            }
        }
        sized
    }

    /// What `sized` ([`LlamaConfig::with_tokenizer`]'s result) replaced of this configuration,
    /// one sentence each.
    fn replaced_by(&self, sized: &Self) -> Vec<String> {
        let mut notes = Vec::new();
        if sized.vocab_size != self.vocab_size {
            notes.push(format!(
                "model: sized for the tokenizer's {} ids, not the configured vocab_size {} (as \
                 torchtitan's, a Llama takes its vocabulary from the tokenizer, whose settings \
                 size it: bpe.vocab_size)",
                sized.vocab_size, self.vocab_size
            ));
        }
        if sized.max_position_embeddings != self.max_position_embeddings {
            notes.push(format!(
                "model: max_position_embeddings is the tokenizer's max length {}, not the \
                 configured {}",
                sized.max_position_embeddings, self.max_position_embeddings
            ));
        }
        if self.eos_token_id.is_some() && sized.eos_token_id != self.eos_token_id {
            notes.push(format!(
                "model: eos_token_id is the tokenizer's {:?}, not the configured {:?}",
                sized.eos_token_id, self.eos_token_id
            ));
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU: (Kind, Device) = (Kind::Float, Device::Cpu);

    /// What the tokenizer replaces of a configuration is said; what it keeps is not.
    #[test]
    fn with_tokenizer_says_what_it_replaces() {
        let configured = LlamaConfig::tiny();
        assert!(configured.replaced_by(&configured).is_empty());
        let sized = LlamaConfig {
            vocab_size: 4096,
            max_position_embeddings: 1024,
            ..configured.clone()
        };
        let notes = configured.replaced_by(&sized);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].contains("tokenizer's 4096 ids, not the configured vocab_size 2000"),
            "{notes:?}"
        );
        assert!(
            notes[1].contains("max length 1024, not the configured 512"),
            "{notes:?}"
        );
    }

    /// Values that would train NaN or nothing are refused before a weight is made, each named.
    #[test]
    fn out_of_range_settings_are_refused_by_name() {
        let cases = [
            (
                LlamaConfig {
                    num_attention_heads: 3,
                    ..LlamaConfig::tiny()
                },
                "hidden_size",
            ),
            (
                LlamaConfig {
                    rope_theta: 0.0,
                    ..LlamaConfig::tiny()
                },
                "rope_theta",
            ),
            (
                LlamaConfig {
                    rope_theta: f64::NAN,
                    ..LlamaConfig::tiny()
                },
                "rope_theta",
            ),
            (
                LlamaConfig {
                    rms_norm_eps: -1e-6,
                    ..LlamaConfig::tiny()
                },
                "rms_norm_eps",
            ),
            (
                LlamaConfig {
                    initializer_range: 0.0,
                    ..LlamaConfig::tiny()
                },
                "initializer_range",
            ),
            (
                LlamaConfig {
                    eos_token_id: Some(2000),
                    ..LlamaConfig::tiny()
                },
                "eos_token_id",
            ),
            (
                LlamaConfig {
                    rope_theta: 1e39,
                    ..LlamaConfig::tiny()
                },
                "rope_theta",
            ),
            (
                LlamaConfig {
                    max_position_embeddings: 1_000_000_000_000,
                    ..LlamaConfig::tiny()
                },
                "max_position_embeddings",
            ),
        ];
        for (config, key) in cases {
            let err = config.validate().expect_err(key).to_string();
            assert!(err.contains(&format!("`LlamaConfig.{key}`")), "{err}");
        }
        assert!(
            LlamaConfig {
                rms_norm_eps: 0.0,
                ..LlamaConfig::tiny()
            }
            .validate()
            .is_ok()
        );
        // Documents need their end: the tokenizer's, once the model is built.
        let documents = LlamaConfig {
            attn_mask_type: AttnMaskType::BlockCausal,
            ..LlamaConfig::tiny()
        };
        assert!(documents.validate().is_ok());
        let err = Llama::new(documents, Device::Cpu)
            .expect_err("no eos")
            .to_string();
        assert!(
            err.contains("`LlamaConfig.attn_mask_type`") && err.contains("eos_token_id"),
            "{err}"
        );
    }

    /// The count from the shape is the built model's, tied or not, with grouped-query heads.
    #[test]
    fn the_parameter_count_from_the_config_is_the_models() -> Result<()> {
        for tie in [false, true] {
            let config = LlamaConfig {
                tie_word_embeddings: tie,
                num_key_value_heads: 1,
                ..LlamaConfig::tiny()
            };
            let model = Llama::new(config.clone(), Device::Cpu)?;
            assert_eq!(config.num_parameters(), model.parameters().count());
        }
        // Llama 3.2 1B: 1,235,814,400 parameters (its model card's 1.24B).
        assert_eq!(LlamaConfig::llama3_1b().num_parameters(), 1_235_814_400);
        Ok(())
    }

    /// A uniform draw of exactly ±1 (one in 2^24 of f32 draws) is not a weight at the bound
    /// (±2: a hundred std at 0.02, as torch's `trunc_normal_` gives it) but about 5.4 std.
    #[test]
    fn a_draw_at_the_end_of_the_interval_is_no_outlier() -> Result<()> {
        let mut t = Tensor::f_from_slice(&[-1.0f32, 0.0, 1.0])?;
        normal_from_uniform_(&mut t, 0.02, 2.0)?;
        let v = Vec::<f32>::try_from(&t)?;
        assert_eq!(v[1], 0.0);
        for x in [v[0], v[2]] {
            let stds = (x / 0.02).abs();
            assert!((5.0..6.0).contains(&stds), "{x}: {stds} std");
        }
        Ok(())
    }

    /// torchtitan's scheme, weight by weight: the std of each (large enough to measure), the
    /// head's cut at 3 std, norms at 1; tied, the embedding takes the head's.
    #[test]
    fn torchtitan_init_draws_each_weight_as_torchtitan_does() -> Result<()> {
        let config = LlamaConfig {
            hidden_size: 256,
            intermediate_size: 512,
            vocab_size: 1000,
            num_hidden_layers: 3,
            ..LlamaConfig::tiny()
        };
        let stat = |t: &Tensor| -> Result<(f64, f64)> {
            Ok((
                t.f_std(true)?.f_double_value(&[])?,
                t.f_abs()?.f_max()?.f_double_value(&[])?,
            ))
        };
        let near = |got: f64, want: f64| (got / want - 1.0).abs() < 0.05;
        for tie in [false, true] {
            let model = Llama::new(
                LlamaConfig {
                    tie_word_embeddings: tie,
                    ..config.clone()
                },
                Device::Cpu,
            )?
            .with_torchtitan_init()?;
            let head = 256f64.powf(-0.5);
            for (name, t) in model.parameters().named() {
                let (std, max) = stat(&t)?;
                let want = match name.as_str() {
                    n if n.ends_with("norm.weight") => {
                        assert_eq!((std, max), (0.0, 1.0), "{n}");
                        continue;
                    }
                    "model.embed_tokens.weight" if !tie => 1.0,
                    "model.embed_tokens.weight" | "lm_head.weight" => {
                        assert!(max <= 3.0 * head + 1e-6, "{name}: cut at 3 std, max {max}");
                        // A normal cut at ±3 std keeps 97.3% of its std.
                        head * 0.9733
                    }
                    n if n.contains("o_proj")
                        || n.contains("up_proj")
                        || n.contains("down_proj") =>
                    {
                        let layer: f64 = n
                            .split('.')
                            .nth(2)
                            .and_then(|l| l.parse().ok())
                            .unwrap_or(f64::NAN);
                        0.02 / (2.0 * (layer + 1.0)).sqrt()
                    }
                    _ => 0.02,
                };
                assert!(near(std, want), "{name}: std {std}, want {want}");
            }
        }
        Ok(())
    }

    /// torchtitan's count (`get_dense_model_nparams_and_flops`): an untied embedding is a
    /// lookup and costs no FLOPs; a tied one is also the output head's matmul and counts.
    #[test]
    fn flops_per_token_count_a_tied_embedding_as_the_head() {
        let attention = |c: &LlamaConfig, seq: i64| {
            12.0 * (c.num_hidden_layers * c.num_attention_heads * c.head_dim() * seq) as f64
        };
        let tied = LlamaConfig::llama3_1b();
        assert!(tied.tie_word_embeddings);
        let expected = 6.0 * tied.num_parameters() as f64 + attention(&tied, 2048);
        assert_eq!(tied.flops_per_token(2048), expected);
        // 8.22 GFLOP a token, as torchtitan counts Llama 3.2 1B at 2,048 (6.64 without the head).
        assert!((expected / 1e9 - 8.22).abs() < 0.01, "{expected}");
        let untied = LlamaConfig::llama3_125m();
        assert!(!untied.tie_word_embeddings);
        let matmuls = untied.num_parameters() - untied.vocab_size * untied.hidden_size;
        assert_eq!(
            untied.flops_per_token(512),
            6.0 * matmuls as f64 + attention(&untied, 512)
        );
    }

    /// Largest |a - b| relative to the largest |b| (so the scale of the values does not matter).
    fn rel_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
        let diff = a.f_sub(b)?.f_abs()?.f_max()?.f_double_value(&[])?;
        let scale = b.f_abs()?.f_max()?.f_double_value(&[])?;
        Ok(diff / scale.max(1e-12))
    }

    /// An output and the gradients of `inputs`, back-propagating `probe` from the output.
    type Traced = (Tensor, Vec<Tensor>);

    fn trace(
        inputs: &[&Tensor],
        probe: &Tensor,
        f: impl Fn(&[Tensor]) -> Result<Tensor>,
    ) -> Result<Traced> {
        let leaves = inputs
            .iter()
            .map(|t| t.f_detach()?.f_requires_grad_(true))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let out = f(&leaves)?;
        out.f_mul(probe)?.f_sum(Kind::Float)?.f_backward()?;
        let grads = leaves
            .iter()
            .map(Tensor::f_grad)
            .collect::<std::result::Result<_, _>>()?;
        Ok((out.f_detach()?, grads))
    }

    /// Within 1e-5 of the largest value overall, and element by element within `rtol` (plus 1e-6
    /// of the largest value, for elements that cancel to near zero).
    fn close(a: &Tensor, b: &Tensor, rtol: f64) -> Result<bool> {
        let scale = b.f_abs()?.f_max()?.f_double_value(&[])?;
        Ok(rel_diff(a, b)? < 1e-5 && a.f_allclose(b, rtol, 1e-6 * scale, false)?)
    }

    fn assert_close(what: &str, fused: &Traced, composite: &Traced, rtol: f64) -> Result<()> {
        let d = rel_diff(&fused.0, &composite.0)?;
        assert!(
            close(&fused.0, &composite.0, rtol)?,
            "{what}: output differs by {d:e} of the largest"
        );
        for (i, (f, c)) in fused.1.iter().zip(&composite.1).enumerate() {
            let d = rel_diff(f, c)?;
            assert!(
                close(f, c, rtol)?,
                "{what}: gradient of input {i} differs by {d:e} of the largest"
            );
        }
        Ok(())
    }

    /// The kernels split rows across threads only above their grain: the shapes below are
    /// chosen to give several chunks, which only run in parallel with more than one thread.
    fn note_threads() {
        if tch::get_num_threads() < 2 {
            eprintln!("one libtorch thread: the fused kernels' chunks run in turn");
        }
    }

    /// Loss sum, count, slices scored and every parameter's gradient of one training pass.
    type Pass = (f64, f64, usize, Vec<Tensor>);

    fn one_pass(model: &Llama, ids: &Tensor, labels: &crate::batch::HfLabels) -> Result<Pass> {
        let mut scorer = crate::model::testing::BySlices { labels, slices: 0 };
        let (sum, count) = model.forward_backward(&TokenIds(ids.shallow_clone()), &mut scorer)?;
        let grads = model
            .parameters()
            .named()
            .iter()
            .map(|(_, p)| p.f_grad())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let (sum, count) = (sum.f_double_value(&[])?, count.f_double_value(&[])?);
        Ok((sum, count, scorer.slices, grads))
    }

    #[test]
    fn logits_scored_by_slices_give_the_wholes_loss_and_gradients() -> Result<()> {
        slices_match_the_whole(Device::Cpu)?;
        let err = Llama::new(LlamaConfig::tiny(), Device::Cpu)?
            .with_logits_chunk(0)
            .expect_err("an empty chunk")
            .to_string();
        assert!(err.contains("logits chunk") && err.contains('0'), "{err}");
        Ok(())
    }

    #[test]
    fn on_cuda_logit_slices_and_fused_rms_norm_match() -> Result<()> {
        if !tch::Cuda::is_available() {
            eprintln!("no CUDA device: nothing to check");
            return Ok(());
        }
        let device = Device::Cuda(0);
        slices_match_the_whole(device)?;
        // libtorch's CUDA kernel for RMSNorm, forward and backward, against the composite.
        tch::manual_seed(12);
        let weight = Tensor::f_randn([64], (Kind::Float, device))?.f_add_scalar(1.0)?;
        let probe = Tensor::f_randn([4, 33, 64], (Kind::Float, device))?;
        for (kind, tol) in [(Kind::Float, 1e-5), (Kind::BFloat16, 2e-2)] {
            let xs = Tensor::f_randn([4, 33, 64], (Kind::Float, device))?
                .f_mul_scalar(0.05)?
                .f_to_kind(kind)?;
            let run = |fused: bool| {
                trace(&[&xs, &weight], &probe.f_to_kind(kind)?, |t| {
                    let norm = RmsNorm {
                        weight: t[1].shallow_clone(),
                        eps: 1e-3,
                    };
                    let ys = norm.forward(&t[0], fused)?;
                    assert_eq!(ys.kind(), kind);
                    Ok(ys)
                })
            };
            let (fused, composite) = (run(true)?, run(false)?);
            let d = rel_diff(
                &fused.0.f_to_kind(Kind::Float)?,
                &composite.0.f_to_kind(Kind::Float)?,
            )?;
            assert!(d < tol, "{kind:?}: output differs by {d:e}");
            for (i, (f, c)) in fused.1.iter().zip(&composite.1).enumerate() {
                let d = rel_diff(&f.f_to_kind(Kind::Float)?, &c.f_to_kind(Kind::Float)?)?;
                assert!(d < tol, "{kind:?}: gradient {i} differs by {d:e}");
            }
        }
        Ok(())
    }

    /// Llama's loss, count and every gradient with its logits scored by slices, against the
    /// whole, on `device`: f32 tied or not, checkpointed or not, and bf16.
    fn slices_match_the_whole(device: Device) -> Result<()> {
        let (v, b, t) = (50, 3, 7);
        tch::manual_seed(7);
        let ids = Tensor::f_randint(v, [b, t], (Kind::Int64, device))?;
        let labels = crate::batch::HfLabels(ids.copy());
        let _ = labels
            .0
            .f_narrow(1, 4, 2)?
            .f_fill_(crate::batch::IGNORE_INDEX)?;
        for (tied, checkpoint, kind) in [
            (false, false, Kind::Float),
            (true, false, Kind::Float),
            (false, true, Kind::Float),
            (true, true, Kind::Float),
            (true, false, Kind::BFloat16),
        ] {
            let config = crate::model::testing::small_llama(v, tied);
            // One model for every pass (tests share libtorch's generator, so two models built
            // from one seed could differ), its gradients cleared before each.
            let mut model = Some(
                Llama::new(config.clone(), device)?
                    .with_activation_checkpointing(checkpoint)
                    .with_compute_kind(kind)?,
            );
            let mut pass = |chunk: i64| -> Result<Pass> {
                let built = model.take().ok_or(Error::Training("no model".into()))?;
                let built = built.with_logits_chunk(chunk)?;
                for (_, mut p) in built.parameters().named() {
                    p.zero_grad();
                }
                let out = one_pass(&built, &ids, &labels);
                model = Some(built);
                out
            };
            let case = format!("tied {tied}, checkpointing {checkpoint}, {kind:?}");
            let whole = pass(b * t * v)?;
            assert_eq!(
                whole.2, 0,
                "{case}: logits within the chunk are scored whole"
            );
            let tol = if kind == Kind::Float { 1e-5 } else { 2e-2 };
            // 5 positions a slice (21 = 4 x 5 + 1) and one position a slice.
            for (chunk, slices) in [(5 * v, 5), (1, 21)] {
                let sliced = pass(chunk)?;
                assert_eq!(sliced.2, slices, "{case}: slices of {chunk} logits");
                assert!(
                    (sliced.0 - whole.0).abs() <= tol * whole.0.abs(),
                    "{case}: loss {} against {}",
                    sliced.0,
                    whole.0
                );
                assert_eq!(sliced.1, whole.1, "{case}: count");
                for (i, (s, w)) in sliced.3.iter().zip(&whole.3).enumerate() {
                    let d = rel_diff(s, w)?;
                    assert!(d < tol, "{case}: parameter {i}'s gradient differs by {d:e}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn fused_rms_norm_matches_composite() -> Result<()> {
        note_threads();
        tch::manual_seed(1);
        let weight = Tensor::f_randn([96], CPU)?.f_add_scalar(1.0)?;
        // 4,736 rows: 14 chunks of the kernel's 341-row grain.
        let xs = Tensor::f_randn([8, 592, 96], CPU)?.f_mul_scalar(3.0)?;
        let probe = Tensor::f_randn([8, 592, 96], CPU)?;
        let run = |fused: bool| {
            trace(&[&xs, &weight], &probe, |t| {
                let norm = RmsNorm {
                    weight: t[1].shallow_clone(),
                    eps: 1e-6,
                };
                norm.forward(&t[0], fused)
            })
        };
        assert_close("RMSNorm", &run(true)?, &run(false)?, 1e-4)
    }

    #[test]
    fn libtorchs_fused_rms_norm_matches_composite() -> Result<()> {
        // What CUDA runs (at::_fused_rms_norm), called as the CUDA path calls it; on the CPU
        // libtorch computes it with its own composite ops, so this checks the call (shape,
        // weight, eps) and the math, in f32 and in bf16.
        tch::manual_seed(11);
        let weight = Tensor::f_randn([48], CPU)?.f_add_scalar(1.0)?;
        // Small values (mean square 0.0025), so a lost eps of 1e-3 shows.
        let xs = Tensor::f_randn([3, 20, 48], CPU)?.f_mul_scalar(0.05)?;
        let probe = Tensor::f_randn([3, 20, 48], CPU)?;
        let run = |libtorch: bool| {
            trace(&[&xs, &weight], &probe, |t| {
                let norm = RmsNorm {
                    weight: t[1].shallow_clone(),
                    eps: 1e-3,
                };
                if libtorch {
                    norm.libtorch_fused(&t[0])
                } else {
                    norm.forward(&t[0], false)
                }
            })
        };
        assert_close("libtorch RMSNorm", &run(true)?, &run(false)?, 1e-4)?;
        let norm = RmsNorm { weight, eps: 1e-3 };
        let half = xs.f_to_kind(Kind::BFloat16)?;
        let fused = norm.libtorch_fused(&half)?;
        assert_eq!(fused.kind(), Kind::BFloat16);
        let d = rel_diff(&fused.f_to_kind(Kind::Float)?, &norm.forward(&xs, false)?)?;
        assert!(d < 1e-2, "bf16 relative difference {d}");
        Ok(())
    }

    #[test]
    fn fused_rotary_matches_composite_on_a_transposed_view() -> Result<()> {
        tch::manual_seed(2);
        let cfg = LlamaConfig {
            hidden_size: 64,
            num_attention_heads: 2,
            max_position_embeddings: 40,
            ..LlamaConfig::tiny()
        };
        let rotary = Rotary::new(&cfg, Device::Cpu)?;
        // As attention makes it: (b, t, heads, hd) transposed to (b, heads, t, hd).
        let xs = Tensor::f_randn([2, 33, 2, 32], CPU)?.f_transpose(1, 2)?;
        let probe = Tensor::f_randn([2, 2, 33, 32], CPU)?;
        let ids = Tensor::f_zeros([2, 33], (Kind::Int64, Device::Cpu))?;
        let attend = Attend::new(&rotary, &cfg, &ids, Kind::Float)?;
        let run = |fused: bool| trace(&[&xs], &probe, |t| attend.rotate(&t[0], fused));
        assert_close("rotary", &run(true)?, &run(false)?, 1e-4)
    }

    /// `block_causal`: in a row packing two documents (EOS = 1), the second one's logits are
    /// those of the same document alone at the start of a row (its positions restart, and it
    /// sees nothing of the first), and the first one's are plain causal's; with grouped-query
    /// heads, fused CPU kernels or not; and recomputing blocks in backward gives the same
    /// gradients. One model throughout, its settings switched (tests share one generator).
    #[test]
    fn block_causal_attention_keeps_packed_documents_apart() -> Result<()> {
        tch::manual_seed(8);
        let config = LlamaConfig {
            attn_mask_type: AttnMaskType::BlockCausal,
            eos_token_id: Some(1),
            ..crate::model::testing::small_llama(32, false)
        };
        assert!(config.num_key_value_heads < config.num_attention_heads);
        let mut model = Llama::new(config, Device::Cpu)?;
        let row = Tensor::f_from_slice(&[5i64, 9, 7, 1, 4, 6, 8, 3, 2])?.f_view([1, 9])?;
        let second = row.f_narrow(1, 4, 5)?;
        for fused in [true, false] {
            model.fused = fused;
            let packed = model.logits(&row)?;
            let alone = model.logits(&second)?;
            let d = rel_diff(&packed.f_narrow(1, 4, 5)?, &alone)?;
            assert!(
                d < 1e-5,
                "fused {fused}: the second document differs by {d} alone"
            );
            model.config.attn_mask_type = AttnMaskType::Causal;
            let causal = model.logits(&row)?;
            model.config.attn_mask_type = AttnMaskType::BlockCausal;
            let d = rel_diff(&causal.f_narrow(1, 0, 4)?, &packed.f_narrow(1, 0, 4)?)?;
            assert!(d < 1e-5, "fused {fused}: the first document differs by {d}");
            let d = rel_diff(&causal.f_narrow(1, 4, 5)?, &alone)?;
            assert!(d > 1e-3, "causal attention reads across documents: {d}");
        }
        use crate::loss::Loss as _;
        let labels = crate::batch::HfLabels(row.copy());
        let mut grads = Vec::new();
        for checkpoint in [false, true] {
            model.checkpoint = checkpoint;
            for (_, mut p) in model.parameters().named() {
                p.zero_grad();
            }
            let (sum, _) = model
                .forward_backward(&TokenIds(row.shallow_clone()), &mut |l: &Tensor| {
                    crate::loss::CausalLmLoss.loss_sum(l, &labels)
                })?;
            let flat: Vec<Tensor> = model
                .parameters()
                .named()
                .iter()
                .map(|(_, p)| p.grad().f_flatten(0, -1))
                .collect::<std::result::Result<_, _>>()?;
            grads.push((sum.f_double_value(&[])?, Tensor::f_cat(&flat, 0)?));
        }
        assert!(
            (grads[0].0 - grads[1].0).abs() < 1e-5,
            "losses {} and {}",
            grads[0].0,
            grads[1].0
        );
        let d = rel_diff(&grads[0].1, &grads[1].1)?;
        assert!(d < 1e-5, "recomputed blocks' gradients differ by {d}");
        Ok(())
    }

    #[test]
    fn fused_rotary_matches_the_formula_with_unrelated_tables() -> Result<()> {
        note_threads();
        tch::manual_seed(5);
        // Random tables (Llama's repeat their halves, which would hide a swapped index); 4,096
        // rows of 32: 4 chunks of the kernel's 1,024-row grain.
        let (t, d) = (128, 32);
        let cos = Tensor::f_randn([t, d], CPU)?;
        let sin = Tensor::f_randn([t, d], CPU)?;
        let xs = Tensor::f_randn([4, t, 8, d], CPU)?.f_transpose(1, 2)?;
        let probe = Tensor::f_randn([4, 8, t, d], CPU)?;
        let run = |fused: bool| {
            trace(&[&xs], &probe, |x| {
                if fused {
                    return shim::fused_rotary(&x[0], &cos, &sin);
                }
                let (x1, x2) = (
                    x[0].f_narrow(-1, 0, d / 2)?,
                    x[0].f_narrow(-1, d / 2, d / 2)?,
                );
                let rotated = Tensor::f_cat(&[&x2.f_neg()?, &x1], -1)?;
                Ok(x[0].f_mul(&cos)?.f_add(&rotated.f_mul(&sin)?)?)
            })
        };
        assert_close("rotary, random tables", &run(true)?, &run(false)?, 1e-4)
    }

    /// SwiGLU traced through the fused kernel and through libtorch's silu and mul.
    fn swiglu_both(gate: &Tensor, up: &Tensor, probe: &Tensor) -> Result<(Traced, Traced)> {
        let fused = trace(&[gate, up], probe, |t| shim::fused_swiglu(&t[0], &t[1]))?;
        let composite = trace(&[gate, up], probe, |t| Ok(t[0].f_silu()?.f_mul(&t[1])?))?;
        Ok((fused, composite))
    }

    #[test]
    fn fused_swiglu_matches_composite_over_the_whole_sigmoid_range() -> Result<()> {
        tch::manual_seed(3);
        // Gates from -100 to 100 cover both saturated ends of the sigmoid.
        let gate = Tensor::f_linspace(-100.0, 100.0, 3999, CPU)?.f_view([3, 1, 1333])?;
        let up = Tensor::f_randn([3, 1, 1333], CPU)?;
        let probe = Tensor::f_randn([3, 1, 1333], CPU)?;
        let (fused, composite) = swiglu_both(&gate, &up, &probe)?;
        assert_close("SwiGLU, saturated", &fused, &composite, 1e-4)
    }

    #[test]
    fn fused_swiglu_matches_composite_element_by_element() -> Result<()> {
        note_threads();
        tch::manual_seed(6);
        // 393,216 gates over [-12, 12] (12 chunks of 32,768): each value within 2e-6 of
        // libtorch's, so an exponential off by more than that fails.
        let gate = Tensor::f_rand([8, 64, 768], CPU)?
            .f_mul_scalar(24.0)?
            .f_sub_scalar(12.0)?;
        let up = Tensor::f_randn([8, 64, 768], CPU)?;
        let probe = Tensor::f_randn([8, 64, 768], CPU)?;
        let (fused, composite) = swiglu_both(&gate, &up, &probe)?;
        assert_close("SwiGLU", &fused, &composite, 2e-6)
    }

    #[test]
    fn fused_kernels_refuse_a_double_backward() -> Result<()> {
        let x = Tensor::f_randn([4, 8], CPU)?.f_requires_grad_(true)?;
        let w = Tensor::f_ones([8], CPU)?;
        let y = shim::fused_rms_norm(&x, &w, 1e-6)?.f_sum(Kind::Float)?;
        let err = Tensor::f_run_backward(&[&y], &[&x], true, true)
            .expect_err("create_graph")
            .to_string();
        assert!(err.contains("differentiable once"), "{err}");
        Ok(())
    }

    #[test]
    fn fused_model_matches_composite_model() -> Result<()> {
        let cfg = LlamaConfig {
            vocab_size: 50,
            hidden_size: 32,
            intermediate_size: 48,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            max_position_embeddings: 16,
            ..LlamaConfig::tiny()
        };
        let ids = Tensor::f_randint(50, [2, 16], (Kind::Int64, Device::Cpu))?;
        // One model for both runs: tests run in parallel, so a second seeded build could differ.
        let mut model = Some(Llama::new(cfg, Device::Cpu)?);
        let mut run = |fused: bool| -> Result<Traced> {
            let m = model
                .take()
                .ok_or_else(|| Error::Mismatch("no model".into()))?
                .with_fused_kernels(fused);
            let logits = m.logits(&ids)?;
            logits
                .f_logsumexp([-1], false)?
                .f_mean(Kind::Float)?
                .f_backward()?;
            let mut grads = Vec::new();
            for (_, p) in m.parameters().named() {
                let mut g = p.f_grad()?;
                grads.push(g.f_detach_copy()?);
                let _zeroed = g.f_zero_()?;
            }
            model = Some(m);
            Ok((logits.f_detach()?, grads))
        };
        let fused = run(true)?;
        assert_close("Llama", &fused, &run(false)?, 1e-3)
    }

    #[test]
    fn fused_kernels_refuse_what_they_do_not_handle() -> Result<()> {
        let half = Tensor::f_ones([2, 4], (Kind::Half, Device::Cpu))?;
        let err = shim::fused_swiglu(&half, &half)
            .expect_err("f16")
            .to_string();
        assert!(err.contains("float32"), "{err}");
        let x = Tensor::f_ones([2, 4], CPU)?;
        let err = shim::fused_rotary(&x, &x, &x).expect_err("2-d").to_string();
        assert!(err.contains("(batch, heads, seq, head_dim)"), "{err}");
        let w = Tensor::f_ones([3], CPU)?;
        let err = shim::fused_rms_norm(&x, &w, 1e-6)
            .expect_err("width")
            .to_string();
        assert!(err.contains("3 elements for width 4"), "{err}");
        Ok(())
    }
}
