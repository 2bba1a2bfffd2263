//! Group commit for bindings: REGISTERs that finish at the same moment
//! share one storage commit (one fsync for a persistent backend), so the
//! rule "a binding is committed before its 200 OK is sent" costs one disk
//! sync per batch rather than per phone.

use std::sync::Arc;
use std::sync::mpsc;

use storage::{Binding, LocationStore};
use tokio::sync::oneshot;

/// Most REGISTERs one commit carries.
const MAX_BATCH: usize = 512;

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
    while let Ok(first) = queue.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
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
