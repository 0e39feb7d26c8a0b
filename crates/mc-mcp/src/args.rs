//! The arguments of every tool, as strict serde structs. Their JSON schemas (`inputSchema`) are
//! derived from these same types (see `registry`), so the schema an agent reads and the parser that
//! checks its call cannot drift apart. Doc comments become schema descriptions: keep them short,
//! agents pay for every token.

use schemars::JsonSchema;
use serde::Deserialize;

// Task statuses an agent may filter on (a plain comment: a doc comment would land in every schema).
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusArg {
    Open,
    Claimed,
    InProgress,
    Review,
    Done,
    Blocked,
    Cancelled,
}

impl From<StatusArg> for mc_domain::TaskStatus {
    fn from(s: StatusArg) -> Self {
        match s {
            StatusArg::Open => Self::Open,
            StatusArg::Claimed => Self::Claimed,
            StatusArg::InProgress => Self::InProgress,
            StatusArg::Review => Self::Review,
            StatusArg::Done => Self::Done,
            StatusArg::Blocked => Self::Blocked,
            StatusArg::Cancelled => Self::Cancelled,
        }
    }
}

impl StatusArg {
    /// The status's wire name, as the domain spells it.
    pub fn as_str(self) -> &'static str {
        mc_domain::TaskStatus::from(self).as_str()
    }
}

/// Statuses `update_task` may move a task to (`done`: complete_task; `claimed`: claim_task).
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransitionArg {
    InProgress,
    Review,
    Blocked,
    Open,
    Cancelled,
}

impl TransitionArg {
    pub fn status(self) -> mc_domain::TaskStatus {
        use mc_domain::TaskStatus;
        match self {
            Self::InProgress => TaskStatus::InProgress,
            Self::Review => TaskStatus::Review,
            Self::Blocked => TaskStatus::Blocked,
            Self::Open => TaskStatus::Open,
            Self::Cancelled => TaskStatus::Cancelled,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchTasks {
    /// Words or a sentence.
    pub query: String,
    pub kluster_id: Option<String>,
    pub mission_id: Option<String>,
    pub status: Option<Vec<StatusArg>>,
    /// All required.
    pub labels: Option<Vec<String>>,
    /// Default 10.
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetOverlapSuggestions {
    /// An existing task; or give title with kluster_id or mission_id.
    pub task_id: Option<String>,
    pub kluster_id: Option<String>,
    pub mission_id: Option<String>,
    pub title: Option<String>,
    /// A task's description, or a doc's body.
    pub description: Option<String>,
    /// Globs of files it would touch.
    pub paths: Option<Vec<String>>,
    /// doc or artifact: check a doc draft against the mission's docs.
    pub kind: Option<DocKindArg>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadKlusterWorkspace {
    pub kluster_id: String,
    /// Most tasks per list, default 25.
    #[schemars(range(min = 1, max = 200))]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListMissions {
    pub include_archived: Option<bool>,
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<u32>,
    /// next_cursor of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListKlusters {
    pub mission_id: Option<String>,
    pub include_archived: Option<bool>,
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<u32>,
    /// next_cursor of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskRef {
    pub task_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    pub kluster_id: String,
    pub title: String,
    pub description: Option<String>,
    /// 0 (most urgent) to 4, default 2.
    #[schemars(range(min = 0, max = 4))]
    pub priority: Option<i64>,
    pub labels: Option<Vec<String>>,
    /// Globs of files it will touch.
    pub paths: Option<Vec<String>>,
    /// Task ids that must be done first.
    pub depends_on: Option<Vec<String>>,
    /// Create even though a duplicate exists.
    pub acknowledge_overlap: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTask {
    pub task_id: String,
    pub title: Option<String>,
    pub description: Option<String>,
    #[schemars(range(min = 0, max = 4))]
    pub priority: Option<i64>,
    /// Replaces the labels.
    pub labels: Option<Vec<String>>,
    /// Replaces the path globs.
    pub paths: Option<Vec<String>>,
    /// Replaces the dependencies.
    pub depends_on: Option<Vec<String>>,
    pub status: Option<TransitionArg>,
    /// Omit (tracked for you); only for POST /mcp/call.
    pub fencing_token: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListReadyTasks {
    pub kluster_id: Option<String>,
    pub mission_id: Option<String>,
    /// Default 20.
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimTask {
    pub task_id: String,
    /// Lease length, default 120.
    #[schemars(range(min = 5, max = 86400))]
    pub ttl_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimNextTask {
    pub kluster_id: String,
    /// Lease length, default 120.
    #[schemars(range(min = 5, max = 86400))]
    pub ttl_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatTask {
    pub task_id: String,
    /// New lease length from now, default 120.
    #[schemars(range(min = 5, max = 86400))]
    pub ttl_seconds: Option<u64>,
    /// Omit (tracked for you); only for POST /mcp/call.
    pub fencing_token: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FencedTaskRef {
    pub task_id: String,
    /// Omit (tracked for you); only for POST /mcp/call.
    pub fencing_token: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocKindArg {
    Doc,
    Artifact,
}

impl DocKindArg {
    pub fn kind(self) -> mc_domain::DocKind {
        match self {
            Self::Doc => mc_domain::DocKind::Doc,
            Self::Artifact => mc_domain::DocKind::Artifact,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchDocs {
    /// Words or a sentence.
    pub query: String,
    pub kluster_id: Option<String>,
    pub mission_id: Option<String>,
    pub kind: Option<DocKindArg>,
    /// Default 10.
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DocRef {
    pub doc_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDoc {
    /// The kluster it belongs to; or give mission_id for a mission-wide doc.
    pub kluster_id: Option<String>,
    pub mission_id: Option<String>,
    /// Default doc.
    pub kind: Option<DocKindArg>,
    pub title: String,
    /// Markdown or plain text.
    pub body: Option<String>,
    /// Globs of files it is about or produces.
    pub paths: Option<Vec<String>>,
    /// Create even though a duplicate exists.
    pub acknowledge_overlap: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDoc {
    pub doc_id: String,
    pub title: Option<String>,
    pub body: Option<String>,
    /// Replaces the path globs.
    pub paths: Option<Vec<String>>,
    /// Refuse the change unless the doc is still at this version.
    pub if_version: Option<u64>,
}
