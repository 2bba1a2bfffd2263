//! Plugin hooks (`CallState::run_plugin_hooks`): each plugin that exports
//! the hook is called once, whichever contexts require it; plugins no
//! context loads are not; a failing or endless hook is returned (and
//! logged) with its plugin's `file:line`, and the others still run.

mod common;

use std::sync::Arc;

use common::Dir;
use dialplan::{FailureKind, HookValue, Limits, MemoryHost, Runtime};

fn text(host: &MemoryHost, ns: &str, key: &str) -> Option<String> {
    host.get(ns, key)
        .map(|v| String::from_utf8(v).expect("UTF-8 value"))
}

const COUNTER: &str = r#"local M = {}
function M.on_call_end(cdr)
  local n = tonumber(kv.get("hooks", "count") or "0") + 1
  kv.set("hooks", "count", tostring(n))
  kv.set("hooks", "last", cdr.call_id .. " " .. cdr.disposition .. " " .. tostring(cdr.caller))
end
function M.on_register(ext, contact)
  kv.set("hooks", "registered", ext .. " " .. contact.uri)
end
return M
"#;

fn cdr(id: &str) -> Vec<HookValue> {
    vec![HookValue::Table(vec![
        ("call_id".into(), HookValue::Text(id.into())),
        ("disposition".into(), HookValue::Text("answered".into())),
        ("caller".into(), HookValue::Nil),
    ])]
}

#[tokio::test]
async fn a_plugin_required_by_two_contexts_is_called_once_per_event() {
    let dir = Dir::new();
    dir.write("plugins/counter.lua", COUNTER);
    dir.write("plugins/unused.lua", "local M = {}\nfunction M.on_call_end() kv.set(\"hooks\", \"unused\", \"ran\") end\nreturn M\n");
    let route = "local c = require(\"counter\")\nfunction route(call) end\n";
    dir.write("dialplans/default.lua", route);
    dir.write("dialplans/sales.lua", route);
    let host = Arc::new(MemoryHost::new());
    let runtime = dir.runtime().with_host(host.clone());
    let state = runtime.call_state().expect("state");
    assert!(state.has_plugin_hook("on_call_end"));
    let failures = state.run_plugin_hooks("on_call_end", cdr("abc")).await;
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(text(&host, "hooks", "count").as_deref(), Some("1"));
    assert_eq!(
        text(&host, "hooks", "last").as_deref(),
        Some("abc answered nil")
    );
    assert_eq!(
        text(&host, "hooks", "unused"),
        None,
        "not required: not loaded"
    );

    let state = runtime.call_state().expect("state");
    let args = vec![
        HookValue::Text("1001".into()),
        HookValue::Table(vec![("uri".into(), HookValue::Text("sip:1001@x".into()))]),
    ];
    assert!(state.run_plugin_hooks("on_register", args).await.is_empty());
    assert_eq!(
        text(&host, "hooks", "registered").as_deref(),
        Some("1001 sip:1001@x")
    );
}

#[tokio::test]
async fn no_plugin_naming_a_hook_means_nothing_to_run() {
    let dir = Dir::new();
    dir.write("plugins/quiet.lua", "return {}\n");
    dir.write(
        "dialplans/default.lua",
        "require(\"quiet\")\nfunction route(call) end\n",
    );
    let runtime = dir.runtime();
    let state = runtime.call_state().expect("state");
    assert!(!state.has_plugin_hook("on_call_end"));
    assert!(
        state
            .run_plugin_hooks("on_call_end", cdr("x"))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn failing_and_endless_hooks_are_reported_with_their_line_and_the_others_run() {
    let dir = Dir::new();
    dir.write("plugins/counter.lua", COUNTER);
    dir.write(
        "plugins/broken.lua",
        "local M = {}\nfunction M.on_call_end(cdr)\n  error(\"no luck with \" .. cdr.call_id)\nend\nreturn M\n",
    );
    dir.write(
        "plugins/spin.lua",
        "local M = {}\nfunction M.on_call_end()\n  while true do end\nend\nreturn M\n",
    );
    dir.write(
        "dialplans/default.lua",
        "require(\"broken\")\nrequire(\"counter\")\nrequire(\"spin\")\nfunction route(call) end\n",
    );
    let host = Arc::new(MemoryHost::new());
    let limits = Limits {
        instructions: 100_000,
        ..Limits::default()
    };
    let runtime: Runtime = dir.runtime_with(limits).with_host(host.clone());
    let state = runtime.call_state().expect("state");
    let mut failures = state.run_plugin_hooks("on_call_end", cdr("c1")).await;
    failures.sort_by(|a, b| a.file.cmp(&b.file));
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert_eq!(failures[0].file, "plugins/broken.lua");
    assert_eq!(failures[0].line, Some(3));
    assert!(
        failures[0].message.contains("no luck with c1"),
        "{failures:?}"
    );
    assert_eq!(failures[1].file, "plugins/spin.lua");
    assert_eq!(failures[1].kind, FailureKind::InstructionBudget);
    assert_eq!(text(&host, "hooks", "count").as_deref(), Some("1"));
}
