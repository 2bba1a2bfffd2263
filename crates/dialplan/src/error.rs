//! Errors of the dialplan runtime: a bad file on reload (`file:line:
//! message`) and the runtime's own failures.

use std::fmt;

/// One problem with one dialplan or plugin file, as an admin fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The chunk name, e.g. `dialplans/default.lua` or `plugins/vm/init.lua`.
    pub file: String,
    /// The line the problem is on, when Lua knows it.
    pub line: Option<u32>,
    /// What is wrong, without the `file:line:` prefix.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// A reload that did not happen: every file that failed, each with its
/// `file:line: message`. The previous generation stays in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dialplan reload failed, previous generation {kept} kept: {}", join(.errors))]
pub struct ReloadError {
    /// The generation that is still in force.
    pub kept: u64,
    /// Every file that failed, in file-name order.
    pub errors: Vec<FileError>,
}

fn join(errors: &[FileError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Failures of the runtime itself (not of a script).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The first load found bad files; nothing is in force.
    #[error(transparent)]
    Reload(#[from] ReloadError),
    /// Building a call's Lua state failed (out of memory, or a bug in the
    /// sandbox setup).
    #[error("cannot build the call's Lua state: {0}")]
    State(#[source] mlua::Error),
    /// The file watcher for hot reload could not be started.
    #[error("cannot watch the dialplan directories for changes: {0}")]
    Watch(#[source] notify::Error),
}
