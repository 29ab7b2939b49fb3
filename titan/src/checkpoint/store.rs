//! The checkpoint directories of one run, `DIR/checkpoints/step-N/`. A checkpoint is written
//! into `.step-N.partial/`, each file and the manifest fsynced, then renamed into place and the
//! parent directory fsynced: a crash at any moment leaves either the new checkpoint complete or
//! nothing of it but a partial directory, which loading ignores and the next save removes.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::bad;
use super::manifest::{FORMAT, FileEntry, MANIFEST, Manifest};
use crate::{Error, Result};

/// The file of a checkpoint that holds the model's weights (Hugging Face names).
pub const MODEL_FILE: &str = "model.safetensors";

/// Where a run keeps its checkpoints, and how many.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    dir: PathBuf,
    experiment: String,
    keep: usize,
}

/// One complete checkpoint: its directory and manifest.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    dir: PathBuf,
    manifest: Manifest,
    /// Set once [`Checkpoint::verify`] has read every file: later reads check sizes only.
    verified: std::sync::OnceLock<()>,
}

/// A checkpoint directory whose files do not match its manifest (a file missing, truncated or
/// corrupt): no run can resume from it.
#[derive(Debug, Clone)]
pub struct Damaged {
    /// Its directory.
    pub dir: PathBuf,
    /// Its step.
    pub step: u64,
    /// What is wrong, as [`Checkpoint::verify`] says it.
    pub reason: String,
}

/// The suffix of a damaged checkpoint's directory once set aside (no longer a `step-N`).
const DAMAGED: &str = ".damaged";

const PARTIAL: &str = ".partial";

fn step_dir_name(step: u64) -> String {
    format!("step-{step}")
}

/// The step of a complete checkpoint directory's name (`step-N`).
fn parse_step(name: &str) -> Option<u64> {
    let step = name.strip_prefix("step-")?.parse().ok()?;
    // Only the name titan writes: `step-007` or `step-+7` would open `step-7`.
    (name == step_dir_name(step)).then_some(step)
}

impl CheckpointStore {
    /// The checkpoints of experiment `experiment` in `output_dir/checkpoints`, keeping the last
    /// `keep` (at least 1).
    pub fn new(output_dir: &Path, experiment: &str, keep: usize) -> Result<Self> {
        if keep == 0 {
            return Err(Error::config(
                "keep_checkpoints",
                keep,
                "must be at least 1 (the checkpoint just written is kept)",
            ));
        }
        Ok(Self {
            dir: output_dir.join("checkpoints"),
            experiment: experiment.to_string(),
            keep,
        })
    }

    /// `DIR/checkpoints`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The steps of the complete checkpoint directories, in increasing order.
    pub fn steps(&self) -> Result<Vec<u64>> {
        let mut steps: Vec<u64> = self
            .entries()?
            .iter()
            .filter_map(|name| parse_step(name))
            .collect();
        steps.sort_unstable();
        Ok(steps)
    }

    /// Directories a writer left half-written (it crashed or was killed), which the next save
    /// removes.
    pub fn leftovers(&self) -> Result<Vec<PathBuf>> {
        Ok(self
            .entries()?
            .into_iter()
            .filter(|name| name.starts_with('.') && name.ends_with(PARTIAL))
            .map(|name| self.dir.join(name))
            .collect())
    }

    /// The latest complete checkpoint, if any (half-written directories are skipped with a
    /// warning).
    pub fn latest(&self) -> Result<Option<Checkpoint>> {
        self.warn_leftovers()?;
        match self.steps()?.last() {
            Some(&step) => Ok(Some(Checkpoint::open(
                &self.dir.join(step_dir_name(step)),
                &self.experiment,
            )?)),
            None => Ok(None),
        }
    }

    /// Warns of each half-written or half-removed directory (the next save removes them).
    fn warn_leftovers(&self) -> Result<()> {
        for left in self.leftovers()? {
            tracing::warn!(
                "ignoring {}: a checkpoint whose writing or removal did not finish (the next save removes it)",
                left.display()
            );
        }
        Ok(())
    }

