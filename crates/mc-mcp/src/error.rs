//! A failed tool call, phrased for the agent that made it: what went wrong and what to call next.
//! Every failure of a handler ends here; the transports turn it into an MCP tool error
//! (`isError: true`) or, over `POST /mcp/call`, into the API's error envelope with its HTTP status.

use mc_client::{ClientError, OVERLAP_DETECTED};
use serde_json::{Value, json};

/// One failed call: a stable code, a one-line message for the agent, structured details, and the
/// HTTP status `POST /mcp/call` answers with.
#[derive(Debug, Clone)]
pub struct ToolError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub details: Value,
}

impl ToolError {
    pub fn new(status: u16, code: &str, message: impl Into<String>, details: Value) -> Self {
        Self { status, code: code.to_owned(), message: message.into(), details }
    }

    /// An argument the agent got wrong (400), naming it.
    pub fn argument(field: &str, message: impl AsRef<str>) -> Self {
        Self::new(
            400,
            "invalid_arguments",
            format!("invalid argument `{field}`: {}", message.as_ref()),
            json!({ "field": field }),
        )
    }

    /// An ownership tool called without an agent identity.
    pub fn no_agent(tool: &str, how: &str) -> Self {
        Self::new(400, "agent_required", format!("{tool} needs an agent identity to hold leases; {how}"), Value::Null)
    }

    /// The body of the error as the API's envelope (`{"error": {...}}`): the structured content of
    /// an MCP tool error and the body of a failed `POST /mcp/call`.
    pub fn envelope(&self) -> Value {
        json!({ "error": { "code": self.code, "message": self.message, "details": self.details } })
    }

    /// Rephrases a failure of the control plane for an agent: the server's message, with the next
    /// step named in terms of this bridge's tools.
    pub fn from_client(e: ClientError, tool: &str) -> Self {
        match e {
            ClientError::Api { status, code, message, details, .. } => {
                let message = guidance(status, &code, &message, &details, tool);
                Self { status, code, message, details }
            }
            ClientError::Transport(m) => Self::new(
                503,
                "control_plane_unreachable",
                format!("{m}; the call was not completed, retry in a few seconds"),
                Value::Null,
            ),
            ClientError::Decode(m) => {
                Self::new(502, "bad_gateway", format!("unexpected answer from the control plane: {m}"), Value::Null)
            }
            ClientError::Config(m) => Self::new(400, "invalid_arguments", m, Value::Null),
        }
    }
}

/// The message for an API refusal: what the server said plus what to do next.
fn guidance(status: u16, code: &str, message: &str, details: &Value, tool: &str) -> String {
    let task = details.get("task_id").and_then(Value::as_str).unwrap_or("this task");
    let holder = details.get("holder").and_then(Value::as_str);
    match code {
        "task_held" => {
            let until = details
                .get("expires_at")
                .and_then(Value::as_str)
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.format("%H:%M:%SZ").to_string());
            match (holder, until) {
                (Some(h), Some(u)) => {
                    format!("task {task} is held by {h} until {u}; call claim_next_task for other work")
                }
                _ => format!("{}; call claim_next_task for other work", strip_cli_hint(message)),
            }
        }
        "stale_fencing_token" => format!(
            "your lease on task {task} is gone (now held by {}); stop working on it and call claim_next_task for \
             other work",
            holder.unwrap_or("nobody")
        ),
        "lease_expired" => format!(
            "{message}; if it is still open, call claim_task to take it again, else claim_next_task for other work"
        ),
        "fencing_token_required" => format!(
            "task {task} is held by {}; this session does not hold its lease: call claim_task to take it (an agent \
             that already holds it renews it), or claim_next_task for other work",
            holder.unwrap_or("another agent")
        ),
        "not_claimable" | "dependencies_not_done" => format!("{message}; call claim_next_task for ready work"),
        OVERLAP_DETECTED => overlap_message(details),
        "not_found" => {
            format!(
                "{message}; check the id (search_tasks, list_ready_tasks, list_klusters and list_missions list ids)"
            )
        }
        "validation_failed" => format!("invalid argument: {message}"),
        "unauthorized" => format!(
            "the control plane refused the credentials of this MCP session ({message}); fix the token (MC_TOKEN for \
             mc mcp, the Authorization header over HTTP) and reconnect"
        ),
        _ if status >= 500 => format!("{message} (the control plane failed on {tool}; retry in a few seconds)"),
        _ => message.to_owned(),
    }
}

