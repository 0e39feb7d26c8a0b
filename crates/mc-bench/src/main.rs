//! `mc-bench`: starts an embedded server (SQLite in a temp dir) on a loopback port, preloads it
//! with N tasks, then measures over HTTP: task-create throughput and latency, claim and heartbeat
//! latency, and ready-work latency. Next to them it prints the ceiling: the same inserts (task row
//! + ledger event, same schema and indexes) in a bare loop against SQLite, with no HTTP.
//!
//! Run: `cargo run --release -p mc-bench -- --preload 10000,100000`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use mc_domain::input::{NewKluster, NewMission, NewTask, RawTaskFields};
use mc_domain::{Actor, Clock, KlusterId, Principal, Role, SystemClock};
use mc_store::{Store, WriteCtx};
use mc_store_sqlite::{SqliteConfig, SqliteStore, Synchronous};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(about = "MissionControl benchmark over loopback HTTP")]
struct Args {
    /// Tasks stored before measuring, comma-separated (one run per value).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    preload: Vec<usize>,
    /// Tasks created over HTTP in the throughput run.
    #[arg(long, default_value_t = 20_000)]
    creates: usize,
    /// Concurrent HTTP clients in the throughput run.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Samples per latency figure.
    #[arg(long, default_value_t = 2_000)]
    samples: usize,
    /// Concurrent clients while measuring latency.
    #[arg(long, default_value_t = 4)]
    latency_clients: usize,
    /// SQLite synchronous mode: full or normal.
    #[arg(long, default_value = "normal")]
    sync: String,
    /// Klusters the preloaded tasks are spread over.
    #[arg(long, default_value_t = 10)]
    klusters: usize,
}

const TOKEN: &str = "bench-token";

fn admin() -> WriteCtx {
    WriteCtx::new(Actor { principal: Principal { name: "admin".into(), role: Role::Admin }, agent: None })
}

struct Stats {
    samples: Vec<Duration>,
}

impl Stats {
    fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Self { samples }
    }
    fn pct(&self, p: f64) -> f64 {
        if self.samples.is_empty() {
            return f64::NAN;
        }
        let i = ((self.samples.len() as f64 - 1.0) * p).round() as usize;
        self.samples[i].as_secs_f64() * 1e3
    }
    fn line(&self) -> String {
        format!("p50 {:>7.3} ms  p99 {:>7.3} ms  (n={})", self.pct(0.5), self.pct(0.99), self.samples.len())
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let sync = match args.sync.as_str() {
        "full" => Synchronous::Full,
        "normal" => Synchronous::Normal,
        other => bail!("--sync must be full or normal, got {other}"),
    };
    println!(
        "MissionControl bench: {} cores, sqlite synchronous={}",
        std::thread::available_parallelism()?.get(),
        args.sync
    );
    for &n in &args.preload {
        let ceiling = ceiling(n, args.creates, sync, args.concurrency)?;
        println!(
            "\n== {n} tasks stored ==\nceiling (bare SQLite in-process, task row + label + full-text row + chained ledger event, same \
             schema and indexes, {} per transaction): {ceiling:>8.0} inserts/s",
            args.concurrency
        );
        let one_per_tx = ceiling_one_per_tx(n, 2_000.min(args.creates), sync)?;
        println!("  (the same, one transaction per insert: {one_per_tx:>8.0} inserts/s)");
        run(&args, sync, n, ceiling).await?;
    }
    Ok(())
}

