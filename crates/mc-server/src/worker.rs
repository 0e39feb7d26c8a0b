//! The loop every background worker runs: a batch per tick, backlogs drained at once, failures
//! logged and retried, stop on shutdown.

use std::time::Duration;

use tokio::sync::watch;

/// Runs `batch` every `every` until `shutdown` changes; a batch that did `full` items of work
/// runs again at once (a backlog drains without waiting for ticks). While passes find nothing
/// to do, the wait doubles up to `idle_max` (a worker whose scan is not free stops paying for it
/// every tick on an idle store); any work found brings it back to `every`. Failures are logged
/// and retried at the next tick. Shared by the background workers.
pub async fn periodic<F, Fut>(
    name: &str,
    every: Duration,
    idle_max: Duration,
    mut shutdown: watch::Receiver<bool>,
    full: usize,
    mut batch: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = mc_domain::Result<usize>>,
{
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => break,
        }
        let mut worked = false;
        loop {
            match batch().await {
                Ok(n) if n >= full && !*shutdown.borrow() => worked = true,
                Ok(n) => {
                    worked |= n > 0;
                    break;
                }
                Err(e) => {
                    tracing::warn!(worker = name, error = %e, "background worker failed; will retry");
                    break;
                }
            }
        }
        wait = if worked || wait.is_zero() { every } else { (wait * 2).min(idle_max.max(every)) };
    }
    tracing::debug!(worker = name, "stopped");
}
