//! The Lua modules over the [`Host`] (DESIGN.md "Dialplan (Lua)", modules):
//! `kv.get/set/delete`, `registrar.contacts`, `pbx.extension`, `pbx.state`,
//! `pbx.set_lamp`, with their
//! arguments checked and host calls kept off the async runtime's threads.

use std::time::Duration;

use mlua::{Lua, Table, Value};

use crate::host::{Host, HostError, SharedHost};

/// Longest `kv` namespace, in bytes.
pub const MAX_KV_NAMESPACE: usize = 128;
/// Longest `kv` key, in bytes.
pub const MAX_KV_KEY: usize = 1024;
/// Largest `kv` value, in bytes (64 KiB).
pub const MAX_KV_VALUE: usize = 64 * 1024;
/// Longest `kv.set` time to live: ten years, in seconds.
const MAX_KV_TTL_SECS: f64 = 315_360_000.0;
/// Longest extension id `registrar.contacts` and `pbx.extension` take.
const MAX_EXTENSION_ID: usize = 64;
/// Longest lamp name `pbx.set_lamp` takes.
const MAX_LAMP_NAME: usize = 64;

fn arg_error(function: &str, what: &str, got: &Value) -> mlua::Error {
    mlua::Error::runtime(format!(
        "{function}: expected {what}, got {}",
        crate::route::lua_type(got)
    ))
}

/// A string argument of 1..=`max` bytes of UTF-8.
pub(crate) fn text_arg(
    function: &str,
    name: &str,
    value: &Value,
    max: usize,
) -> mlua::Result<String> {
    let Value::String(s) = value else {
        return Err(arg_error(function, &format!("{name} as a string"), value));
    };
    let bytes = s.as_bytes();
    if bytes.is_empty() || bytes.len() > max {
        return Err(mlua::Error::runtime(format!(
            "{function}: {name} must be 1 to {max} bytes long, got {}",
            bytes.len()
        )));
    }
    std::str::from_utf8(&bytes)
        .map(str::to_owned)
        .map_err(|_| mlua::Error::runtime(format!("{function}: {name} is not valid UTF-8")))
}

/// Runs `f` on the host: on tokio's blocking pool if the host blocks.
pub(crate) async fn call_host<T: Send + 'static>(
    host: SharedHost,
    function: &'static str,
    f: impl FnOnce(&dyn Host) -> Result<T, HostError> + Send + 'static,
) -> mlua::Result<T> {
    let blocks = host.0.blocks();
    call_host_where(host, function, blocks, f).await
}

/// Runs `f` on the host, on tokio's blocking pool if `blocks` (a thread
/// hop costs tens of microseconds: only for what may wait on IO).
pub(crate) async fn call_host_where<T: Send + 'static>(
    host: SharedHost,
    function: &'static str,
    blocks: bool,
    f: impl FnOnce(&dyn Host) -> Result<T, HostError> + Send + 'static,
) -> mlua::Result<T> {
    let result = if blocks {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            mlua::Error::runtime(format!("{function}: only available while a call runs"))
        })?;
        handle
            .spawn_blocking(move || f(host.0.as_ref()))
            .await
            .map_err(|e| mlua::Error::runtime(format!("{function}: host task failed: {e}")))?
    } else {
        f(host.0.as_ref())
    };
    result.map_err(|e| {
        let message = format!("{function}: {e}");
        if e.retry_later {
            mlua::Error::external(crate::host::RetryLater(message))
        } else {
            mlua::Error::runtime(message)
        }
    })
}

