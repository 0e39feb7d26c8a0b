//! The storage contract of the control plane. `Store` is shaped by use cases (`claim_task`,
//! `create_task`), not by tables: every mutation writes its change and its ledger event in one
//! transaction inside the backend, so no caller can forget the ledger. Backends: SQLite
//! (`mc-store-sqlite`) and PostgreSQL (`mc-store-postgres`), both passing the same conformance story.

use std::time::Duration;

use async_trait::async_trait;
use mc_domain::doc::{DocPatch, NewDoc};
use mc_domain::input::{NewKluster, NewMission, NewTask, ScopePatch, TaskPatch};
use mc_domain::{
    Actor, Doc, DocId, DocKind, Kluster, KlusterId, LedgerEvent, LedgerVerification, Mission, MissionId, Principal,
    Result, Task, TaskId, TaskStatus,
};

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod fusion;

/// What every mutation carries: who does it, under which request id, and (for creating calls)
/// the idempotency key that makes a retry return the first result.
#[derive(Debug, Clone)]
pub struct WriteCtx {
    pub actor: Actor,
    pub request_id: Option<String>,
    pub idempotency: Option<IdempotencyKey>,
    /// Appended to the ledger action (`task.create.overlap_acknowledged`): how the caller got
    /// past a check.
    pub action_suffix: Option<&'static str>,
    /// The rest of a creating call's response (beyond the entity), kept with the idempotency key
    /// so that a retry returns the first response whole.
    pub replay_extra: Option<serde_json::Value>,
}

impl WriteCtx {
    pub fn new(actor: Actor) -> Self {
        Self { actor, request_id: None, idempotency: None, action_suffix: None, replay_extra: None }
    }
}

/// An idempotency key, scoped to the caller, and a fingerprint of the request it was first used
/// with (reusing a key for a different request is refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub scope: String,
    pub key: String,
    pub fingerprint: String,
}

/// Result of a creating call: the entity, and whether it is a replay of an earlier call with the
/// same idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created<T> {
    pub value: T,
    pub replayed: bool,
    /// On a replay: the `replay_extra` recorded by the first call.
    pub extra: Option<serde_json::Value>,
}

/// A page of results and the cursor of the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ScopeFilter {
    pub mission_id: Option<MissionId>,
    pub include_archived: bool,
    pub cursor: Option<String>,
    pub limit: usize,
}

#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub kluster_id: Option<KlusterId>,
    pub mission_id: Option<MissionId>,
    pub statuses: Vec<TaskStatus>,
    pub label: Option<String>,
    pub holder: Option<String>,
    pub cursor: Option<String>,
    pub limit: usize,
}

#[derive(Debug, Clone, Default)]
pub struct DocFilter {
    pub mission_id: Option<MissionId>,
    pub kluster_id: Option<KlusterId>,
    pub kind: Option<DocKind>,
    /// Only docs that declare paths (candidates for path overlap).
    pub with_paths: bool,
    pub cursor: Option<String>,
    pub limit: usize,
}

#[derive(Debug, Clone, Default)]
pub struct ReadyFilter {
    pub kluster_id: Option<KlusterId>,
    pub mission_id: Option<MissionId>,
    pub limit: usize,
}

#[derive(Debug, Clone, Default)]
pub struct LedgerFilter {
    pub entity_id: Option<String>,
    pub entity_kind: Option<String>,
    pub action: Option<String>,
    pub actor: Option<String>,
    pub after_seq: Option<i64>,
    pub limit: usize,
}

/// Health of the backend, for `/readyz` and `mc system doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHealth {
    pub backend: &'static str,
    pub ok: bool,
    pub schema_version: i64,
    pub detail: String,
}

/// Filters of a search; empty means "any".
#[derive(Debug, Clone, Default)]
pub struct SearchFilter {
    pub mission_id: Option<MissionId>,
    pub kluster_id: Option<KlusterId>,
    pub statuses: Vec<TaskStatus>,
    /// Every label listed must be on the task.
    pub labels: Vec<String>,
}

/// A query vector and the model that made it (only vectors of the same model are compared).
#[derive(Debug, Clone)]
pub struct VectorQuery {
    pub model: String,
    pub vector: Vec<f32>,
}

