//! The loop every background worker runs: a batch per tick, backlogs drained at once, failures
//! logged and retried, stop on shutdown.

use std::time::Duration;

use tokio::sync::watch;

/// Runs `batch` every `every` until `shutdown` changes; a batch that did `full` items of work
/// runs again at once (a backlog drains without waiting for ticks). Failures are logged and
/// retried at the next tick. Shared by the background workers.
pub async fn periodic<F, Fut>(
    name: &str,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
    full: usize,
    mut batch: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = mc_domain::Result<usize>>,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => break,
        }
        loop {
            match batch().await {
                Ok(n) if n >= full && !*shutdown.borrow() => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(worker = name, error = %e, "background worker failed; will retry");
                    break;
                }
            }
        }
    }
    tracing::debug!(worker = name, "stopped");
}
