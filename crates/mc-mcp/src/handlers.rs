//! What each tool does: check its arguments, call the control plane through `mc-client`, shape the
//! answer (`views`). One function per tool, dispatched by name from `call`; every transport calls
//! `call`, so no tool is written twice.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use mc_api::{
    ClaimTask, CreateDoc, CreateTask, DocListQuery, DocSearchQuery, FencedRequest, HeartbeatTask, LedgerQuery,
    OverlapDraft, ReadyQuery, ScopeListQuery, SearchQuery, Task, TaskListQuery, TransitionTask, UpdateDoc, UpdateTask,
};
use mc_client::{Client, ClientError};
use mc_domain::{DocId, KlusterId, MissionId, TaskId};
use rmcp::model::JsonObject;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::args;
use crate::error::ToolError;
use crate::views::{self, EventView, KlusterView, MissionView, TaskDetail, TaskView};

/// Largest arguments object a call may carry (the API's default body limit): bigger ones are
/// refused before anything is sent.
pub const MAX_ARGS_BYTES: usize = 1024 * 1024;
/// Tasks per list in a workspace unless the call says otherwise.
const WORKSPACE_LIMIT: u32 = 25;
/// Ledger entries a workspace scans for the kluster's recent events.
const LEDGER_WINDOW: i64 = 500;
/// Recent events a workspace shows.
const WORKSPACE_EVENTS: usize = 15;
/// Tasks outside the live lists a workspace looks up to place their recent events.
const MAX_LOOKUPS: usize = 20;

/// Who makes a call: the control plane client carrying the caller's token and agent identity.
#[derive(Debug)]
pub struct Caller {
    pub client: Client,
    /// Key of this caller's leases in the session's memory (the agent, plus the credentials over
    /// HTTP, where one session could in principle change headers).
    pub lease_key: String,
    /// How a caller without an agent identity gets one, in this transport's terms.
    pub agent_hint: &'static str,
}

impl Caller {
    fn agent(&self) -> Option<&str> {
        self.client.agent()
    }
}

/// What a session remembers between calls: the fencing tokens of the leases its agent took, so
/// the agent never passes them by hand, and where the ledger's head was last seen.
#[derive(Debug, Default)]
pub struct SessionState {
    leases: Mutex<HashMap<(String, TaskId), u64>>,
    ledger_head: AtomicI64,
}

impl SessionState {
    fn token(&self, key: &str, task: TaskId) -> Option<u64> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner()).get(&(key.to_owned(), task)).copied()
    }

    /// Brings the memory in line with the server's answer: the token is kept while the caller's
    /// agent holds the lease, forgotten otherwise.
    fn record(&self, caller: &Caller, t: &Task) {
        let held = t.lease.as_ref().filter(|l| Some(l.holder.as_str()) == caller.agent()).map(|l| l.fencing_token);
        let mut map = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        let key = (caller.lease_key.clone(), t.id);
        match held {
            Some(token) => map.insert(key, token),
            None => map.remove(&key),
        };
    }

    fn forget(&self, caller: &Caller, task: TaskId) {
        self.leases.lock().unwrap_or_else(|e| e.into_inner()).remove(&(caller.lease_key.clone(), task));
    }
}