    /// The newest checkpoint whose every file matches its manifest, and the damaged ones after
    /// it, newest first (each read whole: their files are checked once, here). A missing or
    /// unparseable manifest is damage; a sound manifest this run must not take (another
    /// experiment, another titan's format) is an error, except where `tolerant` (a rank that
    /// does not write, while rank 0 may be moving a damaged one aside, and reports such a
    /// manifest itself), where it counts as damaged. An I/O error is an error on every rank.
    pub fn latest_intact(&self, tolerant: bool) -> Result<(Option<Checkpoint>, Vec<Damaged>)> {
        self.warn_leftovers()?;
        let mut damaged = Vec::new();
        for step in self.steps()?.into_iter().rev() {
            let dir = self.dir.join(step_dir_name(step));
            let found = match Checkpoint::open_or_damaged(&dir, &self.experiment) {
                Ok(Ok(checkpoint)) if checkpoint.step() != step => Err(bad(
                    &dir,
                    format!("its manifest says step {}: damaged", checkpoint.step()),
                )),
                Ok(Ok(checkpoint)) => checkpoint.verify().map(|()| checkpoint),
                Ok(Err(reason)) => Err(Error::Checkpoint(reason)),
                // Another experiment's or titan's checkpoint: an error, except on a rank that
                // does not write (rank 0 says it; this rank must not stop first).
                Err(Error::Checkpoint(reason)) if tolerant => Err(Error::Checkpoint(reason)),
                Err(e) => return Err(e),
            };
            match found {
                Ok(checkpoint) => return Ok((Some(checkpoint), damaged)),
                // An I/O error (permissions, a lost mount) is not damage, except a file gone
                // on a rank that does not write (rank 0 set the directory aside meanwhile).
                Err(Error::Io { path, source })
                    if !(tolerant && source.kind() == std::io::ErrorKind::NotFound) =>
                {
                    return Err(Error::Io { path, source });
                }
                Err(e) => {
                    let reason = match e {
                        Error::Checkpoint(reason) => reason,
                        other => other.to_string(),
                    };
                    let own = format!("{}: ", dir.display());
                    let reason = reason.strip_prefix(&own).unwrap_or(&reason).to_string();
                    damaged.push(Damaged { dir, step, reason })
                }
            }
        }
        Ok((None, damaged))
    }

    /// Moves a damaged checkpoint out of the run's way, to `step-N.damaged` (kept for a look,
    /// never read or removed by titan), and returns where it went.
    pub fn set_aside(&self, damaged: &Damaged) -> Result<PathBuf> {
        let name = step_dir_name(damaged.step);
        let mut to = self.dir.join(format!("{name}{DAMAGED}"));
        let mut n = 1;
        while to.exists() {
            n += 1;
            to = self.dir.join(format!("{name}{DAMAGED}-{n}"));
        }
        fs::rename(&damaged.dir, &to).map_err(|e| Error::io(&damaged.dir, e))?;
        sync_dir(&self.dir)?;
        Ok(to)
    }

    /// Writes step `step`'s checkpoint: `write` puts its files into the directory it is given
    /// (flat, no sub-directories); the store fsyncs them, adds the manifest, renames the
    /// directory into place and drops checkpoints beyond the last `keep`. Nothing is written
    /// over: a checkpoint of this step already there is an error.
    pub fn save(&self, step: u64, write: impl FnOnce(&Path) -> Result<()>) -> Result<Checkpoint> {
        let done = self.dir.join(step_dir_name(step));
        if done.exists() {
            return Err(bad(&done, "a checkpoint of this step is already there"));
        }
        if !self.dir.is_dir() {
            fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
            // The new `checkpoints/` itself survives a crash.
            if let Some(parent) = self.dir.parent() {
                sync_dir(parent)?;
            }
        }
        for left in self.leftovers()? {
            tracing::warn!(
                "removing {}, a checkpoint left half-written",
                left.display()
            );
            fs::remove_dir_all(&left).map_err(|e| Error::io(&left, e))?;
        }
        let partial = self.dir.join(format!(".{}{PARTIAL}", step_dir_name(step)));
        fs::create_dir(&partial).map_err(|e| Error::io(&partial, e))?;
        let written = write(&partial).and_then(|()| self.seal(&partial, step));
        let manifest = match written {
            Ok(manifest) => manifest,
            Err(e) => {
                // What was written is of no use; the previous checkpoints are untouched.
                let _ = fs::remove_dir_all(&partial);
                return Err(e);
            }
        };
        fs::rename(&partial, &done).map_err(|e| Error::io(&done, e))?;
        sync_dir(&self.dir)?;
        self.retire()?;
        Ok(Checkpoint {
            dir: done,
            manifest,
            verified: std::sync::OnceLock::new(),
        })
    }

