//! `/klusters`: create, list, show, update, archive, and claim-next (the atomic "give me work").

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use mc_api::{ClaimNextResponse, ClaimTask, CreateKluster, ErrorEnvelope, Kluster, Page, ScopeListQuery, UpdateScope};
use mc_domain::KlusterId;
use mc_domain::task::check_ttl;
use mc_store::ScopeFilter;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{id_cursor, page, page_limit, path_id};
use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiQuery, Ctx, OptJson};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_kluster, list_klusters))
        .routes(routes!(get_kluster, update_kluster))
        .routes(routes!(archive_kluster))
        .routes(routes!(claim_next))
}

/// Creates a kluster in a mission. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/klusters", tag = "klusters", request_body = CreateKluster,
    params(("Idempotency-Key" = Option<String>, Header, description = "makes retries safe")),
    responses((status = 201, body = Kluster), (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn create_kluster(State(s): State<AppState>, ctx: Ctx, body: ApiJson<CreateKluster>) -> ApiResult<Response> {
    let new = body.value.check()?;
    let created = s.store.create_kluster(&ctx.write_idempotent("POST /klusters", &body.raw), new).await?;
    Ok(crate::created(created))
}

/// Lists klusters (of one mission with `mission_id`), oldest first.
#[utoipa::path(get, path = "/klusters", tag = "klusters", params(ScopeListQuery),
    responses((status = 200, body = Page<Kluster>)))]
pub async fn list_klusters(
    State(s): State<AppState>,
    _ctx: Ctx,
    ApiQuery(q): ApiQuery<ScopeListQuery>,
) -> ApiResult<Json<Page<Kluster>>> {
    let f = ScopeFilter {
        mission_id: q.mission_id,
        include_archived: q.include_archived.unwrap_or(false),
        cursor: id_cursor(q.cursor)?,
        limit: page_limit(q.limit)?,
    };
    Ok(Json(page(s.store.list_klusters(&f).await?)))
}

#[utoipa::path(get, path = "/klusters/{id}", tag = "klusters", params(("id" = String, Path)),
    responses((status = 200, body = Kluster), (status = 404, body = ErrorEnvelope)))]
pub async fn get_kluster(State(s): State<AppState>, _ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Kluster>> {
    Ok(Json(s.store.get_kluster(path_id::<KlusterId>(&id)?).await?))
}

#[utoipa::path(patch, path = "/klusters/{id}", tag = "klusters", params(("id" = String, Path)),
    request_body = UpdateScope, responses((status = 200, body = Kluster), (status = 404, body = ErrorEnvelope)))]
pub async fn update_kluster(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: ApiJson<UpdateScope>,
) -> ApiResult<Json<Kluster>> {
    let id = path_id::<KlusterId>(&id)?;
    let patch = body.value.check()?;
    Ok(Json(s.store.update_kluster(&ctx.write(), id, patch).await?))
}

#[utoipa::path(post, path = "/klusters/{id}/archive", tag = "klusters", params(("id" = String, Path)),
    responses((status = 200, body = Kluster), (status = 409, body = ErrorEnvelope)))]
pub async fn archive_kluster(State(s): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Kluster>> {
    Ok(Json(s.store.archive_kluster(&ctx.write(), path_id::<KlusterId>(&id)?).await?))
}

/// Atomically claims the most urgent ready task of the kluster for the calling agent; `task` is
/// null when no ready work is left. Two agents racing never get the same task.
#[utoipa::path(post, path = "/klusters/{id}/claim-next", tag = "ownership", params(("id" = String, Path),
    ("x-mc-agent" = Option<String>, Header, description = "agent identity that will hold the lease")),
    request_body(content = Option<ClaimTask>), responses((status = 200, body = ClaimNextResponse), (status = 404, body = ErrorEnvelope)))]
pub async fn claim_next(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    OptJson(body): OptJson<ClaimTask>,
) -> ApiResult<Json<ClaimNextResponse>> {
    let id = path_id::<KlusterId>(&id)?;
    let ttl = Duration::from_secs(check_ttl(body.ttl_seconds)?);
    let task = s.store.claim_next_task(&ctx.write(), id, ttl).await?;
    Ok(Json(ClaimNextResponse { task }))
}