/// Runs the tool `name` with `args`. Unknown names are refused here too (404), although the MCP
/// transports refuse them earlier as protocol errors.
pub async fn call(
    state: &SessionState,
    caller: &Caller,
    name: &str,
    args: Option<JsonObject>,
) -> Result<Value, ToolError> {
    let args = args.unwrap_or_default();
    let size = serde_json::to_vec(&args).map(|v| v.len()).unwrap_or(0);
    if size > MAX_ARGS_BYTES {
        return Err(ToolError::new(
            413,
            "arguments_too_large",
            format!("the arguments of {name} are {size} bytes; the limit is {MAX_ARGS_BYTES}: send less text"),
            json!({ "size": size, "limit": MAX_ARGS_BYTES }),
        ));
    }
    let cx = Cx { state, caller, tool: name };
    match name {
        "load_kluster_workspace" => cx.load_kluster_workspace(parse(name, args)?).await,
        "get_task" => cx.get_task(parse(name, args)?).await,
        "list_ready_tasks" => cx.list_ready_tasks(parse(name, args)?).await,
        "claim_next_task" => cx.claim_next_task(parse(name, args)?).await,
        "claim_task" => cx.claim_task(parse(name, args)?).await,
        "heartbeat_task" => cx.heartbeat_task(parse(name, args)?).await,
        "release_task" => cx.release_task(parse(name, args)?).await,
        "complete_task" => cx.complete_task(parse(name, args)?).await,
        "search_tasks" => cx.search_tasks(parse(name, args)?).await,
        "get_overlap_suggestions" => cx.get_overlap_suggestions(parse(name, args)?).await,
        "list_missions" => cx.list_missions(parse(name, args)?).await,
        "list_klusters" => cx.list_klusters(parse(name, args)?).await,
        "create_task" => cx.create_task(parse(name, args)?).await,
        "update_task" => cx.update_task(parse(name, args)?).await,
        "search_docs" => cx.search_docs(parse(name, args)?).await,
        "get_doc" => cx.get_doc(parse(name, args)?).await,
        "create_doc" => cx.create_doc(parse(name, args)?).await,
        "update_doc" => cx.update_doc(parse(name, args)?).await,
        _ => Err(unknown_tool(name)),
    }
}

/// The refusal of a tool that does not exist.
pub fn unknown_tool(name: &str) -> ToolError {
    let known: Vec<&str> = crate::registry::TOOLS.iter().map(|t| t.name).collect();
    ToolError::new(
        404,
        "unknown_tool",
        format!("there is no tool `{name}`; tools: {}", known.join(", ")),
        json!({ "tool": name }),
    )
}

/// Parses the arguments into `T`, naming the argument at fault in plain words.
fn parse<T: DeserializeOwned>(tool: &str, args: JsonObject) -> Result<T, ToolError> {
    serde_path_to_error::deserialize(Value::Object(args)).map_err(|e| {
        let path = e.path().to_string();
        let message = plain(&e.inner().to_string());
        let field = if path == "." { field_in(&message).unwrap_or("arguments") } else { path.as_str() };
        let mut err = ToolError::argument(field, &message);
        err.message = format!("{tool}: {}; see its input schema", err.message);
        err
    })
}

/// serde's words for types, in the words of a JSON schema.
fn plain(message: &str) -> String {
    let mut m = message.to_owned();
    for (rust, json) in [
        ("expected u32", "expected a non-negative integer"),
        ("expected u64", "expected a non-negative integer"),
        ("expected i64", "expected an integer"),
        ("expected a sequence", "expected an array"),
        ("expected a map", "expected an object"),
        ("expected struct ", "expected an object "),
    ] {
        m = m.replace(rust, json);
    }
    m
}

/// The field named in a root-level error ("missing field `task_id`").
fn field_in(message: &str) -> Option<&str> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(&message[start..start + len])
}

fn parse_id<T: FromStr>(field: &str, entity: &str, raw: &str) -> Result<T, ToolError> {
    raw.trim()
        .parse::<T>()
        .map_err(|_| ToolError::argument(field, format!("`{raw}` is not a valid {entity} id (a UUID)")))
}

fn task_id(field: &str, raw: &str) -> Result<TaskId, ToolError> {
    parse_id(field, "task", raw)
}

fn kluster_id(field: &str, raw: &str) -> Result<KlusterId, ToolError> {
    parse_id(field, "kluster", raw)
}

fn mission_id(field: &str, raw: &str) -> Result<MissionId, ToolError> {
    parse_id(field, "mission", raw)
}

fn doc_id(field: &str, raw: &str) -> Result<DocId, ToolError> {
    parse_id(field, "doc", raw)
}

