//! The `tests/ui/pass` experiments (an optimizer, a dataloader and a metrics sink defined in
//! the experiment file, with no registration anywhere; Adafactor swapped in) and the experiments of
//! `experiments/` compile with the rest of the tests and train a few steps.

mod common;

#[path = "ui/pass/custom_optimizer.rs"]
mod custom_optimizer;

#[path = "ui/pass/custom_dataset.rs"]
mod custom_dataset;

#[path = "ui/pass/adafactor.rs"]
mod adafactor;

#[path = "ui/pass/wiring_forms.rs"]
mod wiring_forms;

// Its `main` (from `titan::main!`) is unused here: the test runs it through `run`.
#[allow(dead_code)]
#[path = "../experiments/tiny_llama.rs"]
mod tiny_llama;

// `allocator = none` declares no allocator: tiny_llama's `main!` made mimalloc this binary's
// already, and a second one would not compile.
#[allow(dead_code)]
mod own_allocator {
    titan::main!(super::tiny_llama::TinyLlama, allocator = none);
}

#[test]
fn an_optimizer_written_in_the_experiment_file_trains() {
    custom_optimizer::main();
}

#[test]
fn a_dataloader_and_a_metrics_sink_written_in_the_experiment_file_train_and_record() {
    custom_dataset::main();
}

#[test]
fn adafactor_wsd_accumulation_and_titan_batches_by_editing_the_file_alone() {
    adafactor::main();
}

#[test]
fn a_renamed_training_section_a_raw_identifier_and_a_shadowing_let_wire_as_written() {
    wiring_forms::main();
}

#[test]
fn tiny_llama_builds_and_trains_two_steps() {
    let metrics = common::two_steps::<tiny_llama::TinyLlama>(&[
        "--set",
        "llama.num_hidden_layers=1",
        "--set",
        "dataset.tokenizer_sample=300",
    ]);
    assert!(metrics.contains("\"step\":2"), "{metrics}");
}

#[test]
fn experiment_names_come_from_the_struct() {
    use titan::Experiment;
    assert_eq!(tiny_llama::TinyLlama::NAME, "tiny_llama");
}
