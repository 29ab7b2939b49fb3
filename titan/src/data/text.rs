//! Streaming a plain-text file whose documents are separated by a delimiter line, one document
//! at a time, from any byte offset.

use std::path::Path;

use super::lines::LineReader;
use crate::Result;

/// The document separator of TinyStories and GPT-2 style corpora.
pub const DEFAULT_DELIMITER: &str = "<|endoftext|>";

/// The default bound of a document's size (`dataset.max_document_bytes`): a longer text
/// document is cut into documents of about this size (a line longer than it, into pieces), a
/// longer JSONL line or Parquet value is an error naming file and place, so memory stays
/// bounded for any input.
pub const MAX_DOCUMENT_BYTES: usize = 8 << 20;

/// Reads documents from a text file, keeping the byte offset where the next one starts.
#[derive(Debug)]
pub(crate) struct TextReader {
    lines: LineReader,
    delimiter: String,
    max_document_bytes: usize,
    /// Whether the next piece starts a line (only a whole line can be a delimiter); false
    /// after a document was cut inside a line.
    line_start: bool,
}

impl TextReader {
    /// Opens `path` at a position an earlier reader reported ([`TextReader::position`]; `(0,
    /// 0)`: the start); documents are cut at about `max_document_bytes`.
    pub(crate) fn open(
        path: &Path,
        delimiter: &str,
        (offset, mid_line): (u64, u64),
        max_document_bytes: usize,
    ) -> Result<Self> {
        Ok(Self {
            lines: LineReader::open(path, offset, 1, max_document_bytes)?,
            delimiter: delimiter.to_string(),
            max_document_bytes,
            line_start: mid_line == 0,
        })
    }

    /// Byte offset of the next unread byte, and 1 when it is inside a line (a document was cut
    /// there), else 0.
    pub(crate) fn position(&self) -> (u64, u64) {
        (self.lines.position().0, u64::from(!self.line_start))
    }

    /// The next non-blank document, trimmed; `None` at the end of the file. Invalid UTF-8 is an
    /// error naming the file and the byte offset.
    pub(crate) fn next_document(&mut self) -> Result<Option<String>> {
        let mut doc = String::new();
        while let Some(piece) = self.lines.next_piece()? {
            let whole = self.line_start && piece.ends_line;
            self.line_start = piece.ends_line;
            if whole && piece.text.trim() == self.delimiter {
                if !doc.trim().is_empty() {
                    break;
                }
                doc.clear();
                continue;
            }
            doc.push_str(piece.text);
            if piece.ends_line {
                doc.push('\n');
            }
            // Leading blank text is trimmed off anyway: dropping it keeps a run of blank lines
            // from growing `doc` past the bound.
            if doc.trim().is_empty() {
                doc.clear();
            } else if doc.len() >= self.max_document_bytes {
                break;
            }
        }
        let trimmed = doc.trim();
        Ok((!trimmed.is_empty()).then(|| trimmed.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    fn documents(path: &Path, offset: u64) -> Result<Vec<(String, u64)>> {
        let mut reader =
            TextReader::open(path, DEFAULT_DELIMITER, (offset, 0), MAX_DOCUMENT_BYTES)?;
        let mut docs = Vec::new();
        while let Some(doc) = reader.next_document()? {
            docs.push((doc, reader.position().0));
        }
        Ok(docs)
    }

    #[test]
    fn splits_at_delimiter_lines_only_and_resumes_at_an_offset() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("c.txt");
        let text = "one\r\nline <|endoftext|> inline\n<|endoftext|>\n\n two \n<|endoftext|>\nthree";
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        let docs = documents(&path, 0)?;
        let texts: Vec<&str> = docs.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(texts, ["one\nline <|endoftext|> inline", "two", "three"]);
        let resumed = documents(&path, docs[0].1)?;
        assert_eq!(resumed, docs[1..]);
        Ok(())
    }

    #[test]
    fn blank_runs_stay_bounded_and_a_cut_line_is_never_a_delimiter() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("c.txt");
        let x = "x".repeat(20);
        let text = format!("{}{x}<|endoftext|>\nnext\n", "\n".repeat(10_000));
        std::fs::write(&path, &text).map_err(|e| Error::io(&path, e))?;
        let mut reader = TextReader::open(&path, DEFAULT_DELIMITER, (0, 0), 20)?;
        // 10,000 blank lines are dropped as they come; the long line is cut at the bound, and
        // its tail, though equal to the delimiter, is text.
        assert_eq!(reader.next_document()?.as_deref(), Some(x.as_str()));
        assert_eq!(reader.position().1, 1, "mid-line");
        let saved = reader.position();
        let rest = reader.next_document()?;
        assert_eq!(rest.as_deref(), Some("<|endoftext|>\nnext"));
        let mut resumed = TextReader::open(&path, DEFAULT_DELIMITER, saved, 20)?;
        assert_eq!(
            resumed.next_document()?,
            rest,
            "a resume mid-line reads the same"
        );
        Ok(())
    }

    #[test]
    fn invalid_utf8_names_file_and_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.txt");
        std::fs::write(&path, b"fine\n<|endoftext|>\nhello \xff world").expect("write");
        let err = documents(&path, 0)
            .expect_err("invalid UTF-8 must fail")
            .to_string();
        assert!(
            err.contains("bad.txt") && err.contains("byte offset 25"),
            "{err}"
        );
    }
}
