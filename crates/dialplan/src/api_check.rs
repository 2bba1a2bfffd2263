//! Checks `dialplans/types/switchboard.lua` (the LuaLS annotations) against
//! the API the runtime really installs: the `call` object's methods and
//! fields as `CallObject` registers them with mlua, and the live module,
//! global and spec-runner tables of loaded Lua states; both ways.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use mlua::{
    AnyUserData, FromLua, FromLuaMulti, IntoLua, IntoLuaMulti, Lua, MaybeSend, Table,
    UserDataFields, UserDataMethods, UserDataRef, UserDataRefMut, Value,
};

use crate::host::{MemoryHost, SharedHost};
use crate::runtime::Limits;
use crate::spec::{SpecRunner, SpecSettings};

const ANNOTATIONS: &str = include_str!("../../../dialplans/types/switchboard.lua");
const README: &str = include_str!("../../../dialplans/README.md");

/// Names registered by a `UserData` impl, collected instead of installed.
#[derive(Default)]
struct Names {
    methods: BTreeSet<String>,
    fields: BTreeSet<String>,
}

impl<T> UserDataMethods<T> for Names {
    fn add_method<M, A, R>(&mut self, name: impl Into<String>, _: M)
    where
        M: Fn(&Lua, &T, A) -> mlua::Result<R> + MaybeSend + 'static,
        A: FromLuaMulti,
        R: IntoLuaMulti,
    {
        self.methods.insert(name.into());
    }
    fn add_method_mut<M, A, R>(&mut self, name: impl Into<String>, _: M)
    where
        M: FnMut(&Lua, &mut T, A) -> mlua::Result<R> + MaybeSend + 'static,
        A: FromLuaMulti,
        R: IntoLuaMulti,
    {
        self.methods.insert(name.into());
    }
    fn add_async_method<M, A, MR, R>(&mut self, name: impl Into<String>, _: M)
    where
        T: 'static,
        M: Fn(Lua, UserDataRef<T>, A) -> MR + MaybeSend + 'static,
        A: FromLuaMulti,
        MR: Future<Output = mlua::Result<R>> + MaybeSend + 'static,
        R: IntoLuaMulti,
    {
        self.methods.insert(name.into());
    }
    fn add_async_method_mut<M, A, MR, R>(&mut self, name: impl Into<String>, _: M)
    where
        T: 'static,
        M: Fn(Lua, UserDataRefMut<T>, A) -> MR + MaybeSend + 'static,
        A: FromLuaMulti,
        MR: Future<Output = mlua::Result<R>> + MaybeSend + 'static,
        R: IntoLuaMulti,
    {
        self.methods.insert(name.into());
    }
    fn add_function<F, A, R>(&mut self, name: impl Into<String>, _: F)
    where
        F: Fn(&Lua, A) -> mlua::Result<R> + MaybeSend + 'static,
        A: FromLuaMulti,
        R: IntoLuaMulti,
    {
        self.methods.insert(name.into());
    }
    fn add_function_mut<F, A, R>(&mut self, name: impl Into<String>, _: F)
    where
        F: FnMut(&Lua, A) -> mlua::Result<R> + MaybeSend + 'static,
        A: FromLuaMulti,
        R: IntoLuaMulti,
    {
        self.methods.insert(name.into());
    }
    fn add_async_function<F, A, FR, R>(&mut self, name: impl Into<String>, _: F)
    where
        F: Fn(Lua, A) -> FR + MaybeSend + 'static,
        A: FromLuaMulti,
        FR: Future<Output = mlua::Result<R>> + MaybeSend + 'static,
        R: IntoLuaMulti,
    {
        self.methods.insert(name.into());
    }
    fn add_meta_method<M, A, R>(&mut self, name: impl Into<String>, _: M)
    where
        M: Fn(&Lua, &T, A) -> mlua::Result<R> + MaybeSend + 'static,
        A: FromLuaMulti,
        R: IntoLuaMulti,
    {
        self.methods.insert(format!("meta:{}", name.into()));
    }
    fn add_meta_method_mut<M, A, R>(&mut self, name: impl Into<String>, _: M)
    where
        M: FnMut(&Lua, &mut T, A) -> mlua::Result<R> + MaybeSend + 'static,
        A: FromLuaMulti,
        R: IntoLuaMulti,
    {
        self.methods.insert(format!("meta:{}", name.into()));
    }
    fn add_async_meta_method<M, A, MR, R>(&mut self, name: impl Into<String>, _: M)
    where
        T: 'static,
        M: Fn(Lua, UserDataRef<T>, A) -> MR + MaybeSend + 'static,
        A: FromLuaMulti,
        MR: Future<Output = mlua::Result<R>> + MaybeSend + 'static,
        R: IntoLuaMulti,
    {
        self.methods.insert(format!("meta:{}", name.into()));
    }
    fn add_async_meta_method_mut<M, A, MR, R>(&mut self, name: impl Into<String>, _: M)
    where
        T: 'static,
        M: Fn(Lua, UserDataRefMut<T>, A) -> MR + MaybeSend + 'static,
        A: FromLuaMulti,
        MR: Future<Output = mlua::Result<R>> + MaybeSend + 'static,
        R: IntoLuaMulti,
    {
        self.methods.insert(format!("meta:{}", name.into()));
    }
    fn add_meta_function<F, A, R>(&mut self, name: impl Into<String>, _: F)
    where
        F: Fn(&Lua, A) -> mlua::Result<R> + MaybeSend + 'static,
        A: FromLuaMulti,
        R: IntoLuaMulti,
    {
        self.methods.insert(format!("meta:{}", name.into()));
    }
    fn add_meta_function_mut<F, A, R>(&mut self, name: impl Into<String>, _: F)
    where
        F: FnMut(&Lua, A) -> mlua::Result<R> + MaybeSend + 'static,
        A: FromLuaMulti,
        R: IntoLuaMulti,
    {
        self.methods.insert(format!("meta:{}", name.into()));
    }
    fn add_async_meta_function<F, A, FR, R>(&mut self, name: impl Into<String>, _: F)
    where
        F: Fn(Lua, A) -> FR + MaybeSend + 'static,
        A: FromLuaMulti,
        FR: Future<Output = mlua::Result<R>> + MaybeSend + 'static,
        R: IntoLuaMulti,
    {
        self.methods.insert(format!("meta:{}", name.into()));
    }
}

