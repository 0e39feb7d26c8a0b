//! The client's one error type: a refusal parsed from the server's error envelope, a transport
//! failure (no answer at all), or an answer that does not match the wire contract.

use std::time::Duration;

use mc_api::{ErrorEnvelope, OverlapSuggestion};
use serde_json::Value;

/// Error code of a create refused because a duplicate of the new item exists.
pub const OVERLAP_DETECTED: &str = "overlap_detected";

/// Longest server-supplied text kept in a message built from a body that is not an envelope.
const MAX_RAW_MESSAGE_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status; `code` is its stable machine-readable code.
    #[error("{message} ({code}, HTTP {status})")]
    Api { status: u16, code: String, message: String, details: Value, request_id: Option<String> },
    /// No answer: connection refused, timeout, reset... The message says where and why.
    #[error("{0}")]
    Transport(String),
    /// An answer that does not match the contract (wrong shape, not JSON).
    #[error("unexpected response from the server: {0}")]
    Decode(String),
    /// The client was given an unusable base URL, token or agent identity.
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The stable error code of an API error (`task_held`, `not_found`...).
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Structured details of an API error (`Null` otherwise).
    pub fn details(&self) -> &Value {
        static NULL: Value = Value::Null;
        match self {
            Self::Api { details, .. } => details,
            _ => &NULL,
        }
    }

    /// The existing work behind an `overlap_detected` refusal of a create, best match first;
    /// `None` for any other error (or details that do not carry suggestions).
    pub fn overlap_suggestions(&self) -> Option<Vec<OverlapSuggestion>> {
        if self.code() != Some(OVERLAP_DETECTED) {
            return None;
        }
        serde_json::from_value(self.details().get("overlap_suggestions")?.clone()).ok()
    }

    /// Warnings attached to an API error's details (e.g. the embedder was unreachable).
    pub fn warnings(&self) -> Vec<String> {
        self.details().get("warnings").and_then(|w| serde_json::from_value(w.clone()).ok()).unwrap_or_default()
    }

    /// Whether the server refused the bearer token (or its absence).
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(401)
    }

    /// Builds the error for a non-success response from its status, request id and body.
    pub fn from_response(status: u16, request_id: Option<String>, body: &[u8]) -> Self {
        if let Ok(env) = serde_json::from_slice::<ErrorEnvelope>(body) {
            return Self::Api {
                status,
                code: env.error.code,
                message: one_line(&env.error.message),
                details: env.error.details,
                request_id,
            };
        }
        // Not our envelope (a proxy page, a panic): keep the first line of whatever came back.
        let text = String::from_utf8_lossy(body);
        let first = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
        let message = if first.is_empty() {
            reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("error").to_owned()
        } else {
            truncate(&one_line(first), MAX_RAW_MESSAGE_CHARS)
        };
        Self::Api { status, code: format!("http_{status}"), message, details: Value::Null, request_id }
    }

    /// Describes a request that got no answer from `base`.
    pub(crate) fn transport(err: &reqwest::Error, base: &str, timeout: Duration, connect_timeout: Duration) -> Self {
        let cause = root_cause(err);
        let msg = if err.is_connect() && err.is_timeout() {
            format!(
                "cannot connect to {base} (no answer within {} s); is `mc server` running at {base}?",
                connect_timeout.as_secs()
            )
        } else if err.is_connect() {
            format!("cannot connect to {base} ({cause}); is `mc server` running at {base}?")
        } else if err.is_timeout() {
            format!("{base} did not answer within {} s; the server may be overloaded or stuck", timeout.as_secs())
        } else {
            format!("request to {base} failed ({cause})")
        };
        Self::Transport(one_line(&msg))
    }
}

