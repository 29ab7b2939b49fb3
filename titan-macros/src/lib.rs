//! `titan-macros`: home of `#[experiment]`, which will turn an experiment struct into a
//! type-checked builder (dependency order, missing roles and mismatched interfaces as compile
//! errors). It exports nothing yet: `experiments/tiny_llama.rs` is wired by hand until then.
