//! The one error type of the library: each variant carries the bad value and where it came from.

use std::path::PathBuf;

/// Everything that can go wrong in titan's library code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A libtorch call failed (shown without the C++ backtrace libtorch appends).
    #[error("libtorch: {}", without_cpp_frames(.0))]
    Torch(#[from] tch::TchError),
    /// An I/O operation on a named path failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A configuration value is out of range or inconsistent with another.
    #[error("invalid config `{field}` = {value}: {reason}")]
    Config {
        /// The field, in `section.name` form.
        field: String,
        /// The offending value as written.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// The command line is not valid (an unknown flag, a flag without its value…).
    #[error("{0}")]
    Usage(String),
    /// Two components disagree (tokenizer vocab vs model vocab, seq_len vs max positions…).
    #[error("{0}")]
    Mismatch(String),
    /// The tokenizer failed to train, load, encode or decode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Input data is unusable (empty, not UTF-8, too short…).
    #[error("data: {0}")]
    Data(String),
    /// A component cannot do what was asked of it (e.g. a model with no Hugging Face form).
    #[error("{0}")]
    Unsupported(String),
    /// A checkpoint is missing, incomplete, corrupt or from another run.
    #[error("checkpoint {0}")]
    Checkpoint(String),
    /// The process group between the ranks failed (a timeout, a setting).
    #[error("distributed: {0}")]
    Distributed(String),
    /// Another rank stopped, named in the message with its error where it said it.
    #[error("distributed: {0}")]
    PeerStopped(String),
    /// Training diverged or produced a non-finite value.
    #[error("training: {0}")]
    Training(String),
    /// The run stopped on a signal (SIGTERM, SIGINT), after its checkpoint of that step.
    #[error("{0}")]
    Stopped(String),
    /// Building an experiment field failed (its `#[build]` or `#[config]` expression).
    #[error("building `{field}`: {source}")]
    Field {
        /// The experiment field.
        field: &'static str,
        /// What went wrong.
        source: Box<Error>,
    },
    /// An experiment's expression failed with an error of its own (not titan's).
    #[error("{0}")]
    Build(Box<dyn std::error::Error + Send + Sync>),
    /// Writing metrics or other JSON failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// `Result` with titan's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A configuration error naming the field, its value and the reason.
    pub fn config(field: &str, value: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        Error::Config {
            field: field.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// A data error for a background thread (`what`) that panicked, with the panic's message.
    pub fn thread_panicked(what: &str, panic: &(dyn std::any::Any + Send)) -> Self {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Error::Data(format!("{what} panicked: {message}"))
    }
}

/// libtorch's message without the C++ backtrace it appends (`Exception raised from …` and its
/// `frame #N: …` lines): what failed and why, not where inside libtorch.
fn without_cpp_frames(e: &tch::TchError) -> String {
    let text = e.to_string();
    let kept: Vec<&str> = text
        .lines()
        .take_while(|l| {
            !l.starts_with("Exception raised from") && !l.trim_start().starts_with("frame #")
        })
        .collect();
    kept.join("\n").trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What failed and why stay; libtorch's C++ frames go.
    #[test]
    fn libtorchs_cpp_backtrace_is_left_out() {
        let raw = "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate \
                   memory: you tried to allocate 400 bytes.\nException raised from alloc_cpu \
                   at alloc_cpu.cpp:127 (most recent call first):\nframe #0: \
                   c10::ThrowEnforceNotMet(char const*) + 0x40\nframe #1: at::empty + 0x2";
        let shown = Error::Torch(tch::TchError::Torch(raw.into())).to_string();
        assert!(
            shown.ends_with("you tried to allocate 400 bytes."),
            "{shown}"
        );
        assert!(shown.starts_with("libtorch: "), "{shown}");
        let plain = Error::Torch(tch::TchError::Torch("shape mismatch\nsecond line".into()));
        assert!(
            plain.to_string().ends_with("shape mismatch\nsecond line"),
            "{plain}"
        );
    }
}