fn opt<T>(raw: Option<String>, f: impl FnOnce(&str) -> Result<T, ToolError>) -> Result<Option<T>, ToolError> {
    raw.as_deref().map(f).transpose()
}

fn task_ids(field: &str, raw: Vec<String>) -> Result<Vec<TaskId>, ToolError> {
    raw.iter().enumerate().map(|(i, s)| task_id(&format!("{field}[{i}]"), s)).collect()
}

fn to_value(v: impl Serialize) -> Result<Value, ToolError> {
    serde_json::to_value(v)
        .map_err(|e| ToolError::new(500, "internal", format!("cannot encode the result: {e}"), Value::Null))
}

/// A score to two decimals (as f64, so that JSON shows `0.02`, not the f32 `0.019999999552965164`).
pub(crate) fn round(score: f32) -> f64 {
    (f64::from(score) * 100.0).round() / 100.0
}

/// One call in progress.
struct Cx<'a> {
    state: &'a SessionState,
    caller: &'a Caller,
    tool: &'a str,
}

impl Cx<'_> {
    fn client(&self) -> &Client {
        &self.caller.client
    }

    fn agent(&self) -> Option<&str> {
        self.caller.agent()
    }

    fn err(&self, e: ClientError) -> ToolError {
        ToolError::from_client(e, self.tool)
    }

    /// The agent identity, which ownership tools cannot do without.
    fn require_agent(&self) -> Result<&str, ToolError> {
        self.agent().ok_or_else(|| ToolError::no_agent(self.tool, self.caller.agent_hint))
    }

    /// The fencing token of a lease this session's agent took: passed explicitly, or remembered.
    fn fence(&self, task: TaskId, explicit: Option<u64>) -> Result<u64, ToolError> {
        if let Some(f) = explicit.or_else(|| self.state.token(&self.caller.lease_key, task)) {
            return Ok(f);
        }
        Err(ToolError::new(
            409,
            "no_lease_in_session",
            format!(
                "this session holds no lease on task {task}: call claim_task first (if your agent already holds it, \
                 that renews the lease and this session takes it over), or claim_next_task for other work"
            ),
            json!({ "task_id": task }),
        ))
    }

    /// A task after an ownership call: remembered or forgotten, then shown.
    fn owned(&self, t: &Task) -> Result<Value, ToolError> {
        self.state.record(self.caller, t);
        to_value(TaskView::new(t, true, self.agent()))
    }

    /// An ownership call failed: a lease the server says is gone is forgotten too.
    fn ownership_err(&self, task: TaskId, e: ClientError) -> ToolError {
        if matches!(e.code(), Some("stale_fencing_token" | "lease_expired" | "task_held")) {
            self.state.forget(self.caller, task);
        }
        self.err(e)
    }

    async fn search_tasks(&self, a: args::SearchTasks) -> Result<Value, ToolError> {
        let status = a.status.filter(|s| !s.is_empty()).map(|s| {
            let names: Vec<&str> = s.iter().map(|st| st.as_str()).collect();
            names.join(",")
        });
        let q = SearchQuery {
            q: a.query,
            mission_id: opt(a.mission_id, |s| mission_id("mission_id", s))?,
            kluster_id: opt(a.kluster_id, |s| kluster_id("kluster_id", s))?,
            status,
            label: a.labels.filter(|l| !l.is_empty()).map(|l| l.join(",")),
            limit: a.limit.map(|l| l as usize),
        };
        let r = self.client().search(&q).await.map_err(|e| self.err(e))?;
        #[derive(Serialize)]
        struct Hit {
            #[serde(flatten)]
            task: TaskView,
            score: f64,
            why: Vec<String>,
        }
        let items: Vec<Hit> = r
            .items
            .iter()
            .map(|h| Hit {
                task: TaskView::new(&h.task, true, self.agent()),
                score: round(h.score),
                why: h.why.clone(),
            })
            .collect();
        with_warnings(json!({ "items": to_value(items)? }), r.warnings)
    }

    async fn get_overlap_suggestions(&self, a: args::GetOverlapSuggestions) -> Result<Value, ToolError> {
        let r = match a.task_id {
            Some(id) => {
                if a.title.is_some() || a.kluster_id.is_some() || a.mission_id.is_some() || a.kind.is_some() {
                    return Err(ToolError::argument(
                        "task_id",
                        "give either task_id or a draft (title with kluster_id or mission_id), not both",
                    ));
                }
                let id = task_id("task_id", &id)?;
                self.client().task_overlap(id).await.map_err(|e| self.err(e))?
            }
            None => {
                let title = a.title.ok_or_else(|| {
                    ToolError::argument("title", "give task_id, or a draft title with kluster_id or mission_id")
                })?;
                if a.kluster_id.is_none() && a.mission_id.is_none() {
                    return Err(ToolError::argument("kluster_id", "a draft needs kluster_id or mission_id"));
                }
                let draft = OverlapDraft {
                    kluster_id: opt(a.kluster_id, |s| kluster_id("kluster_id", s))?,
                    mission_id: opt(a.mission_id, |s| mission_id("mission_id", s))?,
                    title,
                    description: a.description,
                    paths: a.paths.unwrap_or_default(),
                    kind: a.kind.map(args::DocKindArg::kind),
                };
                self.client().overlap_draft(&draft).await.map_err(|e| self.err(e))?
            }
        };
        with_warnings(json!({ "overlap_suggestions": views::suggestions(&r.overlap_suggestions) }), r.warnings)
    }

    async fn load_kluster_workspace(&self, a: args::LoadKlusterWorkspace) -> Result<Value, ToolError> {
        let k = kluster_id("kluster_id", &a.kluster_id)?;
        let limit = a.limit.unwrap_or(WORKSPACE_LIMIT).clamp(1, 200) as usize;
        let c = self.client();
        let list = |status: &str| TaskListQuery {
            kluster_id: Some(k),
            status: Some(status.to_owned()),
            limit: Some(limit + 1),
            ..Default::default()
        };
        let ready_q = ReadyQuery { kluster_id: Some(k), mission_id: None, limit: Some(limit + 1) };
        let (claimed_q, waiting_q) = (list("claimed,in_progress,review"), list("open,blocked"));
        let docs_q = DocListQuery { kluster_id: Some(k), limit: Some(limit + 1), ..Default::default() };
        let (kluster, ready, claimed, waiting, docs) = tokio::join!(
            c.get_kluster(k),
            c.ready_tasks(&ready_q),
            c.list_tasks(&claimed_q),
            c.list_tasks(&waiting_q),
            c.list_docs(&docs_q),
        );
        let kluster = kluster.map_err(|e| self.err(e))?;
        let docs = docs.map_err(|e| self.err(e))?.items;
        let (ready, claimed, waiting) = (
            ready.map_err(|e| self.err(e))?.items,
            claimed.map_err(|e| self.err(e))?.items,
            waiting.map_err(|e| self.err(e))?.items,
        );
        let ready_ids: HashSet<TaskId> = ready.iter().map(|t| t.id).collect();
        let waiting: Vec<&Task> = waiting.iter().filter(|t| !ready_ids.contains(&t.id)).collect();

        let mut known: HashSet<String> = HashSet::from([k.to_string(), kluster.mission_id.to_string()]);
        known.extend(ready.iter().chain(claimed.iter()).chain(waiting.iter().copied()).map(|t| t.id.to_string()));
        known.extend(docs.iter().map(|d| d.id.to_string()));
        let (mission, events) = tokio::join!(c.get_mission(kluster.mission_id), self.recent_events(k, known));
        let mission = mission.map_err(|e| self.err(e))?;
        let events = events.map_err(|e| self.err(e))?;

        let agent = self.agent();
        let show =
            |ts: &[&Task]| -> Vec<TaskView> { ts.iter().take(limit).map(|t| TaskView::new(t, false, agent)).collect() };
        let ready_refs: Vec<&Task> = ready.iter().collect();
        let claimed_refs: Vec<&Task> = claimed.iter().collect();
        let mut truncated = Vec::new();
        let counts = [
            ("ready", ready_refs.len()),
            ("claimed", claimed_refs.len()),
            ("waiting", waiting.len()),
            ("docs", docs.len()),
        ];
        for (name, n) in counts {
            if n > limit {
                truncated.push(name);
            }
        }
        let mut out = json!({
            "kluster": KlusterView::from(&kluster),
            "mission": MissionView::from(&mission),
            "you": agent,
            "ready": show(&ready_refs),
            "claimed": show(&claimed_refs),
            "waiting": show(&waiting),
            "docs": docs.iter().take(limit).map(views::doc_line).collect::<Vec<_>>(),
            "recent_events": events,
        });
        if !truncated.is_empty() {
            out["truncated"] = json!(truncated);
        }
        Ok(out)
    }

    /// The latest events of kluster `k` (on it, its mission, and its tasks: the `known` live ones,
    /// plus finished ones looked up) among the last `LEDGER_WINDOW` ledger entries, newest last.
    /// The ledger lists oldest first and has no kluster filter, so its head is found first by
    /// galloping and bisecting over `after_seq`, starting from where this session last saw it.
    async fn recent_events(&self, k: KlusterId, mut known: HashSet<String>) -> Result<Vec<EventView>, ClientError> {
        let c = self.client();
        let first_after = |after: i64| async move {
            let q = LedgerQuery { after_seq: Some(after), limit: Some(1), ..Default::default() };
            c.list_ledger(&q).await.map(|p| p.items.first().map(|e| e.seq))
        };
        // Invariant: an event with seq >= lo exists (or lo == 0); none has seq > hi.
        let mut lo = self.state.ledger_head.load(Ordering::Relaxed).max(0);
        let mut step = LEDGER_WINDOW / 2;
        let mut hi = loop {
            match first_after(lo.saturating_add(step)).await? {
                Some(seq) => {
                    lo = seq;
                    step = step.saturating_mul(2);
                }
                None => break lo.saturating_add(step),
            }
        };
        while hi - lo > LEDGER_WINDOW / 2 {
            let mid = lo + (hi - lo) / 2;
            match first_after(mid).await? {
                Some(seq) => lo = seq,
                None => hi = mid,
            }
        }
        self.state.ledger_head.fetch_max(lo, Ordering::Relaxed);
        let q = LedgerQuery {
            after_seq: Some((hi - LEDGER_WINDOW).max(0)),
            limit: Some(LEDGER_WINDOW as usize),
            ..Default::default()
        };
        let window = c.list_ledger(&q).await?.items;

        // Tasks that left the live lists (done, cancelled) are looked up, newest first, bounded.
        let mut unknown: Vec<TaskId> = Vec::new();
        for e in window.iter().rev() {
            if unknown.len() == MAX_LOOKUPS {
                break;
            }
            if e.entity_kind == "task"
                && !known.contains(&e.entity_id)
                && let Ok(id) = e.entity_id.parse::<TaskId>()
                && !unknown.contains(&id)
            {
                unknown.push(id);
            }
        }
        let mut lookups = tokio::task::JoinSet::new();
        for id in unknown {
            let c = c.clone();
            lookups.spawn(async move { c.get_task(id).await });
        }
        while let Some(done) = lookups.join_next().await {
            if let Ok(Ok(t)) = done
                && t.kluster_id == k
            {
                known.insert(t.id.to_string());
            }
        }

        let mut events: Vec<EventView> = window
            .iter()
            .rev()
            .filter(|e| known.contains(&e.entity_id))
            .take(WORKSPACE_EVENTS)
            .map(EventView::from)
            .collect();
        events.reverse();
        Ok(events)
    }

    async fn list_missions(&self, a: args::ListMissions) -> Result<Value, ToolError> {
        let q = ScopeListQuery {
            mission_id: None,
            include_archived: a.include_archived,
            cursor: a.cursor,
            limit: a.limit.map(|l| l as usize),
        };
        let p = self.client().list_missions(&q).await.map_err(|e| self.err(e))?;
        let items: Vec<MissionView> = p.items.iter().map(MissionView::from).collect();
        page(items, p.next_cursor)
    }

    async fn list_klusters(&self, a: args::ListKlusters) -> Result<Value, ToolError> {
        let q = ScopeListQuery {
            mission_id: opt(a.mission_id, |s| mission_id("mission_id", s))?,
            include_archived: a.include_archived,
            cursor: a.cursor,
            limit: a.limit.map(|l| l as usize),
        };
        let p = self.client().list_klusters(&q).await.map_err(|e| self.err(e))?;
        let items: Vec<KlusterView> = p.items.iter().map(KlusterView::from).collect();
        page(items, p.next_cursor)
    }

    async fn get_task(&self, a: args::TaskRef) -> Result<Value, ToolError> {
        let id = task_id("task_id", &a.task_id)?;
        let t = self.client().get_task(id).await.map_err(|e| self.err(e))?;
        to_value(TaskDetail::new(&t, self.agent()))
    }

    async fn create_task(&self, a: args::CreateTask) -> Result<Value, ToolError> {
        let body = CreateTask {
            kluster_id: kluster_id("kluster_id", &a.kluster_id)?,
            title: a.title,
            description: a.description,
            priority: a.priority,
            depends_on: task_ids("depends_on", a.depends_on.unwrap_or_default())?,
            paths: a.paths.unwrap_or_default(),
            labels: a.labels.unwrap_or_default(),
            acknowledge_overlap: a.acknowledge_overlap.filter(|b| *b),
            check_overlap: None,
        };
        let created = self.client().create_task(&body).await.map_err(|e| self.err(e))?;
        let out = json!({
            "task": TaskView::new(&created.task, true, self.agent()),
            "overlap_suggestions": views::suggestions(&created.overlap_suggestions),
        });
        with_warnings(out, created.warnings)
    }

    async fn search_docs(&self, a: args::SearchDocs) -> Result<Value, ToolError> {
        let q = DocSearchQuery {
            q: a.query,
            mission_id: opt(a.mission_id, |s| mission_id("mission_id", s))?,
            kluster_id: opt(a.kluster_id, |s| kluster_id("kluster_id", s))?,
            kind: a.kind.map(|k| k.kind().as_str().to_owned()),
            limit: a.limit.map(|l| l as usize),
        };
        let r = self.client().search_docs(&q).await.map_err(|e| self.err(e))?;
        let items: Vec<Value> = r
            .items
            .iter()
            .map(|h| {
                let mut v = views::doc_summary(&h.doc);
                v["score"] = json!(round(h.score));
                v["why"] = json!(h.why);
                v
            })
            .collect();
        with_warnings(json!({ "items": items }), r.warnings)
    }

    async fn get_doc(&self, a: args::DocRef) -> Result<Value, ToolError> {
        let doc = self.client().get_doc(doc_id("doc_id", &a.doc_id)?).await.map_err(|e| self.err(e))?;
        to_value(doc)
    }

    async fn create_doc(&self, a: args::CreateDoc) -> Result<Value, ToolError> {
        let body = CreateDoc {
            mission_id: opt(a.mission_id, |s| mission_id("mission_id", s))?,
            kluster_id: opt(a.kluster_id, |s| kluster_id("kluster_id", s))?,
            kind: a.kind.map(args::DocKindArg::kind),
            title: a.title,
            body: a.body,
            paths: a.paths.unwrap_or_default(),
            acknowledge_overlap: a.acknowledge_overlap.filter(|b| *b),
        };
        if body.mission_id.is_none() && body.kluster_id.is_none() {
            return Err(ToolError::argument("kluster_id", "give kluster_id, or mission_id for a mission-wide doc"));
        }
        let created = self.client().create_doc(&body).await.map_err(|e| self.err(e))?;
        let out = json!({
            "doc": views::doc_summary(&created.doc),
            "overlap_suggestions": views::suggestions(&created.overlap_suggestions),
        });
        with_warnings(out, created.warnings)
    }

    async fn update_doc(&self, a: args::UpdateDoc) -> Result<Value, ToolError> {
        let id = doc_id("doc_id", &a.doc_id)?;
        if a.title.is_none() && a.body.is_none() && a.paths.is_none() {
            return Err(ToolError::argument("doc_id", "nothing to update: give at least one of title, body, paths"));
        }
        let patch = UpdateDoc { title: a.title, body: a.body, paths: a.paths, if_version: a.if_version };
        let doc = self.client().update_doc(id, &patch).await.map_err(|e| self.err(e))?;
        Ok(views::doc_summary(&doc))
    }

    async fn update_task(&self, a: args::UpdateTask) -> Result<Value, ToolError> {
        let id = task_id("task_id", &a.task_id)?;
        let mut patch = UpdateTask {
            title: a.title,
            description: a.description,
            priority: a.priority,
            labels: a.labels,
            paths: a.paths,
            depends_on: a.depends_on.map(|d| task_ids("depends_on", d)).transpose()?,
            fencing_token: None,
        };
        let has_fields = patch.title.is_some()
            || patch.description.is_some()
            || patch.priority.is_some()
            || patch.labels.is_some()
            || patch.paths.is_some()
            || patch.depends_on.is_some();
        if !has_fields && a.status.is_none() {
            return Err(ToolError::argument(
                "task_id",
                "nothing to update: give at least one of title, description, priority, labels, paths, depends_on, status",
            ));
        }
        // A leased task needs its token; one this session does not hold is left to the server to
        // refuse (it names the holder).
        let fence = a.fencing_token.or_else(|| self.state.token(&self.caller.lease_key, id));
        let mut task = None;
        if has_fields {
            patch.fencing_token = fence;
            task = Some(self.client().update_task(id, &patch).await.map_err(|e| self.ownership_err(id, e))?);
        }
        if let Some(status) = a.status {
            let body = TransitionTask { status: status.status(), fencing_token: fence };
            task = Some(self.client().transition_task(id, &body).await.map_err(|e| self.ownership_err(id, e))?);
        }
        match task {
            Some(t) => self.owned(&t),
            None => Err(ToolError::new(500, "internal", "no update was made", Value::Null)),
        }
    }

    async fn list_ready_tasks(&self, a: args::ListReadyTasks) -> Result<Value, ToolError> {
        let kluster = opt(a.kluster_id, |s| kluster_id("kluster_id", s))?;
        let q = ReadyQuery {
            kluster_id: kluster,
            mission_id: opt(a.mission_id, |s| mission_id("mission_id", s))?,
            limit: Some(a.limit.unwrap_or(20) as usize),
        };
        let p = self.client().ready_tasks(&q).await.map_err(|e| self.err(e))?;
        let items: Vec<TaskView> = p.items.iter().map(|t| TaskView::new(t, kluster.is_none(), self.agent())).collect();
        Ok(json!({ "items": items }))
    }

    async fn claim_task(&self, a: args::ClaimTask) -> Result<Value, ToolError> {
        self.require_agent()?;
        let id = task_id("task_id", &a.task_id)?;
        let t = self
            .client()
            .claim_task(id, &ClaimTask { ttl_seconds: a.ttl_seconds })
            .await
            .map_err(|e| self.ownership_err(id, e))?;
        self.owned(&t)
    }

    async fn claim_next_task(&self, a: args::ClaimNextTask) -> Result<Value, ToolError> {
        self.require_agent()?;
        let k = kluster_id("kluster_id", &a.kluster_id)?;
        let r =
            self.client().claim_next(k, &ClaimTask { ttl_seconds: a.ttl_seconds }).await.map_err(|e| self.err(e))?;
        match r.task {
            Some(t) => Ok(json!({ "task": self.owned(&t)? })),
            None => Ok(json!({
                "task": null,
                "note": "no ready task in this kluster now; try list_ready_tasks without kluster_id, or retry later",
            })),
        }
    }

    async fn heartbeat_task(&self, a: args::HeartbeatTask) -> Result<Value, ToolError> {
        self.require_agent()?;
        let id = task_id("task_id", &a.task_id)?;
        let body = HeartbeatTask { fencing_token: self.fence(id, a.fencing_token)?, ttl_seconds: a.ttl_seconds };
        let t = self.client().heartbeat_task(id, &body).await.map_err(|e| self.ownership_err(id, e))?;
        self.owned(&t)
    }

    async fn release_task(&self, a: args::FencedTaskRef) -> Result<Value, ToolError> {
        self.require_agent()?;
        let id = task_id("task_id", &a.task_id)?;
        let body = FencedRequest { fencing_token: self.fence(id, a.fencing_token)? };
        let t = self.client().release_task(id, &body).await.map_err(|e| self.ownership_err(id, e))?;
        self.owned(&t)
    }

    async fn complete_task(&self, a: args::FencedTaskRef) -> Result<Value, ToolError> {
        self.require_agent()?;
        let id = task_id("task_id", &a.task_id)?;
        let body = FencedRequest { fencing_token: self.fence(id, a.fencing_token)? };
        let t = self.client().complete_task(id, &body).await.map_err(|e| self.ownership_err(id, e))?;
        self.owned(&t)
    }
}