/// A hybrid search: full-text over `text`, nearest neighbours of `vector`, fused.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub text: String,
    pub vector: Option<VectorQuery>,
    pub filter: SearchFilter,
    pub limit: usize,
}

/// A query vector still being computed (see [`Store::search_tasks_while`]); `None` when there is none to be had.
pub type PendingVector<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Option<VectorQuery>> + Send + 'a>>;

/// Polls a pending vector once: its value if it is there already (a vector kept from an earlier request), so that
/// a backend can search in one go instead of in two parts. Polling starts the computation when it is not.
pub fn vector_if_ready(vector: &mut PendingVector<'_>) -> Option<Option<VectorQuery>> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match vector.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

/// One search result with what made it match.
#[derive(Debug, Clone)]
pub struct SearchHit {
    pub task: Task,
    /// Reciprocal-rank-fusion score (higher is better).
    pub score: f32,
    /// Rank (1-based) in the full-text results, if it matched there.
    pub text_rank: Option<usize>,
    /// Rank (1-based) in the vector results, if it matched there.
    pub vector_rank: Option<usize>,
    /// Cosine similarity to the query vector, if it was compared.
    pub cosine: Option<f32>,
}

/// A task whose text has no current vector for a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingJob {
    pub task_id: TaskId,
    pub text: String,
    pub text_hash: String,
}

/// Where the embedding worker's walk over task texts stands for one model. A backend marks every
/// change of a task's text with a number that grows with commit order (a sequence on the embedded
/// profile, the writing transaction's id on PostgreSQL); a walk *sweeps* the marks from the newest
/// down, and a finished sweep remembers below which mark every text had its vector, so that the
/// next sweeps read only what changed since. An idle pass then costs what changed, not every task.
///
/// A caller passes back the cursor a page returned only once it has stored that page's vectors:
/// a page that failed is asked for again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextCursor {
    /// Every text marked below this had its vector when the last sweep ended.
    pub done_below: i64,
    /// Where the sweep under way stands: the (mark, key) of the last text handed out (texts
    /// before it in the sweep's order have been), `None` at the start of a sweep.
    pub after: Option<(i64, String)>,
    /// The first mark not known to be settled when the sweep under way began: `done_below` of
    /// the next sweep.
    pub sweep_top: Option<i64>,
}

/// One page of a walk: the jobs, and the cursor to pass once they are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPage<J> {
    pub jobs: Vec<J>,
    pub next: TextCursor,
}

impl TextCursor {
    /// The cursor after a page read from this one: `top` is the first mark not settled in the
    /// page's snapshot, `last` the (mark, key) of the page's last text when the page was full. A
    /// full page leaves the sweep going on below its last text; a short one ends the sweep.
    pub fn advance(&self, top: i64, last_of_full_page: Option<(i64, String)>) -> TextCursor {
        let sweep_top = self.sweep_top.unwrap_or(top);
        match last_of_full_page {
            Some(last) => TextCursor { done_below: self.done_below, after: Some(last), sweep_top: Some(sweep_top) },
            None => TextCursor { done_below: sweep_top.max(self.done_below), after: None, sweep_top: None },
        }
    }
}

/// A computed vector for a task's text.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub task_id: TaskId,
    pub text_hash: String,
    pub vector: Vec<f32>,
}

/// One kluster found by a search, with what made it match.
#[derive(Debug, Clone)]
pub struct KlusterHit {
    pub kluster: Kluster,
    /// Reciprocal-rank-fusion score (higher is better).
    pub score: f32,
    pub text_rank: Option<usize>,
    pub vector_rank: Option<usize>,
    pub cosine: Option<f32>,
}

/// A kluster whose text (name and description) has no current vector for a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KlusterEmbeddingJob {
    pub kluster_id: KlusterId,
    pub text: String,
    pub text_hash: String,
}

/// A computed vector for a kluster's text.
#[derive(Debug, Clone)]
pub struct KlusterEmbedded {
    pub kluster_id: KlusterId,
    pub text_hash: String,
    pub vector: Vec<f32>,
}

/// One doc found by a search, with what made it match.
#[derive(Debug, Clone)]
pub struct DocHit {
    pub doc: Doc,
    /// Reciprocal-rank-fusion score (higher is better).
    pub score: f32,
    pub text_rank: Option<usize>,
    pub vector_rank: Option<usize>,
    pub cosine: Option<f32>,
}

