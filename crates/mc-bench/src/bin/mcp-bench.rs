//! `mcp-bench`: what MissionControl's MCP interface costs an agent.
//!
//! - the size of `tools/list` as `mc mcp` sends it, in bytes and estimated tokens (bytes / 4), for
//!   the full set and each toolset;
//! - round trips of `search_tasks` and `claim_next_task` through a real `mc mcp` process (stdio,
//!   one call at a time) against an embedded server (SQLite in a temp dir) on a loopback port, next
//!   to the same operations as direct REST calls and through `POST /mcp/call` (which reaches the API
//!   over loopback inside the server);
//! - the cold start of `mc` (`mc --version`) and of an MCP session (`mc mcp` spawned until its
//!   `initialize` answer).
//!
//! Run: `cargo build --release -p mc-cli && cargo run --release -p mc-bench --bin mcp-bench`
//! (`--mc PATH` when `mc` is not next to this binary).

#[path = "../server_runtime.rs"]
mod server_runtime;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use mc_domain::input::{NewKluster, NewMission, NewTask, RawTaskFields};
use mc_domain::{Actor, Clock, KlusterId, Principal, Role, SystemClock};
use mc_embed::EmbedderConfig;
use mc_store::{Store, WriteCtx};
use mc_store_sqlite::{SqliteConfig, SqliteStore};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

#[derive(Parser, Debug)]
#[command(
    about = "The cost of MissionControl's MCP interface: tools/list size, round trips through mc mcp, cold start"
)]
struct Args {
    /// The `mc` binary [default: `mc` next to this program].
    #[arg(long)]
    mc: Option<PathBuf>,
    /// Tasks stored before measuring (searched over; each claim takes one more).
    #[arg(long, default_value_t = 10_000)]
    tasks: usize,
    /// Samples per latency figure.
    #[arg(long, default_value_t = 1_000)]
    samples: usize,
    /// Cold starts measured.
    #[arg(long, default_value_t = 50)]
    starts: usize,
    /// Embedder of the server: none (text only), hashing, or bundled (the model in the binary,
    /// which embeds every search query).
    #[arg(long, default_value = "none")]
    embedder: String,
}

const TOKEN: &str = "bench-token";

fn admin() -> WriteCtx {
    WriteCtx::new(Actor { principal: Principal { name: "admin".into(), role: Role::Admin }, agent: None })
}

struct Stats(Vec<Duration>);

impl Stats {
    fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Self(samples)
    }
    fn pct(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[i].as_secs_f64() * 1e3
    }
    fn line(&self) -> String {
        format!("p50 {:>7.3} ms  p99 {:>7.3} ms  (n={})", self.pct(0.5), self.pct(0.99), self.0.len())
    }
}

fn main() -> Result<()> {
    server_runtime::block_on(run())
}

