//! `Documents`: a source's documents streamed forever, this data-parallel rank's share only,
//! through a shuffle buffer bounded in documents and in bytes, with a position that saves and
//! restores exactly, also on another number of ranks ([`Dataset::load_resharded`]). The
//! buffer's documents are shared ([`Buffered`]), so a position snapshot (one per batch) copies
//! pointers, not text. A source with token shards yields their ids ([`Doc::Tokens`]) through the
//! same path.

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::source::{DataSource, FilesStamp, HOLDOUT_EVERY, Reader, Split};
use super::{Dataset, Doc};
use crate::parallel_dims::DataParallel;
use crate::{Error, Result};

/// Where a read of a list of units (files) is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Index of the unit being read, within the list.
    pub unit: usize,
    /// Position in that unit (see the reader: byte offset, row group…).
    pub offset: u64,
    /// Second part of the position (line, row, story index).
    pub record: u64,
    /// Documents of that unit passed so far, before the split filter: the next one's index in
    /// its file, which decides whether it is held out ([`super::Split::contains`]).
    #[serde(default)]
    pub unit_seen: u64,
    /// Documents of the split passed so far along the list, before the rank filter.
    pub in_split: u64,
}

/// Documents that ranks of a run on another number of ranks had left of their pass, dealt to
/// this rank on resume ([`Dataset::load_resharded`]): the `units` in order, the first from
/// `at`, keeping every `stride`-th document of the split from the `phase`-th.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leftover {
    /// The source's units to read, in order.
    pub units: Vec<usize>,
    /// Where the read is.
    pub at: Position,
    /// Keep one document of the split in `stride` (1: all of them)…
    pub stride: u64,
    /// …the one whose count along the list is `phase` modulo `stride`.
    pub phase: u64,
}

/// Where [`Documents`] is: everything needed to continue with exactly the documents that would
/// have followed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentsState {
    /// Completed passes over this rank's share.
    pub epoch: u64,
    /// Index of the unit (file) being read, within this rank's units.
    pub unit: usize,
    /// Position in that unit (see the reader: byte offset, row group…).
    pub offset: u64,
    /// Second part of the position (line, row, story index).
    pub record: u64,
    /// Documents of that unit passed so far, before the split filter.
    #[serde(default)]
    pub unit_seen: u64,
    /// Documents of the split passed so far this epoch, before the rank filter.
    pub in_split: u64,
    /// Documents yielded this pass.
    pub yielded: u64,
    /// Documents waiting in the shuffle buffer.
    pub buffer: Vec<Buffered>,
    /// Documents in one pass over this rank's share, known once a pass has ended: the shuffle
    /// buffer holds about that many, one more while a pass ends (a share smaller than the
    /// buffer would otherwise sit in it many times over, read pass after pass ahead of
    /// training).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_documents: Option<u64>,
    /// The shuffle's random generator.
    pub rng: ChaCha8Rng,
    /// Documents of a run on another number of ranks, read before this pass; they end the
    /// epoch `epoch`, and the pass starts the next.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leftovers: Vec<Leftover>,
    /// Whether the positions are in token shards (a document's index in its file) rather than in
    /// the files themselves.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tokens: bool,
    /// Written by titan before the split was a property of each file's documents: documents
    /// passed this epoch before the split filter. Read only to resume such a checkpoint.
    #[serde(default, skip_serializing)]
    pub seen: Option<u64>,
    /// The data files the positions point into, as they were ([`FilesStamp`]); `None` for the
    /// built-in stories and in checkpoints from before the stamps. Shared: a snapshot per
    /// batch copies a pointer.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "shared_stamp"
    )]
    pub files: Option<Arc<FilesStamp>>,
    /// Whether the ranks split each file's documents rather than take whole files; `None` in
    /// checkpoints from before it was recorded (whole files whenever there were as many as
    /// ranks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_document: Option<bool>,
}

/// `Option<Arc<FilesStamp>>` saved as the stamp itself.
mod shared_stamp {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::FilesStamp;

    pub fn serialize<S: Serializer>(
        files: &Option<Arc<FilesStamp>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        files.as_deref().serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Arc<FilesStamp>>, D::Error> {
        Ok(Option::<FilesStamp>::deserialize(deserializer)?.map(Arc::new))
    }
}

impl DocumentsState {
    /// Where the pass over this rank's share is.
    fn at(&self) -> Position {
        Position {
            unit: self.unit,
            offset: self.offset,
            record: self.record,
            unit_seen: self.unit_seen,
            in_split: self.in_split,
        }
    }

    /// Moves the pass over this rank's share to `at`.
    fn set_at(&mut self, at: Position) {
        (self.unit, self.offset, self.record) = (at.unit, at.offset, at.record);
        (self.unit_seen, self.in_split) = (at.unit_seen, at.in_split);
    }
}

/// A document waiting in the shuffle buffer, shared (a position snapshot copies pointers):
/// saved as its text, or as its ids and its text's size when it came from token shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Saved", into = "Saved")]
pub enum Buffered {
    /// Text.
    Text(Arc<str>),
    /// Token ids, and the bytes of the text they were tokenized from.
    Tokens {
        /// The ids.
        ids: Arc<[u32]>,
        /// Bytes of their text.
        text_bytes: usize,
    },
}

/// [`Buffered`] as a checkpoint holds it: a string, or the ids with their text's size; a bare
/// list of ids is a checkpoint from before the sizes, whose buffer counted 4 bytes per id: those
/// documents keep that count (documents read after the resume count their text).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Saved {
    Text(String),
    Ids { ids: Vec<u32>, text_bytes: usize },
    Tokens(Vec<u32>),
}

impl From<Saved> for Buffered {
    fn from(saved: Saved) -> Self {
        match saved {
            Saved::Text(text) => Buffered::Text(text.into()),
            Saved::Ids { ids, text_bytes } => Buffered::Tokens {
                ids: ids.into(),
                text_bytes,
            },
            Saved::Tokens(ids) => Buffered::Tokens {
                text_bytes: ids.len() * 4,
                ids: ids.into(),
            },
        }
    }
}

impl From<Buffered> for Saved {
    fn from(doc: Buffered) -> Self {
        match doc {
            Buffered::Text(text) => Saved::Text(text.to_string()),
            Buffered::Tokens { ids, text_bytes } => Saved::Ids {
                ids: ids.to_vec(),
                text_bytes,
            },
        }
    }
}