/// The innermost cause of an error chain ("Connection refused (os error 111)").
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Collapses line breaks and other control characters so a message prints on one line.
pub(crate) fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last_space = false;
    for c in s.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        out.push(c);
    }
    out.trim().to_owned()
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_is_parsed_with_details_and_request_id() {
        let body = br#"{"error":{"code":"task_held","message":"task t is held by bob until 10:00:00Z","details":{"holder":"bob","fencing_token":3}}}"#;
        let e = ClientError::from_response(409, Some("req-1".into()), body);
        match &e {
            ClientError::Api { status, code, message, details, request_id } => {
                assert_eq!(*status, 409);
                assert_eq!(code, "task_held");
                assert_eq!(message, "task t is held by bob until 10:00:00Z");
                assert_eq!(details["holder"], "bob");
                assert_eq!(details["fencing_token"], 3);
                assert_eq!(request_id.as_deref(), Some("req-1"));
            }
            other => panic!("expected an API error, got {other:?}"),
        }
        assert_eq!(e.to_string(), "task t is held by bob until 10:00:00Z (task_held, HTTP 409)");
        assert_eq!(e.code(), Some("task_held"));
    }

    #[test]
    fn an_overlap_refusal_carries_its_suggestions_and_warnings() {
        let body =
            br#"{"error":{"code":"overlap_detected","message":"this looks like a duplicate of task t","details":{
            "overlap_suggestions":[{"id":"t","kind":"task","title":"Add retries","status":"claimed","holder":"bob",
                "relation":"duplicate","score":0.97,"reasons":["shared wording 100%","same kluster"]}],
            "warnings":["no embedder is configured; only text signals were used"]}}}"#;
        let e = ClientError::from_response(409, None, body);
        assert_eq!(e.code(), Some(OVERLAP_DETECTED));
        let s = e.overlap_suggestions().expect("suggestions");
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].id.as_str(), s[0].holder.as_deref()), ("t", Some("bob")));
        assert_eq!(s[0].relation, mc_api::OverlapRelation::Duplicate);
        assert_eq!(s[0].reasons, ["shared wording 100%", "same kluster"]);
        assert_eq!(e.warnings(), ["no embedder is configured; only text signals were used"]);

        // Other codes have no suggestions even with a look-alike body; no warnings is empty.
        let other = br#"{"error":{"code":"conflict","message":"m","details":{"overlap_suggestions":[]}}}"#;
        let e = ClientError::from_response(409, None, other);
        assert!(e.overlap_suggestions().is_none());
        assert!(e.warnings().is_empty());
        assert!(ClientError::Transport("down".into()).overlap_suggestions().is_none());
    }

    #[test]
    fn envelope_without_details_defaults_to_null() {
        let body = br#"{"error":{"code":"unauthorized","message":"the bearer token is not valid"}}"#;
        let e = ClientError::from_response(401, None, body);
        assert!(e.is_unauthorized());
        assert_eq!(e.details(), &Value::Null);
    }

    #[test]
    fn foreign_bodies_keep_their_first_line_and_display_stays_one_line() {
        let e = ClientError::from_response(502, None, b"\n  Bad Gateway from proxy  \n<html>...</html>");
        assert_eq!(e.code(), Some("http_502"));
        assert_eq!(e.to_string(), "Bad Gateway from proxy (http_502, HTTP 502)");

        let e = ClientError::from_response(404, None, b"");
        assert_eq!(e.to_string(), "Not Found (http_404, HTTP 404)");

        let body = br#"{"error":{"code":"x","message":"two\nlines\r\nhere","details":null}}"#;
        let shown = ClientError::from_response(400, None, body).to_string();
        assert!(!shown.contains('\n') && !shown.contains('\r'), "{shown:?}");
        assert_eq!(shown, "two lines here (x, HTTP 400)");
    }

    #[test]
    fn long_foreign_bodies_are_truncated() {
        let body = "x".repeat(1000);
        let e = ClientError::from_response(500, None, body.as_bytes());
        let ClientError::Api { message, .. } = e else { panic!("expected an API error") };
        assert_eq!(message.chars().count(), MAX_RAW_MESSAGE_CHARS + 1);
        assert!(message.ends_with('…'));
    }
}
