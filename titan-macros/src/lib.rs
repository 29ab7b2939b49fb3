//! `#[experiment]`: turns a struct of components into a type-checked builder. Parse
//! (`ast.rs`), then check (`check.rs`, `deps.rs`), then generate: `expand.rs` when all is well,
//! `fallback.rs` on any error (the struct and a stub, so one mistake gives one message). Both
//! build on `emit.rs`; this file runs the stages, and no two modules import each other.

mod ast;
mod check;
mod deps;
mod emit;
mod expand;
mod fallback;
mod roles;
mod suggest;

use proc_macro::TokenStream;
use proc_macro2::Span;
use syn::spanned::Spanned;

use crate::ast::{Errors, Experiment};

/// Makes an experiment struct a type-checked builder and a trainer.
///
/// Each field is a component with the expression that builds it: `#[build(expr)]` for a
/// component, `#[config(expr)]` for a settings section that `--set` and `--print-config`
/// reach. Expressions use other fields by name; the macro builds in dependency order. Roles
/// come from field names (`model`, `train_data`, `val_data`, `loss`, `optimizer`,
/// `lr_scheduler`, `tokenizer`, `dist`, `training`, `metrics`) or `#[role(name)]`.
#[proc_macro_attribute]
pub fn experiment(args: TokenStream, input: TokenStream) -> TokenStream {
    experiment2(args.into(), input.into()).into()
}

fn experiment2(
    args: proc_macro2::TokenStream,
    input: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let item = match syn::parse2::<syn::Item>(input) {
        Ok(syn::Item::Struct(item)) => item,
        // Anything else is kept as written beside the error, so its uses still resolve.
        Ok(other) => {
            let error = syn::Error::new(
                Span::call_site(),
                "`#[experiment]` goes on a struct with one named field per component",
            )
            .to_compile_error();
            // An enum keeps a stub, so `titan::main!(Exp)` adds no error of its own.
            let stub = match &other {
                syn::Item::Enum(e) => fallback::stub(&e.ident, &e.generics, quote::quote!(())),
                _ => proc_macro2::TokenStream::new(),
            };
            return quote::quote!(#error #other #stub);
        }
        Err(e) => return e.to_compile_error(),
    };
    let mut errors = Errors::default();
    if !args.is_empty() {
        errors.error(args.span(), "`#[experiment]` takes no arguments");
    }
    let parsed = Experiment::parse(&item, &mut errors);
    let order = parsed
        .as_ref()
        .and_then(|exp| check::check(exp, &mut errors));
    match (errors.finish(), parsed, order) {
        (Ok(()), Some(exp), Some(order)) => expand::generate(&exp, &order),
        (result, parsed, _) => {
            let error = result.err().unwrap_or_else(|| {
                syn::Error::new(Span::call_site(), "experiment could not be expanded")
            });
            fallback::generate(&item, parsed.as_ref(), error)
        }
    }
}
