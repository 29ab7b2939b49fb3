//! The data path on real text (`../shared/data`, skipped with a message when absent): the three
//! formats read the same documents, ranks split them exactly, a restored loader continues
//! exactly, and each kind of bad input gives one clear error.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use titan::data::{
    DataSource, Dataset, Documents, HfConvention, Layout, Split, TitanConvention, TokenLoader,
    parquet::write_documents,
};
use titan::tch::{Device, Tensor};
use titan::{
    BpeConfig, BpeTokenizer, Dataloader, Llama, LlamaConfig, LocalEnv, ParallelDims, Tokenizer,
    model::check_fits,
};

fn shared_train() -> Option<PathBuf> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/tinystories_train_2mib.txt");
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipping: {} is absent", path.display());
        None
    }
}

fn dims(rank: usize, world: usize) -> Result<ParallelDims> {
    Ok(ParallelDims::new(
        &LocalEnv::simulated(rank, world),
        Device::Cpu,
    )?)
}

fn write_jsonl(path: &Path, docs: &[String]) -> Result<()> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    for doc in docs {
        writeln!(file, "{}", serde_json::json!({ "id": 1, "text": doc }))?;
    }
    file.flush()?;
    Ok(())
}

/// One pass of a rank's share, in order.
fn one_epoch(source: &DataSource, rank: usize, world: usize) -> Result<Vec<String>> {
    let mut docs = Documents::new(&dims(rank, world)?, source.clone(), 0, 0)?;
    let mut out = Vec::new();
    loop {
        let doc = docs.next_document()?;
        if docs.epoch() > 0 {
            return Ok(out);
        }
        out.push(doc);
    }
}

#[test]
fn the_three_formats_read_the_same_documents_and_train_the_same_tokenizer() -> Result<()> {
    let Some(txt) = shared_train() else {
        return Ok(());
    };
    let docs = DataSource::files(&txt, Split::All)?.sample(usize::MAX)?;
    assert!(docs.len() > 2_000, "{} documents", docs.len());
    let dir = tempfile::tempdir()?;
    let jsonl = dir.path().join("stories.jsonl");
    write_jsonl(&jsonl, &docs)?;
    let parquet = dir.path().join("stories.parquet");
    write_documents(&parquet, "text", &docs, 500)?;

    let probe = "Once upon a time, a little girl named Lily found a shiny red ball in the park.";
    let mut ids = Vec::new();
    for path in [&txt, &jsonl, &parquet] {
        let source = DataSource::files(path, Split::Train)?;
        let sample = source.sample(1_000)?;
        assert_eq!(sample.len(), 1_000);
        let config = BpeConfig {
            path: dir.path().join("tok.json"),
            ..BpeConfig::default()
        };
        let tokenizer = BpeTokenizer::train(&config, sample)?;
        assert_eq!(tokenizer.vocab_size(), 2_000, "{}", path.display());
        ids.push(tokenizer.encode(probe)?);
    }
    assert_eq!(ids[0], ids[1], "txt vs jsonl");
    assert_eq!(ids[0], ids[2], "txt vs parquet");
    Ok(())
}

#[test]
fn two_ranks_read_disjoint_documents_that_make_up_the_corpus() -> Result<()> {
    let Some(txt) = shared_train() else {
        return Ok(());
    };
    // One file: ranks split documents.
    let source = DataSource::files(&txt, Split::All)?;
    let all = one_epoch(&source, 0, 1)?;
    let (a, b) = (one_epoch(&source, 0, 2)?, one_epoch(&source, 1, 2)?);
    assert_eq!(a.len() + b.len(), all.len());
    let a_set: HashSet<&String> = a.iter().collect();
    assert!(b.iter().all(|d| !a_set.contains(d)), "ranks overlap");
    let mut union: Vec<&String> = a.iter().chain(&b).collect();
    union.sort();
    let mut expected: Vec<&String> = all.iter().collect();
    expected.sort();
    assert_eq!(union, expected);

    // Four shards: ranks split files.
    let dir = tempfile::tempdir()?;
    for (i, shard) in all.chunks(all.len().div_ceil(4)).enumerate() {
        write_jsonl(&dir.path().join(format!("shard-{i}.jsonl")), shard)?;
    }
    let shards = DataSource::files(&dir.path().join("shard-*.jsonl"), Split::All)?;
    let (a, b) = (one_epoch(&shards, 0, 2)?, one_epoch(&shards, 1, 2)?);
    let mut union: Vec<&String> = a.iter().chain(&b).collect();
    union.sort();
    assert_eq!(union, expected);
    let a_set: HashSet<&String> = a.iter().collect();
    assert!(b.iter().all(|d| !a_set.contains(d)), "ranks overlap");
    Ok(())
}

fn tokenizer(dir: &Path, source: &DataSource) -> Result<BpeTokenizer> {
    let config = BpeConfig {
        vocab_size: 512,
        path: dir.join("tok.json"),
        ..BpeConfig::default()
    };
    Ok(BpeTokenizer::train(&config, source.sample(300)?)?)
}

fn ids(t: &Tensor) -> Result<Vec<i64>> {
    Ok(Vec::<i64>::try_from(&t.flatten(0, -1))?)
}

