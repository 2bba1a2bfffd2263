//! The CDR writer (CDRs are written by `pbx`, not by a channel driver):
//! finished calls' records go to storage from one thread, in batches (one
//! commit, one fsync, for everything that ended meanwhile), so a busy PBX
//! does not pay a disk sync per call.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};

use crate::Cdr;
use storage::CdrStore;
use tokio::sync::oneshot;

/// Records queued at most; past it a call's end waits for room on a
/// blocking thread rather than dropping its record.
const QUEUE: usize = 16_384;
/// Records per commit at most.
const BATCH: usize = 512;

enum Job {
    Record(Box<Cdr>),
    Flush(oneshot::Sender<()>),
}

/// The sending side; the writer thread stops when every clone is gone,
/// after writing what was queued.
#[derive(Clone)]
pub struct CdrWriter {
    jobs: SyncSender<Job>,
    observer: Option<CdrObserver>,
}

/// What [`CdrWriter::with_observer`] calls with each record.
pub type CdrObserver = Arc<dyn Fn(&Cdr) + Send + Sync>;

impl CdrWriter {
    /// Starts the writer thread on `store`.
    pub fn start(store: Arc<dyn CdrStore>) -> CdrWriter {
        let (jobs, rx) = mpsc::sync_channel(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("cdr-writer".into())
            .spawn(move || run(store.as_ref(), &rx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the CDR writer thread; CDRs will not be stored");
        }
        CdrWriter {
            jobs,
            observer: None,
        }
    }

    /// Also hands each record to `observer` as it is queued (on the
    /// ending call's task: it must not block; the binary passes it to the
    /// dialplan's `on_call_end` hooks).
    pub fn with_observer(mut self, observer: CdrObserver) -> CdrWriter {
        self.observer = Some(observer);
        self
    }

    /// Queues a record.
    pub fn write(&self, cdr: Cdr) {
        if let Some(observer) = &self.observer {
            observer(&cdr);
        }
        match self.jobs.try_send(Job::Record(Box::new(cdr))) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => {
                let jobs = self.jobs.clone();
                tokio::task::spawn_blocking(move || {
                    if jobs.send(job).is_err() {
                        tracing::error!("CDR writer stopped; a CDR was not stored");
                    }
                });
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!("CDR writer stopped; a CDR was not stored");
            }
        }
    }

    /// Resolves once every record queued before the call is stored.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        let jobs = self.jobs.clone();
        let sent = tokio::task::spawn_blocking(move || jobs.send(Job::Flush(done)).is_ok()).await;
        if matches!(sent, Ok(true)) {
            let _ = flushed.await;
        }
    }
}

fn run(store: &dyn CdrStore, rx: &Receiver<Job>) {
    let mut batch: Vec<serde_json::Value> = Vec::with_capacity(BATCH);
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Record(cdr) => match serde_json::to_value(&*cdr) {
                    Ok(v) => batch.push(v),
                    Err(e) => {
                        tracing::error!(call_id = %cdr.call_id, error = %e, "CDR not serialisable")
                    }
                },
                Job::Flush(done) => waiting.push(done),
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            if let Err(e) = store.append_cdrs(&batch) {
                tracing::error!(records = batch.len(), error = %e, "CDRs not stored");
            }
            batch.clear();
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}