impl From<Doc> for Buffered {
    fn from(doc: Doc) -> Self {
        match doc {
            Doc::Text(text) => Buffered::Text(text.into()),
            Doc::Tokens { ids, text_bytes } => Buffered::Tokens {
                ids: ids.into(),
                text_bytes,
            },
        }
    }
}

impl Buffered {
    /// Bytes of text it holds or was tokenized from (see [`Doc::size`]).
    pub fn size(&self) -> usize {
        match self {
            Buffered::Text(text) => text.len(),
            Buffered::Tokens { text_bytes, .. } => *text_bytes,
        }
    }

    /// An owned copy, for the loader.
    fn to_doc(&self) -> Doc {
        match self {
            Buffered::Text(text) => Doc::Text(text.to_string()),
            Buffered::Tokens { ids, text_bytes } => Doc::Tokens {
                ids: ids.to_vec(),
                text_bytes: *text_bytes,
            },
        }
    }
}

/// The default bound of the shuffle buffer in bytes (`dataset.shuffle_buffer_bytes`).
pub const SHUFFLE_BUFFER_BYTES: usize = 64 << 20;

/// A unit open for reading: whether it was opened at its start, and how many documents it gave
/// since (an empty file is an error).
#[derive(Debug)]
struct Open {
    reader: Reader,
    from_start: bool,
    docs: u64,
}

/// A source's documents for one data-parallel rank, forever: units (files) are split between
/// ranks when there are at least as many as ranks, documents otherwise; each epoch reads the
/// share in order, and a buffer of `shuffle_buffer` documents (0: none) and at most
/// `SHUFFLE_BUFFER_BYTES` bytes ([`Documents::with_shuffle_bytes`]) shuffles it.
#[derive(Debug)]
pub struct Documents {
    source: DataSource,
    /// This rank's units, and whether it keeps one document in `dp_degree` of them.
    units: Arc<[usize]>,
    by_document: bool,
    /// How the ranks share the units, and the units' sizes it was decided from.
    sharing: Sharing,
    sizes: Arc<[u64]>,
    dp_rank: u64,
    dp_degree: u64,
    shuffle_buffer: usize,
    shuffle_bytes: usize,
    /// Bytes of the documents in the buffer.
    buffered_bytes: usize,
    state: DocumentsState,
    open: Option<Open>,
}

/// How a source's units are shared out between data-parallel ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sharing {
    /// Every rank reads every unit and keeps one document in `degree` of them.
    Documents,
    /// Whole units, dealt by size so the ranks' shares are within [`UNEVEN_SHARES`]
    /// ([`balanced`]).
    Files,
    /// Whole units, the `rank`-th of every `degree`: how titan dealt them before it recorded
    /// the sharing in positions.
    RoundRobin,
}

impl Sharing {
    /// The sharing a position records (`by_document`), or for one from before it was recorded,
    /// the rule of then: whole units, round robin, whenever there were as many as ranks.
    fn recorded(by_document: Option<bool>, units: usize, degree: u64) -> Self {
        match by_document {
            Some(true) => Sharing::Documents,
            Some(false) => Sharing::Files,
            None if (units as u64) < degree => Sharing::Documents,
            None => Sharing::RoundRobin,
        }
    }

    /// The units rank `rank` of `degree` reads each pass over units of these `sizes`.
    fn units(self, sizes: &[u64], rank: u64, degree: u64) -> Vec<usize> {
        match self {
            Sharing::Documents => (0..sizes.len()).collect(),
            Sharing::RoundRobin => (rank as usize..sizes.len())
                .step_by(degree as usize)
                .collect(),
            Sharing::Files => balanced(sizes, degree)
                .into_iter()
                .nth(rank as usize)
                .unwrap_or_default(),
        }
    }
}

/// How far the largest rank's share of whole units may exceed the smallest one's, in bytes,
/// before the ranks split documents instead (10%).
const UNEVEN_SHARES: f64 = 1.1;

/// Units of these `sizes` dealt whole to `degree` ranks, largest first, each to the rank with
/// the fewest bytes so far (the lowest rank on a tie); each rank's units in source order.
/// Deterministic for the sizes, which a resume finds unchanged (the positions' file stamps).
fn balanced(sizes: &[u64], degree: u64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&u| (std::cmp::Reverse(sizes[u]), u));
    let mut shares: Vec<(u64, Vec<usize>)> = vec![(0, Vec::new()); degree.max(1) as usize];
    for unit in order {
        if let Some((bytes, units)) = shares.iter_mut().min_by_key(|(bytes, _)| *bytes) {
            *bytes += sizes[unit];
            units.push(unit);
        }
    }
    shares
        .into_iter()
        .map(|(_, mut units)| {
            units.sort_unstable();
            units
        })
        .collect()
}

/// How `degree` ranks share units of these `sizes` (bytes): whole units when they can be
/// dealt within [`UNEVEN_SHARES`] of each other, else documents (fewer units than ranks, or
/// sizes too uneven), since each rank passes over its share on its own and a small share's
/// documents would be trained on more often than a large one's.
fn sharing_for(sizes: &[u64], degree: u64) -> Sharing {
    if degree <= 1 {
        return Sharing::Files;
    }
    if (sizes.len() as u64) < degree {
        return Sharing::Documents;
    }
    let bytes: Vec<u64> = balanced(sizes, degree)
        .iter()
        .map(|units| units.iter().map(|&u| sizes[u]).sum())
        .collect();
    let (least, most) = (
        bytes.iter().copied().min().unwrap_or(0),
        bytes.iter().copied().max().unwrap_or(0),
    );
    match most as f64 > least as f64 * UNEVEN_SHARES {
        true => Sharing::Documents,
        false => Sharing::Files,
    }
}

/// `item` as `k` items that together keep its documents: one in `stride × k` each, from the
/// same position.
fn cut(item: Leftover, k: u64) -> Vec<Leftover> {
    (0..k)
        .map(|j| Leftover {
            units: item.units.clone(),
            at: item.at,
            stride: item.stride * k,
            phase: item.phase + item.stride * j,
        })
        .collect()
}

