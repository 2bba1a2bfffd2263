//! The library functions whose work happens outside the VM, where the
//! instruction hook never fires (Lua 5.4 reference manual §6.4, §6.6),
//! replaced or wrapped so that work is bounded and charged to the call:
//!
//! - `string.find`, `string.match`, `string.gmatch`, `string.gsub` use the
//!   step-counted matcher of `pattern.rs` (same results as stock Lua); one
//!   call stops with an error after `Limits::pattern_steps` steps, and its
//!   steps count against the call's instruction budget.
//! - `string.rep` refuses results over [`MAX_REP_BYTES`].
//! - `table.concat` and `table.sort` (stock C code) are charged, before
//!   they run, by the number of elements they touch (`n log n` for a sort).
//!
//! Every one checks the call's budget and wall-clock limit first.

use std::sync::{Arc, Mutex, PoisonError};

use mlua::{Function, Lua, LuaString, MultiValue, Table, Value};

use crate::pattern::{Captured, Matcher, PatternError, is_plain};
use crate::sandbox::Slot;

/// The longest string `string.rep` makes (1 MiB).
pub const MAX_REP_BYTES: usize = 1024 * 1024;

/// Installs the bounded functions into the (still writable) `string` and
/// `table` libraries of `lua`.
pub(crate) fn install(lua: &Lua, slot: &Arc<Slot>) -> mlua::Result<()> {
    let string: Table = lua.globals().get("string")?;
    let s = Arc::clone(slot);
    string.raw_set(
        "find",
        lua.create_function(move |lua, args: MultiValue| find_or_match(lua, &s, &args, true))?,
    )?;
    let s = Arc::clone(slot);
    string.raw_set(
        "match",
        lua.create_function(move |lua, args: MultiValue| find_or_match(lua, &s, &args, false))?,
    )?;
    let s = Arc::clone(slot);
    string.raw_set(
        "gmatch",
        lua.create_function(move |lua, args: MultiValue| gmatch(lua, &s, &args))?,
    )?;
    let s = Arc::clone(slot);
    string.raw_set(
        "gsub",
        lua.create_function(move |lua, args: MultiValue| gsub(lua, &s, &args))?,
    )?;
    let s = Arc::clone(slot);
    string.raw_set(
        "rep",
        lua.create_function(move |lua, args: MultiValue| rep(lua, &s, &args))?,
    )?;

    let table: Table = lua.globals().get("table")?;
    let concat: Function = table.get("concat")?;
    let s = Arc::clone(slot);
    table.raw_set(
        "concat",
        lua.create_function(move |lua, args: MultiValue| {
            if let Some(Value::Table(list)) = args.front() {
                let first = opt_int(lua, "concat", 3, arg(&args, 2), 1)?;
                let last = match arg(&args, 3) {
                    Value::Nil => list.len()?,
                    v => opt_int(lua, "concat", 4, v, 0)?,
                };
                let count = last.saturating_sub(first).saturating_add(1).max(0);
                s.running().budget.charge(count as u64)?;
            }
            concat.call::<MultiValue>(args)
        })?,
    )?;
    let sort: Function = table.get("sort")?;
    let s = Arc::clone(slot);
    table.raw_set(
        "sort",
        lua.create_function(move |_, args: MultiValue| {
            if let Some(Value::Table(list)) = args.front() {
                let n = u64::try_from(list.len()?).unwrap_or(0);
                let log = u64::from(64 - n.leading_zeros()).max(1);
                s.running().budget.charge(n.saturating_mul(log))?;
            }
            sort.call::<MultiValue>(args)
        })?,
    )?;
    Ok(())
}

fn arg(args: &MultiValue, i: usize) -> &Value {
    args.get(i).unwrap_or(&Value::Nil)
}

fn type_name(v: &Value) -> &'static str {
    crate::route::lua_type(v)
}

