//! `switchboard`: the PBX binary — command line, configuration, logging, admin API and the SIP endpoint.
//!
//! Read in this order: [`cli`] (what a user types), [`config`] (the TOML
//! file and its checks), [`server`] (start-up, serving, shutdown), [`store`]
//! (storage and the demo passwords), [`admin`] (the HTTP API) and
//! [`admin_guard`] (who may use it). Every error a user can cause becomes [`error::Error`],
//! printed as one line after `switchboard: ` with exit code 1.

mod admin;
mod admin_guard;
mod cli;
mod config;
mod dialplan;
mod error;
mod extensions;
mod init;
mod logging;
mod ops;
mod plugin_hooks;
mod preflight;
mod queues;
mod server;
mod shutdown;
mod spectest;
mod store;
mod subscriptions;
mod trace;
mod trunks;
mod voicemail;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::config::{Config, ConfigSource};
use crate::error::Error;

/// mimalloc instead of glibc's malloc (see Cargo.toml for why).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let started = Instant::now();
    let cli = Cli::parse();
    let source = ConfigSource::resolve(cli.config.as_deref());
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Check => check(&source),
        Command::Run => run(&source, started),
        Command::Completions { shell } => {
            cli::completions(shell);
            Ok(())
        }
        Command::Manpage => cli::manpage().map_err(Error::Output),
        Command::Test { dir, filter } => match spectest::test(&source, dir, filter.as_deref()) {
            Ok(true) => Ok(()),
            // The report on stdout says which case failed and why.
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Command::Init { dir } => init::init(&dir)
            .map(|out| println!("{out}"))
            .map_err(Error::from),
        command => operate(&command, &source, cli.json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `switchboard check`: load and check the configuration, compile every
/// dialplan and plugin, print a summary; each Lua error is one line.
fn check(source: &ConfigSource) -> Result<(), Error> {
    let config = Config::load(source)?;
    let findings = preflight::inspect(&config);
    for warning in config.warnings.iter().chain(&findings.warnings) {
        eprintln!("switchboard: warning: {warning}");
    }
    let mut errors = findings.errors;
    let dialplan = dialplan::check(&config).map_err(|e| errors.extend(e));
    match (dialplan, errors.pop()) {
        (Ok(dialplan), None) => {
            println!("config OK: {}; {dialplan}", config.summary());
            Ok(())
        }
        (_, last) => {
            // main prints the last one, like every other error.
            for e in &errors {
                eprintln!("switchboard: {e}");
            }
            Err(Error::Check(
                last.unwrap_or_else(|| "dialplan check failed".to_owned()),
            ))
        }
    }
}

/// An operator subcommand: the config (its warnings unprinted) names
/// the server; the answer comes from its admin API.
fn operate(command: &Command, source: &ConfigSource, json: bool) -> Result<(), Error> {
    let config = Config::load(source)?;
    ops::run(command, &config, json)?;
    Ok(())
}

/// The server's tokio runtime: one worker thread per CPU we may run on.
/// With a single CPU (a one-core VM, or pinned with `taskset`) that is
/// the current-thread scheduler: the same single worker without the
/// work-stealing machinery (atomics, wake-ups of a parked worker) that
/// one worker never needs. Blocking work still goes to the blocking pool.
fn server_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
}

/// `switchboard run`: load the configuration, start logging and the runtime, serve.
fn run(source: &ConfigSource, started: Instant) -> Result<(), Error> {
    let config = Config::load(source)?;
    logging::init(&config.log.level)?;
    let findings = preflight::inspect(&config);
    for warning in config.warnings.iter().chain(&findings.warnings) {
        tracing::warn!("{warning}");
    }
    for error in &findings.errors {
        tracing::error!("{error} (switchboard check refuses this config)");
    }
    let runtime = server_runtime().map_err(Error::Runtime)?;
    let result = runtime.block_on(server::serve(config, started));
    // Tasks still running (transaction timers, connections past
    // shutdown_grace) are cancelled and dropped here, which closes the
    // storage file cleanly; a disk write in progress gets a moment to finish.
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}
