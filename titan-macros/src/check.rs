//! Checks that need no types: roles present and unique, references that name fields, settings
//! that depend on settings only, and no dependency cycle. Every problem is reported in one pass,
//! once: a check does not report what follows from a mistake another check already reported.

use crate::ast::{Errors, Experiment, InitKind};
use crate::deps::{self, Edge};
use crate::roles::{REQUIRED, Role};
use crate::suggest;

/// Validates `exp` and returns its construction order (indices into `exp.fields`).
pub fn check(exp: &Experiment, errors: &mut Errors) -> Option<Vec<usize>> {
    let renamed = roles(exp, errors);
    typos(exp, &renamed, errors);
    no_self(exp, errors);
    no_section_changes(exp, errors);
    let mut edges = deps::edges(exp);
    settings_depend_on_settings(exp, &edges, errors);
    // A settings section that uses a component is reported above; its edge is left out of the
    // order so the same reference is not reported again as part of a cycle.
    edges.retain(|e| !settings_use_component(exp, e));
    match deps::order(exp, &edges) {
        Ok(order) => Some(order),
        Err(cycle) => {
            report_cycle(exp, &edges, &cycle, errors);
            None
        }
    }
}

/// Reports duplicate and misplaced roles and missing required ones. Returns the names of the
/// roles some field was told to take by renaming it (`modle` → `model`): references to those
/// names are the user's intent, not typos.
fn roles(exp: &Experiment, errors: &mut Errors) -> Vec<&'static str> {
    for (i, field) in exp.fields.iter().enumerate() {
        let Some((role, span)) = field.role else {
            continue;
        };
        if let Some(first) = exp.fields[..i]
            .iter()
            .find(|f| f.role.map(|(r, _)| r) == Some(role))
        {
            errors.error(
                span,
                format!(
                    "`{}` is a second {role}: the experiment's {role} is already `{}`; keep one of them (or give this one another role with `#[role(...)]`)",
                    field.ident, first.ident
                ),
            );
        }
        // A field without an initializer was reported; whether it is a section is unknown.
        let Some(kind) = field.kind else {
            continue;
        };
        let is_config = kind == InitKind::Config;
        if role == Role::Training && !is_config {
            errors.error(
                span,
                "`training` is a settings section: write `#[config(TrainingConfig::default())]` so `--set training.*` and the standard flags reach it",
            );
        } else if role != Role::Training && is_config {
            errors.error(
                span,
                format!(
                    "the {role} is a component: build it with `#[build(...)]`, not `#[config(...)]`"
                ),
            );
        }
    }
    // A field whose `#[role]` named no role was reported: it stands for the role it is closest
    // to, and when it is close to none it may have meant any missing role.
    if exp
        .fields
        .iter()
        .any(|f| f.unknown_role && f.meant_role.is_none())
    {
        return Vec::new();
    }
    let meant: Vec<Role> = exp.fields.iter().filter_map(|f| f.meant_role).collect();
    let mut renamed = Vec::new();
    for (role, example) in REQUIRED {
        if exp.role(role).is_some() || meant.contains(&role) {
            continue;
        }
        // A field without a role whose name is a misspelt role name: one error, on that name.
        let misspelt = exp.fields.iter().find(|f| {
            f.role.is_none()
                && suggest::closest(&f.ident.to_string(), [role.name()], suggest::tolerance)
                    .is_some()
        });
        // A field of the role's name that `#[role(...)]` gave another role.
        let marked = exp.fields.iter().find(|f| f.ident == role.name());
        match (misspelt, marked) {
            (None, Some(field)) => {
                let other = field.role.map_or("another role", |(r, _)| r.name());
                errors.error(
                    field.ident.span(),
                    format!(
                        "experiment `{}` has no {role}: its field `{}` is marked `#[role({other})]`; drop that mark, or mark another field `#[role({})]`",
                        exp.ident,
                        field.ident,
                        role.name()
                    ),
                );
            }
            (Some(field), _) => {
                renamed.push(role.name());
                errors.error(
                    field.ident.span(),
                    format!(
                        "`{}` is not a role, and experiment `{}` has no {role}; did you mean to name this field `{}`? (or mark it `#[role({})]`)",
                        field.ident,
                        exp.ident,
                        role.name(),
                        role.name()
                    ),
                );
            }
            (None, None) => errors.error(
                exp.ident.span(),
                format!(
                    "experiment `{}` has no {role}: add a field `{}` (for example {example}), or mark one with `#[role({})]`",
                    exp.ident,
                    role.name(),
                    role.name()
                ),
            ),
        }
    }
    renamed
}