async fn run() -> Result<()> {
    let args = Args::parse();
    let mc = match &args.mc {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name(if cfg!(windows) { "mc.exe" } else { "mc" }),
    };
    if !mc.is_file() {
        bail!("{} does not exist: build it first (cargo build --release -p mc-cli) or pass --mc", mc.display());
    }
    let samples = args.samples.max(1);
    println!(
        "MissionControl MCP bench: {} cores, embedded SQLite, embedder {}, {} tasks stored, mc = {}",
        std::thread::available_parallelism()?.get(),
        args.embedder,
        args.tasks,
        mc.display()
    );

    // An embedded server on a loopback port.
    let dir = tempfile::tempdir()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(SqliteConfig::new(dir.path().join("mc.db"), clock.clone()))?);
    mc_server::bootstrap_admin_token(store.as_ref(), Some(TOKEN)).await?;
    let m = store.create_mission(&admin(), NewMission::parse("bench", None)?).await?.value;
    let library = store.create_kluster(&admin(), NewKluster::parse(m.id, "library", None)?).await?.value.id;
    let work = store.create_kluster(&admin(), NewKluster::parse(m.id, "work", None)?).await?.value.id;
    let t0 = Instant::now();
    preload(&store, library, args.tasks).await?;
    // Enough ready work for every claim: over stdio, then REST, then /mcp/call.
    preload(&store, work, 3 * samples).await?;
    println!("(preloaded {} tasks through the store in {:.1} s)", args.tasks + 3 * samples, t0.elapsed().as_secs_f64());
    let embedder = match args.embedder.as_str() {
        "none" => None,
        "hashing" => Some(mc_embed::build(&EmbedderConfig::Hashing { dim: 384 })?),
        "bundled" => Some(mc_embed::build(&EmbedderConfig::Bundled)?),
        other => bail!("--embedder must be none, hashing or bundled, got {other}"),
    };
    // the id the server stores vectors under (its embedder, prepared for the scorer)
    let model = embedder.as_ref().map(|e| mc_server::overlap::prepared(Arc::clone(e)).model_id().to_owned());
    let server = mc_server::start(
        store.clone(),
        clock,
        mc_server::ServerOptions { listen: "127.0.0.1:0".into(), embedder, ..Default::default() },
    )
    .await?;
    // an embedder without a shipped scorer (the hashing one) gets one calibrated at start
    if !server.scorer_ready(Duration::from_secs(600)).await {
        bail!("the overlap scorer was not calibrated within 10 min");
    }
    let base = format!("http://{}", server.addr());
    if let Some(model) = model {
        // Measure search, not the embedding worker catching up on the preloaded tasks.
        let t0 = Instant::now();
        while !store.pending_embeddings(&model, 1).await?.is_empty() {
            if t0.elapsed() > Duration::from_secs(1800) {
                bail!("the embedding worker did not catch up within 30 min");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("(the embedding worker embedded every task in {:.1} s)", t0.elapsed().as_secs_f64());
    }

    // tools/list as sent by `mc mcp`, per toolset.
    println!("\n== tools/list (as mc mcp sends it; tokens estimated as bytes / 4) ==");
    for sets in ["all", "core", "search", "plan"] {
        let mut s = McpSession::start(&mc, &base, "bench-lister", Some(sets)).await?;
        let init = s.initialize().await?;
        let tools = s.request("tools/list", json!({})).await?;
        let n = tools["tools"].as_array().map_or(0, Vec::len);
        let bytes = serde_json::to_vec(&tools)?.len();
        println!("toolsets={sets:<7} {n:>2} tools  {bytes:>6} bytes  ~{:>5} tokens", bytes / 4);
        if sets == "all" {
            let instructions = init["instructions"].as_str().map_or(0, str::len);
            println!("  (+ initialize instructions: {instructions} bytes, ~{} tokens)", instructions / 4);
        }
        s.close().await;
    }

    // Round trips through `mc mcp`, one call at a time.
    println!("\n== round trips, one call at a time ==");
    // Every measured search asks a query no earlier request asked: the server keeps the vectors of
    // recent texts, and a repeated query would measure that instead of the model.
    let mut asked = 0usize;
    let mut fresh_queries = |n: usize| -> Vec<String> {
        asked += n;
        (asked - n..asked).map(|i| format!("preloaded task {i}")).collect()
    };
    let mut s = McpSession::start(&mc, &base, "bench-agent", None).await?;
    s.initialize().await?;
    let warm_up = fresh_queries(20);
    for q in &warm_up {
        s.call("search_tasks", json!({"query": q, "limit": 10})).await?;
    }
    let mut lat = Vec::with_capacity(samples);
    for q in &fresh_queries(samples) {
        let t = Instant::now();
        s.call("search_tasks", json!({"query": q, "limit": 10})).await?;
        lat.push(t.elapsed());
    }
    println!("search_tasks    via mc mcp (stdio):  {}  new queries", Stats::new(lat).line());
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples {
        let t = Instant::now();
        s.call("search_tasks", json!({"query": warm_up[i % warm_up.len()], "limit": 10})).await?;
        lat.push(t.elapsed());
    }
    println!("search_tasks    via mc mcp (stdio):  {}  repeated queries", Stats::new(lat).line());
    let mut lat = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        let r = s.call("claim_next_task", json!({"kluster_id": work.to_string()})).await?;
        lat.push(t.elapsed());
        if r["task"].is_null() {
            bail!("claim_next_task found no ready task");
        }
    }
    println!("claim_next_task via mc mcp (stdio):  {}", Stats::new(lat).line());
    s.close().await;

    // The same operations as direct REST calls, and through POST /mcp/call.
    let http = reqwest::Client::new();
    let mut lat = Vec::with_capacity(samples);
    for q in &fresh_queries(samples) {
        let t = Instant::now();
        let url =
            reqwest::Url::parse_with_params(&format!("{base}/api/v1/search"), [("q", q.as_str()), ("limit", "10")])?;
        let r = http.get(url).bearer_auth(TOKEN);
        ok(r.send().await?).await?;
        lat.push(t.elapsed());
    }
    println!("search          direct REST:         {}  new queries", Stats::new(lat).line());
    let mut lat = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        let r = http.post(format!("{base}/api/v1/klusters/{work}/claim-next")).bearer_auth(TOKEN);
        ok(r.header("x-mc-agent", "bench-rest").send().await?).await?;
        lat.push(t.elapsed());
    }
    println!("claim-next      direct REST:         {}", Stats::new(lat).line());
    let mut lat = Vec::with_capacity(samples);
    for q in &fresh_queries(samples) {
        let t = Instant::now();
        let body = json!({"tool": "search_tasks", "args": {"query": q, "limit": 10}});
        ok(http.post(format!("{base}/mcp/call")).bearer_auth(TOKEN).json(&body).send().await?).await?;
        lat.push(t.elapsed());
    }
    println!("search_tasks    via POST /mcp/call:  {}  new queries", Stats::new(lat).line());
    let mut lat = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        let body = json!({"tool": "claim_next_task", "args": {"kluster_id": work.to_string()}});
        let r = http.post(format!("{base}/mcp/call")).bearer_auth(TOKEN).header("x-mc-agent", "bench-http");
        ok(r.json(&body).send().await?).await?;
        lat.push(t.elapsed());
    }
    println!("claim_next_task via POST /mcp/call:  {}", Stats::new(lat).line());

    // Cold starts.
    println!("\n== cold start ==");
    let mut lat = Vec::with_capacity(args.starts);
    for _ in 0..args.starts.max(1) {
        let t = Instant::now();
        let out = Command::new(&mc).arg("--version").output().await?;
        lat.push(t.elapsed());
        if !out.status.success() {
            bail!("mc --version failed");
        }
    }
    let stats = Stats::new(lat);
    println!("mc --version (spawn to exit):        {}  min {:.3} ms", stats.line(), stats.0[0].as_secs_f64() * 1e3);
    let mut lat = Vec::with_capacity(args.starts);
    for _ in 0..args.starts.max(1) {
        let t = Instant::now();
        let mut s = McpSession::start(&mc, &base, "bench-start", None).await?;
        s.initialize().await?;
        lat.push(t.elapsed());
        s.close().await;
    }
    println!("mc mcp spawn to initialize answer:   {}", Stats::new(lat).line());

    server.shutdown().await?;
    Ok(())
}