    /// Fsyncs every file of `dir`, then writes and fsyncs its manifest and the directory.
    fn seal(&self, dir: &Path, step: u64) -> Result<Manifest> {
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let path = entry.map_err(|e| Error::io(dir, e))?.path();
            let name = file_name(&path)?;
            if !path.is_file() || name == MANIFEST {
                return Err(bad(
                    dir,
                    format!("`{name}`: a checkpoint holds plain files other than {MANIFEST}"),
                ));
            }
            let (bytes, crc32c) = checksum(&path)?;
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&path, e))?;
            files.push(FileEntry {
                name,
                bytes,
                crc32c,
            });
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let manifest = Manifest {
            format: FORMAT,
            titan_version: env!("CARGO_PKG_VERSION").to_string(),
            experiment: self.experiment.clone(),
            step,
            files,
        };
        let path = dir.join(MANIFEST);
        let mut file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        file.write_all(serde_json::to_string_pretty(&manifest)?.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(&path, e))?;
        sync_dir(dir)?;
        Ok(manifest)
    }

    /// Removes the oldest checkpoints beyond the last `keep`, each first renamed out of sight
    /// (a hidden partial name, which the next save cleans up), so a crash midway never leaves
    /// a half-deleted directory that looks like a checkpoint.
    fn retire(&self) -> Result<()> {
        let steps = self.steps()?;
        let excess = steps.len().saturating_sub(self.keep);
        for step in &steps[..excess] {
            let name = step_dir_name(*step);
            let dir = self.dir.join(&name);
            let retiring = self.dir.join(format!(".{name}.retiring{PARTIAL}"));
            fs::rename(&dir, &retiring).map_err(|e| Error::io(&dir, e))?;
            fs::remove_dir_all(&retiring).map_err(|e| Error::io(&retiring, e))?;
        }
        Ok(())
    }

    /// Names in `DIR/checkpoints` (none when it does not exist yet).
    fn entries(&self) -> Result<Vec<String>> {
        let read = match fs::read_dir(&self.dir) {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        read.map(|entry| file_name(&entry.map_err(|e| Error::io(&self.dir, e))?.path()))
            .collect()
    }
}

/// The latest `step-N` directory in `dir` or in `dir/checkpoints`, if any.
fn latest_inside(dir: &Path) -> Option<PathBuf> {
    [dir.join("checkpoints"), dir.to_path_buf()]
        .into_iter()
        .find_map(|parent| {
            let latest = std::fs::read_dir(&parent)
                .ok()?
                .filter_map(|e| parse_step(e.ok()?.file_name().to_str()?))
                .max()?;
            Some(parent.join(step_dir_name(latest)))
        })
}

impl Checkpoint {
    /// The checkpoint in `dir`, for experiment `experiment`: its manifest read and checked
    /// (files are checked as they are read, or all at once by [`Checkpoint::verify`]).
    pub fn open(dir: &Path, experiment: &str) -> Result<Self> {
        Self::open_or_damaged(dir, experiment)?.map_err(|reason| match latest_inside(dir) {
            // A run's output directory, or its `checkpoints/`, named for one of its checkpoints.
            Some(latest) => bad(
                dir,
                format!(
                    "{reason}; it holds checkpoints: name one, e.g. the latest, {}",
                    latest.display()
                ),
            ),
            None => bad(dir, reason),
        })
    }