impl<T> UserDataFields<T> for Names {
    fn add_field<V>(&mut self, name: impl Into<String>, _: V)
    where
        V: IntoLua + 'static,
    {
        self.fields.insert(name.into());
    }
    fn add_field_method_get<M, R>(&mut self, name: impl Into<String>, _: M)
    where
        M: Fn(&Lua, &T) -> mlua::Result<R> + MaybeSend + 'static,
        R: IntoLua,
    {
        self.fields.insert(name.into());
    }
    fn add_field_method_set<M, A>(&mut self, name: impl Into<String>, _: M)
    where
        M: FnMut(&Lua, &mut T, A) -> mlua::Result<()> + MaybeSend + 'static,
        A: FromLua,
    {
        self.fields.insert(name.into());
    }
    fn add_field_function_get<F, R>(&mut self, name: impl Into<String>, _: F)
    where
        F: Fn(&Lua, AnyUserData) -> mlua::Result<R> + MaybeSend + 'static,
        R: IntoLua,
    {
        self.fields.insert(name.into());
    }
    fn add_field_function_set<F, A>(&mut self, name: impl Into<String>, _: F)
    where
        F: FnMut(&Lua, AnyUserData, A) -> mlua::Result<()> + MaybeSend + 'static,
        A: FromLua,
    {
        self.fields.insert(name.into());
    }
    fn add_meta_field<V>(&mut self, name: impl Into<String>, _: V)
    where
        V: IntoLua + 'static,
    {
        self.fields.insert(format!("meta:{}", name.into()));
    }
    fn add_meta_field_with<F, R>(&mut self, name: impl Into<String>, _: F)
    where
        F: FnOnce(&Lua) -> mlua::Result<R> + 'static,
        R: IntoLua,
    {
        self.fields.insert(format!("meta:{}", name.into()));
    }
}

