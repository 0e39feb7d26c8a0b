//! The command line: every flag, subcommand and environment variable of `mc`, as clap derive types.

use std::path::PathBuf;

use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use mc_domain::{DocId, KlusterId, MissionId, TaskId, TaskStatus, limits};
use mc_server::routes::search::MAX_SEARCH_LIMIT;

/// Where the CLI looks for the control plane unless told otherwise.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:8008";

#[derive(Debug, Parser)]
#[command(
    name = "mc",
    version,
    about = "MissionControl: a control plane for AI agents",
    long_about = "MissionControl: a control plane for AI agents.\n\n\
        `mc server` runs the control plane; every other command talks to it over HTTP.",
    propagate_version = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// URL of the control plane.
    #[arg(long, env = "MC_BASE_URL", default_value = DEFAULT_BASE_URL, global = true)]
    pub base_url: String,
    /// Bearer token (for `mc server`: the bootstrap admin token to store).
    #[arg(long, env = "MC_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Agent identity to act as; claims and leases are held by it.
    #[arg(long, env = "MC_AGENT_ID", global = true)]
    pub agent: Option<String>,
    /// Print machine-readable JSON (the API's response bodies) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane (HTTP API, workers) on the embedded SQLite store.
    Server(ServerArgs),
    /// Missions: bounded objectives.
    Mission {
        #[command(subcommand)]
        cmd: MissionCmd,
    },
    /// Klusters: workstreams inside a mission.
    Kluster {
        #[command(subcommand)]
        cmd: KlusterCmd,
    },
    /// Docs and artifacts: knowledge and work products of a mission, versioned.
    Doc {
        #[command(subcommand)]
        cmd: DocCmd,
    },
    /// Tasks: units of work, their dependencies and their leases.
    Task {
        #[command(subcommand)]
        cmd: TaskCmd,
    },
    /// Search tasks (or, with --klusters or --docs, klusters or docs) by meaning and wording; each hit says why it
    /// matched.
    Search(SearchArgs),
    /// The hash-chained record of every mutation.
    Ledger {
        #[command(subcommand)]
        cmd: LedgerCmd,
    },
    /// Health of the installation.
    System {
        #[command(subcommand)]
        cmd: SystemCmd,
    },
    /// Serve MissionControl's tools to an agent over MCP on stdin/stdout (logs on stderr).
    Mcp(McpArgs),
    /// Launch an agent CLI (claude, codex, gemini) wired to MissionControl over MCP.
    #[command(after_help = "Arguments after `--` go to the agent: mc run claude -- -p \"claim the next task\"")]
    Run(RunArgs),
    /// Print the version of this binary.
    Version,
}

// ---- server ----

#[derive(Debug, Args)]
pub struct ServerArgs {
    #[command(subcommand)]
    pub cmd: Option<ServerCmd>,
    /// Address to listen on.
    #[arg(long, env = "MC_LISTEN", default_value = "127.0.0.1:8008")]
    pub listen: String,
    /// Directory of the embedded database [default: <user data dir>/missioncontrol].
    #[arg(long, env = "MC_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL instead of the embedded SQLite store: a `postgres://` (or `postgresql://`) URL
    /// (`postgres://user:password@host:5432/db?sslmode=require`). The database needs the pgvector
    /// extension (created by the first migration when the user may create it).
    #[arg(long, env = "MC_DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "MC_MAX_BODY_BYTES", default_value_t = 1024 * 1024,
        value_parser = RangedU64ValueParser::<usize>::new().range(1024..=1024 * 1024 * 1024))]
    pub max_body_bytes: usize,
    /// SQLite durability: `normal` keeps every acknowledged write through any crash or kill of
    /// the process; `full` also fsyncs each commit so they survive power loss.
    #[arg(long, env = "MC_SQLITE_SYNC", value_enum, default_value_t = SqliteSync::Normal)]
    pub sqlite_sync: SqliteSync,
}

