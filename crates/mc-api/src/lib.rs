//! The wire contract of the control plane's HTTP API: request bodies (strict: unknown fields are
//! refused), response bodies, query strings and the single error envelope. Shared by the server
//! (which checks them into domain inputs) and the typed client.

use mc_domain::input::{NewKluster, NewMission, NewTask, RawTaskFields, ScopePatch, TaskPatch};
use mc_domain::{Error, KlusterId, MissionId, Principal, TaskId, TaskStatus};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use mc_domain::doc::{DocPatch, NewDoc, RawDocFields};
pub use mc_domain::{Doc, DocKind, Kluster, Lease, LedgerEvent, LedgerVerification, Mission, Task};

/// Prefix of every versioned route.
pub const API_PREFIX: &str = "/api/v1";
/// Header in which the caller names the agent identity it acts as.
pub const AGENT_HEADER: &str = "x-mc-agent";
/// Header set on a response replayed for a repeated `Idempotency-Key`.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `task_held`, `validation_failed`.
    pub code: String,
    /// One human sentence.
    pub message: String,
    /// Structured context (the field at fault, the current holder...).
    #[serde(default)]
    pub details: serde_json::Value,
}

/// One page of a list, oldest first; pass `next_cursor` back as `cursor` for the next page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

// ---- missions and klusters ----

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMission {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

impl CreateMission {
    pub fn check(&self) -> Result<NewMission, Error> {
        NewMission::parse(&self.name, self.description.as_deref())
    }
}

/// Changes to a mission or kluster; absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateScope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl UpdateScope {
    pub fn check(&self) -> Result<ScopePatch, Error> {
        ScopePatch::parse(self.name.as_deref(), self.description.as_deref())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKluster {
    pub mission_id: MissionId,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

impl CreateKluster {
    pub fn check(&self) -> Result<NewKluster, Error> {
        NewKluster::parse(self.mission_id, &self.name, self.description.as_deref())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ScopeListQuery {
    /// Only klusters of this mission (ignored for missions).
    pub mission_id: Option<MissionId>,
    /// Include archived entries.
    pub include_archived: Option<bool>,
    pub cursor: Option<String>,
    pub limit: Option<usize>,
}

// ---- tasks ----

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    pub kluster_id: KlusterId,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// 0 (most urgent) to 4; default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<TaskId>,
    /// Globs of the files the task expects to touch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Create even if a blocking duplicate is found (recorded in the ledger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledge_overlap: Option<bool>,
    /// `false` skips overlap detection, for bulk imports (recorded in the ledger as
    /// `task.create.overlap_unchecked`); default `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_overlap: Option<bool>,
}

impl CreateTask {
    pub fn check(&self) -> Result<NewTask, Error> {
        NewTask::parse(
            self.kluster_id,
            RawTaskFields {
                title: Some(&self.title),
                description: self.description.as_deref(),
                priority: self.priority,
                labels: Some(&self.labels),
                paths: Some(&self.paths),
                depends_on: Some(&self.depends_on),
            },
        )
    }
}

/// Changes to a task; absent fields stay as they are. A task under lease needs its current
/// `fencing_token`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTask {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<TaskId>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fencing_token: Option<u64>,
}

impl UpdateTask {
    pub fn check(&self) -> Result<TaskPatch, Error> {
        TaskPatch::parse(RawTaskFields {
            title: self.title.as_deref(),
            description: self.description.as_deref(),
            priority: self.priority,
            labels: self.labels.as_deref(),
            paths: self.paths.as_deref(),
            depends_on: self.depends_on.as_deref(),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionTask {
    pub status: TaskStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fencing_token: Option<u64>,
}

/// A claim: the lease lasts `ttl_seconds` (default 120) unless renewed by a heartbeat.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimTask {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatTask {
    pub fencing_token: u64,
    /// New lease length from now; default: the claim's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

/// Release or complete: both need the current fencing token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FencedRequest {
    pub fencing_token: u64,
}

/// Result of claim-next: the task now held, or none when no ready work is left.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClaimNextResponse {
    pub task: Option<Task>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TaskListQuery {
    pub kluster_id: Option<KlusterId>,
    pub mission_id: Option<MissionId>,
    /// Comma-separated statuses, e.g. `open,claimed`.
    pub status: Option<String>,
    pub label: Option<String>,
    /// Only tasks whose lease is held by this identity.
    pub holder: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReadyQuery {
    pub kluster_id: Option<KlusterId>,
    pub mission_id: Option<MissionId>,
    pub limit: Option<usize>,
}

// ---- overlap and search ----

/// How an existing item relates to a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OverlapRelation {
    /// The same work, said another way.
    Duplicate,
    /// Same area, different work: worth knowing, not a collision.
    Related,
}

/// Existing work that overlaps a new or draft item, with why.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OverlapSuggestion {
    pub id: String,
    /// `task`, `doc` or `artifact`.
    pub kind: String,
    pub title: String,
    pub status: String,
    /// Who holds it now, if anyone.
    pub holder: Option<String>,
    pub relation: OverlapRelation,
    /// 0..1; duplicates rank above related items.
    pub score: f32,
    pub reasons: Vec<String>,
}

/// A created task with the overlap found before it was created.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedTask {
    #[serde(flatten)]
    pub task: Task,
    pub overlap_suggestions: Vec<OverlapSuggestion>,
    /// Degradations, e.g. the embedder was unreachable and only text signals were used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A draft to check for overlap without creating anything. Give `kluster_id` or `mission_id`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverlapDraft {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kluster_id: Option<KlusterId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mission_id: Option<MissionId>,
    pub title: String,
    /// A task's description, or a doc's body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// `doc` or `artifact`: a doc draft, compared with the mission's docs; absent: a task draft,
    /// compared with its live tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<DocKind>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OverlapResponse {
    pub overlap_suggestions: Vec<OverlapSuggestion>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// What to look for (1 to 1000 characters).
    pub q: String,
    pub mission_id: Option<MissionId>,
    pub kluster_id: Option<KlusterId>,
    /// Comma-separated statuses.
    pub status: Option<String>,
    /// Comma-separated labels, all required.
    pub label: Option<String>,
    /// 1 to 100, default 10.
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchHitView {
    pub task: Task,
    /// Fused rank score (higher is better).
    pub score: f32,
    /// Why it matched: text terms, semantic similarity.
    pub why: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchResponse {
    pub items: Vec<SearchHitView>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A search over klusters (their name and description).
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct KlusterSearchQuery {
    /// What to look for (1 to 1000 characters).
    pub q: String,
    pub mission_id: Option<MissionId>,
    /// 1 to 100, default 10.
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KlusterHitView {
    pub kluster: Kluster,
    /// Fused rank score (higher is better).
    pub score: f32,
    /// Why it matched: text terms, semantic similarity.
    pub why: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KlusterSearchResponse {
    pub items: Vec<KlusterHitView>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

// ---- docs and artifacts ----

/// A new doc or artifact. Give `kluster_id` (the mission is its kluster's) or `mission_id` (a
/// mission-wide doc).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mission_id: Option<MissionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kluster_id: Option<KlusterId>,
    /// `doc` (default) or `artifact`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<DocKind>,
    pub title: String,
    /// The text, Markdown or plain, at most 256 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Globs of the files it is about or produces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Create even if a blocking duplicate is found (recorded in the ledger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledge_overlap: Option<bool>,
}

impl CreateDoc {
    pub fn check(&self) -> Result<NewDoc, Error> {
        NewDoc::parse(
            self.mission_id,
            self.kluster_id,
            self.kind.unwrap_or(DocKind::Doc),
            RawDocFields { title: Some(&self.title), body: self.body.as_deref(), paths: Some(&self.paths) },
        )
    }
}

/// Changes to a doc, made as its next version; absent fields stay as they are. `if_version`
/// refuses the change (409 `version_conflict`) unless the doc is still at that version.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_version: Option<u64>,
}

impl UpdateDoc {
    pub fn check(&self) -> Result<DocPatch, Error> {
        DocPatch::parse(RawDocFields {
            title: self.title.as_deref(),
            body: self.body.as_deref(),
            paths: self.paths.as_deref(),
        })
    }
}

/// A created doc with the overlap found before it was created.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedDoc {
    #[serde(flatten)]
    pub doc: Doc,
    pub overlap_suggestions: Vec<OverlapSuggestion>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DocListQuery {
    pub mission_id: Option<MissionId>,
    pub kluster_id: Option<KlusterId>,
    /// `doc` or `artifact`.
    pub kind: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<usize>,
}

/// A search over docs and artifacts (their title and body).
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DocSearchQuery {
    /// What to look for (1 to 1000 characters).
    pub q: String,
    pub mission_id: Option<MissionId>,
    pub kluster_id: Option<KlusterId>,
    /// `doc` or `artifact`.
    pub kind: Option<String>,
    /// 1 to 100, default 10.
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DocHitView {
    pub doc: Doc,
    /// Fused rank score (higher is better).
    pub score: f32,
    /// Why it matched: text terms, semantic similarity.
    pub why: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DocSearchResponse {
    pub items: Vec<DocHitView>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

// ---- ledger ----

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LedgerQuery {
    pub entity_id: Option<String>,
    pub entity_kind: Option<String>,
    /// Action such as `task.claim`.
    pub action: Option<String>,
    pub actor: Option<String>,
    /// Only events after this sequence number (the cursor).
    pub after_seq: Option<i64>,
    pub limit: Option<usize>,
}

// ---- system ----

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub status: String,
    pub storage: StorageHealth,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StorageHealth {
    pub backend: String,
    pub ok: bool,
    pub schema_version: i64,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SystemInfo {
    pub version: String,
    pub api_prefix: String,
    pub server_time: chrono::DateTime<chrono::Utc>,
    pub storage: StorageHealth,
    /// The embedder behind search and overlap detection, and its scorer; absent when embeddings
    /// are off (both then judge on wording alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantic: Option<SemanticInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SemanticInfo {
    /// The id its vectors are stored under.
    pub embedder: String,
    /// `shipped` (fitted for this embedder and compiled in), `calibrated` (fitted for it by this
    /// server on the labelled pairs shipped in the binary) or `calibrating` (until then overlap
    /// answers say so and refuse no creation).
    pub scorer: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub principal: Principal,
    /// The agent identity named by the `x-mc-agent` header, if any.
    pub agent: Option<String>,
}
