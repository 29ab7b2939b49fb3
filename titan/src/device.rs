//! Device selection (CUDA when present, else CPU) and seeding.

use tch::Device;

use crate::{Error, Result};

/// Parses `training.device`: `cpu`, `cuda` or `cuda:N`; `None` or `auto` picks CUDA when
/// libtorch sees a GPU, else CPU.
pub fn select(requested: Option<&str>) -> Result<Device> {
    let device = match requested.map(str::trim) {
        None | Some("auto") => return Ok(Device::cuda_if_available()),
        Some("cpu") => Device::Cpu,
        Some("cuda") => Device::Cuda(0),
        Some(other) => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(i)) => Device::Cuda(i),
            _ => {
                return Err(Error::config(
                    "training.device",
                    other,
                    "expected `cpu`, `cuda`, `cuda:N` or `auto`",
                ));
            }
        },
    };
    if let Device::Cuda(i) = device {
        let count = tch::Cuda::device_count();
        if (i as i64) >= count {
            return Err(Error::config(
                "training.device",
                format!("cuda:{i}"),
                format!(
                    "libtorch sees {count} CUDA device(s) here (cuda:0 is the first); `auto` \
                     takes the GPU when there is one, the CPU otherwise"
                ),
            ));
        }
    }
    Ok(device)
}

/// Seeds libtorch's generators (CPU and CUDA) so initialisation and sampling repeat.
pub fn seed_everything(seed: u64) {
    tch::manual_seed(seed as i64);
}

/// Waits for queued CUDA work, so wall-clock timings are real; a no-op on CPU.
pub fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_rejects_others() -> Result<()> {
        assert_eq!(select(Some("cpu"))?, Device::Cpu);
        let err = select(Some("tpu")).expect_err("tpu").to_string();
        assert!(err.contains("tpu") && err.contains("device"), "{err}");
        Ok(())
    }
}
