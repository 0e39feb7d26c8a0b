//! The MissionControl domain: the vocabulary every other crate speaks, and the rules that do not
//! depend on where state is kept (status transitions, lease and fencing checks, dependency cycles,
//! the ledger hash chain). This crate performs no I/O.

pub mod clock;
pub mod dag;
pub mod doc;
pub mod error;
pub mod id;
pub mod input;
pub mod ledger;
pub mod mission;
pub mod principal;
pub mod task;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use doc::{Doc, DocKind};
pub use error::{Error, Result};
pub use id::{DocId, EventId, KlusterId, MissionId, TaskId};
pub use ledger::{LedgerEvent, LedgerVerification, NewLedgerEvent};
pub use mission::{Kluster, Mission, ScopeStatus};
pub use principal::{Actor, AgentId, Principal, Role};
pub use task::{Lease, Priority, Task, TaskStatus};

/// Limits shared by validation everywhere (API, CLI, store).
pub mod limits {
    /// Longest accepted name or title, in characters.
    pub const MAX_TITLE_CHARS: usize = 300;
    /// Longest accepted description, in bytes.
    pub const MAX_DESCRIPTION_BYTES: usize = 64 * 1024;
    /// Most labels on one task.
    pub const MAX_LABELS: usize = 32;
    /// Longest label, in characters.
    pub const MAX_LABEL_CHARS: usize = 64;
    /// Most declared path globs on one task.
    pub const MAX_PATHS: usize = 64;
    /// Longest path glob, in bytes.
    pub const MAX_PATH_BYTES: usize = 512;
    /// Most direct dependencies of one task.
    pub const MAX_DEPENDENCIES: usize = 64;
    /// Shortest and longest lease a claim may ask for, in seconds.
    pub const MIN_LEASE_SECS: u64 = 5;
    pub const MAX_LEASE_SECS: u64 = 24 * 3600;
    /// Lease length when a claim names none.
    pub const DEFAULT_LEASE_SECS: u64 = 120;
    /// Longest accepted doc or artifact body, in bytes.
    pub const MAX_DOC_BODY_BYTES: usize = 256 * 1024;
    /// Largest page a list may return.
    pub const MAX_PAGE: usize = 500;
    /// Page size when a list names none.
    pub const DEFAULT_PAGE: usize = 50;
}
