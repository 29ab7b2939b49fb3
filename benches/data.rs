//! Tokenize + pack throughput (tokens/s) on the shared TinyStories sample, or on the built-in
//! stories (written to a JSONL file) when it is absent, and the same documents read from their
//! token shards (no tokenizer in the loop), against the tokens/s a tiny_llama training step
//! consumes on this machine, measured in the same run (CPU, batch 8 × 512); and how fast a
//! JSONL file of them is read plain, gzip- and Zstandard-compressed.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use titan::data::{
    Collator, DataSource, Dataloader, Dataset, Documents, HfConvention, HfLabels, Layout,
    MIN_CHUNK_BYTES, MIN_CHUNK_DOCS, ShardSet, Split, StoryConfig, TokenIds, TokenLoader,
};
use titan::tch::{Device, Kind, Tensor};
use titan::{
    AdamW, AdamWConfig, BpeConfig, BpeTokenizer, CausalLmLoss, Llama, LlamaConfig, LocalEnv, Loss,
    Model, Optimizer, ParallelDims, Tokenizer,
};

// What the experiment binaries allocate with (`titan::main!`), so both are measured alike.
#[global_allocator]
static ALLOCATOR: titan::experiment::MiMalloc = titan::experiment::MiMalloc;

const SEQ: usize = 512;
const BATCH: usize = 8;

/// A file source: the shared sample, or the built-in stories written into `dir`.
fn source(dir: &Path) -> DataSource {
    let shared =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/tinystories_train_2mib.txt");
    if shared.exists() {
        return DataSource::files(&shared, Split::Train).expect("shared corpus");
    }
    eprintln!("{} is absent: using the built-in stories", shared.display());
    let config = StoryConfig {
        seed: 0,
        num_stories: 20_000,
    };
    let stories = DataSource::stories(config, Split::All)
        .sample(20_000)
        .expect("stories");
    let path = dir.join("stories.jsonl");
    let lines: String = stories
        .iter()
        .map(|text| format!("{}\n", serde_json::json!({ "text": text })))
        .collect();
    std::fs::write(&path, lines).expect("stories file");
    DataSource::files(&path, Split::Train).expect("stories file")
}

fn tokenizer(source: &DataSource, dir: &Path) -> BpeTokenizer {
    let config = BpeConfig {
        path: dir.join("tokenizer.json"),
        ..BpeConfig::default()
    };
    BpeTokenizer::train(&config, source.sample(2_000).expect("sample")).expect("tokenizer")
}

fn dims() -> ParallelDims {
    ParallelDims::new(&LocalEnv::single(), Device::Cpu).expect("dims")
}

/// Tokens per second of `f`, which makes one batch of `BATCH × SEQ` tokens per call.
fn tokens_per_s(mut f: impl FnMut(), calls: usize) -> f64 {
    f();
    let start = Instant::now();
    for _ in 0..calls {
        f();
    }
    (calls * BATCH * SEQ) as f64 / start.elapsed().as_secs_f64()
}

/// Tokens per second of the data path without read-ahead, the baseline for `titan::data::ReadAhead`:
/// chunks of the same size read and then tokenized by turns on one thread (no packing).
fn read_then_tokenize_tokens_per_s(mut docs: Documents, tok: &BpeTokenizer, batches: usize) -> f64 {
    let mut chunk = || {
        let mut texts = Vec::new();
        let mut bytes = 0;
        while texts.len() < MIN_CHUNK_DOCS || bytes < MIN_CHUNK_BYTES {
            let doc = docs.next_document().expect("document");
            bytes += doc.len();
            texts.push(doc);
        }
        let ids = tok.encode_batch(&texts).expect("encode");
        ids.iter().map(|ids| ids.len() + 1).sum::<usize>()
    };
    chunk();
    let start = Instant::now();
    let mut tokens = 0;
    while tokens < batches * BATCH * SEQ {
        tokens += chunk();
    }
    tokens as f64 / start.elapsed().as_secs_f64()
}

/// Megabytes of document text per second that one epoch of `source` reads (no tokenizer).
fn read_mb_per_s(source: &DataSource) -> f64 {
    let mut docs = Documents::new(&dims(), source.clone(), 0, 0).expect("documents");
    let (start, mut bytes) = (Instant::now(), 0usize);
    while docs.epoch() == 0 {
        bytes += docs.next_document().expect("document").len();
    }
    bytes as f64 / 1e6 / start.elapsed().as_secs_f64()
}

