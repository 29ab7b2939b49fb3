//! The runtime half of `#[experiment]`: the `Experiment` trait the macro implements, the
//! wiring chain whose steps carry the compile-time checks, configuration sections with
//! `--config` and `--set`, the command line, and the `main` every experiment binary runs. It
//! drives the trainer; the trainer knows nothing of it.

pub mod cli;
mod config;
mod hf;
mod output_dir;
mod overrides;
mod resume;
mod section;
mod wire;

pub use config::ConfigSet;
pub use hf::{export_checkpoint, export_hf, init_from_hf, init_tokenizer_matches};
pub use output_dir::{OutputLock, keep_aside};
pub use overrides::Overrides;
pub use section::{
    AnySection, Section, SectionCheck, ValidSection, Validate, is_section, section_clone,
};
pub use wire::{WireData, WireLoss, WireModel, WireOpt, wire};
// What the generated code names here, whose home is elsewhere.
pub use crate::model::check_fits;
pub use crate::trainer::{FitsModelInput, Precision, SameLabels, SameOptimizer, TrainingConfig};

use std::path::Path;
use std::process::ExitCode;

use crate::Result;
use crate::batch::TokenIds;
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::metrics::{JsonlSink, TensorBoardSink};
use crate::model::{GenerateConfig, Model, generate};
use crate::tokenizer::Tokenizer;
use crate::trainer::{Checkpointing, Summary, Trainer};
use cli::TrainArgs;

/// Before step 1 of a run with a tokenizer: its ids and the run's `seq_len` fit `model`
/// ([`check_fits`]), and `trainer`'s checkpoints will record the tokenizer's fingerprint
/// ([`Tokenizer::fingerprint`]: a resume with another tokenizer is refused) and carry its files
/// (its Hugging Face form, [`Tokenizer::save_hf`], where it has one), so a checkpoint holds the
/// tokenizer its ids mean. The generated `train` calls it.
pub fn tokenizer_fits<T, M>(
    trainer: &mut Trainer,
    tokenizer: &T,
    model: &M,
    seq_len: usize,
) -> Result<()>
where
    T: Tokenizer + ?Sized,
    M: Model + ?Sized,
{
    check_fits(tokenizer, model, seq_len)?;
    trainer.set_tokenizer_fingerprint(tokenizer.fingerprint());
    if trainer.keeps_checkpoints() && crate::dist::writes_outputs()? {
        match tokenizer_files(tokenizer) {
            Ok(files) => trainer.keep_in_checkpoints(files)?,
            Err(e) => tracing::warn!(
                "checkpoints will not carry the tokenizer's files (its Hugging Face form could \
                 not be written: {e})"
            ),
        }
    }
    Ok(())
}

/// The files of `tokenizer`'s Hugging Face form (name, contents), written through a directory
/// of their own under the system's temporary directory; none when it has no such form.
fn tokenizer_files<T: Tokenizer + ?Sized>(tokenizer: &T) -> Result<Vec<(String, Vec<u8>)>> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("titan-tokenizer-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|e| crate::Error::io(&dir, e))?;
    let files = match tokenizer.save_hf(&dir) {
        Err(crate::Error::Unsupported(_)) => Ok(Vec::new()),
        Err(e) => Err(e),
        Ok(()) => std::fs::read_dir(&dir)
            .and_then(|entries| {
                // Files only: a checkpoint holds no directories.
                let mut files = Vec::new();
                for entry in entries {
                    let entry = entry?;
                    if entry.file_type()?.is_file() {
                        let name = entry.file_name().to_string_lossy().into_owned();
                        files.push((name, std::fs::read(entry.path())?));
                    }
                }
                files.sort();
                Ok(files)
            })
            .map_err(|e| crate::Error::io(&dir, e)),
    };
    let _ = std::fs::remove_dir_all(&dir);
    files
}

