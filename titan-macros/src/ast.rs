//! What the user wrote: the experiment struct, its fields, how each is built and its role.
//! Each node keeps the user's tokens so errors point at them.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, Ident, ItemStruct, Type, Visibility};

use crate::roles::Role;

/// Collects errors so one pass reports all of them (serde's `Ctxt`).
#[derive(Default)]
pub struct Errors {
    errors: Vec<syn::Error>,
}

impl Errors {
    pub fn push(&mut self, error: syn::Error) {
        self.errors.push(error);
    }

    pub fn error(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    /// All errors combined into one, or `Ok` when there were none.
    pub fn finish(self) -> syn::Result<()> {
        let mut iter = self.errors.into_iter();
        match iter.next() {
            None => Ok(()),
            Some(mut first) => {
                first.extend(iter);
                Err(first)
            }
        }
    }
}

/// How a field is constructed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum InitKind {
    /// `#[build(expr)]`: a component.
    Build,
    /// `#[config(expr)]`: a settings section (serde, `--set`, `--print-config`).
    Config,
}

pub struct Field {
    /// Attributes other than ours (docs, lints), kept on the struct.
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub ident: Ident,
    pub ty: Type,
    pub kind: InitKind,
    pub expr: Expr,
    /// The role and the token that gave it (the field name or the `#[role]` argument).
    pub role: Option<(Role, Span)>,
}

pub struct Experiment {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub ident: Ident,
    pub fields: Vec<Field>,
}

impl Experiment {
    /// Parses the struct, collecting every error in `errors`.
    pub fn parse(item: &ItemStruct, errors: &mut Errors) -> Option<Experiment> {
        if !item.generics.params.is_empty() {
            errors.error(
                item.generics.span(),
                "an experiment cannot be generic: name the concrete component types",
            );
        }
        let syn::Fields::Named(named) = &item.fields else {
            errors.error(
                item.ident.span(),
                "an experiment is a struct with named fields, one per component",
            );
            return None;
        };
        let fields = named
            .named
            .iter()
            .filter_map(|f| parse_field(f, errors))
            .collect();
        Some(Experiment {
            attrs: item.attrs.clone(),
            vis: item.vis.clone(),
            ident: item.ident.clone(),
            fields,
        })
    }

    pub fn role(&self, role: Role) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.role.map(|(r, _)| r) == Some(role))
    }
}

fn parse_field(field: &syn::Field, errors: &mut Errors) -> Option<Field> {
    let ident = field.ident.clone()?;
    let mut init: Option<(InitKind, Expr, Span)> = None;
    let mut explicit_role = None;
    let mut attrs = Vec::new();
    for attr in &field.attrs {
        let path = attr.path();
        let kind = if path.is_ident("build") {
            InitKind::Build
        } else if path.is_ident("config") {
            InitKind::Config
        } else if path.is_ident("role") {
            match attr.parse_args::<Ident>() {
                Ok(name) => match Role::from_name(&name.to_string()) {
                    Some(_) if explicit_role.is_some() => {
                        errors.error(
                            name.span(),
                            format!("`{ident}` already has a role; keep one `#[role(...)]`"),
                        );
                    }
                    Some(role) => explicit_role = Some((role, name.span())),
                    None => {
                        let names: Vec<&str> = crate::roles::ALL.iter().map(|r| r.name()).collect();
                        errors.error(
                            name.span(),
                            format!("unknown role `{name}`; the roles are: {}", names.join(", ")),
                        );
                    }
                },
                Err(e) => errors.push(e),
            }
            continue;
        } else {
            attrs.push(attr.clone());
            continue;
        };
        // A malformed expression is reported once and the field kept, so the struct does not
        // also lose a role because of it.
        let parsed = attr.parse_args::<Expr>().unwrap_or_else(|e| {
            errors.push(e);
            Expr::Verbatim(proc_macro2::TokenStream::new())
        });
        if let Some((_, _, first)) = &init {
            let mut e = syn::Error::new(
                attr.span(),
                format!(
                    "`{ident}` already says how it is built; keep one `#[build]` or `#[config]`"
                ),
            );
            e.combine(syn::Error::new(*first, "first one here"));
            errors.push(e);
        } else {
            init = Some((kind, parsed, attr.span()));
        }
    }
    let Some((kind, expr, _)) = init else {
        errors.error(
            ident.span(),
            format!(
                "`{ident}` does not say how it is built: add `#[build(expression)]` for a component or `#[config(expression)]` for a settings section"
            ),
        );
        return None;
    };
    if ident == "build" || ident.to_string().starts_with("__titan") {
        errors.error(
            ident.span(),
            format!("`{ident}` is reserved by the generated builder (`build()`, `__titan_*`); rename the field"),
        );
    }
    let role =
        explicit_role.or_else(|| Role::from_name(&ident.to_string()).map(|r| (r, ident.span())));
    Some(Field {
        attrs,
        vis: field.vis.clone(),
        ident,
        ty: field.ty.clone(),
        kind,
        expr,
        role,
    })
}
