//! The data path on real text (`../shared/data`, skipped with a message when absent) and on
//! the built-in stories: the three formats read the same documents, ranks split them exactly,
//! a restored loader continues exactly, a read error loses nothing, and each kind of bad input
//! gives one clear error.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use titan::data::{
    DataSource, Dataset, Documents, HfConvention, Layout, Split, StoryConfig, TitanConvention,
    TokenLoader, parquet::write_documents,
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

/// Serves `before` batches, saves the loader's state, serves `after` more; a loader restored
/// from the saved state must serve those same `after` batches, and a fresh one others.
fn check_resume<C: titan::data::Convention>(
    source: &DataSource,
    layout: Layout,
    (seq_len, batch): (usize, usize),
    (before, after): (usize, usize),
) -> Result<()>
where
    C::Batch: titan::Batch<Input = titan::data::TokenIds>,
    <C::Batch as titan::Batch>::Labels: AsRef<Tensor>,
{
    let dir = tempfile::tempdir()?;
    let tok = tokenizer(dir.path(), source)?;
    let dims = dims(1, 2)?;
    let make = || -> Result<TokenLoader<Documents, BpeTokenizer, C>> {
        let docs = Documents::new(&dims, source.clone(), 256, 42)?;
        Ok(TokenLoader::new(
            &dims,
            docs,
            tok.clone(),
            layout,
            seq_len,
            batch,
        )?)
    };
    let mut run = make()?;
    serve(&mut run, before)?;
    let saved = serde_json::to_string(&run.state())?;
    let expected = serve(&mut run, after)?;

    let mut resumed = make()?;
    resumed.load_state(serde_json::from_str(&saved)?)?;
    let got = serve(&mut resumed, after)?;
    assert_eq!(got.len(), after);
    assert!(got == expected, "the resumed loader served other batches");
    // A fresh loader serves other batches than the resumed one: the state mattered.
    let mut fresh = make()?;
    assert!(serve(&mut fresh, after)? != expected);
    Ok(())
}

#[test]
fn a_restored_loader_serves_the_next_20_batches_of_the_uninterrupted_run() -> Result<()> {
    let Some(txt) = shared_train() else {
        return Ok(());
    };
    let source = DataSource::files(&txt, Split::Train)?;
    check_resume::<HfConvention>(&source, Layout::Packed, (128, 4), (13, 20))?;
    check_resume::<TitanConvention>(&source, Layout::Padded, (128, 4), (13, 20))
}

/// The built-in stories (no shared data needed), with batches large enough that the saved
/// position lies several of the reader's chunks in and the resumed batches span several more.
#[test]
fn a_restored_loader_continues_exactly_across_the_readers_chunks() -> Result<()> {
    let stories = StoryConfig {
        seed: 3,
        num_stories: 4_000,
    };
    let source = DataSource::stories(stories, Split::Train);
    check_resume::<HfConvention>(&source, Layout::Packed, (512, 8), (25, 30))?;
    check_resume::<TitanConvention>(&source, Layout::Padded, (512, 8), (40, 40))
}

