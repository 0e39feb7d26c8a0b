//! The MCP server (rmcp `ServerHandler`) over the registry: `tools/list` from `registry`,
//! `tools/call` into `handlers::call`. One type serves both the stdio bridge (`mc mcp`: one agent,
//! credentials fixed at start) and each Streamable HTTP session (credentials and toolsets read from
//! every request, since the HTTP layer authenticated it).

use std::sync::Arc;
use std::time::Instant;

use axum::http::request::Parts;
use mc_client::Client;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, ServiceExt};
use serde_json::Value;

use crate::error::ToolError;
use crate::handlers::{self, Caller, SessionState};
use crate::http::HttpMcp;
use crate::registry::{self, Toolsets};

/// Name the server gives in `initialize`.
pub const SERVER_NAME: &str = "missioncontrol";
/// What a stdio caller without an agent identity should do.
pub const STDIO_AGENT_HINT: &str = "start mc mcp with --agent NAME or MC_AGENT_ID=NAME (mc run sets one)";

/// Read by clients before the tool list: the work loop in one breath.
const INSTRUCTIONS: &str = "MissionControl coordinates agents. load_kluster_workspace first; claim_next_task for \
    work; heartbeat_task before the lease expires; complete_task or release_task when done. Fencing tokens are \
    tracked for you. Check get_overlap_suggestions before creating tasks.";

/// Where a session's credentials and toolsets come from.
#[derive(Debug)]
enum Source {
    /// `mc mcp`: one caller for the life of the process.
    Fixed { caller: Caller, toolsets: Toolsets },
    /// A Streamable HTTP session: each request carries its own.
    Http(Arc<HttpMcp>),
}

/// One MCP session over the registry.
#[derive(Debug)]
pub struct Bridge {
    source: Source,
    state: SessionState,
}

/// Why `serve_stdio` stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the MCP handshake on stdio failed: {0}")]
    Initialize(String),
    #[error("the MCP service stopped abnormally: {0}")]
    Stopped(String),
}

impl Bridge {
    /// The bridge of one agent: `client` carries its token and agent identity.
    pub fn stdio(client: Client, toolsets: Toolsets) -> Self {
        let lease_key = client.agent().unwrap_or_default().to_owned();
        let caller = Caller { client, lease_key, agent_hint: STDIO_AGENT_HINT };
        Self { source: Source::Fixed { caller, toolsets }, state: SessionState::default() }
    }

    pub(crate) fn http(shared: Arc<HttpMcp>) -> Self {
        Self { source: Source::Http(shared), state: SessionState::default() }
    }

    fn toolsets(&self, cx: &RequestContext<RoleServer>) -> Result<Toolsets, McpError> {
        match &self.source {
            Source::Fixed { toolsets, .. } => Ok(toolsets.clone()),
            Source::Http(_) => {
                let query = parts(cx).and_then(|p| p.uri.query()).unwrap_or_default();
                crate::http::toolsets_from_query(query).map_err(|e| McpError::invalid_params(e, None))
            }
        }
    }

    async fn run(
        &self,
        name: &str,
        args: Option<rmcp::model::JsonObject>,
        cx: &RequestContext<RoleServer>,
    ) -> Result<Value, ToolError> {
        match &self.source {
            Source::Fixed { caller, .. } => handlers::call(&self.state, caller, name, args).await,
            Source::Http(shared) => {
                let parts = parts(cx).ok_or_else(|| {
                    ToolError::new(500, "internal", "the HTTP request of this call is missing", Value::Null)
                })?;
                let caller = shared.caller(&parts.headers)?;
                handlers::call(&self.state, &caller, name, args).await
            }
        }
    }
}

fn parts(cx: &RequestContext<RoleServer>) -> Option<&Parts> {
    cx.extensions.get::<Parts>()
}

/// A handler's outcome as an MCP tool result: the value as `structuredContent` (and as JSON text
/// for clients that read only `content`), or an error whose text is the guidance for the agent.
pub fn tool_result(outcome: Result<Value, ToolError>) -> CallToolResult {
    match outcome {
        Ok(value) => CallToolResult::structured(value),
        Err(e) => {
            let mut r = CallToolResult::structured_error(e.envelope());
            r.content = vec![ContentBlock::text(e.message)];
            r
        }
    }
}

impl ServerHandler for Bridge {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(SERVER_NAME, env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(registry::tools(&self.toolsets(&cx)?)))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        registry::tool(name, &Toolsets::all())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.as_ref();
        let sets = self.toolsets(&cx)?;
        if registry::tool(name, &sets).is_none() {
            // The spec's answer to an unknown tool is a protocol error (-32602).
            let message = match registry::find(name) {
                Some(spec) => format!(
                    "tool `{name}` is in the `{}` toolset, which this session does not serve (toolsets: {sets}); \
                     set MC_MCP_TOOLSETS to include it",
                    spec.toolset
                ),
                None => handlers::unknown_tool(name).message,
            };
            return Err(McpError::invalid_params(message, None));
        }
        let started = Instant::now();
        let outcome = self.run(name, request.arguments, &cx).await;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        match &outcome {
            Ok(_) => tracing::debug!(tool = name, ms, "tool call"),
            Err(e) => tracing::info!(tool = name, ms, code = %e.code, "tool call refused: {}", e.message),
        }
        Ok(tool_result(outcome).into())
    }
}

/// Serves `bridge` on stdin/stdout until the client closes the stream. stdout carries only
/// protocol; logs go to stderr (set up by the caller). Lines that are not JSON, or too long, are
/// answered by the line filter in `stdio` (rmcp would drop them unanswered).
pub async fn serve_stdio(bridge: Bridge) -> Result<(), ServeError> {
    let pipes = crate::stdio::filtered(tokio::io::stdin(), tokio::io::stdout());
    let running = bridge.serve(pipes).await.map_err(|e| ServeError::Initialize(e.to_string()))?;
    running.waiting().await.map_err(|e| ServeError::Stopped(e.to_string()))?;
    Ok(())
}