fn page<T: Serialize>(items: Vec<T>, next_cursor: Option<String>) -> Result<Value, ToolError> {
    let mut out = json!({ "items": to_value(items)? });
    if let Some(c) = next_cursor {
        out["next_cursor"] = json!(c);
    }
    Ok(out)
}

fn with_warnings(mut out: Value, warnings: Vec<String>) -> Result<Value, ToolError> {
    if !warnings.is_empty() {
        out["warnings"] = json!(warnings);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> JsonObject {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn argument_errors_name_the_field_in_plain_words() {
        let e = parse::<args::SearchTasks>("search_tasks", obj(json!({"query": "x", "limit": "five"})))
            .expect_err("a string is no limit");
        assert_eq!(e.code, "invalid_arguments");
        assert_eq!(e.details["field"], "limit");
        assert_eq!(
            e.message,
            "search_tasks: invalid argument `limit`: invalid type: string \"five\", expected a non-negative integer; \
             see its input schema"
        );
        let e = parse::<args::TaskRef>("get_task", obj(json!({}))).expect_err("missing");
        assert_eq!(e.details["field"], "task_id");
        let e = parse::<args::TaskRef>("get_task", obj(json!({"task_id": "x", "taskid": 1}))).expect_err("unknown");
        assert_eq!(e.details["field"], "taskid");
        assert!(e.message.contains("unknown field `taskid`"), "{}", e.message);
        let e = parse::<args::SearchTasks>("search_tasks", obj(json!({"query": "x", "status": ["finished"]})))
            .expect_err("bad status");
        assert_eq!(e.details["field"], "status[0]");
    }

    #[test]
    fn ids_are_checked_with_the_field_named() {
        let e = task_id("depends_on[1]", "nope").expect_err("not a uuid");
        assert_eq!(e.message, "invalid argument `depends_on[1]`: `nope` is not a valid task id (a UUID)");
        assert!(kluster_id("kluster_id", " 0190a0e0-0000-7000-8000-000000000000 ").is_ok());
    }
}
