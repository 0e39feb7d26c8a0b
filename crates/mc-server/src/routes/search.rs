//! `/search` (hybrid search over tasks), `/overlap` (overlap suggestions for a draft) and
//! `/tasks/{id}/overlap` (for an existing task).

use axum::Json;
use axum::extract::{Path, State};
use mc_api::{
    DocSearchQuery, DocSearchResponse, ErrorEnvelope, KlusterSearchQuery, KlusterSearchResponse, OverlapDraft,
    OverlapResponse, SearchQuery, SearchResponse,
};
use mc_domain::doc::{NewDoc, RawDocFields};
use mc_domain::input::NewMission;
use mc_domain::{DocKind, TaskId};
use mc_store::SearchFilter;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::path_id;
use super::tasks::parse_statuses;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, Ctx};
use crate::{AppState, overlap};

/// Longest accepted search query, in characters.
pub const MAX_QUERY_CHARS: usize = 1000;
/// Most results of one search.
pub const MAX_SEARCH_LIMIT: usize = 100;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search_tasks))
        .routes(routes!(search_klusters))
        .routes(routes!(search_docs))
        .routes(routes!(overlap_for_draft))
        .routes(routes!(overlap_for_task))
}

/// Hybrid search over tasks: full-text and semantic results fused by reciprocal rank, with
/// filters; each hit says why it matched. If the embedder is down, full-text results come back
/// with a warning.
#[utoipa::path(get, path = "/search", tag = "search", params(SearchQuery),
    responses((status = 200, body = SearchResponse), (status = 400, body = ErrorEnvelope)))]
pub async fn search_tasks(
    State(s): State<AppState>,
    _ctx: Ctx,
    ApiQuery(q): ApiQuery<SearchQuery>,
) -> ApiResult<Json<SearchResponse>> {
    let (text, limit) = check_query(&q.q, q.limit)?;
    let labels = q
        .label
        .as_deref()
        .map(|l| l.split(',').map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    let filter = SearchFilter {
        mission_id: q.mission_id,
        kluster_id: q.kluster_id,
        statuses: parse_statuses(q.status.as_deref())?,
        labels,
    };
    let (items, warnings) = overlap::search(s.store.as_ref(), s.semantic.as_ref(), text, filter, limit).await?;
    Ok(Json(SearchResponse { items, warnings }))
}

/// Checks a query's text and limit (default 10).
fn check_query(q: &str, limit: Option<usize>) -> Result<(&str, usize), ApiError> {
    let text = q.trim();
    if text.is_empty() {
        return Err(ApiError::bad_param("q", "must not be empty"));
    }
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::bad_param("q", format!("must be at most {MAX_QUERY_CHARS} characters")));
    }
    match limit {
        None => Ok((text, 10)),
        Some(l) if (1..=MAX_SEARCH_LIMIT).contains(&l) => Ok((text, l)),
        Some(l) => Err(ApiError::bad_param("limit", format!("must be between 1 and {MAX_SEARCH_LIMIT}, got {l}"))),
    }
}

/// Hybrid search over the active klusters (name and description), optionally within one
/// mission: which workstream already covers a subject.
#[utoipa::path(get, path = "/search/klusters", tag = "search", params(KlusterSearchQuery),
    responses((status = 200, body = KlusterSearchResponse), (status = 400, body = ErrorEnvelope)))]
pub async fn search_klusters(
    State(s): State<AppState>,
    _ctx: Ctx,
    ApiQuery(q): ApiQuery<KlusterSearchQuery>,
) -> ApiResult<Json<KlusterSearchResponse>> {
    let (text, limit) = check_query(&q.q, q.limit)?;
    let filter = SearchFilter { mission_id: q.mission_id, ..Default::default() };
    let (items, warnings) =
        overlap::search_klusters(s.store.as_ref(), s.semantic.as_ref(), text, filter, limit).await?;
    Ok(Json(KlusterSearchResponse { items, warnings }))
}

/// Hybrid search over docs and artifacts (title and body), optionally within one mission or
/// kluster, of one kind: what is already written about a subject.
#[utoipa::path(get, path = "/search/docs", tag = "search", params(DocSearchQuery),
    responses((status = 200, body = DocSearchResponse), (status = 400, body = ErrorEnvelope)))]