/// An identifier one or two edits away from a field name is almost surely a typo of it.
fn typos(exp: &Experiment, renamed: &[&str], errors: &mut Errors) {
    let names: Vec<String> = exp.fields.iter().map(|f| f.ident.to_string()).collect();
    for field in &exp.fields {
        let free: Vec<String> = deps::references(&field.expr)
            .iter()
            .map(|r| r.ident.to_string())
            .collect();
        for ident in deps::field_like(&field.expr) {
            let name = ident.to_string();
            if !free.contains(&name) {
                continue; // bound inside the expression (a closure parameter, a `let`)
            }
            if names.contains(&name)
                || renamed.contains(&name.as_str())
                || name.chars().next().is_some_and(char::is_uppercase)
            {
                continue;
            }
            // A role's name the experiment has no field for (`training.steps` without a
            // `training` section), unless a field took or meant that role (its own error, if
            // any, was reported): say how to add it.
            if let Some(role) = Role::from_name(&name) {
                let claimed = exp.role(role).is_some()
                    || exp.fields.iter().any(|f| {
                        f.meant_role == Some(role) || (f.unknown_role && f.meant_role.is_none())
                    });
                if !claimed {
                    let advice = match role {
                        Role::Training => "add the section: `#[config(TrainingConfig::default())] training: TrainingConfig` (the standard flags then reach it)".to_string(),
                        _ => format!("add a field `{name}`"),
                    };
                    errors.error(
                        ident.span(),
                        format!("`{name}` is not a field of `{}`; {advice}", exp.ident),
                    );
                }
                continue;
            }
            let closest =
                suggest::closest(&name, names.iter().map(String::as_str), suggest::tolerance);
            if let Some(suggestion) = closest {
                errors.error(
                    ident.span(),
                    format!(
                        "`{name}` is not a field of `{}`; did you mean `{suggestion}`?",
                        exp.ident
                    ),
                );
            }
        }
    }
}

/// `self` in an expression: the experiment does not exist yet while its fields are built; the
/// fields are in scope by name.
fn no_self(exp: &Experiment, errors: &mut Errors) {
    for field in &exp.fields {
        for r in deps::references(&field.expr) {
            if r.ident != "self" {
                continue;
            }
            let example = deps::self_member(&field.expr)
                .or_else(|| {
                    exp.fields
                        .iter()
                        .find(|f| f.ident != field.ident)
                        .map(|f| f.ident.to_string())
                })
                .unwrap_or_else(|| "model".into());
            errors.error(
                r.ident.span(),
                format!(
                    "`self` does not exist while `{}` is being built: its fields are in scope by name, so write `{example}`, not `self.{example}`",
                    exp.ident
                ),
            );
        }
    }
}

