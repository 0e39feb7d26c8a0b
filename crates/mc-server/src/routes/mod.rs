//! HTTP resources, one module each, collected into one OpenAPI-documented router.

pub mod docs;
pub mod klusters;
pub mod ledger;
pub mod missions;
pub mod search;
pub mod system;
pub mod tasks;

use std::str::FromStr;

use mc_domain::{Error, limits};
use serde_json::json;

use crate::error::ApiError;

/// Parses an id from the path.
pub(crate) fn path_id<T: FromStr<Err = Error>>(raw: &str) -> Result<T, ApiError> {
    raw.parse::<T>().map_err(|e| ApiError::bad_request("invalid_id", e.to_string(), json!({ "field": "id" })))
}

/// Checks a page size: 1 to `MAX_PAGE`, default `DEFAULT_PAGE`.
pub(crate) fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(limits::DEFAULT_PAGE),
        Some(l) if (1..=limits::MAX_PAGE).contains(&l) => Ok(l),
        Some(l) => Err(ApiError::bad_param("limit", format!("must be between 1 and {}, got {l}", limits::MAX_PAGE))),
    }
}

/// Checks an id cursor (the id of the last item of the previous page).
pub(crate) fn id_cursor(cursor: Option<String>) -> Result<Option<String>, ApiError> {
    match cursor {
        None => Ok(None),
        Some(c) => match uuid::Uuid::parse_str(&c) {
            Ok(u) => Ok(Some(u.to_string())),
            Err(_) => Err(ApiError::bad_param("cursor", "is not a cursor returned by this API")),
        },
    }
}

pub(crate) fn page<T>(p: mc_store::Page<T>) -> mc_api::Page<T> {
    mc_api::Page { items: p.items, next_cursor: p.next_cursor }
}
