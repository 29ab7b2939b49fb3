//! The dependency graph: which fields each expression names, and the construction order.

use std::collections::BTreeSet;

use proc_macro2::Span;
use syn::visit::Visit;
use syn::{Expr, Ident};

use crate::ast::{Experiment, InitKind};
use crate::roles::Role;

/// A value-position identifier of an expression that is not bound inside it.
pub struct Reference {
    pub ident: Ident,
}

/// Free single-segment identifiers in `expr` (candidates for field references).
pub fn references(expr: &Expr) -> Vec<Reference> {
    let mut v = Collector::default();
    v.visit_expr(expr);
    v.found
        .into_iter()
        .filter(|r| !v.bound.contains(&r.ident.to_string()))
        .collect()
}

/// Identifiers used the way fields are (`x.method()`, `x.field`, `&x`, `&mut x`): the places
/// where an unknown name is almost surely a misspelt field rather than a function or constant.
pub fn field_like(expr: &Expr) -> Vec<Ident> {
    let mut v = FieldLike::default();
    v.visit_expr(expr);
    v.found
}

#[derive(Default)]
struct FieldLike {
    found: Vec<Ident>,
}

impl FieldLike {
    fn take(&mut self, expr: &Expr) {
        if let Expr::Path(syn::ExprPath {
            qself: None, path, ..
        }) = expr
            && let Some(ident) = path.get_ident()
        {
            self.found.push(ident.clone());
        }
    }
}

impl<'ast> Visit<'ast> for FieldLike {
    fn visit_expr_method_call(&mut self, node: &'ast syn::ExprMethodCall) {
        self.take(&node.receiver);
        syn::visit::visit_expr_method_call(self, node);
    }
    fn visit_expr_field(&mut self, node: &'ast syn::ExprField) {
        self.take(&node.base);
        syn::visit::visit_expr_field(self, node);
    }
    fn visit_expr_reference(&mut self, node: &'ast syn::ExprReference) {
        self.take(&node.expr);
        syn::visit::visit_expr_reference(self, node);
    }
}

#[derive(Default)]
struct Collector {
    found: Vec<Reference>,
    bound: BTreeSet<String>,
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_expr_path(&mut self, node: &'ast syn::ExprPath) {
        if let (None, Some(ident)) = (&node.qself, node.path.get_ident()) {
            self.found.push(Reference {
                ident: ident.clone(),
            });
        }
        syn::visit::visit_expr_path(self, node);
    }

    fn visit_expr_call(&mut self, node: &'ast syn::ExprCall) {
        // A callee `f(...)` is a function, not a field; its arguments may name fields.
        if !matches!(&*node.func, Expr::Path(_)) {
            self.visit_expr(&node.func);
        }
        for arg in &node.args {
            self.visit_expr(arg);
        }
    }

    fn visit_pat_ident(&mut self, node: &'ast syn::PatIdent) {
        self.bound.insert(node.ident.to_string());
        syn::visit::visit_pat_ident(self, node);
    }

    fn visit_macro(&mut self, node: &'ast syn::Macro) {
        // `format!("{}", a)`, `vec![a, b]`: arguments that parse as expressions are visited.
        let args = node
            .parse_body_with(syn::punctuated::Punctuated::<Expr, syn::Token![,]>::parse_terminated);
        if let Ok(args) = args {
            for arg in &args {
                self.visit_expr(arg);
            }
        }
    }
}

/// Edges `from` needs `to`, found at `span` (the reference in `from`'s expression).
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub span: Span,
}

/// Dependency edges between fields (indices into `exp.fields`), in source order.
pub fn edges(exp: &Experiment) -> Vec<Edge> {
    let mut out = Vec::new();
    for (from, field) in exp.fields.iter().enumerate() {
        let mut seen = BTreeSet::new();
        for r in references(&field.expr) {
            let to = exp.fields.iter().position(|f| f.ident == r.ident);
            if let Some(to) = to.filter(|&to| seen.insert(to)) {
                out.push(Edge {
                    from,
                    to,
                    span: r.ident.span(),
                });
            }
        }
    }
    out
}

