//! Streaming a Parquet file: the documents are a string column, decoded a few hundred rows at a
//! time, one row group after another.

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::basic::Type as PhysicalType;
use parquet::column::reader::{ColumnReader, ColumnReaderImpl};
use parquet::data_type::ByteArrayType;
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::{Error, Result};

/// Rows decoded per read.
const ROWS_PER_READ: usize = 256;

/// Reads documents from one string column of a Parquet file, keeping the row group and row of
/// the next one.
pub(crate) struct ParquetReader {
    path: PathBuf,
    file: SerializedFileReader<File>,
    column: usize,
    max_def_level: i16,
    row_group: usize,
    row: u64,
    skip: u64,
    max_document_bytes: usize,
    reader: Option<ColumnReaderImpl<ByteArrayType>>,
    pending: VecDeque<Option<String>>,
}

impl std::fmt::Debug for ParquetReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetReader")
            .field("path", &self.path)
            .field("row_group", &self.row_group)
            .field("row", &self.row)
            .finish_non_exhaustive()
    }
}

fn parquet_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Data(format!("{}: {e}", path.display()))
}

impl ParquetReader {
    /// Opens `path` at `row` of `row_group` (`(0, 0)` is the start). A file that is not
    /// Parquet, or has no string column `column` (the error lists the columns), is an error.
    pub(crate) fn open(
        path: &Path,
        column: &str,
        row_group: u64,
        row: u64,
        max_document_bytes: usize,
    ) -> Result<Self> {
        let handle = File::open(path).map_err(|e| Error::io(path, e))?;
        let file = SerializedFileReader::new(handle)
            .map_err(|e| parquet_err(path, format_args!("not a readable Parquet file: {e}")))?;
        let schema = file.metadata().file_metadata().schema_descr();
        let columns = schema.columns();
        let Some(index) = columns.iter().position(|c| c.path().string() == column) else {
            let names: Vec<String> = columns.iter().map(|c| c.path().string()).collect();
            return Err(Error::Data(format!(
                "{}: no column `{column}`; the file has columns: {}",
                path.display(),
                names.join(", ")
            )));
        };
        let descr = &columns[index];
        if descr.physical_type() != PhysicalType::BYTE_ARRAY {
            return Err(Error::Data(format!(
                "{}: column `{column}` holds {}, not strings",
                path.display(),
                descr.physical_type()
            )));
        }
        Ok(Self {
            path: path.to_path_buf(),
            max_def_level: descr.max_def_level(),
            file,
            column: index,
            row_group: row_group as usize,
            row,
            skip: row,
            max_document_bytes,
            reader: None,
            pending: VecDeque::new(),
        })
    }

    /// Row group and row (within it) of the next unread document.
    pub(crate) fn position(&self) -> (u64, u64) {
        (self.row_group as u64, self.row)
    }