/// The next document of the split among `units` from `at` (one in `stride`, the `phase`-th),
/// opening units as needed; `None` once the last unit ends.
fn read_next(
    source: &DataSource,
    open: &mut Option<Open>,
    units: &[usize],
    (stride, phase): (u64, u64),
    at: &mut Position,
) -> Result<Option<Doc>> {
    loop {
        let Some(&unit) = units.get(at.unit) else {
            return Ok(None);
        };
        let o = match open {
            Some(o) => o,
            None => open.insert(Open {
                reader: source.open_unit(unit, at.offset, at.record)?,
                from_start: at.offset == 0 && at.record == 0,
                docs: 0,
            }),
        };
        let doc = o.reader.next_document()?;
        (at.offset, at.record) = o.reader.position();
        let Some(doc) = doc else {
            if o.from_start && o.docs == 0 {
                return Err(Error::Data(format!(
                    "{}: no documents (the file is empty or holds only blank documents)",
                    source.unit_name(unit)
                )));
            }
            *open = None;
            *at = Position {
                unit: at.unit + 1,
                in_split: at.in_split,
                ..Position::default()
            };
            continue;
        };
        o.docs += 1;
        let index = at.unit_seen;
        at.unit_seen += 1;
        if !source.split.contains(unit, index) {
            continue;
        }
        let in_split = at.in_split;
        at.in_split += 1;
        if in_split % stride == phase {
            return Ok(Some(doc));
        }
    }
}

impl Documents {
    /// This rank's share of `source`, shuffled through a buffer of `shuffle_buffer` documents
    /// with a generator seeded by `seed` and the rank.
    pub fn new(
        dims: &impl DataParallel,
        source: DataSource,
        shuffle_buffer: usize,
        seed: u64,
    ) -> Result<Self> {
        let (rank, degree) = (dims.dp_rank() as u64, dims.dp_degree() as u64);
        let rng = ChaCha8Rng::seed_from_u64(seed ^ rank.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        // Shared out by text (a compressed file's by its text size); stamped by bytes on disk.
        let on_disk = source.unit_bytes()?;
        let files = source.file_stamps(&on_disk).map(Arc::new);
        let sizes: Arc<[u64]> = source.unit_text_bytes(on_disk)?.into();
        let sharing = sharing_for(&sizes, degree);
        let by_document = sharing == Sharing::Documents;
        if by_document && sizes.len() as u64 >= degree {
            tracing::warn!(
                "{}: {} files cannot be shared out whole between {degree} ranks within 10% of \
                 each other's size (each rank passes over its files at its own pace, so a smaller \
                 share's documents would be trained on more often): each rank reads every file \
                 and keeps one document in {degree}; more files of about equal size give each \
                 rank files of its own",
                source.describe(),
                sizes.len()
            );
        }
        let units = sharing.units(&sizes, rank, degree);
        let source_has_shards = source.shards.is_some();
        Ok(Self {
            source,
            units: units.into(),
            by_document,
            sharing,
            sizes,
            dp_rank: rank,
            dp_degree: degree,
            shuffle_buffer,
            shuffle_bytes: SHUFFLE_BUFFER_BYTES,
            buffered_bytes: 0,
            state: DocumentsState {
                epoch: 0,
                unit: 0,
                offset: 0,
                record: 0,
                unit_seen: 0,
                in_split: 0,
                yielded: 0,
                buffer: Vec::new(),
                pass_documents: None,
                rng,
                leftovers: Vec::new(),
                tokens: source_has_shards,
                seen: None,
                files,
                by_document: Some(by_document),
            },
            open: None,
        })
    }

    /// Bounds the shuffle buffer to `bytes` of text too (it always holds at least one
    /// document); 0 is an error.
    pub fn with_shuffle_bytes(mut self, bytes: usize) -> Result<Self> {
        if bytes == 0 {
            return Err(Error::config(
                "dataset.shuffle_buffer_bytes",
                bytes,
                "must be at least 1",
            ));
        }
        self.shuffle_bytes = bytes;
        Ok(self)
    }

    /// The source read.
    pub fn source(&self) -> &DataSource {
        &self.source
    }

    /// The next document: the leftovers of a run on another number of ranks first, then this
    /// rank's share in source order, wrapping into the next epoch.
    /// Documents the shuffle buffer fills up to: `shuffle_buffer`, and at most one pass of
    /// them once a pass has shown how many that is.
    fn buffer_documents(&self) -> usize {
        let pass = self.state.pass_documents.map_or(usize::MAX, |n| n as usize);
        self.shuffle_buffer.min(pass)
    }

    fn next_in_order(&mut self) -> Result<Doc> {
        while let Some(left) = self.state.leftovers.first_mut() {
            let filter = (left.stride, left.phase);
            match read_next(
                &self.source,
                &mut self.open,
                &left.units,
                filter,
                &mut left.at,
            )? {
                Some(doc) => return Ok(doc),
                None => {
                    self.state.leftovers.remove(0);
                    if self.state.leftovers.is_empty() {
                        self.state.epoch += 1;
                    }
                }
            }
        }
        let units = Arc::clone(&self.units);
        let filter = if self.by_document {
            (self.dp_degree, self.dp_rank)
        } else {
            (1, 0)
        };
        loop {
            let mut at = self.state.at();
            let doc = read_next(&self.source, &mut self.open, &units, filter, &mut at);
            self.state.set_at(at);
            if let Some(doc) = doc? {
                self.state.yielded += 1;
                return Ok(doc);
            }
            if self.state.yielded == 0 {
                let why = self.source.why_empty(filter.0 as usize);
                return Err(Error::Data(format!(
                    "{}: no documents for data-parallel rank {} of {} in one whole pass{}",
                    self.source.describe(),
                    self.dp_rank,
                    self.dp_degree,
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(" ({why})")
                    }
                )));
            }
            self.state.epoch += 1;
            self.state.pass_documents = Some(self.state.yielded);
            self.state.set_at(Position::default());
            self.state.yielded = 0;
        }
    }

    /// Refuses a saved position of rank `rank` into data files other than this source's now
    /// (added, removed, renamed or resized since): its offsets would land in other documents.
    fn check_files(&self, saved: Option<&FilesStamp>, rank: u64) -> Result<()> {
        let Some(now) = self.state.files.as_deref() else {
            return Ok(());
        };
        let Some(saved) = saved else {
            // Only warned: it may be the very same files.
            tracing::warn!(
                "the dataset position of rank {rank} was written before titan recorded the data \
                 files it points into: taken as it is; if files of {} were added, removed or \
                 changed since, it reads other documents than the run left off at",
                self.source.describe()
            );
            return Ok(());
        };
        match saved.changed(now) {
            None => Ok(()),
            Some(what) => Err(Error::Data(format!(
                "the dataset position of rank {rank} points into data files that have changed \
                 since it was saved: {what}; resuming would read other documents than the run \
                 left off at: restore the files as they were, or start a new run (another \
                 --output-dir)"
            ))),
        }
    }

