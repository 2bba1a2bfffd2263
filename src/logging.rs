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

/// The levels `[log] level` accepts on their own, most to least severe.
pub const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// Parses a tracing filter such as `info` or `info,sip_net=debug`, strictly.
pub fn parse_filter(filter: &str) -> Result<EnvFilter, ParseError> {
    EnvFilter::builder().parse(filter)
}

/// Checks a `[log] level` value strictly: each comma-separated directive is
/// one of [`LEVELS`], or `TARGET=LEVEL` (a module path such as `sip_net`,
/// and a level or `off`). tracing's own parser takes any bare word as a
/// target name, so `"warning"` would silence every log line; here it is an
/// error. `Err` says what is wrong.
pub fn check_level(filter: &str) -> Result<(), String> {
    for directive in filter.split(',').map(str::trim) {
        if directive.is_empty() {
            return Err("has an empty directive (two commas, or a comma at an end)".to_owned());
        }
        match directive.split_once('=') {
            None if LEVELS.contains(&directive) => {}
            None => {
                let hint = match directive.to_ascii_lowercase().as_str() {
                    "warning" => " (did you mean \"warn\"?)",
                    "err" => " (did you mean \"error\"?)",
                    _ => "",
                };
                return Err(format!(
                    "{directive:?} is not a log level{hint}; the levels are {}",
                    LEVELS.join(", ")
                ));
            }
            Some((target, level)) => {
                let target_ok = !target.is_empty()
                    && target
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':' || b == b'-');
                if !target_ok {
                    return Err(format!(
                        "{target:?} in {directive:?} is not a module name such as sip_net or registrar"
                    ));
                }
                if !LEVELS.contains(&level) && level != "off" {
                    return Err(format!(
                        "{level:?} in {directive:?} is not a log level; the levels are {} (or off)",
                        LEVELS.join(", ")
                    ));
                }
            }
        }
    }
    parse_filter(filter).map(drop).map_err(|e| e.to_string())
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

    #[test]
    fn levels_are_checked_strictly() {
        for ok in [
            "error",
            "warn",
            "info",
            "debug",
            "trace",
            "info,sip_net=debug",
            "warn,registrar=off",
        ] {
            assert_eq!(check_level(ok), Ok(()), "{ok}");
        }
        for bad in [
            "warning",
            "Info",
            "loud",
            "",
            "info,",
            "sip_net=loud",
            "=debug",
            "info,warning",
            "a b=info",
        ] {
            assert!(check_level(bad).is_err(), "{bad:?} accepted");
        }
        assert!(
            check_level("warning")
                .unwrap_err()
                .contains("did you mean \"warn\"")
        );
    }
}