#[derive(Debug, Subcommand)]
pub enum ServerCmd {
    /// Apply pending database migrations and exit (`mc server` also does it at start).
    Migrate,
    /// Measure the overlap scorer for the configured embedder on the labelled pairs shipped in
    /// the binary, and, for an embedder no shipped scorer was fitted for (an embeddings endpoint,
    /// another model directory), fit one and keep it in the data directory for `mc server`, which
    /// would otherwise calibrate in the background at start.
    Calibrate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SqliteSync {
    Full,
    Normal,
}

// ---- missions and klusters ----

#[derive(Debug, Subcommand)]
pub enum MissionCmd {
    /// Create a mission.
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        idem: IdempotencyArg,
    },
    /// List missions, oldest first.
    List {
        /// Include archived missions.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one mission.
    Show { id: MissionId },
    /// Rename a mission or change its description.
    Update {
        id: MissionId,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Archive a mission (it can no longer be changed).
    Archive { id: MissionId },
}

#[derive(Debug, Subcommand)]
pub enum KlusterCmd {
    /// Create a kluster in a mission.
    Create {
        #[arg(long)]
        mission: MissionId,
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        idem: IdempotencyArg,
    },
    /// List klusters, oldest first.
    List {
        /// Only klusters of this mission.
        #[arg(long)]
        mission: Option<MissionId>,
        /// Include archived klusters.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one kluster.
    Show { id: KlusterId },
    /// Rename a kluster or change its description.
    Update {
        id: KlusterId,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Archive a kluster (it can no longer be changed).
    Archive { id: KlusterId },
}

#[derive(Debug, Clone, Args)]
pub struct PageArgs {
    /// Most entries to return (1 to 500).
    #[arg(long, value_parser = limit_parser())]
    pub limit: Option<usize>,
    /// Cursor printed by the previous page.
    #[arg(long)]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct IdempotencyArg {
    /// Idempotency key: repeating the command with the same key returns the first result
    /// instead of creating a duplicate [default: a fresh key per call].
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

// ---- docs ----

/// Where a doc's text comes from: `--body TEXT` or `--file PATH` (`-` reads standard input).
#[derive(Debug, Clone, Args)]
pub struct BodyArgs {
    /// The text (Markdown or plain).
    #[arg(long, conflicts_with = "file")]
    pub body: Option<String>,
    /// Read the text from this file (`-`: standard input).
    #[arg(long, value_name = "PATH")]
    pub file: Option<std::path::PathBuf>,
}

/// A doc as written or checked: where it goes, what it is, its text and paths.
#[derive(Debug, Clone, Args)]
pub struct DocDraftArgs {
    #[arg(long, required_unless_present = "mission")]
    pub kluster: Option<KlusterId>,
    #[arg(long)]
    pub mission: Option<MissionId>,
    pub title: String,
    /// `doc` (knowledge) or `artifact` (a work product) [default: doc].
    #[arg(long, value_parser = ["doc", "artifact"])]
    pub kind: Option<String>,
    #[command(flatten)]
    pub text: BodyArgs,
    /// Glob of the files it is about or produces (repeatable).
    #[arg(long = "path", value_name = "GLOB")]
    pub paths: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum DocCmd {
    /// Write a doc or artifact in a kluster (or, with --mission, mission-wide). It is compared with
    /// the mission's docs first; a duplicate is refused unless acknowledged.
    Create {
        #[command(flatten)]
        draft: DocDraftArgs,
        /// Create it even if the server finds a duplicate (recorded in the ledger).
        #[arg(long)]
        acknowledge_overlap: bool,
        #[command(flatten)]
        idem: IdempotencyArg,
    },
    /// Check a draft doc for overlap with the mission's docs, without writing anything.
    Check {
        #[command(flatten)]
        draft: DocDraftArgs,
    },
    /// List docs and artifacts, newest first.
    List {
        #[arg(long)]
        mission: Option<MissionId>,
        #[arg(long)]
        kluster: Option<KlusterId>,
        #[arg(long, value_parser = ["doc", "artifact"])]
        kind: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one doc with its whole text.
    Show { id: DocId },
    /// Change a doc's title, text or paths: its next version.
    Update {
        id: DocId,
        #[arg(long)]
        title: Option<String>,
        #[command(flatten)]
        text: BodyArgs,
        /// Replaces the path globs (repeatable).
        #[arg(long = "path", value_name = "GLOB")]
        paths: Vec<String>,
        /// Refuse the change unless the doc is still at this version.
        #[arg(long, value_name = "N")]
        if_version: Option<u64>,
    },
}

// ---- tasks ----

#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    /// Create a task in a kluster.
    Create {
        #[arg(long)]
        kluster: KlusterId,
        title: String,
        #[arg(long)]
        description: Option<String>,
        /// 0 (most urgent) to 4 [default: 2].
        #[arg(long, value_parser = clap::value_parser!(i64).range(0..=4))]
        priority: Option<i64>,
        /// A task that must be done first (repeatable).
        #[arg(long = "depends-on", value_name = "ID")]
        depends_on: Vec<TaskId>,
        /// Glob of the files the task expects to touch (repeatable).
        #[arg(long = "path", value_name = "GLOB")]
        paths: Vec<String>,
        /// Label (repeatable).
        #[arg(long = "label", value_name = "LABEL")]
        labels: Vec<String>,
        /// Create it even if the server finds a duplicate (recorded in the ledger).
        #[arg(long)]
        acknowledge_overlap: bool,
        #[command(flatten)]
        idem: IdempotencyArg,
    },
    /// Check a draft task for overlap with existing work, without creating anything.
    Check {
        /// The kluster it would go in (compared with its whole mission).
        #[arg(long, required_unless_present = "mission", conflicts_with = "mission")]
        kluster: Option<KlusterId>,
        /// The mission it would go in.
        #[arg(long)]
        mission: Option<MissionId>,
        title: String,
        #[arg(long)]
        description: Option<String>,
        /// Glob of the files it would touch (repeatable).
        #[arg(long = "path", value_name = "GLOB")]
        paths: Vec<String>,
    },
    /// Show the other live work of its mission an existing task overlaps.
    Overlap { id: TaskId },
    /// List tasks, oldest first.
    List {
        #[arg(long)]
        kluster: Option<KlusterId>,
        #[arg(long)]
        mission: Option<MissionId>,
        /// Comma-separated statuses, e.g. `open,claimed`.
        #[arg(long, value_parser = parse_status_list)]
        status: Option<String>,
        #[arg(long)]
        label: Option<String>,
        /// Only tasks whose lease is held by this identity.
        #[arg(long)]
        holder: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show one task, with its lease.
    Show { id: TaskId },
    /// Change a task's fields; lists given replace the current ones.
    Update {
        id: TaskId,
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long, value_parser = clap::value_parser!(i64).range(0..=4))]
        priority: Option<i64>,
        /// New label set (repeatable).
        #[arg(long = "label", value_name = "LABEL", conflicts_with = "clear_labels")]
        labels: Vec<String>,
        /// Remove every label.
        #[arg(long)]
        clear_labels: bool,
        /// New path globs (repeatable).
        #[arg(long = "path", value_name = "GLOB", conflicts_with = "clear_paths")]
        paths: Vec<String>,
        /// Remove every path glob.
        #[arg(long)]
        clear_paths: bool,
        /// New dependency set (repeatable).
        #[arg(long = "depends-on", value_name = "ID", conflicts_with = "clear_depends_on")]
        depends_on: Vec<TaskId>,
        /// Remove every dependency.
        #[arg(long)]
        clear_depends_on: bool,
        #[command(flatten)]
        fence: FenceArg,
    },
    /// Move a task to another status (open, in_progress, review, done, blocked, cancelled).
    Transition {
        id: TaskId,
        #[arg(value_parser = parse_status)]
        status: TaskStatus,
        #[command(flatten)]
        fence: FenceArg,
    },
    /// Shorthand for `transition ID in_progress`.
    Start {
        id: TaskId,
        #[command(flatten)]
        fence: FenceArg,
    },
    /// Shorthand for `transition ID review`.
    Review {
        id: TaskId,
        #[command(flatten)]
        fence: FenceArg,
    },
    /// Shorthand for `transition ID blocked`.
    Block {
        id: TaskId,
        #[command(flatten)]
        fence: FenceArg,
    },
    /// Shorthand for `transition ID cancelled`.
    Cancel {
        id: TaskId,
        #[command(flatten)]
        fence: FenceArg,
    },
    /// Open tasks whose dependencies are all done, most urgent first.
    Ready {
        #[arg(long)]
        kluster: Option<KlusterId>,
        #[arg(long)]
        mission: Option<MissionId>,
        /// Most tasks to return (1 to 500).
        #[arg(long, value_parser = limit_parser())]
        limit: Option<usize>,
    },
    /// Claim a task for the agent (`--agent`/MC_AGENT_ID); its fencing token is remembered.
    Claim {
        id: TaskId,
        #[command(flatten)]
        ttl: TtlArg,
    },
    /// Claim the most urgent ready task of a kluster, if any.
    ClaimNext {
        #[arg(long)]
        kluster: KlusterId,
        #[command(flatten)]
        ttl: TtlArg,
    },
    /// Renew the lease on a task the agent holds.
    Heartbeat {
        id: TaskId,
        #[command(flatten)]
        fence: FenceArg,
        #[command(flatten)]
        ttl: TtlArg,
    },
    /// Give a held task back (it reopens).
    Release {
        id: TaskId,
        #[command(flatten)]
        fence: FenceArg,
    },
    /// Complete a held task.
    Done {
        id: TaskId,
        #[command(flatten)]
        fence: FenceArg,
    },
}

#[derive(Debug, Clone, Copy, Args)]
pub struct FenceArg {
    /// Fencing token of the lease [default: the one remembered at claim time].
    #[arg(long, value_name = "N")]
    pub fence: Option<u64>,
}

#[derive(Debug, Clone, Copy, Args)]
pub struct TtlArg {
    /// Lease length in seconds [default: the server's, 120].
    #[arg(long, value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(limits::MIN_LEASE_SECS..=limits::MAX_LEASE_SECS))]
    pub ttl: Option<u64>,
}

// ---- search ----

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// What to look for; several words are joined with spaces.
    #[arg(required = true, value_name = "QUERY")]
    pub words: Vec<String>,
    /// Only tasks of this mission.
    #[arg(long)]
    pub mission: Option<MissionId>,
    /// Only tasks of this kluster.
    #[arg(long)]
    pub kluster: Option<KlusterId>,
    /// Comma-separated statuses, e.g. `open,claimed`.
    #[arg(long, value_parser = parse_status_list)]
    pub status: Option<String>,
    /// Label every hit must carry (repeatable, or comma-separated).
    #[arg(long = "label", value_name = "LABEL")]
    pub labels: Vec<String>,
    /// Most hits to return (1 to 100) [default: 10].
    #[arg(long, value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_SEARCH_LIMIT as u64))]
    pub limit: Option<usize>,
    /// Search klusters (name and description) instead of tasks; only --mission applies.
    #[arg(long, conflicts_with_all = ["kluster", "status", "labels", "docs"])]
    pub klusters: bool,
    /// Search docs and artifacts (title and body) instead of tasks; --mission and --kluster apply.
    #[arg(long, conflicts_with_all = ["status", "labels"])]
    pub docs: bool,
    /// With --docs: only `doc` or `artifact`.
    #[arg(long, requires = "docs", value_parser = ["doc", "artifact"])]
    pub kind: Option<String>,
}

// ---- MCP and agents ----

#[derive(Debug, Args)]
pub struct McpArgs {
    /// Toolsets to serve: core, search, plan (comma-separated) or all.
    #[arg(long, env = "MC_MCP_TOOLSETS", default_value = "all")]
    pub toolsets: String,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The agent CLI to launch.
    #[arg(value_enum)]
    pub agent_cli: AgentCli,
    /// Check the agent binary, the server, the token and an MCP handshake with `mc mcp`, print what
    /// would run, and exit without launching.
    #[arg(long)]
    pub preflight_only: bool,
    /// Arguments for the agent (after `--`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "AGENT_ARGS")]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AgentCli {
    /// Claude Code
    Claude,
    /// OpenAI Codex CLI
    Codex,
    /// Google Gemini CLI
    Gemini,
}

// ---- ledger and system ----

#[derive(Debug, Subcommand)]
pub enum LedgerCmd {
    /// List ledger events in sequence order.
    List {
        /// Only events about this entity id.
        #[arg(long)]
        entity: Option<String>,
        /// Only events about this kind of entity (mission, kluster, task).
        #[arg(long)]
        kind: Option<String>,
        /// Only this action, e.g. `task.claim`.
        #[arg(long)]
        action: Option<String>,
        /// Only events by this actor.
        #[arg(long)]
        actor: Option<String>,
        /// Only events after this sequence number (the cursor).
        #[arg(long, value_name = "SEQ", value_parser = clap::value_parser!(i64).range(0..))]
        after: Option<i64>,
        /// Most events to return (1 to 500).
        #[arg(long, value_parser = limit_parser())]
        limit: Option<usize>,
    },
    /// Walk the whole hash chain and report the first bad link.
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum SystemCmd {
    /// Check reachability, auth, version skew, storage and clock skew.
    Doctor,
}

fn limit_parser() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::<usize>::new().range(1..=limits::MAX_PAGE as u64)
}

/// Parses a task status; `in-progress` is accepted for `in_progress`.
pub fn parse_status(s: &str) -> Result<TaskStatus, String> {
    let norm = s.trim().to_ascii_lowercase().replace('-', "_");
    TaskStatus::parse(&norm).ok_or_else(|| {
        let all: Vec<&str> = TaskStatus::ALL.iter().map(|st| st.as_str()).collect();
        format!("unknown status `{s}` (one of: {})", all.join(", "))
    })
}

/// Checks a comma-separated status list and returns it normalised.
fn parse_status_list(s: &str) -> Result<String, String> {
    let parsed = s.split(',').filter(|p| !p.trim().is_empty()).map(parse_status).collect::<Result<Vec<_>, _>>()?;
    if parsed.is_empty() {
        return Err("name at least one status".into());
    }
    Ok(parsed.iter().map(|st| st.as_str()).collect::<Vec<_>>().join(","))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn statuses_parse_with_a_helpful_error() {
        assert_eq!(parse_status("in-progress"), Ok(TaskStatus::InProgress));
        assert_eq!(parse_status(" Done "), Ok(TaskStatus::Done));
        let e = parse_status("finished").expect_err("unknown");
        assert_eq!(
            e,
            "unknown status `finished` (one of: open, claimed, in_progress, review, done, blocked, cancelled)"
        );
        assert_eq!(parse_status_list("open, in-progress,"), Ok("open,in_progress".to_owned()));
        assert!(parse_status_list(",").is_err());
        assert!(parse_status_list("open,nope").is_err());
    }
}
