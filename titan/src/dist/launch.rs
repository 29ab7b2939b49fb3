//! `--nproc-per-node N` without torchrun: this binary started N times on this machine, each
//! with torchrun's variables, and watched like torchrun's agent does: when a rank fails, the
//! others get a few seconds to stop on their own (their errors name it), then are killed.
//! The ranks live as long as the launcher: they run in a process group of their own, so the
//! launcher alone receives Ctrl-C and SIGTERM and passes each on, and they get SIGTERM (stop
//! with a checkpoint) if it dies without doing so.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::{Error, Result};

/// The exit status of a rank that stopped because another one did (the launcher names the
/// rank that failed on its own, not this one).
pub const PEER_STOPPED: u8 = 3;

/// The exit status of a run stopped on a signal after its checkpoint ([`Error::Stopped`]): not
/// a failure of the rank, and not a finished run either.
pub const STOPPED: u8 = 4;

/// How long the other ranks get to stop on their own after one failed.
const GRACE: Duration = Duration::from_secs(15);

/// `args` without `flag` and its value (`--flag N` or `--flag=N`).
pub fn without_flag(args: &[OsString], flag: &str) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut skip_value = false;
    let with_value = format!("{flag}=");
    for arg in args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        let text = arg.to_string_lossy();
        if text == flag {
            skip_value = true;
        } else if !text.starts_with(&with_value) {
            out.push(arg.clone());
        }
    }
    out
}

/// A free TCP port on loopback for rank 0's store (`MASTER_PORT`).
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("a free port on 127.0.0.1", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::io("a free port on 127.0.0.1", e))?
        .port();
    Ok(port)
}

/// Runs `nproc` ranks of `program` with `args` on this machine (torchrun's `--standalone`
/// variables: `RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`,
/// `MASTER_PORT`) and waits for all: an error names the first rank that failed.
pub fn spawn_ranks(program: &std::path::Path, args: &[OsString], nproc: usize) -> Result<()> {
    spawn_with_grace(program, args, nproc, GRACE)
}

fn spawn_with_grace(
    program: &std::path::Path,
    args: &[OsString],
    nproc: usize,
    grace: Duration,
) -> Result<()> {
    if nproc == 0 {
        return Err(Error::config("--nproc-per-node", 0, "must be at least 1"));
    }
    if std::env::var_os("WORLD_SIZE").is_some() {
        return Err(Error::config(
            "--nproc-per-node",
            nproc,
            "this process was already launched as a rank (WORLD_SIZE is set): use either \
             torchrun or --nproc-per-node, not both",
        ));
    }
    let port = free_port()?;
    // Each rank's share of the cores for libtorch's CPU threads (torchrun sets 1), unless the
    // user chose.
    let threads = std::env::var_os("OMP_NUM_THREADS").is_none().then(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / nproc).max(1)
    });
    if let Some(threads) = threads.filter(|_| nproc > 1) {
        eprintln!("launcher: {nproc} ranks, OMP_NUM_THREADS={threads} each (set it to choose)");
    }
    // SIGTERM (a container's stop, a scheduler) and SIGINT (Ctrl-C) to the launcher are
    // passed on to the ranks as they come (the same signal twice within one 50 ms poll counts
    // once): the first stops them with a checkpoint, a second Ctrl-C ends them at once.
    // Handled from here on; unregistered when `signals` drops.
    let mut signals = Signals::new([SIGTERM, SIGINT])
        .map_err(|e| Error::io("the launcher's SIGTERM and SIGINT handlers", e))?;
    let mut children: Vec<(usize, Child)> = Vec::with_capacity(nproc);
    for rank in 0..nproc {
        let mut command = Command::new(program);
        if let Some(threads) = threads {
            command.env("OMP_NUM_THREADS", threads.to_string());
        }
        // A process group of their own (the terminal's Ctrl-C reaches the launcher only, which
        // passes it on once), and SIGTERM when the launcher dies, even by SIGKILL.
        command.process_group(0);
        crate::shim::signal_when_parent_dies(&mut command, Signal::SIGTERM);
        let child = command
            .args(args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .spawn();
        match child {
            Ok(child) => children.push((rank, child)),
            Err(e) => {
                stop(&mut children);
                return Err(Error::io(program, e));
            }
        }
    }
    watch(children, grace, &mut signals)
}

