//! TensorBoard event files: the `tfevents` record format (length, masked CRC32C, payload,
//! masked CRC32C) around `tensorflow.Event` protobufs with scalar summaries, encoded with
//! `prost`. Tags follow torchtitan's.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

use super::{MetricsSink, Record};
use crate::{Error, Result};

/// `tensorflow.Event`, the fields titan writes.
#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5, 6")]
    what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
    #[prost(message, tag = "6")]
    SessionLog(SessionLog),
}

/// `tensorflow.SessionLog`: titan writes only `START` (status 1), which tells TensorBoard to
/// drop the events of earlier files at or after its step (a resumed run's "purge step").
#[derive(Clone, PartialEq, prost::Message)]
struct SessionLog {
    #[prost(int32, tag = "1")]
    status: i32,
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value` holding a `simple_value`.
#[derive(Clone, PartialEq, prost::Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    /// A oneof in TensorFlow's schema, so a zero is still written (a plain proto3 field would
    /// drop it, and TensorBoard would then skip the value).
    #[prost(oneof = "Value", tags = "2")]
    value: Option<Value>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Value {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
}

fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Writes scalars to `DIR/events.out.tfevents.<time>.<host>`, which `tensorboard --logdir DIR`
/// reads. Records are flushed as written, so a crashed run keeps what it logged.
#[derive(Debug)]
pub struct TensorBoardSink {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl TensorBoardSink {
    /// Creates a new event file in `dir` (created if missing).
    pub fn create(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "titan".into());
        // A name of its own (as torch's: time, host, process, count), never an earlier file's:
        // a run restarted within the same second must not truncate its predecessor's.
        let pid = std::process::id();
        let (path, file) = (0..)
            .map(|n| dir.join(format!("events.out.tfevents.{secs}.{host}.{pid}.{n}")))
            .find_map(|path| {
                match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                {
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => None,
                    opened => Some((path, opened)),
                }
            })
            .unwrap_or_else(|| unreachable!("some numbered name is free"));
        let file = file.map_err(|e| Error::io(&path, e))?;
        let mut sink = Self {
            path,
            file: std::io::BufWriter::new(file),
        };
        sink.write_event(&Event {
            wall_time: now(),
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        })?;
        Ok(sink)
    }

    /// The event file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_event(&mut self, event: &Event) -> Result<()> {
        let data = event.encode_to_vec();
        let len = (data.len() as u64).to_le_bytes();
        let mut record = Vec::with_capacity(data.len() + 16);
        record.extend_from_slice(&len);
        record.extend_from_slice(&masked_crc(&len).to_le_bytes());
        record.extend_from_slice(&data);
        record.extend_from_slice(&masked_crc(&data).to_le_bytes());
        self.file
            .write_all(&record)
            .and_then(|()| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }

    fn scalars(&mut self, step: u64, values: &[(&str, f64)]) -> Result<()> {
        let value = values
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|&(tag, v)| SummaryValue {
                tag: tag.to_string(),
                value: Some(Value::SimpleValue(v as f32)),
            })
            .collect();
        self.write_event(&Event {
            wall_time: now(),
            step: step as i64,
            what: Some(What::Summary(Summary { value })),
        })
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl MetricsSink for TensorBoardSink {
    /// As torch's `SummaryWriter(purge_step=…)`: a session start at the step after the
    /// checkpoint, so TensorBoard drops the earlier files' points from there on (the stopped
    /// run's steps after its checkpoint, which the resumed run logs again).
    fn resumed(&mut self, step: u64) -> Result<()> {
        self.write_event(&Event {
            wall_time: now(),
            step: step as i64 + 1,
            what: Some(What::SessionLog(SessionLog { status: 1 })),
        })
    }

    fn record(&mut self, record: &Record) -> Result<()> {
        match record {
            Record::Step(m) => {
                let mut values = vec![
                    ("loss_metrics/global_avg_loss", m.loss),
                    ("grad_norm", m.grad_norm),
                    ("lr", m.lr),
                    ("throughput(tps)", m.tps),
                    ("tflops", m.tflops),
                    ("memory/max_rss(GiB)", m.max_rss_gib),
                    ("time_metrics/end_to_end(s)", m.step_time_s),
                    ("time_metrics/data_loading(s)", m.data_wait_s),
                    (
                        "time_metrics/data_loading(%)",
                        100.0 * m.data_wait_s / m.step_time_s.max(1e-12),
                    ),
                    ("epoch", m.epoch as f64),
                ];
                if let Some(mfu) = m.mfu {
                    values.push(("mfu(%)", mfu));
                }
                if let Some(gib) = m.max_reserved_gib {
                    values.push(("memory/max_reserved(GiB)", gib));
                }
                if let Some(gib) = m.max_allocated_gib {
                    values.push(("memory/max_allocated(GiB)", gib));
                }
                self.scalars(m.step, &values)
            }
            Record::Eval(m) => self.scalars(
                m.step,
                &[
                    ("validation_metrics/loss", m.val_loss),
                    ("validation_metrics/perplexity", m.val_perplexity),
                ],
            ),
        }
    }
}

/// Reads the scalars of an event file back as `(step, tag, value)`, checking every record's
/// checksums; a damaged file is an error naming it and the byte offset.
pub fn read_events(path: &Path) -> Result<Vec<(i64, String, f32)>> {
    let mut out = Vec::new();
    for event in read_records(path)? {
        if let Some(What::Summary(summary)) = event.what {
            for v in summary.value {
                if let Some(Value::SimpleValue(x)) = v.value {
                    out.push((event.step, v.tag, x));
                }
            }
        }
    }
    Ok(out)
}

/// The steps of an event file's session starts: where TensorBoard drops earlier files' points
/// from ([`MetricsSink::resumed`]).
pub fn read_purge_steps(path: &Path) -> Result<Vec<i64>> {
    Ok(read_records(path)?
        .into_iter()
        .filter(|e| matches!(e.what, Some(What::SessionLog(SessionLog { status: 1 }))))
        .map(|e| e.step)
        .collect())
}

fn read_records(path: &Path) -> Result<Vec<Event>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |offset: usize, what: &str| {
        Error::Data(format!(
            "{}: {what} at byte offset {offset}",
            path.display()
        ))
    };
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let header = bytes
            .get(at..at + 12)
            .ok_or_else(|| bad(at, "truncated record header"))?;
        let (len, crc) = header.split_at(8);
        if masked_crc(len).to_le_bytes() != crc {
            return Err(bad(at, "length checksum mismatch"));
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(len);
        let n = u64::from_le_bytes(n) as usize;
        let data = bytes
            .get(at + 12..at + 12 + n)
            .ok_or_else(|| bad(at, "truncated record"))?;
        let crc = bytes
            .get(at + 12 + n..at + 16 + n)
            .ok_or_else(|| bad(at, "truncated record checksum"))?;
        if masked_crc(data).to_le_bytes() != crc {
            return Err(bad(at, "data checksum mismatch"));
        }
        let event = Event::decode(data).map_err(|e| bad(at, &format!("not an Event: {e}")))?;
        out.push(event);
        at += 16 + n;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{EvalMetrics, StepMetrics};

    #[test]
    fn events_round_trip_with_checksums() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let mut sink = TensorBoardSink::create(dir.path().join("tb"))?;
        sink.record(&Record::Step(StepMetrics {
            step: 10,
            loss: 2.5,
            lr: 1e-3,
            grad_norm: 0.75,
            tps: 1000.0,
            tflops: 0.25,
            mfu: Some(12.5),
            max_rss_gib: 1.5,
            max_reserved_gib: Some(3.0),
            max_allocated_gib: Some(2.5),
            step_time_s: 0.5,
            data_wait_s: 0.005,
            epoch: 0,
            skipped_steps: 0,
        }))?;
        sink.record(&Record::Eval(EvalMetrics {
            step: 10,
            val_loss: 2.0,
            val_perplexity: 2f64.exp(),
            val_tokens: 100.0,
        }))?;
        let path = sink.path().to_path_buf();
        drop(sink);
        assert!(
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().contains("tfevents"))
        );
        let events = read_events(&path)?;
        let get = |tag: &str| events.iter().find(|e| e.1 == tag).map(|e| (e.0, e.2));
        assert_eq!(get("loss_metrics/global_avg_loss"), Some((10, 2.5)));
        assert_eq!(get("mfu(%)"), Some((10, 12.5)));
        assert_eq!(get("memory/max_reserved(GiB)"), Some((10, 3.0)));
        assert_eq!(get("memory/max_allocated(GiB)"), Some((10, 2.5)));
        assert_eq!(get("epoch"), Some((10, 0.0)), "zeros are written too");
        assert_eq!(get("validation_metrics/loss"), Some((10, 2.0)));

        let mut bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let last = bytes.len() - 6;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).map_err(|e| Error::io(&path, e))?;
        let err = read_events(&path).expect_err("damaged").to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
        Ok(())
    }

    /// A resumed run's file starts a session at the step after its checkpoint; files made in
    /// the same second by one process never replace each other.
    #[test]
    fn a_resumed_file_purges_from_the_next_step_and_names_never_collide() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let first = TensorBoardSink::create(dir.path())?;
        let mut resumed = TensorBoardSink::create(dir.path())?;
        resumed.resumed(300)?;
        assert_ne!(first.path(), resumed.path());
        assert_eq!(read_purge_steps(first.path())?, Vec::<i64>::new());
        assert_eq!(read_purge_steps(resumed.path())?, [301]);
        assert!(read_events(resumed.path())?.is_empty());
        let files = std::fs::read_dir(dir.path())
            .map_err(|e| Error::io(dir.path(), e))?
            .count();
        assert_eq!(files, 2);
        Ok(())
    }
}
