//! `[dialplan]`: where the Lua contexts and plugins live, and each call's limits.
//!
//! Relative paths are taken from the config file's directory (the working
//! directory for the embedded default), so a config and its dialplans move
//! together.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Checker, ConfigError, ConfigSource, DurationText};

/// Default of `dialplan.dir`.
pub const DEFAULT_DIALPLAN_DIR: &str = "dialplans";
/// Default of `dialplan.plugins`.
pub const DEFAULT_PLUGINS_DIR: &str = "plugins";
/// Default of `dialplan.sounds`.
pub const DEFAULT_SOUNDS_DIR: &str = "sounds";
/// Default of `dialplan.recordings`.
pub const DEFAULT_RECORDINGS_DIR: &str = "recordings";
/// Default of `dialplan.voicemail`.
pub const DEFAULT_VOICEMAIL_DIR: &str = "var/voicemail";
/// Smallest `dialplan.memory_limit`: a Lua state with the API needs about 100 KiB.
const MIN_MEMORY_LIMIT: u64 = 1024 * 1024;
/// Largest `dialplan.memory_limit`.
const MAX_MEMORY_LIMIT: u64 = 1024 * 1024 * 1024;
/// Smallest `dialplan.instruction_budget` (the budget is checked every 1,000).
const MIN_INSTRUCTION_BUDGET: u64 = 10_000;
/// Largest `dialplan.instruction_budget` (tens of seconds of CPU).
const MAX_INSTRUCTION_BUDGET: u64 = 10_000_000_000;
/// Smallest `dialplan.route_time_limit`.
const MIN_ROUTE_TIME: Duration = Duration::from_millis(100);
/// Largest `dialplan.route_time_limit`.
const MAX_ROUTE_TIME: Duration = Duration::from_secs(60);
/// Smallest `dialplan.pattern_step_limit`.
const MIN_PATTERN_STEPS: u64 = 1_000;
/// Largest `dialplan.pattern_step_limit` (about a second of matching).
const MAX_PATTERN_STEPS: u64 = 100_000_000;

/// `[dialplan]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialplanConfig {
    /// `dir`: the contexts (`NAME.lua`), resolved against the config's directory.
    pub dir: PathBuf,
    /// `plugins`: the plugins, resolved the same way.
    pub plugins: PathBuf,
    /// `sounds`: the prompts `play` finds, resolved the same way.
    pub sounds: PathBuf,
    /// `recordings`: where `record` writes, resolved the same way.
    pub recordings: PathBuf,
    /// `voicemail`: the mailboxes' audio (`EXT/` each), resolved the same way.
    pub voicemail: PathBuf,
    /// `memory_limit`: most memory one of the runtime's Lua states (shared by
    /// the calls routed in it) may use, in bytes.
    pub memory_limit: usize,
    /// `instruction_budget`: most Lua instructions between two call actions.
    pub instruction_budget: u64,
    /// `route_time_limit`: most wall clock a route may run between two call
    /// actions.
    pub route_time_limit: Duration,
    /// `pattern_step_limit`: most steps of one `string.find`/`match`/
    /// `gmatch`/`gsub` call.
    pub pattern_step_limit: u64,
    /// `timezone`: the IANA zone `os.date` uses (`None`: the process's `TZ`).
    pub timezone: Option<String>,
}