/// Installs `kv`, `registrar` and `pbx` as globals of `lua`.
pub(crate) fn install(lua: &Lua, host: &SharedHost) -> mlua::Result<()> {
    let globals = lua.globals();
    globals.raw_set("kv", kv_module(lua, host)?)?;

    let registrar = lua.create_table()?;
    let h = host.clone();
    registrar.raw_set(
        "contacts",
        // The async functions' bodies are boxed: mlua keeps a call's future
        // until Lua's collector frees it, and a finished boxed body is freed
        // at once.
        lua.create_async_function(move |lua, ext: Value| {
            let host = h.clone();
            let ext = text_arg("registrar.contacts", "ext", &ext, MAX_EXTENSION_ID);
            Box::pin(async move {
                let ext = ext?;
                let contacts =
                    call_host(host, "registrar.contacts", move |h| h.contacts(&ext)).await?;
                let list = lua.create_table_with_capacity(contacts.len(), 0)?;
                for c in contacts {
                    let t = lua.create_table_with_capacity(0, 4)?;
                    t.raw_set("uri", c.uri)?;
                    t.raw_set("source", c.source)?;
                    t.raw_set("transport", c.transport)?;
                    t.raw_set("expires", c.expires)?;
                    list.raw_push(t)?;
                }
                Ok(list)
            })
        })?,
    )?;
    globals.raw_set("registrar", registrar)?;

    let pbx = lua.create_table()?;
    let h = host.clone();
    pbx.raw_set(
        "extension",
        lua.create_async_function(move |lua, id: Value| {
            let host = h.clone();
            let id = text_arg("pbx.extension", "id", &id, MAX_EXTENSION_ID);
            Box::pin(async move {
                let id = id?;
                // Extension ids never start with '+': a number finds the
                // extension whose `did` it is.
                let found = call_host(host, "pbx.extension", move |h| {
                    if id.starts_with('+') {
                        h.extension_by_did(&id)
                    } else {
                        h.extension(&id)
                    }
                })
                .await?;
                let Some(ext) = found else {
                    return Ok(Value::Nil);
                };
                Ok(Value::Table(crate::tables::extension(&lua, ext)?))
            })
        })?,
    )?;
    let h = host.clone();
    pbx.raw_set(
        "state",
        lua.create_async_function(move |_, ext: Value| {
            let host = h.clone();
            let ext = text_arg("pbx.state", "ext", &ext, MAX_EXTENSION_ID);
            Box::pin(async move {
                let ext = ext?;
                let state = call_host(host, "pbx.state", move |h| h.phone_state(&ext)).await?;
                Ok(state.as_str())
            })
        })?,
    )?;
    let h = host.clone();
    pbx.raw_set(
        "set_lamp",
        lua.create_async_function(move |_, (name, state): (Value, Value)| {
            let host = h.clone();
            let args = lamp_args(&name, &state);
            Box::pin(async move {
                let (name, busy) = args?;
                // Lamps are in memory: no thread hop.
                call_host_where(host, "pbx.set_lamp", false, move |h| {
                    h.set_lamp(&name, busy)
                })
                .await
            })
        })?,
    )?;
    globals.raw_set("pbx", pbx)?;
    crate::mailbox::install(lua, host)?;
    crate::queues::install(lua, host)?;
    install_clock(lua, host)
}

/// `os.time()` and `os.date(format)` without a time read [`Host::now`]
/// when the host keeps its own clock (the spec runner's virtual clock);
/// with a time argument, or a host on the real clock, they are Lua's own.
pub(crate) fn install_clock(lua: &Lua, host: &SharedHost) -> mlua::Result<()> {
    let os: Table = lua.globals().get("os")?;
    let lua_time: mlua::Function = os.get("time")?;
    let lua_date: mlua::Function = os.get("date")?;
    let h = host.clone();
    os.raw_set(
        "time",
        lua.create_function(move |_, args: mlua::MultiValue| match h.0.now() {
            Some(now) if args.iter().all(Value::is_nil) => Ok(Value::Integer(now)),
            _ => lua_time.call::<Value>(args),
        })?,
    )?;
    let h = host.clone();
    os.raw_set(
        "date",
        lua.create_function(
            move |_, (format, time): (Value, Value)| match (h.0.now(), time) {
                (Some(now), Value::Nil) => lua_date.call::<Value>((format, now)),
                (_, time) => lua_date.call::<Value>((format, time)),
            },
        )?,
    )
}

