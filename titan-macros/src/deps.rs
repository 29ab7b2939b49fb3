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

/// Free single-segment identifiers in `expr` (candidates for field references): a name is
/// free where no enclosing `let`, closure parameter, `match` arm, `if let` or `for` binds it
/// yet, so `{ let dims = &dims; ... }` still names the field `dims`.
pub fn references(expr: &Expr) -> Vec<Reference> {
    let mut v = Collector::default();
    v.visit_expr(expr);
    v.found
}

/// Every name a pattern inside `expr` binds (`let x`, `|x|`, a match arm's `x`), wherever it
/// binds it: the names an expression may shadow.
pub fn bound_names(expr: &Expr) -> Vec<Ident> {
    #[derive(Default)]
    struct Bound(Vec<Ident>);
    impl<'ast> Visit<'ast> for Bound {
        fn visit_pat_ident(&mut self, node: &'ast syn::PatIdent) {
            self.0.push(node.ident.clone());
            syn::visit::visit_pat_ident(self, node);
        }
    }
    let mut bound = Bound::default();
    bound.visit_expr(expr);
    bound.0
}

/// Identifiers used the way fields are (`x.method()`, `x.field`, `&x`, `&mut x`): the places
/// where an unknown name is almost surely a misspelt field rather than a function or constant.
pub fn field_like(expr: &Expr) -> Vec<Ident> {
    let mut v = FieldLike::default();
    v.visit_expr(expr);
    v.found
}

/// The first `x` of a `self.x` in `expr`, for the advice to write `x`.
pub fn self_member(expr: &Expr) -> Option<String> {
    #[derive(Default)]
    struct SelfMember(Option<String>);
    impl<'ast> Visit<'ast> for SelfMember {
        fn visit_expr_field(&mut self, node: &'ast syn::ExprField) {
            if let (Expr::Path(base), syn::Member::Named(member)) = (&*node.base, &node.member)
                && base.path.is_ident("self")
                && self.0.is_none()
            {
                self.0 = Some(member.to_string());
            }
            syn::visit::visit_expr_field(self, node);
        }
    }
    let mut v = SelfMember::default();
    v.visit_expr(expr);
    v.0
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
    /// The names bound around the current point, innermost last.
    scopes: Vec<BTreeSet<String>>,
}

impl Collector {
    fn bound(&self, name: &str) -> bool {
        self.scopes.iter().any(|s| s.contains(name))
    }

    /// Binds the names `pat` introduces in the innermost scope.
    fn bind(&mut self, pat: &syn::Pat) {
        let mut names = PatNames::default();
        names.visit_pat(pat);
        if self.scopes.is_empty() {
            self.scopes.push(BTreeSet::new());
        }
        if let Some(scope) = self.scopes.last_mut() {
            scope.extend(names.0);
        }
    }

    /// Runs `f` in a new scope.
    fn scoped(&mut self, f: impl FnOnce(&mut Self)) {
        self.scopes.push(BTreeSet::new());
        f(self);
        self.scopes.pop();
    }

    fn reference(&mut self, ident: &Ident) {
        if !self.bound(&ident.to_string()) {
            self.found.push(Reference {
                ident: ident.clone(),
            });
        }
    }
}

/// The identifiers a pattern binds.
#[derive(Default)]
struct PatNames(Vec<String>);

impl<'ast> Visit<'ast> for PatNames {
    fn visit_pat_ident(&mut self, node: &'ast syn::PatIdent) {
        self.0.push(node.ident.to_string());
        syn::visit::visit_pat_ident(self, node);
    }
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_expr_path(&mut self, node: &'ast syn::ExprPath) {
        if let (None, Some(ident)) = (&node.qself, node.path.get_ident()) {
            self.reference(ident);
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

    fn visit_block(&mut self, node: &'ast syn::Block) {
        self.scoped(|v| syn::visit::visit_block(v, node));
    }

    fn visit_local(&mut self, node: &'ast syn::Local) {
        // The initializer sees the names before this `let`; the pattern binds after it.
        if let Some(init) = &node.init {
            self.visit_expr(&init.expr);
            if let Some((_, diverge)) = &init.diverge {
                self.visit_expr(diverge);
            }
        }
        self.bind(&node.pat);
    }

    fn visit_expr_closure(&mut self, node: &'ast syn::ExprClosure) {
        self.scoped(|v| {
            for input in &node.inputs {
                v.bind(input);
            }
            v.visit_expr(&node.body);
        });
    }

    fn visit_arm(&mut self, node: &'ast syn::Arm) {
        self.scoped(|v| {
            v.bind(&node.pat);
            if let Some((_, guard)) = &node.guard {
                v.visit_expr(guard);
            }
            v.visit_expr(&node.body);
        });
    }

    fn visit_expr_let(&mut self, node: &'ast syn::ExprLet) {
        // `if let` / `while let`: bound for the rest of the condition and the body (the
        // enclosing `if` or `while` holds the scope).
        self.visit_expr(&node.expr);
        self.bind(&node.pat);
    }

    fn visit_expr_if(&mut self, node: &'ast syn::ExprIf) {
        self.scoped(|v| {
            v.visit_expr(&node.cond);
            v.visit_block(&node.then_branch);
        });
        if let Some((_, otherwise)) = &node.else_branch {
            self.visit_expr(otherwise);
        }
    }

    fn visit_expr_while(&mut self, node: &'ast syn::ExprWhile) {
        self.scoped(|v| {
            v.visit_expr(&node.cond);
            v.visit_block(&node.body);
        });
    }

    fn visit_expr_for_loop(&mut self, node: &'ast syn::ExprForLoop) {
        self.visit_expr(&node.expr);
        self.scoped(|v| {
            v.bind(&node.pat);
            v.visit_block(&node.body);
        });
    }

    fn visit_item(&mut self, _: &'ast syn::Item) {
        // A nested `fn` or `const` cannot name the experiment's locals.
    }

    fn visit_macro(&mut self, node: &'ast syn::Macro) {
        // `format!("{}", a)`, `vec![a, b]`, `vec![x; n]`: arguments that parse as expressions
        // are visited, and a format string's inline captures (`"{a}"`, `"{a:?}"`) too.
        let list = node
            .parse_body_with(syn::punctuated::Punctuated::<Expr, syn::Token![,]>::parse_terminated);
        let args: Vec<Expr> = match list {
            Ok(args) => args.into_iter().collect(),
            Err(_) => node
                .parse_body_with(|input: syn::parse::ParseStream<'_>| {
                    let value: Expr = input.parse()?;
                    input.parse::<syn::Token![;]>()?;
                    let count: Expr = input.parse()?;
                    Ok(vec![value, count])
                })
                .unwrap_or_default(),
        };
        // The format string of a formatting macro: its first string literal argument (after
        // `f` in `write!(f, ...)`, after the condition in `assert!(c, ...)`).
        let formats = node
            .path
            .segments
            .last()
            .is_some_and(|s| FORMATTING.contains(&s.ident.to_string().as_str()));
        let format = args.iter().find_map(|arg| match arg {
            Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(text),
                ..
            }) => Some(text),
            _ => None,
        });
        if let Some(text) = format.filter(|_| formats) {
            for name in inline_captures(&text.value()) {
                self.reference(&Ident::new(&name, text.span()));
            }
        }
        for arg in &args {
            self.visit_expr(arg);
        }
    }
}

