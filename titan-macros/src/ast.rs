//! What the user wrote: the experiment struct, its fields, how each is built and its role.
//! Each node keeps the user's tokens so errors point at them.
//!
//! A field whose attributes are wrong is still kept, with as much of its meaning as can be
//! recovered (a misspelt `#[biuld]` read as `#[build]`), so one mistake gives one error and not
//! a second one about what the mistake left out.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, Generics, Ident, ItemStruct, Type, Visibility};

use crate::roles::{self, Role};
use crate::suggest;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitKind {
    /// `#[build(expr)]`: a component.
    Build,
    /// `#[config(expr)]`: a settings section (serde, `--set`, `--print-config`).
    Config,
}

impl InitKind {
    fn attribute(self) -> &'static str {
        match self {
            InitKind::Build => "build",
            InitKind::Config => "config",
        }
    }
}

/// The macro's own field attributes, the names a misspelt one is matched against.
pub const ATTRIBUTES: [&str; 3] = ["build", "config", "role"];

/// Attributes rustc gives a meaning on a field; a rejected field keeps them.
const RUSTC_ATTRIBUTES: [&str; 9] = [
    "doc",
    "cfg",
    "cfg_attr",
    "allow",
    "warn",
    "deny",
    "forbid",
    "expect",
    "deprecated",
];

pub struct Field {
    /// Attributes other than ours (docs, lints), kept on the struct.
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub ident: Ident,
    pub ty: Type,
    /// `None` when the field says neither `#[build]` nor `#[config]` (already reported); the
    /// field is kept so the struct and its role survive and nothing else is reported about it.
    pub kind: Option<InitKind>,
    pub expr: Expr,
    /// The role and the token that gave it (the field name or the `#[role]` argument).
    pub role: Option<(Role, Span)>,
    /// Its `#[role(...)]` named no role (already reported): it may have meant any missing one.
    pub unknown_role: bool,
    /// The role an unknown `#[role(...)]` is closest to, when one is: the role it meant.
    pub meant_role: Option<Role>,
    /// It carried a `#[cfg]` or `#[cfg_attr]` (already reported, and dropped).
    pub had_cfg: bool,
}

pub struct Experiment {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub ident: Ident,
    /// Always empty in an experiment that compiles; kept so a rejected generic one is emitted as
    /// written and its fields' type parameters still resolve.
    pub generics: Generics,
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
        let mut fields: Vec<Field> = Vec::new();
        for f in &named.named {
            let Some(field) = parse_field(f, errors) else {
                continue;
            };
            // A second field of the same name is left out, so rustc does not report it again
            // (nor the builder's duplicate setter); two alternatives under `#[cfg]` were
            // reported at their `cfg` already.
            if let Some(first) = fields.iter().find(|g| g.ident == field.ident) {
                if first.had_cfg || field.had_cfg {
                    continue;
                }
                errors.error(
                    field.ident.span(),
                    format!(
                        "field `{}` is already declared; each component needs a name of its own, so rename or remove this one",
                        field.ident
                    ),
                );
                continue;
            }
            fields.push(field);
        }
        Some(Experiment {
            attrs: item.attrs.clone(),
            vis: item.vis.clone(),
            ident: item.ident.clone(),
            generics: item.generics.clone(),
            fields,
        })
    }

    pub fn role(&self, role: Role) -> Option<&Field> {
        self.fields
            .iter()
            .find(|f| f.role.map(|(r, _)| r) == Some(role))
    }
}

/// A field's name as text, without the `r#` of a raw identifier (`r#type` is `type`): the name
/// that gives its role, its section and its errors' tag.
pub fn name_of(ident: &Ident) -> String {
    syn::ext::IdentExt::unraw(ident).to_string()
}

/// Names the generated code takes for itself: the builder's `build()` and `__titan_*`.
pub fn is_reserved(ident: &Ident) -> bool {
    let name = name_of(ident);
    name == "build" || name.starts_with("__titan")
}

/// Which of the macro's attributes `attr` is, if any.
enum Ours {
    Init(InitKind),
    Role,
}

impl Ours {
    fn from_name(name: &str) -> Option<Ours> {
        match name {
            "build" => Some(Ours::Init(InitKind::Build)),
            "config" => Some(Ours::Init(InitKind::Config)),
            "role" => Some(Ours::Role),
            _ => None,
        }
    }
}

/// The attribute `attr` is, or stands for: `#[biuld(...)]` is reported once, with the
/// suggestion, and then read as `#[build(...)]`. The flag says it was recovered so.
fn ours(attr: &Attribute, errors: &mut Errors) -> Option<(Ours, bool)> {
    let name = attr.path().get_ident()?;
    let written = name.to_string();
    if let Some(ours) = Ours::from_name(&written) {
        return Some((ours, false));
    }
    if RUSTC_ATTRIBUTES.contains(&written.as_str()) {
        return None;
    }
    // One edit at most: `#[builder]` or `#[configure]` of another derive are not ours.
    let suggestion = suggest::closest(&written, ATTRIBUTES, |_| 1)?;
    errors.error(
        name.span(),
        format!("unknown attribute `{written}`; did you mean `#[{suggestion}]`?"),
    );
    Ours::from_name(suggestion).map(|ours| (ours, true))
}