fn bad_argument(n: usize, function: &str, expected: &str, got: &Value) -> mlua::Error {
    mlua::Error::runtime(format!(
        "bad argument #{n} to '{function}' ({expected} expected, got {})",
        if got.is_nil() {
            "no value"
        } else {
            type_name(got)
        }
    ))
}

fn pattern_error(function: &str, e: PatternError) -> mlua::Error {
    mlua::Error::runtime(format!("string.{function}: {e}"))
}

/// A string argument (numbers are converted, as Lua does).
fn text(lua: &Lua, function: &str, n: usize, v: &Value) -> mlua::Result<LuaString> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Integer(_) | Value::Number(_) => lua
            .coerce_string(v.clone())?
            .ok_or_else(|| bad_argument(n, function, "string", v)),
        other => Err(bad_argument(n, function, "string", other)),
    }
}

/// An optional integer argument (`default` when nil).
fn opt_int(lua: &Lua, function: &str, n: usize, v: &Value, default: i64) -> mlua::Result<i64> {
    match v {
        Value::Nil => Ok(default),
        Value::Integer(i) => Ok(*i),
        other => lua
            .coerce_integer(other.clone())?
            .ok_or_else(|| bad_argument(n, function, "number", other)),
    }
}

/// A start position as Lua takes it (negative from the end), 1-based.
fn start_position(pos: i64, len: usize) -> usize {
    let len_i = i64::try_from(len).unwrap_or(i64::MAX);
    if pos > 0 {
        usize::try_from(pos).unwrap_or(usize::MAX)
    } else if pos == 0 || pos < -len_i {
        1
    } else {
        // -len <= pos < 0: from the end.
        len - usize::try_from(-pos).unwrap_or(len) + 1
    }
}

fn capture_value(lua: &Lua, src: &[u8], c: Captured) -> mlua::Result<Value> {
    Ok(match c {
        Captured::Text(range) => Value::String(lua.create_string(&src[range])?),
        Captured::Position(p) => Value::Integer(i64::try_from(p).unwrap_or(i64::MAX)),
    })
}

fn capture_values(lua: &Lua, src: &[u8], captures: Vec<Captured>) -> mlua::Result<Vec<Value>> {
    captures
        .into_iter()
        .map(|c| capture_value(lua, src, c))
        .collect()
}

/// `string.find(s, pattern [, init [, plain]])` and
/// `string.match(s, pattern [, init])`.
fn find_or_match(
    lua: &Lua,
    slot: &Slot,
    args: &MultiValue,
    find: bool,
) -> mlua::Result<MultiValue> {
    let name = if find { "find" } else { "match" };
    let scope = slot.running();
    scope.budget.charge(1)?;
    let s = text(lua, name, 1, arg(args, 0))?;
    let p = text(lua, name, 2, arg(args, 1))?;
    let (src, pat) = (s.as_bytes(), p.as_bytes());
    let init = start_position(opt_int(lua, name, 3, arg(args, 2), 1)?, src.len()) - 1;
    if init > src.len() {
        return Ok(MultiValue::from_vec(vec![Value::Nil]));
    }
    let plain =
        find && (is_plain(&pat) || !matches!(arg(args, 3), Value::Nil | Value::Boolean(false)));
    if plain {
        let hay = &src[init..];
        scope.budget.charge((hay.len() / 64) as u64)?;
        return Ok(match memchr::memmem::find(hay, &pat) {
            Some(at) => {
                let start = init + at;
                MultiValue::from_vec(vec![
                    Value::Integer(start as i64 + 1),
                    Value::Integer((start + pat.len()) as i64),
                ])
            }
            None => MultiValue::from_vec(vec![Value::Nil]),
        });
    }
    let (pat, anchored) = match pat.strip_prefix(b"^") {
        Some(rest) => (rest, true),
        None => (&pat[..], false),
    };
    let mut m = Matcher::new(&src, pat, slot.pattern_steps);
    let mut start = init;
    let found = loop {
        match m.match_at(start, 0) {
            Ok(Some(end)) => break Some(end),
            Ok(None) => {}
            Err(e) => {
                scope.budget.charge(m.steps())?;
                return Err(pattern_error(name, e));
            }
        }
        if anchored || start >= src.len() {
            break None;
        }
        start += 1;
    };
    scope.budget.charge(m.steps())?;
    let Some(end) = found else {
        return Ok(MultiValue::from_vec(vec![Value::Nil]));
    };
    let mut out = Vec::new();
    if find {
        out.push(Value::Integer(start as i64 + 1));
        out.push(Value::Integer(end as i64));
    }
    let captures = m
        .captures(start, end, !find)
        .map_err(|e| pattern_error(name, e))?;
    out.extend(capture_values(lua, &src, captures)?);
    Ok(MultiValue::from_vec(out))
}

