//! Reading a file line by line from any byte offset, each line checked as UTF-8 and read in
//! pieces of bounded size (a newline-free file is never one allocation): what the text and
//! JSONL readers share. A compressed file (`.gz`, `.zst`) is decompressed as it is read, and its
//! offsets count the decompressed bytes.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::files::Compression;
use crate::{Error, Result};

/// A file's lines from a byte offset, counting offsets and (1-based) line numbers.
pub(crate) struct LineReader {
    path: PathBuf,
    reader: BufReader<Box<dyn Read + Send>>,
    offset: u64,
    line_number: u64,
    line: Vec<u8>,
    max_piece: usize,
}

/// One piece of a line: all of it, or, for a line longer than the reader's bound, the next
/// part (cut at a character boundary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece<'a> {
    /// The text, without the line's `\n` or `\r\n`.
    pub text: &'a str,
    /// The 1-based line it belongs to.
    pub number: u64,
    /// Byte offset where the piece starts.
    pub offset: u64,
    /// Whether the line ends with this piece.
    pub ends_line: bool,
}

/// The error of reading `path` near byte `at` of its text: for a compressed file whose stream
/// does not decode, that it is damaged, cut short or not of its extension's format (the
/// decoder's words, e.g. "incomplete deflate stream" or zstd's "Unknown frame descriptor", say
/// what, not why); any other, as the I/O error it is.
fn read_error(path: &Path, e: std::io::Error, at: u64) -> Error {
    use std::io::ErrorKind::{InvalidData, InvalidInput, Other, UnexpectedEof};
    // zstd's decoder reports its errors as `Other`, with no OS error behind them.
    let undecodable = matches!(e.kind(), InvalidData | InvalidInput | UnexpectedEof)
        || (e.kind() == Other && e.raw_os_error().is_none());
    let format = match Compression::of(path) {
        Compression::None => return Error::io(path, e),
        Compression::Gzip => "gzip",
        Compression::Zstd => "Zstandard",
    };
    if !undecodable {
        return Error::io(path, e);
    }
    Error::Data(format!(
        "{}: {e}, at byte {at} of its decompressed text: the compressed file is damaged or cut \
         short (an interrupted download or copy?), or not {format} data",
        path.display()
    ))
}

impl std::fmt::Debug for LineReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineReader")
            .field("path", &self.path)
            .field("offset", &self.offset)
            .field("line_number", &self.line_number)
            .finish_non_exhaustive()
    }
}

