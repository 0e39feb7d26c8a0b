//! What the subcommands share: the connection settings, the errors the CLI raises itself (with
//! their exit codes and hints), and the hints attached to errors from the server.

pub mod doc;
pub mod kluster;
pub mod ledger;
pub mod mcp;
pub mod mission;
pub mod run;
pub mod search;
pub mod server;
pub mod system;
pub mod task;

use std::fmt;

use mc_client::{Client, ClientError, OVERLAP_DETECTED};

use crate::cli::GlobalArgs;
use crate::output;

/// Exit code of a refusal by the server, or a local failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of a command used wrongly (also what clap uses).
pub const EXIT_USAGE: u8 = 2;
/// Exit code when the server could not be reached.
pub const EXIT_TRANSPORT: u8 = 3;

/// An error the CLI raises itself, with its exit code and an optional hint.
#[derive(Debug)]
pub struct CliError {
    pub exit: u8,
    pub message: String,
    pub hint: Option<String>,
}

impl CliError {
    /// The command was used wrongly (exit 2).
    pub fn usage(message: impl Into<String>, hint: impl Into<Option<String>>) -> Self {
        Self { exit: EXIT_USAGE, message: message.into(), hint: hint.into() }
    }

    /// The command ran and found a problem (exit 1).
    pub fn failure(message: impl Into<String>) -> Self {
        Self { exit: EXIT_FAILURE, message: message.into(), hint: None }
    }

    /// Exit with `exit` after the command printed its own report: no `error:` line.
    pub fn silent(exit: u8) -> Self {
        Self { exit, message: String::new(), hint: None }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// How the subcommands reach the control plane.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub global: GlobalArgs,
}

impl Ctx {
    pub fn new(global: GlobalArgs) -> Self {
        Self { global }
    }

    pub fn json(&self) -> bool {
        self.global.json
    }

    /// A client with the global settings.
    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.global.base_url, self.global.token.clone(), self.global.agent.clone())?)
    }

    /// A client whose creating calls use `key` (when given) as their idempotency key.
    pub fn creating_client(&self, key: Option<&str>) -> anyhow::Result<Client> {
        let client = self.client()?;
        Ok(match key {
            Some(k) => client.with_idempotency_key(k),
            None => client,
        })
    }

    /// The agent identity, which ownership commands cannot do without.
    pub fn agent(&self, command: &str) -> anyhow::Result<String> {
        match self.global.agent.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
            Some(a) => Ok(a.to_owned()),
            None => Err(CliError::usage(
                format!("`mc task {command}` needs an agent identity to hold the lease"),
                Some("pass --agent NAME or set MC_AGENT_ID (e.g. MC_AGENT_ID=agent-1)".to_owned()),
            )
            .into()),
        }
    }
}

/// The exit code for an error that ends the program.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if let Some(e) = err.downcast_ref::<CliError>() {
        return e.exit;
    }
    match err.downcast_ref::<ClientError>() {
        Some(ClientError::Transport(_)) => EXIT_TRANSPORT,
        Some(ClientError::Config(_)) => EXIT_USAGE,
        _ => EXIT_FAILURE,
    }
}

/// Lines to print between the error line and the hint: the existing work a create overlaps, and
/// the server's warnings about how it judged.
pub fn detail(err: &anyhow::Error) -> Option<String> {
    let e = err.downcast_ref::<ClientError>()?;
    let suggestions = e.overlap_suggestions()?;
    let mut lines: Vec<String> = Vec::new();
    if !suggestions.is_empty() {
        lines.push(output::suggestions(&suggestions));
    }
    lines.extend(e.warnings().iter().map(|w| output::warning_line(w)));
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// A hint to print under the error line, when there is a useful next step.
pub fn hint(err: &anyhow::Error) -> Option<String> {
    if let Some(e) = err.downcast_ref::<CliError>() {
        return e.hint.clone();
    }
    match err.downcast_ref::<ClientError>()? {
        ClientError::Transport(_) => {
            Some("start the control plane with `mc server`, or point --base-url / MC_BASE_URL at it".into())
        }
        ClientError::Api { status: 401, .. } => Some(
            "set MC_TOKEN (or --token) to a valid token; on its first start `mc server` prints a generated \
                 admin token"
                .into(),
        ),
        e @ ClientError::Api { code, .. } => {
            let task = e.details().get("task_id").and_then(|v| v.as_str()).unwrap_or("<task>");
            match code.as_str() {
                "stale_fencing_token" | "task_held" => {
                    Some(format!("see the current holder and fencing token with `mc task show {task}`"))
                }
                "fencing_token_required" => Some(format!("pass --fence N (see `mc task show {task}`)")),
                "lease_expired" => Some(format!("claim it again with `mc task claim {task}`")),
                OVERLAP_DETECTED => Some("reuse it, or pass --acknowledge-overlap to create anyway".into()),
                _ => None,
            }
        }
        _ => None,
    }
}