/// Where a `gmatch` iterator is.
struct GmatchState {
    /// Next start position (past the end when done).
    at: usize,
    /// The end of the last match, so an empty match there is skipped.
    last: Option<usize>,
}

/// `string.gmatch(s, pattern [, init])`: an iterator; each call of it is
/// one pattern function call with its own step limit. (`^` is not an
/// anchor here, as in stock Lua 5.4.)
fn gmatch(lua: &Lua, slot: &Arc<Slot>, args: &MultiValue) -> mlua::Result<Function> {
    let s = text(lua, "gmatch", 1, arg(args, 0))?;
    let p = text(lua, "gmatch", 2, arg(args, 1))?;
    let len = s.as_bytes().len();
    let mut init = start_position(opt_int(lua, "gmatch", 3, arg(args, 2), 1)?, len) - 1;
    if init > len {
        init = len + 1;
    }
    let state = Mutex::new(GmatchState {
        at: init,
        last: None,
    });
    let slot = Arc::clone(slot);
    lua.create_function(move |lua, ()| {
        let scope = slot.running();
        scope.budget.charge(1)?;
        let (src, pat) = (s.as_bytes(), p.as_bytes());
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut m = Matcher::new(&src, &pat, slot.pattern_steps);
        let mut start = state.at;
        while start <= src.len() {
            match m.match_at(start, 0) {
                Ok(Some(end)) if Some(end) != state.last => {
                    state.at = end;
                    state.last = Some(end);
                    scope.budget.charge(m.steps())?;
                    let captures = m
                        .captures(start, end, true)
                        .map_err(|e| pattern_error("gmatch", e))?;
                    return Ok(MultiValue::from_vec(capture_values(lua, &src, captures)?));
                }
                Ok(_) => start += 1,
                Err(e) => {
                    scope.budget.charge(m.steps())?;
                    return Err(pattern_error("gmatch", e));
                }
            }
        }
        scope.budget.charge(m.steps())?;
        Ok(MultiValue::from_vec(vec![Value::Nil]))
    })
}

/// What `gsub` puts in place of a match.
enum Replacement {
    Text(LuaString),
    Table(Table),
    Function(Function),
}

