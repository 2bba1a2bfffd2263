//! Voicemail boxes (issue 14): message metadata in storage (kv namespace
//! `voicemail`, one JSON list per extension), the audio as 16-bit PCM WAV
//! files under `dialplan.voicemail/EXT/` (files 0600, directories 0700, as
//! recordings), greetings next to them. The dialplan reaches it through the
//! `mailbox` Lua module ([`dialplan::Voicemail`]); every change is reported
//! to a [`pbx::MailboxListener`] (MWI, email), and [`pbx::Mailboxes`] gives
//! the counts. `GET /api/v1/voicemail/EXT` and `.../ID.wav` read it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use dialplan::{Greeting, HostError, VoicemailMessage};
use pbx::{MailboxCounts, MailboxListener, NewMessage};
use serde::{Deserialize, Serialize};
use serde_json::json;
use storage::Storage;
use tracing::{info, warn};

use crate::extensions::Extensions;

/// The storage kv namespace of the mailboxes' metadata.
const NAMESPACE: &str = "voicemail";
/// How file names start for `call:play`/`call:record` and the `mailbox` module.
pub const PREFIX: &str = dialplan::VOICEMAIL_PREFIX;
/// Shortest message or greeting kept.
const MIN_LENGTH: Duration = Duration::from_secs(1);
/// Most messages one mailbox keeps; a message left in a full one is dropped
/// (and logged).
const MAX_MESSAGES: usize = 200;

/// A message as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    id: String,
    caller: String,
    received_ms: u64,
    duration_s: f64,
    new: bool,
}

/// Why a mailbox operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VoicemailError {
    /// The extension is not configured.
    #[error("no extension {0:?}; voicemail is only for the [[extension]]s of the config")]
    UnknownExtension(String),
    /// A file name outside the mailbox it was given for.
    #[error("{file:?} is not a recording of mailbox {ext} (use mailbox.scratch(\"{ext}\"))")]
    NotInMailbox {
        /// The file as given.
        file: String,
        /// The mailbox.
        ext: String,
    },
    /// Storage failed.
    #[error("voicemail storage: {0}")]
    Storage(String),
    /// A file could not be read, moved or deleted.
    #[error("voicemail file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A recording is not a WAV file media can read.
    #[error("voicemail recording: {0}")]
    Audio(#[from] media::Error),
}

/// Logs what voicemail reports: the line tests and operators read.
#[derive(Debug, Default)]
pub struct LogListener;

impl MailboxListener for LogListener {
    fn counts_changed(&self, ext: &str, counts: MailboxCounts) {
        info!(
            "mailbox {ext}: {} new, {} old message(s)",
            counts.new, counts.old
        );
    }

    fn message_left(&self, m: &NewMessage) {
        info!(
            "voicemail: message {} left for {} by {:?}, {:.1} s",
            m.id, m.ext, m.caller, m.duration_s
        );
    }
}

/// The mailboxes.
pub struct Voicemail {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    extensions: Arc<Extensions>,
    listener: Arc<dyn MailboxListener>,
    /// Serialises each read-modify-write of the metadata; holds the counts
    /// known so far (for [`pbx::Mailboxes`] without a storage read).
    counts: Mutex<HashMap<String, MailboxCounts>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn counts_of(list: &[Stored]) -> MailboxCounts {
    let new = list.iter().filter(|m| m.new).count();
    MailboxCounts {
        new: u32::try_from(new).unwrap_or(u32::MAX),
        old: u32::try_from(list.len() - new).unwrap_or(u32::MAX),
    }
}

fn file_error(path: &Path) -> impl FnOnce(std::io::Error) -> VoicemailError + '_ {
    move |source| VoicemailError::File {
        path: path.to_owned(),
        source,
    }
}