/// Shards compressed as corpora ship them (C4's `.json.gz`, SlimPajama's `.jsonl.zst`, a gzip
/// of text) read the same documents as the plain shards, on one rank and split over two, and a
/// loader over them resumes exactly mid-file.
#[test]
fn compressed_shards_read_as_the_plain_ones_and_resume_exactly() -> Result<()> {
    let stories = StoryConfig {
        seed: 5,
        num_stories: 1_200,
    };
    let docs = DataSource::stories(stories, Split::All).sample(usize::MAX)?;
    let (plain, packed) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let text = |part: &[String]| -> Vec<u8> {
        part.iter()
            .map(|d| format!("{d}\n<|endoftext|>\n"))
            .collect::<String>()
            .into_bytes()
    };
    let jsonl = |part: &[String]| -> Result<Vec<u8>> {
        let path = plain.path().join("scratch.tmp");
        write_jsonl(&path, part)?;
        Ok(std::fs::read(&path)?)
    };
    let gzip = |bytes: &[u8]| -> Result<Vec<u8>> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes)?;
        Ok(encoder.finish()?)
    };
    let parts: Vec<&[String]> = docs.chunks(docs.len().div_ceil(3)).collect();
    let shards = [
        ("a.json", jsonl(parts[0])?, "a.json.gz"),
        ("b.jsonl", jsonl(parts[1])?, "b.jsonl.zst"),
        ("c.txt", text(parts[2]), "c.txt.gz"),
    ];
    for (name, bytes, compressed) in &shards {
        std::fs::write(plain.path().join(name), bytes)?;
        let squeezed = match compressed.ends_with(".zst") {
            true => zstd::stream::encode_all(&bytes[..], 3)?,
            false => gzip(bytes)?,
        };
        assert!(squeezed.len() < bytes.len());
        std::fs::write(packed.path().join(compressed), squeezed)?;
    }
    std::fs::remove_file(plain.path().join("scratch.tmp"))?;
    let (plain, packed) = (
        DataSource::files(plain.path(), Split::Train)?,
        DataSource::files(packed.path(), Split::Train)?,
    );
    let whole = one_epoch(&plain, 0, 1)?;
    assert!(whole.len() > 1_000, "{} documents", whole.len());
    assert_eq!(one_epoch(&packed, 0, 1)?, whole);
    for rank in 0..2 {
        assert_eq!(one_epoch(&packed, rank, 2)?, one_epoch(&plain, rank, 2)?);
    }
    check_resume::<HfConvention>(&packed, Layout::Packed, (128, 4), (13, 10))
}

/// Two ranks' loaders stopped mid-epoch resume as three: the tokenized documents the two had
/// pending are dealt among the three (none lost or doubled), the datasets take over the rest
/// of the pass, and the deal is the same every time.
#[test]
fn loaders_resume_on_another_number_of_ranks() -> Result<()> {
    let source = DataSource::stories(
        StoryConfig {
            seed: 4,
            num_stories: 400,
        },
        Split::Train,
    );
    let dir = tempfile::tempdir()?;
    let tok = tokenizer(dir.path(), &source)?;
    let make = |rank: usize,
                world: usize|
     -> Result<TokenLoader<Documents, BpeTokenizer, TitanConvention>> {
        let dims = dims(rank, world)?;
        let docs = Documents::new(&dims, source.clone(), 16, 42)?;
        Ok(TokenLoader::new(
            &dims,
            docs,
            tok.clone(),
            Layout::Packed,
            64,
            3,
        )?)
    };
    let mut states = Vec::new();
    for rank in 0..2 {
        let mut old = make(rank, 2)?;
        serve(&mut old, 4)?;
        states.push(old.state());
    }
    let mut pending: Vec<Vec<u32>> = states.iter().flat_map(|s| s.pending.clone()).collect();
    assert!(!pending.is_empty(), "nothing pending to deal");
    let mut dealt = Vec::new();
    for rank in 0..3 {
        let mut a = make(rank, 3)?;
        a.load_resharded(serde_json::from_str(&serde_json::to_string(&states)?)?)?;
        dealt.extend(a.state().pending);
        assert!(
            !a.state().dataset.leftovers.is_empty(),
            "rank {rank} was dealt nothing"
        );
        let mut b = make(rank, 3)?;
        b.load_resharded(states.clone())?;
        assert!(
            serve(&mut a, 6)? == serve(&mut b, 6)?,
            "rank {rank}'s deal changed"
        );
    }
    pending.sort();
    dealt.sort();
    assert_eq!(dealt, pending);
    Ok(())
}

/// JSONL files of stories (3 files: 150, 40 and 90), with the source over them and a tokenizer.
fn story_files(dir: &Path) -> Result<(DataSource, BpeTokenizer)> {
    let stories = DataSource::stories(
        StoryConfig {
            seed: 8,
            num_stories: 280,
        },
        Split::All,
    )
    .sample(280)?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let mut start = 0;
    for (i, n) in [150, 40, 90].into_iter().enumerate() {
        write_jsonl(
            &data.join(format!("part-{i}.jsonl")),
            &stories[start..start + n],
        )?;
        start += n;
    }
    let source = DataSource::files(&data, Split::Train)?;
    let tok = tokenizer(dir, &source)?;
    Ok((source, tok))
}

