//! `/ledger`: the hash-chained record of every mutation, listed with filters and verified.

use axum::Json;
use axum::extract::State;
use mc_api::{LedgerEvent, LedgerQuery, LedgerVerification, Page};
use mc_store::LedgerFilter;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::page_limit;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiQuery, Ctx};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_ledger)).routes(routes!(verify_ledger))
}

/// Lists ledger events in sequence order; `next_cursor` is the `after_seq` of the next page.
#[utoipa::path(get, path = "/ledger", tag = "ledger", params(LedgerQuery),
    responses((status = 200, body = Page<LedgerEvent>)))]
pub async fn list_ledger(
    State(s): State<AppState>,
    _ctx: Ctx,
    ApiQuery(q): ApiQuery<LedgerQuery>,
) -> ApiResult<Json<Page<LedgerEvent>>> {
    if q.after_seq.is_some_and(|s| s < 0) {
        return Err(ApiError::bad_param("after_seq", "must not be negative"));
    }
    let limit = page_limit(q.limit)?;
    let f = LedgerFilter {
        entity_id: q.entity_id,
        entity_kind: q.entity_kind,
        action: q.action,
        actor: q.actor,
        after_seq: q.after_seq,
        limit,
    };
    let items = s.store.list_ledger(&f).await?;
    let next_cursor = (items.len() == limit).then(|| items.last().map(|e| e.seq.to_string())).flatten();
    Ok(Json(Page { items, next_cursor }))
}

/// Walks the whole chain and reports the first bad link, if any.
#[utoipa::path(get, path = "/ledger/verify", tag = "ledger", responses((status = 200, body = LedgerVerification)))]
pub async fn verify_ledger(State(s): State<AppState>, _ctx: Ctx) -> ApiResult<Json<LedgerVerification>> {
    Ok(Json(s.store.verify_ledger().await?))
}
