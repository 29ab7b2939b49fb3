//! Where a dataset's documents live: a file, a directory of shards or a glob, each file read in
//! the format its extension names (`.txt`, `.jsonl`, `.parquet`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How documents are laid out in a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    /// Plain text; documents are separated by lines equal to the delimiter.
    Text,
    /// One JSON object per line; the document is a string field.
    Jsonl,
    /// A Parquet table; the document is a string column.
    Parquet,
}

impl Format {
    /// The format an extension names (`txt`, `text`, `jsonl`, `json`, `parquet`).
    pub fn from_extension(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "txt" | "text" => Some(Format::Text),
            "jsonl" | "json" | "ndjson" => Some(Format::Jsonl),
            "parquet" => Some(Format::Parquet),
            _ => None,
        }
    }
}

/// The extensions a directory or glob is searched for.
pub const EXTENSIONS: &str = ".txt, .text, .jsonl, .json, .ndjson, .parquet";

/// One data file and its format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// Its path.
    pub path: PathBuf,
    /// How its documents are laid out.
    pub format: Format,
}

/// The data files `spec` names, in a stable (sorted) order: the file itself, every data file of
/// a directory (recursively), or every data file a glob pattern (`shards/*.parquet`) matches.
/// A missing path, an empty directory or a glob matching nothing is an error naming it.
pub fn resolve(spec: &Path) -> Result<Vec<DataFile>> {
    let text = spec.to_string_lossy();
    let is_glob = text.contains(['*', '?', '[']) && !spec.exists();
    let mut paths = if is_glob {
        let entries = glob::glob(&text)
            .map_err(|e| Error::config("data", &text, format!("not a valid glob pattern: {e}")))?;
        let mut paths = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| {
                let path = e.path().to_path_buf();
                Error::io(path, e.into())
            })?;
            if path.is_file() && Format::from_extension(&path).is_some() {
                paths.push(path);
            }
        }
        if paths.is_empty() {
            return Err(Error::Data(format!(
                "{text}: the pattern matches no data file ({EXTENSIONS})"
            )));
        }
        paths
    } else {
        let meta = std::fs::metadata(spec).map_err(|e| Error::io(spec, e))?;
        if meta.is_dir() {
            let mut paths = Vec::new();
            walk(spec, &mut paths)?;
            if paths.is_empty() {
                return Err(Error::Data(format!(
                    "{}: the directory holds no data file ({EXTENSIONS})",
                    spec.display()
                )));
            }
            paths
        } else {
            if Format::from_extension(spec).is_none() {
                return Err(Error::Data(format!(
                    "{}: unknown data format; name the file with one of {EXTENSIONS}",
                    spec.display()
                )));
            }
            vec![spec.to_path_buf()]
        }
    };
    paths.sort();
    Ok(paths
        .into_iter()
        .filter_map(|path| Format::from_extension(&path).map(|format| DataFile { path, format }))
        .collect())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if Format::from_extension(&path).is_some() {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_directory_and_glob_resolve_sorted() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        for name in ["b.jsonl", "a.txt", "c.parquet", "notes.md"] {
            std::fs::write(dir.path().join(name), "x").map_err(|e| Error::io(name, e))?;
        }
        let names = |files: Vec<DataFile>| -> Vec<String> {
            files
                .iter()
                .map(|f| {
                    f.path
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        };
        assert_eq!(
            names(resolve(dir.path())?),
            ["a.txt", "b.jsonl", "c.parquet"]
        );
        let pattern = dir.path().join("*.jsonl");
        assert_eq!(names(resolve(&pattern)?), ["b.jsonl"]);
        let one = resolve(&dir.path().join("c.parquet"))?;
        assert_eq!(one[0].format, Format::Parquet);
        Ok(())
    }

    #[test]
    fn missing_empty_and_unmatched_are_errors_naming_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.txt");
        let err = resolve(&missing).expect_err("missing").to_string();
        assert!(err.contains("nope.txt"), "{err}");
        let err = resolve(dir.path()).expect_err("empty dir").to_string();
        assert!(err.contains("holds no data file"), "{err}");
        let err = resolve(&dir.path().join("*.parquet"))
            .expect_err("no match")
            .to_string();
        assert!(err.contains("matches no data file"), "{err}");
        std::fs::write(dir.path().join("data.csv"), "x").expect("write");
        let err = resolve(&dir.path().join("data.csv"))
            .expect_err("unknown format")
            .to_string();
        assert!(err.contains("data.csv") && err.contains(".jsonl"), "{err}");
    }
}
