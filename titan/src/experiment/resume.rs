//! Whether a checkpoint fits the run that would resume from it: the configuration it was
//! written with (`config.toml`), key by key, against the run's, except the keys a resumed run
//! may change (its length, cadence, output and device). A model of another shape, another
//! tokenizer or other data is refused by name, before anything is loaded.

use super::ConfigSet;
use crate::checkpoint::Checkpoint;
use crate::diff::differences;
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
    "max_skipped_steps",
    "output_dir",
    "device",
    "cuda_graph",
    "tf32",
    "peak_flops",
    "samples",
    "prompt",
    "val_data",
    "activation_checkpointing",
];

/// Keys of any section a resumed run may change: a schedule's length follows `training.steps`;
/// how far the loader reads ahead changes no batch, nor does reading the files' token shards
/// (positions carry over from text to shards).
const ANY_MAY_CHANGE: &[&str] = &[
    "total_steps",
    "warmup_steps",
    "prefetch",
    "timeout_s",
    "pretokenize",
    "tokens_dir",
];

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
    let (new_sections, found) = compare(&saved, &run.tree(), run.training_section());
    for section in &new_sections {
        tracing::warn!(
            "{}: its configuration has no [{section}] section; the run's is taken as it is",
            checkpoint.dir().display()
        );
    }
    let Some(first) = found.first() else {
        schedule_changes(checkpoint, &saved, &run.tree());
        return Ok(());
    };
    Err(Error::Checkpoint(format!(
        "{} does not fit this run: {first}; use another --output-dir for this run (or \
         --resume-from a checkpoint that fits)",
        checkpoint.dir().display()
    )))
}

/// A resumed run whose LR schedule's length changed (`--steps` moves `total_steps`, and with it
/// a warmup sized from it) goes on from the checkpoint's step on the new schedule, where the
/// rate may jump: said, naming each change.
fn schedule_changes(checkpoint: &Checkpoint, saved: &serde_json::Value, run: &serde_json::Value) {
    let changed = differences(saved, run, &|path| {
        path.len() >= 2
            && !path
                .last()
                .is_some_and(|key| key == "total_steps" || key == "warmup_steps")
    });
    if changed.is_empty() {
        return;
    }
    let what: Vec<String> = changed
        .iter()
        .map(|d| format!("`{}` {} → {}", d.key, d.was, d.is))
        .collect();
    tracing::warn!(
        "the LR schedule changes on resume from step {} ({}): from here the rate follows the new \
         schedule, and may jump from the one the checkpoint's last step trained at",
        checkpoint.step(),
        what.join(", ")
    );
}

/// The sections `run` has and `saved` lacks (they came with a newer experiment file or titan,
/// e.g. `[parallelism]`: said, not refused), and every other difference in a key that must
/// stay. A key missing inside a section is compared (an unset option is written as a comment).
fn compare(
    saved: &serde_json::Value,
    run: &serde_json::Value,
    training: Option<&str>,
) -> (Vec<String>, Vec<crate::diff::Difference>) {
    let new_sections: Vec<String> = run
        .as_object()
        .into_iter()
        .flat_map(|sections| sections.keys())
        .filter(|section| saved.get(section.as_str()).is_none())
        .cloned()
        .collect();
    let found = differences(saved, run, &|path| {
        may_change(path, training) || matches!(path, [section] if new_sections.contains(section))
    });
    (new_sections, found)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_section_the_checkpoint_lacks_is_named_not_refused() {
        let saved = serde_json::json!({"llama": {"hidden_size": 256}});
        let run = serde_json::json!({
            "llama": {"hidden_size": 256, "rope_theta": 10000.0},
            "parallelism": {"tp": 1},
        });
        let (new, found) = compare(&saved, &run, None);
        assert_eq!(new, ["parallelism"]);
        // A key missing inside a section the checkpoint has still counts.
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key, "llama.rope_theta");
    }

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
        let skip = |path: &[String]| may_change(path, Some("training"));
        let out = differences(&saved, &run, &skip);
        assert!(out.is_empty(), "{out:?}");
        run["llama"]["hidden_size"] = 512.into();
        run["training"]["data"] = Value::Null;
        let out: Vec<String> = differences(&saved, &run, &skip)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            out,
            [
                "`llama.hidden_size` is 256 there and 512 here",
                "`training.data` is \"a.txt\" there and unset here",
            ]
        );
    }
}
