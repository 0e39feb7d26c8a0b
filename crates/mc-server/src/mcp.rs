//! MCP over HTTP, mounted from `mc-mcp`: `GET /mcp/tools` is public like the API docs; `POST
//! /mcp/call` and Streamable HTTP at `/mcp` pass the same bearer-token check as the API, then reach
//! the API over loopback with the caller's own token and agent header (the bridge is set by
//! `start`, which knows the bound address).

use std::net::SocketAddr;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::any;

use crate::error::ApiError;
use crate::{AppState, auth};

/// The MCP routes of the application.
pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let tools = mc_mcp::http::tools_router();
    match &state.mcp {
        Some(mcp) => tools
            .merge(mcp.authed_router().layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token))),
        None => tools.route("/mcp", any(not_started)).route("/mcp/call", any(not_started)),
    }
}

/// An application built without `start` (e.g. driven by `oneshot` in tests) has no loopback
/// address for the tools to call through.
async fn not_started() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "mcp_unavailable",
        "MCP calls are served only by a running server (mc_server::start)",
        serde_json::Value::Null,
    )
}

/// Where this process's own API answers: the bound address, with a wildcard replaced by loopback.
pub(crate) fn loopback_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_addresses_are_reached_over_loopback() {
        let parse = |s: &str| s.parse::<SocketAddr>().expect("addr");
        assert_eq!(loopback_url(parse("0.0.0.0:8008")), "http://127.0.0.1:8008");
        assert_eq!(loopback_url(parse("[::]:9")), "http://[::1]:9");
        assert_eq!(loopback_url(parse("10.1.2.3:80")), "http://10.1.2.3:80");
    }
}
