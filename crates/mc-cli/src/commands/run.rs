//! `mc run claude|codex|gemini [-- args…]`: launches an agent CLI wired to MissionControl. It gives
//! the agent an MCP server entry named `missioncontrol` that runs `mc mcp`, in that agent's own
//! format, and passes the server URL, token and agent identity through the environment only — the
//! configuration names the variables, never their values:
//!
//! - Claude Code: a JSON file (`{"mcpServers": {...}}`) passed as `--mcp-config=<file>`; its `env`
//!   holds `${VAR}` references, which Claude Code expands from its own environment.
//! - Codex CLI: `-c mcp_servers.missioncontrol.command=…`, `…args=[…]` and `…env_vars=[…]` (the
//!   names Codex forwards from its environment to an MCP server, which otherwise gets only a short
//!   allow-list); nothing is written.
//! - Gemini CLI: a settings file named by `GEMINI_CLI_SYSTEM_DEFAULTS_PATH` (the lowest-precedence
//!   layer, so user, project and administrator settings still apply; `mcpServers` objects merge
//!   across layers), holding the installed system defaults, if any, plus our server with
//!   `$VAR` references (Gemini CLI does not pass variables named like `*TOKEN*` on by itself).
//!
//! The agent runs with the user's remaining arguments; its exit code is passed through. Written
//! files live under `<config dir>/run/` and are removed when the agent exits.
//! `--preflight-only` checks everything and prints what would run, without launching.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, anyhow};
use mc_client::Client;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{CliError, Ctx};
use crate::cli::{AgentCli, RunArgs};
use crate::leases::CONFIG_DIR_ENV;
use crate::output;

/// Name of the MCP server entry in every agent's configuration.
pub const SERVER_ENTRY: &str = "missioncontrol";
/// How long the preflight MCP handshake with `mc mcp` may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

impl AgentCli {
    fn program(self) -> &'static str {
        match self {
            Self::Claude => "claude",
            Self::Codex => "codex",
            Self::Gemini => "gemini",
        }
    }

    fn install_hint(self) -> &'static str {
        match self {
            Self::Claude => "install Claude Code (npm install -g @anthropic-ai/claude-code) or put `claude` on PATH",
            Self::Codex => "install the Codex CLI (npm install -g @openai/codex) or put `codex` on PATH",
            Self::Gemini => "install the Gemini CLI (npm install -g @google/gemini-cli) or put `gemini` on PATH",
        }
    }
}

/// Everything `mc run` will do, computed before doing any of it.
#[derive(Debug)]
struct Plan {
    agent: AgentCli,
    /// The agent CLI found on PATH.
    program: Option<PathBuf>,
    agent_id: String,
    base_url: String,
    token: Option<String>,
    /// This `mc`, which the agent will start as `mc mcp`.
    mc: PathBuf,
    /// A configuration file to write, and its contents.
    file: Option<(PathBuf, String)>,
    /// Arguments given to the agent: ours, then the user's.
    argv: Vec<String>,
    /// Variables set for the agent (inherited by `mc mcp`).
    env: Vec<(String, String)>,
}

pub async fn run(ctx: &Ctx, args: RunArgs) -> anyhow::Result<()> {
    let plan = Plan::new(ctx, &args)?;
    if args.preflight_only {
        return preflight(ctx, &plan).await;
    }
    // Fail before launching when the agent could not coordinate anyway.
    let program = plan.program.clone().ok_or_else(|| not_found(plan.agent))?;
    let client = Client::new(&plan.base_url, plan.token.clone(), Some(plan.agent_id.clone()))?;
    client.whoami().await?;
    launch(&plan, &program).await
}

