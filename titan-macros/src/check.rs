//! Checks that need no types: roles present and unique, references that name fields, settings
//! that depend on settings only, and no dependency cycle. Every problem is reported in one pass.

use crate::ast::{Errors, Experiment, InitKind};
use crate::deps::{self, Edge};
use crate::roles::{REQUIRED, Role};

/// Validates `exp` and returns its construction order (indices into `exp.fields`).
pub fn check(exp: &Experiment, errors: &mut Errors) -> Option<Vec<usize>> {
    roles(exp, errors);
    typos(exp, errors);
    let edges = deps::edges(exp);
    settings_depend_on_settings(exp, &edges, errors);
    match deps::order(exp, &edges) {
        Ok(order) => Some(order),
        Err(cycle) => {
            report_cycle(exp, &edges, &cycle, errors);
            None
        }
    }
}

fn roles(exp: &Experiment, errors: &mut Errors) {
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
        let is_config = field.kind == InitKind::Config;
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
    for (role, example) in REQUIRED {
        if exp.role(role).is_none() {
            errors.error(
                exp.ident.span(),
                format!(
                    "experiment `{}` has no {role}: add a field `{}` (for example {example}), or mark one with `#[role({})]`",
                    exp.ident,
                    role.name(),
                    role.name()
                ),
            );
        }
    }
}

/// An identifier one or two edits away from a field name is almost surely a typo of it.
fn typos(exp: &Experiment, errors: &mut Errors) {
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
            if names.contains(&name) || name.chars().next().is_some_and(char::is_uppercase) {
                continue;
            }
            let closest = names
                .iter()
                .map(|n| (distance(&name, n), n))
                .filter(|(d, n)| *d > 0 && *d <= if n.len() >= 4 { 2 } else { 1 })
                .min();
            if let Some((_, suggestion)) = closest {
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

fn settings_depend_on_settings(exp: &Experiment, edges: &[Edge], errors: &mut Errors) {
    for e in edges {
        let (from, to) = (&exp.fields[e.from], &exp.fields[e.to]);
        if from.kind == InitKind::Config && to.kind == InitKind::Build {
            errors.error(
                e.span,
                format!(
                    "settings section `{}` cannot use component `{}`: settings are resolved (and printed by --print-config) before any component is built",
                    from.ident, to.ident
                ),
            );
        }
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

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
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

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("tokenzier", "tokenizer"), 2);
        assert_eq!(distance("model", "model"), 0);
        assert_eq!(distance("modl", "model"), 1);
    }
}