fn shard_config(dir: &Path) -> titan::data::DatasetConfig {
    titan::data::DatasetConfig {
        tokens_dir: Some(dir.join("tokens")),
        shuffle_buffer: 64,
        ..titan::data::DatasetConfig::default()
    }
}

/// Token shards give the loader exactly the batches the text gives, on each of two ranks, with
/// the shuffle buffer bounded by its documents or by its bytes (a shard document counts its
/// text's); a position saved while reading the text resumes on the shards, and one saved on
/// the shards resumes there exactly.
#[test]
fn token_shards_serve_the_texts_batches_and_resume_exactly() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (source, tok) = story_files(dir.path())?;
    let mut config = shard_config(dir.path());
    let batching = titan::data::Batching {
        batch_size: 3,
        seq_len: 64,
        seed: 5,
    };
    // Nothing built yet: the text is read.
    assert!(config.tokenized(&source, &tok, false)?.shards.is_none());
    config.pretokenize = true;
    let sharded = config.tokenized(&source, &tok, false)?;
    let shards = sharded.shards.clone().context("no shards")?;
    assert!(shards.tokens() > 10_000, "{} tokens", shards.tokens());
    config.pretokenize = false;
    // Found by the next run without asking.
    assert!(config.tokenized(&source, &tok, false)?.shards.is_some());
    // 64 documents, or about 4 stories' worth of bytes.
    for (rank, bytes) in [(0, None), (1, None), (0, Some(4_000)), (1, Some(4_000))] {
        let dims = dims(rank, 2)?;
        let config = titan::data::DatasetConfig {
            shuffle_buffer_bytes: bytes.unwrap_or(config.shuffle_buffer_bytes),
            ..config.clone()
        };
        // `source` alone would find the shards: the text is read with no shards dir.
        let text_only = titan::data::DatasetConfig {
            tokens_dir: Some(dir.path().join("none")),
            ..config.clone()
        };
        let loader =
            |source: &DataSource| -> Result<TokenLoader<Documents, BpeTokenizer, TitanConvention>> {
                let config = if source.shards.is_some() {
                    &config
                } else {
                    &text_only
                };
                let loader = config.train_loader(&dims, source, &tok, batching)?;
                assert_eq!(
                    loader_reads_shards(source, config, &tok)?,
                    source.shards.is_some()
                );
                Ok(loader)
            };
        let mut text = loader(&source)?;
        let mut ids = loader(&sharded)?;
        assert!(
            serve(&mut text, 30)? == serve(&mut ids, 30)?,
            "rank {rank}, byte bound {bytes:?}: other batches"
        );
        // The text's position, resumed on the shards, and the shards' own.
        let (from_text, from_ids) = (text.state(), ids.state());
        let expected = serve(&mut text, 10)?;
        let mut resumed = loader(&sharded)?;
        resumed.load_state(serde_json::from_str(&serde_json::to_string(&from_text)?)?)?;
        assert!(
            serve(&mut resumed, 10)? == expected,
            "rank {rank}: text → shards"
        );
        let mut resumed = loader(&sharded)?;
        resumed.load_state(serde_json::from_str(&serde_json::to_string(&from_ids)?)?)?;
        assert!(
            serve(&mut resumed, 10)? == expected,
            "rank {rank}: shards → shards"
        );
        // A position inside a shard does not fit the files: refused, saying how to rebuild.
        let mut plain = loader(&source)?;
        let err = plain
            .load_state(from_ids)
            .expect_err("shards → text")
            .to_string();
        assert!(
            err.contains("token shards") && err.contains("pretokenize"),
            "{err}"
        );
    }
    Ok(())
}