    /// [`Checkpoint::open`], with a damaged manifest (missing, not a manifest) as `Ok(Err)`.
    fn open_or_damaged(dir: &Path, experiment: &str) -> Result<std::result::Result<Self, String>> {
        if dir.is_file() {
            return Err(bad(
                dir,
                "is a file: a checkpoint is a directory (`checkpoints/step-N`)",
            ));
        }
        if !dir.is_dir() {
            return Err(bad(dir, "no checkpoint here (no such directory)"));
        }
        Ok(
            Manifest::read_or_damaged(dir, experiment)?.map(|manifest| Self {
                dir: dir.to_path_buf(),
                manifest,
                verified: std::sync::OnceLock::new(),
            }),
        )
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The step it was written at.
    pub fn step(&self) -> u64 {
        self.manifest.step
    }

    /// Its manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Checks every file's size and checksum against the manifest (once: later calls, and the
    /// reads that follow, check sizes only).
    pub fn verify(&self) -> Result<()> {
        if self.verified.get().is_some() {
            return Ok(());
        }
        for entry in &self.manifest.files {
            self.check(entry)?;
        }
        let _ = self.verified.set(());
        Ok(())
    }

    /// The path of file `name`, after checking its size and checksum.
    pub fn file(&self, name: &str) -> Result<PathBuf> {
        let entry = self
            .manifest
            .file(name)
            .ok_or_else(|| bad(&self.dir, format!("the manifest lists no `{name}`")))?;
        self.check(entry)
    }

    /// Copies the checkpoint's model weights (`MODEL_FILE`) into `params`: every name and shape
    /// is checked before any is copied, and a misfit is `misfit`'s error.
    pub fn load_model_weights(
        &self,
        params: &[(String, tch::Tensor)],
        misfit: impl Fn(String) -> Error,
    ) -> Result<()> {
        let saved = super::read_weights(&[self.file(MODEL_FILE)?])?;
        super::load_weights(saved, params, |_| false, misfit)
    }

    /// The contents of file `name`, checked.
    pub fn read(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.file(name)?;
        fs::read(&path).map_err(|e| Error::io(&path, e))
    }

    fn check(&self, entry: &FileEntry) -> Result<PathBuf> {
        let path = self.dir.join(&entry.name);
        if !path.is_file() {
            return Err(bad(
                &self.dir,
                format!("`{}` is missing (the manifest lists it)", entry.name),
            ));
        }
        let (bytes, crc32c) = match self.verified.get() {
            Some(()) => (
                fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len(),
                entry.crc32c,
            ),
            None => checksum(&path)?,
        };
        if bytes != entry.bytes {
            return Err(bad(
                &self.dir,
                format!(
                    "`{}` has {bytes} bytes, the manifest says {}: truncated or replaced",
                    entry.name, entry.bytes
                ),
            ));
        }
        if crc32c != entry.crc32c {
            return Err(bad(
                &self.dir,
                format!(
                    "`{}` does not match its checksum (CRC-32C {crc32c:08x}, the manifest says \
                     {:08x}): the file is corrupt",
                    entry.name, entry.crc32c
                ),
            ));
        }
        Ok(path)
    }
}

/// Size and CRC-32C of a file, read in blocks.
fn checksum(path: &Path) -> Result<(u64, u32)> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut bytes, mut crc) = (0u64, 0u32);
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok((bytes, crc));
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        bytes += n as u64;
    }
}

/// Makes a directory's entries (a rename, a new file) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

