//! MCP over HTTP, for the control plane to mount: `GET /mcp/tools` (the tool list, public like the
//! API docs), `POST /mcp/call` (`{"tool", "args"}`, for curl and scripts) and MCP Streamable HTTP at
//! `/mcp`. The server puts its bearer-token check in front of the last two; the tools then reach
//! the REST API over loopback with the caller's own token and agent header, so every call is
//! authorized, validated and recorded exactly like a direct API call.
//!
//! `POST /mcp/call` is stateless: nothing is remembered between calls, so fenced calls (heartbeat,
//! release, complete, update of a held task) take `fencing_token` from the claim's answer. MCP
//! sessions (stdio, Streamable HTTP) track tokens themselves.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mc_api::AGENT_HEADER;
use mc_client::Client;
use rmcp::model::JsonObject;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::error::ToolError;
use crate::handlers::{self, Caller, SessionState};
use crate::registry::{self, Toolsets};
use crate::server::Bridge;

/// What an HTTP caller without an agent identity should do.
pub const HTTP_AGENT_HINT: &str = "send the x-mc-agent header (e.g. x-mc-agent: agent-1)";

/// The MCP endpoints of one control plane.
#[derive(Debug)]
pub struct HttpMcp {
    /// The control plane's own API, over loopback, without credentials (each call adds the
    /// caller's).
    base: Client,
    max_body_bytes: usize,
    /// Ends open Streamable HTTP streams, so that a graceful shutdown does not wait for them.
    cancel: CancellationToken,
}

impl HttpMcp {
    /// `api_base_url`: where this process serves its REST API, e.g. `http://127.0.0.1:8008`.
    pub fn new(api_base_url: &str, max_body_bytes: usize) -> Result<Arc<Self>, mc_client::ClientError> {
        let base = Client::new(api_base_url, None, None)?;
        Ok(Arc::new(Self { base, max_body_bytes, cancel: CancellationToken::new() }))
    }

    /// Closes every Streamable HTTP session and stream (call when the server shuts down).
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    /// The caller behind a request: its bearer token and agent identity, forwarded as they came.
    pub(crate) fn caller(&self, headers: &HeaderMap) -> Result<Caller, ToolError> {
        let token = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(|t| t.trim().to_owned());
        let agent = match headers.get(AGENT_HEADER).map(|v| v.to_str()) {
            None => None,
            Some(Ok(a)) => Some(a.trim().to_owned()),
            Some(Err(_)) => return Err(ToolError::argument(AGENT_HEADER, "must be printable ASCII")),
        };
        let client = self.base.with_identity(token.clone(), agent).map_err(|e| ToolError::from_client(e, "call"))?;
        let credential = mc_domain::ledger::sha256_hex(token.unwrap_or_default().as_bytes());
        let lease_key = format!("{}:{}", &credential[..16], client.agent().unwrap_or_default());
        Ok(Caller { client, lease_key, agent_hint: HTTP_AGENT_HINT })
    }

    /// `POST /mcp/call` and Streamable HTTP at `/mcp`: to be put behind the bearer-token check.
    pub fn authed_router<S: Clone + Send + Sync + 'static>(self: &Arc<Self>) -> Router<S> {
        let shared = Arc::clone(self);
        // Every request is authenticated by bearer token before it gets here, which a page using
        // DNS rebinding cannot present; so the Host allow-list (loopback names only by default)
        // would only lock out remote agents.
        let config = StreamableHttpServerConfig::default()
            .with_cancellation_token(self.cancel.child_token())
            .with_max_request_body_bytes(self.max_body_bytes)
            .disable_allowed_hosts();
        let service = StreamableHttpService::new(
            move || Ok(Bridge::http(Arc::clone(&shared))),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        Router::new().route("/mcp/call", post(call_tool)).route_service("/mcp", service).with_state(Arc::clone(self))
    }
}

/// `GET /mcp/tools` (`?toolsets=core,...`): public, like the API docs; needs no running bridge.
pub fn tools_router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/mcp/tools", get(list_tools))
}

/// The toolsets named by `?toolsets=core,search` (all when absent).
pub fn toolsets_from_query(query: &str) -> Result<Toolsets, String> {
    let spec = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("toolsets="))
        .map(|v| v.replace("%2C", ",").replace("%2c", ",").replace('+', " "))
        .unwrap_or_default();
    Toolsets::parse(&spec)
}

fn error_response(e: &ToolError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(e.envelope())).into_response()
}

async fn list_tools(uri: Uri) -> Response {
    match toolsets_from_query(uri.query().unwrap_or_default()) {
        Ok(sets) => axum::Json(registry::list_json(&sets)).into_response(),
        Err(m) => error_response(&ToolError::argument("toolsets", m)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallBody {
    tool: String,
    #[serde(default)]
    args: Option<Value>,
}

/// `POST /mcp/call`: `{"tool": "...", "args": {...}}` → 200 `{"result": ...}`, or the API's error
/// envelope with the status of the refusal.
async fn call_tool(State(shared): State<Arc<HttpMcp>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut de = serde_json::Deserializer::from_slice(&body);
    let parsed: Result<CallBody, _> = serde_path_to_error::deserialize(&mut de);
    let body = match parsed {
        Ok(b) => b,
        Err(e) => {
            let message =
                format!("the body must be {{\"tool\": \"<name>\", \"args\": {{...}}}} ({}: {})", e.path(), e.inner());
            return error_response(&ToolError::new(400, "invalid_body", message, Value::Null));
        }
    };
    let args: Option<JsonObject> = match body.args {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => return error_response(&ToolError::argument("args", "must be a JSON object")),
    };
    if registry::find(&body.tool).is_none() {
        return error_response(&handlers::unknown_tool(&body.tool));
    }
    let caller = match shared.caller(&headers) {
        Ok(c) => c,
        Err(e) => return error_response(&e),
    };
    // Stateless: a fresh session per call.
    let state = SessionState::default();
    match handlers::call(&state, &caller, &body.tool, args).await {
        Ok(result) => axum::Json(json!({ "result": result })).into_response(),
        Err(e) => error_response(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toolsets_come_from_the_query_string() {
        assert_eq!(toolsets_from_query("").expect("none"), Toolsets::all());
        assert_eq!(toolsets_from_query("x=1&toolsets=core%2Csearch").expect("two").to_string(), "core,search");
        assert!(toolsets_from_query("toolsets=nope").is_err());
    }

    #[test]
    fn the_caller_forwards_token_and_agent_and_scopes_its_leases() {
        let mcp = HttpMcp::new("http://127.0.0.1:9", 1024).expect("mcp");
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer tok-1".parse().expect("header"));
        h.insert(AGENT_HEADER, "agent-1".parse().expect("header"));
        let a = mcp.caller(&h).expect("caller");
        assert_eq!(a.client.agent(), Some("agent-1"));
        assert!(a.client.has_token());
        h.insert("authorization", "Bearer tok-2".parse().expect("header"));
        let b = mcp.caller(&h).expect("caller");
        assert_ne!(a.lease_key, b.lease_key, "other credentials, other leases");
        assert!(a.lease_key.ends_with(":agent-1"));
        h.insert(AGENT_HEADER, "bad agent".parse().expect("header"));
        let e = mcp.caller(&h).expect_err("invalid agent");
        assert_eq!(e.status, 400);
    }
}