/// An id as made by [`Voicemail::save`]: digits, letters and `-` only.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl Voicemail {
    /// The mailboxes under `dir` (`dialplan.voicemail`), metadata in
    /// `storage`, PINs from `extensions`, changes to `listener`.
    pub fn new(
        dir: PathBuf,
        storage: Arc<dyn Storage>,
        extensions: Arc<Extensions>,
        listener: Arc<dyn MailboxListener>,
    ) -> Voicemail {
        Voicemail {
            dir,
            storage,
            extensions,
            listener,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Where `voicemail/REST` is on disk, if `file` starts so.
    pub fn resolve(&self, file: &str) -> Option<PathBuf> {
        file.strip_prefix(PREFIX).map(|rest| self.dir.join(rest))
    }

    fn known(&self, ext: &str) -> Result<(), VoicemailError> {
        if self.extensions.exists(ext) {
            Ok(())
        } else {
            Err(VoicemailError::UnknownExtension(ext.to_owned()))
        }
    }

    fn load(&self, ext: &str) -> Result<Vec<Stored>, VoicemailError> {
        let raw = self
            .storage
            .kv_get(NAMESPACE, ext, now_ms())
            .map_err(|e| VoicemailError::Storage(e.to_string()))?;
        match raw {
            None => Ok(Vec::new()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                VoicemailError::Storage(format!("mailbox {ext} metadata does not parse: {e}"))
            }),
        }
    }

    fn store(&self, ext: &str, list: &[Stored]) -> Result<(), VoicemailError> {
        let bytes = serde_json::to_vec(list).map_err(|e| VoicemailError::Storage(e.to_string()))?;
        self.storage
            .kv_set(NAMESPACE, ext, &bytes, None, now_ms())
            .map_err(|e| VoicemailError::Storage(e.to_string()))
    }

    /// Runs `change` on `ext`'s list under the lock, stores it if it says
    /// so, and reports new counts.
    fn change<T>(
        &self,
        ext: &str,
        change: impl FnOnce(&mut Vec<Stored>) -> Result<(T, bool), VoicemailError>,
    ) -> Result<T, VoicemailError> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut list = self.load(ext)?;
        let (out, changed) = change(&mut list)?;
        if changed {
            self.store(ext, &list)?;
            let c = counts_of(&list);
            counts.insert(ext.to_owned(), c);
            self.listener.counts_changed(ext, c);
        }
        Ok(out)
    }

    fn path_of(&self, ext: &str, id: &str) -> PathBuf {
        self.dir.join(ext).join(format!("{id}.wav"))
    }

    fn greeting_path(&self, ext: &str, kind: Greeting) -> PathBuf {
        self.dir
            .join(ext)
            .join(format!("greeting-{}.wav", kind.as_str()))
    }

    /// `file` (a `voicemail/EXT/tmp-….wav` name) on disk, checked to be a
    /// scratch recording of `ext`.
    fn scratch_path(&self, ext: &str, file: &str) -> Result<PathBuf, VoicemailError> {
        let not_in = || VoicemailError::NotInMailbox {
            file: file.to_owned(),
            ext: ext.to_owned(),
        };
        let rest = file
            .strip_prefix(PREFIX)
            .and_then(|r| r.strip_prefix(ext))
            .and_then(|r| r.strip_prefix("/tmp-"))
            .ok_or_else(not_in)?;
        if rest.contains('/') {
            return Err(not_in());
        }
        self.resolve(file).ok_or_else(not_in)
    }

    /// The length of the recording at `path`, or `None` (and the file
    /// deleted) when it is shorter than [`MIN_LENGTH`].
    fn long_enough(path: &Path) -> Result<Option<Duration>, VoicemailError> {
        let length = media::Prompt::load(path)?.duration();
        if length < MIN_LENGTH {
            std::fs::remove_file(path).map_err(file_error(path))?;
            return Ok(None);
        }
        Ok(Some(length))
    }

    fn scratch(&self, ext: &str) -> Result<String, VoicemailError> {
        self.known(ext)?;
        Ok(format!(
            "{PREFIX}{ext}/tmp-{}-{:08x}.wav",
            now_ms(),
            rand::random::<u32>()
        ))
    }

    fn save(
        &self,
        ext: &str,
        file: &str,
        caller: &str,
    ) -> Result<Option<VoicemailMessage>, VoicemailError> {
        self.known(ext)?;
        let scratch = self.scratch_path(ext, file)?;
        let Some(length) = Self::long_enough(&scratch)? else {
            info!("voicemail: a message for {ext} shorter than 1 s was discarded");
            return Ok(None);
        };
        let received_ms = now_ms();
        let id = format!("{received_ms}-{:04x}", rand::random::<u16>());
        let path = self.path_of(ext, &id);
        let stored = Stored {
            id: id.clone(),
            caller: caller.to_owned(),
            received_ms,
            duration_s: (length.as_secs_f64() * 10.0).round() / 10.0,
            new: true,
        };
        let kept = self.change(ext, |list| {
            if list.len() >= MAX_MESSAGES {
                return Ok((false, false));
            }
            std::fs::rename(&scratch, &path).map_err(file_error(&path))?;
            list.push(stored.clone());
            Ok((true, true))
        })?;
        if !kept {
            warn!(
                "voicemail: mailbox {ext} is full ({MAX_MESSAGES} messages); a message was dropped"
            );
            std::fs::remove_file(&scratch).map_err(file_error(&scratch))?;
            return Ok(None);
        }
        self.listener.message_left(&NewMessage {
            ext: ext.to_owned(),
            id: id.clone(),
            caller: stored.caller.clone(),
            received_ms,
            duration_s: stored.duration_s,
            wav: path,
        });
        Ok(Some(self.message(ext, stored)))
    }

    fn message(&self, ext: &str, m: Stored) -> VoicemailMessage {
        VoicemailMessage {
            file: format!("{PREFIX}{ext}/{}.wav", m.id),
            id: m.id,
            caller: m.caller,
            received_ms: m.received_ms,
            duration_s: m.duration_s,
            new: m.new,
        }
    }

    fn list(&self, ext: &str) -> Result<Vec<VoicemailMessage>, VoicemailError> {
        Ok(self
            .load(ext)?
            .into_iter()
            .map(|m| self.message(ext, m))
            .collect())
    }

    fn mark_heard(&self, ext: &str, id: &str) -> Result<bool, VoicemailError> {
        self.change(ext, |list| match list.iter_mut().find(|m| m.id == id) {
            Some(m) if m.new => {
                m.new = false;
                Ok((true, true))
            }
            Some(_) => Ok((true, false)),
            None => Ok((false, false)),
        })
    }

    fn delete(&self, ext: &str, id: &str) -> Result<bool, VoicemailError> {
        let path = self.path_of(ext, id);
        self.change(ext, |list| {
            let Some(at) = list.iter().position(|m| m.id == id) else {
                return Ok((false, false));
            };
            list.remove(at);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(file_error(&path)(e)),
            }
            Ok((true, true))
        })
    }

    fn counts_now(&self, ext: &str) -> Result<MailboxCounts, VoicemailError> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = counts.get(ext) {
            return Ok(*c);
        }
        let c = counts_of(&self.load(ext)?);
        counts.insert(ext.to_owned(), c);
        Ok(c)
    }

    fn greeting(&self, ext: &str, kind: Greeting) -> Option<String> {
        self.greeting_path(ext, kind)
            .is_file()
            .then(|| format!("{PREFIX}{ext}/greeting-{}.wav", kind.as_str()))
    }

    fn set_greeting(&self, ext: &str, kind: Greeting, file: &str) -> Result<bool, VoicemailError> {
        self.known(ext)?;
        let scratch = self.scratch_path(ext, file)?;
        if Self::long_enough(&scratch)?.is_none() {
            return Ok(false);
        }
        let path = self.greeting_path(ext, kind);
        std::fs::rename(&scratch, &path).map_err(file_error(&path))?;
        info!(
            "voicemail: mailbox {ext} has a new {} greeting",
            kind.as_str()
        );
        Ok(true)
    }

    fn check_pin(&self, ext: &str, pin: &str) -> Result<Option<bool>, VoicemailError> {
        self.known(ext)?;
        Ok(self.extensions.voicemail_pin(ext).map(|want| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                want.as_bytes(),
                pin.as_bytes(),
            ))
        }))
    }

    /// `GET /api/v1/voicemail/EXT`: `{"messages": [{"id", "caller",
    /// "received", "duration_s", "new"}]}`, oldest first; 404 for an
    /// unknown extension.
    pub async fn list_endpoint(self: Arc<Self>, ext: String) -> Response {
        let task = tokio::task::spawn_blocking(move || {
            self.known(&ext)?;
            self.load(&ext)
        });
        match task.await {
            Ok(Ok(list)) => {
                let messages: Vec<_> = list
                    .into_iter()
                    .map(|m| {
                        json!({
                            "id": m.id,
                            "caller": m.caller,
                            "received": humantime::format_rfc3339_millis(
                                UNIX_EPOCH + Duration::from_millis(m.received_ms)
                            ).to_string(),
                            "duration_s": m.duration_s,
                            "new": m.new,
                        })
                    })
                    .collect();
                Json(json!({ "messages": messages })).into_response()
            }
            Ok(Err(e @ VoicemailError::UnknownExtension(_))) => {
                crate::admin::error(StatusCode::NOT_FOUND, e.to_string())
            }
            Ok(Err(e)) => crate::admin::server_error(e.to_string()),
            Err(_) => crate::admin::server_error("reading the mailbox failed".into()),
        }
    }

    /// `GET /api/v1/voicemail/EXT/ID.wav`: the message's audio.
    pub async fn download_endpoint(self: Arc<Self>, ext: String, file: String) -> Response {
        let not_found = |what: String| crate::admin::error(StatusCode::NOT_FOUND, what);
        let Some(id) = file.strip_suffix(".wav").filter(|id| valid_id(id)) else {
            return not_found(format!(
                "{file:?} is not a message; GET /api/v1/voicemail/{ext} lists them (ID.wav)"
            ));
        };
        let id = id.to_owned();
        let task = tokio::task::spawn_blocking(move || {
            self.known(&ext)?;
            if !self.load(&ext)?.iter().any(|m| m.id == id) {
                return Ok(None);
            }
            let path = self.path_of(&ext, &id);
            std::fs::read(&path).map(Some).map_err(file_error(&path))
        });
        match task.await {
            Ok(Ok(Some(bytes))) => ([(header::CONTENT_TYPE, "audio/wav")], bytes).into_response(),
            Ok(Ok(None)) => not_found(format!("no message {file:?} in that mailbox")),
            Ok(Err(e @ VoicemailError::UnknownExtension(_))) => not_found(e.to_string()),
            Ok(Err(e)) => crate::admin::server_error(e.to_string()),
            Err(_) => crate::admin::server_error("reading the message failed".into()),
        }
    }
}

