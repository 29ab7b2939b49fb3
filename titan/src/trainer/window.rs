//! The metrics window: counters between two log points, turned into a step record there.

use std::time::{Duration, Instant};

use crate::metrics::StepMetrics;
use crate::shim::DeviceMemory;

/// The model's FLOPs per token and the device's peak FLOP/s.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flops {
    pub per_token: f64,
    /// One device's peak FLOP/s.
    pub peak: Option<f64>,
    /// The devices the window's tokens were counted over (its data-parallel ranks).
    pub devices: f64,
}

fn gib(bytes: i64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

/// The values read back at a log point.
pub(crate) struct Reading {
    pub step: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
}

/// Counters between two log points.
pub(crate) struct Window {
    since: Instant,
    pub steps: u64,
    pub tokens: i64,
    pub data_wait: Duration,
}

impl Window {
    pub fn new() -> Self {
        Self {
            since: Instant::now(),
            steps: 0,
            tokens: 0,
            data_wait: Duration::ZERO,
        }
    }

    pub fn restart(&mut self) {
        *self = Self::new();
    }

    pub fn finish(
        &mut self,
        reading: Reading,
        epoch: u64,
        flops: Flops,
        memory: Option<DeviceMemory>,
    ) -> StepMetrics {
        let Reading {
            step,
            loss,
            lr,
            grad_norm,
        } = reading;
        let secs = self.since.elapsed().as_secs_f64().max(1e-9);
        let steps = self.steps.max(1) as f64;
        // Per device, as torchtitan's `tps`: every rank's tokens over the ranks.
        let tps = self.tokens as f64 / secs / flops.devices.max(1.0);
        let tflops = tps * flops.per_token / 1e12;
        let m = StepMetrics {
            step,
            loss,
            lr,
            grad_norm,
            tps,
            tflops,
            mfu: flops.peak.map(|peak| 100.0 * tflops * 1e12 / peak),
            max_rss_gib: crate::metrics::max_rss_gib(),
            max_reserved_gib: memory.map(|m| gib(m.max_reserved)),
            max_allocated_gib: memory.map(|m| gib(m.max_allocated)),
            step_time_s: secs / steps,
            data_wait_s: self.data_wait.as_secs_f64() / steps,
            epoch,
            skipped_steps: 0,
        };
        self.restart();
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every rank's tokens are counted, and throughput is reported per device (torchtitan's
    /// `tps`), so MFU is against one device's peak: 2 ranks of 600 tokens read as 600 per device.
    #[test]
    fn throughput_is_per_device_over_every_rank() {
        let mut window = Window::new();
        window.steps = 3;
        window.tokens = 1200;
        std::thread::sleep(Duration::from_millis(5));
        let reading = Reading {
            step: 3,
            loss: 1.0,
            lr: 1e-3,
            grad_norm: 0.5,
        };
        let flops = Flops {
            per_token: 1e6,
            peak: Some(1e12),
            devices: 2.0,
        };
        let m = window.finish(reading, 0, flops, None);
        let secs = m.step_time_s * 3.0;
        assert!(
            (m.tps * secs - 600.0).abs() < 1e-6,
            "{} tokens",
            m.tps * secs
        );
        assert!((m.tflops - m.tps * 1e6 / 1e12).abs() < 1e-12);
        let mfu = m.mfu.expect("a peak was given");
        assert!((mfu - 100.0 * m.tps * 1e6 / 1e12).abs() < 1e-9);
        assert_eq!(window.tokens, 0, "the window restarts");
    }
}
