//! Stopping on a signal: while the loop runs, SIGTERM (a cluster's preemption, torchrun or
//! titan's launcher stopping its ranks) or SIGINT (Ctrl-C) asks the run to stop with a
//! checkpoint: one process after the step it arrived in, several ranks at their next log point
//! (where they agree on it). A second Ctrl-C ends the process at once, as without
//! the handlers; SIGTERM again changes nothing (a scheduler and a launcher may both send one,
//! and a scheduler follows with SIGKILL when its grace period ends).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use once_cell::sync::OnceCell;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::{SigId, flag};

use crate::{Error, Result};

/// The signals a run stops on.
const SIGNALS: [i32; 2] = [SIGTERM, SIGINT];

/// How many loops have the handlers armed, and a flag that is up while none has: signal-hook
/// keeps its own handler installed once a signal has had one (unregistering leaves the signal
/// ignored), so a handler that takes the default action while the flag is up gives the signal
/// back its usual effect between and after loops (a Ctrl-C during the end's export ends the
/// process, as without titan's handlers).
struct Armed {
    loops: Mutex<usize>,
    idle: Arc<AtomicBool>,
}

static ARMED: OnceCell<Armed> = OnceCell::new();

/// [`ARMED`], its default-action handlers registered the first time.
fn armed() -> std::io::Result<&'static Armed> {
    ARMED.get_or_try_init(|| {
        let idle = Arc::new(AtomicBool::new(true));
        for signal in SIGNALS {
            flag::register_conditional_default(signal, Arc::clone(&idle))?;
        }
        Ok(Armed {
            loops: Mutex::new(0),
            idle,
        })
    })
}

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
        let counts = armed().map_err(|e| Error::io("the stop signals' handlers", e))?;
        {
            let mut loops = counts.loops.lock().unwrap_or_else(|p| p.into_inner());
            *loops += 1;
            counts.idle.store(false, Ordering::SeqCst);
        }
        // Counted from here: a registration that fails below drops it, uncounted again.
        let mut this = Self {
            asked: Arc::new(AtomicBool::new(false)),
            which: Arc::new(AtomicUsize::new(0)),
            ids: Vec::new(),
        };
        let (asked, which) = (Arc::clone(&this.asked), Arc::clone(&this.which));
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
            let ids = register().map_err(|e| Error::io("the stop signals' handlers", e))?;
            this.ids.extend(ids);
        }
        Ok(this)
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
        // `arm` made it.
        if let Some(armed) = ARMED.get() {
            let mut loops = armed.loops.lock().unwrap_or_else(|p| p.into_inner());
            *loops = loops.saturating_sub(1);
            if *loops == 0 {
                armed.idle.store(true, Ordering::SeqCst);
            }
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
        let again = StopSignals::arm()?;
        assert_eq!(again.asked(), None);
        // While a loop is armed the signals are the loop's; with none, their default action
        // is back (tests in this process arm no other loop).
        let idle = || ARMED.get().map(|a| a.idle.load(Ordering::SeqCst));
        assert_eq!(idle(), Some(false));
        drop(again);
        assert_eq!(idle(), Some(true));
        Ok(())
    }
}