/// A doc whose text (title and body) has no current vector for a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocEmbeddingJob {
    pub doc_id: DocId,
    pub text: String,
    pub text_hash: String,
}

/// A computed vector for a doc's text.
#[derive(Debug, Clone)]
pub struct DocEmbedded {
    pub doc_id: DocId,
    pub text_hash: String,
    pub vector: Vec<f32>,
}

/// A token as stored: only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub token_hash: String,
    pub principal: Principal,
}

#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    // ---- system ----
    async fn health(&self) -> StoreHealth;

    // ---- tokens ----
    /// Stores a token hash for a principal (no-op if that hash is already there).
    async fn put_token(&self, record: TokenRecord) -> Result<()>;
    /// The principal behind a token hash, unless unknown or revoked.
    async fn principal_for_token(&self, token_hash: &str) -> Result<Option<Principal>>;
    /// Whether any live token exists (decides whether a bootstrap token must be generated).
    async fn has_tokens(&self) -> Result<bool>;

    /// The entity an idempotency key was first used for, as `(kind, id)`; a key used with a
    /// different request fingerprint is refused.
    async fn find_idempotent(&self, key: &IdempotencyKey) -> Result<Option<(String, String)>>;

    // ---- missions ----
    async fn create_mission(&self, ctx: &WriteCtx, new: NewMission) -> Result<Created<Mission>>;
    async fn get_mission(&self, id: MissionId) -> Result<Mission>;
    async fn list_missions(&self, filter: &ScopeFilter) -> Result<Page<Mission>>;
    async fn update_mission(&self, ctx: &WriteCtx, id: MissionId, patch: ScopePatch) -> Result<Mission>;
    async fn archive_mission(&self, ctx: &WriteCtx, id: MissionId) -> Result<Mission>;

    // ---- klusters ----
    async fn create_kluster(&self, ctx: &WriteCtx, new: NewKluster) -> Result<Created<Kluster>>;
    async fn get_kluster(&self, id: KlusterId) -> Result<Kluster>;
    async fn list_klusters(&self, filter: &ScopeFilter) -> Result<Page<Kluster>>;
    async fn update_kluster(&self, ctx: &WriteCtx, id: KlusterId, patch: ScopePatch) -> Result<Kluster>;
    async fn archive_kluster(&self, ctx: &WriteCtx, id: KlusterId) -> Result<Kluster>;

    // ---- tasks ----
    async fn create_task(&self, ctx: &WriteCtx, new: NewTask) -> Result<Created<Task>>;
    async fn get_task(&self, id: TaskId) -> Result<Task>;
    async fn list_tasks(&self, filter: &TaskFilter) -> Result<Page<Task>>;
    /// Open tasks whose dependencies are all done, most urgent first, then oldest.
    async fn ready_tasks(&self, filter: &ReadyFilter) -> Result<Vec<Task>>;
    async fn update_task(&self, ctx: &WriteCtx, id: TaskId, patch: TaskPatch, fence: Option<u64>) -> Result<Task>;
    async fn transition_task(&self, ctx: &WriteCtx, id: TaskId, to: TaskStatus, fence: Option<u64>) -> Result<Task>;

    // ---- ownership ----
    /// Claims a ready task for `ctx.actor` with a lease of `ttl`; the fencing token grows.
    async fn claim_task(&self, ctx: &WriteCtx, id: TaskId, ttl: Duration) -> Result<Task>;
    /// Atomically claims the most urgent ready task of a kluster, or returns `None`.
    async fn claim_next_task(&self, ctx: &WriteCtx, kluster: KlusterId, ttl: Duration) -> Result<Option<Task>>;
    async fn heartbeat_task(&self, ctx: &WriteCtx, id: TaskId, fence: u64, ttl: Duration) -> Result<Task>;
    async fn release_task(&self, ctx: &WriteCtx, id: TaskId, fence: u64) -> Result<Task>;
    async fn complete_task(&self, ctx: &WriteCtx, id: TaskId, fence: u64) -> Result<Task>;
    /// Reopens up to `limit` tasks whose lease has expired, recording each in the ledger.
    async fn reap_expired_leases(&self, limit: usize) -> Result<Vec<Task>>;

    // ---- search ----
    /// Hybrid search: full-text and vector results fused by reciprocal rank; at most `limit`.
    async fn search_tasks(&self, req: &SearchRequest) -> Result<Vec<SearchHit>>;
    /// [`Self::search_tasks`] for a query whose vector is still being computed (`req.vector` is not used): a
    /// backend may search full text while `vector` resolves, so the two latencies overlap instead of adding up.
    /// This default waits for the vector first.
    async fn search_tasks_while(&self, req: &SearchRequest, vector: PendingVector<'_>) -> Result<Vec<SearchHit>> {
        let req = SearchRequest { vector: vector.await, ..req.clone() };
        self.search_tasks(&req).await
    }
    /// Tasks (matching `filter`) that declare paths, newest first: candidates for path overlap.
    async fn tasks_with_paths(&self, filter: &SearchFilter, limit: usize) -> Result<Vec<Task>>;
    /// Up to `limit` tasks whose current text has no vector of `model`.
    async fn pending_embeddings(&self, model: &str, limit: usize) -> Result<Vec<EmbeddingJob>> {
        Ok(self.pending_embeddings_from(model, limit, &TextCursor::default()).await?.jobs)
    }
    /// One page of the embedding worker's walk (see [`TextCursor`]): up to `limit` tasks whose
    /// current text has no vector of `model`, among the texts `from` has not settled, newest
    /// change first.
    async fn pending_embeddings_from(
        &self,
        model: &str,
        limit: usize,
        from: &TextCursor,
    ) -> Result<PendingPage<EmbeddingJob>>;
    /// Stores vectors of `model`; a vector whose text hash is no longer the task's is ignored.
    async fn put_embeddings(&self, model: &str, items: Vec<Embedded>) -> Result<()>;
    /// The stored vector of a task for `model`, if current.
    async fn task_embedding(&self, id: TaskId, model: &str) -> Result<Option<Vec<f32>>>;
    /// Hybrid search over the active klusters (name and description); only `filter.mission_id`
    /// applies.
    async fn search_klusters(&self, req: &SearchRequest) -> Result<Vec<KlusterHit>>;
    /// Up to `limit` klusters whose current text has no vector of `model`.
    async fn pending_kluster_embeddings(&self, model: &str, limit: usize) -> Result<Vec<KlusterEmbeddingJob>>;
    /// Stores kluster vectors of `model`; one whose text hash is no longer current is ignored.
    async fn put_kluster_embeddings(&self, model: &str, items: Vec<KlusterEmbedded>) -> Result<()>;

    // ---- docs and artifacts ----
    /// Creates a doc (version 1) in its kluster's mission, or in `new.mission_id`; a kluster of
    /// another mission than the one named is a validation error on `kluster_id`. The mission and
    /// kluster must be active. Ledger action `doc.create`.
    async fn create_doc(&self, ctx: &WriteCtx, new: NewDoc) -> Result<Created<Doc>>;
    async fn get_doc(&self, id: DocId) -> Result<Doc>;
    /// Newest first.
    async fn list_docs(&self, filter: &DocFilter) -> Result<Page<Doc>>;
    /// Applies `patch` as a new version (an empty patch changes nothing and keeps the version);
    /// `if_version` refuses a change made against another version (`version_conflict`). Ledger
    /// action `doc.update`.
    async fn update_doc(&self, ctx: &WriteCtx, id: DocId, patch: DocPatch, if_version: Option<u64>) -> Result<Doc>;
    /// Hybrid search over docs (title and body); `filter.mission_id` and `filter.kluster_id`
    /// apply, `kind` narrows to one kind.
    async fn search_docs(&self, req: &SearchRequest, kind: Option<DocKind>) -> Result<Vec<DocHit>>;
    /// Up to `limit` docs whose current text has no vector of `model`.
    async fn pending_doc_embeddings(&self, model: &str, limit: usize) -> Result<Vec<DocEmbeddingJob>>;
    /// Stores doc vectors of `model`; one whose text hash is no longer current is ignored.
    async fn put_doc_embeddings(&self, model: &str, items: Vec<DocEmbedded>) -> Result<()>;

    // ---- ledger ----
    async fn list_ledger(&self, filter: &LedgerFilter) -> Result<Vec<LedgerEvent>>;
    /// Walks the whole chain and reports the first bad link.
    async fn verify_ledger(&self) -> Result<LedgerVerification>;
}
