//! Streaming a plain-text file whose documents are separated by a delimiter line, one document
//! at a time, from any byte offset.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The document separator of TinyStories and GPT-2 style corpora.
pub const DEFAULT_DELIMITER: &str = "<|endoftext|>";

/// A document longer than this many bytes is cut at the next line boundary and read as several
/// documents, so one delimiter-less file never has to fit in memory.
pub const MAX_DOCUMENT_BYTES: usize = 8 << 20;

/// Reads documents from a text file, keeping the byte offset where the next one starts.
#[derive(Debug)]
pub(crate) struct TextReader {
    path: PathBuf,
    reader: BufReader<File>,
    delimiter: String,
    offset: u64,
    line: Vec<u8>,
}

impl TextReader {
    /// Opens `path` at byte `offset` (0, or a position an earlier reader reported).
    pub(crate) fn open(path: &Path, delimiter: &str, offset: u64) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        if offset > 0 {
            reader
                .seek(SeekFrom::Start(offset))
                .map_err(|e| Error::io(path, e))?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            reader,
            delimiter: delimiter.to_string(),
            offset,
            line: Vec::new(),
        })
    }

    /// Byte offset of the next unread line.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// The next non-blank document, trimmed; `None` at the end of the file. Invalid UTF-8 is an
    /// error naming the file and the byte offset.
    pub(crate) fn next_document(&mut self) -> Result<Option<String>> {
        let mut doc = String::new();
        loop {
            self.line.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.line)
                .map_err(|e| Error::io(&self.path, e))?;
            if n == 0 {
                break;
            }
            let start = self.offset;
            self.offset += n as u64;
            let line = std::str::from_utf8(&self.line).map_err(|e| {
                Error::Data(format!(
                    "{}: invalid UTF-8 at byte offset {}",
                    self.path.display(),
                    start + e.valid_up_to() as u64
                ))
            })?;
            let line = line.trim_end_matches(['\n', '\r']);
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
