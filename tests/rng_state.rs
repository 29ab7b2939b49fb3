//! The default random generator's state saves and restores: the draws after a restore repeat
//! the draws after the save (one test in its own binary, as the generator is process-wide).

use titan::tch::{Device, Kind, Tensor};

#[test]
fn draws_after_a_restore_repeat_the_draws_after_the_save() -> titan::Result<()> {
    titan::device::seed_everything(7);
    let _ = Tensor::randn([3], (Kind::Float, Device::Cpu));
    let state = titan::shim::rng_state(Device::Cpu)?;
    let first = Tensor::randn([5], (Kind::Float, Device::Cpu));
    let other = Tensor::randn([5], (Kind::Float, Device::Cpu));
    assert!(!first.equal(&other), "the generator moved on");
    titan::shim::set_rng_state(Device::Cpu, &state)?;
    let again = Tensor::randn([5], (Kind::Float, Device::Cpu));
    assert!(first.equal(&again), "{first} vs {again}");
    Ok(())
}