fn parse_field(field: &syn::Field, errors: &mut Errors) -> Option<Field> {
    let ident = field.ident.clone()?;
    let mut init: Option<(InitKind, Expr)> = None;
    let mut explicit_role = None;
    let mut unknown_role = false;
    let mut meant_role = None;
    let mut attrs = Vec::new();
    let mut had_cfg = false;
    for attr in &field.attrs {
        // The macro sees the fields before `cfg` removes any: the builder, the build order and
        // the wiring would still use a field the struct has lost. A `cfg_attr` that adds only
        // rustc's or another derive's attributes (`allow`, `doc`, `serde`) is kept.
        if let Some(name) = attr
            .path()
            .get_ident()
            .filter(|name| *name == "cfg" || (*name == "cfg_attr" && chooses_ours(attr)))
        {
            had_cfg = true;
            errors.error(
                name.span(),
                format!(
                    "`#[{name}]` cannot choose an experiment's fields (`#[experiment]` reads them \
                     before `cfg` applies, so it would still build `{ident}`): choose in the \
                     expression instead, e.g. `#[build(if cfg!(feature = \"x\") {{ a }} else \
                     {{ b }})]`, or write one experiment file per choice"
                ),
            );
            continue;
        }
        let Some((which, recovered)) = ours(attr, errors) else {
            attrs.push(attr.clone());
            continue;
        };
        // A recovered attribute was reported already; its arguments are not reported again.
        let report = |e: syn::Error, errors: &mut Errors| {
            if !recovered {
                errors.push(e);
            }
        };
        let kind = match which {
            Ours::Init(kind) => kind,
            Ours::Role => {
                match attr.parse_args::<Ident>() {
                    Ok(name) => match Role::from_name(&name.to_string()) {
                        Some(_) if explicit_role.is_some() => errors.error(
                            name.span(),
                            format!("`{ident}` already has a role; keep one `#[role(...)]`"),
                        ),
                        Some(role) => explicit_role = Some((role, name.span())),
                        None => {
                            unknown_role = true;
                            meant_role = closest_role(&name.to_string());
                            errors.error(name.span(), unknown_role_message(&name));
                        }
                    },
                    Err(e) => {
                        unknown_role = true;
                        let names: Vec<&str> = roles::ALL.iter().map(|r| r.name()).collect();
                        let message = format!(
                            "`#[role(...)]` takes one role name, e.g. `#[role(model)]`; roles: {}",
                            names.join(", ")
                        );
                        report(syn::Error::new(e.span(), message), errors);
                    }
                }
                continue;
            }
        };
        // A malformed expression is reported once and the field kept, so the struct does not
        // also lose a role because of it.
        let parsed = attr.parse_args::<Expr>().unwrap_or_else(|e| {
            report(e, errors);
            Expr::Verbatim(proc_macro2::TokenStream::new())
        });
        match &init {
            // One error, on the second attribute; the first one stays in force.
            Some((first, _)) => errors.error(
                attr.path().span(),
                format!(
                    "`{ident}` already says how it is built (`#[{}]`); keep one `#[build]` or `#[config]`",
                    first.attribute()
                ),
            ),
            None => init = Some((kind, parsed)),
        }
    }
    // A `#[cfg_attr(.., build(..))]` was reported at its `cfg_attr`.
    if init.is_none() && !had_cfg {
        missing_init(&ident, &mut attrs, errors);
    }
    if is_reserved(&ident) {
        errors.error(
            ident.span(),
            format!("`{ident}` is reserved by the generated builder (`build()`, `__titan_*`); rename the field"),
        );
    }
    // `r#type` is the field `type`: its name gives its role and its section's name.
    let name = name_of(&ident);
    // A settings section named `metrics` (a W&B project, say) is a section, not the sink.
    let by_name = Role::from_name(&name)
        .filter(|&r| !(r == Role::Metrics && matches!(init, Some((InitKind::Config, _)))));
    let role = explicit_role.or_else(|| by_name.map(|r| (r, ident.span())));
    let (kind, expr) = match init {
        Some((kind, expr)) => (Some(kind), expr),
        None => (None, Expr::Verbatim(proc_macro2::TokenStream::new())),
    };
    let mut ty = field.ty.clone();
    owned_type(&ident, &mut ty, errors);
    Some(Field {
        attrs,
        vis: field.vis.clone(),
        ident,
        ty,
        kind,
        expr,
        role,
        unknown_role,
        meant_role,
        had_cfg,
    })
}