    /// Checks a saved state of rank `rank` against this source and `units` (the share it was
    /// read with), and brings one written before the split was per file up to date.
    fn checked(
        &self,
        mut state: DocumentsState,
        units: &[usize],
        rank: u64,
    ) -> Result<DocumentsState> {
        let what = || self.source.describe();
        self.check_files(state.files.as_deref(), rank)?;
        state.files = self.state.files.clone();
        if state.unit >= units.len() {
            return Err(Error::Data(format!(
                "the dataset position of rank {rank} names unit {}, but that rank reads {} of {}",
                state.unit,
                units.len(),
                what()
            )));
        }
        let num_units = self.source.num_units();
        for left in &state.leftovers {
            if let Some(bad) = left.units.iter().find(|&&u| u >= num_units) {
                return Err(Error::Data(format!(
                    "the dataset position of rank {rank} names unit {bad}, but {} has {num_units}",
                    what()
                )));
            }
            if left.stride == 0 || left.phase >= left.stride || left.at.unit > left.units.len() {
                return Err(Error::Data(format!(
                    "the dataset position of rank {rank} is damaged: leftover {left:?}"
                )));
            }
        }
        // An old position's document count in its file is unknown past its first file (it
        // counted across files); it can read text, where the count only decides the split.
        let count_unknown = state.seen.is_some() && state.unit > 0;
        if let Some(seen) = state.seen.take() {
            // Before the split was per file, `seen` counted along the rank's units, and the
            // held-out documents were the 19th, 39th… of that count. The rules agree where no
            // document is held out, or while the first unit is read and its phase is 0, and in
            // every pass when that is the rank's only unit.
            let first_unit_agrees = (units[0] as u64).is_multiple_of(HOLDOUT_EVERY)
                && state.unit == 0
                && (state.epoch == 0 || units.len() == 1);
            if self.source.split != Split::All && !first_unit_agrees {
                return Err(Error::Data(format!(
                    "this dataset position was written by an older titan, whose validation \
                     split counted documents across a rank's files (this one holds out every \
                     {HOLDOUT_EVERY}th document of each file, in a phase of its own): in pass {} \
                     of rank {rank}'s share of {}, at its file {}, the two rules hold out other \
                     documents, and resuming would train on held-out ones; start a new run \
                     (another --output-dir), or give --val-data",
                    state.epoch,
                    what(),
                    state.unit
                )));
            }
            state.unit_seen = seen;
        }
        let shards = self.source.shards.is_some();
        if state.tokens != shards {
            let mut at = state.at();
            let positions =
                std::iter::once(&mut at).chain(state.leftovers.iter_mut().map(|l| &mut l.at));
            for at in positions {
                if shards && count_unknown {
                    return Err(Error::Data(format!(
                        "the dataset position of rank {rank} was written by an older titan, \
                         which did not count documents per file, so it cannot be found in the \
                         token shards of {}: resume with the files (another `dataset.tokens_dir`)",
                        what()
                    )));
                }
                if shards {
                    // In a token shard, a position is the document's index in its file.
                    (at.offset, at.record) = (at.unit_seen, 0);
                } else if at.offset != 0 || at.record != 0 {
                    return Err(Error::Data(format!(
                        "the dataset position of rank {rank} was written while reading token \
                         shards of {}, and this run reads the files (its shards are gone, \
                         belong to another tokenizer, or were written by an older titan in \
                         another layout): rebuild them with `--set dataset.pretokenize=true`",
                        what()
                    )));
                }
            }
            state.set_at(at);
            state.tokens = shards;
        }
        Ok(state)
    }
}

impl Dataset for Documents {
    type State = DocumentsState;

    /// Its positions carry the files' stamps (names and sizes), checked on restore.
    fn checks_files(&self) -> bool {
        true
    }

    fn next_document(&mut self) -> Result<String> {
        match self.next_doc()? {
            Doc::Text(text) => Ok(text),
            Doc::Tokens { .. } => Err(Error::Data(format!(
                "{} is read from token shards, which hold ids, not text",
                self.source.describe()
            ))),
        }
    }

    fn next_doc(&mut self) -> Result<Doc> {
        if self.shuffle_buffer == 0 && self.state.buffer.is_empty() {
            return self.next_in_order();
        }
        while self.state.buffer.len() < self.buffer_documents()
            && (self.state.buffer.is_empty() || self.buffered_bytes < self.shuffle_bytes)
        {
            let doc = Buffered::from(self.next_in_order()?);
            self.buffered_bytes += doc.size();
            self.state.buffer.push(doc);
        }
        let i = self.state.rng.random_range(0..self.state.buffer.len());
        let doc = self.state.buffer.swap_remove(i);
        self.buffered_bytes -= doc.size();
        Ok(doc.to_doc())
    }

    fn state(&self) -> DocumentsState {
        self.state.clone()
    }

    fn load_state(&mut self, state: DocumentsState) -> Result<()> {
        // A position goes on with the split it was written with.
        let sharing = Sharing::recorded(state.by_document, self.sizes.len(), self.dp_degree);
        let units: Arc<[usize]> = match sharing == self.sharing {
            true => self.units.clone(),
            false => sharing
                .units(&self.sizes, self.dp_rank, self.dp_degree)
                .into(),
        };
        let mut state = self.checked(state, &units, self.dp_rank)?;
        let by_document = sharing == Sharing::Documents;
        state.by_document = Some(by_document);
        (self.units, self.by_document, self.sharing) = (units, by_document, sharing);
        self.open = None;
        self.buffered_bytes = state.buffer.iter().map(Buffered::size).sum();
        self.state = state;
        Ok(())
    }

