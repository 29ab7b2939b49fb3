//! `#[experiment]`: turns a struct of components into a type-checked builder. Parse
//! (`ast.rs`), then check (`check.rs`, `deps.rs`), then generate (`expand.rs`); on any error,
//! `fallback.rs` emits the struct and a stub so one mistake gives one message.

mod ast;
mod check;
mod deps;
mod expand;
mod fallback;
mod roles;

use proc_macro::TokenStream;

/// Makes an experiment struct a type-checked builder and a trainer.
///
/// Each field is a component with the expression that builds it: `#[build(expr)]` for a
/// component, `#[config(expr)]` for a settings section that `--set` and `--print-config`
/// reach. Expressions use other fields by name; the macro builds in dependency order. Roles
/// come from field names (`model`, `train_data`, `val_data`, `loss`, `optimizer`,
/// `lr_scheduler`, `tokenizer`, `dist`, `training`) or `#[role(name)]`.
#[proc_macro_attribute]
pub fn experiment(args: TokenStream, input: TokenStream) -> TokenStream {
    let args = proc_macro2::TokenStream::from(args);
    let input = proc_macro2::TokenStream::from(input);
    expand::experiment(args, input).into()
}