/// A field's type must be one the experiment owns and names: a borrowed type (`&T`, with no
/// struct lifetime to borrow for), `_` or `impl Trait` is one error at it, and the type is then
/// `()` in `ty`, so the struct and builder emitted beside the error raise nothing more.
fn owned_type(ident: &Ident, ty: &mut Type, errors: &mut Errors) {
    struct Owned<'e> {
        ident: &'e Ident,
        errors: &'e mut Errors,
        found: bool,
    }
    impl<'ast> syn::visit::Visit<'ast> for Owned<'_> {
        fn visit_type(&mut self, ty: &'ast Type) {
            if let Type::Infer(_) | Type::ImplTrait(_) = ty {
                self.found = true;
                self.errors.error(
                    ty.span(),
                    format!(
                        "field `{}` needs its type written out (the builder names it): write the \
                         concrete type, or `Box<dyn Trait>` to erase it",
                        self.ident
                    ),
                );
                return;
            }
            syn::visit::visit_type(self, ty);
        }
        fn visit_type_reference(&mut self, r: &'ast syn::TypeReference) {
            // `&'a T` under a `for<'a>` is fine, and an undeclared `'a` is rustc's one error.
            if r.lifetime.as_ref().is_none_or(|l| l.ident == "_") {
                self.found = true;
                self.errors.error(
                    r.and_token.span,
                    format!(
                        "field `{}` borrows, but an experiment owns its components: store the \
                         value itself (other fields borrow it with `&{}`), or share one with \
                         `Arc<T>`; only `&'static` references can be fields",
                        self.ident, self.ident
                    ),
                );
                return;
            }
            syn::visit::visit_type_reference(self, r);
        }
        // `fn(&str)` and `dyn Fn(&str)` elide their own lifetimes.
        fn visit_type_bare_fn(&mut self, _: &'ast syn::TypeBareFn) {}
        fn visit_parenthesized_generic_arguments(
            &mut self,
            _: &'ast syn::ParenthesizedGenericArguments,
        ) {
        }
    }
    let mut owned = Owned {
        ident,
        errors,
        found: false,
    };
    syn::visit::Visit::visit_type(&mut owned, ty);
    if owned.found {
        *ty = syn::parse_quote!(());
    }
}

/// Whether `#[cfg_attr(predicate, attrs…)]` would add one of the macro's attributes, or a `cfg`.
fn chooses_ours(attr: &Attribute) -> bool {
    let Ok(metas) = attr.parse_args_with(
        syn::punctuated::Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated,
    ) else {
        return false;
    };
    metas.iter().skip(1).any(|meta| {
        meta.path().get_ident().is_some_and(|name| {
            ATTRIBUTES.contains(&name.to_string().as_str()) || name == "cfg" || name == "cfg_attr"
        })
    })
}

/// The role a misspelt role name is closest to, if any.
fn closest_role(written: &str) -> Option<Role> {
    let names = roles::ALL.iter().map(|r| r.name());
    suggest::closest(written, names, suggest::tolerance).and_then(Role::from_name)
}

/// Reports a field with neither `#[build]` nor `#[config]`. An attribute the macro does not
/// know (`#[construct(...)]`) is most likely the intended initializer: the error goes on it,
/// and it is dropped from the emitted struct so rustc does not report it a second time.
fn missing_init(ident: &Ident, attrs: &mut Vec<Attribute>, errors: &mut Errors) {
    let is_rustc = |a: &Attribute| {
        a.path()
            .get_ident()
            .is_some_and(|name| RUSTC_ATTRIBUTES.contains(&name.to_string().as_str()))
    };
    let how = "write `#[build(expression)]` for a component or `#[config(expression)]` for a settings section";
    match attrs.iter().find(|a| !is_rustc(a)) {
        Some(foreign) => {
            let path = foreign.path();
            let name = path
                .segments
                .iter()
                .map(|s| s.ident.to_string())
                .collect::<Vec<_>>()
                .join("::");
            errors.error(
                path.span(),
                format!(
                    "`#[{name}]` is not an attribute of `#[experiment]`, so `{ident}` does not say how it is built: {how}"
                ),
            );
            attrs.retain(is_rustc);
        }
        None => errors.error(
            ident.span(),
            format!("`{ident}` does not say how it is built: {how}"),
        ),
    }
}

/// "unknown role `modle`; did you mean `model`? roles: …".
fn unknown_role_message(name: &Ident) -> String {
    let written = name.to_string();
    let names: Vec<&str> = roles::ALL.iter().map(|r| r.name()).collect();
    match suggest::closest(&written, names.iter().copied(), suggest::tolerance) {
        Some(suggestion) => format!(
            "unknown role `{written}`; did you mean `{suggestion}`? roles: {}",
            names.join(", ")
        ),
        None => format!("unknown role `{written}`; roles: {}", names.join(", ")),
    }
}