/// An experiment: a struct of components, built in dependency order by its builder.
/// `#[experiment]` implements it; nothing else needs to.
pub trait Experiment: Sized {
    /// The type-checked builder (`{Experiment}Builder`).
    type Builder;
    /// The binary's name (the struct's name in snake case).
    const NAME: &'static str;
    /// Field names in construction order.
    const ORDER: &'static [&'static str];
    /// A builder where every field is built from its expression unless replaced.
    fn builder() -> Self::Builder;
    /// Builds every field not given to the builder, config sections first (with overrides).
    fn build_from(builder: Self::Builder, overrides: &Overrides) -> Result<Self>;
    /// The resolved configuration sections. Each section's expression runs here, once: its
    /// value is kept in `builder`, where [`Experiment::build_from`] takes it.
    fn resolve_config<'o>(
        builder: &mut Self::Builder,
        overrides: &'o Overrides,
    ) -> Result<ConfigSet<'o>>;
    /// The run-level settings (defaults when the experiment has no `training` section).
    fn training(&self) -> &TrainingConfig;
    /// Trains with `trainer`, then prints samples when the experiment has a tokenizer.
    fn train(&mut self, trainer: &mut Trainer) -> Result<Summary>;
    /// Writes `checkpoint`'s model with the experiment's tokenizer to `dir` in Hugging Face's
    /// form; an error for an experiment without a tokenizer.
    fn export_hf(&mut self, checkpoint: &Checkpoint, dir: &std::path::Path) -> Result<()>;
    /// [`Experiment::export_hf`] building only the model, the tokenizer and what they need (no
    /// loader or optimizer): `--export-hf`.
    fn export_only(
        builder: Self::Builder,
        overrides: &Overrides,
        checkpoint: &Checkpoint,
        dir: &std::path::Path,
    ) -> Result<()>;
}

/// The trainer of a new run: `training`'s loop settings, `metrics.jsonl` and TensorBoard event
/// files (`tb/`) in the output dir.
pub fn trainer_for(training: &TrainingConfig, experiment: &str) -> Result<Trainer> {
    sinks(Trainer::new(training.clone()), training, experiment, false)
}

/// `trainer` with the run's metrics sinks: `metrics.jsonl` (added to when `resumed`, once the
/// checkpoint is restored and the stopped run's later records are moved aside) and a new
/// TensorBoard event file in `tb/` (TensorBoard reads them all; a resumed run's drops the
/// earlier files' points after its checkpoint): each step is logged once.
fn sinks(
    trainer: Trainer,
    training: &TrainingConfig,
    experiment: &str,
    resumed: bool,
) -> Result<Trainer> {
    let dir = training.clone().for_experiment(experiment).output_dir();
    let metrics = dir.join("metrics.jsonl");
    let jsonl = if resumed {
        JsonlSink::resuming(&metrics, dir.join("metrics.superseded.jsonl"))?
    } else {
        // A new run keeps an earlier one's metrics and TensorBoard files, moved aside, so
        // neither is truncated nor mixed into the new run's curves.
        for earlier in [metrics.clone(), dir.join("tb")] {
            if let Some(aside) = keep_aside(&earlier)? {
                eprintln!(
                    "note: an earlier run's {} is kept as {}",
                    earlier.display(),
                    aside.display()
                );
            }
        }
        JsonlSink::create(metrics)?
    };
    Ok(trainer
        .with_sink(jsonl)
        .with_sink(TensorBoardSink::create(dir.join("tb"))?))
}

/// Where a run starts in its output directory: the checkpoints it keeps, and the checkpoint it
/// resumes from (its configuration checked against the run's).
struct Start {
    store: CheckpointStore,
    resume: Option<Checkpoint>,
    /// What the run changes from that checkpoint, for the restored dataloader to accept.
    changes: crate::trainer::ResumeChanges,
}

