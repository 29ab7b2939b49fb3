//! `experiments/llama_125m.rs` compiles with the tests and trains two steps with its model
//! and sequences shrunk (a binary of its own: each experiment's `titan::main!` declares the
//! global allocator, and a test binary can hold one).

mod common;

#[allow(dead_code)]
#[path = "../experiments/llama_125m.rs"]
mod llama_125m;

#[test]
fn llama_125m_builds_and_trains_two_steps_when_shrunk() {
    use titan::Experiment;
    assert_eq!(llama_125m::Llama125m::NAME, "llama_125m");
    // The recipe as written, with the model and sequences shrunk to fit a test.
    let metrics = common::two_steps::<llama_125m::Llama125m>(&[
        "--set",
        "llama.num_hidden_layers=1",
        "--set",
        "llama.hidden_size=64",
        "--set",
        "llama.intermediate_size=128",
        "--set",
        "llama.num_attention_heads=4",
        "--set",
        "llama.num_key_value_heads=2",
        "--set",
        "training.seq_len=64",
        "--set",
        "bpe.vocab_size=400",
        "--set",
        "dataset.tokenizer_sample=300",
    ]);
    assert!(metrics.contains("\"step\":2"), "{metrics}");
}
