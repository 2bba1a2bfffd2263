//! Call detail records: an append-only log of finished calls, newest read first.

use serde::{Deserialize, Serialize};

use crate::Error;

/// A stored call detail record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CdrEntry {
    /// Position in the log: 1 for the first record ever appended, then
    /// increasing by one.
    pub id: u64,
    /// The record as it was appended. Its shape belongs to the calls code,
    /// which serialises its own CDR struct with `serde_json::to_value`.
    pub record: serde_json::Value,
}

/// The CDR log.
pub trait CdrStore: Send + Sync {
    /// Appends `record` and returns its id.
    fn append_cdr(&self, record: &serde_json::Value) -> Result<u64, Error>;

    /// Appends several records in one commit (group commit: a persistent
    /// backend syncs once for the batch) and returns their ids, in order.
    /// All or nothing. The default appends them one by one.
    fn append_cdrs(&self, records: &[serde_json::Value]) -> Result<Vec<u64>, Error> {
        records.iter().map(|r| self.append_cdr(r)).collect()
    }

    /// The `limit` most recent records, newest first.
    fn recent_cdrs(&self, limit: usize) -> Result<Vec<CdrEntry>, Error>;
}
