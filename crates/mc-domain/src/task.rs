//! Tasks, their status machine, and leases with fencing tokens.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Actor, Error, KlusterId, MissionId, TaskId, Timestamp, limits};

/// Status of a task. The happy path is `open → claimed → in_progress → review → done`; `blocked`
/// and `cancelled` branch off it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Open,
    Claimed,
    InProgress,
    Review,
    Done,
    Blocked,
    Cancelled,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 7] =
        [Self::Open, Self::Claimed, Self::InProgress, Self::Review, Self::Done, Self::Blocked, Self::Cancelled];

    /// Statuses of live work: what overlap detection compares a new item against.
    pub const LIVE: [TaskStatus; 5] = [Self::Open, Self::Claimed, Self::InProgress, Self::Review, Self::Blocked];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Claimed => "claimed",
            Self::InProgress => "in_progress",
            Self::Review => "review",
            Self::Done => "done",
            Self::Blocked => "blocked",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Statuses in which a task is owned by a lease holder.
    pub fn is_leased(self) -> bool {
        matches!(self, Self::Claimed | Self::InProgress | Self::Review)
    }

    /// No transition leaves these.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Cancelled)
    }

    /// Where a task may go from here. `claimed` is reached only through a claim, `open` from a
    /// leased status only through a release (or lease expiry).
    pub fn allowed_next(self) -> &'static [TaskStatus] {
        use TaskStatus::*;
        match self {
            Open => &[Claimed, Blocked, Cancelled],
            Claimed => &[InProgress, Review, Done, Open, Blocked, Cancelled],
            InProgress => &[Review, Done, Open, Blocked, Cancelled],
            Review => &[Done, InProgress, Open, Blocked, Cancelled],
            Blocked => &[Open, Cancelled],
            Done | Cancelled => &[],
        }
    }

    /// Checks `self → to`, naming the allowed targets when refused.
    pub fn check_transition(self, to: TaskStatus) -> Result<(), Error> {
        if self.allowed_next().contains(&to) {
            return Ok(());
        }
        let allowed: Vec<&str> = self.allowed_next().iter().map(|s| s.as_str()).collect();
        let hint = if allowed.is_empty() {
            format!("{} is terminal", self.as_str())
        } else {
            format!("allowed from {}: {}", self.as_str(), allowed.join(", "))
        };
        Err(Error::conflict(
            "illegal_transition",
            format!("cannot move a task from {} to {} ({hint})", self.as_str(), to.as_str()),
            json!({ "from": self.as_str(), "to": to.as_str(), "allowed": allowed }),
        ))
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Priority 0 (most urgent) to 4 (least). Ready work is served most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(try_from = "i64", into = "i64")]
pub struct Priority(u8);

impl Priority {
    pub const HIGHEST: Priority = Priority(0);
    pub const DEFAULT: Priority = Priority(2);
    pub const LOWEST: Priority = Priority(4);

