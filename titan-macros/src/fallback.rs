//! What is emitted when the experiment has errors: the errors, the struct as written and a
//! stub builder and `Experiment` impl, so code that uses the experiment does not pile more
//! errors on top of the real one (thiserror's `fallback.rs`, clap's `dummies.rs`).

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::ItemStruct;

use crate::ast::{ATTRIBUTES, Experiment};
use crate::emit::{builder, plain_struct};

/// The errors with the stub of `parsed`, or with `item` itself when it could not be parsed as
/// an experiment (a tuple struct), so its name still resolves.
pub fn generate(item: &ItemStruct, parsed: Option<&Experiment>, error: syn::Error) -> TokenStream {
    let errors = error.to_compile_error();
    let Some(exp) = parsed else {
        // A stub with no builder, so `titan::main!(Exp)` adds no error of its own.
        let stub = stub(&item.ident, &item.generics, quote!(()));
        let item = without_our_attributes(item);
        return quote! { #errors #item #stub };
    };
    let builder_ident = format_ident!("{}Builder", exp.ident);
    let (_, ty_generics, _) = exp.generics.split_for_impl();
    let stub = stub(
        &exp.ident,
        &exp.generics,
        quote!(#builder_ident #ty_generics),
    );
    let plain = plain_struct(exp);
    let builder = builder(exp);
    quote! {
        #errors
        #plain
        #builder
        #stub
    }
}

/// An `Experiment` impl for `ident` whose every method is unreachable, with `builder` as its
/// builder type (which must implement `Default`).
pub fn stub(ident: &syn::Ident, generics: &syn::Generics, builder: TokenStream) -> TokenStream {
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let unreachable = quote!(::core::unreachable!("the experiment did not compile"));
    let builder_ident = builder;
    quote! {
        impl #impl_generics ::titan::experiment::Experiment for #ident #ty_generics #where_clause {
            type Builder = #builder_ident;
            const NAME: &'static str = "";
            const ORDER: &'static [&'static str] = &[];
            fn builder() -> #builder_ident {
                ::core::default::Default::default()
            }
            fn resolve_config<'o>(
                _: &mut #builder_ident,
                _: &'o ::titan::experiment::Overrides,
            ) -> ::titan::Result<::titan::experiment::ConfigSet<'o>> {
                #unreachable
            }
            fn build_from(_: #builder_ident, _: &::titan::experiment::Overrides) -> ::titan::Result<Self> {
                #unreachable
            }
            fn training(&self) -> &::titan::experiment::TrainingConfig {
                #unreachable
            }
            fn train(&mut self, _: &mut ::titan::trainer::Trainer) -> ::titan::Result<::titan::trainer::Summary> {
                #unreachable
            }
            fn export_hf(&mut self, _: &::titan::checkpoint::Checkpoint, _: &::std::path::Path) -> ::titan::Result<()> {
                #unreachable
            }
            fn export_only(_: Self::Builder, _: &::titan::experiment::Overrides, _: &::titan::checkpoint::Checkpoint, _: &::std::path::Path) -> ::titan::Result<()> {
                #unreachable
            }
        }
    }
}

/// `item` without `#[build]`, `#[config]` and `#[role]` on its fields, which rustc would
/// otherwise report as unknown attributes.
fn without_our_attributes(item: &ItemStruct) -> ItemStruct {
    let mut item = item.clone();
    for field in item.fields.iter_mut() {
        field.attrs.retain(|a| {
            !a.path()
                .get_ident()
                .is_some_and(|name| ATTRIBUTES.contains(&name.to_string().as_str()))
        });
    }
    item
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::Errors;
    use crate::check::check;
    use syn::parse_quote;

    fn fallback(item: ItemStruct) -> String {
        let mut errors = Errors::default();
        let exp = Experiment::parse(&item, &mut errors);
        if let Some(exp) = &exp {
            check(exp, &mut errors);
        }
        let error = errors.finish().expect_err("rejected");
        generate(&item, exp.as_ref(), error).to_string()
    }

    #[test]
    fn a_reserved_field_gets_no_setter_to_clash_with_build() {
        let out = fallback(parse_quote! {
            struct Exp { #[build(0)] build: u8 }
        });
        assert_eq!(out.matches("fn build (").count(), 1, "{out}");
    }

    #[test]
    fn a_generic_experiment_is_emitted_with_its_parameters() {
        let out = fallback(parse_quote! {
            struct Exp<T: Default> { #[build(T::default())] model: T }
        });
        assert!(out.contains("struct Exp < T : Default >"), "{out}");
        assert!(
            out.contains("impl < T : Default > :: titan :: experiment :: Experiment for Exp < T >"),
            "{out}"
        );
    }

    #[test]
    fn a_struct_that_is_not_an_experiment_is_kept_without_our_attributes() {
        let out = fallback(parse_quote! {
            struct Exp(#[build(1)] #[allow(dead_code)] u8);
        });
        assert!(
            out.contains("struct Exp (# [allow (dead_code)] u8)"),
            "{out}"
        );
        assert!(!out.contains("# [build"), "{out}");
    }
}