impl pbx::Mailboxes for Voicemail {
    fn counts(&self, ext: &str) -> MailboxCounts {
        self.counts_now(ext).unwrap_or_else(|e| {
            warn!("voicemail: counts of mailbox {ext}: {e}");
            MailboxCounts::default()
        })
    }
}

/// The `mailbox` Lua module's view.
impl dialplan::Voicemail for Voicemail {
    fn scratch(&self, ext: &str) -> Result<String, HostError> {
        Voicemail::scratch(self, ext).map_err(HostError::new)
    }

    fn save(
        &self,
        ext: &str,
        file: &str,
        caller: &str,
    ) -> Result<Option<VoicemailMessage>, HostError> {
        Voicemail::save(self, ext, file, caller).map_err(HostError::new)
    }

    fn list(&self, ext: &str) -> Result<Vec<VoicemailMessage>, HostError> {
        Voicemail::list(self, ext).map_err(HostError::new)
    }

    fn mark_heard(&self, ext: &str, id: &str) -> Result<bool, HostError> {
        Voicemail::mark_heard(self, ext, id).map_err(HostError::new)
    }

    fn delete(&self, ext: &str, id: &str) -> Result<bool, HostError> {
        Voicemail::delete(self, ext, id).map_err(HostError::new)
    }

    fn counts(&self, ext: &str) -> Result<(u32, u32), HostError> {
        let c = self.counts_now(ext).map_err(HostError::new)?;
        Ok((c.new, c.old))
    }