fn file_name(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| bad(path, "a name that is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(keep: usize) -> Result<(tempfile::TempDir, CheckpointStore)> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let store = CheckpointStore::new(dir.path(), "exp", keep)?;
        Ok((dir, store))
    }

    fn two_files(step: u64) -> impl FnOnce(&Path) -> Result<()> {
        move |dir| {
            fs::write(dir.join("model.safetensors"), vec![step as u8; 1000])
                .map_err(|e| Error::io(dir, e))?;
            fs::write(dir.join("train_state.json"), format!("{{\"step\":{step}}}"))
                .map_err(|e| Error::io(dir, e))
        }
    }

    #[test]
    fn saves_whole_checkpoints_and_keeps_the_last_k() -> Result<()> {
        let (_tmp, store) = store(2)?;
        assert!(store.latest()?.is_none());
        for step in [10, 20, 30] {
            let saved = store.save(step, two_files(step))?;
            assert_eq!(saved.step(), step);
        }
        assert_eq!(store.steps()?, [20, 30]);
        let latest = store.latest()?.expect("a checkpoint");
        latest.verify()?;
        assert_eq!(latest.step(), 30);
        let names: Vec<&str> = latest
            .manifest()
            .files
            .iter()
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(names, ["model.safetensors", "train_state.json"]);
        assert_eq!(latest.read("model.safetensors")?, vec![30u8; 1000]);
        assert_eq!(latest.manifest().titan_version, env!("CARGO_PKG_VERSION"));
        let err = store
            .save(30, two_files(30))
            .expect_err("no overwrite")
            .to_string();
        assert!(err.contains("step-30") && err.contains("already"), "{err}");
        Ok(())
    }

    #[test]
    fn a_writer_stopped_midway_leaves_the_previous_checkpoint_and_is_cleaned_up() -> Result<()> {
        let (_tmp, store) = store(3)?;
        store.save(1, two_files(1))?;
        // A writer that fails between two files: nothing of step 2 stays.
        let err = store.save(2, |dir| {
            fs::write(dir.join("model.safetensors"), b"half").map_err(|e| Error::io(dir, e))?;
            Err(Error::Data("disk full".into()))
        });
        assert!(err.is_err());
        assert_eq!(store.steps()?, [1]);
        assert!(store.leftovers()?.is_empty());
        // A writer killed midway (kill -9) leaves its partial directory behind: loading skips
        // it, the next save removes it.
        let killed = store.dir().join(".step-2.partial");
        fs::create_dir(&killed).map_err(|e| Error::io(&killed, e))?;
        fs::write(killed.join("model.safetensors"), b"half").map_err(|e| Error::io(&killed, e))?;
        assert_eq!(store.latest()?.map(|c| c.step()), Some(1));
        store.save(2, two_files(2))?;
        assert!(store.leftovers()?.is_empty(), "the next save cleans up");
        assert_eq!(store.steps()?, [1, 2]);
        Ok(())
    }

    #[test]
    fn a_damaged_latest_checkpoint_gives_way_to_the_one_before() -> Result<()> {
        let (_tmp, store) = store(5)?;
        for step in [1, 2, 3] {
            store.save(step, two_files(step))?;
        }
        let (intact, damaged) = store.latest_intact(false)?;
        assert_eq!(intact.map(|c| c.step()), Some(3));
        assert!(damaged.is_empty());
        // Step 3 loses a file, step 2 has a flipped byte.
        fs::remove_file(store.dir().join("step-3/train_state.json"))
            .map_err(|e| Error::io("step-3", e))?;
        let model = store.dir().join("step-2/model.safetensors");
        let mut bytes = fs::read(&model).map_err(|e| Error::io(&model, e))?;
        bytes[10] ^= 4;
        fs::write(&model, bytes).map_err(|e| Error::io(&model, e))?;
        let (intact, damaged) = store.latest_intact(false)?;
        assert_eq!(intact.map(|c| c.step()), Some(1));
        let steps: Vec<u64> = damaged.iter().map(|d| d.step).collect();
        assert_eq!(steps, [3, 2]);
        assert!(
            damaged[0].reason.contains("train_state.json"),
            "{damaged:?}"
        );
        assert!(damaged[1].reason.contains("checksum"), "{damaged:?}");
        // Set aside, they are no longer checkpoints, and a new step 2 can be written.
        for d in &damaged {
            let to = store.set_aside(d)?;
            assert!(
                to.to_string_lossy().ends_with(".damaged"),
                "{}",
                to.display()
            );
        }
        assert_eq!(store.steps()?, [1]);
        store.save(2, two_files(2))?;
        assert_eq!(store.steps()?, [1, 2]);
        // A manifest that is not JSON (zeroed by a crash), one that is gone, or one that names
        // another step is damage too.
        store.save(3, two_files(3))?;
        store.save(4, two_files(4))?;
        let manifest = |step: u64| store.dir().join(format!("step-{step}/{MANIFEST}"));
        fs::write(manifest(4), [0u8; 64]).map_err(|e| Error::io("step-4", e))?;
        fs::remove_file(manifest(3)).map_err(|e| Error::io("step-3", e))?;
        let two = fs::read_to_string(manifest(2)).map_err(|e| Error::io("step-2", e))?;
        let moved = two.replace("\"step\": 2", "\"step\": 9");
        assert_ne!(moved, two);
        fs::write(manifest(2), moved).map_err(|e| Error::io("step-2", e))?;
        let (intact, damaged) = store.latest_intact(false)?;
        assert_eq!(intact.map(|c| c.step()), Some(1));
        let reasons: Vec<(u64, &str)> = damaged.iter().map(|d| (d.step, &*d.reason)).collect();
        assert_eq!(
            reasons,
            [
                (4, "manifest.json (64 bytes) is not JSON: damaged"),
                (3, "no manifest.json: not a complete titan checkpoint"),
                (2, "its manifest says step 9: damaged"),
            ]
        );
        // Another experiment's checkpoint is an error, not damage.
        let err = CheckpointStore::new(store.dir().parent().expect("parent"), "other", 3)?
            .latest_intact(false)
            .expect_err("another experiment")
            .to_string();
        assert!(err.contains("`exp`"), "{err}");
        Ok(())
    }

    #[test]
    fn bad_checkpoints_give_one_clear_error_each() -> Result<()> {
        let (tmp, store) = store(5)?;
        let saved = store.save(7, two_files(7))?;
        let dir = saved.dir().to_path_buf();
        let io = |e| Error::io(&dir, e);

        let err = Checkpoint::open(&tmp.path().join("nowhere"), "exp").expect_err("missing");
        assert!(err.to_string().contains("no such directory"), "{err}");
        let file = dir.join("manifest.json");
        let err = Checkpoint::open(&file, "exp").expect_err("a file");
        assert!(err.to_string().contains("is a file"), "{err}");
        // The directory that holds the checkpoints, named for one: the latest is suggested.
        let err = Checkpoint::open(store.dir(), "exp")
            .expect_err("the checkpoints' directory")
            .to_string();
        assert!(
            err.contains(&format!("the latest, {}", dir.display())),
            "{err}"
        );

        let err = Checkpoint::open(&dir, "other").expect_err("other experiment");
        assert!(
            err.to_string().contains("`exp`") && err.to_string().contains("`other`"),
            "{err}"
        );

        // Corrupt: same size, one byte changed.
        let model = dir.join("model.safetensors");
        let mut bytes = fs::read(&model).map_err(io)?;
        bytes[500] ^= 1;
        fs::write(&model, &bytes).map_err(io)?;
        let err = Checkpoint::open(&dir, "exp")?
            .verify()
            .expect_err("corrupt")
            .to_string();
        assert!(
            err.contains("model.safetensors") && err.contains("checksum"),
            "{err}"
        );
        // Truncated.
        fs::write(&model, &bytes[..100]).map_err(io)?;
        let err = Checkpoint::open(&dir, "exp")?.read("model.safetensors");
        let err = err.expect_err("truncated").to_string();
        assert!(err.contains("100 bytes") && err.contains("1000"), "{err}");
        // Missing file.
        fs::remove_file(&model).map_err(io)?;
        let err = Checkpoint::open(&dir, "exp")?
            .verify()
            .expect_err("missing")
            .to_string();
        assert!(
            err.contains("model.safetensors") && err.contains("missing"),
            "{err}"
        );

        // A manifest from a newer titan.
        let manifest = dir.join(MANIFEST);
        let text = fs::read_to_string(&manifest).map_err(io)?;
        let ours = format!("\"format\": {FORMAT}");
        let newer = text.replacen(&ours, "\"format\": 99", 1);
        assert_ne!(newer, text);
        fs::write(&manifest, newer).map_err(io)?;
        let err = Checkpoint::open(&dir, "exp")
            .expect_err("newer")
            .to_string();
        assert!(
            err.contains("format 99") && err.contains("newer titan"),
            "{err}"
        );
        // One from an older titan, whose state this titan does not read.
        fs::write(&manifest, text.replacen(&ours, "\"format\": 1", 1)).map_err(io)?;
        let err = Checkpoint::open(&dir, "exp")
            .expect_err("older")
            .to_string();
        assert!(
            err.contains("format 1") && err.contains("older titan"),
            "{err}"
        );
        Ok(())
    }
}
