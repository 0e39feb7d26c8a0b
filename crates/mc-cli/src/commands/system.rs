//! `mc system doctor`: checks an installation from the client's side (reachability, auth,
//! version skew, storage, clock skew, what overlap detection runs on) and says what to do about
//! each failure.

use chrono::{TimeDelta, Utc};
use mc_client::{Client, ClientError};
use serde::Serialize;

use super::{CliError, Ctx, EXIT_FAILURE};
use crate::cli::SystemCmd;
use crate::output;

/// Largest clock difference with the server that leases tolerate.
const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::seconds(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// Not run because a check it depends on failed.
    Skip,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self { name, status: Status::Pass, detail: detail.into(), hint: None }
    }

    fn fail(name: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { name, status: Status::Fail, detail: detail.into(), hint: Some(hint.into()) }
    }

    fn skip(name: &'static str, because: &str) -> Self {
        Self { name, status: Status::Skip, detail: format!("skipped: {because}"), hint: None }
    }
}

#[derive(Debug, Serialize)]
struct Report {
    ok: bool,
    checks: Vec<Check>,
}

pub async fn run(ctx: &Ctx, cmd: SystemCmd) -> anyhow::Result<()> {
    match cmd {
        SystemCmd::Doctor => doctor(ctx).await,
    }
}

async fn doctor(ctx: &Ctx) -> anyhow::Result<()> {
    let client = ctx.client()?;
    let checks = run_checks(&client).await;
    let ok = checks.iter().all(|c| c.status == Status::Pass);
    if ctx.json() {
        output::json(&Report { ok, checks })?;
    } else {
        for c in &checks {
            let tag = match c.status {
                Status::Pass => "[PASS]",
                Status::Fail => "[FAIL]",
                Status::Skip => "[SKIP]",
            };
            output::line(format_args!("{tag} {:<14} {}", c.name, c.detail))?;
            if let Some(h) = &c.hint {
                output::line(format_args!("       hint: {h}"))?;
            }
        }
    }
    if ok { Ok(()) } else { Err(CliError::silent(EXIT_FAILURE).into()) }
}

async fn run_checks(client: &Client) -> Vec<Check> {
    let base = client.base_url();
    let mut checks = Vec::new();

    let health = match client.health().await {
        Ok(h) => {
            checks.push(Check::pass("reachable", format!("{base} answers (server {})", h.version)));
            h
        }
        Err(e) => {
            checks.push(Check::fail(
                "reachable",
                e.to_string(),
                "start the control plane with `mc server`, or point --base-url / MC_BASE_URL at it",
            ));
            for name in ["auth", "version", "storage", "clock", "overlap"] {
                checks.push(Check::skip(name, "the server is not reachable"));
            }
            return checks;
        }
    };

    const TOKEN_HINT: &str =
        "set MC_TOKEN (or --token) to a valid token; on its first start `mc server` prints a generated admin token";
    let authed = if !client.has_token() {
        checks.push(Check::fail("auth", "no token configured", TOKEN_HINT));
        false
    } else {
        match client.whoami().await {
            Ok(w) => {
                let agent = w.agent.map(|a| format!(", agent {a}")).unwrap_or_default();
                checks.push(Check::pass(
                    "auth",
                    format!("authenticated as {} (role {}){agent}", w.principal.name, w.principal.role.as_str()),
                ));
                true
            }
            Err(e) if e.is_unauthorized() => {
                checks.push(Check::fail("auth", format!("the server refused the token: {e}"), TOKEN_HINT));
                false
            }
            Err(e) => {
                checks.push(Check::fail("auth", e.to_string(), "see the server log"));
                false
            }
        }
    };

    checks.push(version_check(&health.version, env!("CARGO_PKG_VERSION")));

    checks.push(match client.readiness().await {
        Ok(r) if r.storage.ok => Check::pass(
            "storage",
            format!("{} ok, schema version {}: {}", r.storage.backend, r.storage.schema_version, r.storage.detail),
        ),
        Ok(r) => Check::fail(
            "storage",
            format!(
                "{} not ready, schema version {}: {}",
                r.storage.backend, r.storage.schema_version, r.storage.detail
            ),
            "see the server log; `mc server migrate` applies pending migrations",
        ),
        Err(e) => Check::fail("storage", e.to_string(), "see the server log"),
    });

    checks.push(if authed { clock_check(client).await } else { Check::skip("clock", "needs a valid token") });
    checks.push(if authed { overlap_check(client).await } else { Check::skip("overlap", "needs a valid token") });
    checks
}

