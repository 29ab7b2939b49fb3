//! Whether a checkpoint fits the run that would resume from it: the configuration it was
//! written with (`config.toml`), key by key, against the run's, except the keys a resumed run
//! may change (its length, cadence, output and device; its rate, clipping and accumulation,
//! said). A model of another shape, another tokenizer or other data is refused by name, before
//! anything is loaded; a setting that one titan version has and the other lacks is said.

use super::ConfigSet;
use crate::checkpoint::Checkpoint;
use crate::diff::differences;
use crate::trainer::ResumeChanges;
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
    "profile_every",
    "profile_steps",
    "samples",
    "prompt",
    "val_data",
    "activation_checkpointing",
    "grad_accum_steps",
    "max_grad_norm",
    "batch_size",
    "precision",
    "seq_len",
];

/// Keys of any section a resumed run may change: a schedule's length follows `training.steps`;
/// the peak rate and weight decay may be lowered (both said, [`SAID`]); how far the loader
/// reads ahead changes no batch, nor does reading the files' token shards (positions carry over
/// from text to shards).
const ANY_MAY_CHANGE: &[&str] = &[
    "total_steps",
    "warmup_steps",
    "lr",
    "weight_decay",
    "prefetch",
    "timeout_s",
    "pretokenize",
    "tokens_dir",
];

/// The checkpoint's configuration file.
pub(crate) const CONFIG_FILE: &str = "config.toml";

