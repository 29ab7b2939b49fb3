//! Mistakes found before step 1, not after the user has waited for the run: validation data
//! with no documents (a tiny corpus, an empty `--val-data`), a data file whose first record
//! does not read, settings out of range.

use std::path::Path;

use anyhow::{Context, Result, ensure};

mod common;

#[allow(dead_code)]
#[path = "../experiments/tiny_llama.rs"]
mod tiny_llama;

/// tiny_llama shrunk for a test (`common::run_shrunk`), 3 steps in `dir`, with `extra` flags.
fn run(dir: &Path, extra: &[&str]) -> titan::Result<()> {
    common::run_shrunk::<tiny_llama::TinyLlama>(dir, 3, extra)
}

/// Whether `dir`'s metrics hold any step: a run that failed before step 1 has none.
fn trained(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("metrics.jsonl")).is_ok_and(|m| m.contains("\"step\""))
}

#[test]
fn validation_data_without_documents_stops_the_run_before_step_1() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // Three documents: every 20th is held out for validation, so there is none.
    let small = dir.path().join("small.txt");
    std::fs::write(
        &small,
        "A fox ran.\n<|endoftext|>\nA hen sat.\n<|endoftext|>\nA cat slept.\n",
    )?;
    let small = small.to_str().context("utf8 path")?;
    let out = dir.path().join("split");
    let err = run(&out, &["--data", small])
        .expect_err("no validation documents")
        .to_string();
    ensure!(
        err.contains("validation data could not give its first batch")
            && err.contains("every 20th document"),
        "{err}"
    );
    // What to do about it: the split's rule, --val-data, and how a text file's documents are
    // separated (a file of blank-line paragraphs is one document).
    ensure!(
        err.contains("fewer than 20 documents may give it none")
            && err.contains("--val-data")
            && err.contains("`<|endoftext|>` (dataset.delimiter)"),
        "{err}"
    );
    ensure!(!trained(&out));

    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "")?;
    let empty = empty.to_str().context("utf8 path")?;
    let out = dir.path().join("empty");
    let err = run(&out, &["--data", small, "--val-data", empty])
        .expect_err("an empty --val-data")
        .to_string();
    ensure!(
        err.contains("empty.txt") && err.contains("no documents"),
        "{err}"
    );
    ensure!(!trained(&out));
    Ok(())
}

/// A section's value out of range is refused as its overrides are applied, by the section's
/// key, before the tokenizer trains; a `seq_len` the model cannot hold, before the loaders and
/// the optimizer are built; a schedule that ends before the run is warned about (not tested
/// here: a warning).
#[test]
fn a_sections_bad_value_is_named_by_its_key_before_anything_is_built() -> Result<()> {
    let dir = tempfile::tempdir()?;
    for (flag, expected) in [
        ("llama.num_attention_heads=3", "`llama.hidden_size` = "),
        ("adamw.betas=[0.9, 1.0]", "`adamw.betas` = [0.9, 1]"),
        ("schedule.min_lr_ratio=2", "`schedule.min_lr_ratio` = 2"),
        ("llama.rope_theta=0", "`llama.rope_theta` = 0"),
        ("bpe.vocab_size=100", "`bpe.vocab_size` = 100"),
    ] {
        let out = dir.path().join(flag.split('=').next().context("key")?);
        let err = run(&out, &["--set", flag]).expect_err(flag).to_string();
        ensure!(err.contains(expected), "{flag}: {err}");
        ensure!(
            !out.join("tokenizer.json").exists(),
            "{flag}: the tokenizer trained before the error"
        );
    }
    let out = dir.path().join("seq");
    let err = run(&out, &["--set", "training.seq_len=4096"])
        .expect_err("seq_len past the positions")
        .to_string();
    ensure!(
        err.contains("training.seq_len 4096 exceeds the model's max positions"),
        "{err}"
    );
    // Empty paths (an unset shell variable) are not the working directory.
    let err = run(&dir.path().join("empty"), &["--data", ""])
        .expect_err("an empty --data")
        .to_string();
    ensure!(err.contains("`training.data` = \"\""), "{err}");
    Ok(())
}

#[test]
fn a_file_whose_first_record_does_not_read_is_refused_when_named() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("latin1.txt");
    std::fs::write(&bad, b"Caf\xe9 au lait.\n<|endoftext|>\nMore.\n")?;
    let source = titan::data::DataSource::files(&bad, titan::data::Split::Train);
    let err = source.expect_err("not UTF-8").to_string();
    ensure!(err.contains("latin1.txt"), "{err}");
    Ok(())
}

/// A file with no document among good ones, and a delimiter that could never match, stop the
/// run before step 1, each named (not hours in, when a pass reaches the file).
#[test]
fn a_blank_file_and_a_delimiter_that_cannot_match_are_refused_at_start() -> Result<()> {
    use titan::data::{DataSource, Split};
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir(&data)?;
    std::fs::write(
        data.join("a.txt"),
        "A fox ran.\n<|endoftext|>\nA hen sat.\n",
    )?;
    std::fs::write(data.join("b.txt"), "  \n\n<|endoftext|>\n\n")?;
    let err = DataSource::files(&data, Split::Train)
        .expect_err("a file with no document")
        .to_string();
    ensure!(
        err.contains("b.txt") && err.contains("no documents"),
        "{err}"
    );
    let good = data.join("a.txt");
    for bad in ["", "  ", "<|a|>\n<|b|>", " <|endoftext|>"] {
        let err = DataSource::files_with(&good, Split::All, bad, "text", 1 << 20)
            .expect_err("a delimiter that cannot match")
            .to_string();
        ensure!(
            err.contains("dataset.delimiter") && err.contains(&format!("{bad:?}")),
            "{bad:?}: {err}"
        );
    }
    Ok(())
}
