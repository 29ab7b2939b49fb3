//! Code generation for a checked experiment: the struct and its builder (`emit.rs`), and the
//! `Experiment` impl whose `train` wires the roles through spanned steps (each mismatch is one
//! error at the user's type).

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::ast::{Experiment, Field, InitKind, name_of};
use crate::deps;
use crate::emit;
use crate::roles::Role;

/// The experiment's code; `order` is the construction order `check` found.
pub fn generate(exp: &Experiment, order: &[usize]) -> TokenStream {
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
        .filter(|f| f.kind == Some(InitKind::Config))
        .collect();
    let components: Vec<&Field> = ordered
        .iter()
        .copied()
        .filter(|f| f.kind == Some(InitKind::Build))
        .collect();

    // Every use of a settings section's type goes through `titan::experiment::Section`, spanned
    // at the user's field type. Each body checks `is_section` first, so a type that is not a
    // section fails there; later uses are the same obligation at the same span, which rustc
    // does not report again, and the two bodies' errors are identical, so they print once.
    let is_section = |f: &Field| {
        let ty = &f.ty;
        quote_spanned!(ty.span()=> ::titan::experiment::is_section::<#ty>();)
    };
    let check_by_ref = configs.iter().map(|f| is_section(f));
    // `resolve_config` keeps each section's value (before its overrides) in the builder, so
    // `build_from` takes it rather than running the expression again: every `#[config]`
    // expression runs once, and what was printed, validated and locked is what is built.
    let config_by_ref = configs.iter().map(|f| {
        let (name, ty) = (&f.ident, &f.ty);
        let take = quote_spanned!(ty.span()=> __titan_builder.#name.as_ref().map(::titan::experiment::section_clone));
        // At the type's span, as `is_section` is (see `own_sections`).
        let mut value = name.clone();
        value.set_span(ty.span());
        let keep = quote_spanned!(ty.span()=> __titan_builder.#name = ::core::option::Option::Some(::titan::experiment::section_clone(&#value)););
        take_or_build(exp, f, take, Some(keep))
    });
    let check_by_value = configs.iter().map(|f| is_section(f));
    let config_by_value = configs.iter().map(|f| {
        let name = &f.ident;
        take_or_build(exp, f, quote!(__titan_builder.#name), None)
    });
    let config_names: Vec<_> = configs.iter().map(|f| &f.ident).collect();
    // As soon as both the model and the tokenizer are built, and before the loaders and the
    // optimizer, the tokenizer's ids and the run's `seq_len` must fit the model (`train`
    // checks again, for a builder given finished components).
    let fits = match (
        exp.role(Role::Model),
        exp.role(Role::Tokenizer),
        exp.role(Role::Training),
    ) {
        (Some(model), Some(tok), Some(training)) => {
            let at = |f: &Field| components.iter().position(|c| c.ident == f.ident);
            at(model).zip(at(tok)).map(|(m, t)| {
                let (model, tok_name, training) = (&model.ident, &tok.ident, &training.ident);
                let check = quote_spanned! {tok.ty.span()=>
                    ::titan::experiment::check_fits(&#tok_name, &#model, Self::__titan_training(&#training).seq_len)?;
                };
                (m.max(t), check)
            })
        }
        _ => None,
    };
    // Component `i` of `components`, then the fits check once both its parts are built.
    let build_one = |(i, f): (usize, &&Field)| {
        let name = &f.ident;
        let built = take_or_build(exp, f, quote!(__titan_builder.#name), None);
        let check = fits
            .as_ref()
            .filter(|(after, _)| *after == i)
            .map(|(_, c)| c);
        quote!(#built #check)
    };
    let build_components: Vec<TokenStream> = components.iter().enumerate().map(build_one).collect();
    // `--export-hf` builds the model and the tokenizer and what they need, no loader or
    // optimizer: the components of their dependency closure, in construction order.
    let for_export = export_closure(exp);
    let build_for_export: Vec<TokenStream> = components
        .iter()
        .enumerate()
        .filter(|(_, f)| for_export.contains(&f.ident))
        .map(build_one)
        .collect();
    let all_names = exp.fields.iter().map(|f| &f.ident);

    // The `training` section is read in two places; both go through one function, so a section
    // of another type is one error at the field's type, not one per place.
    let training = exp.role(Role::Training);
    let (training_of, seed, training_ref) = match training {
        Some(f) => {
            let (name, ty) = (&f.ident, &f.ty);
            let training_of = quote_spanned! {ty.span()=>
                impl #ident {
                    #[doc(hidden)]
                    fn __titan_training(training: &#ty) -> &::titan::experiment::TrainingConfig {
                        training
                    }
                }
            };
            (
                training_of,
                quote!(::titan::experiment::before_components(Self::__titan_training(&#name))?;),
                quote!(Self::__titan_training(&self.#name)),
            )
        }
        None => (
            TokenStream::new(),
            quote!(::titan::experiment::before_components(&::core::default::Default::default())?;),
            quote! {{
                static DEFAULT: ::std::sync::OnceLock<::titan::experiment::TrainingConfig> = ::std::sync::OnceLock::new();
                DEFAULT.get_or_init(::core::default::Default::default)
            }},
        ),
    };

    // The training section takes what the experiment fills in where it is unset (its output
    // directory), whatever the field is called.
    let with_training = training.map(|f| {
        let section = name_of(&f.ident);
        quote!(.with_training(#section))
    });

    // `build_from` and `export_only` start alike: each section from the builder with its
    // overrides, checked, then the seed.
    let settings_by_value = quote! {
        #(#check_by_value)*
        let mut __titan_cfg = ::titan::experiment::ConfigSet::new(__titan_overrides)#with_training;
        #(#config_by_value)*
        __titan_cfg.finish()?;
        #seed
    };

    let train = wiring(exp);
    let export = export_checkpoint(exp, &name, quote!(self.));
    let export_from_locals = export_checkpoint(exp, &name, TokenStream::new());
    // Without a model and a tokenizer there is nothing to build: the error at once.
    let export_only = match for_export.is_empty() {
        true => quote!(let _ = (__titan_builder, __titan_overrides); #export_from_locals),
        false => quote! {
            #settings_by_value
            #(#build_for_export)*
            #export_from_locals
        },
    };
    let plain = emit::plain_struct(exp);
    let builder = emit::builder(exp);
    quote! {
        #plain
        #builder
        #training_of

        impl ::titan::experiment::Experiment for #ident {
            type Builder = #builder_ident;
            const NAME: &'static str = #name;
            const ORDER: &'static [&'static str] = &[#(#order_names),*];

            fn builder() -> #builder_ident {
                ::core::default::Default::default()
            }

            #[allow(unused_variables, clippy::redundant_closure_call, clippy::needless_question_mark)]
            fn resolve_config<'o>(
                __titan_builder: &mut #builder_ident,
                __titan_overrides: &'o ::titan::experiment::Overrides,
            ) -> ::titan::Result<::titan::experiment::ConfigSet<'o>> {
                #(#check_by_ref)*
                let mut __titan_cfg = ::titan::experiment::ConfigSet::new(__titan_overrides)#with_training;
                #(#config_by_ref)*
                let _ = (#(&#config_names,)*);
                ::core::result::Result::Ok(__titan_cfg)
            }

            #[allow(unused_variables, clippy::redundant_locals, clippy::redundant_closure_call, clippy::needless_question_mark)]
            fn build_from(
                __titan_builder: #builder_ident,
                __titan_overrides: &::titan::experiment::Overrides,
            ) -> ::titan::Result<Self> {
                #settings_by_value
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

            fn export_hf(
                &mut self,
                checkpoint: &::titan::checkpoint::Checkpoint,
                dir: &::std::path::Path,
            ) -> ::titan::Result<()> {
                #export
            }

            #[allow(unused_variables, unused_mut, unused_assignments, clippy::redundant_locals, clippy::redundant_closure_call, clippy::needless_question_mark)]
            fn export_only(
                __titan_builder: #builder_ident,
                __titan_overrides: &::titan::experiment::Overrides,
                checkpoint: &::titan::checkpoint::Checkpoint,
                dir: &::std::path::Path,
            ) -> ::titan::Result<()> {
                #export_only
            }
        }
    }
}

/// The components the model and the tokenizer need, themselves included (none without both).
/// Besides the dependency edges, a field named where they do not look (in a macro body that
/// does not parse as expressions, as a callee) counts: one component too few would not compile.
fn export_closure(exp: &Experiment) -> Vec<syn::Ident> {
    let (Some(model), Some(tok)) = (exp.role(Role::Model), exp.role(Role::Tokenizer)) else {
        return Vec::new();
    };
    let at = |f: &Field| exp.fields.iter().position(|g| g.ident == f.ident);
    let mut needed: Vec<usize> = [at(model), at(tok)].into_iter().flatten().collect();
    let edges = deps::edges(exp);
    let mut next = 0;
    while next < needed.len() {
        let from = needed[next];
        let names = unseen_names(&exp.fields[from].expr);
        let named = exp
            .fields
            .iter()
            .enumerate()
            .filter(|(i, g)| *i != from && names.contains(&g.ident))
            .map(|(i, _)| i);
        let edged = edges.iter().filter(|e| e.from == from).map(|e| e.to);
        for to in edged.chain(named).collect::<Vec<_>>() {
            if !needed.contains(&to) {
                needed.push(to);
            }
        }
        next += 1;
    }
    needed
        .iter()
        .map(|&i| exp.fields[i].ident.clone())
        .collect()
}

/// Names an expression may use where the dependency edges do not look: the identifiers in its
/// macros' bodies (which need not parse as expressions) and a callee named by one identifier
/// (`scale(4)`), less every name its own patterns bind (`let x`, `|x|`).
fn unseen_names(expr: &syn::Expr) -> Vec<syn::Ident> {
    use syn::visit::Visit;
    #[derive(Default)]
    struct Unseen(Vec<syn::Ident>);
    impl<'ast> Visit<'ast> for Unseen {
        fn visit_macro(&mut self, node: &'ast syn::Macro) {
            idents(node.tokens.clone(), &mut self.0);
        }
        fn visit_expr_call(&mut self, node: &'ast syn::ExprCall) {
            if let syn::Expr::Path(callee) = &*node.func
                && let Some(name) = callee.path.get_ident()
            {
                self.0.push(name.clone());
            }
            syn::visit::visit_expr_call(self, node);
        }
    }
    let mut unseen = Unseen::default();
    unseen.visit_expr(expr);
    let bound = deps::bound_names(expr);
    let mut names = unseen.0;
    names.retain(|n| !bound.contains(n));
    names
}

/// Every identifier among `tokens` that can name a value, inside groups too: not a member
/// (`x.name`, though `..name` is a range or a base), a path segment (`a::name`) or a label
/// (`name: value` in a struct literal or a `json!` object).
fn idents(tokens: TokenStream, out: &mut Vec<syn::Ident>) {
    use proc_macro2::{Spacing, TokenTree};
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    let punct = |at: Option<&TokenTree>, c: char| matches!(at, Some(TokenTree::Punct(p)) if p.as_char() == c);
    for (i, tree) in trees.iter().enumerate() {
        match tree {
            TokenTree::Group(group) => idents(group.stream(), out),
            TokenTree::Ident(ident) => {
                let before = |k: usize| i.checked_sub(k).and_then(|j| trees.get(j));
                let member = punct(before(1), '.') && !punct(before(2), '.');
                let segment = punct(before(1), ':') && punct(before(2), ':');
                let label = matches!(trees.get(i + 1),
                    Some(TokenTree::Punct(p)) if p.as_char() == ':' && p.spacing() == Spacing::Alone);
                if !(member || segment || label) {
                    out.push(ident.clone());
                }
            }
            _ => {}
        }
    }
}

/// The body of `export_hf` (`owner` is `self.`) or `export_only` (locals): a checkpoint's
/// model with the tokenizer, or the error that there is no tokenizer to export with.
fn export_checkpoint(exp: &Experiment, name: &str, owner: TokenStream) -> TokenStream {
    match (exp.role(Role::Model), exp.role(Role::Tokenizer)) {
        (Some(model), Some(tok)) => {
            let (model, tok_ident) = (&model.ident, &tok.ident);
            quote_spanned! {tok.ty.span()=>
                ::titan::experiment::export_checkpoint(&mut #owner #model, &#owner #tok_ident, checkpoint, dir)
            }
        }
        _ => quote! {
            let _ = (checkpoint, dir);
            ::core::result::Result::Err(::titan::Error::Unsupported(::std::format!(
                "experiment `{}` has no tokenizer, which the Hugging Face export needs", #name
            )))
        },
    }
}

/// `let name: Ty = the builder's value, or the user's expression` (spanned at the expression,
/// so a type mismatch lands there), then `keep` (which may store it in the builder); settings
/// sections then take their `--set` overrides.
fn take_or_build(
    exp: &Experiment,
    f: &Field,
    take: TokenStream,
    keep: Option<TokenStream>,
) -> TokenStream {
    let (name, ty, expr) = (&f.ident, &f.ty, &f.expr);
    let field = name_of(name);
    // Each settings section the expression names is its own copy there (sections are `Clone`),
    // so an expression may move one (`Warmup::new(schedule)`, `training.data`) without taking
    // it from the experiment or from the next expression.
    let copies = own_sections(exp, f);
    // The expression runs in a closure so its `?` errors can be tagged with the field (any
    // error converts, as with `anyhow`); inside, it is bound at the declared type, so a type
    // mismatch lands on the expression.
    let value = quote_spanned! {expr.span()=>
        ::titan::experiment::in_field(
            (|| -> ::core::result::Result<#ty, ::titan::experiment::BuildError> {
                #copies
                let __titan_built: #ty = #expr;
                ::core::result::Result::Ok(__titan_built)
            })(),
            #field,
        )?
    };
    let overrides = (f.kind == Some(InitKind::Config)).then(|| {
        let section = &field;
        // The argument too is at the type's span: a bound's error goes on the argument.
        let mut value = name.clone();
        value.set_span(ty.span());
        // Then its ranges, where it has them (`titan::experiment::Validate`), before anything
        // is built.
        quote_spanned! {ty.span()=>
            let #name: #ty = __titan_cfg.resolve(#section, #value)?;
            {
                #[allow(unused_imports)]
                use ::titan::experiment::{AnySection as _, ValidSection as _};
                (&&::titan::experiment::SectionCheck(&#value)).check_section(#section)?;
            }
        }
    });
    // A component may be changed by a later expression (`&mut tokenizer`), as any local.
    // `mut` at the name's span: the binding is then wholly the user's, and a move or borrow
    // error says "move occurs because `name` has type …" at the field, not at `#[experiment]`.
    let binding = match f.kind {
        Some(InitKind::Build) => quote_spanned!(name.span()=> #[allow(unused_mut)] let mut #name),
        _ => quote!(let #name),
    };
    quote! {
        #binding: #ty = match #take {
            ::core::option::Option::Some(v) => v,
            ::core::option::Option::None => #value,
        };
        #keep
        #overrides
    }
}

/// `let section: Ty = a clone of section;` for each settings section `f`'s expression names,
/// at the section's type (where a section that cannot be cloned is reported).
fn own_sections(exp: &Experiment, f: &Field) -> TokenStream {
    let Some(at) = exp.fields.iter().position(|g| g.ident == f.ident) else {
        return TokenStream::new();
    };
    deps::edges(exp)
        .into_iter()
        .filter(|e| e.from == at)
        .map(|e| &exp.fields[e.to])
        .filter(|dep| dep.kind == Some(InitKind::Config))
        .map(|dep| {
            // All at the type's span, where `is_section` already reported a type that is not a
            // section: the same obligation there is not reported again.
            let ty = &dep.ty;
            let mut name = dep.ident.clone();
            name.set_span(ty.span());
            quote_spanned!(ty.span()=> let #name: #ty = ::titan::experiment::section_clone(&#name);)
        })
        .collect()
}

/// The spanned wiring chain: model → train_data → loss → val_data → optimizer → lr_scheduler
/// → metrics.
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
    let val = field(Role::ValData)
        .map(|(val, sp)| quote_spanned!(sp=> let __titan_w = __titan_w.val_data(&mut self.#val)?;));
    let samples = field(Role::Tokenizer).map(|(tok, sp)| {
        quote_spanned!(sp=> ::titan::experiment::print_samples(&self.#model, &self.#tok, &__titan_training)?;)
    });
    // Before step 1: the tokenizer's ids and the run's sequence length fit the model, and the
    // checkpoints will record the tokenizer (only with a `training` section: without one, no
    // `seq_len` sizes the batches).
    let with_training = exp.role(Role::Training).is_some();
    let fits = field(Role::Tokenizer).filter(|_| with_training).map(|(tok, sp)| {
        quote_spanned!(sp=> ::titan::experiment::tokenizer_fits(trainer, &self.#tok, &self.#model, __titan_training.seq_len)?;)
    });
    // After the run: the model and tokenizer in Hugging Face's form, in `output_dir/hf`.
    let export = field(Role::Tokenizer).filter(|_| with_training).map(|(tok, sp)| {
        quote_spanned!(sp=> ::titan::experiment::export_hf(&self.#model, &self.#tok, &__titan_training)?;)
    });
    // A new run may start from a Hugging Face directory's weights, made for the run's
    // tokenizer's ids.
    let same_ids = field(Role::Tokenizer).map(|(tok, sp)| {
        quote_spanned!(sp=> ::titan::experiment::init_tokenizer_matches(&self.#tok, &__titan_training, trainer.resumes())?;)
    });
    let init = quote_spanned!(model_sp=> #same_ids ::titan::experiment::init_from_hf(&mut self.#model, &__titan_training, trainer.resumes())?;);
    let dist = field(Role::Dist).map(
        |(dist, sp)| quote_spanned!(sp=> ::titan::experiment::join_world(trainer, &self.#dist)?;),
    );
    let w_model = quote_spanned!(model_sp=> ::titan::experiment::wire(&mut self.#model));
    let w_train = quote_spanned!(train_sp=> __titan_w.train_data(&mut self.#train));
    let w_loss = quote_spanned!(loss_sp=> __titan_w.loss(&mut self.#loss));
    let w_opt = quote_spanned!(opt_sp=> __titan_w.optimizer(&mut self.#opt));
    let w_sched = quote_spanned!(sched_sp=> __titan_w.lr_scheduler(&mut self.#sched));
    // The experiment's own sink, beside metrics.jsonl and TensorBoard.
    let metrics = field(Role::Metrics).map(|(sink, sp)| {
        quote_spanned!(sp=> let __titan_parts = __titan_parts.metrics(&mut self.#sink);)
    });
    quote! {
        let __titan_training = ::titan::experiment::Experiment::training(self).clone();
        #dist
        #fits
        #init
        let __titan_summary = {
            let __titan_w = #w_model;
            let __titan_w = #w_train;
            let __titan_w = #w_loss;
            #val
            let __titan_w = #w_opt;
            let __titan_parts = #w_sched;
            #metrics
            trainer.run(__titan_parts)?
        };
        #export
        #samples
        ::core::result::Result::Ok(__titan_summary)
    }
}

/// The binary's name: `TinyLlama` → `tiny_llama`, `Llama125m` → `llama_125m` (a word starts
/// at each capital and at each run of digits).
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    let mut prev: Option<char> = None;
    for c in name.chars() {
        let starts_word =
            c.is_uppercase() || (c.is_ascii_digit() && prev.is_some_and(|p| !p.is_ascii_digit()));
        if starts_word && prev.is_some() {
            out.push('_');
        }
        out.extend(c.to_lowercase());
        prev = Some(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::Errors;

    #[test]
    fn binary_names_are_snake_case_with_digits_as_words() {
        assert_eq!(snake_case("TinyLlama"), "tiny_llama");
        assert_eq!(snake_case("Llama125m"), "llama_125m");
        assert_eq!(snake_case("Gpt2Small"), "gpt_2_small");
        assert_eq!(snake_case("Exp"), "exp");
    }
    use crate::check::check;
    use syn::parse_quote;

    fn expand(item: syn::ItemStruct) -> String {
        let mut errors = Errors::default();
        let exp = Experiment::parse(&item, &mut errors).expect("parses");
        let order = check(&exp, &mut errors).expect("acyclic");
        assert!(errors.finish().is_ok());
        generate(&exp, &order).to_string()
    }

    #[test]
    fn the_export_builds_the_model_the_tokenizer_and_what_they_need() {
        let out = expand(parse_quote! {
            struct Exp {
                #[config(TrainingConfig::default())] training: TrainingConfig,
                #[build(E)] dist: E,
                #[build(P::new(&dist))] dims: P,
                #[build(T)] tokenizer: T,
                #[build(M::new(&tokenizer, &dims))] model: M,
                #[build(D::new(&dims, &tokenizer))] train_data: D,
                #[build(L)] loss: L,
                #[build(O::new(model.parameters()))] optimizer: O,
                #[build(S::new(&optimizer))] lr_scheduler: S,
            }
        });
        let export = &out[out.find("fn export_only").expect("export_only")..];
        for built in ["dist", "dims", "tokenizer", "model"] {
            assert!(
                export.contains(&format!("let mut {built} :")),
                "{built}: {export}"
            );
        }
        for unbuilt in ["train_data", "loss", "optimizer", "lr_scheduler"] {
            assert!(
                !export.contains(&format!("let mut {unbuilt} :")),
                "{unbuilt}: {export}"
            );
        }
        assert!(
            export.contains("export_checkpoint (& mut model , & tokenizer"),
            "{export}"
        );
        // A field named where the dependency edges do not look (a macro body that is not a
        // list of expressions, a callee): still built for the export.
        let out = expand(parse_quote! {
            struct Exp {
                #[config(TrainingConfig::default())] training: TrainingConfig,
                #[build(Sizes::new())] sizes: Sizes,
                #[build(|n: i64| n * 2)] scale: Scale,
                #[build(T)] tokenizer: T,
                #[build(M::new(json!({"hidden": sizes.hidden, "wide": scale(4)}), &tokenizer))] model: M,
                #[build(D)] train_data: D,
                #[build(L)] loss: L,
                #[build(O::new(model.parameters()))] optimizer: O,
                #[build(S::new(&optimizer))] lr_scheduler: S,
            }
        });
        let export = &out[out.find("fn export_only").expect("export_only")..];
        for built in ["sizes", "scale"] {
            assert!(
                export.contains(&format!("let mut {built} :")),
                "{built}: {export}"
            );
        }
        // A label, a local or a closure's parameter of the same name is no reference; a name
        // after `..` in a macro is.
        let out = expand(parse_quote! {
            struct Exp {
                #[config(TrainingConfig::default())] training: TrainingConfig,
                #[build(Sizes)] sizes: Sizes,
                #[build(T::train(Spec { train_data: 1 }, json!({"n": 0..sizes, optimizer: 2})))] tokenizer: T,
                #[build({ let loss = 1; M::new(&tokenizer, |optimizer| optimizer + loss) })] model: M,
                #[build(D)] train_data: D,
                #[build(L)] loss: L,
                #[build(O::new(model.parameters()))] optimizer: O,
                #[build(S::new(&optimizer))] lr_scheduler: S,
            }
        });
        let export = &out[out.find("fn export_only").expect("export_only")..];
        assert!(export.contains("let mut sizes :"), "{export}");
        for unbuilt in ["train_data", "loss", "optimizer"] {
            assert!(
                !export.contains(&format!("let mut {unbuilt} :")),
                "{unbuilt}: {export}"
            );
        }
        // A member or path segment of the same name is no reference.
        let out = expand(parse_quote! {
            struct Exp {
                #[config(TrainingConfig::default())] training: TrainingConfig,
                #[build(T::new(training.train_data, Loader::optimizer()))] tokenizer: T,
                #[build(M::new(&tokenizer))] model: M,
                #[build(D)] train_data: D,
                #[build(L)] loss: L,
                #[build(O::new(model.parameters()))] optimizer: O,
                #[build(S::new(&optimizer))] lr_scheduler: S,
            }
        });
        let export = &out[out.find("fn export_only").expect("export_only")..];
        for unbuilt in ["train_data", "optimizer"] {
            assert!(
                !export.contains(&format!("let mut {unbuilt} :")),
                "{unbuilt}: {export}"
            );
        }
    }

    #[test]
    fn settings_sections_are_checked_once_per_body_through_section() {
        let out = expand(parse_quote! {
            struct Exp {
                #[config(TrainingConfig::default())] training: TrainingConfig,
                #[config(C { v: 1 })] llama: C,
                #[build(M)] model: M,
                #[build(D)] train_data: D,
                #[build(L)] loss: L,
                #[build(O)] optimizer: O,
                #[build(S)] lr_scheduler: S,
            }
        });
        // `resolve_config` and `build_from` each check first; every other use is `Section`'s.
        assert_eq!(out.matches("is_section :: < C >").count(), 2, "{out}");
        // `resolve_config` takes each section from the builder or keeps it there.
        assert_eq!(out.matches("section_clone").count(), 4, "{out}");
        assert!(!out.contains("Clone :: clone"), "{out}");
        // The `training` section is read through one function.
        assert_eq!(out.matches("fn __titan_training").count(), 1, "{out}");
        assert_eq!(out.matches("Self :: __titan_training").count(), 2, "{out}");
    }

    #[test]
    fn an_expression_takes_its_own_copy_of_each_section_it_names() {
        let out = expand(parse_quote! {
            struct Exp {
                #[config(TrainingConfig::default())] training: TrainingConfig,
                #[config(C { v: 1 })] llama: C,
                #[build(M::new(llama, training.steps))] model: M,
                #[build(D)] train_data: D,
                #[build(L)] loss: L,
                #[build(O)] optimizer: O,
                #[build(S)] lr_scheduler: S,
            }
        });
        for copy in [
            "let llama : C = :: titan :: experiment :: section_clone (& llama) ;",
            "let training : TrainingConfig = :: titan :: experiment :: section_clone (& training) ;",
        ] {
            assert_eq!(out.matches(copy).count(), 1, "{copy} in {out}");
        }
    }
}
