//! Command line (clap derive): `switchboard [run|check|test|init] [--config FILE]`,
//! the operator subcommands that talk to a running server's admin API
//! (`status`, `registrations`, `calls`, `cdrs`, `reload`, `hangup`,
//! `unregister`, `bans`, `unban`, `trace`), and `completions` / `manpage`
//! generated from these same definitions.

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
                  The operator commands (status ... trace) ask the running server over its \
                  admin API: its address is admin.listen, its token admin.token or the \
                  admin.token file beside the storage.\n\
                  Exit codes: 0 success, 1 configuration or start-up error (or, for operator \
                  commands, no server or an error answer), 2 bad command line."
)]
pub struct Cli {
    /// What to do; `run` when left out.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Configuration file (TOML) [default: ./switchboard.toml if present, else the embedded demo config]
    #[arg(short, long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// Operator commands: print the admin API's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the PBX until Ctrl-C or SIGTERM (the default).
    Run,
    /// Check the configuration and exit: prints "config OK: ..." and exits 0, or the error and exits 1.
    Check,
    /// Show the running server: version, uptime, listeners, dialplan generation, counts.
    Status,
    /// List live registrations (of one extension, if given).
    Registrations {
        /// Only this extension (or AOR).
        #[arg(value_name = "EXT")]
        ext: Option<String>,
    },
    /// List the calls in progress.
    Calls,
    /// List call detail records, newest first.
    Cdrs {
        /// How many records at most [default: 100].
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Only calls started since TIME: RFC 3339 ("2026-12-24T18:30:00Z"),
        /// Unix milliseconds, or a duration ago ("10m", "2h", "1day").
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Print CSV (with a header line) instead of a table.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
    },
    /// Reload the dialplan: prints the new generation, or each error as `file:line: message` and exits 1.
    Reload,
    /// Hang up a call in progress (the SIP Call-ID of any of its legs, or its id in `calls`).
    Hangup {
        /// The call.
        #[arg(value_name = "CALL-ID")]
        call_id: String,
    },
    /// Remove every registration of an extension (its phones re-register at their next refresh).
    Unregister {
        /// The extension (or AOR).
        #[arg(value_name = "EXT")]
        ext: String,
    },
    /// List banned sources and locked users.
    Bans,
    /// Lift the ban of a source address (or the lock of a user, given a user name).
    Unban {
        /// The banned address (an IPv6 address lifts its /64), or a locked user.
        #[arg(value_name = "IP")]
        ip: String,
    },
    /// Show the SIP ladder and dialplan steps of a live or recent call.
    Trace {
        /// The SIP Call-ID of any of its legs, or its id in `calls`.
        #[arg(value_name = "CALL-ID")]
        call_id: String,
        /// Print each SIP message in full (credentials still removed).
        #[arg(long)]
        full: bool,
    },
    /// Print a shell completion script (e.g. `switchboard completions bash > /etc/bash_completion.d/switchboard`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the man page (roff) on stdout (e.g. `switchboard manpage > switchboard.1`).
    Manpage,
    /// Run the dialplan's spec files (*_spec.lua) against simulated calls; exit 1 if a case fails.
    Test {
        /// Directory of the spec files [default: tests/ in the config's dialplan.dir]
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Run only the cases whose "FILE NAME" contains PATTERN
        #[arg(long, value_name = "PATTERN")]
        filter: Option<String>,
    },
    /// Write a new, editable office into DIR (default: the current directory): switchboard.toml with
    /// generated passwords, dialplans/, plugins/, sounds/. Never overwrites a file.
    Init {
        /// Where to write it (created if missing).
        #[arg(value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
}

/// Shells `completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// GNU bash.
    Bash,
    /// Z shell.
    Zsh,
    /// fish.
    Fish,
}

/// Writes the completion script for `shell` to stdout.
pub fn completions(shell: Shell) {
    use clap::CommandFactory;
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "switchboard",
        &mut std::io::stdout(),
    );
}

/// Writes the man page (roff) to stdout.
pub fn manpage() -> std::io::Result<()> {
    use clap::CommandFactory;
    clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())
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

    #[test]
    fn operator_commands_parse() {
        let c = Cli::try_parse_from(["switchboard", "cdrs", "--limit", "5", "--csv"]).unwrap();
        assert_eq!(
            c.command,
            Some(Command::Cdrs {
                limit: Some(5),
                since: None,
                csv: true
            })
        );
        let c = Cli::try_parse_from(["switchboard", "trace", "abc@h", "--full", "--json"]).unwrap();
        assert!(c.json);
        assert_eq!(
            c.command,
            Some(Command::Trace {
                call_id: "abc@h".into(),
                full: true
            })
        );
        assert!(Cli::try_parse_from(["switchboard", "cdrs", "--csv", "--json"]).is_err());
        assert!(Cli::try_parse_from(["switchboard", "hangup"]).is_err());
    }
}