    /// The next non-blank document, trimmed; `None` after the last row group. Null values are
    /// skipped, the first of the file with a warning naming its row.
    pub(crate) fn next_document(&mut self) -> Result<Option<String>> {
        loop {
            if let Some(value) = self.pending.pop_front() {
                self.row += 1;
                match value {
                    Some(text) if text.len() > self.max_document_bytes => {
                        return Err(Error::Data(format!(
                            "{}: row group {}, row {}: the value is {} bytes, longer than \
                             dataset.max_document_bytes = {}; split the document, or raise \
                             the bound",
                            self.path.display(),
                            self.row_group,
                            self.row - 1,
                            text.len(),
                            self.max_document_bytes
                        )));
                    }
                    Some(text) if !text.trim().is_empty() => {
                        return Ok(Some(text.trim().to_string()));
                    }
                    Some(_) => continue,
                    // A hole in the data, not a document: skipped, the first one said.
                    None => {
                        if super::said::first_time(&self.path, "null") {
                            tracing::warn!(
                                "{}: row group {}, row {}: the value is null: skipped (and any \
                                 later null of this file)",
                                self.path.display(),
                                self.row_group,
                                self.row - 1
                            );
                        }
                        continue;
                    }
                }
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Decodes the next rows into `pending`; false at the end of the file.
    fn fill(&mut self) -> Result<bool> {
        loop {
            if self.row_group >= self.file.num_row_groups() {
                return Ok(false);
            }
            if self.reader.is_none() {
                let group = self
                    .file
                    .get_row_group(self.row_group)
                    .map_err(|e| parquet_err(&self.path, e))?;
                let column = group
                    .get_column_reader(self.column)
                    .map_err(|e| parquet_err(&self.path, e))?;
                let ColumnReader::ByteArrayColumnReader(mut reader) = column else {
                    return Err(parquet_err(&self.path, "the text column is not BYTE_ARRAY"));
                };
                if self.skip > 0 {
                    reader
                        .skip_records(self.skip as usize)
                        .map_err(|e| parquet_err(&self.path, e))?;
                    self.skip = 0;
                }
                self.reader = Some(reader);
            }
            let Some(reader) = self.reader.as_mut() else {
                continue;
            };
            let mut values = Vec::with_capacity(ROWS_PER_READ);
            let mut defs = Vec::with_capacity(ROWS_PER_READ);
            let def_levels = (self.max_def_level > 0).then_some(&mut defs);
            let (records, _, _) = reader
                .read_records(ROWS_PER_READ, def_levels, None, &mut values)
                .map_err(|e| parquet_err(&self.path, e))?;
            if records == 0 {
                self.reader = None;
                self.row_group += 1;
                self.row = 0;
                continue;
            }
            let mut values = values.into_iter();
            let max_def = self.max_def_level;
            let present = |i: usize| max_def == 0 || defs.get(i) == Some(&max_def);
            for i in 0..records {
                let value = if present(i) { values.next() } else { None };
                let text = match value {
                    Some(bytes) => Some(String::from_utf8(bytes.data().to_vec()).map_err(|e| {
                        parquet_err(
                            &self.path,
                            format_args!(
                                "row {} of row group {}: invalid UTF-8 at byte offset {}",
                                self.row + self.pending.len() as u64,
                                self.row_group,
                                e.utf8_error().valid_up_to()
                            ),
                        )
                    })?),
                    None => None,
                };
                self.pending.push_back(text);
            }
            return Ok(true);
        }
    }
}

/// Writes `documents` as an optional UTF-8 column `column` of a Snappy-compressed Parquet file,
/// `rows_per_group` rows per row group (for converting corpora and for tests). The file appears
/// whole or not at all: it is written beside `path` and renamed into place.
pub fn write_documents<S: AsRef<str>>(
    path: &Path,
    column: &str,
    documents: &[S],
    rows_per_group: usize,
) -> Result<()> {
    use parquet::basic::Compression;
    use parquet::data_type::ByteArray;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    use std::sync::Arc;

    if column.is_empty()
        || !column
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(Error::config(
            "parquet column",
            column,
            "use letters, digits and `_`",
        ));
    }
    let schema = parse_message_type(&format!(
        "message schema {{ OPTIONAL BYTE_ARRAY {column} (UTF8); }}"
    ))
    .map_err(|e| parquet_err(path, e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let partial = path.with_extension("parquet.partial");
    let handle = File::create(&partial).map_err(|e| Error::io(&partial, e))?;
    let write = || -> parquet::errors::Result<()> {
        let mut writer = SerializedFileWriter::new(handle, Arc::new(schema), Arc::new(props))?;
        for chunk in documents.chunks(rows_per_group.max(1)) {
            let values: Vec<ByteArray> = chunk
                .iter()
                .map(|d| ByteArray::from(d.as_ref().as_bytes().to_vec()))
                .collect();
            let defs = vec![1i16; values.len()];
            let mut group = writer.next_row_group()?;
            while let Some(mut col) = group.next_column()? {
                col.typed::<ByteArrayType>()
                    .write_batch(&values, Some(&defs), None)?;
                col.close()?;
            }
            group.close()?;
        }
        writer.close()?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&partial);
        return Err(parquet_err(path, e));
    }
    std::fs::rename(&partial, path).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(path: &Path, row_group: u64, row: u64) -> Result<Vec<(String, (u64, u64))>> {
        let mut reader = ParquetReader::open(path, "text", row_group, row, 1 << 20)?;
        let mut docs = Vec::new();
        while let Some(doc) = reader.next_document()? {
            docs.push((doc, reader.position()));
        }
        Ok(docs)
    }

    #[test]
    fn round_trips_across_row_groups_and_resumes_mid_group() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("d.parquet");
        let docs: Vec<String> = (0..700).map(|i| format!("document {i}")).collect();
        write_documents(&path, "text", &docs, 300)?;
        let read = all(&path, 0, 0)?;
        let texts: Vec<&String> = read.iter().map(|(d, _)| d).collect();
        assert_eq!(texts, docs.iter().collect::<Vec<_>>());
        // Resume after document 450: row group 1, row 151.
        let (g, r) = read[450].1;
        assert_eq!((g, r), (1, 151));
        assert_eq!(all(&path, g, r)?, read[451..]);
        Ok(())
    }

    #[test]
    fn a_null_value_is_skipped() -> Result<()> {
        use parquet::data_type::ByteArray;
        use parquet::file::writer::SerializedFileWriter;
        use parquet::schema::parser::parse_message_type;
        use std::sync::Arc;

        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let path = dir.path().join("holes.parquet");
        let write = || -> parquet::errors::Result<()> {
            let schema = parse_message_type("message s { OPTIONAL BYTE_ARRAY text (UTF8); }")?;
            let file = File::create(&path)?;
            let mut writer = SerializedFileWriter::new(file, Arc::new(schema), Default::default())?;
            let mut group = writer.next_row_group()?;
            while let Some(mut col) = group.next_column()? {
                // Rows: "first", null, "third".
                let values = [ByteArray::from("first"), ByteArray::from("third")];
                col.typed::<ByteArrayType>()
                    .write_batch(&values, Some(&[1, 0, 1]), None)?;
                col.close()?;
            }
            group.close()?;
            writer.close()?;
            Ok(())
        };
        write().map_err(|e| parquet_err(&path, e))?;
        let mut reader = ParquetReader::open(&path, "text", 0, 0, 1 << 20)?;
        assert_eq!(reader.next_document()?.as_deref(), Some("first"));
        assert_eq!(reader.next_document()?.as_deref(), Some("third"));
        assert_eq!(reader.next_document()?, None);
        Ok(())
    }

    #[test]
    fn missing_column_lists_the_columns_and_junk_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("d.parquet");
        write_documents(&path, "story", &["a", "b"], 10).expect("write");
        let err = ParquetReader::open(&path, "text", 0, 0, 1 << 20)
            .expect_err("missing column")
            .to_string();
        assert!(
            err.contains("d.parquet") && err.contains("no column `text`") && err.contains("story"),
            "{err}"
        );
        let junk = dir.path().join("junk.parquet");
        std::fs::write(&junk, "not parquet at all").expect("write");
        let err = ParquetReader::open(&junk, "text", 0, 0, 1 << 20)
            .expect_err("junk")
            .to_string();
        assert!(
            err.contains("junk.parquet") && err.contains("Parquet"),
            "{err}"
        );
    }
}