/// Refuses `checkpoint` when its configuration differs from `run`'s in a key that must stay,
/// naming the key and both values. A checkpoint without a configuration is checked by its
/// weights alone (when they are loaded). Where `resuming` (not an export), the changes a
/// resume may make are said, and those the restored dataloader must accept are returned.
pub(crate) fn check_config_fits(
    checkpoint: &Checkpoint,
    run: &ConfigSet<'_>,
    resuming: bool,
) -> Result<ResumeChanges> {
    if checkpoint.manifest().file(CONFIG_FILE).is_none() {
        return Ok(ResumeChanges::default());
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
    let mut saved = match serde_json::to_value(table)? {
        serde_json::Value::Object(sections) => sections,
        _ => serde_json::Map::new(),
    };
    // Options the run had unset are comments there: nulls here, so that setting one is a change.
    super::overrides::add_unset_lines(&mut saved, &text);
    let saved = serde_json::Value::Object(saved);
    let tree = run.tree();
    let (new_sections, unmatched, found) = compare(&saved, &tree, run.training_section());
    // Every rank compares the same two configurations: rank 0 says what it finds.
    let speaks = crate::dist::speaks();
    for section in new_sections.iter().filter(|_| speaks) {
        tracing::warn!(
            "{}: its configuration has no [{section}] section; the run's is taken as it is",
            checkpoint.dir().display()
        );
    }
    for key in unmatched.iter().filter(|_| speaks) {
        tracing::warn!(
            "{}: {key}, so the titan or experiment that wrote it had no such setting (or \
             another name for it); resuming with the run's",
            checkpoint.dir().display()
        );
    }
    let Some(first) = found.first() else {
        let training = run.training_section();
        let moved = data_moved(&saved, &tree, training);
        if resuming && speaks {
            said_changes(checkpoint, &saved, &tree, training);
            if let Some((was, is)) = &moved {
                tracing::warn!(
                    "training.data was {was} for {}, now {is}: resuming if its files are the \
                     same (names under the data's directory, and sizes)",
                    checkpoint.dir().display()
                );
            }
        }
        // The checkpoint's value of a training count the run changes.
        let was = |key| {
            let count = |tree| training_key(tree, training, key)?.as_u64();
            let (was, is) = (count(&saved)?, count(&tree)?);
            (was != is).then(|| usize::try_from(was).ok()).flatten()
        };
        return Ok(ResumeChanges {
            batch_size_was: was("batch_size"),
            seq_len_was: was("seq_len"),
            data_was: moved.map(|(was, _)| was),
        });
    };
    Err(Error::Checkpoint(format!(
        "{} does not fit this run: {first}; use another --output-dir for this run (or \
         --resume-from a checkpoint that fits)",
        checkpoint.dir().display()
    )))
}

/// Keys a resumed run may change that change its training from the checkpoint's step on: the
/// LR schedule's length (`--steps` moves `total_steps`, and a warmup sized from it), the peak
/// rate and weight decay (lowered after a loss spike), clipping, and the micro-batches a step
/// and their rows (kept global on fewer ranks or smaller devices; a dataloader that cannot
/// resume at another batch size refuses it when restored), the rows' length (a longer context
/// for the rest of a run; likewise refused by a dataloader that cannot reshape), and the
/// compute precision (weights and optimizer state are f32 in any).
const SAID: &[&str] = &[
    "total_steps",
    "warmup_steps",
    "lr",
    "weight_decay",
    "max_grad_norm",
    "grad_accum_steps",
    "batch_size",
    "precision",
    "seq_len",
];

/// Says each change of a [`SAID`] key on resume: from the checkpoint's step the run follows
/// the new value, so the rate may jump from the one its last step trained at.
fn said_changes(
    checkpoint: &Checkpoint,
    saved: &serde_json::Value,
    run: &serde_json::Value,
    training: Option<&str>,
) {
    // A said key where it may change (the training-only ones in the training section).
    let changed = differences(saved, run, &|path| match path {
        [] | [_] => false,
        [.., key] => !(SAID.contains(&key.as_str()) && may_change(path, training)),
    });
    if changed.is_empty() {
        return;
    }
    let what: Vec<String> = changed
        .iter()
        .map(|d| format!("`{}` {} → {}", d.key, d.was, d.is))
        .collect();
    let rate = changed.iter().any(|d| {
        ["total_steps", "warmup_steps", "lr"]
            .iter()
            .any(|k| d.key.ends_with(&format!(".{k}")))
    });
    // The rows a step trains on (batch × accumulation, per rank), where they changed.
    let rows = |tree| {
        let key = |k| training_key(tree, training, k)?.as_u64();
        Some(key("batch_size")? * key("grad_accum_steps")?)
    };
    let batch = match (rows(saved), rows(run)) {
        (Some(was), Some(is)) if was != is => {
            let rows = |n: u64| format!("{n} row{}", if n == 1 { "" } else { "s" });
            format!(
                "; a step now trains on {} a rank, not {}",
                rows(is),
                rows(was)
            )
        }
        _ => String::new(),
    };
    tracing::warn!(
        "settings change on resume from step {} ({}): from here the run follows them{}{batch}",
        checkpoint.step(),
        what.join(", "),
        match rate {
            true =>
                ", and the learning rate may jump from the one the checkpoint's last step \
                     trained at",
            false => "",
        }
    );
}

/// The sections `run` has and `saved` lacks (they came with a newer experiment file or titan,
/// e.g. `[parallelism]`: said, not refused), the keys that only one side has inside a section
/// both have (a setting added, removed or renamed since: said, not refused), and every other
/// difference in a key that must stay. An option set to none is there as a null (the file
/// writes it as a `# key = (unset)` line), so setting it is a difference.
fn compare(
    saved: &serde_json::Value,
    run: &serde_json::Value,
    training: Option<&str>,
) -> (Vec<String>, Vec<String>, Vec<crate::diff::Difference>) {
    let new_sections: Vec<String> = run
        .as_object()
        .into_iter()
        .flat_map(|sections| sections.keys())
        .filter(|section| saved.get(section.as_str()).is_none())
        .cloned()
        .collect();
    let mut unmatched = Vec::new();
    one_sided(saved, run, &mut Vec::new(), &mut unmatched);
    let unmatched: Vec<Vec<String>> = unmatched
        .into_iter()
        // A section the checkpoint has and the run lacks stays a difference (another
        // component); one the run adds is said above.
        .filter(|path| path.len() > 1)
        .collect();
    let moved = data_moved(saved, run, training).is_some();
    let found = differences(saved, run, &|path| {
        may_change(path, training)
            || (moved
                && matches!(path, [section, key] if Some(section.as_str()) == training && key == "data"))
            || matches!(path, [section] if new_sections.contains(section))
            || unmatched.iter().any(|p| p.as_slice() == path)
    });
    let said = unmatched
        .iter()
        .filter(|path| path.len() > 1 && !may_change(path, training))
        .map(|path| {
            let key = path.join(".");
            let inner = |tree: &serde_json::Value| {
                path.iter()
                    .try_fold(tree, |node, k| node.get(k.as_str()))
                    .is_some()
            };
            if inner(run) {
                format!("its configuration has no `{key}`")
            } else {
                format!("its configuration has `{key}`, which this run has not")
            }
        })
        .collect();
    (new_sections, said, found)
}

/// The paths of keys that one of `saved` and `run` has and the other lacks, inside tables both
/// have (nulls count as present).
fn one_sided(
    saved: &serde_json::Value,
    run: &serde_json::Value,
    path: &mut Vec<String>,
    out: &mut Vec<Vec<String>>,
) {
    let (Some(a), Some(b)) = (saved.as_object(), run.as_object()) else {
        return;
    };
    for (key, value) in a {
        path.push(key.clone());
        match b.get(key) {
            Some(other) => one_sided(value, other, path, out),
            None => out.push(path.clone()),
        }
        path.pop();
    }
    for key in b.keys().filter(|k| !a.contains_key(k.as_str())) {
        path.push(key.clone());
        out.push(path.clone());
        path.pop();
    }
}

/// `training.data` as the checkpoint and the run name it, where both name files and the
/// names differ: the data moved (or was copied), and a resume checks the files themselves,
/// by name and size, against the positions' stamps; files to or from the built-in stories
/// stay a difference.
fn data_moved(
    saved: &serde_json::Value,
    run: &serde_json::Value,
    training: Option<&str>,
) -> Option<(String, String)> {
    let data = |tree| {
        training_key(tree, training, "data")?
            .as_str()
            .map(str::to_string)
    };
    let (was, is) = (data(saved)?, data(run)?);
    (was != is).then_some((was, is))
}

/// `key` of the training section (named `training`) in a configuration tree.
fn training_key<'a>(
    tree: &'a serde_json::Value,
    training: Option<&str>,
    key: &str,
) -> Option<&'a serde_json::Value> {
    tree.get(training?)?.get(key)
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
    fn a_section_or_key_the_checkpoint_lacks_is_named_not_refused() {
        let saved = serde_json::json!({
            "llama": {"hidden_size": 256, "tie": false, "rope_scaling": null},
        });
        let run = serde_json::json!({
            "llama": {"hidden_size": 256, "rope_theta": 10000.0, "rope_scaling": null},
            "parallelism": {"tp": 1},
        });
        let (new, said, found) = compare(&saved, &run, None);
        assert_eq!(new, ["parallelism"]);
        // A key added since (a newer titan) and one gone: said, not refused.
        assert_eq!(
            said,
            [
                "its configuration has `llama.tie`, which this run has not",
                "its configuration has no `llama.rope_theta`",
            ]
        );
        assert!(found.is_empty(), "{found:?}");
        // An option unset there (a null) and set here is a change.
        let mut set = run.clone();
        set["llama"]["rope_scaling"] = serde_json::json!({"factor": 8.0});
        let (_, _, found) = compare(&saved, &set, None);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].key, "llama.rope_scaling");
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
        // Weights and optimizer state are f32 in any precision: bf16 compute may stop or start.
        run["training"]["precision"] = "bf16".into();
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
        // Data that moved is the files' to judge (their stamps); to or from the built-in
        // stories (no data) it stays a difference.
        run["llama"]["hidden_size"] = 256.into();
        run["training"]["data"] = "/elsewhere/a.txt".into();
        let (_, _, found) = compare(&saved, &run, Some("training"));
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(
            data_moved(&saved, &run, Some("training")),
            Some(("a.txt".into(), "/elsewhere/a.txt".into()))
        );
        run["training"]["data"] = Value::Null;
        let (_, _, found) = compare(&saved, &run, Some("training"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(data_moved(&saved, &run, Some("training")), None);
    }
}
