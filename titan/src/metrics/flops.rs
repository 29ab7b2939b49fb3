//! FLOPs and memory for the step metrics: PaLM's count of a transformer's FLOPs per token,
//! torchtitan's table of peak FLOP/s, and the process's peak resident memory.

use tch::Device;

/// Peak dense bf16 FLOP/s by GPU model name (torchtitan's `get_peak_flops`), tried in order:
/// the first name the model's name contains wins, so more specific names come first.
pub const PEAK_FLOPS: &[(&str, f64)] = &[
    ("A100", 312e12),
    ("A6000", 154.85e12),
    ("H100 NVL", 835e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("H20", 148e12),
    ("GB200", 2.5e15),
    ("GB300", 2.5e15),
    ("B200", 2.25e15),
    ("B300", 2.25e15),
    ("L40S", 362e12),
    ("MI355X", 2500e12),
    ("MI300X", 1300e12),
    ("MI325X", 1300e12),
    ("MI250X", 191.5e12),
];

/// Training FLOPs per token (forward and backward) of a decoder-only transformer, PaLM's
/// count as torchtitan makes it: `6·(N − N_embedding) + 12·layers·heads·head_dim·seq_len`,
/// where `embedding_params` are the parameters no matmul uses: an untied input embedding, but
/// 0 when the embedding is tied to the output head, whose matmul uses it.
pub fn palm_flops_per_token(
    params: i64,
    embedding_params: i64,
    layers: i64,
    heads: i64,
    head_dim: i64,
    seq_len: i64,
) -> f64 {
    6.0 * (params - embedding_params) as f64
        + 12.0 * (layers * heads * head_dim) as f64 * seq_len as f64
}

/// The peak FLOP/s MFU is measured against: `configured` when given (`--peak-flops`), else
/// the GPU's entry in [`PEAK_FLOPS`]; `None` on CPU or for an unknown GPU.
pub fn peak_flops(device: Device, configured: Option<f64>) -> Option<f64> {
    if configured.is_some() {
        return configured;
    }
    let Device::Cuda(index) = device else {
        return None;
    };
    peak_flops_of(&gpu_name(index)?)
}

/// The entry of [`PEAK_FLOPS`] for a GPU model name; `None` for a model not in the table.
pub fn peak_flops_of(model_name: &str) -> Option<f64> {
    PEAK_FLOPS
        .iter()
        .find(|(model, _)| model_name.contains(model))
        .map(|&(_, flops)| flops)
}

/// The NVIDIA driver's model name of GPU `index` (in the driver's bus order).
fn gpu_name(index: usize) -> Option<String> {
    let mut dirs: Vec<_> = std::fs::read_dir("/proc/driver/nvidia/gpus")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    dirs.sort();
    let info = std::fs::read_to_string(dirs.get(index)?.join("information")).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("Model:"))
        .map(|m| m.trim().to_string())
}

/// Peak resident memory of this process in GiB (`VmHWM`; 0 where `/proc` is absent).
pub fn max_rss_gib() -> f64 {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return 0.0;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palm_count_and_peak_table() {
        // 6·(1000 − 200) + 12·2·4·8·16 = 4800 + 12288.
        assert_eq!(palm_flops_per_token(1000, 200, 2, 4, 8, 16), 17_088.0);
        assert_eq!(peak_flops(Device::Cpu, None), None);
        assert_eq!(peak_flops(Device::Cpu, Some(1e12)), Some(1e12));
        // Names as the NVIDIA driver reports them; a name inside another resolves to its own.
        for (name, flops) in [
            ("NVIDIA H100 80GB HBM3", Some(989e12)),
            ("NVIDIA H100 NVL", Some(835e12)),
            ("NVIDIA H100 PCIe", Some(756e12)),
            ("NVIDIA H200", Some(989e12)),
            ("NVIDIA GH200 480GB", Some(989e12)),
            ("NVIDIA H20", Some(148e12)),
            ("NVIDIA GB200", Some(2.5e15)),
            ("NVIDIA B200", Some(2.25e15)),
            ("NVIDIA A100-SXM4-80GB", Some(312e12)),
            ("NVIDIA GeForce RTX 4090", None),
        ] {
            assert_eq!(peak_flops_of(name), flops, "{name}");
        }
        assert!(max_rss_gib() > 0.0);
    }
}