async fn run(args: &Args, sync: Synchronous, preload: usize, ceiling: f64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut cfg = SqliteConfig::new(dir.path().join("mc.db"), clock.clone());
    cfg.synchronous = sync;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(cfg)?);
    mc_server::bootstrap_admin_token(store.as_ref(), Some(TOKEN)).await?;
    let m = store.create_mission(&admin(), NewMission::parse("bench", None)?).await?.value;
    let mut klusters = Vec::new();
    for i in 0..args.klusters.max(1) {
        klusters.push(store.create_kluster(&admin(), NewKluster::parse(m.id, &format!("k{i}"), None)?).await?.value.id);
    }
    let t0 = Instant::now();
    preload_tasks(&store, &klusters, preload).await?;
    println!("(server preloaded with {preload} tasks through the store in {:.1} s)", t0.elapsed().as_secs_f64());

    let server = mc_server::start(
        store.clone(),
        clock,
        mc_server::ServerOptions { listen: "127.0.0.1:0".into(), ..Default::default() },
    )
    .await?;
    let base = format!("http://{}", server.addr());
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let work = klusters[0];

    // creates: throughput and latency at `concurrency`, first as a bulk load (overlap check
    // skipped), then as agents create work (every create checked for overlap first)
    for (label, check, total) in
        [("overlap check skipped", false, args.creates), ("with overlap check", true, args.creates / 10)]
    {
        let (elapsed, lat) = fan_out(args.concurrency, total, {
            let (http, base) = (http.clone(), base.clone());
            move |i| {
                let (http, base) = (http.clone(), base.clone());
                async move {
                    let body = json!({"kluster_id": work, "title": format!("bench task {i} {label}"), "labels": ["bench"],
                        "priority": (i % 5) as i64, "check_overlap": check, "acknowledge_overlap": true});
                    expect_status(http.post(format!("{base}/api/v1/tasks")).bearer_auth(TOKEN).json(&body).send().await?, 201).await
                }
            }
        })
        .await?;
        let rate = total as f64 / elapsed.as_secs_f64();
        println!(
            "create over HTTP, {label} ({} clients): {:>8.0} creates/s = {:.2} of ceiling; latency {}",
            args.concurrency,
            rate,
            rate / ceiling,
            Stats::new(lat).line()
        );
    }

    // claim + heartbeat latency
    let claims = Arc::new(std::sync::Mutex::new(Vec::new()));
    let beats = Arc::new(std::sync::Mutex::new(Vec::new()));
    fan_out(args.latency_clients, args.samples, {
        let (http, base, claims, beats) = (http.clone(), base.clone(), claims.clone(), beats.clone());
        move |i| {
            let (http, base, claims, beats) = (http.clone(), base.clone(), claims.clone(), beats.clone());
            async move {
                let agent = format!("agent-{}", i % 1000);
                let t = Instant::now();
                let r = http
                    .post(format!("{base}/api/v1/klusters/{work}/claim-next"))
                    .bearer_auth(TOKEN)
                    .header("x-mc-agent", &agent)
                    .send()
                    .await?;
                let v = expect_json(r, 200).await?;
                claims.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(t.elapsed());
                let id = v["task"]["id"].as_str().context("no ready task left to claim")?.to_owned();
                let fence = v["task"]["fencing_token"].as_u64().context("fence")?;
                let t = Instant::now();
                let r = http
                    .post(format!("{base}/api/v1/tasks/{id}/heartbeat"))
                    .bearer_auth(TOKEN)
                    .header("x-mc-agent", &agent)
                    .json(&json!({"fencing_token": fence}))
                    .send()
                    .await?;
                expect_status(r, 200).await?;
                beats.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(t.elapsed());
                Ok(())
            }
        }
    })
    .await?;
    let take = |m: Arc<std::sync::Mutex<Vec<Duration>>>| m.lock().map(|v| v.clone()).unwrap_or_default();
    println!("claim-next ({} clients):            latency {}", args.latency_clients, Stats::new(take(claims)).line());
    println!("heartbeat ({} clients):             latency {}", args.latency_clients, Stats::new(take(beats)).line());

    // ready work, in one kluster and across the whole mission
    for (label, url) in [
        (
            "ready, one kluster",
            format!("{base}/api/v1/tasks/ready?kluster_id={}&limit=50", klusters[klusters.len() - 1]),
        ),
        ("ready, whole mission", format!("{base}/api/v1/tasks/ready?mission_id={}&limit=50", m.id)),
    ] {
        let (_, lat) = fan_out(args.latency_clients, args.samples, {
            let http = http.clone();
            move |_| {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    let v = expect_json(http.get(url).bearer_auth(TOKEN).send().await?, 200).await?;
                    if v["items"].as_array().is_none_or(|a| a.is_empty()) {
                        bail!("ready query returned no task");
                    }
                    Ok(())
                }
            }
        })
        .await?;
        println!("{label:<21} ({} clients): latency {}", args.latency_clients, Stats::new(lat).line());
    }
    server.shutdown().await?;
    Ok(())
}

async fn expect_status(r: reqwest::Response, want: u16) -> Result<()> {
    expect_json(r, want).await.map(|_| ())
}

async fn expect_json(r: reqwest::Response, want: u16) -> Result<Value> {
    let status = r.status().as_u16();
    let v: Value = r.json().await?;
    if status != want {
        bail!("HTTP {status}: {v}");
    }
    Ok(v)
}