async fn ok(r: reqwest::Response) -> Result<()> {
    let status = r.status();
    let body = r.bytes().await?;
    if !status.is_success() {
        bail!("HTTP {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

async fn preload(store: &Arc<dyn Store>, kluster: KlusterId, n: usize) -> Result<()> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..32 {
        let (store, next) = (store.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let title = format!("preloaded task {i} of {kluster}");
                let new = NewTask::parse(
                    kluster,
                    RawTaskFields { title: Some(&title), priority: Some((i % 5) as i64), ..Default::default() },
                )?;
                store.create_task(&admin(), new).await?;
            }
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(())
}

/// `mc mcp` as a child, spoken to by newline-delimited JSON-RPC.
struct McpSession {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    next_id: u64,
}

impl McpSession {
    async fn start(mc: &PathBuf, base: &str, agent: &str, toolsets: Option<&str>) -> Result<Self> {
        let mut cmd = Command::new(mc);
        cmd.arg("mcp")
            .env("MC_BASE_URL", base)
            .env("MC_TOKEN", TOKEN)
            .env("MC_AGENT_ID", agent)
            .env_remove("MC_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        match toolsets {
            Some(t) => cmd.env("MC_MCP_TOOLSETS", t),
            None => cmd.env_remove("MC_MCP_TOOLSETS"),
        };
        let mut child = cmd.spawn().with_context(|| format!("cannot start {} mcp", mc.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        Ok(Self { child, stdin, lines: BufReader::new(stdout).lines(), next_id: 1 })
    }

    async fn send(&mut self, msg: &Value) -> Result<()> {
        let stdin = self.stdin.as_mut().ok_or_else(|| anyhow!("stdin closed"))?;
        stdin.write_all(format!("{msg}\n").as_bytes()).await?;
        Ok(())
    }

    async fn request(&mut self, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await?;
        loop {
            let line = self.lines.next_line().await?.ok_or_else(|| anyhow!("mc mcp closed its output"))?;
            let v: Value = serde_json::from_str(&line)?;
            if v["id"] != json!(id) {
                continue;
            }
            if !v["error"].is_null() {
                bail!("{method}: {}", v["error"]);
            }
            return Ok(v["result"].clone());
        }
    }

    async fn initialize(&mut self) -> Result<Value> {
        let params = json!({"protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "mcp-bench", "version": env!("CARGO_PKG_VERSION")}});
        let r = self.request("initialize", params).await?;
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await?;
        Ok(r)
    }

    /// A tool call that must succeed; its structured content.
    async fn call(&mut self, tool: &str, args: Value) -> Result<Value> {
        let r = self.request("tools/call", json!({"name": tool, "arguments": args})).await?;
        if r["isError"] == json!(true) {
            bail!("{tool} failed: {}", r["content"][0]["text"]);
        }
        Ok(r["structuredContent"].clone())
    }

    async fn close(mut self) {
        drop(self.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}