/// What overlap detection and search run on: the embedder and where its scorer comes from.
async fn overlap_check(client: &Client) -> Check {
    match client.system_info().await {
        Ok(info) => match info.semantic {
            None => Check::pass("overlap", "embeddings are off: search and overlap detection judge on wording alone"),
            Some(s) => {
                let scorer = match s.scorer.as_str() {
                    "shipped" => "the scorer fitted for it ships with mc".to_owned(),
                    "calibrated" => "the server calibrated a scorer for it".to_owned(),
                    "calibrating" => {
                        "its scorer is being calibrated (until then no creation is refused as a duplicate)".to_owned()
                    }
                    other => format!("scorer {other}"),
                };
                Check::pass("overlap", format!("embedder {}: {scorer}", s.embedder))
            }
        },
        Err(e) => Check::fail("overlap", e.to_string(), hint_of(&e)),
    }
}

/// Same major.minor passes (a patch difference is noted); anything else fails.
fn version_check(server: &str, local: &str) -> Check {
    let (Some(s), Some(l)) = (parse_version(server), parse_version(local)) else {
        return Check::fail(
            "version",
            format!("cannot compare server {server} with mc {local}"),
            "install matching versions of the server and the CLI",
        );
    };
    if (s.0, s.1) != (l.0, l.1) {
        return Check::fail(
            "version",
            format!("server {server}, mc {local}: different minor versions"),
            format!("install matching versions: the server runs {server}, this mc is {local}"),
        );
    }
    if s.2 != l.2 {
        return Check::pass("version", format!("server {server}, mc {local} (patch versions differ; compatible)"));
    }
    Check::pass("version", format!("server {server}, mc {local}"))
}

/// `major.minor.patch`, ignoring any pre-release or build suffix.
fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.trim().split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let v = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(v)
}

async fn clock_check(client: &Client) -> Check {
    let before = Utc::now();
    let info = match client.system_info().await {
        Ok(i) => i,
        Err(e) => return Check::fail("clock", e.to_string(), hint_of(&e)),
    };
    let after = Utc::now();
    let round_trip = after - before;
    let local = before + round_trip / 2;
    let skew = info.server_time - local;
    let secs = skew.num_milliseconds() as f64 / 1000.0;
    let way = if secs >= 0.0 { "ahead of" } else { "behind" };
    let detail = format!(
        "server clock {:.3} s {way} this machine (round trip {} ms)",
        secs.abs(),
        round_trip.num_milliseconds()
    );
    if skew.abs() > MAX_CLOCK_SKEW {
        Check::fail(
            "clock",
            detail,
            "leases expire by the server's clock; keep both machines in sync with NTP (e.g. `timedatectl set-ntp true`)",
        )
    } else {
        Check::pass("clock", detail)
    }
}

fn hint_of(e: &ClientError) -> String {
    match e {
        ClientError::Transport(_) => "the server stopped answering during the checks".into(),
        _ => "see the server log".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_on_major_and_minor() {
        assert_eq!(version_check("0.1.0", "0.1.0").status, Status::Pass);
        let patch = version_check("0.1.3", "0.1.0");
        assert_eq!(patch.status, Status::Pass);
        assert!(patch.detail.contains("patch versions differ"), "{}", patch.detail);
        let minor = version_check("0.2.0", "0.1.0");
        assert_eq!(minor.status, Status::Fail);
        assert_eq!(minor.hint.as_deref(), Some("install matching versions: the server runs 0.2.0, this mc is 0.1.0"));
        assert_eq!(version_check("1.1.0", "0.1.0").status, Status::Fail);
        assert_eq!(version_check("0.1.0-rc.1", "0.1.0").status, Status::Pass);
        assert_eq!(version_check("garbage", "0.1.0").status, Status::Fail);
        assert_eq!(parse_version("1.2.3.4"), None);
        assert_eq!(parse_version("1.2"), None);
    }
}