    /// Every old rank's rest of its pass (its leftovers, or its unfinished file and its later
    /// files, or, when ranks shared files, its remaining stream of documents), and its whole
    /// share for each pass it is behind the furthest old rank, becomes a list of items, dealt
    /// round-robin to the new ranks with the old shuffle buffers' documents. Streams, and any
    /// list shorter than the new ranks, are cut so that every new rank takes part. This rank
    /// reads its items (they end the furthest old rank's epoch), then passes over its own share
    /// from the next epoch on.
    fn load_resharded(&mut self, states: Vec<DocumentsState>) -> Result<()> {
        let old = states.len() as u64;
        if old == 0 {
            return Err(Error::Data("no dataset positions to resume from".into()));
        }
        let num_units = self.source.num_units();
        let states = (0..old)
            .zip(states)
            .map(|(rank, state)| {
                let sharing = Sharing::recorded(state.by_document, num_units, old);
                let by_document = sharing == Sharing::Documents;
                let units = sharing.units(&self.sizes, rank, old);
                let state = self.checked(state, &units, rank)?;
                Ok((rank, units, by_document, state))
            })
            .collect::<Result<Vec<_>>>()?;
        let epoch = states.iter().map(|(.., s)| s.epoch).max().unwrap_or(0);
        let (rank, degree) = (self.dp_rank as usize, self.dp_degree);
        let mut items = Vec::new();
        let mut buffered = Vec::new();
        for (old_rank, units, by_document, state) in states {
            let whole = |at: Position, first: usize| -> Vec<Leftover> {
                if by_document {
                    // A stream over every unit: one document of the split in `old`.
                    return cut(
                        Leftover {
                            units: units.clone(),
                            at,
                            stride: old,
                            phase: old_rank,
                        },
                        degree,
                    );
                }
                // Its files: the unfinished one from where it was, then each whole.
                let mut files = vec![Leftover {
                    units: vec![units[first]],
                    at: Position {
                        unit: 0,
                        in_split: 0,
                        ..at
                    },
                    stride: 1,
                    phase: 0,
                }];
                files.extend(units[first + 1..].iter().map(|&unit| Leftover {
                    units: vec![unit],
                    at: Position::default(),
                    stride: 1,
                    phase: 0,
                }));
                files
            };
            if state.leftovers.is_empty() {
                items.extend(whole(state.at(), state.unit));
            } else {
                // Its own pass had not started: its leftovers were what it had left.
                items.extend(state.leftovers.iter().cloned());
            }
            // Passes it had not started, up to the furthest rank's epoch.
            for _ in state.epoch..epoch {
                items.extend(whole(Position::default(), 0));
            }
            buffered.extend(state.buffer);
        }
        if (items.len() as u64) < degree {
            items = items
                .into_iter()
                .flat_map(|item| cut(item, degree))
                .collect();
        }
        let leftovers: Vec<Leftover> = super::deal(items, rank, degree as usize);
        let buffer: Vec<Buffered> = super::deal(buffered, rank, degree as usize);
        self.open = None;
        self.buffered_bytes = buffer.iter().map(Buffered::size).sum();
        self.state = DocumentsState {
            // With nothing left over, this rank's own pass starts the next epoch at once.
            epoch: epoch + u64::from(leftovers.is_empty()),
            unit: 0,
            offset: 0,
            record: 0,
            unit_seen: 0,
            in_split: 0,
            yielded: 0,
            buffer,
            // Another share: its pass is counted again.
            pass_documents: None,
            rng: self.state.rng.clone(),
            leftovers,
            tokens: self.source.shards.is_some(),
            seen: None,
            files: self.state.files.clone(),
            by_document: Some(self.by_document),
        };
        Ok(())
    }

    fn epoch(&self) -> u64 {
        self.state.epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Split, StoryConfig};
    use crate::parallel_dims::ParallelDims;
    use std::collections::HashSet;

    fn dims(rank: usize, world: usize) -> ParallelDims {
        ParallelDims::simulated_cpu(rank, world)
    }

    fn stories(n: usize, split: Split) -> DataSource {
        DataSource::stories(
            StoryConfig {
                seed: 3,
                num_stories: n,
            },
            split,
        )
    }

    fn take(docs: &mut Documents, n: usize) -> Result<Vec<String>> {
        (0..n).map(|_| docs.next_document()).collect()
    }

    /// JSONL files of `counts` documents, all of one length, named by file and line.
    fn jsonl_files(dir: &std::path::Path, counts: &[usize], split: Split) -> Result<DataSource> {
        for (f, &n) in counts.iter().enumerate() {
            let lines: String = (0..n)
                .map(|i| format!("{{\"text\": \"file {f} line {i:02}\"}}\n"))
                .collect();
            let path = dir.join(format!("part-{f}.jsonl"));
            std::fs::write(&path, lines).map_err(|e| Error::io(&path, e))?;
        }
        DataSource::files(dir, split)
    }

    /// Five JSONL files of 20, 13, 6, 19 and 12 documents (each holds out one).
    fn files(dir: &std::path::Path, split: Split) -> Result<DataSource> {
        jsonl_files(dir, &[20, 13, 6, 19, 12], split)
    }

    /// Six files of 12 documents: whole files share out evenly between 2, 3 or 6 ranks.
    fn even_files(dir: &std::path::Path, split: Split) -> Result<DataSource> {
        jsonl_files(dir, &[12; 6], split)
    }

    /// Files of 36, 12, 12 and 12 documents: two ranks take them whole only when dealt by size
    /// (the first alone), not round robin.
    fn lopsided_files(dir: &std::path::Path, split: Split) -> Result<DataSource> {
        jsonl_files(dir, &[36, 12, 12, 12], split)
    }

    fn sorted(mut docs: Vec<String>) -> Vec<String> {
        docs.sort();
        docs
    }

    /// `ranks` ranks of `source` (unshuffled) resumed from the `states` of another number.
    fn resumed(
        source: &DataSource,
        states: &[DocumentsState],
        ranks: usize,
    ) -> Result<Vec<Documents>> {
        (0..ranks)
            .map(|rank| {
                let mut d = Documents::new(&dims(rank, ranks), source.clone(), 0, 0)?;
                // Through JSON, as in a checkpoint.
                let states = serde_json::from_str(&serde_json::to_string(states)?)?;
                d.load_resharded(states)?;
                Ok(d)
            })
            .collect()
    }

