//! Bearer-token authentication. Tokens are stored hashed (SHA-256: they are long random strings,
//! so a slow hash adds nothing); a short-lived in-process cache keeps the hot path off the
//! database.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use mc_domain::ledger::sha256_hex;
use mc_domain::{Principal, Result, Role};
use mc_store::{Store, TokenRecord};

use crate::AppState;
use crate::error::ApiError;

/// How long a resolved token is trusted without asking the store again.
const CACHE_TTL: Duration = Duration::from_secs(10);
const CACHE_MAX: usize = 10_000;

/// Hash under which a token is stored.
pub fn token_hash(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

/// A new random admin token (`mct_` + 256 bits of hex).
pub fn generate_token() -> String {
    format!("mct_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

/// Stores the hash of `MC_TOKEN` as the admin token; if none is given and the store has no token
/// yet, generates one and returns it so it can be shown once.
pub async fn bootstrap_admin_token(store: &dyn Store, from_env: Option<&str>) -> Result<Option<String>> {
    let admin = Principal { name: "admin".into(), role: Role::Admin };
    match from_env.map(str::trim).filter(|t| !t.is_empty()) {
        Some(token) => {
            store.put_token(TokenRecord { token_hash: token_hash(token), principal: admin }).await?;
            Ok(None)
        }
        None if store.has_tokens().await? => Ok(None),
        None => {
            let token = generate_token();
            store.put_token(TokenRecord { token_hash: token_hash(&token), principal: admin }).await?;
            Ok(Some(token))
        }
    }
}

#[derive(Debug, Default)]
pub struct TokenCache {
    entries: RwLock<HashMap<String, (Principal, Instant)>>,
}

impl TokenCache {
    async fn resolve(&self, store: &dyn Store, token: &str) -> Result<Option<Principal>> {
        let hash = token_hash(token);
        if let Some((p, at)) = self.entries.read().unwrap_or_else(|e| e.into_inner()).get(&hash)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(Some(p.clone()));
        }
        let found = store.principal_for_token(&hash).await?;
        if let Some(p) = &found {
            let mut map = self.entries.write().unwrap_or_else(|e| e.into_inner());
            if map.len() >= CACHE_MAX {
                map.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            }
            map.insert(hash, (p.clone(), Instant::now()));
        }
        Ok(found)
    }
}

/// Middleware: resolves `Authorization: Bearer` into a `Principal` request extension, or answers 401.
pub async fn require_token(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return ApiError::unauthorized("missing `Authorization: Bearer <token>` header (set MC_TOKEN)").into_response();
    };
    match state.tokens.resolve(state.store.as_ref(), token).await {
        Ok(Some(principal)) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Ok(None) => ApiError::unauthorized("the bearer token is not valid").into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