/// `string.gsub(s, pattern, repl [, n])`: one pattern function call (the
/// step limit covers the whole substitution).
fn gsub(lua: &Lua, slot: &Slot, args: &MultiValue) -> mlua::Result<MultiValue> {
    let scope = slot.running();
    scope.budget.charge(1)?;
    let s = text(lua, "gsub", 1, arg(args, 0))?;
    let p = text(lua, "gsub", 2, arg(args, 1))?;
    let repl = match arg(args, 2) {
        v @ (Value::String(_) | Value::Integer(_) | Value::Number(_)) => {
            Replacement::Text(text(lua, "gsub", 3, v)?)
        }
        Value::Table(t) => Replacement::Table(t.clone()),
        Value::Function(f) => Replacement::Function(f.clone()),
        other => return Err(bad_argument(3, "gsub", "string/function/table", other)),
    };
    let (src, pat) = (s.as_bytes(), p.as_bytes());
    let max = opt_int(lua, "gsub", 4, arg(args, 3), src.len() as i64 + 1)?;
    let (pat, anchored) = match pat.strip_prefix(b"^") {
        Some(rest) => (rest, true),
        None => (&pat[..], false),
    };
    let mut m = Matcher::new(&src, pat, slot.pattern_steps);
    let mut out: Vec<u8> = Vec::new();
    let mut changed = false;
    let mut count: i64 = 0;
    let mut at = 0;
    let mut last = None;
    while count < max {
        let found = match m.match_at(at, 0) {
            Ok(found) => found,
            Err(e) => {
                scope.budget.charge(m.steps())?;
                return Err(pattern_error("gsub", e));
            }
        };
        match found {
            Some(end) if Some(end) != last => {
                count += 1;
                changed |= replace(lua, &m, &src, at, end, &repl, &mut out)?;
                at = end;
                last = Some(end);
            }
            _ if at < src.len() => {
                out.push(src[at]);
                at += 1;
            }
            _ => break,
        }
        if anchored {
            break;
        }
    }
    scope.budget.charge(m.steps() + (out.len() / 64) as u64)?;
    let result = if changed {
        out.extend_from_slice(&src[at..]);
        lua.create_string(&out)?
    } else {
        s.clone()
    };
    Ok(MultiValue::from_vec(vec![
        Value::String(result),
        Value::Integer(count),
    ]))
}

/// Appends the replacement of the match `s..e` to `out`; whether it
/// changed anything (a table or function giving `false`/`nil` keeps the
/// match).
fn replace(
    lua: &Lua,
    m: &Matcher<'_>,
    src: &[u8],
    s: usize,
    e: usize,
    repl: &Replacement,
    out: &mut Vec<u8>,
) -> mlua::Result<bool> {
    let value = match repl {
        Replacement::Text(text) => {
            let text = text.as_bytes();
            let mut i = 0;
            while i < text.len() {
                let c = text[i];
                i += 1;
                if c != b'%' {
                    out.push(c);
                    continue;
                }
                match text.get(i).copied() {
                    Some(b'%') => out.push(b'%'),
                    Some(b'0') => out.extend_from_slice(&src[s..e]),
                    Some(d @ b'1'..=b'9') => {
                        match m
                            .capture(usize::from(d - b'1'), s, e)
                            .map_err(|e| pattern_error("gsub", e))?
                        {
                            Captured::Text(range) => out.extend_from_slice(&src[range]),
                            Captured::Position(p) => {
                                out.extend_from_slice(p.to_string().as_bytes())
                            }
                        }
                    }
                    _ => {
                        return Err(mlua::Error::runtime(
                            "string.gsub: invalid use of '%' in replacement string",
                        ));
                    }
                }
                i += 1;
            }
            return Ok(true);
        }
        Replacement::Table(t) => {
            let key = m.capture(0, s, e).map_err(|e| pattern_error("gsub", e))?;
            t.get::<Value>(capture_value(lua, src, key)?)?
        }
        Replacement::Function(f) => {
            let captures = m
                .captures(s, e, true)
                .map_err(|e| pattern_error("gsub", e))?;
            f.call::<Value>(MultiValue::from_vec(capture_values(lua, src, captures)?))?
        }
    };
    match value {
        Value::Nil | Value::Boolean(false) => {
            out.extend_from_slice(&src[s..e]);
            Ok(false)
        }
        Value::String(v) => {
            out.extend_from_slice(&v.as_bytes());
            Ok(true)
        }
        v @ (Value::Integer(_) | Value::Number(_)) => {
            let v = text(lua, "gsub", 3, &v)?;
            out.extend_from_slice(&v.as_bytes());
            Ok(true)
        }
        other => Err(mlua::Error::runtime(format!(
            "string.gsub: invalid replacement value (a {})",
            type_name(&other)
        ))),
    }
}

