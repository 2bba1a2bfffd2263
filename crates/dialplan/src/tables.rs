//! The small tables the dialplan hands to scripts on every call (`call.from`,
//! `call.request_uri`, `call.source`, a `dial` result, `pbx.extension`),
//! made by Lua table constructors compiled once per state: one protected
//! call per table, the keys constants of the constructor, where setting
//! each field from Rust costs a protected call and a key string each.

use mlua::{Function, Lua, Table};

use pbx::{CallDetails, DialOutcome, Party};

use crate::host::ExtensionInfo;

/// The constructors, kept as the state's application data.
struct Makers {
    uri: Function,
    source: Function,
    dial: Function,
    extension: Function,
}

/// The constructors, in the order [`install`] takes them.
const MAKERS: &str = r#"
return function(user, host, display, uri)
  return { user = user, host = host, display = display, uri = uri }
end, function(ip, port, transport)
  return { ip = ip, port = port, transport = transport }
end, function(status, code, answered_by)
  return { status = status, code = code, answered_by = answered_by }
end, function(id, name, context, did, outbound, international)
  return {
    id = id, name = name, context = context, did = did,
    outbound = outbound, international = international,
  }
end
"#;

/// Compiles the constructors into `lua` (a dialplan state, before its
/// globals are frozen; they are not reachable from scripts).
pub(crate) fn install(lua: &Lua) -> mlua::Result<()> {
    let (uri, source, dial, extension) =
        lua.load(MAKERS)
            .set_name("=tables")
            .call::<(Function, Function, Function, Function)>(())?;
    lua.set_app_data(Makers {
        uri,
        source,
        dial,
        extension,
    });
    Ok(())
}

/// `{user =, host =, display =, uri =}` (`call.from`, `call.to`,
/// `call.request_uri`).
pub(crate) fn uri(lua: &Lua, uri: &Party) -> mlua::Result<Table> {
    let args = (
        uri.user.as_str(),
        uri.host.as_str(),
        uri.display.as_deref(),
        uri.uri.as_str(),
    );
    if let Some(makers) = lua.app_data_ref::<Makers>() {
        return makers.uri.call(args);
    }
    let t = lua.create_table_with_capacity(0, 4)?;
    t.raw_set("user", args.0)?;
    t.raw_set("host", args.1)?;
    t.raw_set("display", args.2)?;
    t.raw_set("uri", args.3)?;
    Ok(t)
}

/// `call.source`: `{ip =, port =, transport =}`, where the INVITE came from.
pub(crate) fn source(lua: &Lua, call: &CallDetails) -> mlua::Result<Table> {
    let args = (
        call.source_ip.as_str(),
        call.source_port,
        call.transport.as_str(),
    );
    if let Some(makers) = lua.app_data_ref::<Makers>() {
        return makers.source.call(args);
    }
    let t = lua.create_table_with_capacity(0, 3)?;
    t.raw_set("ip", args.0)?;
    t.raw_set("port", args.1)?;
    t.raw_set("transport", args.2)?;
    Ok(t)
}

/// A `dial`'s result: `{status =, code =, answered_by =}`.
pub(crate) fn dial(lua: &Lua, result: &DialOutcome) -> mlua::Result<Table> {
    let args = (
        result.status.as_str(),
        result.code,
        result.answered_by.as_deref(),
    );
    if let Some(makers) = lua.app_data_ref::<Makers>() {
        return makers.dial.call(args);
    }
    let t = lua.create_table_with_capacity(0, 3)?;
    t.raw_set("status", args.0)?;
    t.raw_set("code", args.1)?;
    t.raw_set("answered_by", args.2)?;
    Ok(t)
}

/// `pbx.extension(id)`'s result.
pub(crate) fn extension(lua: &Lua, ext: ExtensionInfo) -> mlua::Result<Table> {
    let args = (
        ext.id,
        ext.name,
        ext.context,
        ext.did,
        ext.outbound,
        ext.international,
    );
    if let Some(makers) = lua.app_data_ref::<Makers>() {
        return makers.extension.call(args);
    }
    let t = lua.create_table_with_capacity(0, 6)?;
    t.raw_set("id", args.0)?;
    t.raw_set("name", args.1)?;
    t.raw_set("context", args.2)?;
    t.raw_set("did", args.3)?;
    t.raw_set("outbound", args.4)?;
    t.raw_set("international", args.5)?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pbx::DialStatus;

    /// What Lua sees of `t`, keys sorted: `k=v;` each, `v` by `tostring`.
    fn shown(lua: &Lua, t: &Table) -> String {
        lua.load(
            "local t = ...; local ks = {}
             for k in pairs(t) do ks[#ks + 1] = k end
             table.sort(ks)
             local out = ''
             for _, k in ipairs(ks) do out = out .. k .. '=' .. tostring(t[k]) .. ';' end
             return out",
        )
        .call(t)
        .expect("show")
    }

    fn party(display: Option<&str>) -> Party {
        Party {
            user: "1001".into(),
            host: "pbx.test".into(),
            display: display.map(str::to_owned),
            uri: "sip:1001@pbx.test".into(),
        }
    }

    #[test]
    fn the_constructors_make_what_setting_each_field_makes() {
        let with = Lua::new();
        install(&with).expect("install");
        let without = Lua::new();
        let outcome = DialOutcome {
            status: DialStatus::Answered,
            code: 200,
            answered_by: Some("1002".into()),
        };
        let ext = ExtensionInfo {
            id: "1001".into(),
            name: None,
            context: "default".into(),
            did: Some("+15550001".into()),
            outbound: true,
            international: false,
        };
        for lua in [&with, &without] {
            assert_eq!(
                shown(lua, &uri(lua, &party(Some("Alice"))).expect("uri")),
                "display=Alice;host=pbx.test;uri=sip:1001@pbx.test;user=1001;"
            );
            // A missing field is no key at all, as before.
            assert_eq!(
                shown(lua, &uri(lua, &party(None)).expect("uri")),
                "host=pbx.test;uri=sip:1001@pbx.test;user=1001;"
            );
            assert_eq!(
                shown(lua, &dial(lua, &outcome).expect("dial")),
                "answered_by=1002;code=200;status=answered;"
            );
            assert_eq!(
                shown(lua, &extension(lua, ext.clone()).expect("extension")),
                "context=default;did=+15550001;id=1001;international=false;outbound=true;"
            );
        }
        // Each call gets its own table: a script that changes one does not
        // change the next.
        let a = uri(&with, &party(None)).expect("uri");
        a.raw_set("user", "changed").expect("set");
        let b = uri(&with, &party(None)).expect("uri");
        assert_eq!(b.raw_get::<String>("user").expect("user"), "1001");
    }
}