/// What the annotation file declares.
#[derive(Default, Debug)]
struct Annotated {
    /// `---@field` lines per `---@class`.
    fields: BTreeMap<String, BTreeSet<String>>,
    /// `function Class:method(` per class.
    methods: BTreeMap<String, BTreeSet<String>>,
    /// `function path.name(` per module path (`kv`, `sim.kv`).
    functions: BTreeMap<String, BTreeSet<String>>,
    /// `function name(` and `NAME = ...` at the top level.
    globals: BTreeSet<String>,
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn annotated() -> Annotated {
    let mut a = Annotated::default();
    let mut class = None;
    for line in ANNOTATIONS.lines() {
        if let Some(name) = line.strip_prefix("---@class ") {
            class = name.split_whitespace().next().map(str::to_owned);
            continue;
        }
        if let (Some(field), Some(class)) = (line.strip_prefix("---@field "), &class) {
            let name = field.split_whitespace().next().unwrap_or_default();
            a.fields
                .entry(class.clone())
                .or_default()
                .insert(name.to_owned());
            continue;
        }
        if !line.starts_with("---") {
            class = None;
        }
        if let Some(rest) = line.strip_prefix("function ") {
            let head = rest.split('(').next().unwrap_or_default();
            if let Some((class, method)) = head.split_once(':') {
                a.methods
                    .entry(class.to_owned())
                    .or_default()
                    .insert(method.to_owned());
            } else if let Some((path, name)) = head.rsplit_once('.') {
                a.functions
                    .entry(path.to_owned())
                    .or_default()
                    .insert(name.to_owned());
            } else {
                a.globals.insert(head.to_owned());
            }
        } else if let Some((name, _)) = line.split_once(" = ")
            && is_name(name)
        {
            a.globals.insert(name.to_owned());
        }
    }
    a
}

/// The keys of `table` whose values are functions, through Lua's own
/// `pairs` (the sandbox's frozen tables are proxies with `__pairs`).
fn functions(lua: &Lua, table: &Table) -> BTreeSet<String> {
    let keys: Vec<String> = lua
        .load(
            "local t, out = ..., {} for k, v in pairs(t) do \
             if type(v) == 'function' and not tostring(k):match('^__') then out[#out + 1] = k end \
             end return out",
        )
        .call(table.clone())
        .expect("list functions");
    keys.into_iter().collect()
}

fn at(lua: &Lua, path: &str) -> Table {
    let mut table = lua.globals();
    for part in path.split('.') {
        table = table
            .get::<Table>(part)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    table
}

fn context_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("dialplans")).expect("mkdir");
    std::fs::write(
        dir.path().join("dialplans/default.lua"),
        "function route(call) end\n",
    )
    .expect("write");
    dir
}

#[test]
fn every_call_method_and_field_is_annotated_and_vice_versa() {
    let mut names = Names::default();
    <crate::route::CallObject<crate::sim::SimCall> as mlua::UserData>::add_methods(&mut names);
    <crate::route::CallObject<crate::sim::SimCall> as mlua::UserData>::add_fields(&mut names);
    let hints: BTreeSet<String> = crate::route::CALL_METHODS
        .iter()
        .map(|m| (*m).to_owned())
        .collect();
    assert_eq!(
        hints, names.methods,
        "route.rs: CALL_METHODS vs add_methods"
    );
    let a = annotated();
    assert_eq!(
        a.methods.get("Call").cloned().unwrap_or_default(),
        names.methods,
        "`function Call:NAME(` in switchboard.lua vs the methods route.rs installs"
    );
    assert_eq!(
        a.fields.get("Call").cloned().unwrap_or_default(),
        names.fields,
        "`---@field` of `---@class Call` vs the fields route.rs installs"
    );
}

/// A loaded context's state, as calls run in it.
fn dialplan_state() -> crate::runtime::SharedState {
    let dir = context_dir();
    let generation = crate::generation::compile(
        1,
        &dir.path().join("dialplans"),
        &dir.path().join("plugins"),
    )
    .map(Arc::new)
    .expect("compile");
    crate::runtime::load_state(
        &generation,
        "default",
        &Limits::default(),
        &SharedHost(Arc::new(MemoryHost::new())),
    )
    .expect("load")
    .expect("route")
}

/// A spec file's state and the harness `spec.lua` returned.
fn spec_state() -> (Lua, Table) {
    let dir = context_dir();
    let runner = SpecRunner::new(SpecSettings {
        dialplans: dir.path().join("dialplans"),
        plugins: dir.path().join("plugins"),
        sounds: None,
        limits: Limits::default(),
        extensions: Vec::new(),
    })
    .expect("runner");
    runner.spec_state().expect("spec state")
}

#[test]
fn every_module_function_and_global_is_annotated_and_vice_versa() {
    let state = dialplan_state();
    let lua = &state.lua;
    let a = annotated();
    for module in ["log", "kv", "registrar", "pbx", "mailbox", "queues"] {
        assert_eq!(
            a.functions.get(module).cloned().unwrap_or_default(),
            functions(lua, &at(lua, module)),
            "`function {module}.NAME(` in switchboard.lua vs the live {module} table"
        );
    }
    // Every global the sandbox adds to Lua's own is annotated, and the
    // dialplan's annotated globals exist.
    const LUA: &[&str] = &[
        "_G",
        "_VERSION",
        "assert",
        "collectgarbage",
        "coroutine",
        "error",
        "getmetatable",
        "ipairs",
        "load",
        "math",
        "next",
        "os",
        "pairs",
        "pcall",
        "print",
        "rawequal",
        "rawget",
        "rawlen",
        "rawset",
        "select",
        "setmetatable",
        "string",
        "table",
        "tonumber",
        "tostring",
        "type",
        "utf8",
        "warn",
        "xpcall",
    ];
    let all: Vec<String> = lua
        .load("local out = {} for k in pairs(_G) do out[#out + 1] = tostring(k) end return out")
        .call(())
        .expect("list globals");
    let live: BTreeSet<String> = all
        .into_iter()
        .filter(|k| !LUA.contains(&k.as_str()) && k != "route" && k != "require")
        .collect();
    let spec_only = ["sim", "it", "before_each", "expect"];
    let dialplan_globals: BTreeSet<String> = a
        .globals
        .iter()
        .filter(|g| !spec_only.contains(&g.as_str()))
        .cloned()
        .collect();
    assert_eq!(
        dialplan_globals, live,
        "globals in switchboard.lua vs a loaded context's"
    );
}

