//! The optimizer and its LR scheduler as the loop drives them: one erased [`Update`]. Their
//! checkpoint state goes through the parts' role states, which share them.

use std::cell::RefCell;
use std::rc::Rc;

use tch::Tensor;

use super::contracts::SameOptimizer;
use crate::Result;
use crate::lr::LrScheduler;
use crate::optim::Optimizer;

/// Optimizer and scheduler, erased.
pub(crate) trait Update {
    fn schedule(&mut self) -> f64;
    fn zero_grad(&mut self) -> Result<()>;
    /// A step the optimizer skips on the device when `found_inf` is 1; false when it cannot.
    fn step_unless(&mut self, found_inf: &Tensor) -> Result<bool>;
    fn capturable(&self) -> bool;
    /// The step the LR schedule ends at, where it has one.
    fn schedule_ends(&self) -> Option<u64>;
    /// [`Optimizer::updates`].
    fn updates(&self) -> Option<Vec<Tensor>>;
    /// [`Optimizer::base_lr`].
    fn base_lr(&self) -> f64;
}

/// An optimizer and the scheduler that drives it, as one [`Update`].
pub(crate) struct OptSched<'a, O, S> {
    pub(crate) optimizer: Rc<RefCell<&'a mut O>>,
    pub(crate) scheduler: Rc<RefCell<&'a mut S>>,
}

impl<O, S> Update for OptSched<'_, O, S>
where
    O: Optimizer,
    S: LrScheduler,
    S::Optimizer: SameOptimizer<O>,
{
    fn schedule(&mut self) -> f64 {
        let mut optimizer = self.optimizer.borrow_mut();
        self.scheduler
            .borrow_mut()
            .step(<S::Optimizer as SameOptimizer<O>>::as_scheduled(
                &mut **optimizer,
            ))
    }
    fn zero_grad(&mut self) -> Result<()> {
        self.optimizer.borrow_mut().zero_grad()
    }
    fn step_unless(&mut self, found_inf: &Tensor) -> Result<bool> {
        self.optimizer.borrow_mut().step_unless(found_inf)
    }
    fn capturable(&self) -> bool {
        self.optimizer.borrow().capturable()
    }
    fn schedule_ends(&self) -> Option<u64> {
        self.scheduler.borrow().total_steps()
    }
    fn updates(&self) -> Option<Vec<Tensor>> {
        self.optimizer.borrow().updates()
    }
    fn base_lr(&self) -> f64 {
        self.optimizer.borrow().base_lr()
    }
}