/// Construction order, or the edges of a cycle. Among fields whose dependencies are built,
/// settings sections come first, then the distributed environment, then source order.
pub fn order(exp: &Experiment, edges: &[Edge]) -> Result<Vec<usize>, Vec<usize>> {
    let n = exp.fields.len();
    let rank = |i: usize| {
        let f = &exp.fields[i];
        match (f.kind, f.role.map(|(r, _)| r)) {
            (Some(InitKind::Config), _) => 0,
            (_, Some(Role::Dist)) => 1,
            _ => 2,
        }
    };
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let ready = (0..n)
            .filter(|&i| !done[i])
            .filter(|&i| edges.iter().all(|e| e.from != i || done[e.to]))
            .min_by_key(|&i| (rank(i), i));
        match ready {
            Some(i) => {
                done[i] = true;
                order.push(i);
            }
            None => return Err(cycle(n, edges, &done)),
        }
    }
    Ok(order)
}

/// Indices into `edges` of one cycle among the unbuilt fields, in dependency order.
fn cycle(n: usize, edges: &[Edge], done: &[bool]) -> Vec<usize> {
    // Walk "needs" edges from an unbuilt field until a field repeats: every unbuilt field
    // has an unbuilt dependency, so the walk must close a loop.
    let start = (0..n).find(|&i| !done[i]).unwrap_or(0);
    let mut path: Vec<usize> = Vec::new(); // edge indices
    let mut visited = vec![None; n];
    let mut at = start;
    loop {
        if let Some(pos) = visited[at] {
            return path[pos..].to_vec();
        }
        visited[at] = Some(path.len());
        let Some(next) = edges.iter().position(|e| e.from == at && !done[e.to]) else {
            return path;
        };
        path.push(next);
        at = edges[next].to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::Errors;
    use syn::parse_quote;

    fn experiment(item: syn::ItemStruct) -> Experiment {
        let mut errors = Errors::default();
        let exp = Experiment::parse(&item, &mut errors).expect("parses");
        assert!(errors.finish().is_ok());
        exp
    }

    fn names(exp: &Experiment, order: &[usize]) -> Vec<String> {
        order
            .iter()
            .map(|&i| exp.fields[i].ident.to_string())
            .collect()
    }

    #[test]
    fn sorts_by_dependency_whatever_the_source_order() {
        let exp = experiment(parse_quote! {
            struct E {
                #[build(AdamW::new(model.parameters(), cfg))] optimizer: AdamW,
                #[build(Llama::new(llama.with_tokenizer(&tokenizer), dist.device()))] model: Llama,
                #[build(Bpe::train(&stories))] tokenizer: Bpe,
                #[build(LocalEnv::from_env()?)] dist: LocalEnv,
                #[build(Stories::new(training.seed))] stories: Stories,
                #[config(LlamaConfig::tiny())] llama: LlamaConfig,
                #[config(TrainingConfig::default())] training: TrainingConfig,
            }
        });
        let e = edges(&exp);
        let order = order(&exp, &e).expect("acyclic");
        assert_eq!(
            names(&exp, &order),
            [
                "llama",
                "training",
                "dist",
                "stories",
                "tokenizer",
                "model",
                "optimizer"
            ]
        );
    }

    #[test]
    fn closure_parameters_and_lets_are_not_fields() {
        let exp = experiment(parse_quote! {
            struct E {
                #[build(|model: u8| model + 1)] a: u8,
                #[build({ let b = 2; b })] model: u8,
                #[build(format!("{}", a))] b: String,
            }
        });
        let e = edges(&exp);
        let pairs: Vec<(usize, usize)> = e.iter().map(|e| (e.from, e.to)).collect();
        assert_eq!(pairs, vec![(2, 0)]);
    }

    #[test]
    fn reports_every_edge_of_a_cycle() {
        let exp = experiment(parse_quote! {
            struct E {
                #[build(X::new(&c))] a: X,
                #[build(X::new(&a))] b: X,
                #[build(X::new(&b))] c: X,
                #[build(X::new())] d: X,
            }
        });
        let e = edges(&exp);
        let cyc = order(&exp, &e).expect_err("cycle");
        let mut pairs: Vec<(usize, usize)> = cyc.iter().map(|&i| (e[i].from, e[i].to)).collect();
        pairs.sort();
        assert_eq!(pairs, vec![(0, 2), (1, 0), (2, 1)]);
    }
}