impl Plan {
    fn new(ctx: &Ctx, args: &RunArgs) -> anyhow::Result<Self> {
        let agent = args.agent_cli;
        let agent_id = match ctx.global.agent.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
            Some(a) => a.to_owned(),
            None => format!("{}-{}", agent.program(), &mc_domain::id::Uuid::new_v4().simple().to_string()[..8]),
        };
        mc_domain::AgentId::parse(&agent_id)
            .map_err(|e| CliError::usage(format!("invalid agent identity `{agent_id}`: {e}"), None))?;
        let token = ctx.global.token.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned);
        let mc = std::env::current_exe().context("cannot find the path of this `mc` binary")?;
        let mut env = vec![
            ("MC_BASE_URL".to_owned(), ctx.global.base_url.trim().to_owned()),
            ("MC_AGENT_ID".to_owned(), agent_id.clone()),
        ];
        if let Some(t) = &token {
            env.push(("MC_TOKEN".to_owned(), t.clone()));
        }
        // The variables `mc mcp` needs from the agent's environment.
        let mut forwarded: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        if std::env::var_os("MC_MCP_TOOLSETS").is_some_and(|v| !v.is_empty()) {
            forwarded.push("MC_MCP_TOOLSETS");
        }
        let mc_path = mc.to_string_lossy().into_owned();
        let (file, mut argv) = match agent {
            AgentCli::Claude => {
                let refs: serde_json::Map<String, Value> =
                    forwarded.iter().map(|k| ((*k).to_owned(), json!(format!("${{{k}}}")))).collect();
                let config = json!({ "mcpServers": { SERVER_ENTRY: {
                    "type": "stdio", "command": mc_path, "args": ["mcp"], "env": refs,
                } } });
                let path = run_dir()?.join(format!("claude-mcp-{}.json", std::process::id()));
                let argv = vec![format!("--mcp-config={}", path.display())];
                (Some((path, pretty(&config)?)), argv)
            }
            AgentCli::Codex => {
                let key = format!("mcp_servers.{SERVER_ENTRY}");
                let argv = vec![
                    "-c".to_owned(),
                    format!("{key}.command={}", toml_string(&mc_path)?),
                    "-c".to_owned(),
                    format!("{key}.args=[\"mcp\"]"),
                    "-c".to_owned(),
                    format!("{key}.env_vars={}", serde_json::to_string(&forwarded)?),
                ];
                (None, argv)
            }
            AgentCli::Gemini => {
                let refs: serde_json::Map<String, Value> =
                    forwarded.iter().map(|k| ((*k).to_owned(), json!(format!("${k}")))).collect();
                let mut settings = installed_gemini_defaults()?;
                let servers = settings
                    .as_object_mut()
                    .ok_or_else(|| anyhow!("the Gemini CLI system defaults are not a JSON object"))?
                    .entry("mcpServers")
                    .or_insert_with(|| json!({}));
                let Some(servers) = servers.as_object_mut() else {
                    return Err(anyhow!("`mcpServers` in the Gemini CLI system defaults is not an object"));
                };
                servers.insert(SERVER_ENTRY.to_owned(), json!({ "command": mc_path, "args": ["mcp"], "env": refs }));
                let path = run_dir()?.join(format!("gemini-settings-{}.json", std::process::id()));
                env.push((GEMINI_DEFAULTS_ENV.to_owned(), path.display().to_string()));
                (Some((path, pretty(&settings)?)), Vec::new())
            }
        };
        argv.extend(args.args.iter().cloned());
        Ok(Self {
            agent,
            program: find_on_path(agent.program()),
            agent_id,
            base_url: ctx.global.base_url.trim().to_owned(),
            token,
            mc,
            file,
            argv,
            env,
        })
    }

    /// The command line as a shell would show it, with the token redacted.
    fn shown(&self) -> String {
        let mut words: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| if k == "MC_TOKEN" { format!("{k}=<redacted>") } else { format!("{k}={}", quote(v)) })
            .collect();
        words.push(quote(
            &self.program.as_deref().map_or_else(|| self.agent.program().to_owned(), |p| p.display().to_string()),
        ));
        words.extend(self.argv.iter().map(|a| quote(a)));
        words.join(" ")
    }
}

/// Gemini CLI reads its system defaults from this file when the variable is set.
const GEMINI_DEFAULTS_ENV: &str = "GEMINI_CLI_SYSTEM_DEFAULTS_PATH";

/// The system defaults Gemini CLI would read without us (so that wrapping it loses none of them).
fn installed_gemini_defaults() -> anyhow::Result<Value> {
    let path = match std::env::var_os(GEMINI_DEFAULTS_ENV).filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None if cfg!(target_os = "macos") => {
            PathBuf::from("/Library/Application Support/GeminiCli/system-defaults.json")
        }
        None if cfg!(windows) => PathBuf::from(r"C:\ProgramData\gemini-cli\system-defaults.json"),
        None => PathBuf::from("/etc/gemini-cli/system-defaults.json"),
    };
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "cannot merge the Gemini CLI system defaults {}: not plain JSON (comments are not supported here)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Where per-run configuration files go: `<config dir>/run` (`MC_CONFIG_DIR` overrides).
fn run_dir() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os(CONFIG_DIR_ENV).filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => dirs::config_dir()
            .map(|d| d.join("missioncontrol"))
            .ok_or_else(|| anyhow!("cannot find a config directory; set {CONFIG_DIR_ENV}"))?,
    };
    Ok(dir.join("run"))
}

