//! Logs: tracing to stderr, level from `[log] level` or `RUST_LOG`, colour only on a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::ParseError;

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// `RUST_LOG` is set to something that is not a filter.
    #[error(
        "RUST_LOG={value:?} is not a log filter ({source}); unset it or write e.g. RUST_LOG=debug"
    )]
    BadRustLog {
        /// The value of `RUST_LOG`.
        value: String,
        /// What the filter parser said.
        source: ParseError,
    },
    /// The filter from the config did not parse (the config check should have caught it).
    #[error("log.level {value:?} is not a log filter ({source}); write e.g. \"info\"")]
    BadLevel {
        /// The configured filter.
        value: String,
        /// What the filter parser said.
        source: ParseError,
    },
    /// Another logger was installed first.
    #[error("cannot start logging: {0}")]
    Init(String),
}

/// Parses a tracing filter such as `info` or `info,sip_net=debug`, strictly.
pub fn parse_filter(filter: &str) -> Result<EnvFilter, ParseError> {
    EnvFilter::builder().parse(filter)
}

/// Installs the global logger: `RUST_LOG` if set and not empty, else `level`.
pub fn init(level: &str) -> Result<(), LogError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.trim().is_empty() => {
            parse_filter(&value).map_err(|source| LogError::BadRustLog { value, source })?
        }
        _ => parse_filter(level).map_err(|source| LogError::BadLevel {
            value: level.to_owned(),
            source,
        })?,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .try_init()
        .map_err(|e| LogError::Init(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        assert!(parse_filter("info").is_ok());
        assert!(parse_filter("info,sip_net=debug").is_ok());
        assert!(parse_filter("sip_net=loud").is_err());
    }
}
