//! A tuple struct is not an experiment: one error at the attribute, and `titan::main!` on it
//! adds none of its own.
use titan::prelude::*;

#[experiment]
pub struct Exp(#[build(CausalLmLoss)] CausalLmLoss);

titan::main!(Exp);