/// `string.rep(s, n [, sep])`, refusing results over [`MAX_REP_BYTES`].
fn rep(lua: &Lua, slot: &Slot, args: &MultiValue) -> mlua::Result<LuaString> {
    let s = text(lua, "rep", 1, arg(args, 0))?;
    let n = match arg(args, 1) {
        Value::Nil => return Err(bad_argument(2, "rep", "number", &Value::Nil)),
        v => opt_int(lua, "rep", 2, v, 0)?,
    };
    let sep = match arg(args, 2) {
        Value::Nil => None,
        v => Some(text(lua, "rep", 3, v)?),
    };
    let piece = s.as_bytes();
    let sep = sep.as_ref().map(LuaString::as_bytes);
    let sep_len = sep.as_ref().map_or(0, |b| b.len());
    if n <= 0 || (piece.is_empty() && sep_len == 0) {
        return lua.create_string("");
    }
    let n = u64::try_from(n).unwrap_or(0);
    let total = (piece.len() as u64)
        .checked_mul(n)
        .and_then(|t| t.checked_add((sep_len as u64).checked_mul(n - 1)?))
        .filter(|t| *t <= MAX_REP_BYTES as u64)
        .ok_or_else(|| {
            mlua::Error::runtime(format!(
                "string.rep: the result would be larger than {MAX_REP_BYTES} bytes (1 MiB), the most a dialplan may make at once"
            ))
        })?;
    slot.running().budget.charge(total / 64 + 1)?;
    let mut out = Vec::with_capacity(total as usize);
    for i in 0..n {
        if i > 0
            && let Some(sep) = &sep
        {
            out.extend_from_slice(sep);
        }
        out.extend_from_slice(&piece);
    }
    lua.create_string(&out)
}

#[cfg(test)]
mod tests {
    use mlua::{Lua, StdLib};

    use crate::runtime::Limits;

    /// A plain Lua state, and one with this module's functions installed.
    fn states() -> (Lua, Lua) {
        let libs = StdLib::STRING | StdLib::TABLE | StdLib::MATH;
        let stock = Lua::new_with(libs, mlua::LuaOptions::default()).expect("stock state");
        let ours = Lua::new_with(libs, mlua::LuaOptions::default()).expect("our state");
        let slot = crate::sandbox::detached_slot(&Limits::default());
        super::install(&ours, &slot).expect("install");
        (stock, ours)
    }