fn kv_module(lua: &Lua, host: &SharedHost) -> mlua::Result<Table> {
    let kv = lua.create_table()?;

    let h = host.clone();
    kv.raw_set(
        "get",
        lua.create_async_function(move |lua, (ns, key): (Value, Value)| {
            let host = h.clone();
            let args = ns_key("kv.get", &ns, &key);
            Box::pin(async move {
                let (ns, key) = args?;
                match call_host(host, "kv.get", move |h| h.kv_get(&ns, &key)).await? {
                    Some(value) => Ok(Value::String(lua.create_string(value)?)),
                    None => Ok(Value::Nil),
                }
            })
        })?,
    )?;

    let h = host.clone();
    kv.raw_set(
        "set",
        lua.create_async_function(
            move |_, (ns, key, value, ttl): (Value, Value, Value, Value)| {
                let host = h.clone();
                let args = ns_key("kv.set", &ns, &key)
                    .and_then(|(ns, key)| Ok((ns, key, kv_value(&value)?, kv_ttl(&ttl)?)));
                Box::pin(async move {
                    let (ns, key, value, ttl) = args?;
                    call_host(host, "kv.set", move |h| h.kv_set(&ns, &key, &value, ttl)).await
                })
            },
        )?,
    )?;

    let h = host.clone();
    kv.raw_set(
        "delete",
        lua.create_async_function(move |_, (ns, key): (Value, Value)| {
            let host = h.clone();
            let args = ns_key("kv.delete", &ns, &key);
            Box::pin(async move {
                let (ns, key) = args?;
                call_host(host, "kv.delete", move |h| h.kv_delete(&ns, &key)).await
            })
        })?,
    )?;
    Ok(kv)
}

/// `pbx.set_lamp(name, "busy"|"idle")`'s arguments: a name a SIP URI's
/// user part carries as is (letters, digits, `* + . _ -`), and whether busy.
fn lamp_args(name: &Value, state: &Value) -> mlua::Result<(String, bool)> {
    let name = text_arg("pbx.set_lamp", "name", name, MAX_LAMP_NAME)?;
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "*+._-".contains(*c)))
    {
        return Err(mlua::Error::runtime(format!(
            "pbx.set_lamp: name may hold letters, digits and * + . _ - only, got {bad:?} in {name:?}"
        )));
    }
    let busy = match state {
        Value::String(s) if s.as_bytes().as_ref() == b"busy" => true,
        Value::String(s) if s.as_bytes().as_ref() == b"idle" => false,
        other => {
            return Err(arg_error(
                "pbx.set_lamp",
                "state \"busy\" or \"idle\"",
                other,
            ));
        }
    };
    Ok((name, busy))
}

fn ns_key(function: &str, ns: &Value, key: &Value) -> mlua::Result<(String, String)> {
    Ok((
        text_arg(function, "namespace", ns, MAX_KV_NAMESPACE)?,
        text_arg(function, "key", key, MAX_KV_KEY)?,
    ))
}

fn kv_value(value: &Value) -> mlua::Result<Vec<u8>> {
    let Value::String(s) = value else {
        return Err(arg_error("kv.set", "value as a string", value));
    };
    let bytes = s.as_bytes();
    if bytes.len() > MAX_KV_VALUE {
        return Err(mlua::Error::runtime(format!(
            "kv.set: value must be at most {MAX_KV_VALUE} bytes, got {}",
            bytes.len()
        )));
    }
    Ok(bytes.to_vec())
}

fn kv_ttl(ttl: &Value) -> mlua::Result<Option<Duration>> {
    let secs = match ttl {
        Value::Nil => return Ok(None),
        Value::Integer(i) => *i as f64,
        Value::Number(n) => *n,
        other => return Err(arg_error("kv.set", "ttl in seconds or nil", other)),
    };
    if !(secs.is_finite() && secs > 0.0 && secs <= MAX_KV_TTL_SECS) {
        return Err(mlua::Error::runtime(format!(
            "kv.set: ttl must be more than 0 and at most {MAX_KV_TTL_SECS} seconds, got {secs}"
        )));
    }
    Ok(Duration::try_from_secs_f64(secs).ok())
}
