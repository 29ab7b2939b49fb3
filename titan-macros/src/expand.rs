//! Code generation: the struct, its `{Experiment}Builder`, and the `Experiment` impl whose
//! `train` wires the roles through spanned steps (each mismatch is one error at the user's type).

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::ast::{Errors, Experiment, Field, InitKind};
use crate::roles::Role;
use crate::{check, fallback};

pub fn experiment(args: TokenStream, input: TokenStream) -> TokenStream {
    let item: syn::ItemStruct = match syn::parse2(input) {
        Ok(item) => item,
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
        (Ok(()), Some(exp), Some(order)) => generate(&exp, &order),
        (result, parsed, _) => {
            let error = result.err().unwrap_or_else(|| {
                syn::Error::new(Span::call_site(), "experiment could not be expanded")
            });
            fallback::generate(parsed.as_ref(), error)
        }
    }
}

/// The struct as written, without titan's field attributes.
pub fn plain_struct(exp: &Experiment) -> TokenStream {
    let Experiment {
        attrs, vis, ident, ..
    } = exp;
    let fields = exp.fields.iter().map(|f| {
        let (attrs, vis, name, ty) = (&f.attrs, &f.vis, &f.ident, &f.ty);
        quote!(#(#attrs)* #vis #name: #ty)
    });
    quote! {
        #(#attrs)*
        // Settings sections and helpers are kept for the run even when no method reads them.
        #[allow(dead_code)]
        #vis struct #ident { #(#fields,)* }
    }
}

/// `{Experiment}Builder` with one `Option` and one setter per field, `build()`, and
/// `{Experiment}::builder()`.
pub fn builder(exp: &Experiment) -> TokenStream {
    let (vis, ident) = (&exp.vis, &exp.ident);
    let builder = format_ident!("{}Builder", ident);
    let slots = exp.fields.iter().map(|f| {
        let (name, ty) = (&f.ident, &f.ty);
        quote!(#name: ::core::option::Option<#ty>)
    });
    let setters = exp.fields.iter().map(|f| {
        let (name, ty) = (&f.ident, &f.ty);
        let doc = format!("Uses `value` for `{name}` instead of building it from its expression.");
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
        #[derive(Default)]
        #[allow(missing_docs)]
        #vis struct #builder { #(#slots,)* }

        impl #builder {
            #(#setters)*

            /// Builds the experiment (no command-line overrides).
            #vis fn build(self) -> ::titan::Result<#ident> {
                <#ident as ::titan::experiment::Experiment>::build_from(self, &::titan::experiment::Overrides::none())
            }
        }

        impl #ident {
            /// A builder that builds every field from its expression unless replaced.
            #vis fn builder() -> #builder {
                ::core::default::Default::default()
            }
        }
    }
}