/// The source's documents as one JSONL file in `dir`, plain, gzip and Zstandard: what one epoch
/// of each reads per second, in megabytes of text.
fn compressed_read_mb_per_s(source: &DataSource, dir: &Path) -> [f64; 3] {
    use std::io::Write;
    let lines: String = source
        .sample(usize::MAX)
        .expect("documents")
        .iter()
        .map(|text| format!("{}\n", serde_json::json!({ "text": text })))
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(lines.as_bytes()).expect("gzip");
    let files = [
        ("read.jsonl", lines.clone().into_bytes()),
        ("read.jsonl.gz", gz.finish().expect("gzip")),
        (
            "read.jsonl.zst",
            zstd::stream::encode_all(lines.as_bytes(), 3).expect("zstd"),
        ),
    ];
    files.map(|(name, bytes)| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        read_mb_per_s(&DataSource::files(&path, Split::All).expect("source"))
    })
}

fn train_step_tokens_per_s() -> f64 {
    let model = Llama::new(LlamaConfig::tiny(), Device::Cpu).expect("model");
    let mut opt = AdamW::new(model.parameters(), AdamWConfig::default()).expect("optimizer");
    let ids = Tensor::randint(2000, [BATCH as i64, SEQ as i64], (Kind::Int64, Device::Cpu));
    let (input, labels) = (TokenIds(ids.shallow_clone()), HfLabels(ids));
    tokens_per_s(
        || {
            opt.zero_grad().expect("zero_grad");
            let logits = model.forward(&input).expect("forward");
            CausalLmLoss
                .loss(&logits, &labels)
                .expect("loss")
                .backward();
            opt.step().expect("step");
        },
        3,
    )
}

fn data(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = source(dir.path());
    let tok = Arc::new(tokenizer(&source, dir.path()));
    let docs = || Documents::new(&dims(), source.clone(), 1024, 0).expect("documents");
    let started = Instant::now();
    let shards =
        ShardSet::build(&source, &dir.path().join("tokens"), &*tok, false).expect("shards");
    let built = started.elapsed();
    let sharded = source.clone().with_shards(shards.clone());
    let shard_docs = || Documents::new(&dims(), sharded.clone(), 1024, 0).expect("documents");

    let mut group = c.benchmark_group("data");
    group
        .throughput(Throughput::Elements((BATCH * SEQ) as u64))
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    let mut collator =
        Collator::<_, _, HfConvention>::new(docs(), tok.clone(), Layout::Packed, SEQ, BATCH)
            .expect("collator");
    group.bench_function("tokenize_pack/b8x512", |b| {
        b.iter(|| collator.next_rows().expect("rows"))
    });
    let mut loader: TokenLoader<_, _, HfConvention> =
        TokenLoader::new(&dims(), docs(), (*tok).clone(), Layout::Packed, SEQ, BATCH)
            .expect("loader");
    group.bench_function("loader_prefetch/b8x512", |b| {
        b.iter(|| loader.next_batch().expect("batch"))
    });
    let mut from_shards: TokenLoader<_, _, HfConvention> = TokenLoader::new(
        &dims(),
        shard_docs(),
        (*tok).clone(),
        Layout::Packed,
        SEQ,
        BATCH,
    )
    .expect("loader");
    group.bench_function("loader_from_shards/b8x512", |b| {
        b.iter(|| from_shards.next_batch().expect("batch"))
    });
    group.finish();

    // The ratio the data path must keep: ≥ 10× what training consumes, same machine, same run.
    let mut collator =
        Collator::<_, _, HfConvention>::new(docs(), tok.clone(), Layout::Packed, SEQ, BATCH)
            .expect("collator");
    let data = tokens_per_s(|| drop(collator.next_rows().expect("rows")), 100);
    let mut collator =
        Collator::<_, _, HfConvention>::new(shard_docs(), tok.clone(), Layout::Packed, SEQ, BATCH)
            .expect("collator");
    let ids = tokens_per_s(|| drop(collator.next_rows().expect("rows")), 100);
    let serial = read_then_tokenize_tokens_per_s(docs(), &tok, 100);
    let [plain, gzip, zstd] = compressed_read_mb_per_s(&source, dir.path());
    eprintln!(
        "data: reading documents (one JSONL file, no tokenizer): plain {plain:.0} MB/s, gzip \
         {gzip:.0} MB/s ({:.2}x), zstd {zstd:.0} MB/s ({:.2}x)",
        gzip / plain,
        zstd / plain
    );
    let train = train_step_tokens_per_s();
    eprintln!(
        "data: tokenize+pack {data:.0} tokens/s (reading and tokenizing by turns, no read-ahead: {serial:.0}, {:.2}x); tiny_llama train step (CPU, {BATCH}x{SEQ}) {train:.0} tokens/s; ratio {:.1}x",
        data / serial,
        data / train
    );
    eprintln!(
        "data: from token shards {ids:.0} tokens/s ({:.1}x tokenize+pack, {:.0}x the train step); \
         building the shards of {} tokens took {:.2} s",
        ids / data,
        ids / train,
        shards.tokens(),
        built.as_secs_f64()
    );
}

criterion_group!(benches, data);
criterion_main!(benches);