/// Waits for every rank; after the first failure, the others get `grace`, then are killed.
/// Each SIGTERM or SIGINT the launcher receives (`signals`) is sent on to every rank still
/// running. A rank that stopped on a signal with its checkpoint makes the run stopped (exit
/// status 4), whoever sent the signal.
fn watch(mut running: Vec<(usize, Child)>, grace: Duration, signals: &mut Signals) -> Result<()> {
    let mut forwarded: Option<&str> = None;
    let mut stopped = false;
    // The first rank that failed on its own; else the first that failed at all.
    let mut first: Option<(usize, ExitStatus)> = None;
    let mut first_peer: Option<(usize, ExitStatus)> = None;
    let mut deadline: Option<Instant> = None;
    while !running.is_empty() {
        let mut still = Vec::with_capacity(running.len());
        for (rank, mut child) in running {
            match child.try_wait() {
                // Stopped on a signal, with its checkpoint: not a failure.
                Ok(Some(status)) if status.code() == Some(i32::from(STOPPED)) => stopped = true,
                Ok(Some(status)) if !status.success() => {
                    let slot = if status.code() == Some(i32::from(PEER_STOPPED)) {
                        &mut first_peer
                    } else {
                        &mut first
                    };
                    if slot.is_none() {
                        *slot = Some((rank, status));
                    }
                    deadline.get_or_insert(Instant::now() + grace);
                }
                Ok(Some(_)) => {}
                Ok(None) => still.push((rank, child)),
                Err(e) => {
                    still.push((rank, child));
                    stop(&mut still);
                    return Err(Error::io(format!("waiting for rank {rank}"), e));
                }
            }
        }
        running = still;
        for signal in signals.pending() {
            let (name, signal) = match signal {
                SIGINT => ("SIGINT", Signal::SIGINT),
                _ => ("SIGTERM", Signal::SIGTERM),
            };
            forwarded = Some(name);
            eprintln!("launcher: {name}: passing it on to the ranks");
            for (_, child) in &running {
                if let Ok(pid) = i32::try_from(child.id()) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
                }
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let left: Vec<String> = running.iter().map(|(r, _)| r.to_string()).collect();
            eprintln!(
                "launcher: rank(s) {} still running {}s after a rank failed: stopping them",
                left.join(", "),
                grace.as_secs()
            );
            stop(&mut running);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Stopped: some rank stopped with its checkpoint (a signal passed on after every rank had
    // finished changes nothing).
    if stopped && first.is_none() {
        let on = forwarded.unwrap_or("a signal");
        return Err(Error::Stopped(format!(
            "the ranks stopped on {on} with a checkpoint; run the same command again to resume"
        )));
    }
    match first.or(first_peer) {
        None => Ok(()),
        Some((rank, status)) => {
            use std::os::unix::process::ExitStatusExt;
            let why = match status.signal() {
                Some(_) => "it was killed, with no error of its own",
                None => "its error is above",
            };
            Err(Error::Distributed(format!(
                "rank {rank} failed ({status}); {why}"
            )))
        }
    }
}

fn stop(children: &mut Vec<(usize, Child)>) {
    for (_, child) in children.iter_mut() {
        let _ = child.kill();
    }
    for (_, child) in children.iter_mut() {
        let _ = child.wait();
    }
    children.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_and_its_value_are_taken_out() {
        let args: Vec<OsString> = [
            "--steps",
            "3",
            "--nproc-per-node",
            "2",
            "--nproc-per-node=4",
            "--x",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let out = without_flag(&args, "--nproc-per-node");
        assert_eq!(out, ["--steps", "3", "--x"].map(OsString::from));
    }

    #[test]
    fn the_first_failed_rank_is_named_and_the_others_stopped() {
        // Rank 1 fails at once, rank 0 would sleep for a minute: stopped after the grace.
        let sh = std::path::Path::new("/bin/sh");
        let script = "if [ \"$RANK\" = 1 ]; then exit 1; else sleep 60; fi";
        let started = Instant::now();
        let grace = Duration::from_secs(1);
        let err = spawn_with_grace(sh, &["-c".into(), script.into()], 2, grace)
            .expect_err("rank 1 fails");
        assert!(
            err.to_string().contains("rank 1 failed (exit status: 1)"),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "rank 0 was not stopped"
        );
    }

    /// A rank that stopped on a signal with its checkpoint (status 4), sent to it rather than to
    /// the launcher, makes the run stopped, not finished: a `train && export` script stops too.
    #[test]
    fn a_rank_stopped_on_a_signal_stops_the_run() {
        let sh = std::path::Path::new("/bin/sh");
        let script = "if [ \"$RANK\" = 1 ]; then exit 4; else exit 0; fi";
        let err = spawn_with_grace(sh, &["-c".into(), script.into()], 2, Duration::from_secs(5))
            .expect_err("rank 1 stopped");
        assert!(matches!(err, Error::Stopped(_)), "{err}");
        assert!(err.to_string().contains("stopped on a signal"), "{err}");
    }

    #[test]
    fn a_rank_stopped_by_another_is_not_the_one_named() {
        // Rank 1 stops first, because of rank 0 (status 3); rank 0's own failure is named.
        let sh = std::path::Path::new("/bin/sh");
        let script = "if [ \"$RANK\" = 1 ]; then exit 3; else sleep 0.5; exit 1; fi";
        let err = spawn_with_grace(sh, &["-c".into(), script.into()], 2, Duration::from_secs(5))
            .expect_err("both fail");
        assert!(err.to_string().contains("rank 0 failed"), "{err}");
    }
}