fn generate(exp: &Experiment, order: &[usize]) -> TokenStream {
    let ident = &exp.ident;
    let builder_ident = format_ident!("{}Builder", ident);
    let name = snake_case(&ident.to_string());
    let order_names: Vec<String> = order
        .iter()
        .map(|&i| exp.fields[i].ident.to_string())
        .collect();
    let ordered: Vec<&Field> = order.iter().map(|&i| &exp.fields[i]).collect();
    let configs: Vec<&Field> = ordered
        .iter()
        .copied()
        .filter(|f| f.kind == InitKind::Config)
        .collect();
    let components: Vec<&Field> = ordered
        .iter()
        .copied()
        .filter(|f| f.kind == InitKind::Build)
        .collect();

    let config_by_ref = configs.iter().map(|f| {
        let (name, ty) = (&f.ident, &f.ty);
        let take = quote_spanned!(ty.span()=> __titan_builder.#name.as_ref().map(::core::clone::Clone::clone));
        take_or_build(f, take)
    });
    let config_by_value = configs.iter().map(|f| {
        let name = &f.ident;
        take_or_build(f, quote!(__titan_builder.#name))
    });
    let config_names: Vec<_> = configs.iter().map(|f| &f.ident).collect();
    let build_components = components.iter().map(|f| {
        let name = &f.ident;
        take_or_build(f, quote!(__titan_builder.#name))
    });
    let all_names = exp.fields.iter().map(|f| &f.ident);

    let training = exp.role(Role::Training);
    let seed = match training {
        Some(f) => {
            let name = &f.ident;
            quote!(::titan::experiment::before_components(&#name);)
        }
        None => {
            quote!(::titan::experiment::before_components(&::core::default::Default::default());)
        }
    };
    let training_ref = match training {
        Some(f) => {
            let (name, ty) = (&f.ident, &f.ty);
            quote_spanned!(ty.span()=> &self.#name)
        }
        None => quote! {{
            static DEFAULT: ::std::sync::OnceLock<::titan::experiment::TrainingConfig> = ::std::sync::OnceLock::new();
            DEFAULT.get_or_init(::core::default::Default::default)
        }},
    };

    let train = wiring(exp);
    let plain = plain_struct(exp);
    let builder = builder(exp);
    quote! {
        #plain
        #builder

        impl ::titan::experiment::Experiment for #ident {
            type Builder = #builder_ident;
            const NAME: &'static str = #name;
            const ORDER: &'static [&'static str] = &[#(#order_names),*];

            fn builder() -> #builder_ident {
                ::core::default::Default::default()
            }

            #[allow(unused_variables, clippy::clone_on_copy, clippy::redundant_closure_call, clippy::needless_question_mark)]
            fn resolve_config<'o>(
                __titan_builder: &#builder_ident,
                __titan_overrides: &'o ::titan::experiment::Overrides,
            ) -> ::titan::Result<::titan::experiment::ConfigSet<'o>> {
                let mut __titan_cfg = ::titan::experiment::ConfigSet::new(__titan_overrides);
                #(#config_by_ref)*
                let _ = (#(&#config_names,)*);
                ::core::result::Result::Ok(__titan_cfg)
            }

            #[allow(unused_variables, clippy::redundant_locals, clippy::redundant_closure_call, clippy::needless_question_mark)]
            fn build_from(
                __titan_builder: #builder_ident,
                __titan_overrides: &::titan::experiment::Overrides,
            ) -> ::titan::Result<Self> {
                let mut __titan_cfg = ::titan::experiment::ConfigSet::new(__titan_overrides);
                #(#config_by_value)*
                __titan_cfg.finish()?;
                #seed
                #(#build_components)*
                ::core::result::Result::Ok(Self { #(#all_names,)* })
            }

            fn training(&self) -> &::titan::experiment::TrainingConfig {
                #training_ref
            }

            fn train(
                &mut self,
                trainer: &mut ::titan::trainer::Trainer,
            ) -> ::titan::Result<::titan::trainer::Summary> {
                #train
            }
        }
    }
}

/// `let name: Ty = the builder's value, or the user's expression` (spanned at the expression,
/// so a type mismatch lands there); settings sections then take their `--set` overrides.
fn take_or_build(f: &Field, take: TokenStream) -> TokenStream {
    let (name, ty, expr) = (&f.ident, &f.ty, &f.expr);
    let field = name.to_string();
    // The expression runs in a closure so its `?` errors can be tagged with the field; inside,
    // it is bound at the declared type, so a type mismatch lands on the expression.
    let value = quote_spanned! {expr.span()=>
        ::titan::experiment::in_field(
            (|| -> ::titan::Result<#ty> {
                let __titan_built: #ty = #expr;
                ::core::result::Result::Ok(__titan_built)
            })(),
            #field,
        )?
    };
    let overrides = (f.kind == InitKind::Config).then(|| {
        let section = name.to_string();
        quote!(let #name: #ty = __titan_cfg.resolve(#section, #name)?;)
    });
    quote! {
        let #name: #ty = match #take {
            ::core::option::Option::Some(v) => v,
            ::core::option::Option::None => #value,
        };
        #overrides
    }
}

/// The spanned wiring chain: model → train_data → loss → val_data → optimizer → lr_scheduler.
fn wiring(exp: &Experiment) -> TokenStream {
    // Checked by `check`: the required roles exist.
    let field = |role| exp.role(role).map(|f| (&f.ident, f.ty.span()));
    let (Some((model, model_sp)), Some((train, train_sp)), Some((loss, loss_sp))) = (
        field(Role::Model),
        field(Role::TrainData),
        field(Role::Loss),
    ) else {
        return quote!(::core::unreachable!());
    };
    let (Some((opt, opt_sp)), Some((sched, sched_sp))) =
        (field(Role::Optimizer), field(Role::LrScheduler))
    else {
        return quote!(::core::unreachable!());
    };
    let val = field(Role::ValData).map(|(val, sp)| {
        quote_spanned!(sp=> let __titan_w = __titan_w.val_data(&mut self.#val, __titan_eval_batches)?;)
    });
    let samples = field(Role::Tokenizer).map(|(tok, sp)| {
        quote_spanned!(sp=> ::titan::experiment::print_samples(&self.#model, &self.#tok, &__titan_training)?;)
    });
    let dist = field(Role::Dist).map(|(dist, sp)| {
        quote_spanned!(sp=> ::titan::experiment::is_distributed_environment(&self.#dist);)
    });
    let w_model = quote_spanned!(model_sp=> ::titan::experiment::wire(&self.#model));
    let w_train = quote_spanned!(train_sp=> __titan_w.train_data(&mut self.#train));
    let w_loss = quote_spanned!(loss_sp=> __titan_w.loss(&self.#loss));
    let w_opt = quote_spanned!(opt_sp=> __titan_w.optimizer(&mut self.#opt));
    let w_sched = quote_spanned!(sched_sp=> __titan_w.lr_scheduler(&mut self.#sched));
    quote! {
        let __titan_training = ::titan::experiment::Experiment::training(self).clone();
        let __titan_eval_batches = __titan_training.eval_batches;
        #dist
        let __titan_summary = {
            let __titan_w = #w_model;
            let __titan_w = #w_train;
            let __titan_w = #w_loss;
            #val
            let __titan_w = #w_opt;
            let __titan_parts = #w_sched;
            __titan_parts.fit(trainer)?
        };
        #samples
        ::core::result::Result::Ok(__titan_summary)
    }
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