    /// The documents `d` was dealt and has not read: up to the first of its own next pass.
    fn rest_of_leftovers(d: &mut Documents) -> Result<Vec<String>> {
        let mut docs = Vec::new();
        while !d.state.leftovers.is_empty() {
            let epoch = d.epoch();
            let doc = d.next_document()?;
            if d.epoch() > epoch {
                break;
            }
            docs.push(doc);
        }
        Ok(docs)
    }

    /// Rank `r` of `ranks` reads `counts[r]` documents; their documents and states.
    fn read_some(
        ranks: Vec<Documents>,
        counts: &[usize],
    ) -> Result<(Vec<String>, Vec<DocumentsState>)> {
        let mut read = Vec::new();
        let mut states = Vec::new();
        for (mut d, &n) in ranks.into_iter().zip(counts) {
            read.extend(take(&mut d, n)?);
            states.push(d.state());
        }
        Ok((read, states))
    }

    /// Fresh ranks of a run on `ranks` ranks.
    fn fresh(source: &DataSource, ranks: usize) -> Result<Vec<Documents>> {
        (0..ranks)
            .map(|rank| Documents::new(&dims(rank, ranks), source.clone(), 0, 0))
            .collect()
    }

    /// `states` resumed on `new` ranks, each reading what it was dealt: with what was `read`
    /// before, that is every document of the split once per epoch up to the furthest old
    /// rank's, none lost or read twice.
    fn finish(
        source: &DataSource,
        mut read: Vec<String>,
        states: &[DocumentsState],
        new: usize,
    ) -> Result<()> {
        let epoch = states.iter().map(|s| s.epoch).max().unwrap_or(0);
        for mut d in resumed(source, states, new)? {
            read.extend(rest_of_leftovers(&mut d)?);
            assert_eq!(d.epoch(), epoch + 1);
        }
        let split = source.sample(usize::MAX)?;
        let expected: Vec<String> = (0..=epoch).flat_map(|_| split.clone()).collect();
        assert_eq!(
            sorted(read),
            sorted(expected),
            "{} → {new} ranks, through epoch {epoch}",
            states.len()
        );
        Ok(())
    }

    #[test]
    fn a_resume_on_another_number_of_ranks_loses_and_repeats_no_document() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let even = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let lopsided = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        // Documents split between ranks (files of uneven sizes, 1 unit), and whole files split
        // between ranks (6 files of one size on 1, 2, 3 or 6 ranks, on 4 they split
        // documents; 4 files dealt by size to 2 ranks), both ways round.
        let sources = [
            files(dir.path(), Split::Train)?,
            stories(60, Split::Train),
            even_files(even.path(), Split::Train)?,
            lopsided_files(lopsided.path(), Split::Train)?,
        ];
        let two = fresh(&sources[3], 2)?;
        assert_eq!(
            (two[0].sharing, &*two[0].units, &*two[1].units),
            (Sharing::Files, &[0][..], &[1, 2, 3][..])
        );
        for source in &sources {
            let cases = [
                (2, 3, 4),
                (3, 2, 2),
                (2, 1, 5),
                (1, 2, 6),
                (6, 4, 1),
                (2, 6, 3),
            ];
            for (old, new, before) in cases {
                let (read, states) = read_some(fresh(source, old)?, &vec![before; old])?;
                assert!(states.iter().all(|s| s.epoch == 0));
                finish(source, read, &states, new)?;
            }
        }

        // Ranks in different epochs: with 2 ranks each has about half of the files' 65
        // training documents, and rank 1 wraps; the one behind catches up before the next
        // epoch.
        let source = &sources[0];
        let (read, states) = read_some(fresh(source, 2)?, &[10, 35])?;
        assert_eq!(states.iter().map(|s| s.epoch).collect::<Vec<_>>(), [0, 1]);
        finish(source, read, &states, 3)?;

