//! Stopping on a signal: while the loop runs, SIGTERM (a cluster's preemption, torchrun or
//! titan's launcher stopping its ranks) or SIGINT (Ctrl-C) asks the run to stop with a
//! checkpoint: one process after the step it arrived in, several ranks at their next log point
//! (where they agree on it). A second Ctrl-C ends the process at once, as without
//! the handlers; SIGTERM again changes nothing (a scheduler and a launcher may both send one,
//! and a scheduler follows with SIGKILL when its grace period ends).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::{SigId, flag};

use crate::{Error, Result};

/// The signals a run stops on.
const SIGNALS: [i32; 2] = [SIGTERM, SIGINT];

/// Handlers registered for one loop, unregistered when it ends (after it, a signal acts as
/// without them).
pub(crate) struct StopSignals {
    asked: Arc<AtomicBool>,
    which: Arc<AtomicUsize>,
    ids: Vec<SigId>,
}

impl StopSignals {
    /// Registers the handlers.
    pub(crate) fn arm() -> Result<Self> {
        let asked = Arc::new(AtomicBool::new(false));
        let which = Arc::new(AtomicUsize::new(0));
        let mut ids = Vec::new();
        for signal in SIGNALS {
            let register = || -> std::io::Result<Vec<SigId>> {
                let mut ids = Vec::new();
                // A second Ctrl-C, once a stop was asked: the default action (the process ends).
                if signal == SIGINT {
                    ids.push(flag::register_conditional_default(
                        signal,
                        Arc::clone(&asked),
                    )?);
                }
                ids.push(flag::register_usize(
                    signal,
                    Arc::clone(&which),
                    signal as usize,
                )?);
                ids.push(flag::register(signal, Arc::clone(&asked))?);
                Ok(ids)
            };
            ids.extend(register().map_err(|e| Error::io("the stop signals' handlers", e))?);
        }
        Ok(Self { asked, which, ids })
    }

    /// The signal that asked the run to stop, if one did.
    pub(crate) fn asked(&self) -> Option<&'static str> {
        self.asked
            .load(Ordering::SeqCst)
            .then(|| match self.which.load(Ordering::SeqCst) as i32 {
                SIGINT => "SIGINT",
                _ => "SIGTERM",
            })
    }
}

impl Drop for StopSignals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_is_noted_and_the_handlers_go_with_the_loop() -> Result<()> {
        let signals = StopSignals::arm()?;
        assert_eq!(signals.asked(), None);
        signal_hook::low_level::raise(SIGTERM).map_err(|e| Error::io("raise", e))?;
        assert_eq!(signals.asked(), Some("SIGTERM"));
        // A second SIGTERM (a launcher's beside a scheduler's) does not end the process.
        signal_hook::low_level::raise(SIGTERM).map_err(|e| Error::io("raise", e))?;
        assert_eq!(signals.asked(), Some("SIGTERM"));
        drop(signals);
        // Armed again, nothing is asked: each loop starts afresh.
        assert_eq!(StopSignals::arm()?.asked(), None);
        Ok(())
    }
}