/// An expression that assigns to a settings section or borrows one mutably: each expression
/// has its own copy of the sections it names, so the change would reach no other field and no
/// record of the run (`--print-config`, a checkpoint's `config.toml`). Said at the change, with
/// where the value belongs (a method call that changes a section is left to rustc).
fn no_section_changes(exp: &Experiment, errors: &mut Errors) {
    use syn::visit::Visit;
    /// The changed places of an expression: `(root, dotted path, span)`.
    #[derive(Default)]
    struct Changes(Vec<(syn::Ident, String, proc_macro2::Span)>);
    impl Changes {
        fn place(&mut self, expr: &syn::Expr) {
            let mut path = Vec::new();
            let mut at = expr;
            loop {
                match at {
                    syn::Expr::Field(f) => {
                        if let syn::Member::Named(name) = &f.member {
                            path.push(name.to_string());
                        }
                        at = &f.base;
                    }
                    syn::Expr::Index(i) => at = &i.expr,
                    syn::Expr::Paren(p) => at = &p.expr,
                    syn::Expr::Path(p) => {
                        if let Some(root) = p.path.get_ident() {
                            path.push(root.to_string());
                            path.reverse();
                            use syn::spanned::Spanned;
                            self.0.push((root.clone(), path.join("."), expr.span()));
                        }
                        return;
                    }
                    _ => return,
                }
            }
        }
    }
    impl<'ast> Visit<'ast> for Changes {
        fn visit_expr_assign(&mut self, node: &'ast syn::ExprAssign) {
            self.place(&node.left);
            syn::visit::visit_expr_assign(self, node);
        }
        fn visit_expr_binary(&mut self, node: &'ast syn::ExprBinary) {
            use syn::BinOp::*;
            if matches!(
                node.op,
                AddAssign(_)
                    | SubAssign(_)
                    | MulAssign(_)
                    | DivAssign(_)
                    | RemAssign(_)
                    | BitXorAssign(_)
                    | BitAndAssign(_)
                    | BitOrAssign(_)
                    | ShlAssign(_)
                    | ShrAssign(_)
            ) {
                self.place(&node.left);
            }
            syn::visit::visit_expr_binary(self, node);
        }
        fn visit_expr_reference(&mut self, node: &'ast syn::ExprReference) {
            if node.mutability.is_some() {
                self.place(&node.expr);
            }
            syn::visit::visit_expr_reference(self, node);
        }
    }
    for field in &exp.fields {
        let free: Vec<String> = deps::references(&field.expr)
            .iter()
            .map(|r| r.ident.to_string())
            .collect();
        let bound = deps::bound_names(&field.expr);
        let mut changes = Changes::default();
        changes.visit_expr(&field.expr);
        for (root, path, span) in changes.0 {
            let Some(section) = exp.fields.iter().find(|f| {
                f.kind == Some(InitKind::Config) && f.ident == root && f.ident != field.ident
            }) else {
                continue;
            };
            // A local of the same name (`let mut llama = …`) is the expression's own.
            if !free.contains(&root.to_string()) || bound.contains(&root) {
                continue;
            }
            let key = match path.contains('.') {
                true => path.clone(),
                false => format!("{}.<key>", section.ident),
            };
            errors.error(
                span,
                format!(
                    "`{path}` changes settings section `{}`, which a field's expression cannot: it \
                     gets its own copy, so the change would reach no other field and no record of \
                     the run (--print-config, a checkpoint's config.toml); set the value in the \
                     section's `#[config(...)]`, or with `--set {key}=…`, or build from a changed \
                     copy (`{} {{ …, ..{} }}`)",
                    section.ident,
                    quote::ToTokens::to_token_stream(&section.ty),
                    section.ident
                ),
            );
        }
    }
}

fn settings_use_component(exp: &Experiment, e: &Edge) -> bool {
    let (from, to) = (&exp.fields[e.from], &exp.fields[e.to]);
    from.kind == Some(InitKind::Config) && to.kind == Some(InitKind::Build)
}

fn settings_depend_on_settings(exp: &Experiment, edges: &[Edge], errors: &mut Errors) {
    for e in edges.iter().filter(|e| settings_use_component(exp, e)) {
        let (from, to) = (&exp.fields[e.from], &exp.fields[e.to]);
        errors.error(
            e.span,
            format!(
                "settings section `{}` cannot use component `{}`: settings are resolved (and printed by --print-config) before any component is built",
                from.ident, to.ident
            ),
        );
    }
}