impl LineReader {
    /// Opens `path` (decompressing a `.gz` or `.zst`) at byte `offset` of its text, where line
    /// `line_number` starts (`(0, 1)`: the start); no piece it returns holds more than
    /// `max_piece` bytes (plus at most 3 to end a character).
    pub(crate) fn open(
        path: &Path,
        offset: u64,
        line_number: u64,
        max_piece: usize,
    ) -> Result<Self> {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let compression = Compression::of(path);
        let decoded: Box<dyn Read + Send> = match compression {
            Compression::None => {
                if offset > 0 {
                    file.seek(SeekFrom::Start(offset))
                        .map_err(|e| Error::io(path, e))?;
                }
                Box::new(file)
            }
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
            Compression::Zstd => {
                let mut decoder =
                    zstd::stream::read::Decoder::new(file).map_err(|e| Error::io(path, e))?;
                // Files written with `zstd --long` use windows past the default bound.
                decoder.window_log_max(31).map_err(|e| Error::io(path, e))?;
                Box::new(decoder)
            }
        };
        let mut reader = BufReader::with_capacity(1 << 20, decoded);
        if offset > 0 && compression != Compression::None {
            // A compressed stream cannot seek: what comes before the position is read through.
            let skipped = std::io::copy(&mut (&mut reader).take(offset), &mut std::io::sink())
                .map_err(|e| read_error(path, e, 0))?;
            if skipped < offset {
                return Err(Error::Data(format!(
                    "{}: a position at byte {offset} of its decompressed text, which holds only \
                     {skipped} bytes (the file was replaced since the position was saved)",
                    path.display()
                )));
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            reader,
            offset,
            line_number: line_number.max(1),
            line: Vec::new(),
            max_piece: max_piece.max(4),
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

    /// The next piece of a line: the whole line when it fits the bound, without its `\n` or
    /// `\r\n` (nor the file's byte-order mark); `None` at the end. Invalid UTF-8 is an error
    /// naming the file, the line and the byte offset.
    pub(crate) fn next_piece(&mut self) -> Result<Option<Piece<'_>>> {
        self.line.clear();
        let mut ends_line = false;
        loop {
            let buf = self
                .reader
                .fill_buf()
                .map_err(|e| read_error(&self.path, e, self.offset + self.line.len() as u64))?;
            if buf.is_empty() {
                // The end of the file ends its last line.
                ends_line = true;
                break;
            }
            let full = self.line.len() >= self.max_piece;
            // Past the bound, only the bytes that finish the last character are taken.
            let (take, newline) = if full {
                // At most 3 bytes finish the last character; a longer run of continuation
                // bytes is not UTF-8, and the check below reports it.
                let rest = buf
                    .iter()
                    .take(3)
                    .take_while(|&&b| b & 0xC0 == 0x80)
                    .count();
                // A line of exactly the bound ends here too.
                match (buf.get(rest), buf.get(rest + 1)) {
                    (Some(b'\n'), _) => (rest + 1, true),
                    (Some(b'\r'), Some(b'\n')) => (rest + 2, true),
                    _ => (rest, false),
                }
            } else {
                let room = self.max_piece - self.line.len();
                let window = &buf[..buf.len().min(room)];
                match window.iter().position(|&b| b == b'\n') {
                    Some(i) => (i + 1, true),
                    None => (window.len(), false),
                }
            };
            self.line.extend_from_slice(&buf[..take]);
            let more = take == buf.len();
            self.reader.consume(take);
            if newline {
                ends_line = true;
                break;
            }
            if full && !more {
                break;
            }
        }
        if self.line.is_empty() {
            return Ok(None);
        }
        let (start, number) = (self.offset, self.line_number);
        self.offset += self.line.len() as u64;
        if ends_line {
            self.line_number += 1;
        }
        let text = std::str::from_utf8(&self.line).map_err(|e| {
            // A UTF-16 byte-order mark says what the file is; other bytes may be any 8-bit code.
            let utf16 =
                start == 0 && matches!(self.line.get(..2), Some([0xFF, 0xFE] | [0xFE, 0xFF]));
            let hint = match utf16 {
                true => "the file is UTF-16 (its first bytes are UTF-16's byte-order mark)",
                false => "the file, or this part of it, is in another encoding (e.g. Latin-1)",
            };
            Error::Data(format!(
                "{}:{number}: invalid UTF-8 at byte offset {}: {hint}; titan reads UTF-8, e.g. \
                 `iconv -f ENCODING -t UTF-8 in > out`",
                self.path.display(),
                start + e.valid_up_to() as u64
            ))
        })?;
        // Only a line's end loses its `\n` or `\r\n`; a cut keeps every byte.
        let text = if ends_line {
            text.strip_suffix('\n')
                .map_or(text, |t| t.strip_suffix('\r').unwrap_or(t))
        } else {
            text
        };
        // A UTF-8 byte-order mark (as some Windows editors write) is not text.
        let text = if start == 0 {
            text.strip_prefix('\u{feff}').unwrap_or(text)
        } else {
            text
        };
        Ok(Some(Piece {
            text,
            number,
            offset: start,
            ends_line,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &[u8], max: usize) -> Result<Vec<(String, u64, bool)>> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("t.txt");
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        let mut reader = LineReader::open(&path, 0, 1, max)?;
        let mut out = Vec::new();
        while let Some(p) = reader.next_piece()? {
            out.push((p.text.to_string(), p.number, p.ends_line));
        }
        Ok(out)
    }

    /// Every piece of `path` from `(offset, line)`: its text, line number and offset.
    fn read_all(path: &Path, offset: u64, line: u64) -> Result<Vec<(String, u64, u64)>> {
        let mut reader = LineReader::open(path, offset, line, 64)?;
        let mut out = Vec::new();
        while let Some(p) = reader.next_piece()? {
            out.push((p.text.to_string(), p.number, p.offset));
        }
        Ok(out)
    }

    /// A gzip (one member or two), or Zstandard file reads as its text, with offsets into the
    /// text: opened at a position that reading reported, it goes on from there. A position past
    /// the text, and a stream cut short, are errors naming the file.
    #[test]
    fn compressed_files_read_as_their_text_from_any_position() -> Result<()> {
        use std::io::Write;
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let text = "first line\nsecond, longer line\n\nthird é\n".repeat(40);
        let write = |name: &str, bytes: &[u8]| -> Result<PathBuf> {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
            Ok(path)
        };
        let gzip = |part: &str| -> Result<Vec<u8>> {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder
                .write_all(part.as_bytes())
                .map_err(|e| Error::io("gzip", e))?;
            encoder.finish().map_err(|e| Error::io("gzip", e))
        };
        let plain = write("t.txt", text.as_bytes())?;
        let gz = write("t.jsonl.gz", &gzip(&text)?)?;
        let (head, tail) = text.split_at(301);
        let members = write("m.txt.gz", &[gzip(head)?, gzip(tail)?].concat())?;
        let zst = zstd::stream::encode_all(text.as_bytes(), 3).map_err(|e| Error::io("zstd", e))?;
        let zst = write("t.TXT.zst", &zst)?;
        let whole = read_all(&plain, 0, 1)?;
        let (_, line, offset) = whole[37].clone();
        assert!(offset > 0 && line > 1);
        for path in [&gz, &members, &zst] {
            assert_eq!(read_all(path, 0, 1)?, whole, "{}", path.display());
            assert_eq!(
                read_all(path, offset, line)?,
                whole[37..],
                "{}",
                path.display()
            );
        }
        // At the very end: nothing more; past it: the file changed.
        assert!(read_all(&gz, text.len() as u64, 200)?.is_empty());
        let err = LineReader::open(&zst, text.len() as u64 + 1, 1, 64)
            .expect_err("past the end")
            .to_string();
        assert!(
            err.contains("t.TXT.zst") && err.contains("decompressed"),
            "{err}"
        );
        // Cut short, each kind: reading it, or reading through it to a position past the cut.
        for (name, path) in [("cut.jsonl.gz", &gz), ("cut.txt.zst", &zst)] {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let cut = write(name, &bytes[..bytes.len() / 2])?;
            let err = read_all(&cut, 0, 1).expect_err("cut short").to_string();
            assert!(
                err.contains(name) && err.contains("damaged or cut short"),
                "{err}"
            );
            let err = LineReader::open(&cut, text.len() as u64 - 10, 1, 64)
                .expect_err("through the cut")
                .to_string();
            assert!(
                err.contains(name) && err.contains("damaged or cut short"),
                "{err}"
            );
        }
        // Not of its extension's format at all: plain text named `.gz` or `.zst`.
        for (name, format) in [("plain.jsonl.gz", "gzip"), ("plain.txt.zst", "Zstandard")] {
            let path = write(name, text.as_bytes())?;
            let err = read_all(&path, 0, 1)
                .expect_err("not compressed")
                .to_string();
            assert!(
                err.contains(name) && err.contains(&format!("or not {format} data")),
                "{err}"
            );
        }
        Ok(())
    }

    #[test]
    fn long_lines_come_in_bounded_pieces_cut_between_characters() -> Result<()> {
        let got = pieces("ab\nabcdefghij\néééé\nabcd\nend".as_bytes(), 4)?;
        let want = [
            ("ab", 1, true),
            ("abcd", 2, false),
            ("efgh", 2, false),
            ("ij", 2, true),
            ("éé", 3, false),
            ("éé", 3, true),
            ("abcd", 4, true),
            ("end", 5, true),
        ];
        let got: Vec<(&str, u64, bool)> =
            got.iter().map(|(t, n, e)| (t.as_str(), *n, *e)).collect();
        assert_eq!(got, want);
        // A line of exactly the bound ends with its `\r\n`; a cut keeps a lone `\r`.
        let got = pieces(b"abcd\r\nab\rcdef\n", 4)?;
        let got: Vec<(&str, bool)> = got.iter().map(|(t, _, e)| (t.as_str(), *e)).collect();
        assert_eq!(got, [("abcd", true), ("ab\rc", false), ("def", true)]);
        // A cut inside a character takes the rest of it: `é` is 2 bytes, 5 is mid-character.
        let got = pieces("aaaéb".as_bytes(), 4)?;
        assert_eq!(got[0].0, "aaaé");
        // Not UTF-8: the error names the line, the byte and, for UTF-16, the encoding.
        let err = pieces(b"ok\ncaf\xe9\n", 64)
            .expect_err("Latin-1")
            .to_string();
        assert!(
            err.contains(":2: invalid UTF-8 at byte offset 6") && err.contains("iconv"),
            "{err}"
        );
        let err = pieces(b"\xff\xfeh\0i\0", 64)
            .expect_err("UTF-16")
            .to_string();
        assert!(err.contains(":1:") && err.contains("UTF-16"), "{err}");
        // A byte-order mark starts no text; elsewhere U+FEFF is the text's own.
        let got = pieces("\u{feff}<|endoftext|>\nA\u{feff}\n".as_bytes(), 64)?;
        assert_eq!(got[0].0, "<|endoftext|>");
        assert_eq!(got[1].0, "A\u{feff}");
        Ok(())
    }
}
