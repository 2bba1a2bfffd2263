//! Command line: `switchboard [run|check|init] [--config FILE]`, `--help`, `--version` (clap derive).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Switchboard, a modular PBX: registers phones and routes calls through Lua dialplans.
#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about,
    after_help = "With no command, `run` is assumed. With no --config, ./switchboard.toml is \
                  used if it exists, else the embedded demo configuration.\n\
                  Exit codes: 0 success, 1 configuration or start-up error, 2 bad command line."
)]
pub struct Cli {
    /// What to do; `run` when left out.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Configuration file (TOML) [default: ./switchboard.toml if present, else the embedded demo config]
    #[arg(short, long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
}

/// The subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the PBX until Ctrl-C or SIGTERM (the default).
    Run,
    /// Check the configuration and exit: prints "config OK: ..." and exits 0, or the error and exits 1.
    Check,
    /// Write a new, editable office into DIR (default: the current directory): switchboard.toml with
    /// generated passwords, dialplans/, plugins/, sounds/. Never overwrites a file.
    Init {
        /// Where to write it (created if missing).
        #[arg(value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_goes_before_or_after_the_command() {
        let c = Cli::try_parse_from(["switchboard", "--config", "a.toml", "check"]).unwrap();
        assert_eq!(c.command, Some(Command::Check));
        assert_eq!(c.config, Some(PathBuf::from("a.toml")));
        let c = Cli::try_parse_from(["switchboard", "run", "-c", "b.toml"]).unwrap();
        assert_eq!(c.command, Some(Command::Run));
        assert_eq!(c.config, Some(PathBuf::from("b.toml")));
        let c = Cli::try_parse_from(["switchboard"]).unwrap();
        assert_eq!(c.command, None);
    }
}
