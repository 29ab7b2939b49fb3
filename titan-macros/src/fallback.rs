//! What is emitted when the experiment has errors: the errors, the struct as written and a
//! stub builder and `Experiment` impl, so code that uses the experiment does not pile more
//! errors on top of the real one (thiserror's `fallback.rs`, clap's `dummies.rs`).

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::ast::Experiment;
use crate::expand::{builder, plain_struct};

pub fn generate(parsed: Option<&Experiment>, error: syn::Error) -> TokenStream {
    let errors = error.to_compile_error();
    let Some(exp) = parsed else {
        return quote! { #errors };
    };
    let ident = &exp.ident;
    let builder_ident = format_ident!("{}Builder", ident);
    let plain = plain_struct(exp);
    let builder = builder(exp);
    let unreachable = quote!(::core::unreachable!("the experiment did not compile"));
    quote! {
        #errors
        #plain
        #builder

        impl ::titan::experiment::Experiment for #ident {
            type Builder = #builder_ident;
            const NAME: &'static str = "";
            const ORDER: &'static [&'static str] = &[];
            fn builder() -> #builder_ident {
                ::core::default::Default::default()
            }
            fn resolve_config<'o>(
                _: &#builder_ident,
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
        }
    }
}
