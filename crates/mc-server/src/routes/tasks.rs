//! `/tasks`: create, list, ready work, show, update, status transitions, and ownership (claim,
//! heartbeat, release, complete) with fencing tokens.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use mc_api::{
    ClaimTask, CreateTask, CreatedTask, ErrorEnvelope, FencedRequest, HeartbeatTask, Page, ReadyQuery, Task,
    TaskListQuery, TransitionTask, UpdateTask,
};
use mc_domain::task::check_ttl;
use mc_domain::{TaskId, TaskStatus};
use mc_store::{Created, ReadyFilter, TaskFilter};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{id_cursor, page_limit, path_id};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiQuery, Ctx, OptJson};
use crate::{AppState, overlap};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_task, list_tasks))
        .routes(routes!(ready_tasks))
        .routes(routes!(get_task, update_task))
        .routes(routes!(transition_task))
        .routes(routes!(claim_task))
        .routes(routes!(heartbeat_task))
        .routes(routes!(release_task))
        .routes(routes!(complete_task))
}

/// Creates a task in a kluster. Before anything is written, the task is compared with the live
/// work of its mission: the response carries `overlap_suggestions`; a strong duplicate refuses
/// creation (409 `overlap_detected`) unless `acknowledge_overlap` is true. Honours
/// `Idempotency-Key`.
#[utoipa::path(post, path = "/tasks", tag = "tasks", request_body = CreateTask,
    params(("Idempotency-Key" = Option<String>, Header, description = "makes retries safe")),
    responses((status = 201, body = CreatedTask), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope, description = "overlap_detected: a duplicate exists"),
        (status = 422, body = ErrorEnvelope)))]
pub async fn create_task(State(s): State<AppState>, ctx: Ctx, body: ApiJson<CreateTask>) -> ApiResult<Response> {
    let new = body.value.check()?;
    let route = "POST /tasks";
    // a retry of an earlier create replays it; no overlap check against itself
    if let Some(key) = ctx.idempotency_key(route, &body.raw)
        && s.store.find_idempotent(&key).await?.is_some()
    {
        let created = s.store.create_task(&ctx.write_idempotent(route, &body.raw), new).await?;
        let extra = overlap::ReplayExtra::of(created.extra);
        let value = CreatedTask {
            task: created.value,
            overlap_suggestions: extra.overlap_suggestions,
            warnings: extra.warnings,
        };
        return Ok(crate::created(Created { value, replayed: created.replayed, extra: None }));
    }
    if body.value.check_overlap == Some(false) {
        // bulk import: no check, no suggestions; the embedding worker indexes the vector later
        let mut wctx = ctx.write_idempotent(route, &body.raw);
        wctx.action_suffix = Some("overlap_unchecked");
        let created = s.store.create_task(&wctx, new).await?;
        let value = CreatedTask { task: created.value, overlap_suggestions: vec![], warnings: vec![] };
        return Ok(crate::created(Created { value, replayed: created.replayed, extra: None }));
    }
    let kluster = s.store.get_kluster(new.kluster_id).await?;
    let draft = overlap::Draft {
        mission_id: kluster.mission_id,
        kluster_id: Some(kluster.id),
        title: new.title.clone(),
        description: new.description.clone(),
        paths: new.paths.clone(),
        exclude: None,
    };
    let ticket = s.admissions.ticket(kluster.mission_id).await;
    let mut outcome = overlap::check(s.store.as_ref(), s.semantic.as_ref(), &draft, None).await?;
    let acknowledged = body.value.acknowledge_overlap.unwrap_or(false);
    let (store, wctx) = (s.store.as_ref(), ctx.write_idempotent(route, &body.raw));
    let created = ticket
        .admit(s.semantic.as_ref(), &draft, &mut outcome, acknowledged, wctx, |wctx| async move {
            Ok(store.create_task(&wctx, new).await?)
        })
        .await?;
    let (task, replayed) = (created.value, created.replayed);
    overlap::store_vector(store, &task, outcome.vector).await;
    let value = CreatedTask { task, overlap_suggestions: outcome.suggestions, warnings: outcome.warnings };
    Ok(crate::created(Created { value, replayed, extra: None }))
}

pub(crate) fn parse_statuses(raw: Option<&str>) -> Result<Vec<TaskStatus>, ApiError> {
    let Some(raw) = raw else { return Ok(vec![]) };
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            TaskStatus::parse(s).ok_or_else(|| {
                let all: Vec<&str> = TaskStatus::ALL.iter().map(|s| s.as_str()).collect();
                ApiError::bad_param("status", format!("unknown status `{s}` (one of: {})", all.join(", ")))
            })
        })
        .collect()
}

/// Lists tasks with filters, oldest first, one page at a time.
#[utoipa::path(get, path = "/tasks", tag = "tasks", params(TaskListQuery),
    responses((status = 200, body = Page<Task>), (status = 400, body = ErrorEnvelope)))]
pub async fn list_tasks(
    State(s): State<AppState>,
    _ctx: Ctx,
    ApiQuery(q): ApiQuery<TaskListQuery>,
) -> ApiResult<Json<Page<Task>>> {
    let f = TaskFilter {
        kluster_id: q.kluster_id,
        mission_id: q.mission_id,
        statuses: parse_statuses(q.status.as_deref())?,
        label: q.label.filter(|l| !l.trim().is_empty()),
        holder: q.holder.filter(|h| !h.trim().is_empty()),
        cursor: id_cursor(q.cursor)?,
        limit: page_limit(q.limit)?,
    };
    Ok(Json(super::page(s.store.list_tasks(&f).await?)))
}

