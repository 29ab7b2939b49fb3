//! The optimizer and its LR scheduler as the loop drives them: one erased [`Update`].

use tch::Tensor;

use super::contracts::SameOptimizer;
use crate::Result;
use crate::lr::LrScheduler;
use crate::optim::Optimizer;

/// Optimizer and scheduler, erased.
pub(crate) trait Update {
    fn schedule(&mut self) -> f64;
    fn zero_grad(&mut self) -> Result<()>;
    fn step(&mut self) -> Result<()>;
    fn capturable(&self) -> bool;
    /// The optimizer's state tensors, for a checkpoint.
    fn optimizer_state(&self) -> Result<Vec<(String, Tensor)>>;
    /// Restores the optimizer's state from a checkpoint.
    fn load_optimizer_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()>;
    /// Steps the scheduler has taken.
    fn scheduler_steps(&self) -> u64;
    /// Restores the scheduler's step count.
    fn set_scheduler_steps(&mut self, steps: u64);
}

/// An optimizer and the scheduler that drives it, as one [`Update`].
pub(crate) struct OptSched<'a, O, S> {
    pub(crate) optimizer: &'a mut O,
    pub(crate) scheduler: &'a mut S,
}

impl<O, S> Update for OptSched<'_, O, S>
where
    O: Optimizer,
    S: LrScheduler,
    S::Optimizer: SameOptimizer<O>,
{
    fn schedule(&mut self) -> f64 {
        self.scheduler
            .step(<S::Optimizer as SameOptimizer<O>>::as_scheduled(
                self.optimizer,
            ))
    }
    fn zero_grad(&mut self) -> Result<()> {
        self.optimizer.zero_grad()
    }
    fn step(&mut self) -> Result<()> {
        self.optimizer.step()
    }
    fn capturable(&self) -> bool {
        self.optimizer.capturable()
    }
    fn optimizer_state(&self) -> Result<Vec<(String, Tensor)>> {
        self.optimizer.state_tensors()
    }
    fn load_optimizer_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()> {
        self.optimizer.load_state_tensors(state)
    }
    fn scheduler_steps(&self) -> u64 {
        self.scheduler.steps_done()
    }
    fn set_scheduler_steps(&mut self, steps: u64) {
        self.scheduler.set_steps_done(steps);
    }
}