        // Twice: 2 ranks, then 6 (each dealt a part, though there are 5 files), some still
        // reading what they were dealt and some already in their own next pass, then 2 again.
        let (mut read, states) = read_some(fresh(source, 2)?, &[3, 3])?;
        let six = resumed(source, &states, 6)?;
        assert!(six.iter().all(|d| !d.state.leftovers.is_empty()));
        let (more, middle) = read_some(six, &[1, 2, 12, 0, 20, 3])?;
        read.extend(more);
        let epochs: Vec<u64> = middle.iter().map(|s| s.epoch).collect();
        assert!(epochs.contains(&0) && epochs.contains(&1), "{epochs:?}");
        finish(source, read, &middle, 2)
    }

    #[test]
    fn whole_files_go_to_ranks_only_when_their_shares_are_even() -> Result<()> {
        let documents = |sizes: &[u64], degree| sharing_for(sizes, degree) == Sharing::Documents;
        assert!(!documents(&[10, 10, 10, 10], 2));
        assert!(!documents(&[10, 10, 10, 10], 4));
        assert!(!documents(&[10, 3], 1), "one rank reads all");
        // Dealt by size: round robin would give 14 bytes against 6.
        assert!(!documents(&[10, 3, 3, 3, 1], 2));
        assert_eq!(balanced(&[10, 3, 3, 3, 1], 2), [vec![0], vec![1, 2, 3, 4]]);
        assert_eq!(balanced(&[5, 5, 5, 5], 2), [vec![0, 2], vec![1, 3]]);
        assert!(documents(&[10, 10, 10], 4), "fewer files than ranks");
        assert!(documents(&[10, 10, 10], 2), "20 bytes against 10");
        assert!(documents(&[20, 13, 6, 19, 12], 2), "38 bytes against 32");
        assert!(!documents(&[100, 100, 100, 95], 2), "within 10%");

        let even = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let source = even_files(even.path(), Split::Train)?;
        for (ranks, whole) in [(2, true), (3, true), (6, true), (4, false)] {
            for d in fresh(&source, ranks)? {
                assert_eq!(d.by_document, !whole, "{ranks} ranks");
                assert_eq!(d.state().by_document, Some(!whole));
            }
        }
        // Uneven files: each rank keeps one document in two of every file, so one pass of
        // each reads the split once, and their passes are within a document of each other.
        let uneven = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let source = files(uneven.path(), Split::Train)?;
        let split = source.sample(usize::MAX)?;
        let mut read = Vec::new();
        for mut d in fresh(&source, 2)? {
            assert!(d.by_document);
            let mut pass = Vec::new();
            while d.epoch() == 0 {
                pass.push(d.next_document()?);
            }
            pass.pop(); // the first of the next pass
            assert!(pass.len().abs_diff(split.len() / 2) <= 1, "{}", pass.len());
            read.extend(pass);
        }
        assert_eq!(sorted(read), sorted(split));
        Ok(())
    }

    #[test]
    fn a_position_written_before_the_split_was_recorded_keeps_the_whole_files() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let source = files(dir.path(), Split::Train)?;
        let mut old =
            serde_json::to_value(Documents::new(&dims(1, 2), source.clone(), 0, 0)?.state())?;
        if let Some(map) = old.as_object_mut() {
            map.remove("by_document");
        }
        // Titan then gave 5 files to 2 ranks whole: rank 1 read files 1 and 3.
        let mut resumed = Documents::new(&dims(1, 2), source, 0, 0)?;
        resumed.load_state(serde_json::from_value(old)?)?;
        assert!(!resumed.by_document);
        assert_eq!(&*resumed.units, &[1, 3]);
        assert_eq!(resumed.state().by_document, Some(false));
        Ok(())
    }

    #[test]
    fn resharding_deals_the_shuffle_buffers_and_is_deterministic() -> Result<()> {
        let source = stories(60, Split::Train);
        let mut states = Vec::new();
        let mut buffered = Vec::new();
        for rank in 0..2 {
            let mut d = Documents::new(&dims(rank, 2), source.clone(), 6, 9)?;
            take(&mut d, 5)?;
            buffered.extend(d.state.buffer.iter().map(|b| format!("{:?}", b.to_doc())));
            states.push(d.state());
        }
        let mut dealt = Vec::new();
        for rank in 0..3 {
            let mut a = Documents::new(&dims(rank, 3), source.clone(), 6, 9)?;
            a.load_resharded(states.clone())?;
            dealt.extend(a.state.buffer.iter().map(|b| format!("{:?}", b.to_doc())));
            let mut b = Documents::new(&dims(rank, 3), source.clone(), 6, 9)?;
            b.load_resharded(states.clone())?;
            assert_eq!(take(&mut a, 30)?, take(&mut b, 30)?);
        }
        assert_eq!(sorted(dealt), sorted(buffered));
        // Positions that do not fit the source are refused, naming the rank.
        let mut bad = states.clone();
        bad[1].unit = 7;
        let err = Documents::new(&dims(0, 3), source.clone(), 6, 9)?
            .load_resharded(bad)
            .expect_err("unit 7 of 1")
            .to_string();
        assert!(err.contains("rank 1") && err.contains("unit 7"), "{err}");
        Ok(())
    }

    #[test]
    fn a_position_written_before_the_split_was_per_file_resumes_in_its_first_file() -> Result<()> {
        let mut d = Documents::new(&dims(0, 1), stories(60, Split::Train), 0, 0)?;
        take(&mut d, 30)?;
        let mut old = serde_json::to_value(d.state())?;
        let expected = take(&mut d, 5)?;
        // What titan wrote before: `seen` counted along the share, no `unit_seen`.
        let unit_seen = old["unit_seen"].take();
        old["seen"] = unit_seen;
        if let Some(map) = old.as_object_mut() {
            map.remove("unit_seen");
        }
        let mut resumed = Documents::new(&dims(0, 1), stories(60, Split::Train), 0, 0)?;
        resumed.load_state(serde_json::from_value(old.clone())?)?;
        assert_eq!(take(&mut resumed, 5)?, expected);
        // In a later file of the share the two splits differ: refused, saying why.
        old["unit"] = 1.into();
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let err = Documents::new(&dims(0, 1), files(dir.path(), Split::Train)?, 0, 0)?
            .load_state(serde_json::from_value(old.clone())?)
            .expect_err("a later file")
            .to_string();
        assert!(
            err.contains("older titan") && err.contains("new run"),
            "{err}"
        );
        // With separate validation data nothing is held out: the rules agree everywhere.
        Documents::new(&dims(0, 1), files(dir.path(), Split::All)?, 0, 0)?
            .load_state(serde_json::from_value(old)?)?;
        Ok(())
    }

    #[test]
    fn the_held_out_documents_do_not_depend_on_the_number_of_ranks() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let val = files(dir.path(), Split::Validation)?;
        let expected = sorted(val.sample(usize::MAX)?);
        // 36 documents in 5 files: files shorter than 20 still hold out their share.
        assert!(expected.len() >= 2, "{expected:?}");
        for ranks in 1..=3 {
            let mut all = Vec::new();
            for rank in 0..ranks {
                let mut d = Documents::new(&dims(rank, ranks), val.clone(), 0, 0)?;
                while d.epoch() == 0 {
                    all.push(d.next_document()?);
                }
                all.pop();
            }
            assert_eq!(sorted(all), expected, "{ranks} rank(s)");
        }
        Ok(())
    }

    /// A buffered shard document keeps its text's size through a checkpoint; a bare list of
    /// ids (a checkpoint from before the sizes) counts 4 bytes per id, as its run did.
    #[test]
    fn buffered_ids_keep_their_texts_size_through_a_checkpoint() -> Result<()> {
        let doc = Buffered::from(Doc::Tokens {
            ids: vec![5, 6, 7],
            text_bytes: 11,
        });
        let saved = serde_json::to_string(&doc)?;
        let back: Buffered = serde_json::from_str(&saved)?;
        assert_eq!((back.size(), &back), (11, &doc));
        let old: Buffered = serde_json::from_str("[5, 6, 7]")?;
        assert_eq!(old.size(), 12);
        let text: Buffered = serde_json::from_str("\"a story\"")?;
        assert_eq!(text, Buffered::Text("a story".into()));
        Ok(())
    }

    #[test]
    fn the_shuffle_buffer_is_bounded_in_bytes_and_its_snapshot_shares_the_text() -> Result<()> {
        let mut docs = Documents::new(&dims(0, 1), stories(200, Split::All), 1000, 0)?
            .with_shuffle_bytes(2_000)?;
        for _ in 0..50 {
            let taken = docs.next_document()?;
            assert!(taken.len() < 3_000, "a story of {} bytes", taken.len());
            let state = docs.state();
            let bytes: usize = state.buffer.iter().map(Buffered::size).sum();
            // Filling stops at the first document past the bound (stories are < 3,000 bytes),
            // far below the 1,000 documents the count alone allows.
            assert!(bytes < 2_000 + 3_000, "{bytes} bytes buffered");
            assert!(state.buffer.len() <= 6, "{} documents", state.buffer.len());
            // The snapshot points at the same text.
            let (Buffered::Text(a), Buffered::Text(b)) = (&state.buffer[0], &docs.state.buffer[0])
            else {
                panic!("stories are text");
            };
            assert!(Arc::ptr_eq(a, b));
        }
        // A saved state round-trips through JSON (a checkpoint) and continues exactly.
        let saved = serde_json::to_string(&docs.state())?;
        let next = take(&mut docs, 5)?;
        let mut resumed = Documents::new(&dims(0, 1), stories(200, Split::All), 1000, 0)?
            .with_shuffle_bytes(2_000)?;
        resumed.load_state(serde_json::from_str(&saved)?)?;
        assert_eq!(take(&mut resumed, 5)?, next);
        assert!(
            Documents::new(&dims(0, 1), stories(10, Split::All), 4, 0)?
                .with_shuffle_bytes(0)
                .is_err()
        );
        Ok(())
    }

    /// A share smaller than the shuffle buffer sits in it once, not once per pass read ahead:
    /// every document is still served about as often as the others, and a saved state stays
    /// one pass long.
    #[test]
    fn a_share_smaller_than_the_shuffle_buffer_is_buffered_once() -> Result<()> {
        let mut docs = Documents::new(&dims(0, 1), stories(7, Split::All), 1024, 0)?;
        let mut served = Vec::new();
        for _ in 0..7 * 6 {
            served.push(docs.next_document()?);
            let state = docs.state();
            assert!(state.buffer.len() <= 8, "{} documents", state.buffer.len());
            assert!(
                state.epoch <= 1 + served.len() as u64 / 7,
                "epoch {}",
                state.epoch
            );
        }
        assert_eq!(docs.state().pass_documents, Some(7));
        // Every story, each about as often as the others (a shuffle across pass boundaries).
        let mut counts = std::collections::HashMap::new();
        for doc in &served {
            *counts.entry(doc.clone()).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 7);
        assert!(counts.values().all(|&n| (4..=8).contains(&n)), "{counts:?}");
        // A saved state round-trips and continues exactly.
        let saved = serde_json::to_string(&docs.state())?;
        let next = take(&mut docs, 9)?;
        let mut resumed = Documents::new(&dims(0, 1), stories(7, Split::All), 1024, 0)?;
        resumed.load_state(serde_json::from_str(&saved)?)?;
        assert_eq!(take(&mut resumed, 9)?, next);
        Ok(())
    }

    /// A position into files resumes only into the same files: one added, removed, resized or
    /// renamed since is named, whichever way the position is loaded.
    #[test]
    fn a_position_into_files_that_changed_is_refused_naming_the_file() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let write = |name: &str, n: usize| -> Result<()> {
            let text: String = (0..n)
                .map(|i| format!("{name} document {i}\n<|endoftext|>\n"))
                .collect();
            let path = dir.path().join(name);
            std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
        };
        write("a.txt", 5)?;
        write("b.txt", 5)?;
        let source = || DataSource::files(dir.path(), Split::All);
        let mut d = Documents::new(&dims(0, 1), source()?, 0, 0)?;
        take(&mut d, 3)?;
        let saved: DocumentsState = serde_json::from_str(&serde_json::to_string(&d.state())?)?;
        assert_eq!(saved.files.as_ref().map(|f| f.count), Some(2));
        // Unchanged: resumes, on one rank or re-dealt.
        let mut again = Documents::new(&dims(0, 1), source()?, 0, 0)?;
        again.load_state(saved.clone())?;
        assert_eq!(take(&mut again, 1)?, take(&mut d, 1)?);
        for (change, named) in [
            (("b.txt", 6), "b.txt (155 bytes), now"),
            (("0.txt", 1), "file 0 was"),
        ] {
            write(change.0, change.1)?;
            let mut d = Documents::new(&dims(0, 1), source()?, 0, 0)?;
            let err = d
                .load_state(saved.clone())
                .expect_err("changed")
                .to_string();
            assert!(err.contains(named) && err.contains("changed"), "{err}");
            let mut d = Documents::new(&dims(0, 2), source()?, 0, 0)?;
            let err = d
                .load_resharded(vec![saved.clone()])
                .expect_err("changed, re-dealt")
                .to_string();
            assert!(err.contains("changed"), "{err}");
        }
        // A position saved before the stamps is taken as it is.
        let mut old = saved;
        old.files = None;
        write("b.txt", 5)?;
        std::fs::remove_file(dir.path().join("0.txt")).map_err(|e| Error::io("0.txt", e))?;
        Documents::new(&dims(0, 1), source()?, 0, 0)?.load_state(old)?;
        Ok(())
    }

    #[test]
    fn splits_are_disjoint_and_epochs_wrap() -> Result<()> {
        let mut train = Documents::new(&dims(0, 1), stories(40, Split::Train), 0, 0)?;
        let mut val = Documents::new(&dims(0, 1), stories(40, Split::Validation), 0, 0)?;
        let t: HashSet<String> = take(&mut train, 38)?.into_iter().collect();
        let v = take(&mut val, 2)?;
        assert!(v.iter().all(|d| !t.contains(d)));
        assert_eq!(train.epoch(), 0);
        take(&mut train, 1)?;
        assert_eq!(train.epoch(), 1);
        Ok(())
    }

    #[test]
    fn ranks_share_documents_and_shuffled_state_resumes() -> Result<()> {
        let all = stories(30, Split::All).sample(30)?;
        let mut union = Vec::new();
        for rank in 0..3 {
            let mut d = Documents::new(&dims(rank, 3), stories(30, Split::All), 0, 0)?;
            union.extend(take(&mut d, 10)?);
        }
        union.sort();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(union, sorted);

        let mut a = Documents::new(&dims(1, 2), stories(30, Split::Train), 8, 5)?;
        take(&mut a, 17)?;
        let saved: DocumentsState = serde_json::from_str(&serde_json::to_string(&a.state())?)?;
        let expected = take(&mut a, 40)?;
        let mut b = Documents::new(&dims(1, 2), stories(30, Split::Train), 8, 5)?;
        b.load_state(saved)?;
        assert_eq!(take(&mut b, 40)?, expected);
        Ok(())
    }
}