/// Builds the refusal of a duplicate: which task it duplicates and the two ways forward.
fn overlap_message(details: &Value) -> String {
    let best = details.get("overlap_suggestions").and_then(Value::as_array).and_then(|a| a.first());
    match best {
        Some(s) => {
            let id = s.get("id").and_then(Value::as_str).unwrap_or("?");
            let title = s.get("title").and_then(Value::as_str).unwrap_or("");
            let status = s.get("status").and_then(Value::as_str).unwrap_or("?");
            let held = match s.get("holder").and_then(Value::as_str) {
                Some(h) => format!(", held by {h}"),
                None => String::new(),
            };
            format!(
                "not created: it duplicates task {id} \"{title}\" ({status}{held}). Work on that task (claim_task) \
                 or leave it to its holder; if yours is really different work, call create_task again with \
                 acknowledge_overlap: true"
            )
        }
        None => "not created: it duplicates existing work (see overlap_suggestions); call create_task again with \
                 acknowledge_overlap: true if it is really different"
            .to_owned(),
    }
}

/// The domain's messages end with a CLI hint ("call claim-next for other work"); drop it so the MCP
/// wording can name its own tool.
fn strip_cli_hint(message: &str) -> &str {
    message.split("; call claim-next").next().unwrap_or(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str, message: &str, details: Value) -> ClientError {
        ClientError::Api { status, code: code.into(), message: message.into(), details, request_id: None }
    }

    #[test]
    fn a_held_task_names_the_holder_the_deadline_and_the_next_tool() {
        let e = api(
            409,
            "task_held",
            "task t1 is held by agent-1 until 12:03:00Z; call claim-next for other work",
            json!({"task_id": "t1", "holder": "agent-1", "expires_at": "2026-11-24T12:03:00.5Z", "fencing_token": 3}),
        );
        let t = ToolError::from_client(e, "claim_task");
        assert_eq!(t.status, 409);
        assert_eq!(t.code, "task_held");
        assert_eq!(t.message, "task t1 is held by agent-1 until 12:03:00Z; call claim_next_task for other work");
        assert_eq!(t.envelope()["error"]["details"]["holder"], "agent-1");
    }

    #[test]
    fn a_duplicate_names_the_existing_task_and_both_ways_forward() {
        let e = api(
            409,
            OVERLAP_DETECTED,
            "looks like a duplicate",
            json!({"overlap_suggestions": [{"id": "t9", "kind": "task", "title": "Add retries", "status": "claimed",
                "holder": "agent-2", "relation": "duplicate", "score": 0.97, "reasons": []}]}),
        );
        let t = ToolError::from_client(e, "create_task");
        assert!(t.message.starts_with("not created: it duplicates task t9 \"Add retries\" (claimed, held by agent-2)"));
        assert!(t.message.contains("acknowledge_overlap: true"), "{}", t.message);
        assert_eq!(t.details["overlap_suggestions"][0]["id"], "t9");
    }

    #[test]
    fn transport_failures_and_stale_tokens_say_what_to_do() {
        let t = ToolError::from_client(ClientError::Transport("cannot connect to http://x".into()), "get_task");
        assert_eq!((t.status, t.code.as_str()), (503, "control_plane_unreachable"));
        assert!(t.message.ends_with("retry in a few seconds"));
        let e = api(409, "stale_fencing_token", "m", json!({"task_id": "t", "holder": "b", "fencing_token": 4}));
        let t = ToolError::from_client(e, "complete_task");
        assert_eq!(
            t.message,
            "your lease on task t is gone (now held by b); stop working on it and call claim_next_task for other work"
        );
    }
}
