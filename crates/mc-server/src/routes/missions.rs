//! `/missions`: create, list, show, update, archive.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use mc_api::{CreateMission, ErrorEnvelope, Mission, Page, ScopeListQuery, UpdateScope};
use mc_domain::MissionId;
use mc_store::ScopeFilter;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{id_cursor, page, page_limit, path_id};
use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiQuery, Ctx};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_mission, list_missions))
        .routes(routes!(get_mission, update_mission))
        .routes(routes!(archive_mission))
}

/// Creates a mission. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/missions", tag = "missions", request_body = CreateMission,
    params(("Idempotency-Key" = Option<String>, Header, description = "makes retries safe")),
    responses((status = 201, body = Mission), (status = 422, body = ErrorEnvelope)))]
pub async fn create_mission(State(s): State<AppState>, ctx: Ctx, body: ApiJson<CreateMission>) -> ApiResult<Response> {
    let new = body.value.check()?;
    let created = s.store.create_mission(&ctx.write_idempotent("POST /missions", &body.raw), new).await?;
    Ok(crate::created(created))
}

/// Lists missions (active ones unless `include_archived`), oldest first.
#[utoipa::path(get, path = "/missions", tag = "missions", params(ScopeListQuery),
    responses((status = 200, body = Page<Mission>)))]
pub async fn list_missions(
    State(s): State<AppState>,
    _ctx: Ctx,
    ApiQuery(q): ApiQuery<ScopeListQuery>,
) -> ApiResult<Json<Page<Mission>>> {
    let f = ScopeFilter {
        mission_id: None,
        include_archived: q.include_archived.unwrap_or(false),
        cursor: id_cursor(q.cursor)?,
        limit: page_limit(q.limit)?,
    };
    Ok(Json(page(s.store.list_missions(&f).await?)))
}

#[utoipa::path(get, path = "/missions/{id}", tag = "missions", params(("id" = String, Path)),
    responses((status = 200, body = Mission), (status = 404, body = ErrorEnvelope)))]
pub async fn get_mission(State(s): State<AppState>, _ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Mission>> {
    Ok(Json(s.store.get_mission(path_id::<MissionId>(&id)?).await?))
}

#[utoipa::path(patch, path = "/missions/{id}", tag = "missions", params(("id" = String, Path)),
    request_body = UpdateScope, responses((status = 200, body = Mission), (status = 404, body = ErrorEnvelope)))]
pub async fn update_mission(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: ApiJson<UpdateScope>,
) -> ApiResult<Json<Mission>> {
    let id = path_id::<MissionId>(&id)?;
    let patch = body.value.check()?;
    Ok(Json(s.store.update_mission(&ctx.write(), id, patch).await?))
}

#[utoipa::path(post, path = "/missions/{id}/archive", tag = "missions", params(("id" = String, Path)),
    responses((status = 200, body = Mission), (status = 409, body = ErrorEnvelope)))]
pub async fn archive_mission(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Mission>> {
    Ok(Json(s.store.archive_mission(&ctx.write(), path_id::<MissionId>(&id)?).await?))
}
