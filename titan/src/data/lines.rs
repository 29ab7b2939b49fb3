//! Reading a file line by line from any byte offset, each line checked as UTF-8: what the
//! text and JSONL readers share.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// A file's lines from a byte offset, counting offsets and (1-based) line numbers.
#[derive(Debug)]
pub(crate) struct LineReader {
    path: PathBuf,
    reader: BufReader<File>,
    offset: u64,
    line_number: u64,
    line: Vec<u8>,
}

impl LineReader {
    /// Opens `path` at byte `offset`, where line `line_number` starts (`(0, 1)`: the start).
    pub(crate) fn open(path: &Path, offset: u64, line_number: u64) -> Result<Self> {
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
            offset,
            line_number: line_number.max(1),
            line: Vec::new(),
        })
    }

    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Byte offset and line number of the next unread line.
    pub(crate) fn position(&self) -> (u64, u64) {
        (self.offset, self.line_number)
    }

    /// The next line, without its `\n` or `\r\n`, and its line number; `None` at the end.
    /// Invalid UTF-8 is an error naming the file, the line and the byte offset.
    pub(crate) fn next_line(&mut self) -> Result<Option<(&str, u64)>> {
        self.line.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.line)
            .map_err(|e| Error::io(&self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        let (start, number) = (self.offset, self.line_number);
        self.offset += n as u64;
        self.line_number += 1;
        let line = std::str::from_utf8(&self.line).map_err(|e| {
            Error::Data(format!(
                "{}:{number}: invalid UTF-8 at byte offset {}",
                self.path.display(),
                start + e.valid_up_to() as u64
            ))
        })?;
        Ok(Some((line.trim_end_matches(['\n', '\r']), number)))
    }
}