/// Experiment `name`'s start: it resumes from `training.resume_from`, or, with checkpoints on,
/// from the output directory's latest intact checkpoint when its configuration fits. Found
/// before any component is built, so a misfit is reported before a tokenizer trains or data is
/// read. Damaged checkpoints in the way (a file missing, truncated or corrupt) are said and, by
/// the `writer`, set aside; the ranks check after restoring that they resumed the same step.
fn find_start(
    training: &TrainingConfig,
    name: &str,
    config: &ConfigSet<'_>,
    writer: bool,
) -> Result<Start> {
    let dir = training.clone().for_experiment(name).output_dir();
    let checkpointing = training.checkpoint_every > 0;
    // Without checkpoints of its own a run resumes only when told where from.
    let keep = if checkpointing {
        training.keep_checkpoints
    } else {
        training.keep_checkpoints.max(1)
    };
    let store = CheckpointStore::new(&dir, name, keep)?;
    let resume = match &training.resume_from {
        Some(path) => Some(Checkpoint::open(path, name)?),
        None if checkpointing => {
            let (intact, damaged) = store.latest_intact(!writer)?;
            if intact.is_none() && !damaged.is_empty() {
                return Err(none_intact(
                    &store,
                    &damaged,
                    "resumed",
                    "; move them aside to start the run over, or use another --output-dir",
                ));
            }
            set_aside(&store, &damaged, intact.as_ref(), writer)?;
            intact
        }
        None => {
            // A run without checkpoints would start over beside an earlier run's, and its end
            // would replace that run's `hf/` export.
            // (Any `step-N`, intact or not, is a run's.)
            if let Some(&latest) = store.steps()?.last() {
                return Err(crate::Error::Checkpoint(format!(
                    "{} holds a run's checkpoints (up to step {latest}), and \
                     training.checkpoint_every = 0 would start a new run there from step 0: \
                     resume it with checkpoints on (or --resume-from DIR), or use another \
                     --output-dir",
                    store.dir().display(),
                )));
            }
            None
        }
    };
    let mut changes = crate::trainer::ResumeChanges::default();
    if let Some(checkpoint) = &resume {
        changes = resume::check_config_fits(checkpoint, config, true)?;
        // Resuming behind this directory's own latest intact checkpoint would write a second
        // history over the first one's checkpoints; damaged ones after it are set aside.
        if let Some(&latest) = store.steps()?.last()
            && checkpointing
            && latest > checkpoint.step()
        {
            let (intact, damaged) = store.latest_intact(!writer)?;
            match intact {
                Some(newest) if newest.step() > checkpoint.step() => {
                    return Err(crate::Error::Checkpoint(format!(
                        "{} is at step {}, behind the latest checkpoint of {} (step {}): \
                         resuming there would mix two runs; resume into another --output-dir",
                        checkpoint.dir().display(),
                        checkpoint.step(),
                        store.dir().display(),
                        newest.step()
                    )));
                }
                _ => set_aside(&store, &damaged, Some(checkpoint), writer)?,
            }
        }
    }
    Ok(Start {
        store,
        resume,
        changes,
    })
}

/// Says which damaged checkpoints a run passes over for `resumed`, and (the `writer`) moves
/// each aside, so the run's own later checkpoints of those steps can be written.
fn set_aside(
    store: &CheckpointStore,
    damaged: &[crate::checkpoint::Damaged],
    resumed: Option<&Checkpoint>,
    writer: bool,
) -> Result<()> {
    let Some(resumed) = resumed.filter(|_| writer) else {
        return Ok(());
    };
    for d in damaged.iter().filter(|d| d.step > resumed.step()) {
        let to = store.set_aside(d)?;
        tracing::warn!(
            "checkpoint {} is damaged ({}): resuming from step {} instead, {} steps earlier; \
             the damaged one is kept as {}",
            d.dir.display(),
            d.reason,
            resumed.step(),
            d.step - resumed.step(),
            to.display()
        );
    }
    Ok(())
}

/// The error of a `store` whose every checkpoint is `damaged` (at least one): none can be
/// `what` (resumed, exported); `advice` follows.
fn none_intact(
    store: &CheckpointStore,
    damaged: &[crate::checkpoint::Damaged],
    what: &str,
    advice: &str,
) -> crate::Error {
    let newest = damaged
        .first()
        .map(|d| format!(", the newest {} ({})", d.dir.display(), d.reason))
        .unwrap_or_default();
    crate::Error::Checkpoint(format!(
        "{}: none can be {what}, {} damaged{newest}{advice}",
        store.dir().display(),
        damaged.len(),
    ))
}

impl Start {
    /// The checkpoint that already holds the run's last step, if any: nothing to train.
    fn complete(&self, training: &TrainingConfig) -> Option<&Checkpoint> {
        self.resume.as_ref().filter(|c| c.step() >= training.steps)
    }
}

