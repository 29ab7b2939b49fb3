//! Streaming a plain-text file whose documents are separated by a delimiter line, one document
//! at a time, from any byte offset.

use std::path::Path;

use super::lines::LineReader;
use crate::Result;

/// The document separator of TinyStories and GPT-2 style corpora.
pub const DEFAULT_DELIMITER: &str = "<|endoftext|>";

/// A document longer than this many bytes is cut at the next line boundary and read as several
/// documents, so one delimiter-less file never has to fit in memory.
pub const MAX_DOCUMENT_BYTES: usize = 8 << 20;

/// Reads documents from a text file, keeping the byte offset where the next one starts.
#[derive(Debug)]
pub(crate) struct TextReader {
    lines: LineReader,
    delimiter: String,
}

impl TextReader {
    /// Opens `path` at byte `offset` (0, or a position an earlier reader reported).
    pub(crate) fn open(path: &Path, delimiter: &str, offset: u64) -> Result<Self> {
        Ok(Self {
            lines: LineReader::open(path, offset, 1)?,
            delimiter: delimiter.to_string(),
        })
    }

    /// Byte offset of the next unread line.
    pub(crate) fn offset(&self) -> u64 {
        self.lines.position().0
    }

    /// The next non-blank document, trimmed; `None` at the end of the file. Invalid UTF-8 is an
    /// error naming the file and the byte offset.
    pub(crate) fn next_document(&mut self) -> Result<Option<String>> {
        let mut doc = String::new();
        while let Some((line, _)) = self.lines.next_line()? {
            if line.trim() == self.delimiter {
                if !doc.trim().is_empty() {
                    break;
                }
                doc.clear();
                continue;
            }
            doc.push_str(line);
            doc.push('\n');
            if doc.len() >= MAX_DOCUMENT_BYTES && !doc.trim().is_empty() {
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
        let mut reader = TextReader::open(path, DEFAULT_DELIMITER, offset)?;
        let mut docs = Vec::new();
        while let Some(doc) = reader.next_document()? {
            docs.push((doc, reader.offset()));
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
