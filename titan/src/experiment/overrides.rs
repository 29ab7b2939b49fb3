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
            // JSON has no NaN or infinity (they would become null, which unsets an option) and
            // no dates (they would become a table of serde's own).
            if let Some((key, x, reason)) = unrepresentable(&value, &name) {
                return Err(Error::config(
                    &format!("{} (key `{key}`)", path.display()),
                    x,
                    reason,
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
/// path, key): TOML has no null, so they are comments that this reader understands. Lines
/// inside multi-line strings and arrays of tables are not read.
fn unset_lines(text: &str) -> Vec<(Vec<String>, String)> {
    let mut table: Option<Vec<String>> = Some(Vec::new());
    let mut open_string: Option<&str> = None;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(delimiter) = open_string {
            if line.matches(delimiter).count() % 2 == 1 {
                open_string = None;
            }
            continue;
        }
        // A value that starts a multi-line string: the delimiter outside any other quotes
        // (`x = '"""'` is a one-line string that holds one), an odd count of it on the line.
        let opens = |d: &str| {
            line.find(d)
                .is_some_and(|at| !line[..at].contains(['"', '\'', '#']))
                && line.matches(d).count() % 2 == 1
        };
        if let Some(delimiter) = ["\"\"\"", "'''"].into_iter().find(|d| opens(d)) {
            open_string = Some(delimiter);
            continue;
        }
        if line.starts_with("[[") {
            // An array of tables holds no option of a section: nothing is read under it.
            table = None;
        } else if line.starts_with('[') {
            // A header, or a line of an array value written over several lines.
            if let Some(path) = header(line) {
                table = Some(path);
            }
        } else if let Some(key) = line
            .strip_prefix('#')
            .and_then(|l| l.trim().strip_suffix("= (unset)"))
            .map(str::trim)
            .filter(|k| !k.is_empty() && !k.contains(' '))
            && let Some(table) = &table
        {
            out.push((table.clone(), key.to_string()));
        }
    }
    out
}

/// The path of a `[table]` header line (`[llama.rope_scaling]`, `["training"]`, with a comment
/// after it or not); `None` for an array of tables or a line that is not a header.
fn header(line: &str) -> Option<Vec<String>> {
    let rest = line.strip_prefix('[').filter(|r| !r.starts_with('['))?;
    let (mut parts, mut part, mut quote) = (Vec::new(), String::new(), None);
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => part.push(c),
            (None, '"' | '\'') => quote = Some(c),
            (None, '.') => parts.push(std::mem::take(&mut part).trim().to_string()),
            (None, ']') => {
                parts.push(part.trim().to_string());
                let tail = chars.as_str().trim();
                return (tail.is_empty() || tail.starts_with('#')).then_some(parts);
            }
            (None, c) => part.push(c),
        }
    }
    None
}

/// Adds the options `text` shows as `# key = (unset)` lines to `sections`, as nulls.
pub(super) fn add_unset_lines(sections: &mut serde_json::Map<String, Value>, text: &str) {
    for (path, key) in unset_lines(text) {
        insert_null(sections, &path, key);
    }
}

/// Sets `key` to null in the table at `path` where the file gives it no value (created where
/// missing; a path through a value that is not a table is left alone, and the key check
/// reports it): a value the file sets wins over a `# key = (unset)` line, wherever that is.
fn insert_null(map: &mut serde_json::Map<String, Value>, path: &[String], key: String) {
    match path.split_first() {
        None => {
            map.entry(key).or_insert(Value::Null);
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

/// The first value in a TOML `value` at `key` that has no JSON form a setting could take (a
/// float that is not finite, a date or time), as its dotted key, the value and why.
pub(super) fn unrepresentable(value: &toml::Value, key: &str) -> Option<(String, String, String)> {
    match value {
        toml::Value::Float(x) if !x.is_finite() => Some((
            key.to_string(),
            x.to_string(),
            "a setting must be a finite number".into(),
        )),
        toml::Value::Datetime(d) => Some((
            key.to_string(),
            d.to_string(),
            "a date or time is no setting's value (quote it if it is text)".into(),
        )),
        toml::Value::Table(table) => table
            .iter()
            .find_map(|(k, v)| unrepresentable(v, &format!("{key}.{k}"))),
        toml::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| unrepresentable(v, &format!("{key}[{i}]"))),
        _ => None,
    }
}
