//! The plugin hooks the runtime calls outside any call: `on_register(ext,
//! contact)` when a REGISTER adds a contact and `on_call_end(cdr)` when a
//! call's record is written. Each event is handed to the Lua threads and
//! never waited for, so SIP and media do not wait on Lua.

use std::sync::Arc;

use dialplan::{HookValue, Runtime};

/// Runs hook `name` of the plugins on the Lua threads, in the background,
/// when some plugin may export it (failures are logged by the runtime).
fn spawn(runtime: &Runtime, name: &'static str, args: impl FnOnce() -> Vec<HookValue>) {
    let Ok(state) = runtime.call_state() else {
        return;
    };
    if !state.has_plugin_hook(name) {
        return;
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let args = args();
    handle.spawn(async move {
        state.run_plugin_hooks(name, args).await;
    });
}

fn text(s: &str) -> HookValue {
    HookValue::Text(s.to_owned())
}

fn opt_text(s: Option<&str>) -> HookValue {
    s.map_or(HookValue::Nil, text)
}

fn int(n: u64) -> HookValue {
    HookValue::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// The registrar's observer: `on_register(ext, {uri, source, transport,
/// expires, user_agent})` for each contact a REGISTER adds.
pub fn register_observer(runtime: Arc<Runtime>) -> registrar::RegisterObserver {
    Arc::new(move |ext: &str, binding: &storage::Binding| {
        spawn(&runtime, "on_register", || {
            let now = pbx::unix_ms();
            vec![
                text(ext),
                HookValue::Table(vec![
                    ("uri".into(), text(&binding.contact)),
                    ("source".into(), text(&binding.source.to_string())),
                    ("transport".into(), text(&binding.transport)),
                    (
                        "expires".into(),
                        int(binding.remaining_ms(now).div_ceil(1000)),
                    ),
                    ("user_agent".into(), opt_text(binding.user_agent.as_deref())),
                ]),
            ]
        });
    })
}

/// The CDR writer's observer: `on_call_end(cdr)` with the record's fields
/// (those of `GET /api/v1/cdrs`).
pub fn cdr_observer(runtime: Arc<Runtime>) -> pbx::CdrObserver {
    Arc::new(move |cdr: &pbx::Cdr| {
        spawn(&runtime, "on_call_end", || {
            vec![HookValue::Table(vec![
                ("call_id".into(), text(&cdr.call_id)),
                ("from".into(), text(&cdr.from)),
                ("to".into(), text(&cdr.to)),
                ("caller".into(), opt_text(cdr.caller.as_deref())),
                ("callee".into(), opt_text(cdr.callee.as_deref())),
                ("context".into(), text(&cdr.context)),
                ("start_ms".into(), int(cdr.start_ms)),
                (
                    "answer_ms".into(),
                    cdr.answer_ms.map_or(HookValue::Nil, int),
                ),
                ("end_ms".into(), int(cdr.end_ms)),
                ("disposition".into(), text(cdr.disposition.as_str())),
                ("code".into(), int(u64::from(cdr.code))),
                ("duration_ms".into(), int(cdr.duration_ms)),
                ("billable_ms".into(), int(cdr.billable_ms)),
                ("hangup_cause".into(), text(&cdr.hangup_cause)),
            ])]
        });
    })
}
