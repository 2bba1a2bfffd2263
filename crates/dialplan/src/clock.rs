//! `os.date` in the office's time zone (`dialplan.timezone`, an IANA name
//! such as `Europe/Paris`) instead of the process's `TZ`: the same
//! arguments as Lua's (`"*t"`, `"!"` for UTC, strftime specifiers), the
//! calendar and daylight-saving rules from the IANA database (jiff).

use std::sync::OnceLock;

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use mlua::{Lua, Table, Value};

/// The zone set at start-up; `None`: Lua's own `os.date` (the process's `TZ`).
static ZONE: OnceLock<TimeZone> = OnceLock::new();

/// Makes `os.date` of every Lua state created from now on use `zone`.
/// Set once, at start-up, before the runtime is built; `false` if a zone
/// was already set (it stays).
pub fn set_timezone(zone: TimeZone) -> bool {
    ZONE.set(zone).is_ok()
}

/// The zone of an IANA name (`"Europe/Paris"`, `"UTC"`), from the system's
/// database or the copy built in; `None` if there is no such zone.
pub fn timezone(name: &str) -> Option<TimeZone> {
    TimeZone::get(name).ok()
}

/// Replaces `os.date` in `os` when a zone is set.
pub(crate) fn install(lua: &Lua, os: &Table) -> mlua::Result<()> {
    let Some(zone) = ZONE.get() else {
        return Ok(());
    };
    let zone = zone.clone();
    let date = lua.create_function(
        move |lua, (format, time): (Option<mlua::LuaString>, Value)| {
            let format = match &format {
                Some(f) => f.to_str()?.to_owned(),
                None => "%c".to_owned(),
            };
            date(lua, &zone, &format, &time)
        },
    )?;
    os.raw_set("date", date)
}

/// `os.date(format, time)` in `zone`.
fn date(lua: &Lua, zone: &TimeZone, format: &str, time: &Value) -> mlua::Result<Value> {
    let (zone, format) = match format.strip_prefix('!') {
        Some(rest) => (TimeZone::UTC, rest),
        None => (zone.clone(), format),
    };
    let seconds = match time {
        Value::Nil => None,
        Value::Integer(s) => Some(*s),
        Value::Number(n) if n.is_finite() => Some(n.floor() as i64),
        other => {
            return Err(mlua::Error::runtime(format!(
                "os.date: bad argument #2 (number expected, got {})",
                other.type_name()
            )));
        }
    };
    let at = match seconds {
        None => Timestamp::now(),
        Some(s) => Timestamp::from_second(s)
            .map_err(|e| mlua::Error::runtime(format!("os.date: time {s} out of range: {e}")))?,
    };
    let zoned = at.to_zoned(zone);
    if format.starts_with("*t") {
        return Ok(Value::Table(fields(lua, &zoned)?));
    }
    // C's locale-dependent forms, as the "C" locale writes them.
    let format = format
        .replace("%c", "%a %b %e %H:%M:%S %Y")
        .replace("%x", "%m/%d/%y")
        .replace("%X", "%H:%M:%S");
    let text = jiff::fmt::strtime::format(format.as_bytes(), &zoned)
        .map_err(|e| mlua::Error::runtime(format!("os.date: {e}")))?;
    Ok(Value::String(lua.create_string(text)?))
}

/// The `"*t"` table: year, month, day, hour, min, sec, wday (1 = Sunday),
/// yday, isdst.
fn fields(lua: &Lua, zoned: &Zoned) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("year", zoned.year())?;
    t.raw_set("month", zoned.month())?;
    t.raw_set("day", zoned.day())?;
    t.raw_set("hour", zoned.hour())?;
    t.raw_set("min", zoned.minute())?;
    t.raw_set("sec", zoned.second())?;
    t.raw_set("wday", zoned.weekday().to_sunday_one_offset())?;
    t.raw_set("yday", zoned.day_of_year())?;
    let dst = zoned
        .time_zone()
        .to_offset_info(zoned.timestamp())
        .dst()
        .is_dst();
    t.raw_set("isdst", dst)?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(zone: &str, format: &str, time: i64) -> Value {
        let zone = timezone(zone).expect("zone");
        date(lua(), &zone, format, &Value::Integer(time)).expect("os.date")
    }

    /// One Lua per test thread, kept alive for the values it made.
    fn lua() -> &'static Lua {
        thread_local! {
            static LUA: &'static Lua = Box::leak(Box::new(Lua::new()));
        }
        LUA.with(|l| *l)
    }

    fn text(v: Value) -> String {
        match v {
            Value::String(s) => s.to_str().expect("UTF-8").to_owned(),
            other => panic!("not a string: {other:?}"),
        }
    }

    // 2026-12-24 17:30:00 UTC, a Thursday.
    const XMAS_EVE: i64 = 1_798_133_400;
    // 2026-07-01 12:00:00 UTC.
    const SUMMER: i64 = 1_782_907_200;

    #[test]
    fn formats_in_the_zone_with_its_daylight_saving() {
        assert_eq!(
            text(run("Europe/Paris", "%Y-%m-%d %H:%M", XMAS_EVE)),
            "2026-12-24 18:30"
        );
        assert_eq!(text(run("Europe/Paris", "%H:%M", SUMMER)), "14:00");
        assert_eq!(
            text(run("America/New_York", "%H:%M %A", XMAS_EVE)),
            "12:30 Thursday"
        );
        assert_eq!(text(run("Europe/Paris", "!%H:%M", XMAS_EVE)), "17:30");
        assert_eq!(text(run("UTC", "%c", XMAS_EVE)), "Thu Dec 24 17:30:00 2026");
    }

    #[test]
    fn star_t_is_the_table_lua_gives() {
        let Value::Table(t) = run("Europe/Paris", "*t", SUMMER) else {
            panic!("not a table");
        };
        assert_eq!(t.get::<i64>("hour").unwrap(), 14);
        assert_eq!(t.get::<i64>("wday").unwrap(), 4, "Wednesday, Sunday = 1");
        assert_eq!(t.get::<i64>("yday").unwrap(), 182);
        assert!(t.get::<bool>("isdst").unwrap());
    }

    #[test]
    fn unknown_zones_are_none() {
        assert!(timezone("Europe/Pariss").is_none());
        assert!(timezone("UTC").is_some());
    }
}