    /// Runs every case of `CASES` (a Lua expression list per line) through
    /// `pcall` and describes what came back: the values with their types,
    /// or just "error" (messages differ in their wording).
    const RUN: &str = r##"
local cases = ...
local out = {}
local function describe(ok, ...)
  if not ok then return "error" end
  local parts = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    parts[#parts + 1] = math.type(v) or type(v)
    parts[#parts + 1] = tostring(v)
  end
  return table.concat(parts, " ")
end
for _, line in ipairs(cases) do
  local f = load("return " .. line)
  out[#out + 1] = line .. " => " .. describe(pcall(f))
end
return table.concat(out, "\n")
"##;

    /// Dialplan-style patterns and the corners of the pattern language:
    /// anchors, classes, sets, quantifiers, captures (position and back
    /// references), %b, %f, gsub with string, table and function
    /// replacements, gmatch, init arguments, and malformed patterns.
    const CASES: &str = r##"string.find("1234", "^1%d%d%d$")
("1234"):match("^1%d%d%d$")
("12345"):match("^1%d%d%d$")
("*7242"):match("^%*72(%d+)$")
("*72"):match("^%*72(%d+)$")
("+14155550100"):match("^%+?(%d+)$")
("sip:1001@pbx.example"):match("^sips?:([^@]+)@(.+)$")
("sip:1001@pbx.example;transport=tcp"):match(";transport=(%a+)")
("Alice <sip:1001@h>"):match("<(.-)>")
("hello world"):find("o w")
("hello world"):find("o", 6)
("hello world"):find("o", -3)
("hello world"):find("o", -100)
("hello world"):find("l", 0)
("hello"):find("", 10)
("hello"):find("", 6)
("hello"):find("", 5)
("a.b"):find(".", 1, true)
("a+b"):find("+", 1, true)
("a+b"):find("a+b")
("aaa"):find("a-", 2)
("aaab"):match("a-b")
("aaab"):match("^(a*)(.*)$")
("  trim me  "):match("^%s*(.-)%s*$")
("key = value"):match("^(%w+)%s*=%s*(%w+)$")
("hello"):match("()ll()")
("hello"):find("()ll()")
("abcabc"):match("(a)(b)(c)%1%2%3")
("abab"):match("(ab)%1")
("x(a(b)c)y"):match("%b()")
("x(a(b)c"):match("%b()")
("THE (quick) fox"):find("%f[%a]%a+", 5)
("hello world from lua"):gsub("%f[%w]%w+", string.upper)
("THE (quick) fox"):gsub("%f[%a]", "|")
("[x]"):match("[]]")
("a]b"):match("[^]]+")
("a-b"):match("[a-]+")
("a-b"):match("[%a-]+")
("ab-z"):match("[b-]+")
("09AFaf"):match("^%x+$")
("tab\there"):match("%c")
("x.y"):match("%p")
("x.y"):match("%P+")
("AbC"):match("%u%l%u")
("é"):match("%a")
("a\0b"):match("a%zb")
("a\0b"):find("\0", 1, true)
("a\0b"):match("a.b")
("hello"):gsub("l", "L")
("hello"):gsub("l", "L", 1)
("hello"):gsub("", "-")
("hello world"):gsub("(%w+)", "<%1>")
("hello world"):gsub("%w+", "%0 %0", 1)
("hello"):gsub("(l)(l)", "%2%1%%")
("abc"):gsub("%w", "%9")
("abc"):gsub("%w", "%")
("abc"):gsub("()b", "%1")
("$name is $age"):gsub("%$(%w+)", {name = "Bob", age = 42})
("$name is $x"):gsub("%$(%w+)", {name = "Bob"})
("$name"):gsub("%$(%w+)", {name = true})
("$name"):gsub("%$(%w+)", {name = {}})
("a,b,,c"):gsub(",", ";")
("abc"):gsub(".", function(c) return c:byte() end)
("abc"):gsub(".", function(c) if c == "b" then return false end return "x" end)
("abc"):gsub("x*", "-")
("abc"):gsub("^a", "A")
("aaa"):gsub("^a", "A")
("abc"):gsub("b*", "X")
("one two  three"):gsub("%s+", " ")
string.gsub("hello", "l+", "L", 0)
string.gsub("hello", "l", "L", -1)
string.gsub(12345, "3", "x")
string.find(12345, "34")
string.match(1.5, "%.")
string.gsub("abc", "b", 7)
string.gsub("abc", "b", 1.5)
(function() local t = {} for k, v in ("a=1, b=2"):gmatch("(%w+)=(%w+)") do t[#t+1] = k .. v end return table.concat(t, ";") end)()
(function() local t = {} for w in ("one two three"):gmatch("%a+") do t[#t+1] = w end return table.concat(t, ",") end)()
(function() local t = {} for w in ("abc"):gmatch("") do t[#t+1] = "[" .. w .. "]" end return #t end)()
(function() local t = {} for a, b in ("abc"):gmatch("()(.)") do t[#t+1] = a .. b end return table.concat(t) end)()
(function() local t = {} for w in ("hello world"):gmatch("%a+", 3) do t[#t+1] = w end return table.concat(t, ",") end)()
(function() local t = {} for w in ("hello world"):gmatch("%a+", -5) do t[#t+1] = w end return table.concat(t, ",") end)()
(function() local t = {} for w in ("^a^a"):gmatch("^a") do t[#t+1] = w end return #t end)()
(function() local t = {} for w in ("abc"):gmatch("x*") do t[#t+1] = w end return #t end)()
("abc"):match("((a)(b))")
("abc"):find("b()")
("abc"):match("(")
("abc"):match("%")
("abc"):match("[a")
("abc"):match("a)")
("abc"):match("%1")
("abc"):match("%0")
("abc"):match("%b")
("abc"):match("%ba")
("abc"):match("%fa")
("abc"):match("(()")
("abc"):find("(a")
("aaa"):match("a?a?a?aaa")
("ab"):match("a?b?c?")
("x"):rep(3)
("x"):rep(3, ", ")
("x"):rep(0)
("x"):rep(-1)
(""):rep(5)
("ab"):rep(1, "-")
string.rep(5, 2)
table.concat({1, 2, 3}, "-")
table.concat({1, 2, 3}, "-", 2)
table.concat({1, 2, 3}, "-", 2, 3)
table.concat({1, 2, 3}, "-", 3, 2)
table.concat({1, {}, 3})
(function() local t = {5, 2, 8, 1} table.sort(t) return table.concat(t, ",") end)()
(function() local t = {5, 2, 8, 1} table.sort(t, function(a, b) return a > b end) return table.concat(t, ",") end)()
(function() local t = {1, "x"} table.sort(t) return t[1] end)()
string.find()
string.find("a")
string.gsub("a", "a")
string.gsub("a", "a", true)"##;

    #[test]
    fn results_are_those_of_stock_lua() {
        let (stock, ours) = states();
        let cases: Vec<&str> = CASES.lines().collect();
        let run = |lua: &Lua| -> String {
            lua.load(RUN)
                .call::<String>(
                    lua.create_sequence_from(cases.iter().copied())
                        .expect("cases"),
                )
                .expect("run the cases")
        };
        let (expected, got) = (run(&stock), run(&ours));
        let differences: Vec<String> = expected
            .lines()
            .zip(got.lines())
            .filter(|(e, g)| e != g)
            .map(|(e, g)| format!("stock: {e}\nours:  {g}"))
            .collect();
        assert!(differences.is_empty(), "{}", differences.join("\n"));
        assert_eq!(got.lines().count(), cases.len());
        assert_eq!(expected.lines().count(), cases.len());
    }

    #[test]
    fn catastrophic_patterns_and_huge_reps_are_errors() {
        let (_, ours) = states();
        for (script, needle) in [
            (
                r#"return ("a"):rep(220):find("^a*a*a*a*b")"#,
                "pattern too expensive",
            ),
            (
                r#"return ("a"):rep(5000):match("(.-)*b")"#,
                "pattern too expensive",
            ),
            (
                r#"return ("a"):rep(220):gsub("a*a*a*a*b", "")"#,
                "pattern too expensive",
            ),
            (
                r#"for _ in ("a"):rep(220):gmatch("a*a*a*a*b") do end"#,
                "pattern too expensive",
            ),
            (r#"return ("x"):rep(2 ^ 21)"#, "larger than 1048576 bytes"),
            (r#"return ("x"):rep(1025, ("y"):rep(1024))"#, "larger than"),
            (r#"return (""):rep(2 ^ 62)"#, ""),
            (
                r#"local t = setmetatable({}, {__index = function() return "" end}) return table.concat(t, "", 1, 2^40)"#,
                "instruction budget exceeded",
            ),
        ] {
            let result = ours.load(script).exec();
            if needle.is_empty() {
                assert!(result.is_ok(), "{script}: {result:?}");
                continue;
            }
            let Err(e) = result else {
                panic!("{script}: no error");
            };
            let e = e.to_string();
            assert!(e.contains(needle), "{script}: {e}");
        }
    }
}
