//! The CDR writer (CDRs are written by `pbx`, not by a channel driver):
//! finished calls' records go to storage from one thread, in batches (one
//! commit, one fsync, for everything that ended meanwhile), so a busy PBX
//! does not pay a disk sync per call. The thread waits a short group
//! window after the first record of a batch, so that under load it wakes
//! (and pre-empts the calls' runtime) about once per window rather than
//! once per call.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use crate::Cdr;
use storage::CdrStore;
use tokio::sync::oneshot;

/// Records queued at most; past it a call's end waits for room on a
/// blocking thread rather than dropping its record.
const QUEUE: usize = 16_384;
/// Records per commit at most.
const BATCH: usize = 512;
/// How long the writer waits after the first record of a batch for more
/// to come: the longest a record waits before its commit starts (a
/// `flush` too), and while the writer sleeps, queuing a record wakes
/// nobody.
const GROUP_WINDOW: Duration = Duration::from_millis(10);

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
        // A flush (the server's shutdown waits on one) is served at once.
        if matches!(first, Job::Record(_)) {
            std::thread::sleep(GROUP_WINDOW);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Instant;

    /// Counts what it is given.
    #[derive(Default)]
    struct Counting {
        records: Mutex<Vec<serde_json::Value>>,
        batches: Mutex<usize>,
    }

    impl CdrStore for Counting {
        fn append_cdr(&self, record: &serde_json::Value) -> Result<u64, storage::Error> {
            let mut records = self.records.lock().unwrap();
            records.push(record.clone());
            Ok(records.len() as u64)
        }

        fn append_cdrs(&self, records: &[serde_json::Value]) -> Result<Vec<u64>, storage::Error> {
            *self.batches.lock().unwrap() += 1;
            records.iter().map(|r| self.append_cdr(r)).collect()
        }

        fn recent_cdrs(&self, _: usize) -> Result<Vec<storage::CdrEntry>, storage::Error> {
            Ok(Vec::new())
        }
    }

    fn cdr(i: usize) -> Cdr {
        Cdr::begin(
            format!("call-{i}"),
            "sip:1001@x".into(),
            "sip:1002@x".into(),
            "default".into(),
            1,
        )
    }

    #[tokio::test]
    async fn every_record_is_stored_by_a_flush_and_when_the_writers_go() {
        let store = Arc::new(Counting::default());
        let writer = CdrWriter::start(store.clone());
        for i in 0..1_000 {
            writer.write(cdr(i));
        }
        writer.flush().await;
        assert_eq!(store.records.lock().unwrap().len(), 1_000);
        assert!(*store.batches.lock().unwrap() >= 2, "at most 512 a commit");
        // The last writer gone, what is queued is still stored.
        for i in 1_000..1_100 {
            writer.write(cdr(i));
        }
        drop(writer);
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.records.lock().unwrap().len() < 1_100 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let records = store.records.lock().unwrap();
        assert_eq!(records.len(), 1_100);
        assert_eq!(records[1_099]["call_id"], "call-1099");
    }
}
