//! Where a dataset's documents live: a file, a directory of shards or a glob, each file read in
//! the format its extension names (`.txt`, `.jsonl`, `.parquet`; text and JSONL also compressed,
//! `.jsonl.gz` or `.txt.zst`, as C4, Dolma or SlimPajama ship).

use std::collections::{HashMap, HashSet};
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
    /// The format an extension names (`txt`, `text`, `jsonl`, `json`, `parquet`, in any case),
    /// under a compression's (`data.jsonl.gz`: JSONL; Parquet compresses inside the file).
    pub fn from_extension(path: &Path) -> Option<Self> {
        let compression = Compression::of(path);
        let inner = match compression {
            Compression::None => path,
            _ => Path::new(path.file_stem()?),
        };
        match (
            inner.extension()?.to_str()?.to_ascii_lowercase().as_str(),
            compression,
        ) {
            ("txt" | "text", _) => Some(Format::Text),
            ("jsonl" | "json" | "ndjson", _) => Some(Format::Jsonl),
            ("parquet", Compression::None) => Some(Format::Parquet),
            _ => None,
        }
    }
}

/// How a text or JSONL file's bytes are compressed, by its last extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip (`.gz`), one member or several concatenated (as `bgzip` writes).
    Gzip,
    /// Zstandard (`.zst`, `.zstd`), one frame or several.
    Zstd,
}

impl Compression {
    /// The compression `path`'s last extension names (in any case).
    pub fn of(path: &Path) -> Self {
        let ext = path.extension().and_then(|e| e.to_str());
        match ext.map(str::to_ascii_lowercase).as_deref() {
            Some("gz") => Compression::Gzip,
            Some("zst" | "zstd") => Compression::Zstd,
            _ => Compression::None,
        }
    }

    /// About how many bytes of text `path` (`on_disk` bytes in this compression) holds, read
    /// from the file where its format records it: gzip's trailer (the size modulo 4 GiB of its
    /// last member) or a Zstandard frame's content size. A recorded size below `on_disk` (a
    /// larger or several-member file) is not believed, and `on_disk` stands instead. Ranks are
    /// dealt whole files by this size, so an estimate only shifts the balance.
    pub fn text_bytes(self, path: &Path, on_disk: u64) -> Result<u64> {
        use std::io::{Read, Seek, SeekFrom};
        let io = |e| Error::io(path, e);
        let recorded = match self {
            Compression::None => return Ok(on_disk),
            Compression::Gzip if on_disk >= 18 => {
                let mut file = std::fs::File::open(path).map_err(io)?;
                file.seek(SeekFrom::End(-4)).map_err(io)?;
                let mut trailer = [0u8; 4];
                file.read_exact(&mut trailer).map_err(io)?;
                Some(u64::from(u32::from_le_bytes(trailer)))
            }
            Compression::Gzip => None,
            Compression::Zstd => {
                let mut header = Vec::with_capacity(18);
                std::fs::File::open(path)
                    .map_err(io)?
                    .take(18)
                    .read_to_end(&mut header)
                    .map_err(io)?;
                zstd::zstd_safe::get_frame_content_size(&header)
                    .ok()
                    .flatten()
            }
        };
        Ok(recorded.filter(|&text| text >= on_disk).unwrap_or(on_disk))
    }
}

/// The extensions a directory or glob is searched for.
pub const EXTENSIONS: &str =
    ".txt, .text, .jsonl, .json, .ndjson (each also as .gz, .zst or .zstd), .parquet";

/// One data file and its format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// Its path.
    pub path: PathBuf,
    /// How its documents are laid out.
    pub format: Format,
}

