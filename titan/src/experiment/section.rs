//! What a settings section is: the one trait a `#[config]` field's type must meet, so a type
//! that does not is one error on the user's field that says what to derive.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A settings section: the type of a `#[config]` field of an experiment. `--set` and
/// `--config` rewrite it as a tree of keys and `--print-config` prints it, so it is a plain
/// serde struct that can be cloned; derive `Clone, Serialize, Deserialize` (and `Default`, for
/// `..Default::default()` in its `#[config(...)]` expression).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a settings section: derive `Clone, serde::Serialize, serde::Deserialize`",
    label = "a `#[config]` field's type must be a settings section",
    note = "`--set`, `--config` and `--print-config` read and write a section as a tree of keys: write `#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]` on `{Self}` (`Default` for `..Default::default()`)"
)]
pub trait Section: Clone + Serialize + DeserializeOwned {}

// `do_not_recommend`: a type that lacks Clone, Serialize or Deserialize is reported as not a
// `Section` (the message above), once, instead of once per missing trait.
#[diagnostic::do_not_recommend]
impl<T: Clone + Serialize + DeserializeOwned> Section for T {}

/// Checks, at the user's field type, that a `#[config]` field is a [`Section`] (`#[experiment]`
/// calls it before any other use of the type, so a wrong type is one error).
pub fn is_section<T: Section>() {}

/// A copy of a section the builder was given (`#[experiment]`'s `--print-config` path).
pub fn section_clone<T: Section>(section: &T) -> T {
    section.clone()
}