fn report_cycle(exp: &Experiment, edges: &[Edge], cycle: &[usize], errors: &mut Errors) {
    let described: Vec<String> = cycle
        .iter()
        .map(|&i| {
            let e = &edges[i];
            format!(
                "`{}` needs `{}`",
                exp.fields[e.from].ident, exp.fields[e.to].ident
            )
        })
        .collect();
    let span = cycle.first().map_or(exp.ident.span(), |&i| edges[i].span);
    errors.error(
        span,
        format!(
            "dependency cycle: {}; no order can build them, so break one of these references",
            described.join(", ")
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    fn messages(item: syn::ItemStruct) -> Vec<String> {
        let mut errors = Errors::default();
        let exp = Experiment::parse(&item, &mut errors).expect("parses");
        check(&exp, &mut errors);
        match errors.finish() {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn typo_suggests_the_closest_field() {
        let m = messages(parse_quote! {
            struct E {
                #[build(T::new())] tokenizer: T,
                #[build(M::new(&tokenzier))] model: M,
                #[build(D::new())] train_data: D,
                #[build(L)] loss: L,
                #[build(O::new(model.parameters()))] optimizer: O,
                #[build(S::new(&optimizer))] lr_scheduler: S,
            }
        });
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].contains("did you mean `tokenizer`"), "{m:?}");
    }

    #[test]
    fn functions_with_field_like_names_are_not_typos() {
        let m = messages(parse_quote! {
            struct E {
                #[build(T::new())] tokenizer: T,
                #[build(M::new(corpus().map(tokenize)))] model: M,
                #[build(D::new())] train_data: D,
                #[build(L)] loss: L,
                #[build(O::new(model.parameters()))] optimizer: O,
                #[build(S::new(&optimizer))] lr_scheduler: S,
            }
        });
        assert!(m.is_empty(), "{m:?}");
    }

    #[test]
    fn missing_roles_are_each_named() {
        let m = messages(parse_quote! {
            struct E { #[build(M::new())] model: M }
        });
        assert_eq!(m.len(), 4, "{m:?}");
        assert!(m.iter().any(|s| s.contains("no training dataloader")));
    }

    /// A field list with every required role, for cases that add one mistake to it.
    macro_rules! experiment {
        ($($field:tt)*) => {
            parse_quote! {
                struct Exp {
                    $($field)*
                    #[build(D::new())] train_data: D,
                    #[build(L)] loss: L,
                    #[build(O::new(model.parameters()))] optimizer: O,
                    #[build(S::new(&optimizer))] lr_scheduler: S,
                }
            }
        };
    }

    fn one(m: &[String], needle: &str) {
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].contains(needle), "{m:?}");
    }

    #[test]
    fn a_complete_experiment_has_no_errors() {
        let m = messages(experiment! { #[build(M::new())] model: M, });
        assert!(m.is_empty(), "{m:?}");
    }

    #[test]
    fn an_expression_that_changes_a_section_is_one_error_at_the_change() {
        let m = messages(experiment! {
            #[config(C::default())] llama: C,
            #[build({ llama.layers = 2; M::new(&llama) })] model: M,
        });
        one(&m, "`llama.layers` changes settings section `llama`");
        assert!(
            m[0].contains("--set llama.layers=…") && m[0].contains("C { …, ..llama }"),
            "{m:?}"
        );
        let m = messages(experiment! {
            #[config(C::default())] llama: C,
            #[build({ llama.layers += 1; M::new(&mut llama) })] model: M,
        });
        assert_eq!(m.len(), 2, "{m:?}");
        // Its own local, or a changed copy, is the expression's business.
        let m = messages(experiment! {
            #[config(C::default())] llama: C,
            #[build({ let mut llama = llama.clone(); llama.layers = 2; M::new(C { layers: 3, ..llama }) })] model: M,
        });
        assert!(m.is_empty(), "{m:?}");
    }

    #[test]
    fn misspelt_build_is_one_error_with_the_suggestion() {
        let m = messages(experiment! { #[biuld(M::new())] model: M, });
        one(&m, "unknown attribute `biuld`; did you mean `#[build]`?");
    }

    #[test]
    fn misspelt_config_and_role_are_one_error_each() {
        let m = messages(experiment! {
            #[confg(C::default())] llama: C,
            #[build(M::new())] model: M,
        });
        one(&m, "unknown attribute `confg`; did you mean `#[config]`?");
        let m = messages(experiment! { #[rloe(model)] #[build(M::new())] teacher: M, });
        one(&m, "did you mean `#[role]`?");
        // Without arguments, the attribute is still the one error.
        let m = messages(experiment! { #[biuld] model: M, });
        one(&m, "did you mean `#[build]`?");
    }

    #[test]
    fn other_attributes_pass_through() {
        let item = experiment! {
            /// The model.
            #[doc = "more"]
            #[allow(dead_code)]
            #[serde(skip)]
            #[cfg_attr(feature = "x", allow(unused))]
            #[build(M::new())]
            model: M,
        };
        let mut errors = Errors::default();
        let exp = Experiment::parse(&item, &mut errors).expect("parses");
        check(&exp, &mut errors);
        assert!(errors.finish().is_ok());
        assert_eq!(exp.fields[0].attrs.len(), 5);
    }

    /// `#[experiment]` reads fields before `cfg` applies: a `cfg` is one error, at it, and
    /// two alternatives of one field are not also reported as a duplicate.
    #[test]
    fn cfg_on_a_field_is_one_error_each() {
        let m = messages(experiment! {
            #[cfg(feature = "a")] #[build(A::new())] dist: A,
            #[cfg(not(feature = "a"))] #[build(B::new())] dist: B,
            #[cfg_attr(all(), build(M::new()))] model: M,
        });
        assert_eq!(m.len(), 3, "{m:?}");
        assert!(
            m.iter()
                .all(|m| m.contains("cannot choose an experiment's fields")),
            "{m:?}"
        );
    }

    /// A field of a role's name marked with another role: the error says so, at the field.
    #[test]
    fn a_role_name_marked_as_another_role_is_named() {
        let m = messages(parse_quote! {
            struct Exp {
                #[build(M::new())] model: M,
                #[role(val_data)] #[build(D::new())] train_data: D,
                #[build(L)] loss: L,
                #[build(O::new(model.parameters()))] optimizer: O,
                #[build(S::new(&optimizer))] lr_scheduler: S,
            }
        });
        one(&m, "its field `train_data` is marked `#[role(val_data)]`");
    }

    /// A settings section named `metrics` (a W&B project's settings) is a section; a component
    /// of that name is the sink, and a section marked `#[role(metrics)]` is refused.
    #[test]
    fn a_section_named_metrics_is_no_sink() {
        let m = messages(parse_quote! {
            struct Exp {
                #[build(M::new())] model: M,
                #[build(D::new())] train_data: D,
                #[build(L)] loss: L,
                #[build(O::new(model.parameters()))] optimizer: O,
                #[build(S::new(&optimizer))] lr_scheduler: S,
                #[config(WandbConfig::default())] metrics: WandbConfig,
                #[role(metrics)] #[build(Wandb::new(&metrics))] wandb: Wandb,
            }
        });
        assert!(m.is_empty(), "{m:?}");
        let m = messages(parse_quote! {
            struct Exp {
                #[build(M::new())] model: M,
                #[build(D::new())] train_data: D,
                #[build(L)] loss: L,
                #[build(O::new(model.parameters()))] optimizer: O,
                #[build(S::new(&optimizer))] lr_scheduler: S,
                #[role(metrics)] #[config(WandbConfig::default())] wandb: WandbConfig,
            }
        });
        one(&m, "the metrics sink is a component");
    }

    #[test]
    fn unknown_role_is_one_error_without_missing_roles() {
        let m = messages(experiment! { #[role(modle)] #[build(M::new())] teacher: M, });
        one(
            &m,
            "unknown role `modle`; did you mean `model`? roles: training, dist,",
        );
        let m = messages(experiment! { #[role("model")] #[build(M::new())] teacher: M, });
        one(&m, "`#[role(...)]` takes one role name");
        // A misspelt role stands for the role it is closest to; others still missing are
        // reported in the same pass.
        let item: syn::ItemStruct = parse_quote! {
            struct Exp {
                #[role(modle)] #[build(M::new())] teacher: M,
                #[build(D::new())] train_data: D,
                #[build(O::new(teacher.parameters()))] optimizer: O,
                #[build(S::new(&optimizer))] lr_scheduler: S,
            }
        };
        let m = messages(item);
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].contains("unknown role `modle`"), "{m:?}");
        assert!(m[1].contains("no loss"), "{m:?}");
    }

    #[test]
    fn a_field_without_initializer_keeps_its_role() {
        let m = messages(experiment! { model: M, });
        one(&m, "`model` does not say how it is built");
        // An attribute the macro does not know is taken for the intended initializer.
        let item = experiment! { #[construct(M::new())] model: M, };
        let mut errors = Errors::default();
        let exp = Experiment::parse(&item, &mut errors).expect("parses");
        check(&exp, &mut errors);
        let m: Vec<String> = errors
            .finish()
            .expect_err("rejected")
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        one(&m, "`#[construct]` is not an attribute of `#[experiment]`");
        assert!(
            exp.fields[0].attrs.is_empty(),
            "dropped, so rustc does not report it too"
        );
    }

    #[test]
    fn build_and_config_on_one_field_is_one_error() {
        let m = messages(experiment! { #[build(M::new())] #[config(M::new())] model: M, });
        one(&m, "`model` already says how it is built (`#[build]`)");
    }

    #[test]
    fn a_duplicate_field_is_one_error() {
        let m = messages(experiment! {
            #[build(M::new())] model: M,
            #[build(M::new())] model: M,
        });
        one(&m, "field `model` is already declared");
    }

    #[test]
    fn a_misspelt_role_field_is_one_error_on_its_name() {
        // `optimizer` uses `model.parameters()`: that is the name the field should have.
        let m = messages(experiment! { #[build(M::new())] modle: M, });
        one(&m, "did you mean to name this field `model`?");
    }

    #[test]
    fn a_settings_section_using_a_component_is_not_also_a_cycle() {
        let m = messages(experiment! {
            #[config(C::new(model.vocab()))] llama: C,
            #[build(M::new(&llama))] model: M,
        });
        one(&m, "settings section `llama` cannot use component `model`");
    }

    #[test]
    fn a_reserved_name_is_one_error() {
        let m = messages(experiment! {
            #[build(M::new())] model: M,
            #[build(0)] build: u8,
        });
        one(&m, "`build` is reserved");
    }
}