    fn greeting(&self, ext: &str, kind: Greeting) -> Result<Option<String>, HostError> {
        Ok(Voicemail::greeting(self, ext, kind))
    }

    fn set_greeting(&self, ext: &str, kind: Greeting, file: &str) -> Result<bool, HostError> {
        Voicemail::set_greeting(self, ext, kind, file).map_err(HostError::new)
    }

    fn check_pin(&self, ext: &str, pin: &str) -> Result<Option<bool>, HostError> {
        Voicemail::check_pin(self, ext, pin).map_err(HostError::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ConfigSource};
    use storage::MemoryStorage;

    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);

    impl MailboxListener for Seen {
        fn counts_changed(&self, ext: &str, c: MailboxCounts) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{ext} {}/{}", c.new, c.old));
        }
        fn message_left(&self, m: &NewMessage) {
            self.0
                .lock()
                .unwrap()
                .push(format!("left {} {} {}", m.ext, m.caller, m.wav.is_file()));
        }
    }

    fn mailboxes(dir: &Path) -> (Voicemail, Arc<Seen>) {
        let config = Config::parse(
            ConfigSource::Embedded,
            "[[extension]]\nid = \"1001\"\npassword = \"x\"\nvoicemail_pin = \"1234\"\n[[extension]]\nid = \"1002\"\npassword = \"y\"\n",
        )
        .expect("config");
        let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let registrar =
            registrar::Registrar::new(config.registrar_config(), &[], storage.clone(), [0; 32])
                .expect("registrar");
        let extensions = Arc::new(Extensions::new(&config, storage.clone(), registrar));
        let seen = Arc::new(Seen::default());
        let vm = Voicemail::new(dir.to_owned(), storage, extensions, seen.clone());
        (vm, seen)
    }

    /// Records `secs` of a tone into a fresh scratch file of `ext`.
    fn recorded(vm: &Voicemail, ext: &str, secs: f64) -> String {
        let file = vm.scratch(ext).expect("scratch");
        let path = vm.resolve(&file).expect("a mailbox file");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let samples = (0..(8000.0 * secs) as usize)
            .map(|i| ((i as f64 * 0.5).sin() * 8000.0) as i16)
            .collect();
        media::Recording {
            sample_rate: 8000,
            samples,
        }
        .write_wav(&path)
        .expect("write");
        file
    }

    #[test]
    fn messages_are_saved_heard_and_deleted_and_every_change_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let (vm, seen) = mailboxes(tmp.path());
        let file = recorded(&vm, "1001", 1.5);
        let m = vm.save("1001", &file, "1002").unwrap().expect("kept");
        assert!(m.new && (m.duration_s - 1.5).abs() < 0.05, "{m:?}");
        assert!(
            tmp.path()
                .join("1001")
                .join(format!("{}.wav", m.id))
                .is_file()
        );
        assert!(
            !vm.resolve(&file).unwrap().exists(),
            "the scratch file moved"
        );
        assert_eq!(
            pbx::Mailboxes::counts(&vm, "1001"),
            MailboxCounts { new: 1, old: 0 }
        );
        assert!(vm.mark_heard("1001", &m.id).unwrap());
        assert!(
            vm.mark_heard("1001", &m.id).unwrap(),
            "heard twice: no change"
        );
        assert_eq!(
            pbx::Mailboxes::counts(&vm, "1001"),
            MailboxCounts { new: 0, old: 1 }
        );
        assert!(vm.delete("1001", &m.id).unwrap());
        assert!(!vm.delete("1001", &m.id).unwrap());
        assert!(vm.list("1001").unwrap().is_empty());
        assert_eq!(
            *seen.0.lock().unwrap(),
            ["1001 1/0", "left 1001 1002 true", "1001 0/1", "1001 0/0"]
        );
    }

    #[test]
    fn short_recordings_and_foreign_files_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (vm, seen) = mailboxes(tmp.path());
        let short = recorded(&vm, "1001", 0.5);
        assert!(vm.save("1001", &short, "x").unwrap().is_none());
        assert!(!vm.resolve(&short).unwrap().exists(), "deleted");
        let theirs = recorded(&vm, "1002", 2.0);
        for (ext, file) in [
            ("1001", theirs.as_str()),
            ("1001", "voicemail/1001/greeting-busy.wav"),
            ("1001", "voicemail/1001/tmp-x/y.wav"),
            ("1001", "recordings/tmp-x.wav"),
        ] {
            let e = vm.save(ext, file, "x").unwrap_err().to_string();
            assert!(e.contains("is not a recording of mailbox 1001"), "{e}");
        }
        assert!(matches!(
            vm.save("9999", &theirs, "x"),
            Err(VoicemailError::UnknownExtension(_))
        ));
        assert!(seen.0.lock().unwrap().is_empty());
    }

    #[test]
    fn greetings_and_pins() {
        let tmp = tempfile::tempdir().unwrap();
        let (vm, _) = mailboxes(tmp.path());
        assert_eq!(vm.greeting("1001", Greeting::Busy), None);
        let file = recorded(&vm, "1001", 1.2);
        assert!(vm.set_greeting("1001", Greeting::Busy, &file).unwrap());
        assert_eq!(
            vm.greeting("1001", Greeting::Busy).as_deref(),
            Some("voicemail/1001/greeting-busy.wav")
        );
        assert_eq!(vm.greeting("1001", Greeting::Name), None);
        assert_eq!(vm.check_pin("1001", "1234").unwrap(), Some(true));
        assert_eq!(vm.check_pin("1001", "123").unwrap(), Some(false));
        assert_eq!(vm.check_pin("1002", "1234").unwrap(), None);
        assert!(valid_id("1733520000123-1a2b"));
        assert!(!valid_id("../x") && !valid_id(""));
    }
}
