//! `mc mcp`: a standard MCP server on stdin/stdout for one agent. It reaches the control plane over
//! HTTP (`--base-url`/MC_BASE_URL, MC_TOKEN) as the agent `--agent`/MC_AGENT_ID; stdout carries
//! only protocol, logs go to stderr (`MC_LOG`, default `warn`).

use std::io::IsTerminal;

use mc_mcp::{Bridge, Toolsets};
use tracing_subscriber::EnvFilter;

use super::{CliError, Ctx};
use crate::cli::McpArgs;

pub async fn run(ctx: &Ctx, args: McpArgs) -> anyhow::Result<()> {
    init_tracing();
    let toolsets = Toolsets::parse(&args.toolsets).map_err(|e| {
        CliError::usage(e, Some("set MC_MCP_TOOLSETS (or --toolsets) to e.g. core,search, or all".to_owned()))
    })?;
    let client = ctx.client()?;
    if !client.has_token() {
        tracing::warn!("no token: the control plane will refuse every call (set MC_TOKEN)");
    }
    if client.agent().is_none() {
        tracing::warn!("no agent identity: claims are refused (set MC_AGENT_ID or pass --agent)");
    }
    tracing::info!(
        base_url = client.base_url(),
        agent = client.agent().unwrap_or("-"),
        toolsets = %toolsets,
        "serving MCP on stdio"
    );
    mc_mcp::serve_stdio(Bridge::stdio(client, toolsets)).await?;
    Ok(())
}

/// Logs go to stderr only (stdout is the protocol), filtered by `MC_LOG`, else `RUST_LOG`, else
/// `warn`: an agent's MCP log should stay quiet unless asked.
fn init_tracing() {
    let spec = std::env::var("MC_LOG").or_else(|_| std::env::var("RUST_LOG")).ok();
    let filter = match spec.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => EnvFilter::try_new(s).unwrap_or_else(|e| {
            eprintln!("warning: ignoring the log filter `{s}` ({e}); logging at warn");
            EnvFilter::new("warn")
        }),
        None => EnvFilter::new("warn"),
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .try_init();
}
