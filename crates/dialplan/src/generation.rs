//! A generation: every context and plugin file read and compiled together,
//! the unit that hot reload swaps (DESIGN.md "Dialplan (Lua)", hot reload).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mlua::Lua;
use mlua::chunk::ChunkMode;

use crate::error::FileError;

/// One compiled Lua file.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// The chunk name Lua reports in errors and tracebacks:
    /// `dialplans/NAME.lua`, `plugins/NAME.lua` or `plugins/NAME/init.lua`.
    pub name: String,
    /// Where the file was read from.
    pub path: PathBuf,
    /// The source text.
    pub source: Vec<u8>,
    /// The compiled chunk (Lua bytecode with line info), loaded into each
    /// call's state by the host only: scripts cannot load bytecode.
    pub bytecode: Vec<u8>,
}

/// Every context and plugin of one successful reload.
#[derive(Debug, Clone, Default)]
pub struct Generation {
    /// 1 for the first load, +1 for each successful reload.
    pub number: u64,
    /// Contexts by name (`default` for `dialplans/default.lua`).
    pub contexts: BTreeMap<String, Chunk>,
    /// Plugins by module name (`voicemail` for `require("voicemail")`).
    pub plugins: BTreeMap<String, Chunk>,
}

/// Reads and compiles every file; the checks that need the files run
/// (`route` defined) are done by the runtime afterwards.
pub(crate) fn compile(
    number: u64,
    dialplans: &Path,
    plugins: &Path,
) -> Result<Generation, Vec<FileError>> {
    let mut errors = Vec::new();
    let mut generation = Generation {
        number,
        ..Generation::default()
    };
    let scratch = Lua::new();

    match list_contexts(dialplans) {
        Ok(files) => {
            if files.is_empty() {
                errors.push(FileError {
                    file: "dialplans".into(),
                    line: None,
                    message: format!("no context (NAME.lua) in {}", dialplans.display()),
                });
            }
            for (name, path) in files {
                let chunk_name = format!("dialplans/{name}.lua");
                match compile_file(&scratch, &chunk_name, &path) {
                    Ok(chunk) => {
                        generation.contexts.insert(name, chunk);
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        Err(e) => errors.push(FileError {
            file: "dialplans".into(),
            line: None,
            message: format!("cannot read {}: {e}", dialplans.display()),
        }),
    }

    match list_plugins(plugins) {
        Ok(files) => {
            for (name, chunk_name, path) in files {
                if generation.plugins.contains_key(&name) {
                    errors.push(FileError {
                        file: chunk_name,
                        line: None,
                        message: format!(
                            "plugin '{name}' is defined twice (plugins/{name}.lua and plugins/{name}/init.lua); keep one"
                        ),
                    });
                    continue;
                }
                match compile_file(&scratch, &chunk_name, &path) {
                    Ok(chunk) => {
                        generation.plugins.insert(name, chunk);
                    }
                    Err(e) => errors.push(e),
                }
            }
        }
        Err(e) => errors.push(FileError {
            file: "plugins".into(),
            line: None,
            message: format!("cannot read {}: {e}", plugins.display()),
        }),
    }

    if errors.is_empty() {
        Ok(generation)
    } else {
        Err(errors)
    }
}

/// `NAME.lua` files directly in the dialplans directory, sorted by name.
fn list_contexts(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !path.is_file() {
            continue;
        }
        if let Some(name) = lua_stem(&path) {
            out.push((name, path));
        }
    }
    out.sort();
    Ok(out)
}

/// `NAME.lua` and `NAME/init.lua` in the plugins directory, as (module name,
/// chunk name, path), sorted. A missing plugins directory means no plugins.
fn list_plugins(dir: &Path) -> std::io::Result<Vec<(String, String, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_file() {
            if let Some(name) = lua_stem(&path) {
                out.push((name.clone(), format!("plugins/{name}.lua"), path));
            }
        } else if path.is_dir() {
            let init = path.join("init.lua");
            let name = path.file_name().and_then(|n| n.to_str()).map(str::to_owned);
            if let Some(name) = name
                && init.is_file()
                && valid_module_name(&name)
            {
                out.push((name.clone(), format!("plugins/{name}/init.lua"), init));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `NAME` for a `NAME.lua` path whose name is a plain identifier-like word.
fn lua_stem(path: &Path) -> Option<String> {
    if path.extension()? != "lua" {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    valid_module_name(stem).then(|| stem.to_owned())
}

/// Letters, digits, `_` and `-`; no dots (they would be module paths) and no
/// hidden files (editor swap files).
fn valid_module_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn compile_file(lua: &Lua, chunk_name: &str, path: &Path) -> Result<Chunk, FileError> {
    let source = std::fs::read(path).map_err(|e| FileError {
        file: chunk_name.to_owned(),
        line: None,
        message: format!("cannot read {}: {e}", path.display()),
    })?;
    let function = lua
        .load(&source[..])
        .set_name(format!("@{chunk_name}"))
        .set_mode(ChunkMode::Text)
        .into_function()
        .map_err(|e| file_error(chunk_name, &e))?;
    // Dumping a function that was just compiled in this state cannot fail
    // short of running out of memory; with strip = false, line numbers stay.
    let bytecode = function.dump(false);
    Ok(Chunk {
        name: chunk_name.to_owned(),
        path: path.to_owned(),
        source,
        bytecode,
    })
}

/// A Lua error about `chunk_name` as `file:line: message`.
pub(crate) fn file_error(chunk_name: &str, error: &mlua::Error) -> FileError {
    let located = crate::route::locate(error);
    let (file, line) = match located.place {
        Some((file, line)) => (file, Some(line).filter(|l| *l > 0)),
        None => (chunk_name.to_owned(), None),
    };
    FileError {
        file,
        line,
        message: located.message,
    }
}
