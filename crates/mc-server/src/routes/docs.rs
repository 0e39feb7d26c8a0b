//! `/docs`: docs and artifacts of a mission: create (after an overlap check against the mission's
//! docs), list, show, and update as a new version.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use mc_api::{CreateDoc, CreatedDoc, Doc, DocListQuery, ErrorEnvelope, Page, UpdateDoc};
use mc_domain::doc::NewDoc;
use mc_domain::{DocId, DocKind};
use mc_store::{Created, DocFilter};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{id_cursor, page, page_limit, path_id};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, Ctx};
use crate::{AppState, overlap};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_doc, list_docs)).routes(routes!(get_doc, update_doc))
}

/// Parses an optional `kind` parameter.
pub(crate) fn parse_kind(raw: Option<&str>) -> Result<Option<DocKind>, ApiError> {
    raw.map(|k| {
        DocKind::parse(k.trim())
            .ok_or_else(|| ApiError::bad_param("kind", format!("unknown kind `{k}` (one of: doc, artifact)")))
    })
    .transpose()
}

/// Creates a doc or artifact in a kluster or mission. Before anything is written it is compared
/// with the mission's docs and artifacts: the response carries `overlap_suggestions`; a strong
/// duplicate refuses creation (409 `overlap_detected`) unless `acknowledge_overlap` is true.
/// Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/docs", tag = "docs", request_body = CreateDoc,
    params(("Idempotency-Key" = Option<String>, Header, description = "makes retries safe")),
    responses((status = 201, body = CreatedDoc), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope, description = "overlap_detected: a duplicate exists"),
        (status = 422, body = ErrorEnvelope)))]
pub async fn create_doc(State(s): State<AppState>, ctx: Ctx, body: ApiJson<CreateDoc>) -> ApiResult<Response> {
    let new = body.value.check()?;
    let route = "POST /docs";
    if let Some(key) = ctx.idempotency_key(route, &body.raw)
        && s.store.find_idempotent(&key).await?.is_some()
    {
        // a retry replays the first answer; no check against itself
        let created = s.store.create_doc(&ctx.write_idempotent(route, &body.raw), new).await?;
        let extra = overlap::ReplayExtra::of(created.extra);
        let value =
            CreatedDoc { doc: created.value, overlap_suggestions: extra.overlap_suggestions, warnings: extra.warnings };
        return Ok(crate::created(Created { value, replayed: created.replayed, extra: None }));
    }
    let draft = draft_of(&s, &new).await?;
    let ticket = s.admissions.doc_ticket(draft.mission_id).await;
    let mut outcome = overlap::check_doc(s.store.as_ref(), s.semantic.as_ref(), &draft).await?;
    let acknowledged = body.value.acknowledge_overlap.unwrap_or(false);
    let (store, wctx) = (s.store.as_ref(), ctx.write_idempotent(route, &body.raw));
    let created = ticket
        .admit(s.semantic.as_ref(), &draft, &mut outcome, acknowledged, wctx, |wctx| async move {
            Ok(store.create_doc(&wctx, new).await?)
        })
        .await?;
    overlap::store_doc_vector(s.store.as_ref(), &created.value, outcome.vector).await;
    let value = CreatedDoc { doc: created.value, overlap_suggestions: outcome.suggestions, warnings: outcome.warnings };
    Ok(crate::created(Created { value, replayed: created.replayed, extra: None }))
}

/// What the overlap check compares for a new doc: its text and paths in its mission (the
/// kluster's when it names one; both must exist).
pub(crate) async fn draft_of(s: &AppState, new: &NewDoc) -> Result<overlap::Draft, ApiError> {
    let (mission_id, kluster_id) = match (new.kluster_id, new.mission_id) {
        (Some(k), _) => (s.store.get_kluster(k).await?.mission_id, Some(k)),
        (None, Some(m)) => (s.store.get_mission(m).await?.id, None),
        (None, None) => return Err(mc_domain::Error::validation("mission_id", "name a mission or a kluster").into()),
    };
    Ok(overlap::Draft {
        mission_id,
        kluster_id,
        title: new.title.clone(),
        description: new.body.clone(),
        paths: new.paths.clone(),
        exclude: None,
    })
}

/// Lists docs and artifacts with filters, newest first, one page at a time.
#[utoipa::path(get, path = "/docs", tag = "docs", params(DocListQuery),
    responses((status = 200, body = Page<Doc>), (status = 400, body = ErrorEnvelope)))]
pub async fn list_docs(
    State(s): State<AppState>,
    _ctx: Ctx,
    ApiQuery(q): ApiQuery<DocListQuery>,
) -> ApiResult<Json<Page<Doc>>> {
    let f = DocFilter {
        mission_id: q.mission_id,
        kluster_id: q.kluster_id,
        kind: parse_kind(q.kind.as_deref())?,
        with_paths: false,
        cursor: id_cursor(q.cursor)?,
        limit: page_limit(q.limit)?,
    };
    Ok(Json(page(s.store.list_docs(&f).await?)))
}

#[utoipa::path(get, path = "/docs/{id}", tag = "docs", params(("id" = String, Path)),
    responses((status = 200, body = Doc), (status = 404, body = ErrorEnvelope)))]
pub async fn get_doc(State(s): State<AppState>, _ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Doc>> {
    Ok(Json(s.store.get_doc(path_id::<DocId>(&id)?).await?))
}

/// Changes a doc as its next version; `if_version` guards against overwriting a change made in
/// between (409 `version_conflict`).
#[utoipa::path(patch, path = "/docs/{id}", tag = "docs", params(("id" = String, Path)), request_body = UpdateDoc,
    responses((status = 200, body = Doc), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope),
        (status = 422, body = ErrorEnvelope)))]
pub async fn update_doc(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: ApiJson<UpdateDoc>,
) -> ApiResult<Json<Doc>> {
    let id = path_id::<DocId>(&id)?;
    let patch = body.value.check()?;
    Ok(Json(s.store.update_doc(&ctx.write(), id, patch, body.value.if_version).await?))
}
