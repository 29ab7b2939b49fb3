//! A child process tied to its parent's life: the one unsafe call titan makes that is not into
//! libtorch (a closure run between fork and exec).

use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::signal::Signal;

/// The process `command` starts gets `signal` when this process ends, however it ends (Linux's
/// parent-death signal); if this process is already gone when the child starts, the start fails.
/// Call it from the thread that lives as long as the child must (the signal follows the thread
/// that forked).
pub(crate) fn signal_when_parent_dies(command: &mut Command, signal: Signal) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the child between fork and exec and calls only prctl and
    // getppid, both async-signal-safe, and allocates nothing (its errors are OS error codes).
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(signal)?;
            // The parent died before the line above: the signal would never come.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(
                    nix::errno::Errno::ESRCH as i32,
                ));
            }
            Ok(())
        });
    }
}
