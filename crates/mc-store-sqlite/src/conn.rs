//! Connections: opening them with the right pragmas, the single group-committing writer thread,
//! and the pool of read connections.
//!
//! All writes go through one thread that owns the only write connection. It takes whatever jobs
//! are waiting (up to a batch limit), runs each inside its own savepoint of one transaction, and
//! commits once: concurrent writers share one fsync, and no client ever sees "database is
//! locked". A job's result is delivered only after the commit succeeded, so an acknowledged write
//! is durable.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mc_domain::{Error, Result};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::search::MatchCounts;
use crate::vindex::{self, VecIndex};

/// How hard SQLite syncs at commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync the WAL at every commit: an acknowledged write survives power loss too.
    Full,
    /// fsync at checkpoints only (default): an acknowledged write survives any crash or kill of
    /// the process; power loss may drop the last commits (never corrupts).
    Normal,
}

/// Checkpoints the WAL from its own connection and thread, so the writer never pays for a
/// checkpoint inside a request (the writer's automatic checkpoints are off). Stops when the
/// returned sender is dropped.
pub(crate) fn start_checkpointer(path: &Path, every: std::time::Duration) -> Result<std::sync::mpsc::Sender<()>> {
    let conn = open(path, false, Synchronous::Normal)?;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("mc-sqlite-checkpoint".into())
        .spawn(move || {
            // a message or a dropped sender both mean stop
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
                }
            }
            // a last full checkpoint on the way out keeps the WAL small for the next start
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        })
        .map_err(|e| Error::Internal(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(tx)
}

pub(crate) fn open(path: &Path, read_only: bool, sync: Synchronous) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(db_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(db_err)?;
    let sync = match sync {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    let pragmas = if read_only {
        "PRAGMA foreign_keys = ON; PRAGMA cache_size = -16000; PRAGMA query_only = ON;".to_owned()
    } else {
        format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON; \
             PRAGMA cache_size = -32000; PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 0;"
        )
    };
    conn.execute_batch(&pragmas).map_err(db_err)?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

/// Translates a driver error at the boundary.
pub(crate) fn db_err(e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode;
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => Error::Unavailable(format!("database busy: {e}")),
            ErrorCode::DiskFull | ErrorCode::CannotOpen | ErrorCode::ReadOnly => Error::Unavailable(e.to_string()),
            _ => Error::Internal(e.to_string()),
        },
        _ => Error::Internal(e.to_string()),
    }
}

type Finisher = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Finisher + Send>;

/// Handle to the writer thread.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer; changes to vector tables reach `index` once committed, and the number of
    /// changed rows reaches `counts`.
    pub(crate) fn start(conn: Connection, max_batch: usize, index: Arc<VecIndex>, counts: Arc<MatchCounts>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Job>(8192);
        std::thread::Builder::new()
            .name("mc-sqlite-writer".into())
            .spawn(move || {
                let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
                while let Some(first) = rx.blocking_recv() {
                    batch.push(first);
                    while batch.len() < max_batch {
                        match rx.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    run_batch(&conn, &mut batch, &index, &counts);
                }
                tracing::debug!("sqlite writer stopped");
            })
            .unwrap_or_else(|e| panic!("cannot start the sqlite writer thread: {e}"));
        Self { jobs: tx }
    }

    /// Runs `f` in the writer's transaction and returns its result once committed.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |conn: &Connection| {
            let outcome = in_savepoint(conn, f);
            Box::new(move |commit: std::result::Result<(), String>| {
                let result = match commit {
                    Ok(()) => outcome,
                    Err(e) => Err(Error::Unavailable(format!("commit failed: {e}"))),
                };
                let _ = tx.send(result);
            })
        });
        self.jobs.send(job).await.map_err(|_| Error::Unavailable("the store is shut down".into()))?;
        rx.await.map_err(|_| {
            Error::Unavailable("the write was not applied (no transaction could be started); retry".into())
        })?
    }
}

fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.execute_batch("SAVEPOINT job").map_err(db_err)?;
    let mark = vindex::mark();
    match f(conn) {
        Ok(v) => {
            if let Err(e) = conn.execute_batch("RELEASE job") {
                vindex::rollback_to(mark);
                return Err(db_err(e));
            }
            Ok(v)
        }
        Err(e) => {
            vindex::rollback_to(mark);
            if let Err(rb) = conn.execute_batch("ROLLBACK TO job; RELEASE job") {
                tracing::error!(error = %rb, "rollback to savepoint failed");
            }
            Err(e)
        }
    }
}

fn run_batch(conn: &Connection, batch: &mut Vec<Job>, index: &VecIndex, counts: &MatchCounts) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let msg = e.to_string();
        for job in batch.drain(..) {
            // The job is dropped unrun; its caller sees the channel close as an error.
            drop(job);
        }
        tracing::error!(error = %msg, "cannot begin a write transaction");
        return;
    }
    let finishers: Vec<Finisher> = batch.drain(..).map(|job| job(conn)).collect();
    let commit = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
    let changes = vindex::take();
    match &commit {
        Ok(()) => index.apply(changes),
        Err(e) => {
            tracing::error!(error = %e, "commit failed; rolling back the batch");
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
    // Before any caller hears of its write, so that no search after it reuses a count taken before.
    counts.committed(conn.total_changes());
    for finish in finishers {
        finish(commit.clone());
    }
}

/// A fixed pool of read-only connections used from blocking threads.
#[derive(Debug)]
pub(crate) struct Readers {
    path: PathBuf,
    conns: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl Readers {
    pub(crate) fn open(path: &Path, size: usize) -> Result<Arc<Self>> {
        let conns = (0..size).map(|_| open(path, true, Synchronous::Normal)).collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(Self { path: path.to_owned(), conns: Mutex::new(conns), permits: Semaphore::new(size) }))
    }

    /// Runs `f` on a read connection (one consistent snapshot per statement or transaction).
    pub(crate) async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let _permit = self.permits.acquire().await.map_err(|_| Error::Unavailable("the store is shut down".into()))?;
        let pooled = self.conns.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => open(&self.path, true, Synchronous::Normal)?,
        };
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let out = f(&conn);
            this.conns.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            out
        })
        .await
        .map_err(|e| Error::Internal(format!("read task failed: {e}")))?
    }
}