fn pretty(v: &Value) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(v)? + "\n")
}

/// A TOML basic string (JSON's escapes are a subset of TOML's for what serde_json emits).
fn toml_string(s: &str) -> anyhow::Result<String> {
    Ok(serde_json::to_string(s)?)
}

/// Quotes a word for display if a shell would need it.
fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The first executable named `name` on PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let exts: Vec<OsString> = if cfg!(windows) {
        std::env::var_os("PATHEXT")
            .map(|v| v.to_string_lossy().split(';').map(|e| OsString::from(e.to_ascii_lowercase())).collect())
            .unwrap_or_else(|| vec![".exe".into(), ".cmd".into(), ".bat".into()])
    } else {
        vec![OsString::new()]
    };
    std::env::split_paths(&path).filter(|d| !d.as_os_str().is_empty()).find_map(|dir| {
        exts.iter().find_map(|ext| {
            let mut file = name.to_owned().into();
            let candidate: &mut OsString = &mut file;
            candidate.push(ext);
            let p = dir.join(&*candidate);
            is_executable(&p).then_some(p)
        })
    })
}

fn is_executable(p: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(p) else { return false };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

fn not_found(agent: AgentCli) -> anyhow::Error {
    CliError::usage(format!("`{}` was not found on PATH", agent.program()), Some(agent.install_hint().to_owned()))
        .into()
}

/// Writes the configuration, runs the agent with the terminal, removes the file, and exits with the
/// agent's code.
async fn launch(plan: &Plan, program: &Path) -> anyhow::Result<()> {
    if let Some((path, contents)) = &plan.file {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!("mc run: {} as agent {} on {}", plan.agent.program(), plan.agent_id, plan.base_url);
    // Ctrl-C reaches the agent (same process group); `mc` stays to clean up and report its code.
    #[cfg(unix)]
    let _sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot take over Ctrl-C while the agent runs")?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&plan.argv).envs(plan.env.iter().map(|(k, v)| (k, v)));
    let status = match cmd.spawn() {
        Ok(mut child) => child.wait().await,
        Err(e) => Err(e),
    };
    if let Some((path, _)) = &plan.file {
        let _ = std::fs::remove_file(path);
    }
    let status = status.with_context(|| format!("cannot run {}", program.display()))?;
    let code = exit_code(status);
    if code == 0 { Ok(()) } else { Err(CliError::silent(code).into()) }
}

/// The agent's exit code; a death by signal N is reported as 128 + N, as shells do.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    if let Some(c) = status.code() {
        return u8::try_from(c & 0xff).unwrap_or(1);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return u8::try_from(128 + sig).unwrap_or(1);
        }
    }
    1
}

/// One line of the preflight report.
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

/// Checks the agent binary, the server, the token and an MCP handshake with `mc mcp` run as the
/// agent would run it; prints the report and what would run.
async fn preflight(ctx: &Ctx, plan: &Plan) -> anyhow::Result<()> {
    let mut checks = Vec::new();
    checks.push(match &plan.program {
        Some(p) => {
            Check { name: "agent", ok: true, detail: format!("{} found at {}", plan.agent.program(), p.display()) }
        }
        None => Check {
            name: "agent",
            ok: false,
            detail: format!("{} not found on PATH: {}", plan.agent.program(), plan.agent.install_hint()),
        },
    });
    let client = Client::new(&plan.base_url, plan.token.clone(), Some(plan.agent_id.clone()))?;
    let reachable = match client.health().await {
        Ok(h) => {
            checks.push(Check {
                name: "server",
                ok: true,
                detail: format!("{} answers (mc {})", plan.base_url, h.version),
            });
            true
        }
        Err(e) => {
            checks.push(Check { name: "server", ok: false, detail: e.to_string() });
            false
        }
    };
    if !reachable {
        checks.push(Check { name: "token", ok: false, detail: "not checked: the server is unreachable".into() });
    } else if plan.token.is_none() {
        checks.push(Check { name: "token", ok: false, detail: "no token: set MC_TOKEN (or --token)".into() });
    } else {
        checks.push(match client.whoami().await {
            Ok(w) => Check {
                name: "token",
                ok: true,
                detail: format!("valid: {} ({})", w.principal.name, w.principal.role.as_str()),
            },
            Err(e) => Check { name: "token", ok: false, detail: e.to_string() },
        });
    }
    checks.push(match mcp_handshake(plan).await {
        Ok(d) => Check { name: "mcp", ok: true, detail: d },
        Err(e) => Check { name: "mcp", ok: false, detail: format!("{e:#}") },
    });
    let all_ok = checks.iter().all(|c| c.ok);
    if ctx.json() {
        output::json(&json!({
            "ok": all_ok,
            "checks": checks.iter().map(|c| json!({"check": c.name, "ok": c.ok, "detail": c.detail})).collect::<Vec<_>>(),
            "agent_id": plan.agent_id,
            "config_file": plan.file.as_ref().map(|(p, c)| json!({"path": p, "contents": c})),
            "command": plan.shown(),
        }))?;
    } else {
        for c in &checks {
            output::line(format_args!("{:<4} {:<7} {}", if c.ok { "ok" } else { "FAIL" }, c.name, c.detail))?;
        }
        output::line(format_args!("agent identity: {}", plan.agent_id))?;
        if let Some((path, contents)) = &plan.file {
            output::line(format_args!("would write {}:\n{}", path.display(), contents.trim_end()))?;
        }
        output::line(format_args!("would run: {}", plan.shown()))?;
    }
    if all_ok { Ok(()) } else { Err(CliError::silent(super::EXIT_FAILURE).into()) }
}