/// A truncated shard, a shard of another tokenizer and a changed data file: each is named, or
/// (changed file) its shard is not used.
#[test]
fn bad_token_shards_give_one_clear_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (source, tok) = story_files(dir.path())?;
    let mut config = shard_config(dir.path());
    config.pretokenize = true;
    let shards = config
        .tokenized(&source, &tok, false)?
        .shards
        .context("no shards")?;
    config.pretokenize = false;
    let find = || {
        titan::data::ShardSet::find(
            &source,
            &config.tokens_dir().unwrap_or_default(),
            &tok.identity().unwrap_or_default(),
        )
    };
    let file = |ext: &str| -> Result<PathBuf> {
        std::fs::read_dir(shards.dir())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == ext))
            .context("no shard file")
    };
    // Truncated: its size disagrees with its manifest.
    let tokens = file("tokens")?;
    let bytes = std::fs::read(&tokens)?;
    std::fs::write(&tokens, &bytes[..bytes.len() - 6])?;
    let err = find().expect_err("truncated").to_string();
    assert!(
        err.contains("truncated") && err.contains("pretokenize"),
        "{err}"
    );
    std::fs::write(&tokens, &bytes)?;
    assert!(matches!(find()?, titan::data::Lookup::Found(_)));
    // Another tokenizer's shard filed under this one's.
    let manifest = file("json")?;
    let text = std::fs::read_to_string(&manifest)?;
    let id = tok.identity().context("identity")?;
    std::fs::write(&manifest, text.replace(&id, "0123456789abcdef"))?;
    let err = find().expect_err("other tokenizer").to_string();
    assert!(
        err.contains("written with tokenizer 0123456789abcdef"),
        "{err}"
    );
    std::fs::write(&manifest, &text)?;
    // A data file that changed: its shard is stale, and the files are read.
    let part = source_files(&source)[1].clone();
    let mut f = std::fs::OpenOptions::new().append(true).open(&part)?;
    writeln!(f, "{}", serde_json::json!({ "text": "One more story." }))?;
    drop(f);
    assert!(matches!(
        find()?,
        titan::data::Lookup::Missing {
            missing: 1,
            files: 3
        }
    ));
    assert!(config.tokenized(&source, &tok, false)?.shards.is_none());
    Ok(())
}

/// Whether `config` reads `source` from token shards.
fn loader_reads_shards(
    source: &DataSource,
    config: &titan::data::DatasetConfig,
    tok: &BpeTokenizer,
) -> Result<bool> {
    Ok(config.tokenized(source, tok, false)?.shards.is_some())
}

/// A position written before documents were counted per file, past its first file, reads on
/// in the text (with separate validation data the count decides nothing there) but cannot be
/// placed in token shards: refused, saying so.
#[test]
fn an_old_position_past_its_first_file_is_not_placed_in_token_shards() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (source, tok) = story_files(dir.path())?;
    let source = DataSource {
        split: Split::All,
        ..source
    };
    let mut config = shard_config(dir.path());
    config.pretokenize = true;
    let sharded = config.tokenized(&source, &tok, false)?;
    assert!(sharded.shards.is_some());
    let dims = dims(0, 1)?;
    let mut old = serde_json::to_value(Documents::new(&dims, source.clone(), 0, 0)?.state())?;
    old["unit"] = 1.into();
    old["seen"] = 12.into();
    if let Some(map) = old.as_object_mut() {
        map.remove("unit_seen");
    }
    Documents::new(&dims, source, 0, 0)?.load_state(serde_json::from_value(old.clone())?)?;
    let err = Documents::new(&dims, sharded, 0, 0)?
        .load_state(serde_json::from_value(old)?)
        .expect_err("placed in shards")
        .to_string();
    assert!(
        err.contains("older titan") && err.contains("token shards"),
        "{err}"
    );
    Ok(())
}

fn source_files(source: &DataSource) -> Vec<PathBuf> {
    match &source.origin {
        titan::data::Origin::Files(files) => files.iter().map(|f| f.path.clone()).collect(),
        titan::data::Origin::Stories(_) => Vec::new(),
    }
}

/// Built-in stories whose reading fails once, at document `fail_at`.
struct FailsOnce {
    docs: Documents,
    read: u64,
    fail_at: Option<u64>,
}

