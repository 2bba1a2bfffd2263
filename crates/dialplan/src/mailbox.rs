//! The `mailbox` Lua module (DESIGN.md "Dialplan (Lua)", modules): voicemail
//! boxes over the host's [`Voicemail`] store — save a recording as a
//! message, list, mark heard, delete, greetings, counts and the PIN — with
//! the arguments checked before anything reaches the host. The audio files
//! are named as `call:play` and `call:record` take them
//! (`voicemail/EXT/NAME.wav`).

use mlua::{Lua, Table, Value};

use crate::host::{HostError, SharedHost};
use crate::modules::{call_host_where, text_arg};

/// How the mailboxes' file names start, for `call:play` and `call:record`.
pub const VOICEMAIL_PREFIX: &str = "voicemail/";

/// Longest extension id the module takes (as `pbx.extension`).
const MAX_EXT: usize = 64;
/// Longest message id.
const MAX_ID: usize = 64;
/// Longest PIN.
const MAX_PIN: usize = 32;

/// One message in a mailbox.
#[derive(Debug, Clone, PartialEq)]
pub struct VoicemailMessage {
    /// Its id within the mailbox.
    pub id: String,
    /// Who left it, as the caller presented itself.
    pub caller: String,
    /// When it was received, Unix milliseconds.
    pub received_ms: u64,
    /// How long it is, in seconds.
    pub duration_s: f64,
    /// Not heard yet.
    pub new: bool,
    /// The audio, as `call:play` takes it (`voicemail/EXT/ID.wav`).
    pub file: String,
}

/// The greetings a mailbox has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Greeting {
    /// Played when the extension is busy.
    Busy,
    /// Played when it did not answer or is not reachable.
    Unavailable,
    /// The owner's name, said in the default greetings.
    Name,
}

impl Greeting {
    /// `busy`, `unavailable`, `name`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::Unavailable => "unavailable",
            Self::Name => "name",
        }
    }
}

/// The voicemail boxes as the `mailbox` module uses them. The binary
/// implements it over storage and the `dialplan.voicemail` directory.
/// Methods may block; they run on a blocking thread when the host says so
/// ([`crate::Host::voicemail_blocks`]).
pub trait Voicemail: Send + Sync + 'static {
    /// A fresh file name under `ext`'s mailbox to record into
    /// (`voicemail/EXT/tmp-….wav`), for [`Voicemail::save`] or
    /// [`Voicemail::set_greeting`].
    fn scratch(&self, ext: &str) -> Result<String, HostError>;
    /// Makes the recording `file` (from [`Voicemail::scratch`]) a new
    /// message from `caller`; `None` when it was discarded (shorter than 1 s).
    fn save(
        &self,
        ext: &str,
        file: &str,
        caller: &str,
    ) -> Result<Option<VoicemailMessage>, HostError>;
    /// The messages, oldest first.
    fn list(&self, ext: &str) -> Result<Vec<VoicemailMessage>, HostError>;
    /// Marks message `id` heard; whether it exists.
    fn mark_heard(&self, ext: &str, id: &str) -> Result<bool, HostError>;
    /// Deletes message `id`; whether it existed.
    fn delete(&self, ext: &str, id: &str) -> Result<bool, HostError>;
    /// (new, old) counts.
    fn counts(&self, ext: &str) -> Result<(u32, u32), HostError>;
    /// The recorded greeting `kind`, as `call:play` takes it, if there is one.
    fn greeting(&self, ext: &str, kind: Greeting) -> Result<Option<String>, HostError>;
    /// Makes the recording `file` greeting `kind`; `false` (and the file
    /// deleted) when it was shorter than 1 s.
    fn set_greeting(&self, ext: &str, kind: Greeting, file: &str) -> Result<bool, HostError>;
    /// Whether `pin` is `ext`'s `voicemail_pin`; `None` when it has none.
    fn check_pin(&self, ext: &str, pin: &str) -> Result<Option<bool>, HostError>;
}

fn store(h: &dyn crate::Host) -> Result<&dyn Voicemail, HostError> {
    h.voicemail()
        .ok_or_else(|| HostError::new("voicemail is not available in this runtime"))
}

/// An extension id: 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with `.`.
fn ext_arg(function: &str, value: &Value) -> mlua::Result<String> {
    let ext = text_arg(function, "ext", value, MAX_EXT)?;
    if ext.starts_with('.')
        || !ext
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(mlua::Error::runtime(format!(
            "{function}: ext {ext:?} is not an extension id (letters, digits, '.', '_', '-')"
        )));
    }
    Ok(ext)
}

fn greeting_arg(function: &str, value: &Value) -> mlua::Result<Greeting> {
    let kind = text_arg(function, "kind", value, 16)?;
    match kind.as_str() {
        "busy" => Ok(Greeting::Busy),
        "unavailable" => Ok(Greeting::Unavailable),
        "name" => Ok(Greeting::Name),
        _ => Err(mlua::Error::runtime(format!(
            "{function}: kind must be \"busy\", \"unavailable\" or \"name\", got {kind:?}"
        ))),
    }
}

fn message_table(lua: &Lua, m: VoicemailMessage) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, 6)?;
    t.raw_set("id", m.id)?;
    t.raw_set("caller", m.caller)?;
    t.raw_set("received", m.received_ms)?;
    t.raw_set("duration", m.duration_s)?;
    t.raw_set("new", m.new)?;
    t.raw_set("file", m.file)?;
    Ok(t)
}

