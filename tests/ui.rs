//! `#[experiment]`'s compile-time checks: each `tests/ui/fail` case is one mistake and must
//! fail with exactly the error in its `.stderr`. The `tests/ui/pass` cases run from
//! `experiments_pass.rs`, in the release build that the other tests share.

#[test]
fn experiment_wiring() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
}
