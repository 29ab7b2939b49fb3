//! What both outcomes emit: the struct as written and its `{Experiment}Builder`. `expand.rs`
//! adds the working `Experiment` impl to them, `fallback.rs` a stub beside the errors.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::ast::{Experiment, is_reserved};

/// The struct as written, without titan's field attributes.
pub fn plain_struct(exp: &Experiment) -> TokenStream {
    let Experiment {
        attrs,
        vis,
        ident,
        generics,
        ..
    } = exp;
    let where_clause = &generics.where_clause;
    let fields = exp.fields.iter().map(|f| {
        let (attrs, vis, name, ty) = (&f.attrs, &f.vis, &f.ident, &f.ty);
        quote!(#(#attrs)* #vis #name: #ty)
    });
    quote! {
        #(#attrs)*
        // Settings sections and helpers are kept for the run even when no method reads them.
        #[allow(dead_code)]
        #vis struct #ident #generics #where_clause { #(#fields,)* }
    }
}

/// `{Experiment}Builder` with one `Option` and one setter per field, `build()`, and
/// `{Experiment}::builder()`.
pub fn builder(exp: &Experiment) -> TokenStream {
    let (vis, ident, generics) = (&exp.vis, &exp.ident, &exp.generics);
    let (impl_generics, ty_generics, where_clause) = exp.generics.split_for_impl();
    let builder = format_ident!("{}Builder", ident);
    let slots = exp.fields.iter().map(|f| {
        let (name, ty) = (&f.ident, &f.ty);
        quote!(#name: ::core::option::Option<#ty>)
    });
    let names = exp.fields.iter().map(|f| &f.ident);
    // A reserved name was reported; its setter would clash with `build()`.
    let setters = exp
        .fields
        .iter()
        .filter(|f| !is_reserved(&f.ident))
        .map(|f| {
            let (name, ty) = (&f.ident, &f.ty);
            let doc =
                format!("Uses `value` for `{name}` instead of building it from its expression.");
            quote! {
                #[doc = #doc]
                #vis fn #name(mut self, value: #ty) -> Self {
                    self.#name = ::core::option::Option::Some(value);
                    self
                }
            }
        });
    let doc = format!(
        "Builds a [`{ident}`]: every field not set here is built from its expression, in dependency order."
    );
    quote! {
        #[doc = #doc]
        #[allow(missing_docs)]
        #vis struct #builder #generics #where_clause { #(#slots,)* }

        // Written out rather than derived, so it asks nothing of the field types.
        impl #impl_generics ::core::default::Default for #builder #ty_generics #where_clause {
            fn default() -> Self {
                Self { #(#names: ::core::option::Option::None,)* }
            }
        }

        impl #impl_generics #builder #ty_generics #where_clause {
            #(#setters)*

            /// Builds the experiment (no command-line overrides).
            #vis fn build(self) -> ::titan::Result<#ident #ty_generics> {
                <#ident #ty_generics as ::titan::experiment::Experiment>::build_from(
                    self,
                    &::titan::experiment::Overrides::for_experiment(<#ident #ty_generics as ::titan::experiment::Experiment>::NAME),
                )
            }
        }

        impl #impl_generics #ident #ty_generics #where_clause {
            /// A builder that builds every field from its expression unless replaced.
            #vis fn builder() -> #builder #ty_generics {
                ::core::default::Default::default()
            }
        }
    }
}
