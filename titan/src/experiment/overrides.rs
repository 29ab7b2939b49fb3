//! Where settings come from besides the experiment's own expressions: a TOML file (`--config`),
//! `--set` overrides in command-line order, and what the experiment fills in where its
//! sections leave a key unset.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::trainer::TrainingConfig;
use crate::{Error, Result};

/// A configuration file's sections (TOML read into JSON values, as sections are resolved).
#[derive(Debug, Clone)]
pub(super) struct ConfigFile {
    pub(super) path: PathBuf,
    pub(super) sections: serde_json::Map<String, Value>,
}

/// A configuration file's settings, then `--set` overrides in command-line order, and values
/// the experiment fills in where its sections leave a key unset.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub(super) file: Option<ConfigFile>,
    pub(super) entries: Vec<(String, String)>,
    /// Keys of the `training` section the experiment fills in where they are unset.
    pub(super) training_fill: Vec<(String, Value)>,
}

impl Overrides {
    /// No overrides.
    pub fn none() -> Self {
        Self::default()
    }

    /// No overrides, and what experiment `name` fills in where its training section leaves it
    /// unset: `output_dir` is `runs/<name>` (so `--print-config` shows where the run goes).
    pub fn for_experiment(name: &str) -> Self {
        Self::none().named(name)
    }

    /// These overrides, with what experiment `name` fills in where its settings leave a key
    /// unset ([`Overrides::for_experiment`]).
    pub fn named(mut self, name: &str) -> Self {
        let output_dir = TrainingConfig::default().for_experiment(name).output_dir();
        self.training_fill.push((
            "output_dir".into(),
            Value::String(output_dir.display().to_string()),
        ));
        self
    }

    /// The settings of a TOML file of the shape `--print-config` prints: `[section]` tables of
    /// keys (nested tables for nested keys), and `# key = (unset)` lines for options set to
    /// none. Keys it leaves out keep the experiment's values.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| {
            Error::config("--config", path.display(), format!("not valid TOML: {e}"))
        })?;
        let mut sections = serde_json::Map::new();
        for (name, value) in table {
            // JSON has no NaN or infinity: they would become null, which unsets an option.
            if let Some((key, x)) = non_finite(&value, &name) {
                return Err(Error::config(
                    &format!("{} (key `{key}`)", path.display()),
                    x,
                    "a setting must be a finite number",
                ));
            }
            // A table, or the whole value of a section that is one value (`lr = 0.01`).
            sections.insert(name, serde_json::to_value(&value)?);
        }
        add_unset_lines(&mut sections, &text);
        Ok(Self {
            file: Some(ConfigFile {
                path: path.to_path_buf(),
                sections,
            }),
            ..Self::default()
        })
    }

    /// Parses `key=value` items (`training.steps=100`).
    pub fn parse<I, S>(items: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut entries = Vec::new();
        for item in items {
            let item = item.as_ref();
            let Some((key, value)) = item.split_once('=') else {
                return Err(Error::config(
                    "--set",
                    item,
                    "expected `section.key=value`, e.g. `training.steps=100`",
                ));
            };
            entries.push((key.trim().to_string(), value.trim().to_string()));
        }
        Ok(Self {
            entries,
            ..Self::default()
        })
    }

    /// Adds one override (the standard flags become `training.*` overrides this way).
    pub fn push(&mut self, key: &str, value: impl std::fmt::Display) {
        self.entries.push((key.to_string(), value.to_string()));
    }

    /// Appends `other`'s overrides after these (and takes its file, when it has one).
    pub fn extend(&mut self, other: Overrides) {
        self.entries.extend(other.entries);
        self.training_fill.extend(other.training_fill);
        if other.file.is_some() {
            self.file = other.file;
        }
    }

    /// True when there is none (no file, no override).
    pub fn is_empty(&self) -> bool {
        self.file.is_none() && self.entries.is_empty()
    }
}

/// The `# key = (unset)` lines `--print-config` writes for options that are none, as (table
/// path, key): TOML has no null, so they are comments that this reader understands.
fn unset_lines(text: &str) -> Vec<(Vec<String>, String)> {
    let mut table: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = header.split('.').map(|p| p.trim().to_string()).collect();
        } else if let Some(key) = line
            .strip_prefix('#')
            .and_then(|l| l.trim().strip_suffix("= (unset)"))
            .map(str::trim)
            .filter(|k| !k.is_empty() && !k.contains(' '))
        {
            out.push((table.clone(), key.to_string()));
        }
    }
    out
}

/// Adds the options `text` shows as `# key = (unset)` lines to `sections`, as nulls.
pub(super) fn add_unset_lines(sections: &mut serde_json::Map<String, Value>, text: &str) {
    for (path, key) in unset_lines(text) {
        insert_null(sections, &path, key);
    }
}

/// Sets `key` to null in the table at `path` (created where missing; a path through a value
/// that is not a table is left alone, and the key check reports it).
fn insert_null(map: &mut serde_json::Map<String, Value>, path: &[String], key: String) {
    match path.split_first() {
        None => {
            map.insert(key, Value::Null);
        }
        Some((first, rest)) => {
            let entry = map
                .entry(first.clone())
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            if let Value::Object(inner) = entry {
                insert_null(inner, rest, key);
            }
        }
    }
}

/// The first non-finite float in a TOML `value` at `key` (its dotted key and the number).
fn non_finite(value: &toml::Value, key: &str) -> Option<(String, f64)> {
    match value {
        toml::Value::Float(x) if !x.is_finite() => Some((key.to_string(), *x)),
        toml::Value::Table(table) => table
            .iter()
            .find_map(|(k, v)| non_finite(v, &format!("{key}.{k}"))),
        toml::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| non_finite(v, &format!("{key}[{i}]"))),
        _ => None,
    }
}