/// Macros whose first string literal is a format string (std's, and the common error and log
/// macros of anyhow and tracing).
const FORMATTING: [&str; 27] = [
    "format",
    "format_args",
    "print",
    "println",
    "eprint",
    "eprintln",
    "write",
    "writeln",
    "panic",
    "assert",
    "assert_eq",
    "assert_ne",
    "debug_assert",
    "debug_assert_eq",
    "debug_assert_ne",
    "unreachable",
    "todo",
    "unimplemented",
    "anyhow",
    "format_err",
    "bail",
    "ensure",
    "info",
    "warn",
    "error",
    "debug",
    "trace",
];

/// The names a format string captures inline: `{name}`, `{name:?}`, `{name:>8}`, and a width
/// or precision argument `{:w$}`, `{:.p$}` (not `{}`, `{0}`, `{:1$}`, nor an escaped `{{`).
fn inline_captures(text: &str) -> Vec<String> {
    let ident = |name: &str| {
        name.starts_with(|c: char| c.is_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_alphanumeric() || c == '_')
            && syn::parse_str::<Ident>(name).is_ok()
    };
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        if let Some(after) = rest.strip_prefix('{') {
            rest = after;
            continue;
        }
        let end = rest.find('}').unwrap_or(rest.len());
        let (name, spec) = rest[..end].split_once(':').unwrap_or((&rest[..end], ""));
        if ident(name) {
            out.push(name.to_string());
        }
        // `name$` in the spec: a width or precision taken from a variable.
        for piece in spec.split('$').take(spec.matches('$').count()) {
            let start = piece
                .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
                .map_or(0, |i| i + 1);
            if ident(&piece[start..]) {
                out.push(piece[start..].to_string());
            }
        }
        rest = &rest[end..];
    }
    out
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

    /// Names bound inside an expression hide a field only after their binding and inside
    /// their scope; macro arguments, `[x; n]` and format captures name fields too.
    #[test]
    fn bindings_hide_fields_only_in_their_scope() {
        let exp = experiment(parse_quote! {
            struct E {
                #[build({ let dims = &dims; dims.rank() })] a: u8,
                #[build(match x { Some(a) => a, None => 0 })] b: u8,
                #[build(vec![0u8; count])] c: Vec<u8>,
                #[build(format!("{dims:?} {{a}} {}", 1))] d: String,
                #[build({ if let Some(b) = y { b } else { b } })] e: u8,
                #[build(1)] dims: u8,
                #[build(1)] count: usize,
                #[build(None)] x: Option<u8>,
                #[build(None)] y: Option<u8>,
                #[build(vec!["{dims}".to_string()])] g: Vec<String>,
                #[build({ assert!(x.is_none(), "{count}"); 1 })] h: u8,
            }
        });
        let e = edges(&exp);
        let mut pairs: Vec<(usize, usize)> = e.iter().map(|e| (e.from, e.to)).collect();
        pairs.sort();
        // a→dims; b→x (its arm's `a` is bound); c→count; d→dims (not `{{a}}`); e→y and the
        // `else` branch's `b` (outside the `if let`).
        // A string that is no format string names nothing; `assert!`'s message does.
        assert_eq!(
            pairs,
            vec![
                (0, 5),
                (1, 7),
                (2, 6),
                (3, 5),
                (4, 1),
                (4, 8),
                (10, 6),
                (10, 7)
            ]
        );
        assert_eq!(
            inline_captures("{a} {b:?} {{c}} {} {0} {d:>8} {:w$} {e:>1$.p$}"),
            ["a", "b", "d", "w", "e", "p"]
        );
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