#[test]
fn every_spec_runner_function_is_annotated_and_vice_versa() {
    let (lua, harness) = spec_state();
    let a = annotated();
    for module in ["sim", "sim.kv"] {
        assert_eq!(
            a.functions.get(module).cloned().unwrap_or_default(),
            functions(&lua, &at(&lua, module)),
            "`function {module}.NAME(` in switchboard.lua vs the live {module} table"
        );
    }
    let classes: Table = harness.get("classes").expect("classes");
    for pair in classes.pairs::<String, Table>() {
        let (class, methods) = pair.expect("class");
        assert_eq!(
            a.methods.get(&class).cloned().unwrap_or_default(),
            functions(&lua, &methods),
            "`function {class}:NAME(` in switchboard.lua vs spec.lua's {class}"
        );
    }
    for global in ["it", "before_each", "expect"] {
        assert!(a.globals.contains(global), "{global} is not annotated");
        let value: Value = lua.globals().get(global).expect("global");
        assert!(value.is_function(), "{global} is not installed");
    }
}

/// `prefix.name(` / `prefix:name(` calls written in `text`, as
/// (prefix, name); a bare `name(` has the prefix "".
fn calls_in(text: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices('(') {
        let head: String = text[..i]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':'))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        match head.rfind(['.', ':']) {
            Some(at) => out.insert((head[..at].to_owned(), head[at + 1..].to_owned())),
            None if !head.is_empty() => out.insert((String::new(), head)),
            None => false,
        };
    }
    out
}

#[test]
fn the_readme_reference_documents_every_function_and_no_other() {
    let reference = README
        .split("\n## Reference\n")
        .nth(1)
        .expect("dialplans/README.md has a ## Reference section");
    let mut installed: BTreeSet<(String, String)> = BTreeSet::new();
    let mut names = Names::default();
    <crate::route::CallObject<crate::sim::SimCall> as mlua::UserData>::add_methods(&mut names);
    for m in names.methods {
        installed.insert(("call".into(), m));
    }
    let state = dialplan_state();
    for module in ["log", "kv", "registrar", "pbx", "mailbox", "queues"] {
        for f in functions(&state.lua, &at(&state.lua, module)) {
            installed.insert((module.into(), f));
        }
    }
    let (lua, harness) = spec_state();
    for module in ["sim", "sim.kv"] {
        for f in functions(&lua, &at(&lua, module)) {
            installed.insert((module.into(), f));
        }
    }
    let classes: Table = harness.get("classes").expect("classes");
    for (class, prefix) in [
        ("SimCall", "call"),
        ("Phone", "phone"),
        ("Clock", "sim.clock"),
        ("Expectation", ""),
    ] {
        for m in functions(&lua, &classes.get::<Table>(class).expect("class")) {
            installed.insert((prefix.into(), m));
        }
    }
    for global in ["it", "before_each", "expect"] {
        installed.insert((String::new(), global.into()));
    }
    // Every installed function is in a heading (expectations: in the text).
    let headings: String = reference
        .lines()
        .filter(|l| l.starts_with("#### "))
        .collect::<Vec<_>>()
        .join("\n");
    let documented = calls_in(&headings);
    let written = calls_in(reference);
    for (prefix, name) in &installed {
        let found =
            if prefix.is_empty() && !["it", "before_each", "expect"].contains(&name.as_str()) {
                written.contains(&(String::new(), name.clone()))
                    || reference.contains(&format!(":{name}("))
            } else {
                documented.contains(&(prefix.clone(), name.clone()))
            };
        assert!(
            found,
            "{prefix}.{name} is not in dialplans/README.md's reference"
        );
    }
    // Every heading names an installed function.
    for (prefix, name) in documented {
        assert!(
            installed.contains(&(prefix.clone(), name.clone())),
            "dialplans/README.md's reference documents {prefix}.{name}, which the runtime does not install"
        );
    }
}