/// Installs `mailbox` as a global of `lua`.
pub(crate) fn install(lua: &Lua, host: &SharedHost) -> mlua::Result<()> {
    let m = lua.create_table()?;

    let h = host.clone();
    m.raw_set(
        "scratch",
        // The async functions' bodies are boxed: mlua keeps a call's future
        // until Lua's collector frees it, and a finished boxed body is freed
        // at once.
        lua.create_async_function(move |_, ext: Value| {
            let host = h.clone();
            let ext = ext_arg("mailbox.scratch", &ext);
            Box::pin(async move {
                let ext = ext?;
                call_vm(host, "mailbox.scratch", move |h| store(h)?.scratch(&ext)).await
            })
        })?,
    )?;

    let h = host.clone();
    m.raw_set(
        "save",
        lua.create_async_function(move |lua, (ext, file, caller): (Value, Value, Value)| {
            let host = h.clone();
            let args = ext_arg("mailbox.save", &ext).and_then(|ext| {
                let file = crate::media::file_arg("mailbox.save", "voicemail", &file)?;
                let caller = match &caller {
                    Value::Nil => String::new(),
                    v => text_arg("mailbox.save", "caller", v, 512)?,
                };
                Ok((ext, file, caller))
            });
            Box::pin(async move {
                let (ext, file, caller) = args?;
                let saved = call_vm(host, "mailbox.save", move |h| {
                    store(h)?.save(&ext, &file, &caller)
                })
                .await?;
                match saved {
                    Some(m) => Ok(Value::Table(message_table(&lua, m)?)),
                    None => Ok(Value::Nil),
                }
            })
        })?,
    )?;

    let h = host.clone();
    m.raw_set(
        "list",
        lua.create_async_function(move |lua, ext: Value| {
            let host = h.clone();
            let ext = ext_arg("mailbox.list", &ext);
            Box::pin(async move {
                let ext = ext?;
                let list = call_vm(host, "mailbox.list", move |h| store(h)?.list(&ext)).await?;
                let t = lua.create_table_with_capacity(list.len(), 0)?;
                for m in list {
                    t.raw_push(message_table(&lua, m)?)?;
                }
                Ok(t)
            })
        })?,
    )?;

    for (name, heard) in [("heard", true), ("delete", false)] {
        let h = host.clone();
        let function: &'static str = if heard {
            "mailbox.heard"
        } else {
            "mailbox.delete"
        };
        m.raw_set(
            name,
            lua.create_async_function(move |_, (ext, id): (Value, Value)| {
                let host = h.clone();
                let args = ext_arg(function, &ext)
                    .and_then(|ext| Ok((ext, text_arg(function, "id", &id, MAX_ID)?)));
                Box::pin(async move {
                    let (ext, id) = args?;
                    call_vm(host, function, move |h| {
                        let s = store(h)?;
                        if heard {
                            s.mark_heard(&ext, &id)
                        } else {
                            s.delete(&ext, &id)
                        }
                    })
                    .await
                })
            })?,
        )?;
    }

    let h = host.clone();
    m.raw_set(
        "counts",
        lua.create_async_function(move |lua, ext: Value| {
            let host = h.clone();
            let ext = ext_arg("mailbox.counts", &ext);
            Box::pin(async move {
                let ext = ext?;
                let (new, old) =
                    call_vm(host, "mailbox.counts", move |h| store(h)?.counts(&ext)).await?;
                let t = lua.create_table_with_capacity(0, 2)?;
                t.raw_set("new", new)?;
                t.raw_set("old", old)?;
                Ok(t)
            })
        })?,
    )?;

    let h = host.clone();
    m.raw_set(
        "greeting",
        lua.create_async_function(move |_, (ext, kind): (Value, Value)| {
            let host = h.clone();
            let args = ext_arg("mailbox.greeting", &ext)
                .and_then(|ext| Ok((ext, greeting_arg("mailbox.greeting", &kind)?)));
            Box::pin(async move {
                let (ext, kind) = args?;
                call_vm(host, "mailbox.greeting", move |h| {
                    store(h)?.greeting(&ext, kind)
                })
                .await
            })
        })?,
    )?;

    let h = host.clone();
    m.raw_set(
        "set_greeting",
        lua.create_async_function(move |_, (ext, kind, file): (Value, Value, Value)| {
            let host = h.clone();
            let function = "mailbox.set_greeting";
            let args = ext_arg(function, &ext).and_then(|ext| {
                Ok((
                    ext,
                    greeting_arg(function, &kind)?,
                    crate::media::file_arg(function, "voicemail", &file)?,
                ))
            });
            Box::pin(async move {
                let (ext, kind, file) = args?;
                call_vm(host, function, move |h| {
                    store(h)?.set_greeting(&ext, kind, &file)
                })
                .await
            })
        })?,
    )?;

    let h = host.clone();
    m.raw_set(
        "check_pin",
        lua.create_async_function(move |_, (ext, pin): (Value, Value)| {
            let host = h.clone();
            let args = ext_arg("mailbox.check_pin", &ext).and_then(|ext| {
                let pin = match &pin {
                    Value::String(s) if s.as_bytes().is_empty() => String::new(),
                    v => text_arg("mailbox.check_pin", "pin", v, MAX_PIN)?,
                };
                Ok((ext, pin))
            });
            Box::pin(async move {
                let (ext, pin) = args?;
                call_vm(host, "mailbox.check_pin", move |h| {
                    store(h)?.check_pin(&ext, &pin)
                })
                .await
            })
        })?,
    )?;

    lua.globals().raw_set("mailbox", m)
}

/// Runs a mailbox function where the host's mailboxes run
/// ([`crate::Host::voicemail_blocks`]).
async fn call_vm<T: Send + 'static>(
    host: crate::host::SharedHost,
    function: &'static str,
    f: impl FnOnce(&dyn crate::Host) -> Result<T, crate::HostError> + Send + 'static,
) -> mlua::Result<T> {
    let blocks = host.0.voicemail_blocks();
    call_host_where(host, function, blocks, f).await
}