impl Dataset for FailsOnce {
    type State = titan::data::DocumentsState;
    fn next_document(&mut self) -> titan::Result<String> {
        if self.fail_at == Some(self.read) {
            self.fail_at = None;
            return Err(titan::Error::Data("the disk hiccuped".into()));
        }
        self.read += 1;
        self.docs.next_document()
    }
    fn state(&self) -> Self::State {
        self.docs.state()
    }
    fn load_state(&mut self, state: Self::State) -> titan::Result<()> {
        self.docs.load_state(state)
    }
    fn epoch(&self) -> u64 {
        self.docs.epoch()
    }
}

/// The BPE tokenizer, whose `encode_batch` fails once, at call `fail_at`.
#[derive(Clone)]
struct FlakyTokenizer {
    inner: BpeTokenizer,
    calls: Arc<AtomicUsize>,
    fail_at: Option<usize>,
}

impl Tokenizer for FlakyTokenizer {
    fn encode(&self, text: &str) -> titan::Result<Vec<u32>> {
        self.inner.encode(text)
    }
    fn encode_batch(&self, texts: &[String]) -> titan::Result<Vec<Vec<u32>>> {
        if Some(self.calls.fetch_add(1, Ordering::SeqCst)) == self.fail_at {
            return Err(titan::Error::Tokenizer("the tokenizer hiccuped".into()));
        }
        self.inner.encode_batch(texts)
    }
    fn decode(&self, ids: &[u32]) -> titan::Result<String> {
        self.inner.decode(ids)
    }
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }
    fn max_len(&self) -> usize {
        self.inner.max_len()
    }
    fn eos_id(&self) -> Option<u32> {
        self.inner.eos_id()
    }
    fn pad_id(&self) -> Option<u32> {
        self.inner.pad_id()
    }
}

/// Serves 40 batches through errors (reading fails once at document `read_fails_at`,
/// tokenizing at call `encode_fails_at`) and checks they are the 40 batches of a run without
/// errors, with one error on the way.
fn check_errors_lose_nothing(
    layout: Layout,
    read_fails_at: Option<u64>,
    encode_fails_at: Option<usize>,
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let source = DataSource::stories(StoryConfig::default(), Split::Train);
    let tok = tokenizer(dir.path(), &source)?;
    let dims = dims(0, 1)?;
    let make = |read_fails_at, encode_fails_at| -> Result<TokenLoader<_, _, HfConvention>> {
        let docs = FailsOnce {
            docs: Documents::new(&dims, source.clone(), 64, 7)?,
            read: 0,
            fail_at: read_fails_at,
        };
        let tok = FlakyTokenizer {
            inner: tok.clone(),
            calls: Arc::new(AtomicUsize::new(0)),
            fail_at: encode_fails_at,
        };
        Ok(TokenLoader::new(&dims, docs, tok, layout, 512, 8)?)
    };
    let expected = serve(&mut make(None, None)?, 40)?;
    let mut flaky = make(read_fails_at, encode_fails_at)?;
    let (mut got, mut errors) = (Vec::new(), 0);
    while got.len() < 40 && errors < 5 {
        match flaky.next_batch() {
            Ok(batch) => {
                let (input, labels) = titan::Batch::into_parts(batch);
                got.push((ids(&input.0)?, ids(&labels.0)?));
            }
            Err(e) => {
                assert!(e.to_string().contains("hiccuped"), "{e}");
                errors += 1;
            }
        }
    }
    assert_eq!(errors, 1);
    assert!(
        got == expected,
        "batches were lost or repeated around the error"
    );
    Ok(())
}

#[test]
fn after_an_error_the_loader_goes_on_with_the_batches_that_would_have_followed() -> Result<()> {
    // Document 300 is in the reader's third chunk, well before the last the 40 batches take.
    check_errors_lose_nothing(Layout::Packed, Some(300), None)?;
    // The third chunk, read but not tokenized.
    check_errors_lose_nothing(Layout::Packed, None, Some(2))?;
    // Padded rows take documents one by one: the error comes in the middle of a batch.
    check_errors_lose_nothing(Layout::Padded, Some(300), None)?;
    check_errors_lose_nothing(Layout::Padded, None, Some(2))
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

    // Refused when named, before any pass reaches it.
    let empty = write("empty.txt", b"\n\n")?;
    let err = data_error(DataSource::files(&empty, Split::All));
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
