//! The `tests/ui/pass` experiments (an optimizer and a dataloader defined in the experiment
//! file, with no registration anywhere) compile with the rest of the tests and train a few steps.

#[path = "ui/pass/custom_optimizer.rs"]
mod custom_optimizer;

#[path = "ui/pass/custom_dataset.rs"]
mod custom_dataset;

#[test]
fn an_optimizer_written_in_the_experiment_file_trains() {
    custom_optimizer::main();
}

#[test]
fn a_dataloader_written_in_the_experiment_file_trains_and_validates() {
    custom_dataset::main();
}
