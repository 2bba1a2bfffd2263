//! The arguments of the media actions (`call:play`, `call:record`,
//! `call:read_digits`; DESIGN.md "Dialplan (Lua)"): sound and recording file
//! names that cannot leave their directory, and options tables checked key
//! by key, so a script's mistake is a Lua error before anything reaches the
//! call.

use std::time::Duration;

use mlua::{Lua, Table, Value};

use pbx::DialConfirm;

use crate::call::{DigitOptions, RecordOptions, RecordResult};
use crate::route::{lua_type, number, type_error};

/// The longest file name `play` and `record` take (with `.wav`), in bytes.
pub(crate) const MAX_FILE_NAME: usize = 200;

/// The longest `record` (`opts.max`), in seconds.
const MAX_RECORD_SECS: f64 = 3600.0;

/// The longest `record` `opts.silence`, in seconds.
const MAX_SILENCE_SECS: f64 = 60.0;

/// The shortest `record` `opts.silence`.
const MIN_SILENCE: Duration = Duration::from_millis(500);

/// The longest wait for one digit (`read_digits` `opts.timeout`), in seconds.
const MAX_DIGIT_TIMEOUT_SECS: f64 = 300.0;

/// The most digits one `read_digits` collects (`opts.max`).
const MAX_DIGITS: usize = 64;

/// The only sound file type.
const EXTENSION: &str = "wav";

/// A file name for `function` (`play`, `record`) under `dir` (`sounds`,
/// `recordings`), checked: only `A-Z a-z 0-9 _ . - /`, relative, no empty
/// component or one starting with `.` (so no `..`), `.wav` or no
/// extension (then `.wav` is added), at most [`MAX_FILE_NAME`] bytes.
pub(crate) fn file_arg(function: &str, dir: &str, value: &Value) -> mlua::Result<String> {
    let Value::String(s) = value else {
        return Err(type_error(function, "a file name string", value));
    };
    let name = s.to_string_lossy();
    let bad = |why: &str| mlua::Error::runtime(format!("{function}: file name {name:?} {why}"));
    if name.is_empty() {
        return Err(mlua::Error::runtime(format!(
            "{function}: file name is empty"
        )));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'))
    {
        return Err(bad(
            "may only contain letters, digits, '_', '.', '-' and '/'",
        ));
    }
    if name.starts_with('/') {
        return Err(bad(&format!("must be relative to {dir}/")));
    }
    let components: Vec<&str> = name.split('/').collect();
    if components.contains(&"..") {
        return Err(bad(&format!("must stay inside {dir}/ (no '..')")));
    }
    if components.contains(&"") {
        return Err(bad("has an empty path component"));
    }
    if components.iter().any(|c| c.starts_with('.')) {
        return Err(bad("has a path component starting with '.'"));
    }
    let last = components.last().copied().unwrap_or_default();
    let full = match last.rsplit_once('.') {
        None => format!("{name}.{EXTENSION}"),
        Some((_, ext)) if ext == EXTENSION => name.clone(),
        Some(_) => return Err(bad(&format!("must be a .{EXTENSION} file"))),
    };
    if full.len() > MAX_FILE_NAME {
        return Err(bad(&format!(
            "is too long (at most {MAX_FILE_NAME} bytes with .{EXTENSION})"
        )));
    }
    Ok(full)
}

/// The options table of `function`: nil (all defaults) or a table whose
/// keys are all in `known`, each handed to `set` with its value.
fn each_option(
    function: &str,
    known: &[&str],
    opts: &Value,
    mut set: impl FnMut(&str, Value) -> mlua::Result<()>,
) -> mlua::Result<()> {
    let table: &Table = match opts {
        Value::Nil => return Ok(()),
        Value::Table(t) => t,
        other => return Err(type_error(function, "an options table or nil", other)),
    };
    let list = known.join(", ");
    for pair in table.pairs::<Value, Value>() {
        let (key, value) = pair?;
        let name = match &key {
            Value::String(s) => s.to_string_lossy(),
            other => {
                return Err(mlua::Error::runtime(format!(
                    "{function}: options are named ({list}), got a {} key",
                    lua_type(other)
                )));
            }
        };
        if !known.contains(&name.as_str()) {
            return Err(mlua::Error::runtime(format!(
                "{function}: unknown option {name:?} (expected {list})"
            )));
        }
        set(&name, value)?;
    }
    Ok(())
}

/// `opts.KEY` in seconds: more than 0, at most `max`.
fn seconds(function: &str, key: &str, value: &Value, max: f64) -> mlua::Result<Duration> {
    let Some(secs) = number(value) else {
        return Err(type_error(
            function,
            &format!("opts.{key} in seconds"),
            value,
        ));
    };
    if !(secs.is_finite() && secs > 0.0 && secs <= max) {
        return Err(mlua::Error::runtime(format!(
            "{function}: opts.{key} must be more than 0 and at most {max} seconds, got {secs}"
        )));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| mlua::Error::runtime(e.to_string()))
}

/// `opts.terminator`: one DTMF key (`0-9`, `*`, `#`, `A-D`; `a-d` too), or
/// `""` for none.
fn terminator(function: &str, value: &Value) -> mlua::Result<Option<char>> {
    let Value::String(s) = value else {
        return Err(type_error(function, "opts.terminator as a string", value));
    };
    let text = s.to_string_lossy();
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (None, _) => Ok(None),
        (Some(c), None) if c.is_ascii_digit() || matches!(c, '*' | '#') => Ok(Some(c)),
        (Some(c), None) if matches!(c.to_ascii_uppercase(), 'A'..='D') => {
            Ok(Some(c.to_ascii_uppercase()))
        }
        _ => Err(mlua::Error::runtime(format!(
            "{function}: opts.terminator must be one DTMF key (0-9, *, #, A-D) or \"\", got {text:?}"
        ))),
    }
}