/// Starts `mc mcp` with nothing but the variables the agent's configuration forwards (plus PATH and
/// HOME), and speaks MCP to it: initialize, tools/list, one read-only call.
async fn mcp_handshake(plan: &Plan) -> anyhow::Result<String> {
    let mut cmd = tokio::process::Command::new(&plan.mc);
    cmd.arg("mcp").env_clear().stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true);
    for key in ["PATH", "HOME", "MC_MCP_TOOLSETS"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd.envs(plan.env.iter().filter(|(k, _)| k.starts_with("MC_")).map(|(k, v)| (k, v)));
    let mut child = cmd.spawn().with_context(|| format!("cannot start {} mcp", plan.mc.display()))?;
    let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut rpc = Rpc { stdin, lines: BufReader::new(stdout).lines() };
    let talk = async {
        let init = rpc
            .request(
                1,
                "initialize",
                json!({"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "mc-run-preflight", "version": env!("CARGO_PKG_VERSION")}}),
            )
            .await?;
        rpc.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await?;
        let tools = rpc.request(2, "tools/list", json!({})).await?;
        let n = tools.get("tools").and_then(Value::as_array).map_or(0, Vec::len);
        let size = serde_json::to_vec(&tools).map_or(0, |v| v.len());
        let call = rpc.request(3, "tools/call", json!({"name": "list_missions", "arguments": {"limit": 1}})).await?;
        if call.get("isError") == Some(&Value::Bool(true)) {
            let text = call.pointer("/content/0/text").and_then(Value::as_str).unwrap_or("error");
            return Err(anyhow!("tools/call list_missions failed: {text}"));
        }
        let server = init.pointer("/serverInfo/name").and_then(Value::as_str).unwrap_or("?").to_owned();
        let version = init.pointer("/serverInfo/version").and_then(Value::as_str).unwrap_or("?").to_owned();
        let protocol = init.get("protocolVersion").and_then(Value::as_str).unwrap_or("?").to_owned();
        anyhow::Ok(format!(
            "mc mcp: {server} {version}, protocol {protocol}, {n} tools ({size} bytes, ~{} tokens), list_missions ok",
            size / 4
        ))
    };
    let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, talk).await;
    drop(rpc);
    let _ = child.start_kill();
    let _ = child.wait().await;
    match outcome {
        Ok(r) => r,
        Err(_) => Err(anyhow!("no MCP answer from mc mcp within {} s", HANDSHAKE_TIMEOUT.as_secs())),
    }
}

/// JSON-RPC over a child's stdin/stdout, one message per line.
struct Rpc {
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Rpc {
    async fn send(&mut self, msg: Value) -> anyhow::Result<()> {
        self.stdin.write_all(format!("{msg}\n").as_bytes()).await?;
        Ok(())
    }

    /// Sends a request and returns its result, skipping anything else the server says meanwhile.
    async fn request(&mut self, id: u64, method: &str, params: Value) -> anyhow::Result<Value> {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await?;
        loop {
            let line = self.lines.next_line().await?.ok_or_else(|| anyhow!("mc mcp closed its output"))?;
            let v: Value = serde_json::from_str(&line).with_context(|| format!("not JSON-RPC: {line}"))?;
            if v.get("id") != Some(&json!(id)) {
                continue;
            }
            if let Some(e) = v.get("error") {
                return Err(anyhow!("{method} failed: {e}"));
            }
            return v.get("result").cloned().ok_or_else(|| anyhow!("{method}: no result"));
        }
    }
}