impl DialplanConfig {
    /// The runtime's limits.
    pub fn limits(&self) -> dialplan::Limits {
        dialplan::Limits {
            memory_bytes: self.memory_limit,
            instructions: self.instruction_budget,
            route_time: self.route_time_limit,
            pattern_steps: self.pattern_step_limit,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDialplan {
    dir: Option<Spanned<String>>,
    plugins: Option<Spanned<String>>,
    sounds: Option<Spanned<String>>,
    recordings: Option<Spanned<String>>,
    voicemail: Option<Spanned<String>>,
    memory_limit: Option<Spanned<SizeText>>,
    instruction_budget: Option<Spanned<u64>>,
    route_time_limit: Option<Spanned<DurationText>>,
    pattern_step_limit: Option<Spanned<u64>>,
    timezone: Option<Spanned<String>>,
}

/// A size: a number of bytes, or a string such as `"16MiB"`.
#[derive(Debug)]
enum SizeText {
    Bytes(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for SizeText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = SizeText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a size in bytes, or a string such as "16MiB" or "512KiB""#)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<SizeText, E> {
                u64::try_from(v)
                    .map(SizeText::Bytes)
                    .map_err(|_| E::custom("a size must not be negative"))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<SizeText, E> {
                Ok(SizeText::Bytes(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SizeText, E> {
                Ok(SizeText::Text(v.to_owned()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `"16MiB"` → 16777216; `KiB`/`MiB`/`GiB` are powers of 1024, `KB`/`MB`/`GB`
/// of 1000, `B` or nothing is bytes.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let number: u64 = text[..digits].parse().ok()?;
    let unit = match text[digits..].trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(unit)
}

/// `path` taken from the directory of the config file.
pub(super) fn resolve(source: &ConfigSource, path: &str) -> PathBuf {
    let path = Path::new(path);
    match source {
        ConfigSource::File(file) if path.is_relative() => match file.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.join(path),
            _ => path.to_owned(),
        },
        _ => path.to_owned(),
    }
}

impl Checker<'_> {
    pub(super) fn dialplan(&self, raw: &RawDialplan) -> Result<DialplanConfig, ConfigError> {
        let defaults = dialplan::Limits::default();
        let dir = match &raw.dir {
            Some(v) => self.text_value("dialplan.dir", v)?,
            None => DEFAULT_DIALPLAN_DIR.to_owned(),
        };
        let plugins = match &raw.plugins {
            Some(v) => self.text_value("dialplan.plugins", v)?,
            None => DEFAULT_PLUGINS_DIR.to_owned(),
        };
        let sounds = match &raw.sounds {
            Some(v) => self.text_value("dialplan.sounds", v)?,
            None => DEFAULT_SOUNDS_DIR.to_owned(),
        };
        let recordings = match &raw.recordings {
            Some(v) => self.text_value("dialplan.recordings", v)?,
            None => DEFAULT_RECORDINGS_DIR.to_owned(),
        };
        let voicemail = match &raw.voicemail {
            Some(v) => self.text_value("dialplan.voicemail", v)?,
            None => DEFAULT_VOICEMAIL_DIR.to_owned(),
        };
        let memory_limit = match &raw.memory_limit {
            None => defaults.memory_bytes,
            Some(v) => {
                let bytes = match v.get_ref() {
                    SizeText::Bytes(n) => Some(*n),
                    SizeText::Text(t) => parse_size(t),
                };
                let range = MIN_MEMORY_LIMIT..=MAX_MEMORY_LIMIT;
                match bytes {
                    Some(n) if range.contains(&n) => usize::try_from(n).map_err(|_| {
                        self.error(
                            v.span(),
                            "dialplan.memory_limit: too large for this machine".to_owned(),
                        )
                    })?,
                    _ => {
                        return Err(self.error(
                            v.span(),
                            r#"dialplan.memory_limit: must be from 1MiB to 1GiB, written as bytes or e.g. "16MiB", "512KiB""#
                                .to_owned(),
                        ));
                    }
                }
            }
        };
        let instruction_budget = match &raw.instruction_budget {
            None => defaults.instructions,
            Some(v) => {
                let n = *v.get_ref();
                if !(MIN_INSTRUCTION_BUDGET..=MAX_INSTRUCTION_BUDGET).contains(&n) {
                    return Err(self.error(
                        v.span(),
                        format!(
                            "dialplan.instruction_budget: must be from {MIN_INSTRUCTION_BUDGET} to {MAX_INSTRUCTION_BUDGET} (the default is {})",
                            defaults.instructions
                        ),
                    ));
                }
                n
            }
        };
        let route_time_limit = match &raw.route_time_limit {
            None => defaults.route_time,
            Some(v) => {
                let d = self.duration("dialplan.route_time_limit", v, false)?;
                if !(MIN_ROUTE_TIME..=MAX_ROUTE_TIME).contains(&d) {
                    return Err(self.error(
                        v.span(),
                        format!(
                            "dialplan.route_time_limit: must be from {} to {} (the default is {})",
                            humantime::format_duration(MIN_ROUTE_TIME),
                            humantime::format_duration(MAX_ROUTE_TIME),
                            humantime::format_duration(defaults.route_time)
                        ),
                    ));
                }
                d
            }
        };
        let pattern_step_limit = match &raw.pattern_step_limit {
            None => defaults.pattern_steps,
            Some(v) => {
                let n = *v.get_ref();
                if !(MIN_PATTERN_STEPS..=MAX_PATTERN_STEPS).contains(&n) {
                    return Err(self.error(
                        v.span(),
                        format!(
                            "dialplan.pattern_step_limit: must be from {MIN_PATTERN_STEPS} to {MAX_PATTERN_STEPS} (the default is {})",
                            defaults.pattern_steps
                        ),
                    ));
                }
                n
            }
        };
        let timezone = match &raw.timezone {
            None => None,
            Some(v) => {
                let name = v.get_ref().trim();
                if dialplan::timezone(name).is_none() {
                    return Err(self.error(
                        v.span(),
                        format!(
                            "dialplan.timezone: {name:?} is not an IANA time zone; write a name such as \"Europe/Paris\", \"America/New_York\" or \"UTC\" (timedatectl list-timezones lists them)"
                        ),
                    ));
                }
                Some(name.to_owned())
            }
        };
        Ok(DialplanConfig {
            timezone,
            dir: resolve(self.source, &dir),
            plugins: resolve(self.source, &plugins),
            sounds: resolve(self.source, &sounds),
            recordings: resolve(self.source, &recordings),
            voicemail: resolve(self.source, &voicemail),
            memory_limit,
            instruction_budget,
            route_time_limit,
            pattern_step_limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigSource};

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(ConfigSource::File("etc/pbx/t.toml".into()), text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_next_to_the_config_file() {
        let c = parse("").unwrap();
        assert_eq!(c.dialplan.dir, std::path::Path::new("etc/pbx/dialplans"));
        assert_eq!(c.dialplan.plugins, std::path::Path::new("etc/pbx/plugins"));
        assert_eq!(c.dialplan.limits(), dialplan::Limits::default());
        let c = Config::parse(ConfigSource::Embedded, "").unwrap();
        assert_eq!(c.dialplan.dir, std::path::Path::new("dialplans"));
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            "[dialplan]\ndir = \"/srv/lua\"\nplugins = \"lib\"\nmemory_limit = \"2MiB\"\ninstruction_budget = 50000\nroute_time_limit = \"2s\"\npattern_step_limit = 20000\n",
        )
        .unwrap();
        assert_eq!(
            c.dialplan.route_time_limit,
            std::time::Duration::from_secs(2)
        );
        assert_eq!(c.dialplan.pattern_step_limit, 20_000);
        assert_eq!(c.dialplan.dir, std::path::Path::new("/srv/lua"));
        assert_eq!(c.dialplan.plugins, std::path::Path::new("etc/pbx/lib"));
        assert_eq!(c.dialplan.memory_limit, 2 * 1024 * 1024);
        assert_eq!(c.dialplan.instruction_budget, 50_000);
        let c = parse("[dialplan]\nmemory_limit = 4194304\n").unwrap();
        assert_eq!(c.dialplan.memory_limit, 4 * 1024 * 1024);
        let c = parse("[dialplan]\nmemory_limit = \"8MB\"\n").unwrap();
        assert_eq!(c.dialplan.memory_limit, 8_000_000);
    }

    #[test]
    fn bad_values_name_key_and_line() {
        for (text, needle) in [
            (
                "[dialplan]\nmemory_limit = \"lots\"\n",
                "dialplan.memory_limit",
            ),
            ("[dialplan]\nmemory_limit = 1000\n", "from 1MiB to 1GiB"),
            (
                "[dialplan]\ninstruction_budget = 5\n",
                "dialplan.instruction_budget",
            ),
            (
                "[dialplan]\nroute_time_limit = \"2h\"\n",
                "dialplan.route_time_limit: must be from 100ms to 1m",
            ),
            (
                "[dialplan]\nroute_time_limit = \"soon\"\n",
                "dialplan.route_time_limit",
            ),
            (
                "[dialplan]\npattern_step_limit = 10\n",
                "dialplan.pattern_step_limit: must be from 1000",
            ),
            (
                "[dialplan]\ndir = \"\"\n",
                "dialplan.dir: must not be empty",
            ),
            ("[dialplan]\nsound = \"s\"\n", "unknown field `sound`"),
            (
                "[dialplan]\nsounds = \"\"\n",
                "dialplan.sounds: must not be empty",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.contains("t.toml:2:"), "{text:?}: {e}");
        }
    }
}