    pub fn new(p: i64) -> Result<Self, Error> {
        if (0..=4).contains(&p) {
            Ok(Self(p as u8))
        } else {
            Err(Error::validation("priority", format!("must be 0 (most urgent) to 4, got {p}")))
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl Default for Priority {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl TryFrom<i64> for Priority {
    type Error = Error;
    fn try_from(p: i64) -> Result<Self, Error> {
        Self::new(p)
    }
}

impl From<Priority> for i64 {
    fn from(p: Priority) -> i64 {
        i64::from(p.0)
    }
}

/// Durable ownership of a task: who holds it, until when, and the fencing token of this tenure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lease {
    pub holder: String,
    pub claimed_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub fencing_token: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Task {
    pub id: TaskId,
    pub mission_id: MissionId,
    pub kluster_id: KlusterId,
    pub title: String,
    pub description: String,
    pub status: TaskStatus,
    pub priority: Priority,
    pub labels: Vec<String>,
    /// Globs of the files this task expects to touch.
    pub paths: Vec<String>,
    pub depends_on: Vec<TaskId>,
    /// Present while the task is claimed, in progress or in review.
    pub lease: Option<Lease>,
    /// Grows by one at every change of holder; a write that carries an older one is refused.
    pub fencing_token: u64,
    pub created_by: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl Task {
    /// Checks that `actor` may mutate this task now. A task under a live lease may be changed only
    /// with its current fencing token and, when the caller names an agent identity, only by the
    /// holder. A task without a lease needs no token (one that is passed must still be current).
    pub fn check_fence(&self, actor: &Actor, fence: Option<u64>, now: Timestamp) -> Result<(), Error> {
        let Some(lease) = &self.lease else {
            return match fence {
                Some(f) if f != self.fencing_token => Err(self.stale_token(f)),
                _ => Ok(()),
            };
        };
        if lease.expires_at <= now {
            return Err(Error::conflict(
                "lease_expired",
                format!(
                    "the lease of {} on task {} expired at {}; claim the task again",
                    lease.holder,
                    self.id,
                    lease.expires_at.format("%H:%M:%SZ")
                ),
                self.lease_details(),
            ));
        }
        if actor.agent.is_some() && actor.holder() != lease.holder {
            return Err(self.held_by_other());
        }
        match fence {
            None => Err(Error::conflict(
                "fencing_token_required",
                format!("task {} is held by {}; pass its fencing token to change it", self.id, lease.holder),
                self.lease_details(),
            )),
            Some(f) if f != lease.fencing_token => Err(self.stale_token(f)),
            Some(_) => Ok(()),
        }
    }

    /// Whether the lease (if any) is still live at `now`.
    pub fn has_live_lease(&self, now: Timestamp) -> bool {
        self.lease.as_ref().is_some_and(|l| l.expires_at > now)
    }

    /// The conflict returned to an agent that wants a task someone else holds.
    pub fn held_by_other(&self) -> Error {
        let (holder, until) = match &self.lease {
            Some(l) => (l.holder.as_str(), l.expires_at.format("%H:%M:%SZ").to_string()),
            None => ("nobody", String::from("-")),
        };
        Error::conflict(
            "task_held",
            format!("task {} is held by {holder} until {until}; call claim-next for other work", self.id),
            self.lease_details(),
        )
    }

    fn stale_token(&self, given: u64) -> Error {
        let holder = self.lease.as_ref().map(|l| l.holder.as_str()).unwrap_or("nobody");
        Error::conflict(
            "stale_fencing_token",
            format!(
                "fencing token {given} is stale: task {} is at token {} (held by {holder})",
                self.id, self.fencing_token
            ),
            self.lease_details(),
        )
    }

    fn lease_details(&self) -> serde_json::Value {
        match &self.lease {
            Some(l) => json!({
                "task_id": self.id,
                "holder": l.holder,
                "expires_at": l.expires_at,
                "fencing_token": l.fencing_token,
            }),
            None => json!({ "task_id": self.id, "holder": null, "fencing_token": self.fencing_token }),
        }
    }
}

/// The text of a task that gets embedded and indexed for similarity: the title, then the
/// description.
pub fn embedding_text(title: &str, description: &str) -> String {
    if description.trim().is_empty() {
        title.trim().to_owned()
    } else {
        format!("{}. {}", title.trim(), description.trim())
    }
}

impl Task {
    /// See [`embedding_text`].
    pub fn embedding_text(&self) -> String {
        embedding_text(&self.title, &self.description)
    }
}

/// Checks and normalises labels: trimmed, lower-cased, deduplicated, sorted.
pub fn check_labels(labels: &[String]) -> Result<Vec<String>, Error> {
    if labels.len() > limits::MAX_LABELS {
        return Err(Error::validation("labels", format!("at most {} labels", limits::MAX_LABELS)));
    }
    let mut out = Vec::with_capacity(labels.len());
    for (i, l) in labels.iter().enumerate() {
        let l = l.trim().to_lowercase();
        let field = format!("labels[{i}]");
        if l.is_empty() {
            return Err(Error::validation(field, "must not be empty"));
        }
        if l.chars().count() > limits::MAX_LABEL_CHARS {
            return Err(Error::validation(field, format!("must be at most {} characters", limits::MAX_LABEL_CHARS)));
        }
        if l.chars().any(|c| c.is_control() || c == ',') {
            return Err(Error::validation(field, "must not contain commas or control characters"));
        }
        out.push(l);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Checks declared path globs: relative, no `..` segment, no NUL, bounded length.
pub fn check_paths(paths: &[String]) -> Result<Vec<String>, Error> {
    if paths.len() > limits::MAX_PATHS {
        return Err(Error::validation("paths", format!("at most {} paths", limits::MAX_PATHS)));
    }
    let mut out = Vec::with_capacity(paths.len());
    for (i, p) in paths.iter().enumerate() {
        let p = p.trim();
        let field = format!("paths[{i}]");
        if p.is_empty() {
            return Err(Error::validation(field, "must not be empty"));
        }
        if p.len() > limits::MAX_PATH_BYTES {
            return Err(Error::validation(field, format!("must be at most {} bytes", limits::MAX_PATH_BYTES)));
        }
        if p.starts_with('/') || p.contains('\\') || p.chars().any(char::is_control) {
            return Err(Error::validation(
                field,
                "must be a relative glob with `/` separators (like `src/api/**/*.rs`)",
            ));
        }
        if p.split('/').any(|seg| seg == "..") {
            return Err(Error::validation(field, "must not contain a `..` segment"));
        }
        out.push(p.to_owned());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Checks a lease length in seconds.
pub fn check_ttl(secs: Option<u64>) -> Result<u64, Error> {
    let s = secs.unwrap_or(limits::DEFAULT_LEASE_SECS);
    if !(limits::MIN_LEASE_SECS..=limits::MAX_LEASE_SECS).contains(&s) {
        return Err(Error::validation(
            "ttl_seconds",
            format!("must be between {} and {} seconds, got {s}", limits::MIN_LEASE_SECS, limits::MAX_LEASE_SECS),
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentId, Principal, Role, clock::from_millis};

    fn task_with_lease(holder: &str, token: u64, expires_ms: i64) -> Task {
        let t0 = from_millis(0);
        Task {
            id: TaskId::new(),
            mission_id: MissionId::new(),
            kluster_id: KlusterId::new(),
            title: "t".into(),
            description: String::new(),
            status: TaskStatus::Claimed,
            priority: Priority::DEFAULT,
            labels: vec![],
            paths: vec![],
            depends_on: vec![],
            lease: Some(Lease {
                holder: holder.into(),
                claimed_at: t0,
                expires_at: from_millis(expires_ms),
                fencing_token: token,
            }),
            fencing_token: token,
            created_by: "admin".into(),
            created_at: t0,
            updated_at: t0,
        }
    }

    fn agent(name: &str) -> Actor {
        Actor {
            principal: Principal { name: "admin".into(), role: Role::Admin },
            agent: Some(AgentId::parse(name).expect("valid agent")),
        }
    }

    #[test]
    fn illegal_transitions_name_the_allowed_ones() {
        let e = TaskStatus::Open.check_transition(TaskStatus::Done).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "cannot move a task from open to done (allowed from open: claimed, blocked, cancelled)"
        );
        let e = TaskStatus::Done.check_transition(TaskStatus::Open).expect_err("terminal");
        assert!(e.to_string().contains("done is terminal"));
        assert!(TaskStatus::InProgress.check_transition(TaskStatus::Review).is_ok());
    }

    #[test]
    fn fencing_rules() {
        let t = task_with_lease("a1", 3, 10_000);
        let now = from_millis(5_000);
        assert!(t.check_fence(&agent("a1"), Some(3), now).is_ok());
        assert_eq!(t.check_fence(&agent("a1"), Some(2), now).expect_err("stale").code(), "stale_fencing_token");
        assert_eq!(t.check_fence(&agent("a1"), None, now).expect_err("missing").code(), "fencing_token_required");
        let other = t.check_fence(&agent("b2"), Some(3), now).expect_err("other holder");
        assert_eq!(other.code(), "task_held");
        assert!(other.to_string().contains("held by a1"), "{other}");
        let late = t.check_fence(&agent("a1"), Some(3), from_millis(10_000)).expect_err("expired");
        assert_eq!(late.code(), "lease_expired");
    }

    #[test]
    fn labels_and_paths_are_normalised_and_checked() {
        let l = check_labels(&["Backend".into(), " api ".into(), "backend".into()]).expect("ok");
        assert_eq!(l, vec!["api", "backend"]);
        assert_eq!(
            check_paths(&["src/**/*.rs".into(), "../etc".into()]).expect_err("dotdot").to_string(),
            "paths[1]: must not contain a `..` segment"
        );
        assert!(check_paths(&["/abs".into()]).is_err());
    }

    #[test]
    fn priority_and_ttl_bounds() {
        assert!(Priority::new(5).is_err());
        assert_eq!(Priority::new(0).expect("ok"), Priority::HIGHEST);
        assert_eq!(check_ttl(None).expect("default"), 120);
        assert!(check_ttl(Some(1)).is_err());
    }
}
