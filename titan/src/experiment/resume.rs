//! Whether a checkpoint fits the run that would resume from it: the configuration it was
//! written with (`config.toml`), key by key, against the run's, except the keys a resumed run
//! may change (its length, cadence, output and device). A model of another shape, another
//! tokenizer or other data is refused by name, before anything is loaded.

use serde_json::Value;

use super::ConfigSet;
use super::config::same_value;
use crate::checkpoint::Checkpoint;
use crate::{Error, Result};

/// Keys of the `training` section a resumed run may change.
const TRAINING_MAY_CHANGE: &[&str] = &[
    "steps",
    "log_every",
    "eval_every",
    "eval_batches",
    "checkpoint_every",
    "keep_checkpoints",
    "resume_from",
    "init_from_hf",
    "output_dir",
    "device",
    "cuda_graph",
    "peak_flops",
    "samples",
    "prompt",
    "val_data",
    "activation_checkpointing",
];

/// Keys of any section a resumed run may change: a schedule's length follows `training.steps`,
/// and how far the loader reads ahead changes no batch.
const ANY_MAY_CHANGE: &[&str] = &["total_steps", "warmup_steps", "prefetch"];

/// The checkpoint's configuration file.
pub(crate) const CONFIG_FILE: &str = "config.toml";

/// Refuses `checkpoint` when its configuration differs from `run`'s in a key that must stay,
/// naming the key and both values. A checkpoint without a configuration is checked by its
/// weights alone (when they are loaded).
pub(crate) fn check_config_fits(checkpoint: &Checkpoint, run: &ConfigSet<'_>) -> Result<()> {
    if checkpoint.manifest().file(CONFIG_FILE).is_none() {
        return Ok(());
    }
    let text = String::from_utf8(checkpoint.read(CONFIG_FILE)?).map_err(|_| {
        Error::Checkpoint(format!(
            "{}: {CONFIG_FILE} is not UTF-8",
            checkpoint.dir().display()
        ))
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        Error::Checkpoint(format!(
            "{}: {CONFIG_FILE} is not valid TOML: {e}",
            checkpoint.dir().display()
        ))
    })?;
    let saved = serde_json::to_value(table)?;
    let mut differences = Vec::new();
    diff(
        &saved,
        &run.tree(),
        &mut Vec::new(),
        run.training_section(),
        &mut differences,
    );
    let Some((key, was, is)) = differences.into_iter().next() else {
        return Ok(());
    };
    Err(Error::Checkpoint(format!(
        "{} does not fit this run: `{key}` is {was} there and {is} here; use another \
         --output-dir for this run (or --resume-from a checkpoint that fits)",
        checkpoint.dir().display()
    )))
}

/// Every leaf where `saved` and `run` differ, as (key, saved value, run value); a key absent
/// on one side is unset there.
fn diff(
    saved: &Value,
    run: &Value,
    path: &mut Vec<String>,
    training: Option<&str>,
    out: &mut Vec<(String, String, String)>,
) {
    if may_change(path, training) {
        return;
    }
    match (saved, run) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort_unstable();
            keys.dedup();
            for key in keys {
                path.push(key.clone());
                let (x, y) = (
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                );
                diff(x, y, path, training, out);
                path.pop();
            }
        }
        (a, b) if same_value(a, b) => {}
        (a, b) => out.push((path.join("."), shown(a), shown(b))),
    }
}

fn may_change(path: &[String], training: Option<&str>) -> bool {
    match path {
        [section, key] if Some(section.as_str()) == training => {
            TRAINING_MAY_CHANGE.contains(&key.as_str())
        }
        [_, .., key] => ANY_MAY_CHANGE.contains(&key.as_str()),
        _ => false,
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::Null => "unset".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_keys_that_must_stay_count() {
        let saved = serde_json::json!({
            "training": {"steps": 6, "seed": 0, "data": "a.txt"},
            "llama": {"hidden_size": 256},
            "schedule": {"total_steps": 6},
        });
        let mut run = saved.clone();
        run["training"]["steps"] = 8.into();
        run["schedule"]["total_steps"] = 8.into();
        let mut out = Vec::new();
        diff(&saved, &run, &mut Vec::new(), Some("training"), &mut out);
        assert!(out.is_empty(), "{out:?}");
        run["llama"]["hidden_size"] = 512.into();
        run["training"]["data"] = Value::Null;
        diff(&saved, &run, &mut Vec::new(), Some("training"), &mut out);
        assert_eq!(
            out,
            [
                ("llama.hidden_size".into(), "256".into(), "512".into()),
                ("training.data".into(), "\"a.txt\"".into(), "unset".into()),
            ]
        );
    }
}
