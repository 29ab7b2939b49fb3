//! FLOPs and memory for the step metrics: PaLM's count of a transformer's FLOPs per token,
//! torchtitan's table of peak FLOP/s, and the process's peak resident memory.

use tch::Device;

/// Peak dense bf16 FLOP/s by GPU model name (torchtitan's table); more specific names first.
pub const PEAK_FLOPS: &[(&str, f64)] = &[
    ("H100 NVL", 835e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("GH200", 989e12),
    ("B200", 2.25e15),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("MI300X", 1300e12),
    ("MI325X", 1300e12),
    ("MI355X", 2500e12),
];

/// Training FLOPs per token (forward and backward) of a decoder-only transformer, PaLM's
/// count: `6·(N − N_embedding) + 12·layers·heads·head_dim·seq_len`.
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
    let name = gpu_name(index)?;
    PEAK_FLOPS
        .iter()
        .find(|(model, _)| name.contains(model))
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
        let h100 = PEAK_FLOPS
            .iter()
            .find(|(n, _)| "NVIDIA H100 80GB HBM3".contains(n));
        assert_eq!(h100.map(|p| p.1), Some(989e12));
        assert!(max_rss_gib() > 0.0);
    }
}