/// Runs `total` calls of `f(i)` over `clients` concurrent workers; returns wall time and each
/// call's latency.
async fn fan_out<F, Fut>(clients: usize, total: usize, f: F) -> Result<(Duration, Vec<Duration>)>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients.max(1) {
        let (f, next) = (f.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let t = Instant::now();
                f(i).await?;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::with_capacity(total);
    for h in handles {
        all.extend(h.await??);
    }
    Ok((start.elapsed(), all))
}

async fn preload_tasks(store: &Arc<dyn Store>, klusters: &[KlusterId], n: usize) -> Result<()> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..64 {
        let (store, next, klusters) = (store.clone(), next.clone(), klusters.to_vec());
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let title = format!("preloaded task {i}");
                let labels = vec!["preload".to_owned()];
                let new = NewTask::parse(
                    klusters[i % klusters.len()],
                    RawTaskFields {
                        title: Some(&title),
                        priority: Some((i % 5) as i64),
                        labels: Some(&labels),
                        ..Default::default()
                    },
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

fn bare_db(sync: Synchronous, preload: usize) -> Result<(tempfile::TempDir, rusqlite::Connection)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("ceiling.db");
    mc_store_sqlite::migrate(&path)?;
    let c = rusqlite::Connection::open(&path)?;
    let s = if sync == Synchronous::Full { "FULL" } else { "NORMAL" };
    c.execute_batch(&format!("PRAGMA journal_mode = WAL; PRAGMA synchronous = {s}; PRAGMA foreign_keys = ON;"))?;
    let now = chrono::Utc::now().timestamp_millis();
    c.execute("INSERT INTO missions VALUES ('m', 'm', '', 'active', ?1, ?1)", [now])?;
    c.execute("INSERT INTO klusters VALUES ('k', 'm', 'k', '', 'active', ?1, ?1)", [now])?;
    c.execute_batch("BEGIN")?;
    for i in 0..preload {
        bare_insert(&c, i)?;
    }
    c.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE);")?;
    Ok((dir, c))
}

/// One task row, its label row and one chained ledger event, as the store writes them.
fn bare_insert(c: &rusqlite::Connection, i: usize) -> Result<()> {
    let id = mc_domain::TaskId::new().to_string();
    let now = chrono::Utc::now().timestamp_millis();
    c.prepare_cached(
        "INSERT INTO tasks (id, mission_id, kluster_id, title, description, status, priority, labels, paths, \
         depends_on, holder, claimed_at, lease_expires_at, fencing_token, created_by, created_at, updated_at) \
         VALUES (?1, 'm', 'k', ?2, '', 'open', ?3, '[\"bench\"]', '[]', '[]', NULL, NULL, NULL, 0, 'admin', ?4, ?4)",
    )?
    .execute(rusqlite::params![id, format!("bench task {i}"), (i % 5) as i64, now])?;
    c.prepare_cached("INSERT INTO task_labels (label, task_id) VALUES ('bench', ?1)")?.execute([&id])?;
    // the full-text index rows the store writes with every task
    c.prepare_cached("INSERT INTO search_docs (task_id) VALUES (?1)")?.execute([&id])?;
    let doc = c.last_insert_rowid();
    c.prepare_cached(
        "INSERT INTO task_fts (rowid, title, description, labels, scope) VALUES (?1, ?2, '', 'bench', 'mm kk sopen')",
    )?
    .execute(rusqlite::params![doc, format!("bench task {i}")])?;
    let (seq, prev): (i64, String) = c
        .prepare_cached("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap_or((0, mc_domain::ledger::GENESIS_HASH.to_owned()));
    let digest = mc_domain::ledger::sha256_hex(id.as_bytes());
    let ev = mc_domain::EventId::new();
    let at = mc_domain::clock::from_millis(now);
    let hash =
        mc_domain::ledger::chain_hash(&prev, seq + 1, &ev, at, "admin", "task.create", "task", &id, None, &digest);
    c.prepare_cached(
        "INSERT INTO ledger (seq, id, at, actor, action, entity_kind, entity_id, request_id, state_digest, prev_hash, hash) \
         VALUES (?1, ?2, ?3, 'admin', 'task.create', 'task', ?4, NULL, ?5, ?6, ?7)",
    )?
    .execute(rusqlite::params![seq + 1, ev.to_string(), now, id, digest, prev, hash])?;
    Ok(())
}

fn ceiling(preload: usize, n: usize, sync: Synchronous, per_tx: usize) -> Result<f64> {
    let (_dir, c) = bare_db(sync, preload)?;
    let t = Instant::now();
    let mut i = 0;
    while i < n {
        c.execute_batch("BEGIN IMMEDIATE")?;
        for _ in 0..per_tx.min(n - i) {
            bare_insert(&c, i)?;
            i += 1;
        }
        c.execute_batch("COMMIT")?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

fn ceiling_one_per_tx(preload: usize, n: usize, sync: Synchronous) -> Result<f64> {
    let (_dir, c) = bare_db(sync, preload)?;
    let t = Instant::now();
    for i in 0..n {
        c.execute_batch("BEGIN IMMEDIATE")?;
        bare_insert(&c, i)?;
        c.execute_batch("COMMIT")?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}
