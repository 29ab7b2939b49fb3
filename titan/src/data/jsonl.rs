//! Streaming a JSON Lines file: one object per line, the document in a named string field.

use std::path::Path;

use super::lines::LineReader;
use crate::{Error, Result};

/// Reads documents from a JSONL file, keeping the byte offset and line number of the next one.
#[derive(Debug)]
pub(crate) struct JsonlReader {
    lines: LineReader,
    field: String,
    max_document_bytes: usize,
}

impl JsonlReader {
    /// Opens `path` at byte `offset`, which starts line `line_number` (1-based); `(0, 1)` is
    /// the start of the file.
    pub(crate) fn open(
        path: &Path,
        field: &str,
        offset: u64,
        line_number: u64,
        max_document_bytes: usize,
    ) -> Result<Self> {
        Ok(Self {
            lines: LineReader::open(path, offset, line_number, max_document_bytes)?,
            field: field.to_string(),
            max_document_bytes,
        })
    }

    /// Byte offset and 1-based line number of the next unread line.
    pub(crate) fn position(&self) -> (u64, u64) {
        self.lines.position()
    }

    /// The next document (blank lines, blank documents and null fields skipped, the first null
    /// of the file with a warning); `None` at the end. A line that is not JSON, not an object,
    /// or lacks the field is an error naming file and line.
    pub(crate) fn next_document(&mut self) -> Result<Option<String>> {
        let field = self.field.as_str();
        loop {
            let path = self.lines.path().display().to_string();
            let max = self.max_document_bytes;
            let Some(piece) = self.lines.next_piece()? else {
                return Ok(None);
            };
            let (line, number) = (piece.text, piece.number);
            let where_ = || format!("{path}:{number}");
            if !piece.ends_line {
                return Err(Error::Data(format!(
                    "{} (byte offset {}): the line is longer than dataset.max_document_bytes = \
                     {max}; split the document, or raise the bound",
                    where_(),
                    piece.offset
                )));
            }
            if line.trim().is_empty() {
                continue;
            }
            let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
                Error::Data(format!(
                    "{}: not valid JSON: {e}{}",
                    where_(),
                    not_lines_hint(line, e.is_eof(), number)
                ))
            })?;
            let serde_json::Value::Object(object) = value else {
                return Err(Error::Data(format!(
                    "{}: expected a JSON object with a `{field}` field{}",
                    where_(),
                    not_lines_hint(line, false, number)
                )));
            };
            let Some(text) = object.get(field) else {
                let fields: Vec<&str> = object.keys().map(String::as_str).collect();
                return Err(Error::Data(format!(
                    "{}: no field `{field}`; the line has fields: {}",
                    where_(),
                    fields.join(", ")
                )));
            };
            // A hole in the data, not a document: skipped, the first one said.
            if text.is_null() {
                if super::said::first_time(self.lines.path(), "null") {
                    tracing::warn!(
                        "{}: field `{field}` is null: skipped (and any later null of this file)",
                        where_()
                    );
                }
                continue;
            }
            let serde_json::Value::String(text) = text else {
                // The value as JSON, cut to a readable length (it may be a whole document).
                let mut value = text.to_string();
                if value.len() > 80 {
                    let cut = (0..=77)
                        .rev()
                        .find(|&i| value.is_char_boundary(i))
                        .unwrap_or(0);
                    value.truncate(cut);
                    value.push_str("...");
                }
                return Err(Error::Data(format!(
                    "{}: field `{field}` is {value}, not a string",
                    where_()
                )));
            };
            let text = text.trim();
            if !text.is_empty() {
                return Ok(Some(text.to_string()));
            }
        }
    }
}

/// What line `number`, which is not one object, says of the file, when it tells: a JSON array
/// (a `.json` file of one array of documents), an object spread over lines (the first line ends
/// inside it: `cut`), or a file cut short (a later line does); empty otherwise.
fn not_lines_hint(line: &str, cut: bool, number: u64) -> &'static str {
    match line.trim_start().as_bytes().first() {
        Some(b'{') if cut && number > 1 => {
            "; the line ends inside its object: the file may be cut short (an interrupted \
             download or copy?)"
        }
        Some(b'[') => {
            "; this is a JSON array, and titan reads JSON Lines (one object per line): if the \
             file is one array of documents, write them one per line, e.g. \
             `jq -c '.[]' in.json > out.jsonl`"
        }
        Some(b'{') if cut => {
            "; an object spread over several lines (pretty-printed JSON), and titan reads JSON \
             Lines (one object per line): write each on one line, e.g. `jq -c . in.json > \
             out.jsonl`"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    fn all(path: &Path, field: &str) -> Result<Vec<String>> {
        let mut reader = JsonlReader::open(path, field, 0, 1, 1 << 20)?;
        let mut docs = Vec::new();
        while let Some(doc) = reader.next_document()? {
            docs.push(doc);
        }
        Ok(docs)
    }

    #[test]
    fn reads_the_field_and_resumes_at_a_position() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = write(
            dir.path(),
            "d.jsonl",
            "{\"text\": \"one\", \"id\": 1}\n\n{\"text\": \" two \"}\n{\"text\": \"\"}\n{\"text\": \"three\"}",
        );
        assert_eq!(all(&path, "text")?, ["one", "two", "three"]);
        let mut reader = JsonlReader::open(&path, "text", 0, 1, 1 << 20)?;
        reader.next_document()?;
        let (offset, line) = reader.position();
        let mut resumed = JsonlReader::open(&path, "text", offset, line, 1 << 20)?;
        assert_eq!(resumed.next_document()?.as_deref(), Some("two"));
        Ok(())
    }

    #[test]
    fn bad_lines_name_file_line_and_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = write(
            dir.path(),
            "bad.jsonl",
            "{\"text\": \"ok\"}\n{\"text\": oops}\n",
        );
        let err = all(&bad, "text").expect_err("bad json").to_string();
        assert!(
            err.contains("bad.jsonl:2") && err.contains("not valid JSON"),
            "{err}"
        );
        // One JSON array, on one line or pretty-printed, and a pretty-printed object: named as
        // what they are, with the way to JSON Lines.
        for (name, text) in [
            ("one-line.json", "[{\"text\": \"a\"}, {\"text\": \"b\"}]\n"),
            ("pretty.json", "[\n  {\n    \"text\": \"a\"\n  }\n]\n"),
        ] {
            let err = all(&write(dir.path(), name, text), "text")
                .expect_err("an array")
                .to_string();
            assert!(
                err.contains(&format!("{name}:1"))
                    && err.contains("JSON array")
                    && err.contains("jq -c"),
                "{err}"
            );
        }
        let pretty = write(dir.path(), "object.json", "{\n  \"text\": \"a\"\n}\n");
        let err = all(&pretty, "text").expect_err("spread").to_string();
        assert!(
            err.contains("object.json:1") && err.contains("several lines"),
            "{err}"
        );
        // A last line cut short is not taken for pretty-printing.
        let cut = write(
            dir.path(),
            "cut.jsonl",
            "{\"text\": \"a\"}\n{\"text\": \"ab",
        );
        let err = all(&cut, "text").expect_err("cut").to_string();
        assert!(
            err.contains("cut.jsonl:2") && err.contains("cut short"),
            "{err}"
        );
        let other = write(dir.path(), "other.jsonl", "{\"body\": \"x\", \"id\": 3}\n");
        let err = all(&other, "text").expect_err("missing field").to_string();
        assert!(
            err.contains("other.jsonl:1")
                && err.contains("no field `text`")
                && err.contains("body, id"),
            "{err}"
        );
    }
}
