//! Group commit for bindings: REGISTERs that finish at the same moment
//! share one storage commit (one fsync for a persistent backend), so the
//! rule "a binding is committed before its 200 OK is sent" costs one disk
//! sync per batch rather than per phone.
//!
//! Under load the writer waits [`GATHER`] before it commits, so that the
//! REGISTERs arriving meanwhile, whatever their AOR, join the batch (the
//! `commit_delay` of PostgreSQL): each sync then carries tens of bindings,
//! and the thread wakes once per batch rather than once per REGISTER. A
//! REGISTER arriving alone (the last batch held one) is committed at once.

use std::sync::Arc;
use std::sync::mpsc;

use storage::{Binding, LocationStore};
use tokio::sync::oneshot;

/// Most REGISTERs one commit carries.
const MAX_BATCH: usize = 512;

/// How long the writer gathers a batch when the last one held more than
/// one REGISTER. Small next to SIP's first retransmission (500 ms) and a
/// phone's patience; at 16,000 registrations/s it makes batches of about 20.
const GATHER: std::time::Duration = std::time::Duration::from_millis(1);

struct Job {
    aor: String,
    bindings: Vec<Binding>,
    done: oneshot::Sender<Result<(), String>>,
}

/// A writer thread that applies queued binding sets in batches.
#[derive(Clone)]
pub(crate) struct Committer {
    jobs: mpsc::Sender<Job>,
}

impl Committer {
    /// Starts the writer thread; it ends when every `Committer` is dropped.
    pub(crate) fn spawn(store: Arc<dyn LocationStore>) -> std::io::Result<Committer> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("registrar-commit".into())
            .spawn(move || run(&*store, &queue))?;
        Ok(Committer { jobs })
    }

    /// Replaces the bindings of `aor` with `bindings`; returns once the
    /// batch holding it is durably committed. `Err` carries the storage
    /// error's message.
    pub(crate) async fn commit(&self, aor: String, bindings: Vec<Binding>) -> Result<(), String> {
        let (done, result) = oneshot::channel();
        self.jobs
            .send(Job {
                aor,
                bindings,
                done,
            })
            .map_err(|_| "the storage writer has stopped".to_owned())?;
        result
            .await
            .map_err(|_| "the storage writer has stopped".to_owned())?
    }
}

fn run(store: &dyn LocationStore, queue: &mpsc::Receiver<Job>) {
    let mut last_batch = 0;
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        drain(queue, &mut jobs);
        if last_batch > 1 || jobs.len() > 1 {
            std::thread::sleep(GATHER);
            drain(queue, &mut jobs);
        }
        last_batch = jobs.len();
        let batch: Vec<(String, Vec<Binding>)> = jobs
            .iter_mut()
            .map(|j| (std::mem::take(&mut j.aor), std::mem::take(&mut j.bindings)))
            .collect();
        let result = store.replace_aors(&batch).map_err(|e| e.to_string());
        metrics::histogram!("registrar_commit_batch_size").record(batch.len() as f64);
        for job in jobs {
            let _ = job.done.send(result.clone());
        }
    }
}

/// Moves queued jobs into `jobs`, up to [`MAX_BATCH`].
fn drain(queue: &mpsc::Receiver<Job>, jobs: &mut Vec<Job>) {
    while jobs.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
}