/// `call:record(file [, {max = s, terminator = "#"}])`.
pub(crate) fn record_args(file: &Value, opts: &Value) -> mlua::Result<(String, RecordOptions)> {
    let file = file_arg("record", "recordings", file)?;
    let mut options = RecordOptions::default();
    each_option(
        "record",
        &["max", "terminator", "silence"],
        opts,
        |key, value| {
            match key {
                "max" => options.max = seconds("record", key, &value, MAX_RECORD_SECS)?,
                "silence" => {
                    let quiet = seconds("record", key, &value, MAX_SILENCE_SECS)?;
                    if quiet < MIN_SILENCE {
                        return Err(mlua::Error::runtime(format!(
                            "record: opts.silence must be at least {} seconds, got {}",
                            MIN_SILENCE.as_secs_f64(),
                            quiet.as_secs_f64()
                        )));
                    }
                    options.silence = Some(quiet);
                }
                _ => options.terminator = terminator("record", &value)?,
            }
            Ok(())
        },
    )?;
    Ok((file, options))
}

/// `call:play(file [, {interrupt = true}])`: the file, and whether a key
/// stops the prompt (barge-in).
pub(crate) fn play_args(file: &Value, opts: &Value) -> mlua::Result<(String, bool)> {
    let file = file_arg("play", "sounds", file)?;
    let mut interrupt = false;
    each_option("play", &["interrupt"], opts, |_, value| {
        let Value::Boolean(b) = value else {
            return Err(type_error("play", "opts.interrupt as a boolean", &value));
        };
        interrupt = b;
        Ok(())
    })?;
    Ok((file, interrupt))
}

/// Longest wait for a dial's confirmation key after its prompt, seconds.
const MAX_CONFIRM_SECS: f64 = 60.0;

/// `call:dial`'s `opts.confirm = {prompt = FILE, key = "1", timeout = 10}`.
pub(crate) fn confirm_arg(value: &Value) -> mlua::Result<Option<DialConfirm<String>>> {
    if value.is_nil() {
        return Ok(None);
    }
    let Value::Table(t) = value else {
        return Err(type_error(
            "dial",
            "opts.confirm as {prompt = FILE, key = \"1\", timeout = s}",
            value,
        ));
    };
    let prompt: Value = t.get("prompt")?;
    if prompt.is_nil() {
        return Err(mlua::Error::runtime(
            "dial: opts.confirm needs a prompt (a file under sounds/)",
        ));
    }
    let mut confirm = DialConfirm {
        prompt: file_arg("dial", "sounds", &prompt)?,
        key: '1',
        timeout: Duration::from_secs(10),
    };
    each_option("dial", &["prompt", "key", "timeout"], value, |key, v| {
        match key {
            "key" => {
                confirm.key = terminator("dial", &v)?.ok_or_else(|| {
                    mlua::Error::runtime("dial: opts.confirm.key must be one DTMF key")
                })?
            }
            "timeout" => {
                let secs = seconds("dial", "confirm.timeout", &v, MAX_CONFIRM_SECS)?;
                if secs < Duration::from_secs(1) {
                    return Err(mlua::Error::runtime(
                        "dial: opts.confirm.timeout must be 1 to 60 seconds",
                    ));
                }
                confirm.timeout = secs;
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(Some(confirm))
}

/// `call:read_digits([{max = n, timeout = s, terminator = "#"}])`.
pub(crate) fn digit_args(opts: &Value) -> mlua::Result<DigitOptions> {
    let function = "read_digits";
    let mut options = DigitOptions::default();
    each_option(
        function,
        &["max", "timeout", "terminator"],
        opts,
        |key, value| {
            match key {
                "max" => options.max = digit_count(&value)?,
                "timeout" => {
                    options.timeout = seconds(function, key, &value, MAX_DIGIT_TIMEOUT_SECS)?
                }
                _ => options.terminator = terminator(function, &value)?,
            }
            Ok(())
        },
    )?;
    Ok(options)
}

/// `read_digits` `opts.max`: a whole number from 1 to [`MAX_DIGITS`].
fn digit_count(value: &Value) -> mlua::Result<usize> {
    let n = match value {
        Value::Integer(i) => *i as f64,
        Value::Number(n) => *n,
        other => return Err(type_error("read_digits", "opts.max as a number", other)),
    };
    if n.fract() != 0.0 || !(1.0..=MAX_DIGITS as f64).contains(&n) {
        return Err(mlua::Error::runtime(format!(
            "read_digits: opts.max must be a whole number from 1 to {MAX_DIGITS}, got {n}"
        )));
    }
    Ok(n as usize)
}

/// `{duration = seconds, reason = "max" | "terminator" | "hangup"}`.
pub(crate) fn record_table(lua: &Lua, result: &RecordResult) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("duration", result.duration.as_secs_f64())?;
    t.raw_set("reason", result.reason.as_str())?;
    Ok(t)
}