/// The trainer of experiment `name`'s run from `start`: checkpoints every
/// `training.checkpoint_every` steps, each with the resolved configuration `config`; metrics
/// sinks where this process is the `writer` (rank 0).
fn trainer_for_run(
    training: &TrainingConfig,
    name: &str,
    config: &ConfigSet<'_>,
    start: Start,
    writer: bool,
) -> Result<Trainer> {
    let trainer = match writer {
        true => sinks(
            Trainer::new(training.clone()),
            training,
            name,
            start.resume.is_some(),
        )?,
        // Another rank: no metrics files and no console lines (rank 0 shows the global ones).
        false => Trainer::new(training.clone()).quiet(),
    };
    // SIGTERM (a preemption) or Ctrl-C stops the loop with a checkpoint; a second one at once.
    let mut trainer = trainer.with_stop_on_signals();
    if training.checkpoint_every > 0 {
        let extra = vec![(
            resume::CONFIG_FILE.to_string(),
            config.to_toml().into_bytes(),
        )];
        trainer = trainer.with_checkpoints(Checkpointing::new(
            start.store,
            training.checkpoint_every,
            extra,
        )?);
    }
    if let Some(checkpoint) = start.resume {
        trainer = trainer
            .resume_from(checkpoint)
            .with_resume_changes(start.changes);
    }
    Ok(trainer)
}

/// The checkpoint `--export-hf` writes: `training.resume_from`, or the output directory's
/// latest, whose configuration must fit the run's.
fn checkpoint_to_export(
    training: &TrainingConfig,
    name: &str,
    config: &ConfigSet<'_>,
) -> Result<Checkpoint> {
    let checkpoint = match &training.resume_from {
        Some(path) => Checkpoint::open(path, name)?,
        None => {
            let dir = training.clone().for_experiment(name).output_dir();
            let store = CheckpointStore::new(&dir, name, training.keep_checkpoints.max(1))?;
            // The newest intact one; damaged ones after it are said, and left where they are.
            let (intact, damaged) = store.latest_intact(false)?;
            match intact {
                Some(intact) => {
                    for d in &damaged {
                        tracing::warn!(
                            "checkpoint {} is damaged ({}): exporting step {} instead",
                            d.dir.display(),
                            d.reason,
                            intact.step()
                        );
                    }
                    intact
                }
                None if !damaged.is_empty() => {
                    return Err(none_intact(&store, &damaged, "exported", ""));
                }
                None => {
                    return Err(crate::Error::Checkpoint(format!(
                        "{} holds no checkpoint to export: train with --checkpoint-every N \
                         first, or name one with --resume-from",
                        store.dir().display()
                    )));
                }
            }
        }
    };
    resume::check_config_fits(&checkpoint, config, false)?;
    Ok(checkpoint)
}

/// Before any component is built: checks the run's settings (a bad `seq_len` is found before
/// the tokenizer trains, not after), then seeds libtorch, so initialisation repeats.
pub fn before_components(training: &TrainingConfig) -> Result<()> {
    training.validate()?;
    crate::device::seed_everything(training.seed);
    Ok(())
}

/// Prints `training.samples` continuations of `training.prompt`.
pub fn print_samples<M, T>(model: &M, tokenizer: &T, training: &TrainingConfig) -> Result<()>
where
    M: Model<Input = TokenIds>,
    T: Tokenizer,
{
    if !crate::dist::writes_outputs()? {
        return Ok(());
    }
    let mut prompt: Vec<i64> = tokenizer
        .encode(&training.prompt)?
        .into_iter()
        .map(i64::from)
        .collect();
    let eos = tokenizer.eos_id().map(i64::from);
    // An empty prompt (with a tokenizer that adds no BOS) starts a document: BOS, or the EOS
    // that ends the one before; with neither there is nothing to generate from.
    if prompt.is_empty() {
        match tokenizer.bos_id().map(i64::from).or(eos) {
            Some(start) => prompt.push(start),
            None => {
                tracing::warn!(
                    "no samples: training.prompt {:?} gives no tokens, and the tokenizer has no \
                     BOS or EOS to start from",
                    training.prompt
                );
                return Ok(());
            }
        }
    }
    for i in 0..training.samples {
        let new = generate(model, &prompt, eos, &GenerateConfig::default())?;
        let ids: Vec<u32> = prompt.iter().chain(&new).map(|&t| t as u32).collect();
        println!("--- sample {} ---\n{}", i + 1, tokenizer.decode(&ids)?);
    }
    Ok(())
}

