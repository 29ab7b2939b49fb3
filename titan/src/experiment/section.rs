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

/// A settings section whose values have ranges: `#[experiment]` checks it as soon as its
/// overrides are applied, before any component is built (and `--print-config` prints it), and
/// names a bad value by the section's key (`llama.hidden_size`, whatever the type calls it).
/// A section that does not implement it is not checked there.
pub trait Validate {
    /// Checks every value's range; an error names the key and the value.
    fn validate(&self) -> crate::Result<()>;
}

macro_rules! validated {
    ($($ty:ty),*) => {$(
        impl Validate for $ty {
            fn validate(&self) -> crate::Result<()> {
                <$ty>::validate(self)
            }
        }
    )*};
}

validated!(
    crate::optim::AdamWConfig,
    crate::optim::SgdConfig,
    crate::optim::AdafactorConfig,
    crate::lr::WarmupConfig,
    crate::tokenizer::BpeConfig,
    crate::data::DatasetConfig,
    crate::parallel_dims::ParallelConfig
);

// The ranges only: the device is the machine's business, checked when the run starts (a
// configuration for a GPU prints on a laptop).
impl Validate for crate::trainer::TrainingConfig {
    fn validate(&self) -> crate::Result<()> {
        self.validate_ranges()
    }
}

// All but what the tokenizer fills in (`LlamaConfig::with_tokenizer`: the vocab size, and
// positions up to its max length), which a section may leave at 0 for it.
impl Validate for crate::model::LlamaConfig {
    fn validate(&self) -> crate::Result<()> {
        crate::model::LlamaConfig {
            vocab_size: self.vocab_size.max(1),
            max_position_embeddings: self.max_position_embeddings.max(1),
            ..self.clone()
        }
        .validate()
    }
}

/// A section on its way to being checked (`#[experiment]` calls
/// `(&&SectionCheck(&value)).check_section(name)`: [`ValidSection`]'s method where the section
/// is [`Validate`], else [`AnySection`]'s, which checks nothing).
pub struct SectionCheck<'a, T>(pub &'a T);

/// The check of a [`Validate`] section, its errors keyed by the section's name.
pub trait ValidSection {
    /// Validates the section named `section`.
    fn check_section(&self, section: &str) -> crate::Result<()>;
}

impl<T: Validate> ValidSection for &SectionCheck<'_, T> {
    fn check_section(&self, section: &str) -> crate::Result<()> {
        self.0.validate().map_err(|e| in_section(section, e))
    }
}

/// The check of any other section: nothing to check.
pub trait AnySection {
    /// Checks nothing.
    fn check_section(&self, _section: &str) -> crate::Result<()> {
        Ok(())
    }
}

impl<T> AnySection for &&SectionCheck<'_, T> {}

/// `e` with its key under `section`: `LlamaConfig.hidden_size` of the section `llama` is
/// `llama.hidden_size` (a key already under a section, `training.steps`, stays).
fn in_section(section: &str, e: crate::Error) -> crate::Error {
    match e {
        crate::Error::Config {
            field,
            value,
            reason,
        } if field.starts_with(char::is_uppercase) => {
            let key = field.split_once('.').map_or("", |(_, key)| key);
            crate::Error::Config {
                field: format!("{section}.{key}"),
                value,
                reason,
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validated_section_is_checked_under_its_name_and_others_pass() {
        let bad = crate::model::LlamaConfig {
            num_attention_heads: 3,
            ..crate::model::LlamaConfig::tiny()
        };
        let err = (&&SectionCheck(&bad))
            .check_section("llama")
            .expect_err("3 heads")
            .to_string();
        assert!(err.contains("`llama.hidden_size`"), "{err}");
        let adamw = crate::optim::AdamWConfig {
            betas: (0.9, 1.0),
            ..Default::default()
        };
        let err = (&&SectionCheck(&adamw))
            .check_section("opt")
            .expect_err("beta 1")
            .to_string();
        assert!(err.contains("`opt.betas` = [0.9, 1]"), "{err}");
        // A section of the user's own, with no ranges: nothing to check.
        #[derive(Clone)]
        struct Mine;
        assert!((&&SectionCheck(&Mine)).check_section("mine").is_ok());
    }

    /// The data and parallelism sections are checked before anything is built too (a 0 there
    /// once surfaced only after the tokenizer had trained).
    #[test]
    fn data_and_parallelism_sections_are_checked_before_any_build() {
        let data = crate::data::DatasetConfig {
            prefetch: 0,
            ..Default::default()
        };
        let err = (&&SectionCheck(&data))
            .check_section("data")
            .expect_err("prefetch 0")
            .to_string();
        assert!(err.contains("`data.prefetch` = 0"), "{err}");
        let data = crate::data::DatasetConfig {
            delimiter: " <doc> ".into(),
            ..Default::default()
        };
        let err = (&&SectionCheck(&data))
            .check_section("dataset")
            .expect_err("spaces")
            .to_string();
        assert!(err.contains("`dataset.delimiter`"), "{err}");
        assert!(
            (&&SectionCheck(&crate::data::DatasetConfig::default()))
                .check_section("dataset")
                .is_ok()
        );
        for (parallel, key) in [
            (
                crate::ParallelConfig {
                    tp: 2,
                    ..Default::default()
                },
                "parallelism.tp",
            ),
            (
                crate::ParallelConfig {
                    timeout_s: 0,
                    ..Default::default()
                },
                "parallelism.timeout_s",
            ),
        ] {
            let err = (&&SectionCheck(&parallel))
                .check_section("parallelism")
                .expect_err(key)
                .to_string();
            assert!(err.contains(key), "{err}");
        }
    }
}
