//! Command line: `switchboard [run|check|test] [--config FILE]`, `--help`, `--version` (clap derive).

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
    /// Run the dialplan's spec files (*_spec.lua) against simulated calls; exit 1 if a case fails.
    Test {
        /// Directory of the spec files [default: tests/ in the config's dialplan.dir]
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Run only the cases whose "FILE NAME" contains PATTERN
        #[arg(long, value_name = "PATTERN")]
        filter: Option<String>,
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
        let c = Cli::try_parse_from(["switchboard", "test", "t", "--filter", "busy"]).unwrap();
        assert_eq!(
            c.command,
            Some(Command::Test {
                dir: Some(PathBuf::from("t")),
                filter: Some("busy".into())
            })
        );
        let c = Cli::try_parse_from(["switchboard"]).unwrap();
        assert_eq!(c.command, None);
    }
}
