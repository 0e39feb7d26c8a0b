//! The lease reaper: reopens tasks whose lease expired, recording each in the ledger. Split into
//! "one batch" (for tests and drains) and the loop that runs it on an interval.

use std::sync::Arc;
use std::time::Duration;

use mc_store::Store;
use tokio::sync::watch;

/// Most leases reaped in one transaction.
pub const BATCH: usize = 256;

/// Reaps one batch; returns how many leases were reclaimed.
pub async fn reap_once(store: &dyn Store) -> mc_domain::Result<usize> {
    let reaped = store.reap_expired_leases(BATCH).await?;
    for t in &reaped {
        tracing::info!(task = %t.id, "lease expired; task reopened");
    }
    Ok(reaped.len())
}

/// Runs the reaper every `every` until `shutdown` changes.
pub async fn run(store: Arc<dyn Store>, every: Duration, shutdown: watch::Receiver<bool>) {
    crate::worker::periodic("lease reaper", every, every, shutdown, BATCH, || reap_once(store.as_ref())).await;
}