/// The data files `spec` names, in a stable (sorted) order: the file itself, every data file of
/// a directory (recursively, past hidden entries such as `.cache/`, each directory once however
/// many links lead to it), or every data file a glob pattern (`shards/*.parquet`) matches (and
/// those of the directories it matches). A data file that is not a regular file (a pipe) is an
/// error.
/// A missing path, an empty directory or a glob matching nothing is an error naming it, and so
/// is one file reached by two names (it would be read twice); files of other extensions are
/// skipped with a warning naming them.
pub fn resolve(spec: &Path) -> Result<Vec<DataFile>> {
    let text = spec.to_string_lossy();
    let is_glob = text.contains(['*', '?', '[']) && !spec.exists();
    let mut paths = if is_glob {
        // Hidden entries (`.git/`, `.cache/`) only where the pattern spells the dot, as a
        // directory argument skips them.
        let options = glob::MatchOptions {
            require_literal_leading_dot: true,
            ..glob::MatchOptions::new()
        };
        let entries = glob::glob_with(&text, options)
            .map_err(|e| Error::config("data", &text, format!("not a valid glob pattern: {e}")))?;
        let mut paths = Vec::new();
        let mut skipped = Vec::new();
        let mut seen = HashSet::new();
        for entry in entries {
            let path = entry.map_err(|e| {
                let path = e.path().to_path_buf();
                Error::io(path, e.into())
            })?;
            // `.*` matches `.` and `..` too: neither is a hidden entry of the data.
            let last = path
                .as_os_str()
                .as_encoded_bytes()
                .rsplit(|&b| b == b'/')
                .next();
            if matches!(last, Some(b"." | b"..")) {
                continue;
            }
            // A directory the pattern matches is read as a directory argument is.
            // (`**` matches a directory and those under it: each is read once, and a file the
            // pattern matches too is one file.)
            if path.is_dir() {
                let real = std::fs::canonicalize(&path).map_err(|e| Error::io(&path, e))?;
                if !seen.contains(&real) {
                    walk(&path, &mut seen, &mut paths, &mut skipped)?;
                }
            } else if Format::from_extension(&path).is_some() {
                regular(&path)?;
                paths.push(path);
            } else {
                skipped.push(path);
            }
        }
        paths.sort();
        paths.dedup();
        skipped.sort();
        skipped.dedup();
        warn_skipped(&text, &skipped);
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
            let mut skipped = Vec::new();
            let mut seen = HashSet::new();
            walk(spec, &mut seen, &mut paths, &mut skipped)?;
            warn_skipped(&spec.to_string_lossy(), &skipped);
            if paths.is_empty() {
                return Err(Error::Data(format!(
                    "{}: the directory holds no data file ({EXTENSIONS})",
                    spec.display()
                )));
            }
            paths
        } else {
            if Format::from_extension(spec).is_none() {
                // A compressed Parquet file: Parquet compresses inside the file.
                let inner = spec.file_stem().map(Path::new).and_then(Path::extension);
                let why = match inner.and_then(|e| e.to_str()) {
                    Some(e) if e.eq_ignore_ascii_case("parquet") => {
                        "a Parquet file compresses its columns itself, so titan reads it \
                         uncompressed: decompress it (`gunzip`, `zstd -d`)"
                            .to_string()
                    }
                    _ => format!("unknown data format; name the file with one of {EXTENSIONS}"),
                };
                return Err(Error::Data(format!("{}: {why}", spec.display())));
            }
            regular(spec)?;
            vec![spec.to_path_buf()]
        }
    };
    paths.sort();
    let mut names = HashMap::new();
    for path in &paths {
        let real = std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?;
        if let Some(first) = names.insert(real, path) {
            return Err(Error::Data(format!(
                "{} and {} are one file (a link or a repeated name): it would be read twice; \
                 name it once",
                first.display(),
                path.display()
            )));
        }
    }
    Ok(paths
        .into_iter()
        .filter_map(|path| Format::from_extension(&path).map(|format| DataFile { path, format }))
        .collect())
}

/// Collects the data files under `dir` into `out` and the other files into `skipped`, past
/// hidden entries, entering each directory once (`seen`: canonical paths), so a link to a
/// directory above it cannot loop.
fn walk(
    dir: &Path,
    seen: &mut HashSet<PathBuf>,
    out: &mut Vec<PathBuf>,
    skipped: &mut Vec<PathBuf>,
) -> Result<()> {
    let real = std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?;
    if !seen.insert(real) {
        tracing::warn!(
            "{}: a directory already read under another name; skipped",
            dir.display()
        );
        return Ok(());
    }
    // In name order, so which name of a linked directory is read does not depend on the
    // filesystem's order (it decides the paths, and so the files' order and stamps).
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|entry| entry.map_err(|e| Error::io(dir, e)))
        .collect::<Result<Vec<_>>>()?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            walk(&path, seen, out, skipped)?;
        } else if Format::from_extension(&path).is_some() {
            regular(&path)?;
            out.push(path);
        } else {
            skipped.push(path);
        }
    }
    Ok(())
}