/// The `main` of an experiment binary: flags, `--print-config`, build, train.
pub fn main<E: Experiment>() -> ExitCode {
    // Before any thread starts: it may set an environment variable.
    crate::shim::quiet_kineto_without_gpu();
    // The library reports through `tracing` (e.g. where the data comes from); a binary shows
    // those lines on stderr, bare.
    // Ranks other than 0 report warnings and errors only: rank 0 speaks for the run.
    let level = match crate::dist::launch_rank() {
        Ok(0) | Err(_) => tracing::Level::INFO,
        Ok(_) => tracing::Level::WARN,
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .without_time()
        .with_target(false)
        .with_level(false)
        .try_init();
    let args = TrainArgs::parse(E::NAME);
    let result = match args.nproc_per_node {
        // The launcher: this binary again, once per rank, without the flag.
        Some(nproc) => std::env::current_exe()
            .map_err(|e| crate::Error::io("this binary's path", e))
            .and_then(|exe| {
                let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
                let argv = crate::dist::launch::without_flag(&argv, "--nproc-per-node");
                crate::dist::launch::spawn_ranks(&exe, &argv, nproc)
            }),
        None => run::<E>(args),
    };
    // The group's rank, or before it exists, the launcher's (torchrun's `RANK`).
    let launched = crate::dist::Torchrun::from_env()
        .ok()
        .flatten()
        .filter(|t| t.world_size > 1)
        .map(|t| t.rank);
    let rank = crate::dist::current().map(|g| g.rank()).or(launched);
    // Leaves the process group; after an error, the other ranks' errors name this rank.
    crate::dist::shutdown(result.as_ref().err());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match rank {
                Some(rank) => eprintln!("error (rank {rank}): {e}"),
                None => eprintln!("error: {e}"),
            }
            // A rank that stopped because another one did says so to the launcher, which
            // names the rank that failed on its own.
            match e {
                crate::Error::PeerStopped(_) => ExitCode::from(crate::dist::launch::PEER_STOPPED),
                crate::Error::Stopped(_) => ExitCode::from(crate::dist::launch::STOPPED),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// Runs experiment `E` as its binary would with `args`.
pub fn run<E: Experiment>(args: TrainArgs) -> Result<()> {
    let mut overrides = args.overrides()?.named(E::NAME);
    let mut builder = E::builder();
    // `--pretokenize` sets the data settings' `pretokenize`, wherever the experiment keeps them
    // (found with a builder of its own: the run's sections are resolved with the flag set).
    let data_section = match args.pretokenize {
        true => {
            let found = E::resolve_config(&mut E::builder(), &overrides)?;
            let section = dataset_section(&found, E::NAME)?;
            overrides.push(&format!("{section}.pretokenize"), true);
            Some(section)
        }
        false => None,
    };
    if args.print_config {
        let config = E::resolve_config(&mut builder, &overrides)?;
        config.finish()?;
        print!("{}", config.to_toml());
        println!("# construction order: {}", E::ORDER.join(" -> "));
        return Ok(());
    }
    let config = E::resolve_config(&mut builder, &overrides)?;
    config.finish()?;
    // Settings out of range stop the run before anything is built or written; then the
    // output directory is this process's until the run ends.
    let settings = training_of(&config, E::NAME)?;
    settings.validate()?;
    // A run that trains (or tokenizes) needs its data: checked before the output directory is
    // made or a damaged checkpoint set aside. An export reads none.
    if args.export_hf.is_none() {
        settings.check_data()?;
    }
    if args.pretokenize && settings.data.is_none() {
        return Err(crate::Error::Usage(
            "--pretokenize tokenizes the files of --data (and --val-data); without them the run \
             trains on the built-in stories, which are generated, not read"
                .into(),
        ));
    }
    // Rank 0 writes the run's outputs (torchrun's RANK: the process group comes later, with
    // the components); the other ranks only read the output directory.
    let ranks = crate::dist::Torchrun::from_env()?.map_or(1, |t| t.world_size);
    let writer = crate::dist::writes_outputs()?;
    let _lock = match writer {
        true => Some(OutputLock::acquire(&settings.output_dir())?),
        false => None,
    };
    if let Some(to) = &args.export_hf {
        if ranks > 1 {
            return Err(crate::Error::Usage(format!(
                "--export-hf runs in one process, not {ranks} ranks: run it without torchrun or \
                 --nproc-per-node"
            )));
        }
        let checkpoint = checkpoint_to_export(&settings, E::NAME, &config)?;
        E::export_only(builder, &overrides, &checkpoint, to)?;
        eprintln!(
            "hugging face: {} (the model of {})",
            to.display(),
            checkpoint.dir().display()
        );
        return Ok(());
    }
    if let (Some(section), Some(data)) = (&data_section, &settings.data) {
        // The loaders, as they are built, tokenize what has no current shard (rank 0, while
        // the others wait); nothing trains.
        let dataset: crate::data::DatasetConfig =
            serde_json::from_value(config.tree()[section.as_str()].clone())?;
        drop(E::build_from(builder, &overrides)?);
        // No rank leaves (rank 0 would take the store with it) before every rank is done.
        if let Some(group) = crate::dist::current() {
            group.barrier()?;
        }
        if writer {
            let dir = dataset.tokens_dir().unwrap_or_default();
            eprintln!(
                "tokenized: the token shards of {} are in {}; runs with the same --data and \
                 tokenizer ({}) read them",
                data.display(),
                dir.display(),
                settings.output_dir().display()
            );
        }
        return Ok(());
    }
    let start = find_start(&settings, E::NAME, &config, writer)?;
    if let Some(done) = start.complete(&settings) {
        // A run that ended diverged stays so when its command is rerun: no export.
        crate::trainer::ended_finite(done)?;
        if !writer {
            return Ok(());
        }
        // A shorter --steps than the run reached: its end, not "step 6 of 4".
        let of = match done.step() > settings.steps {
            true => format!(", past training.steps = {}", settings.steps),
            false => format!(" of {}", settings.steps),
        };
        eprintln!(
            "the run is complete: {} holds step {}{of} (raise --steps to train further, or use \
             another --output-dir for a new run)",
            done.dir().display(),
            done.step(),
        );
        // Nothing to build unless its end was never exported: a missing `hf/`, or one of an
        // earlier end (a longer run stopped before its export replaced it).
        let hf = settings.output_dir().join("hf");
        match crate::checkpoint::exported_step(&hf) {
            Some(step) if step == done.step() => return Ok(()),
            Some(step) => eprintln!(
                "note: {} holds step {step}, not the end of the run (step {}): exporting it again",
                hf.display(),
                done.step()
            ),
            // An export by an older titan, which recorded no step: kept as it is.
            None if hf.exists() => {
                eprintln!(
                    "note: {} records no step (an export by an older titan): kept as it is; \
                     --export-hf {} writes the end again",
                    hf.display(),
                    hf.display()
                );
                return Ok(());
            }
            None => {}
        }
        if ranks > 1 {
            eprintln!(
                "note: its end was never exported to hf/: run the binary with --export-hf in one \
                 process"
            );
            return Ok(());
        }
        return export_end::<E>(builder, &overrides, done, &hf);
    }
    // A new run needs the weights it starts from (a resume takes the checkpoint's).
    if start.resume.is_none() {
        settings.check_init_from_hf()?;
    }
    let mut experiment = E::build_from(builder, &overrides)?;
    let training = experiment.training().clone();
    let mut trainer = trainer_for_run(&training, E::NAME, &config, start, writer)?;
    let summary = experiment.train(&mut trainer)?;
    if !writer {
        return Ok(());
    }
    eprintln!(
        "done: {} steps in {:.1}s, last loss {:.4}, val loss {}",
        summary.steps,
        summary.elapsed.as_secs_f64(),
        summary.last_loss,
        summary
            .val_loss
            .map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"))
    );
    Ok(())
}

/// The name of the experiment's data settings (a [`crate::data::DatasetConfig`] section, found
/// by its keys whatever its name), for `--pretokenize`.
fn dataset_section(config: &ConfigSet<'_>, name: &str) -> Result<String> {
    let tree = config.tree();
    let found = tree.as_object().and_then(|sections| {
        sections.iter().find_map(|(section, keys)| {
            let keys = keys.as_object()?;
            (keys.contains_key("pretokenize") && keys.contains_key("tokens_dir"))
                .then(|| section.clone())
        })
    });
    found.ok_or_else(|| {
        crate::Error::Usage(format!(
            "--pretokenize: experiment `{name}` has no data settings to tokenize with (a \
             `#[config(DatasetConfig::default())] dataset: DatasetConfig` field)"
        ))
    })
}

/// The run's `training` settings as `config` resolved them (the defaults when the experiment
/// has no `training` section), with its output directory filled in.
fn training_of(config: &ConfigSet<'_>, name: &str) -> Result<TrainingConfig> {
    let training = match config.training_section() {
        Some(section) => serde_json::from_value(config.tree()[section].clone())?,
        None => TrainingConfig::default(),
    };
    Ok(training.for_experiment(name))
}

/// Exports the end of a complete run (`done`, its last checkpoint) to `hf`, which `run` found
/// missing or holding an earlier end (the run was stopped between its last checkpoint and the
/// export).
fn export_end<E: Experiment>(
    builder: E::Builder,
    overrides: &Overrides,
    done: &Checkpoint,
    hf: &Path,
) -> Result<()> {
    match E::export_only(builder, overrides, done, hf) {
        Ok(()) => {
            eprintln!(
                "hugging face: {} (the model of {})",
                hf.display(),
                done.dir().display()
            );
            Ok(())
        }
        Err(crate::Error::Unsupported(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The allocator experiment binaries run on ([`crate::main!`] declares it): the tokenizer allocates a
/// few times per token, and tokenize+pack runs 20-25% faster on mimalloc than on glibc's malloc.
#[cfg(feature = "mimalloc")]
pub use mimalloc::MiMalloc;

/// Declares `main` for an experiment binary, `titan::main!(TinyLlama);`, with [`MiMalloc`] as
/// its global allocator. A binary with an allocator of its own (jemalloc, dhat), or a crate
/// holding several experiments, writes `titan::main!(TinyLlama, allocator = none);`; without
/// titan's default `mimalloc` feature there is no allocator to declare.
#[macro_export]
macro_rules! main {
    ($experiment:ty) => {
        $crate::__global_allocator!();
        $crate::main!($experiment, allocator = none);
    };
    ($experiment:ty, allocator = none) => {
        fn main() -> ::std::process::ExitCode {
            $crate::experiment::main::<$experiment>()
        }
    };
}

/// Declares [`MiMalloc`] the global allocator (for [`crate::main!`]).
#[cfg(feature = "mimalloc")]
#[doc(hidden)]
#[macro_export]
macro_rules! __global_allocator {
    () => {
        #[global_allocator]
        static TITAN_ALLOCATOR: $crate::experiment::MiMalloc = $crate::experiment::MiMalloc;
    };
}

/// Nothing to declare without the `mimalloc` feature (for [`crate::main!`]).
#[cfg(not(feature = "mimalloc"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __global_allocator {
    () => {};
}

/// Names the experiment field whose expression failed, so a run's error says what was built.
pub fn in_field<T>(result: Result<T, BuildError>, field: &'static str) -> Result<T> {
    result.map_err(|BuildError(e)| crate::Error::Field {
        field,
        source: Box::new(match e.downcast::<crate::Error>() {
            Ok(titan) => *titan,
            Err(other) => crate::Error::Build(other),
        }),
    })
}

/// The error of a field's expression: any error its `?` meets (titan's, I/O, parsing, a
/// `String`…), as with `anyhow`; [`in_field`] names the field.
#[derive(Debug)]
pub struct BuildError(Box<dyn std::error::Error + Send + Sync>);

impl<E: Into<Box<dyn std::error::Error + Send + Sync>>> From<E> for BuildError {
    fn from(e: E) -> Self {
        BuildError(e.into())
    }
}

/// Checks, at the user's field type, that the `dist` field is a distributed environment, and
/// makes `trainer` train as its rank ([`Trainer::join`]).
pub fn join_world<D: crate::DistributedEnvironment>(trainer: &mut Trainer, dist: &D) -> Result<()> {
    trainer.join(dist)
}
