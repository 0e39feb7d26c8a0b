//! The shapes tools return (`structuredContent`): the API's objects trimmed to what an agent acts
//! on. Empty lists and absent values are left out and times are whole seconds, because every byte
//! of a result lands in the agent's context.

use mc_api::{Doc, Kluster, LedgerEvent, Mission, OverlapSuggestion, Task};
use serde::Serialize;
use serde_json::{Value, json};

/// A time as an agent reads it: `2026-11-24T12:03:00Z`.
pub fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A task in a list or as the result of an ownership call.
#[derive(Debug, Serialize)]
pub struct TaskView {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kluster_id: Option<String>,
    pub title: String,
    pub status: &'static str,
    pub priority: u8,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<String>,
    /// Set when this session's agent holds the lease (its fencing token is tracked).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub yours: bool,
}

impl TaskView {
    /// `with_kluster`: whether to name the kluster (left out of lists scoped to one kluster).
    pub fn new(t: &Task, with_kluster: bool, agent: Option<&str>) -> Self {
        let lease = t.lease.as_ref();
        Self {
            id: t.id.to_string(),
            kluster_id: with_kluster.then(|| t.kluster_id.to_string()),
            title: t.title.clone(),
            status: t.status.as_str(),
            priority: t.priority.get(),
            labels: t.labels.clone(),
            paths: t.paths.clone(),
            depends_on: t.depends_on.iter().map(ToString::to_string).collect(),
            holder: lease.map(|l| l.holder.clone()),
            lease_expires_at: lease.map(|l| time(l.expires_at)),
            yours: agent.is_some_and(|a| lease.is_some_and(|l| l.holder == a)),
        }
    }
}

/// One task in full (`get_task`).
#[derive(Debug, Serialize)]
pub struct TaskDetail {
    #[serde(flatten)]
    pub task: TaskView,
    pub mission_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub fencing_token: u64,
    pub created_by: String,
    pub updated_at: String,
}

impl TaskDetail {
    pub fn new(t: &Task, agent: Option<&str>) -> Self {
        Self {
            task: TaskView::new(t, true, agent),
            mission_id: t.mission_id.to_string(),
            description: t.description.clone(),
            fencing_token: t.fencing_token,
            created_by: t.created_by.clone(),
            updated_at: time(t.updated_at),
        }
    }
}

/// Existing work a new or draft task overlaps.
#[derive(Debug, Serialize)]
pub struct SuggestionView {
    pub id: String,
    pub title: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    pub relation: mc_api::OverlapRelation,
    pub score: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

impl From<&OverlapSuggestion> for SuggestionView {
    fn from(s: &OverlapSuggestion) -> Self {
        Self {
            id: s.id.clone(),
            title: s.title.clone(),
            status: s.status.clone(),
            holder: s.holder.clone(),
            relation: s.relation,
            score: crate::handlers::round(s.score),
            reasons: s.reasons.clone(),
        }
    }
}

pub fn suggestions(s: &[OverlapSuggestion]) -> Vec<SuggestionView> {
    s.iter().map(SuggestionView::from).collect()
}

#[derive(Debug, Serialize)]
pub struct MissionView {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub status: mc_domain::ScopeStatus,
}

impl From<&Mission> for MissionView {
    fn from(m: &Mission) -> Self {
        Self { id: m.id.to_string(), name: m.name.clone(), description: m.description.clone(), status: m.status }
    }
}

#[derive(Debug, Serialize)]
pub struct KlusterView {
    pub id: String,
    pub mission_id: String,
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub status: mc_domain::ScopeStatus,
}

impl From<&Kluster> for KlusterView {
    fn from(k: &Kluster) -> Self {
        Self {
            id: k.id.to_string(),
            mission_id: k.mission_id.to_string(),
            name: k.name.clone(),
            description: k.description.clone(),
            status: k.status,
        }
    }
}

/// A ledger event without its hashes.
#[derive(Debug, Serialize)]
pub struct EventView {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub entity_id: String,
}

impl From<&LedgerEvent> for EventView {
    fn from(e: &LedgerEvent) -> Self {
        Self {
            seq: e.seq,
            at: time(e.at),
            actor: e.actor.clone(),
            action: e.action.clone(),
            entity_id: e.entity_id.clone(),
        }
    }
}

/// A doc in a workspace: what it is and its version (`get_doc` has the text).
pub fn doc_line(d: &Doc) -> Value {
    json!({ "id": d.id, "kind": d.kind, "title": d.title, "version": d.version })
}

/// Characters of a doc's body shown where the doc is one of many (search hits, a created doc).
const EXCERPT_CHARS: usize = 280;

/// A doc without its whole body: the start of it, and whether there is more (`get_doc` has all).
pub fn doc_summary(d: &Doc) -> Value {
    let mut excerpt: String = d.body.chars().take(EXCERPT_CHARS).collect();
    let cut = excerpt.len() < d.body.len();
    if cut {
        excerpt.push('…');
    }
    let mut v = json!({
        "id": d.id,
        "kind": d.kind,
        "title": d.title,
        "mission_id": d.mission_id,
        "version": d.version,
        "updated_at": time(d.updated_at),
    });
    if let Some(k) = d.kluster_id {
        v["kluster_id"] = json!(k);
    }
    if !d.paths.is_empty() {
        v["paths"] = json!(d.paths);
    }
    if !excerpt.is_empty() {
        v["excerpt"] = json!(excerpt);
    }
    v
}
