//! The flags every experiment binary accepts (the CLI contract tests and benchmarks rely on).
//! The standard flags come from [`SHORTHANDS`], one per `training` key they write to, so a flag
//! and its setting cannot drift apart; `--config FILE` reads a whole configuration and `--set`
//! reaches any key on top of it.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Arg, ArgAction, Command};

use super::Overrides;
use crate::trainer::SHORTHANDS;
use crate::{Error, Result};

/// Command-line flags of an experiment binary; unset values keep the experiment's settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainArgs {
    /// The standard flags given, as (`training` key, value), in [`SHORTHANDS`] order.
    pub flags: Vec<(&'static str, String)>,
    /// `--set KEY=VALUE` overrides, in command-line order.
    pub set: Vec<String>,
    /// `--config FILE`: a TOML of the shape `--print-config` prints.
    pub config: Option<PathBuf>,
    /// `--print-config`: print the resolved configuration and the construction order, then
    /// exit.
    pub print_config: bool,
    /// `--export-hf PATH`: write the model of a checkpoint (`--resume-from`, or the output
    /// directory's latest) to PATH in Hugging Face's form, then exit.
    pub export_hf: Option<PathBuf>,
    /// `--nproc-per-node N`: start N ranks of this binary on this machine (torchrun's
    /// variables, loopback rendezvous) and wait for them.
    pub nproc_per_node: Option<usize>,
    /// `--pretokenize`: tokenize the data files into token shards (`dataset.pretokenize`),
    /// then exit without training.
    pub pretokenize: bool,
}

impl TrainArgs {
    /// The command line of binary `name`, parsed (on a bad flag clap prints the usage and exits).
    pub fn parse(name: &'static str) -> Self {
        let matches = command(name).get_matches();
        Self::from_matches(&matches)
    }

    /// Parses `args` (the first is the binary's name), as the binary would.
    pub fn try_parse_from<I, T>(args: I) -> Result<Self>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = command("experiment")
            .try_get_matches_from(args)
            .map_err(|e| {
                let text = e.to_string();
                Error::Usage(text.trim_start_matches("error: ").trim_end().to_string())
            })?;
        Ok(Self::from_matches(&matches))
    }

    fn from_matches(matches: &clap::ArgMatches) -> Self {
        let flags = SHORTHANDS
            .iter()
            .filter_map(|s| {
                let value = matches.get_one::<String>(s.key)?;
                Some((s.key, value.clone()))
            })
            .collect();
        Self {
            flags,
            set: matches
                .get_many::<String>("set")
                .map(|v| v.cloned().collect())
                .unwrap_or_default(),
            config: matches.get_one::<PathBuf>("config").cloned(),
            print_config: matches.get_flag("print_config"),
            export_hf: matches.get_one::<PathBuf>("export_hf").cloned(),
            nproc_per_node: matches.get_one::<usize>("nproc_per_node").copied(),
            pretokenize: matches.get_flag("pretokenize"),
        }
    }

    /// The configuration file's settings, then the standard flags as `training.*` overrides,
    /// then the `--set` ones: each later one wins.
    pub fn overrides(&self) -> Result<Overrides> {
        let mut o = match &self.config {
            Some(path) => Overrides::from_file(path)?,
            None => Overrides::none(),
        };
        for (key, value) in &self.flags {
            let text = SHORTHANDS.iter().any(|s| s.key == *key && s.text);
            // Quoted, so a path or name that looks like a number or `null` stays text.
            let value = if text {
                serde_json::Value::String(value.clone()).to_string()
            } else {
                value.clone()
            };
            o.push(&format!("training.{key}"), value);
        }
        o.extend(Overrides::parse(&self.set)?);
        Ok(o)
    }
}

/// The clap command: one flag per shorthand, then `--config`, `--set` and `--print-config`.
fn command(name: &'static str) -> Command {
    let shorthands = SHORTHANDS.iter().map(|s| {
        Arg::new(s.key)
            .long(s.flag())
            .value_name("VALUE")
            // `--steps -1` reaches the setting, which names the flag's key and the range,
            // instead of clap's "unexpected argument '-1'".
            .allow_negative_numbers(true)
            .help(format!("{} (`training.{}`)", s.help, s.key))
    });
    Command::new(name)
        .about("Train a titan experiment")
        .args(shorthands)
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("Read settings from a TOML file of the shape `--print-config` prints"),
        )
        .arg(
            Arg::new("set")
                .long("set")
                .value_name("KEY=VALUE")
                .action(ArgAction::Append)
                .help("Override any config key: `--set llama.num_hidden_layers=8` (repeatable)"),
        )
        .arg(
            Arg::new("export_hf")
                .long("export-hf")
                .value_name("PATH")
                .value_parser(clap::value_parser!(PathBuf))
                .help(
                    "Write the model of a checkpoint (--resume-from, or the output directory's \
                     latest) to PATH in Hugging Face's form, then exit",
                ),
        )
        .arg(
            Arg::new("nproc_per_node")
                .long("nproc-per-node")
                .value_name("N")
                .value_parser(clap::value_parser!(usize))
                .help(
                    "Train on N data-parallel ranks on this machine (this binary started N \
                     times with torchrun's variables; Gloo on CPU, NCCL on GPUs)",
                ),
        )
        .arg(
            Arg::new("pretokenize")
                .long("pretokenize")
                .action(ArgAction::SetTrue)
                .help(
                    "Tokenize the --data files that have no token shard yet (in parallel, into \
                     dataset.tokens_dir), then exit; later runs on them read the shards",
                ),
        )
        .arg(
            Arg::new("print_config")
                .long("print-config")
                .action(ArgAction::SetTrue)
                .help(
                    "Print the resolved configuration (TOML) and the construction order, then exit",
                ),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_training_overrides_in_order() -> Result<()> {
        let args = TrainArgs::try_parse_from([
            "x",
            "--steps",
            "7",
            "--output-dir",
            "2024",
            "--set",
            "training.steps=9",
        ])?;
        assert_eq!(
            args.flags,
            [("steps", "7".into()), ("output_dir", "2024".into())]
        );
        let o = args.overrides()?;
        let mut set = super::super::ConfigSet::new(&o);
        let t = set.resolve("training", crate::TrainingConfig::default())?;
        set.finish()?;
        assert_eq!(t.steps, 9, "--set comes after the flags");
        assert_eq!(t.output_dir, Some(PathBuf::from("2024")));
        Ok(())
    }

    #[test]
    fn an_unknown_flag_is_an_error_naming_it() {
        let err = TrainArgs::try_parse_from(["x", "--stepz", "3"])
            .expect_err("unknown flag")
            .to_string();
        assert!(err.contains("--stepz"), "{err}");
    }
}
