//! Liveness, readiness, identity and server facts (for `mc system doctor`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mc_api::{API_PREFIX, Health, Readiness, StorageHealth, SystemInfo, WhoAmI};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::extract::Ctx;

/// Routes behind auth.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(system_info)).routes(routes!(whoami))
}

/// Routes open to anyone (probes).
pub fn probes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz))
}

pub(crate) async fn storage_health(s: &AppState) -> StorageHealth {
    let h = s.store.health().await;
    StorageHealth { backend: h.backend.to_owned(), ok: h.ok, schema_version: h.schema_version, detail: h.detail }
}

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "system", security(()), responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into(), version: crate::VERSION.into() })
}

/// Readiness: storage answers and its schema is current (503 otherwise).
#[utoipa::path(get, path = "/readyz", tag = "system", security(()),
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(s): State<AppState>) -> Response {
    let storage = storage_health(&s).await;
    let status = if storage.ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = Readiness { status: if storage.ok { "ready" } else { "not_ready" }.into(), storage };
    (status, Json(body)).into_response()
}

/// Server version, time and storage state.
#[utoipa::path(get, path = "/system/info", tag = "system", responses((status = 200, body = SystemInfo)))]
pub async fn system_info(State(s): State<AppState>, _ctx: Ctx) -> Json<SystemInfo> {
    Json(SystemInfo {
        version: crate::VERSION.into(),
        api_prefix: API_PREFIX.into(),
        server_time: s.clock.now(),
        storage: storage_health(&s).await,
        semantic: s.semantic.as_ref().map(|sem| mc_api::SemanticInfo {
            embedder: sem.embedder.model_id().to_owned(),
            scorer: sem.scorer_source().into(),
        }),
    })
}

/// The principal behind the token, and the agent identity named by `x-mc-agent`.
#[utoipa::path(get, path = "/whoami", tag = "system", responses((status = 200, body = WhoAmI)))]
pub async fn whoami(ctx: Ctx) -> Json<WhoAmI> {
    Json(WhoAmI { principal: ctx.actor.principal.clone(), agent: ctx.actor.agent.map(|a| a.to_string()) })
}
