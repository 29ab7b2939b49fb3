//! Configuration without strings in the code: each `#[config]` field of an experiment is a
//! serde struct; a TOML file (`--config`, the shape `--print-config` prints) and `--set
//! section.key=value` overrides reach any key, and an unknown key or a bad value is an error
//! naming the key (and the file) and listing the valid ones.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::diff::same_value;

use super::{Overrides, Section};
use crate::{Error, Result};

/// Resolves the config sections of one experiment in construction order.
#[derive(Debug)]
pub struct ConfigSet<'o> {
    overrides: &'o Overrides,
    used: Vec<bool>,
    sections: Vec<(String, Value)>,
    training: Option<&'static str>,
}

impl<'o> ConfigSet<'o> {
    /// Starts resolving against `overrides`.
    pub fn new(overrides: &'o Overrides) -> Self {
        Self {
            overrides,
            used: vec![false; overrides.entries.len()],
            sections: Vec::new(),
            training: None,
        }
    }

    /// Names the experiment's `training` section (`#[experiment]` does), which takes what the
    /// experiment fills in where it is unset ([`Overrides::named`]) and, under another name
    /// (`#[role(training)] run: TrainingConfig`), the `training.*` keys too (the standard flags
    /// write those).
    pub fn with_training(mut self, section: &'static str) -> Self {
        self.training = Some(section);
        self
    }

    /// Applies the overrides of `section` to `value` and records the result for printing.
    pub fn resolve<T: Section>(&mut self, section: &str, value: T) -> Result<T> {
        let mut tree = serde_json::to_value(&value)?;
        let prefix = format!("{section}.");
        let mut touched = false;
        // The training role's section answers to `training` whatever its field's name.
        let alias = (self.training == Some(section) && section != "training").then_some("training");
        if let Some(file) = &self.overrides.file {
            let at = file.path.display().to_string();
            let own = file.sections.get(section);
            let aliased = alias.and_then(|a| file.sections.get(a));
            if own.is_some() && aliased.is_some() {
                return Err(Error::config(
                    &at,
                    format!("[{section}] and [training]"),
                    format!(
                        "both name the training settings (the field `{section}`); keep one table"
                    ),
                ));
            }
            // Keys are named as the file writes them.
            let written = if own.is_some() { section } else { "training" };
            if let Some(table) = own.or(aliased) {
                let mut leaves = Vec::new();
                leaves_of(table, Some(&tree), &mut Vec::new(), &mut leaves);
                for (path, value) in leaves {
                    touched |= set_value::<T>(&mut tree, written, &path, value, &at)?;
                }
            }
        }
        let alias = alias.map(|a| format!("{a}."));
        for (i, (key, raw)) in self.overrides.entries.iter().enumerate() {
            // A section that is one value (`#[config(1e-3)] lr: f64`) is set whole: `lr=0.01`.
            if key == section && !tree.is_object() {
                self.used[i] = true;
                touched = true;
                set_path::<T>(&mut tree, section, "", raw)?;
                continue;
            }
            if key == section {
                return Err(Error::config(
                    key,
                    raw,
                    format!(
                        "`{section}` is a section; set one of its keys, e.g. `{section}.KEY=VALUE`"
                    ),
                ));
            }
            // Keys are named as `--set` writes them.
            let Some((written, path)) = key
                .strip_prefix(&prefix)
                .map(|path| (section, path))
                .or_else(|| {
                    alias
                        .as_deref()
                        .and_then(|a| Some(("training", key.strip_prefix(a)?)))
                })
            else {
                continue;
            };
            self.used[i] = true;
            touched = true;
            set_path::<T>(&mut tree, written, path, raw)?;
        }
        if self.training == Some(section) {
            for (key, value) in &self.overrides.training_fill {
                if let Some(slot) = tree.get_mut(key).filter(|v| v.is_null()) {
                    *slot = value.clone();
                    touched = true;
                }
            }
        }
        self.sections.push((section.to_string(), tree.clone()));
        if !touched {
            // Untouched sections skip the JSON round trip, which cannot hold every value (∞).
            return Ok(value);
        }
        Ok(serde_json::from_value(tree)?)
    }