/// Ready work: open tasks whose dependencies are all done, most urgent (priority 0) first, then
/// oldest.
#[utoipa::path(get, path = "/tasks/ready", tag = "tasks", params(ReadyQuery),
    responses((status = 200, body = Page<Task>)))]
pub async fn ready_tasks(
    State(s): State<AppState>,
    _ctx: Ctx,
    ApiQuery(q): ApiQuery<ReadyQuery>,
) -> ApiResult<Json<Page<Task>>> {
    let f = ReadyFilter { kluster_id: q.kluster_id, mission_id: q.mission_id, limit: page_limit(q.limit)? };
    let items = s.store.ready_tasks(&f).await?;
    Ok(Json(Page { items, next_cursor: None }))
}

#[utoipa::path(get, path = "/tasks/{id}", tag = "tasks", params(("id" = String, Path)),
    responses((status = 200, body = Task), (status = 404, body = ErrorEnvelope)))]
pub async fn get_task(State(s): State<AppState>, _ctx: Ctx, Path(id): Path<String>) -> ApiResult<Json<Task>> {
    Ok(Json(s.store.get_task(path_id::<TaskId>(&id)?).await?))
}

/// Changes a task's fields. A task under lease needs its current `fencing_token`; changing
/// `depends_on` so that the graph would have a cycle is refused with the cycle named.
#[utoipa::path(patch, path = "/tasks/{id}", tag = "tasks", params(("id" = String, Path)), request_body = UpdateTask,
    responses((status = 200, body = Task), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn update_task(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: ApiJson<UpdateTask>,
) -> ApiResult<Json<Task>> {
    let id = path_id::<TaskId>(&id)?;
    let patch = body.value.check()?;
    Ok(Json(s.store.update_task(&ctx.write(), id, patch, body.value.fencing_token).await?))
}

/// Moves a task to another status; illegal moves are refused with the allowed ones named.
#[utoipa::path(post, path = "/tasks/{id}/transition", tag = "tasks", params(("id" = String, Path)),
    request_body = TransitionTask, responses((status = 200, body = Task), (status = 409, body = ErrorEnvelope)))]
pub async fn transition_task(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: ApiJson<TransitionTask>,
) -> ApiResult<Json<Task>> {
    let id = path_id::<TaskId>(&id)?;
    let b = body.value;
    Ok(Json(s.store.transition_task(&ctx.write(), id, b.status, b.fencing_token).await?))
}

/// Claims a ready task: a lease for the calling agent with a new fencing token. If someone else
/// holds it, 409 names the holder.
#[utoipa::path(post, path = "/tasks/{id}/claim", tag = "ownership", params(("id" = String, Path),
    ("x-mc-agent" = Option<String>, Header, description = "agent identity that will hold the lease")),
    request_body(content = Option<ClaimTask>),
    responses((status = 200, body = Task), (status = 409, body = ErrorEnvelope)))]
pub async fn claim_task(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    OptJson(body): OptJson<ClaimTask>,
) -> ApiResult<Json<Task>> {
    let id = path_id::<TaskId>(&id)?;
    let ttl = Duration::from_secs(check_ttl(body.ttl_seconds)?);
    Ok(Json(s.store.claim_task(&ctx.write(), id, ttl).await?))
}

/// Renews the caller's lease.
#[utoipa::path(post, path = "/tasks/{id}/heartbeat", tag = "ownership", params(("id" = String, Path)),
    request_body = HeartbeatTask, responses((status = 200, body = Task), (status = 409, body = ErrorEnvelope)))]
pub async fn heartbeat_task(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: ApiJson<HeartbeatTask>,
) -> ApiResult<Json<Task>> {
    let id = path_id::<TaskId>(&id)?;
    let ttl = Duration::from_secs(check_ttl(body.value.ttl_seconds)?);
    Ok(Json(s.store.heartbeat_task(&ctx.write(), id, body.value.fencing_token, ttl).await?))
}

/// Gives the task back: it is open again for anyone.
#[utoipa::path(post, path = "/tasks/{id}/release", tag = "ownership", params(("id" = String, Path)),
    request_body = FencedRequest, responses((status = 200, body = Task), (status = 409, body = ErrorEnvelope)))]
pub async fn release_task(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: ApiJson<FencedRequest>,
) -> ApiResult<Json<Task>> {
    let id = path_id::<TaskId>(&id)?;
    Ok(Json(s.store.release_task(&ctx.write(), id, body.value.fencing_token).await?))
}

/// Marks the held task done and ends the lease.
#[utoipa::path(post, path = "/tasks/{id}/complete", tag = "ownership", params(("id" = String, Path)),
    request_body = FencedRequest, responses((status = 200, body = Task), (status = 409, body = ErrorEnvelope)))]
pub async fn complete_task(
    State(s): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: ApiJson<FencedRequest>,
) -> ApiResult<Json<Task>> {
    let id = path_id::<TaskId>(&id)?;
    Ok(Json(s.store.complete_task(&ctx.write(), id, body.value.fencing_token).await?))
}