pub async fn search_docs(
    State(s): State<AppState>,
    _ctx: Ctx,
    ApiQuery(q): ApiQuery<DocSearchQuery>,
) -> ApiResult<Json<DocSearchResponse>> {
    let (text, limit) = check_query(&q.q, q.limit)?;
    let kind = super::docs::parse_kind(q.kind.as_deref())?;
    let filter = SearchFilter { mission_id: q.mission_id, kluster_id: q.kluster_id, ..Default::default() };
    let (items, warnings) =
        overlap::search_docs(s.store.as_ref(), s.semantic.as_ref(), text, filter, kind, limit).await?;
    Ok(Json(DocSearchResponse { items, warnings }))
}

/// Overlap suggestions for a draft (title, description, paths) in a kluster or mission, without
/// creating anything: a task draft, or with `kind` a doc draft (its body in `description`).
#[utoipa::path(post, path = "/overlap", tag = "search", request_body = OverlapDraft,
    responses((status = 200, body = OverlapResponse), (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn overlap_for_draft(
    State(s): State<AppState>,
    _ctx: Ctx,
    body: ApiJson<OverlapDraft>,
) -> ApiResult<Json<OverlapResponse>> {
    let d = body.value;
    if let Some(kind) = d.kind {
        return doc_draft(&s, d, kind).await;
    }
    // the same checks a create applies to its text
    let checked = NewMission::parse(&d.title, d.description.as_deref()).map_err(|e| match e {
        mc_domain::Error::Validation { field, message } if field == "name" => {
            mc_domain::Error::Validation { field: "title".into(), message }
        }
        other => other,
    })?;
    let paths = mc_domain::task::check_paths(&d.paths)?;
    let (mission_id, kluster_id) = match (d.kluster_id, d.mission_id) {
        (Some(k), _) => {
            let k = s.store.get_kluster(k).await?;
            (k.mission_id, Some(k.id))
        }
        (None, Some(m)) => (s.store.get_mission(m).await?.id, None),
        (None, None) => {
            return Err(ApiError::from(mc_domain::Error::validation("kluster_id", "give kluster_id or mission_id")));
        }
    };
    let draft = overlap::Draft {
        mission_id,
        kluster_id,
        title: checked.name,
        description: checked.description,
        paths,
        exclude: None,
    };
    let outcome = overlap::check(s.store.as_ref(), s.semantic.as_ref(), &draft, None).await?;
    Ok(Json(OverlapResponse { overlap_suggestions: outcome.suggestions, warnings: outcome.warnings }))
}

/// Overlap suggestions for a doc draft, compared with the docs of its mission.
async fn doc_draft(s: &AppState, d: OverlapDraft, kind: DocKind) -> ApiResult<Json<OverlapResponse>> {
    let raw = RawDocFields { title: Some(&d.title), body: d.description.as_deref(), paths: Some(&d.paths) };
    let new = NewDoc::parse(d.mission_id, d.kluster_id, kind, raw)?;
    let draft = super::docs::draft_of(s, &new).await?;
    let outcome = overlap::check_doc(s.store.as_ref(), s.semantic.as_ref(), &draft).await?;
    Ok(Json(OverlapResponse { overlap_suggestions: outcome.suggestions, warnings: outcome.warnings }))
}

/// Overlap suggestions for an existing task, compared with the other live work of its mission.
#[utoipa::path(get, path = "/tasks/{id}/overlap", tag = "search", params(("id" = String, Path)),
    responses((status = 200, body = OverlapResponse), (status = 404, body = ErrorEnvelope)))]
pub async fn overlap_for_task(
    State(s): State<AppState>,
    _ctx: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<OverlapResponse>> {
    let task = s.store.get_task(path_id::<TaskId>(&id)?).await?;
    let known = match &s.semantic {
        Some(sem) => {
            let model = sem.embedder.model_id().to_owned();
            s.store.task_embedding(task.id, &model).await?.map(|v| (model, v))
        }
        None => None,
    };
    let draft = overlap::Draft {
        mission_id: task.mission_id,
        kluster_id: Some(task.kluster_id),
        title: task.title.clone(),
        description: task.description.clone(),
        paths: task.paths.clone(),
        exclude: Some(task.id),
    };
    let outcome = overlap::check(s.store.as_ref(), s.semantic.as_ref(), &draft, known).await?;
    Ok(Json(OverlapResponse { overlap_suggestions: outcome.suggestions, warnings: outcome.warnings }))
}
