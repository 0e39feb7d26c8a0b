//! Request extractors that turn every malformed input into the API's error envelope: strict JSON
//! bodies (the failing field named), query strings, and the request context (who acts, under
//! which request id and idempotency key).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use mc_api::AGENT_HEADER;
use mc_domain::ledger::sha256_hex;
use mc_domain::{Actor, AgentId, Principal};
use mc_store::{IdempotencyKey, WriteCtx};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::ApiError;

/// A JSON body parsed strictly; keeps the raw bytes for idempotency fingerprints.
#[derive(Debug)]
pub struct ApiJson<T> {
    pub value: T,
    pub raw: Bytes,
}

fn parse_json<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(raw);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        use serde_json::error::Category;
        match inner.classify() {
            Category::Syntax | Category::Eof | Category::Io => ApiError::bad_request(
                "invalid_json",
                format!("the body is not valid JSON: {inner}"),
                json!({ "line": inner.line(), "column": inner.column() }),
            ),
            Category::Data => {
                let field = if path == "." { String::new() } else { path };
                let msg = strip_position(&inner.to_string());
                let message = if field.is_empty() { msg } else { format!("{field}: {msg}") };
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message, json!({ "field": field }))
            }
        }
    })
}

/// serde_json appends " at line L column C"; the field path says more.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than the server accepts (MC_MAX_BODY_BYTES)",
                serde_json::Value::Null,
            )
        } else {
            ApiError::bad_request("invalid_body", rej.body_text(), serde_json::Value::Null)
        }
    })
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let raw = body_bytes(req, state).await?;
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request("invalid_json", "a JSON body is required", serde_json::Value::Null));
        }
        Ok(Self { value: parse_json(&raw)?, raw })
    }
}

/// A JSON body that may be absent (empty means the default, e.g. a claim with the default TTL).
#[derive(Debug)]
pub struct OptJson<T>(pub T);

impl<S, T> FromRequest<S> for OptJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let raw = body_bytes(req, state).await?;
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        Ok(Self(parse_json(&raw)?))
    }
}

/// A query string parsed strictly.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Self(q))
            .map_err(|rej| ApiError::bad_request("invalid_query", rej.body_text(), serde_json::Value::Null))
    }
}

/// Who is calling and how: the authenticated principal, the agent identity it acts as
/// (`x-mc-agent`), the request id, and the `Idempotency-Key` if any.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub actor: Actor,
    pub request_id: Option<String>,
    idempotency_key: Option<String>,
}

impl Ctx {
    /// The store context of a mutation without idempotency.
    pub fn write(&self) -> WriteCtx {
        WriteCtx {
            actor: self.actor.clone(),
            request_id: self.request_id.clone(),
            idempotency: None,
            action_suffix: None,
            replay_extra: None,
        }
    }

    /// The store context of a creating call: a repeated `Idempotency-Key` with the same request
    /// replays the first result; with a different request it is refused.
    pub fn write_idempotent(&self, route: &str, body: &[u8]) -> WriteCtx {
        let mut ctx = self.write();
        ctx.idempotency = self.idempotency_key(route, body);
        ctx
    }

    /// The idempotency key of this request, scoped to the caller and fingerprinted.
    pub fn idempotency_key(&self, route: &str, body: &[u8]) -> Option<IdempotencyKey> {
        self.idempotency_key.as_ref().map(|key| {
            let mut material = Vec::with_capacity(route.len() + body.len() + 1);
            material.extend_from_slice(route.as_bytes());
            material.push(0);
            material.extend_from_slice(body);
            IdempotencyKey {
                scope: self.actor.principal.name.clone(),
                key: key.clone(),
                fingerprint: sha256_hex(&material),
            }
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("authentication required"))?;
        let header = |name: &str| -> Result<Option<String>, ApiError> {
            match parts.headers.get(name) {
                None => Ok(None),
                Some(v) => v.to_str().map(|s| Some(s.trim().to_owned())).map_err(|_| {
                    ApiError::bad_request(
                        "invalid_header",
                        format!("header {name} is not valid text"),
                        json!({ "header": name }),
                    )
                }),
            }
        };
        let agent = match header(AGENT_HEADER)? {
            Some(a) if !a.is_empty() => Some(AgentId::parse(&a).map_err(|e| {
                ApiError::bad_request(
                    "invalid_header",
                    format!("header {AGENT_HEADER}: {e}"),
                    json!({ "header": AGENT_HEADER }),
                )
            })?),
            _ => None,
        };
        let idempotency_key = match header("idempotency-key")? {
            Some(k) if k.is_empty() || k.len() > 255 || k.chars().any(|c| !c.is_ascii_graphic()) => {
                return Err(ApiError::bad_request(
                    "invalid_header",
                    "header Idempotency-Key must be 1 to 255 printable ASCII characters",
                    json!({ "header": "idempotency-key" }),
                ));
            }
            k => k,
        };
        Ok(Self { actor: Actor { principal, agent }, request_id: header("x-request-id")?, idempotency_key })
    }
}
