//! Reading a plain-text corpus whose documents are separated by a delimiter line.

use std::path::Path;

use crate::{Error, Result};

/// The document separator of TinyStories and GPT-2 style corpora.
pub const DEFAULT_DELIMITER: &str = "<|endoftext|>";

/// Reads `path` and splits it into non-empty documents at lines equal to `delimiter`.
/// Errors name the file; invalid UTF-8 also names the byte offset.
pub fn read_documents(path: &Path, delimiter: &str) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::Data(format!(
            "{}: invalid UTF-8 at byte offset {}",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    let docs = split_documents(&text, delimiter);
    if docs.is_empty() {
        return Err(Error::Data(format!(
            "{}: no documents (the file is empty or holds only `{delimiter}` lines)",
            path.display()
        )));
    }
    Ok(docs)
}

/// Splits `text` at lines equal to `delimiter` (surrounding whitespace ignored), dropping blanks.
pub fn split_documents(text: &str, delimiter: &str) -> Vec<String> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.trim() == delimiter {
            push_doc(&mut docs, &mut current);
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    push_doc(&mut docs, &mut current);
    docs
}

fn push_doc(docs: &mut Vec<String>, current: &mut String) {
    let doc = current.trim();
    if !doc.is_empty() {
        docs.push(doc.to_string());
    }
    current.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_delimiter_lines_only() {
        let text = "one\nline <|endoftext|> inline\n<|endoftext|>\n\n two \n<|endoftext|>\n";
        let docs = split_documents(text, DEFAULT_DELIMITER);
        assert_eq!(docs, vec!["one\nline <|endoftext|> inline", "two"]);
    }

    #[test]
    fn invalid_utf8_names_file_and_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.txt");
        std::fs::write(&path, b"hello \xff world").expect("write");
        let err = read_documents(&path, DEFAULT_DELIMITER)
            .expect_err("invalid UTF-8 must fail")
            .to_string();
        assert!(
            err.contains("bad.txt") && err.contains("byte offset 6"),
            "{err}"
        );
    }

    #[test]
    fn empty_and_missing_files_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, "\n<|endoftext|>\n").expect("write");
        let err = read_documents(&empty, DEFAULT_DELIMITER).expect_err("empty");
        assert!(err.to_string().contains("no documents"), "{err}");
        let missing = dir.path().join("missing.txt");
        let err = read_documents(&missing, DEFAULT_DELIMITER).expect_err("missing");
        assert!(err.to_string().contains("missing.txt"), "{err}");
    }
}
