//! Memory stays bounded for any input: a 200 MB text file with no newline streams as documents
//! of at most `dataset.max_document_bytes`, and a 100 MB JSONL line is an error naming the file
//! and the line, not an allocation of its size. Its own test binary, so the peak resident
//! memory it reads is this test's alone.

use std::io::Write;

use anyhow::{Result, ensure};
use titan::Dataset;
use titan::data::{DataSource, Documents, MAX_DOCUMENT_BYTES, Split};
use titan::tch::Device;

/// Writes `bytes` bytes of `fill` to `path` in 1 MB writes, then `tail`.
fn write_big(path: &std::path::Path, prefix: &[u8], bytes: usize, tail: &[u8]) -> Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    file.write_all(prefix)?;
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..bytes >> 20 {
        file.write_all(&chunk)?;
    }
    file.write_all(tail)?;
    Ok(())
}

#[test]
fn huge_documents_are_cut_or_refused_within_a_bounded_memory() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dims = titan::ParallelDims::new(&titan::LocalEnv::single(), Device::Cpu)?;
    let before = titan::metrics::max_rss_gib();

    // 200 MB, one line, no delimiter: 25 documents of at most 8 MiB.
    let line = dir.path().join("one_line.txt");
    write_big(&line, b"", 200 << 20, b"")?;
    let source = DataSource::files(&line, Split::All)?;
    let mut docs = Documents::new(&dims, source, 0, 0)?;
    let (mut total, mut longest) = (0usize, 0usize);
    while docs.epoch() == 0 {
        let doc = docs.next_document()?;
        total += doc.len();
        longest = longest.max(doc.len());
    }
    ensure!(total >= 200 << 20, "read {total} bytes of the first pass");
    ensure!(
        longest <= MAX_DOCUMENT_BYTES,
        "a document of {longest} bytes"
    );
    let after_text = titan::metrics::max_rss_gib();

    // A JSONL line of 100 MB: an error naming the file and the line, read in bounded pieces.
    let jsonl = dir.path().join("huge.jsonl");
    write_big(
        &jsonl,
        b"{\"text\": \"ok\"}\n{\"text\": \"",
        100 << 20,
        b"\"}\n",
    )?;
    let source = DataSource::files(&jsonl, Split::All)?;
    let mut docs = Documents::new(&dims, source, 0, 0)?;
    ensure!(docs.next_document()? == "ok");
    let err = docs
        .next_document()
        .expect_err("a line over the bound")
        .to_string();
    ensure!(
        err.contains("huge.jsonl:2") && err.contains("max_document_bytes"),
        "{err}"
    );
    let after = titan::metrics::max_rss_gib();
    let grew = |from: f64, to: f64| (to - from) * 1024.0;
    println!(
        "peak RSS {before:.3} GiB at start, +{:.0} MiB after the 200 MB line, +{:.0} MiB after \
         the 100 MB JSONL line",
        grew(before, after_text),
        grew(after_text, after)
    );
    // Whole-line reading would need 200 MB for the line and as much again for its document.
    ensure!(
        grew(before, after) < 128.0,
        "peak RSS grew by {:.0} MiB",
        grew(before, after)
    );
    Ok(())
}