/// Serves `n` batches as (inputs, labels) id vectors.
fn serve<L>(loader: &mut L, n: usize) -> Result<Vec<(Vec<i64>, Vec<i64>)>>
where
    L: Dataloader,
    L::Batch: titan::Batch<Input = titan::data::TokenIds>,
    <L::Batch as titan::Batch>::Labels: AsRef<Tensor>,
{
    let mut out = Vec::new();
    for _ in 0..n {
        let (input, labels) = titan::Batch::into_parts(loader.next_batch()?);
        out.push((ids(&input.0)?, ids(labels.as_ref())?));
    }
    Ok(out)
}

fn check_resume<C: titan::data::Convention>(layout: Layout) -> Result<()>
where
    C::Batch: titan::Batch<Input = titan::data::TokenIds>,
    <C::Batch as titan::Batch>::Labels: AsRef<Tensor>,
{
    let Some(txt) = shared_train() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let source = DataSource::files(&txt, Split::Train)?;
    let tok = tokenizer(dir.path(), &source)?;
    let dims = dims(1, 2)?;
    let make = || -> Result<TokenLoader<Documents, BpeTokenizer, C>> {
        let docs = Documents::new(&dims, source.clone(), 256, 42)?;
        Ok(TokenLoader::new(&dims, docs, tok.clone(), layout, 128, 4)?)
    };
    let mut run = make()?;
    serve(&mut run, 13)?;
    let saved = serde_json::to_string(&run.state())?;
    let expected = serve(&mut run, 20)?;

    let mut resumed = make()?;
    resumed.load_state(serde_json::from_str(&saved)?)?;
    let got = serve(&mut resumed, 20)?;
    assert_eq!(got.len(), 20);
    assert!(got == expected, "the resumed loader served other batches");
    // A fresh loader serves other batches than the resumed one: the state mattered.
    let mut fresh = make()?;
    assert!(serve(&mut fresh, 20)? != expected);
    Ok(())
}

#[test]
fn a_restored_loader_serves_the_next_20_batches_of_the_uninterrupted_run() -> Result<()> {
    check_resume::<HfConvention>(Layout::Packed)?;
    check_resume::<TitanConvention>(Layout::Padded)
}

fn data_error(result: titan::Result<impl std::fmt::Debug>) -> String {
    result.expect_err("bad input must fail").to_string()
}

fn read_all(source: DataSource) -> titan::Result<Vec<String>> {
    let dims = ParallelDims::new(&LocalEnv::single(), Device::Cpu)?;
    let mut docs = Documents::new(&dims, source, 0, 0)?;
    (0..3).map(|_| docs.next_document()).collect()
}

#[test]
fn bad_input_gives_one_clear_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let write = |name: &str, bytes: &[u8]| -> Result<PathBuf> {
        let path = d.join(name);
        std::fs::write(&path, bytes)?;
        Ok(path)
    };

    let err = data_error(DataSource::files(&d.join("absent.txt"), Split::All));
    assert!(
        err.contains("absent.txt") && err.contains("No such file"),
        "{err}"
    );

    std::fs::create_dir(d.join("empty"))?;
    let err = data_error(DataSource::files(&d.join("empty"), Split::All));
    assert!(
        err.contains("empty") && err.contains("holds no data file"),
        "{err}"
    );

    let empty = write("empty.txt", b"\n\n")?;
    let err = data_error(read_all(DataSource::files(&empty, Split::All)?));
    assert!(
        err.contains("empty.txt") && err.contains("no documents"),
        "{err}"
    );

    let bad = write("bad.txt", b"a story\n<|endoftext|>\nthen \xc3\x28 broke")?;
    let err = data_error(read_all(DataSource::files(&bad, Split::All)?));
    assert!(
        err.contains("bad.txt") && err.contains("byte offset 27"),
        "{err}"
    );

    let json = write("bad.jsonl", b"{\"text\": \"fine\"}\n{\"text\": \"cut\n")?;
    let err = data_error(read_all(DataSource::files(&json, Split::All)?));
    assert!(
        err.contains("bad.jsonl:2") && err.contains("not valid JSON"),
        "{err}"
    );

    let field = write("field.jsonl", b"{\"story\": \"x\", \"id\": 1}\n")?;
    let err = data_error(DataSource::files(&field, Split::All));
    assert!(
        err.contains("field.jsonl:1")
            && err.contains("no field `text`")
            && err.contains("story, id"),
        "{err}"
    );

    let parquet = d.join("col.parquet");
    write_documents(&parquet, "story", &["once", "twice"], 10)?;
    let err = data_error(DataSource::files(&parquet, Split::All));
    assert!(
        err.contains("col.parquet") && err.contains("no column `text`") && err.contains("story"),
        "{err}"
    );

    // A tokenizer larger than the model's vocabulary, and a sequence longer than its positions.
    let docs: Vec<String> = (0..40)
        .map(|i| format!("story number {i} is short"))
        .collect();
    let tok = BpeTokenizer::train(
        &BpeConfig {
            vocab_size: 300,
            max_len: 64,
            path: d.join("tok.json"),
            ..BpeConfig::default()
        },
        &docs,
    )?;
    let small = LlamaConfig {
        vocab_size: 260,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        max_position_embeddings: 64,
        ..LlamaConfig::tiny()
    };
    let model = Llama::new(small.clone(), Device::Cpu)?;
    let err = data_error(check_fits(&tok, &model, 64));
    let vocab = format!("tokenizer vocab {}", tok.vocab_size());
    assert!(err.contains(&vocab) && err.contains("260"), "{err}");
    let model = Llama::new(small.with_tokenizer(&tok), Device::Cpu)?;
    let err = data_error(check_fits(&tok, &model, 128));
    assert!(err.contains("seq_len 128") && err.contains("64"), "{err}");
    Ok(())
}