    /// Fails on overrides (and file sections) that named no section of this experiment.
    pub fn finish(&self) -> Result<()> {
        let sections: Vec<&str> = self.sections.iter().map(|(s, _)| s.as_str()).collect();
        // `[training]` names the training settings whatever their field's name.
        let known = |k: &str| sections.contains(&k) || (k == "training" && self.training.is_some());
        if let Some(file) = &self.overrides.file
            && let Some(unknown) = file.sections.keys().find(|k| !known(k.as_str()))
        {
            return Err(Error::config(
                &file.path.display().to_string(),
                format!("[{unknown}]"),
                format!(
                    "unknown config section `{unknown}`; this experiment's sections are: {}",
                    sections.join(", ")
                ),
            ));
        }
        for (i, (key, raw)) in self.overrides.entries.iter().enumerate() {
            if !self.used[i] {
                let section = key.split('.').next().unwrap_or(key);
                if section == "training" && self.training.is_none() {
                    return Err(Error::config(
                        key,
                        raw,
                        format!(
                            "this experiment has no training settings, which the standard flags \
                             (--steps, --batch-size, …) and `training.*` keys set: add a field \
                             `#[config(TrainingConfig::default())] training: TrainingConfig`; \
                             its sections are: {}",
                            sections.join(", ")
                        ),
                    ));
                }
                return Err(Error::config(
                    key,
                    raw,
                    format!(
                        "unknown config section `{section}`; this experiment's sections are: {}",
                        sections.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The resolved configuration as one JSON object of sections.
    pub fn tree(&self) -> Value {
        Value::Object(self.sections.iter().cloned().collect())
    }

    /// The name of the experiment's `training` section, when it has one.
    pub fn training_section(&self) -> Option<&'static str> {
        self.training
    }

    /// The resolved configuration as TOML, one table per section (unset options as comments);
    /// a section that is one value is a top-level key, before the tables, as TOML needs.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let (tables, values): (Vec<_>, Vec<_>) =
            self.sections.iter().partition(|(_, tree)| tree.is_object());
        for (section, value) in &values {
            match value {
                Value::Null => out.push_str(&format!("# {section} = (unset)\n")),
                other => match toml::Value::try_from(other) {
                    Ok(v) => out.push_str(&format!("{section} = {v}\n")),
                    Err(_) => out.push_str(&format!("# {section} = {other}\n")),
                },
            }
        }
        if !values.is_empty() {
            out.push('\n');
        }
        for (section, tree) in tables {
            out.push_str(&format!("[{section}]\n"));
            write_table(&mut out, section, tree);
            out.push('\n');
        }
        out
    }
}

fn write_table(out: &mut String, prefix: &str, tree: &Value) {
    let Value::Object(map) = tree else {
        out.push_str(&format!("# {prefix} = {tree}\n"));
        return;
    };
    let mut nested = Vec::new();
    for (key, value) in map {
        match value {
            Value::Null => out.push_str(&format!("# {key} = (unset)\n")),
            Value::Object(_) => nested.push((key, value)),
            other => match toml::Value::try_from(other) {
                Ok(v) => out.push_str(&format!("{key} = {v}\n")),
                Err(_) => out.push_str(&format!("{key} = {other}\n")),
            },
        }
    }
    for (key, value) in nested {
        let name = format!("{prefix}.{key}");
        out.push_str(&format!("\n[{name}]\n"));
        write_table(out, &name, value);
    }
}

/// The leaves of a file's table: (key path, value). An empty table where the section has a
/// table is none (no change); anywhere else (`[training.typo]`) it is a leaf, which the key
/// check names. A table where the section's value (`section`, at the same path) is unset (an
/// optional group of settings, `[llama.rope_scaling]`) is one leaf: it is set whole.
fn leaves_of<'v>(
    table: &'v Value,
    section: Option<&Value>,
    path: &mut Vec<&'v str>,
    out: &mut Vec<(Vec<&'v str>, &'v Value)>,
) {
    match table {
        Value::Object(map) if map.is_empty() && matches!(section, Some(Value::Object(_))) => {}
        Value::Object(map) if !map.is_empty() && !matches!(section, Some(Value::Null)) => {
            for (key, value) in map {
                path.push(key);
                leaves_of(value, section.and_then(|s| s.get(key)), path, out);
                path.pop();
            }
        }
        leaf => out.push((path.clone(), leaf)),
    }
}

/// Sets one key of a file (`at`) in `section`'s tree, checking that the key exists (else an
/// error naming it and the valid keys) and that the section still deserializes with the value
/// (else an error naming the key and the value); true when the value changed. A value equal to
/// the experiment's leaves the section as it was, so a printed configuration read back changes
/// nothing.
fn set_value<T: DeserializeOwned>(
    tree: &mut Value,
    section: &str,
    path: &[&str],
    value: &Value,
    at: &str,
) -> Result<bool> {
    let full = path
        .iter()
        .fold(section.to_string(), |a, p| format!("{a}.{p}"));
    let node = slot(tree, section, path, &full, value, &format!(" (in {at})"))?;
    if same_value(node, value) {
        return Ok(false);
    }
    let previous = std::mem::replace(node, value.clone());
    if let Err(e) = serde_json::from_value::<T>(tree.clone()) {
        set_at(tree, path, previous);
        return Err(Error::config(
            &full,
            value,
            format!("bad value (in {at}): {e}"),
        ));
    }
    Ok(true)
}

/// The value at `path` in `section`'s tree, for setting key `full` to `value` (from `--set`,
/// or a file named in `origin`): an unknown key is an error naming it and the valid keys.
fn slot<'t>(
    tree: &'t mut Value,
    section: &str,
    path: &[&str],
    full: &str,
    value: &dyn std::fmt::Display,
    origin: &str,
) -> Result<&'t mut Value> {
    let mut node = tree;
    for (depth, part) in path.iter().enumerate() {
        let here = path[..depth]
            .iter()
            .fold(section.to_string(), |a, p| format!("{a}.{p}"));
        let Value::Object(map) = node else {
            let reason = match node {
                Value::Null => format!(
                    "`{here}` is unset{origin}; set it whole: `--set '{here}={{...}}'` (JSON or TOML), or \
                     a [{here}] table in a --config file"
                ),
                _ => format!("`{here}` has no sub-keys{origin}"),
            };
            return Err(Error::config(full, value, reason));
        };
        if !map.contains_key(*part) {
            let mut valid: Vec<&str> = map.keys().map(String::as_str).collect();
            valid.sort_unstable();
            return Err(Error::config(
                full,
                value,
                format!(
                    "unknown key `{part}` in `{here}`{origin}; valid keys: {}",
                    valid.join(", ")
                ),
            ));
        }
        let Some(next) = map.get_mut(*part) else {
            return Err(Error::config(full, value, "unknown key"));
        };
        node = next;
    }
    Ok(node)
}

fn set_path<T: DeserializeOwned>(
    tree: &mut Value,
    section: &str,
    path: &str,
    raw: &str,
) -> Result<()> {
    // An empty path is the whole section (one that is a single value).
    let (full, parts): (String, Vec<&str>) = match path {
        "" => (section.to_string(), Vec::new()),
        path => (format!("{section}.{path}"), path.split('.').collect()),
    };
    let previous = slot(tree, section, &parts, &full, &raw, "")?.clone();
    // A literal (`100`, `1e-3`, `true`, `[0.9, 0.95]`, `"x"`, in JSON or, as a `--config`
    // file writes it, TOML: `{ factor = 8.0, ... }`) when the section accepts it; otherwise the
    // text as a string, so paths and names need no quotes.
    let literal = serde_json::from_str::<Value>(raw)
        .ok()
        .or_else(|| toml_literal(raw));
    let candidates = match literal {
        Some(v) if !v.is_string() => vec![v, Value::String(raw.to_string())],
        Some(v) => vec![v],
        None => vec![Value::String(raw.to_string())],
    };
    // The literal's error says more than the string fallback's (`1e3` for an integer: "a
    // floating point, expected u64", not "a string").
    let mut first_error = None;
    for candidate in candidates {
        set_at(tree, &parts, candidate);
        match serde_json::from_value::<T>(tree.clone()) {
            Ok(_) => return Ok(()),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    set_at(tree, &parts, previous);
    let reason = first_error.map_or_else(String::new, |e| e.to_string());
    Err(Error::config(&full, raw, format!("bad value: {reason}")))
}

/// `raw` read as a TOML value (an inline table, an array, a quoted string), if it is one
/// that JSON can hold: `inf`, `nan` or a date would come out as null or serde's own table, so
/// they stay text (and a number setting refuses them).
fn toml_literal(raw: &str) -> Option<Value> {
    let mut table = toml::from_str::<toml::Table>(&format!("value = {raw}")).ok()?;
    let value = table.remove("value")?;
    if super::overrides::unrepresentable(&value, "value").is_some() {
        return None;
    }
    serde_json::to_value(value).ok()
}

fn set_at(tree: &mut Value, parts: &[&str], value: Value) {
    let mut node = tree;
    for part in parts {
        match node.get_mut(*part) {
            Some(next) => node = next,
            None => return,
        }
    }
    *node = value;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trainer::TrainingConfig;

    #[test]
    fn overrides_reach_keys_and_keep_types() -> Result<()> {
        let o = Overrides::parse([
            "training.steps=7",
            "training.device=cpu",
            "training.data=a.txt",
        ])?;
        let mut set = ConfigSet::new(&o);
        let t = set.resolve("training", TrainingConfig::default())?;
        set.finish()?;
        assert_eq!((t.steps, t.device.as_str()), (7, "cpu"));
        assert_eq!(t.data.as_deref(), Some(std::path::Path::new("a.txt")));
        assert!(set.to_toml().contains("steps = 7"));
        Ok(())
    }

    /// A table value is JSON or TOML (as `--config` writes it), and a bad one says why.
    #[test]
    fn a_table_value_is_json_or_toml() -> Result<()> {
        let toml = "{ rope_type = \"llama3\", factor = 8.0, low_freq_factor = 1.0, \
                    high_freq_factor = 4.0, original_max_position_embeddings = 512 }";
        let json = r#"{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0, "original_max_position_embeddings": 512}"#;
        for raw in [toml, json] {
            let o = Overrides::parse([format!("llama.rope_scaling={raw}")])?;
            let mut set = ConfigSet::new(&o);
            let llama = set.resolve("llama", crate::model::LlamaConfig::tiny())?;
            set.finish()?;
            let scaling = llama.rope_scaling.expect("set");
            assert_eq!(
                (scaling.factor, scaling.original_max_position_embeddings),
                (8.0, 512),
                "{raw}"
            );
        }
        let o = Overrides::parse(["llama.rope_scaling={ factor = 8.0 }"])?;
        let mut set = ConfigSet::new(&o);
        let err = set
            .resolve("llama", crate::model::LlamaConfig::tiny())
            .expect_err("a table without its other fields")
            .to_string();
        assert!(
            err.contains("llama.rope_scaling") && err.contains("missing field"),
            "{err}"
        );
        Ok(())
    }

    /// Sections that are one value print as top-level keys and read back unchanged, so a
    /// checkpoint's configuration still fits the run (`resume.rs` compares them).
    #[test]
    fn sections_of_one_value_print_and_read_back() -> Result<()> {
        let none = Overrides::none();
        let mut printed = ConfigSet::new(&none);
        printed.resolve("lr", 1e-3f64)?;
        printed.resolve("warmup", None::<u64>)?;
        printed.resolve("training", TrainingConfig::default())?;
        let toml = printed.to_toml();
        assert!(
            toml.starts_with("lr = 0.001\n# warmup = (unset)\n"),
            "{toml}"
        );
        let saved = serde_json::to_value(
            toml::from_str::<toml::Table>(&toml)
                .map_err(|e| Error::config("toml", &toml, e.to_string()))?,
        )?;
        let found = crate::diff::differences(&saved, &printed.tree(), &|_| false);
        assert!(found.is_empty(), "{found:?}");
        let (_dir, o) = file_with(&toml.replace("lr = 0.001", "lr = 0.01"))?;
        let mut set = ConfigSet::new(&o);
        assert_eq!(set.resolve("lr", 1e-3f64)?, 0.01);
        assert_eq!(set.resolve("warmup", None::<u64>)?, None);
        set.resolve("training", TrainingConfig::default())?;
        set.finish()?;
        Ok(())
    }

    /// A section that is one value is set whole; its keys are none.
    #[test]
    fn a_section_of_one_value_is_set_whole() -> Result<()> {
        let o = Overrides::parse(["lr=0.01"])?;
        let mut set = ConfigSet::new(&o);
        assert_eq!(set.resolve("lr", 1e-3f64)?, 0.01);
        set.finish()?;
        let o = Overrides::parse(["lr=fast"])?;
        let err = ConfigSet::new(&o)
            .resolve("lr", 1e-3f64)
            .expect_err("not a number")
            .to_string();
        assert!(err.contains("lr") && err.contains("fast"), "{err}");
        let o = Overrides::parse(["lr.x=1"])?;
        let err = ConfigSet::new(&o)
            .resolve("lr", 1e-3f64)
            .expect_err("no keys")
            .to_string();
        assert!(err.contains("no sub-keys"), "{err}");
        Ok(())
    }

    #[test]
    fn paths_that_look_like_json_stay_paths() -> Result<()> {
        let o = Overrides::parse(["training.output_dir=2024", "training.data=\"null\""])?;
        let t = ConfigSet::new(&o).resolve("training", TrainingConfig::default())?;
        assert_eq!(t.output_dir.as_deref(), Some(std::path::Path::new("2024")));
        assert_eq!(t.data.as_deref(), Some(std::path::Path::new("null")));
        Ok(())
    }

    #[test]
    fn unknown_key_lists_the_valid_ones() -> Result<()> {
        let o = Overrides::parse(["training.stepz=7"])?;
        let err = ConfigSet::new(&o)
            .resolve("training", TrainingConfig::default())
            .expect_err("unknown key")
            .to_string();
        assert!(
            err.contains("training.stepz") && err.contains("valid keys") && err.contains("steps"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn bad_value_names_the_section_and_unknown_section_is_an_error() -> Result<()> {
        let o = Overrides::parse(["training.steps=many"])?;
        let err = ConfigSet::new(&o)
            .resolve("training", TrainingConfig::default())
            .expect_err("bad value")
            .to_string();
        assert!(err.contains("training") && err.contains("many"), "{err}");
        // A float for an integer: the error is about the number, not about a string.
        let o = Overrides::parse(["training.steps=1e3"])?;
        let err = ConfigSet::new(&o)
            .resolve("training", TrainingConfig::default())
            .expect_err("a float for an integer")
            .to_string();
        assert!(
            err.contains("1e3") && err.contains("floating point"),
            "{err}"
        );
        let o = Overrides::parse(["modle.layers=2"])?;
        let mut set = ConfigSet::new(&o);
        set.resolve("training", TrainingConfig::default())?;
        let err = set.finish().expect_err("unknown section").to_string();
        assert!(err.contains("modle") && err.contains("training"), "{err}");
        Ok(())
    }

    fn file_with(text: &str) -> Result<(tempfile::TempDir, Overrides)> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("run.toml");
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        let o = Overrides::from_file(&path)?;
        Ok((dir, o))
    }

    /// An unset optional group (Llama's `rope_scaling`) is set whole from a file's table;
    /// `--set` of one of its keys says how to set it.
    #[test]
    fn an_unset_group_is_set_whole_from_a_files_table() -> Result<()> {
        use crate::model::{LlamaConfig, RopeScaling};
        let tiny = LlamaConfig::tiny();
        let (_dir, o) = file_with(
            "[llama.rope_scaling]\nrope_type = \"llama3\"\nfactor = 8.0\nlow_freq_factor = 1.0\n\
             high_freq_factor = 4.0\noriginal_max_position_embeddings = 8192\n",
        )?;
        let set = ConfigSet::new(&o).resolve("llama", tiny.clone())?;
        assert_eq!(
            set.rope_scaling,
            Some(RopeScaling {
                factor: 8.0,
                ..RopeScaling::llama3_2()
            })
        );
        let (_dir, o) = file_with("[llama.rope_scaling]\nfactor = 8.0\n")?;
        let err = ConfigSet::new(&o)
            .resolve("llama", tiny.clone())
            .expect_err("a partial group")
            .to_string();
        assert!(
            err.contains("`llama.rope_scaling`") && err.contains("missing field"),
            "{err}"
        );
        let o = Overrides::parse(["llama.rope_scaling.factor=8"])?;
        let err = ConfigSet::new(&o)
            .resolve("llama", tiny)
            .expect_err("a key of an unset group")
            .to_string();
        assert!(
            err.contains("`llama.rope_scaling` is unset") && err.contains("set it whole"),
            "{err}"
        );
        Ok(())
    }

    /// A `# key = (unset)` line (pasted from `--print-config` above an edit) never undoes a
    /// value the file sets; headers read as TOML reads them, and lines inside a multi-line
    /// string are text, not settings.
    #[test]
    fn a_value_the_file_sets_wins_over_an_unset_line() -> Result<()> {
        use crate::model::LlamaConfig;
        let (_dir, o) = file_with(
            "[\"training\"] # the run\n# data = (unset)\ndata = \"a.txt\"\n\
             prompt = \"\"\"\n# seed = (unset)\n\"\"\"\noutput_dir = '\"\"\"'\n# val_data = (unset)\n\
             [llama]\n# rope_scaling = (unset)\n\
             [llama.rope_scaling]\nrope_type = \"llama3\"\nfactor = 8.0\nlow_freq_factor = 1.0\n\
             high_freq_factor = 4.0\noriginal_max_position_embeddings = 8192\n\
             [bpe] # none set\n# max_len = (unset)\n",
        )?;
        let mut set = ConfigSet::new(&o);
        let with_val = TrainingConfig {
            val_data: Some("v.txt".into()),
            ..TrainingConfig::default()
        };
        let training = set.resolve("training", with_val)?;
        // After a one-line string that holds a multi-line string's delimiter, still read.
        assert_eq!(training.val_data, None);
        assert_eq!(
            training.data.as_deref(),
            Some(std::path::Path::new("a.txt"))
        );
        assert_eq!(training.seed, 0);
        let llama = set.resolve("llama", LlamaConfig::tiny())?;
        assert_eq!(llama.rope_scaling.map(|r| r.factor), Some(8.0));
        let bpe = set.resolve("bpe", serde_json::json!({"max_len": 512}))?;
        assert_eq!(bpe, serde_json::json!({"max_len": null}));
        Ok(())
    }

    /// An empty table under a key the section does not have is named, not skipped.
    #[test]
    fn an_empty_table_of_an_unknown_key_is_named() -> Result<()> {
        for (text, key) in [
            ("[training.typo]\n", "typo"),
            ("[training.steps]\n", "training.steps"),
        ] {
            let (_dir, o) = file_with(text)?;
            let err = ConfigSet::new(&o)
                .resolve("training", TrainingConfig::default())
                .expect_err(text)
                .to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        let (_dir, o) = file_with("[training]\n")?;
        let mut set = ConfigSet::new(&o);
        assert_eq!(
            set.resolve("training", TrainingConfig::default())?,
            TrainingConfig::default()
        );
        Ok(())
    }

    /// Values JSON cannot hold are refused, not read as null (which would unset an option).
    #[test]
    fn dates_and_infinities_are_no_settings() -> Result<()> {
        let err = file_with("[training]\nsteps = 1979-05-27\n")
            .expect_err("a date")
            .to_string();
        assert!(
            err.contains("training.steps") && err.contains("date"),
            "{err}"
        );
        let o = Overrides::parse(["training.peak_flops=inf"])?;
        let err = ConfigSet::new(&o)
            .resolve("training", TrainingConfig::default())
            .expect_err("inf")
            .to_string();
        assert!(err.contains("training.peak_flops"), "{err}");
        Ok(())
    }

    #[test]
    fn a_printed_config_read_back_gives_the_same_settings_and_edits_apply() -> Result<()> {
        let none = Overrides::none();
        let mut printed = ConfigSet::new(&none);
        let start = TrainingConfig {
            data: Some("a.txt".into()),
            ..TrainingConfig::default()
        };
        printed.resolve("training", start.clone())?;
        let toml = printed.to_toml();
        let (_dir, o) = file_with(&toml)?;
        let mut set = ConfigSet::new(&o);
        assert_eq!(set.resolve("training", start.clone())?, start);
        set.finish()?;
        let edited = toml.replace("steps = 1000", "steps = 12");
        let (_dir, o) = file_with(&edited)?;
        let mut o2 = Overrides::parse(["training.log_every=3"])?;
        o2.file = o.file;
        let t = ConfigSet::new(&o2).resolve("training", start)?;
        assert_eq!((t.steps, t.log_every), (12, 3), "file, then --set on top");
        Ok(())
    }

    #[test]
    fn unknown_keys_and_sections_in_a_file_are_errors_naming_them() -> Result<()> {
        let (_dir, o) = file_with("[training]\nstepz = 3\n")?;
        let err = ConfigSet::new(&o)
            .resolve("training", TrainingConfig::default())
            .expect_err("unknown key")
            .to_string();
        assert!(
            err.contains("training.stepz") && err.contains("run.toml") && err.contains("steps"),
            "{err}"
        );
        let (_dir, o) = file_with("[training]\nlog_every = 5\nsteps = \"many\"\n")?;
        let err = ConfigSet::new(&o)
            .resolve("training", TrainingConfig::default())
            .expect_err("bad value")
            .to_string();
        assert!(
            err.contains("`training.steps`") && err.contains("run.toml") && err.contains("many"),
            "{err}"
        );
        // NaN or infinity would reach the settings as null (JSON has neither).
        for bad in ["nan", "inf", "-inf"] {
            let err = file_with(&format!("[training]\nmax_grad_norm = {bad}\n"))
                .expect_err("a non-finite number")
                .to_string();
            assert!(
                err.contains("training.max_grad_norm") && err.contains("run.toml"),
                "{err}"
            );
        }
        let (_dir, o) = file_with("[modle]\nlayers = 2\n")?;
        let mut set = ConfigSet::new(&o);
        set.resolve("training", TrainingConfig::default())?;
        let err = set.finish().expect_err("unknown section").to_string();
        assert!(err.contains("modle") && err.contains("training"), "{err}");
        Ok(())
    }

    #[test]
    fn options_printed_as_unset_read_back_as_unset_and_empty_tables_change_nothing() -> Result<()> {
        let start = TrainingConfig {
            data: Some("a.txt".into()),
            ..TrainingConfig::default()
        };
        let cleared = Overrides::parse(["training.data=null"])?;
        let mut printed = ConfigSet::new(&cleared);
        assert_eq!(printed.resolve("training", start.clone())?.data, None);
        let toml = printed.to_toml();
        assert!(toml.contains("# data = (unset)"), "{toml}");
        let (_dir, o) = file_with(&toml)?;
        assert_eq!(
            ConfigSet::new(&o).resolve("training", start.clone())?.data,
            None
        );
        let (_dir, o) = file_with("[training]\n")?;
        assert_eq!(
            ConfigSet::new(&o).resolve("training", start.clone())?,
            start
        );
        Ok(())
    }

    #[test]
    fn integers_compare_exactly_and_floats_by_value() {
        let big = serde_json::json!(9_007_199_254_740_993u64); // 2^53 + 1
        let near = serde_json::json!(9_007_199_254_740_992u64);
        assert!(!same_value(&big, &near));
        assert!(same_value(&serde_json::json!(1.0), &serde_json::json!(1)));
    }

    #[test]
    fn the_training_section_takes_the_experiments_output_dir_whatever_its_name() -> Result<()> {
        let o = Overrides::for_experiment("my_run");
        let mut set = ConfigSet::new(&o).with_training("run");
        let t = set.resolve("run", TrainingConfig::default())?;
        assert_eq!(t.output_dir(), std::path::PathBuf::from("runs/my_run"));
        let given = TrainingConfig {
            output_dir: Some("elsewhere".into()),
            ..TrainingConfig::default()
        };
        let t = ConfigSet::new(&o)
            .with_training("run")
            .resolve("run", given)?;
        assert_eq!(t.output_dir(), std::path::PathBuf::from("elsewhere"));
        // The standard flags write `training.*`: they reach the section under its own name.
        let o = Overrides::parse(["training.steps=5", "run.log_every=2"])?;
        let mut set = ConfigSet::new(&o).with_training("run");
        let t = set.resolve("run", TrainingConfig::default())?;
        set.finish()?;
        assert_eq!((t.steps, t.log_every), (5, 2));
        // And a file's `[training]` table, its keys named as written; not beside `[run]`.
        let (_dir, o) = file_with("[training]\nsteps = 4\n")?;
        let mut set = ConfigSet::new(&o).with_training("run");
        assert_eq!(set.resolve("run", TrainingConfig::default())?.steps, 4);
        set.finish()?;
        let (_dir, o) = file_with("[training]\nstpes = 4\n")?;
        let err = ConfigSet::new(&o)
            .with_training("run")
            .resolve("run", TrainingConfig::default())
            .expect_err("a misspelt key")
            .to_string();
        assert!(err.contains("training.stpes"), "{err}");
        let (_dir, o) = file_with("[training]\nsteps = 4\n[run]\nsteps = 5\n")?;
        let err = ConfigSet::new(&o)
            .with_training("run")
            .resolve("run", TrainingConfig::default())
            .expect_err("both tables")
            .to_string();
        assert!(err.contains("keep one table"), "{err}");
        // Without a training section, the error says which field to add.
        let o = Overrides::parse(["training.steps=5"])?;
        let mut set = ConfigSet::new(&o);
        set.resolve("llama", crate::model::LlamaConfig::tiny())?;
        let err = set.finish().expect_err("no training section").to_string();
        assert!(
            err.contains("no training settings") && err.contains("training: TrainingConfig"),
            "{err}"
        );
        Ok(())
    }
}