/// Refuses a data file that is not a regular file (a pipe, a socket, a device): titan reads
/// each file more than once (every pass over the data, the validation split), which one of
/// those cannot give, so a run on it would wait forever or see other data.
fn regular(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_file() {
        return Ok(());
    }
    Err(Error::Data(format!(
        "{}: not a regular file (a pipe, socket or device): titan reads a data file more than \
         once (each pass, the validation split); write it to a file first",
        path.display()
    )))
}

/// Each path relative to the deepest directory that holds them all (a lone file: its name):
/// how a dataset names its files wherever it is moved or copied to.
pub fn relative_names(paths: &[&Path]) -> Vec<PathBuf> {
    fn parent(p: &Path) -> Vec<std::path::Component<'_>> {
        p.parent()
            .map(|d| d.components().collect())
            .unwrap_or_default()
    }
    let mut root = paths.first().map(|p| parent(p)).unwrap_or_default();
    for p in paths.iter().skip(1) {
        let common = root
            .iter()
            .zip(parent(p))
            .take_while(|(a, b)| **a == *b)
            .count();
        root.truncate(common);
    }
    paths
        .iter()
        .map(|p| p.components().skip(root.len()).collect())
        .collect()
}

/// Warns that `skipped` (files `spec` reached that name no data format) are not read.
fn warn_skipped(spec: &str, skipped: &[PathBuf]) {
    if let Some(first) = skipped.iter().min() {
        tracing::warn!(
            "{spec}: {} file(s) skipped, not named as data ({EXTENSIONS}), e.g. {}",
            skipped.len(),
            first.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_names_do_not_depend_on_where_the_data_is() {
        let names = |paths: &[&str]| {
            let paths: Vec<&Path> = paths.iter().map(Path::new).collect();
            relative_names(&paths)
                .into_iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&["/data/web/a.txt"]), ["a.txt"]);
        assert_eq!(
            names(&["/data/web/a/x.jsonl", "/data/web/b.jsonl"]),
            ["a/x.jsonl", "b.jsonl"]
        );
        assert_eq!(
            names(&["/mnt/copy/web/a/x.jsonl", "/mnt/copy/web/b.jsonl"]),
            ["a/x.jsonl", "b.jsonl"]
        );
        assert_eq!(names(&["a.txt", "b.txt"]), ["a.txt", "b.txt"]);
        assert!(names(&[]).is_empty());
    }

    #[test]
    fn file_directory_and_glob_resolve_sorted() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let names_in = [
            "b.jsonl",
            "a.txt",
            "c.parquet",
            "notes.md",
            "d.json.gz",
            "e.txt.ZST",
        ];
        for name in names_in {
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
            ["a.txt", "b.jsonl", "c.parquet", "d.json.gz", "e.txt.ZST"]
        );
        // Compressed: the format under the compression's extension.
        let formats: Vec<Format> = resolve(dir.path())?.into_iter().map(|f| f.format).collect();
        assert_eq!(formats[3..], [Format::Jsonl, Format::Text]);
        assert_eq!(
            Compression::of(&dir.path().join("e.txt.ZST")),
            Compression::Zstd
        );
        let pattern = dir.path().join("*.jsonl");
        assert_eq!(names(resolve(&pattern)?), ["b.jsonl"]);
        let one = resolve(&dir.path().join("c.parquet"))?;
        assert_eq!(one[0].format, Format::Parquet);
        Ok(())
    }

    /// A glob reads the directories it matches as a directory argument does (they were left
    /// out, silently), and a pipe named as data is refused by name instead of hanging the run.
    #[test]
    fn a_glob_reads_the_directories_it_matches_and_a_pipe_is_refused() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).map_err(|e| Error::io(&sub, e))?;
        for path in [dir.path().join("a.txt"), sub.join("b.jsonl")] {
            std::fs::write(&path, "x").map_err(|e| Error::io(&path, e))?;
        }
        let found: Vec<PathBuf> = resolve(&dir.path().join("*"))?
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(found, [dir.path().join("a.txt"), sub.join("b.jsonl")]);
        assert_eq!(resolve(&dir.path().join("s*"))?.len(), 1);
        // `**` reads each file once, and hidden entries are not data.
        let hidden = dir.path().join(".cache");
        std::fs::create_dir(&hidden).map_err(|e| Error::io(&hidden, e))?;
        std::fs::write(hidden.join("c.txt"), "x").map_err(|e| Error::io(&hidden, e))?;
        for pattern in ["**/*", "*"] {
            assert_eq!(resolve(&dir.path().join(pattern))?.len(), 2, "{pattern}");
        }
        let fifo = dir.path().join("fifo.txt");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .map_err(|e| Error::io("mkfifo", e))?;
        assert!(made.success());
        for spec in [fifo.clone(), dir.path().to_path_buf()] {
            let err = resolve(&spec).expect_err("a pipe").to_string();
            assert!(
                err.contains("fifo.txt") && err.contains("not a regular file"),
                "{err}"
            );
        }
        Ok(())
    }

    /// A compressed file's text size, where its format records it: ranks are dealt files by it.
    #[test]
    fn a_compressed_files_text_size_comes_from_the_file() -> Result<()> {
        use std::io::Write;
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let text = "a line of text that compresses well\n".repeat(2_000);
        let write = |name: &str, bytes: &[u8]| -> Result<(PathBuf, u64)> {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
            Ok((path, bytes.len() as u64))
        };
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text.as_bytes())
            .map_err(|e| Error::io("gzip", e))?;
        let gz = gz.finish().map_err(|e| Error::io("gzip", e))?;
        let io = |e| Error::io("zstd", e);
        let one_shot = zstd::bulk::compress(text.as_bytes(), 3).map_err(io)?;
        let mut streamed = zstd::stream::write::Encoder::new(Vec::new(), 3).map_err(io)?;
        streamed.write_all(text.as_bytes()).map_err(io)?;
        let streamed = streamed.finish().map_err(io)?;
        let full = text.len() as u64;
        for (name, bytes, want) in [
            ("a.txt.gz", &gz[..], Some(full)),
            ("b.jsonl.zst", &one_shot[..], Some(full)),
            // A stream's frame records no size: its size on disk stands.
            ("c.jsonl.zst", &streamed[..], None),
            ("d.txt", text.as_bytes(), Some(full)),
        ] {
            let (path, on_disk) = write(name, bytes)?;
            let got = Compression::of(&path).text_bytes(&path, on_disk)?;
            assert_eq!(got, want.unwrap_or(on_disk), "{name}");
        }
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn hidden_entries_loops_and_one_file_twice() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let root = dir.path();
        let io = |e| Error::io(root, e);
        std::fs::create_dir_all(root.join("sub/.ipynb_checkpoints")).map_err(io)?;
        std::fs::write(root.join("sub/a.TXT"), "x").map_err(io)?;
        std::fs::write(root.join("sub/.ipynb_checkpoints/a-checkpoint.txt"), "x").map_err(io)?;
        std::fs::write(root.join(".hidden.jsonl"), "x").map_err(io)?;
        std::fs::write(root.join("b.jsonl.bz2"), "x").map_err(io)?;
        std::fs::write(root.join("c.parquet.gz"), "x").map_err(io)?;
        // A link to the directory above: walked once, not until the links run out.
        std::os::unix::fs::symlink(root, root.join("sub/up")).map_err(io)?;
        let files = resolve(root)?;
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].path.ends_with("sub/a.TXT"));
        assert_eq!(files[0].format, Format::Text);
        // A second name of one file is refused, naming both.
        std::os::unix::fs::symlink(root.join("sub/a.TXT"), root.join("again.txt")).map_err(io)?;
        let err = resolve(root).expect_err("one file twice").to_string();
        assert!(
            err.contains("again.txt") && err.contains("a.TXT") && err.contains("twice"),
            "{err}"
        );
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
        std::fs::write(dir.path().join("t.parquet.gz"), "x").expect("write");
        let err = resolve(&dir.path().join("t.parquet.gz"))
            .expect_err("compressed parquet")
            .to_string();
        assert!(
            err.contains("t.parquet.gz") && err.contains("gunzip"),
            "{err}"
        );
    }
}
