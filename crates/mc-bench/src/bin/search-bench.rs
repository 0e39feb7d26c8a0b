//! `search-bench`: overlap-check and hybrid-search latency over loopback HTTP with N tasks stored
//! on the embedded profile, the bundled embedder embedding every new text inside the measured
//! request. Stored tasks get realistic, varied titles from a generated pool whose vectors come
//! from the same bundled model (embedding 100,000 texts one by one would only slow the setup).
//!
//! Run: `cargo run --release -p mc-bench --bin search-bench -- --tasks 100000 --missions 10`
//! (add `--postgres` for a throwaway PostgreSQL cluster, or `--database-url postgres://...`).

#[path = "../server_runtime.rs"]
mod server_runtime;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use mc_domain::doc::{NewDoc, RawDocFields};
use mc_domain::input::{NewKluster, NewMission, NewTask, RawTaskFields};
use mc_domain::{Actor, Clock, Doc, DocKind, SystemClock};
use mc_embed::EmbedderConfig;
use mc_store::{DocEmbedded, Embedded, Store, WriteCtx};
use mc_store_sqlite::{SqliteConfig, SqliteStore};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
struct Args {
    /// Tasks stored before measuring.
    #[arg(long, default_value_t = 100_000)]
    tasks: usize,
    /// Missions they are spread over (overlap is checked within one mission).
    #[arg(long, default_value_t = 10)]
    missions: usize,
    /// Distinct titles in the pool.
    #[arg(long, default_value_t = 3_000)]
    pool: usize,
    /// Use the feature-hashing embedder (isolates the cost of everything but the model).
    #[arg(long)]
    hashing: bool,
    /// Requests per measured figure.
    #[arg(long, default_value_t = 500)]
    samples: usize,
    /// Measure PostgreSQL at this URL (an empty database) instead of the embedded store.
    #[arg(long)]
    database_url: Option<String>,
    /// Measure PostgreSQL in a throwaway cluster (binaries from MC_PG_BIN; see scripts/pg.sh).
    #[arg(long, conflicts_with = "database_url")]
    postgres: bool,
    /// Docs stored in the first mission for the doc overlap check (0: not measured).
    #[arg(long, default_value_t = 1_000)]
    docs: usize,
    /// Sentences in each doc's body (about 8 words each).
    #[arg(long, default_value_t = 12)]
    doc_sentences: usize,
}

/// Leading labels of generated doc titles (a doc's title is judged by what follows the label).
const DOC_LABELS: &[&str] = &["Runbook", "Design", "Load test report", "ADR", "Postmortem"];

/// A generated doc: a labelled title and a body of task-like sentences (a dozen: about 100 words).
fn doc_text(i: usize, sentences: usize) -> (String, String) {
    let title = format!("{}: {}", DOC_LABELS[i % DOC_LABELS.len()], self::title(i * 11 + 1));
    let body: Vec<String> = (0..sentences).map(|j| format!("{}.", self::title(i * 31 + j * 17 + 2))).collect();
    (title, body.join(" "))
}

const VERBS: &[&str] = &[
    "Add",
    "Fix",
    "Refactor",
    "Document",
    "Test",
    "Speed up",
    "Remove",
    "Migrate",
    "Harden",
    "Monitor",
    "Cache",
    "Paginate",
    "Validate",
    "Localise",
    "Rate-limit",
    "Instrument",
    "Upgrade",
    "Deprecate",
];
const OBJECTS: &[&str] = &[
    "the refund endpoint",
    "the login form",
    "the billing worker",
    "the search index",
    "the CSV importer",
    "the webhook sender",
    "the admin dashboard",
    "the Helm chart",
    "the onboarding emails",
    "the audit log",
    "the session store",
    "the GraphQL gateway",
    "the invoice PDF renderer",
    "the mobile push service",
    "the feature-flag client",
    "the Kafka consumer",
    "the Redis cache layer",
    "the S3 uploader",
    "the payment retries",
    "the user settings page",
    "the Terraform modules",
    "the CI pipeline",
    "the metrics exporter",
    "the OAuth flow",
    "the rate limiter",
    "the report scheduler",
    "the dark mode theme",
    "the password reset flow",
    "the tenant quotas",
    "the data retention job",
];
const CONTEXTS: &[&str] = &[
    "for staging",
    "for production",
    "in the EU region",
    "for the iOS app",
    "for the Android app",
    "for enterprise tenants",
    "behind a feature flag",
    "with structured logs",
    "for the v2 API",
    "after the Postgres upgrade",
    "for French users",
    "with retries and backoff",
    "under load",
    "for the partner API",
    "in the nightly build",
];

fn title(i: usize) -> String {
    let v = VERBS[i % VERBS.len()];
    let o = OBJECTS[(i / VERBS.len()) % OBJECTS.len()];
    let c = CONTEXTS[(i / (VERBS.len() * OBJECTS.len())) % CONTEXTS.len()];
    format!("{v} {o} {c}")
}

fn admin() -> WriteCtx {
    WriteCtx::new(Actor::system())
}

fn pct(mut v: Vec<Duration>, p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).map(|d| d.as_secs_f64() * 1e3).unwrap_or(f64::NAN)
}

fn main() -> Result<()> {
    server_runtime::block_on(run())
}

async fn run() -> Result<()> {
    let args = Args::parse();
    let configured =
        mc_embed::build(&if args.hashing { EmbedderConfig::Hashing { dim: 384 } } else { EmbedderConfig::Bundled })?;
    // the store is filled as the server would fill it: texts prepared for the scorer, vectors
    // under the prepared id; the server itself is given the configured embedder and prepares it
    let embedder = mc_server::overlap::prepared(Arc::clone(&configured));
    let dir = tempfile::tempdir()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (store, _cluster) = open_store(&args, dir.path(), clock.clone()).await?;
    mc_server::bootstrap_admin_token(store.as_ref(), Some("bench")).await?;
    let t0 = Instant::now();
    let pool: Vec<String> = (0..args.pool).map(|i| title(i * 7 + 3)).collect();
    let vectors = embedder.embed(&pool).await?;
    println!(
        "embedded a pool of {} titles in {:.1} s ({})",
        pool.len(),
        t0.elapsed().as_secs_f64(),
        embedder.model_id()
    );

    let mut klusters = Vec::new();
    for m in 0..args.missions.max(1) {
        let mission = store.create_mission(&admin(), NewMission::parse(&format!("mission {m}"), None)?).await?.value;
        for k in 0..5 {
            klusters.push(
                store.create_kluster(&admin(), NewKluster::parse(mission.id, &format!("k{k}"), None)?).await?.value,
            );
        }
    }
    let t0 = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..32 {
        let (store, next, klusters, pool, vectors, model) = (
            store.clone(),
            next.clone(),
            klusters.clone(),
            pool.clone(),
            vectors.clone(),
            embedder.model_id().to_owned(),
        );
        let n = args.tasks;
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                let p = i % pool.len();
                let new = NewTask::parse(
                    klusters[i % klusters.len()].id,
                    RawTaskFields { title: Some(&pool[p]), ..Default::default() },
                )?;
                let t = store.create_task(&admin(), new).await?.value;
                let hash = mc_domain::ledger::sha256_hex(t.embedding_text().as_bytes());
                store
                    .put_embeddings(
                        &model,
                        vec![Embedded { task_id: t.id, text_hash: hash, vector: vectors[p].clone() }],
                    )
                    .await?;
            }
        }));
    }
    for h in handles {
        h.await??;
    }
    println!(
        "stored {} tasks with vectors over {} missions in {:.1} s",
        args.tasks,
        args.missions,
        t0.elapsed().as_secs_f64()
    );
    // what the embedding worker's pass costs when every vector is there (the idle case)
    let t = Instant::now();
    let sweep = store.pending_embeddings_from(embedder.model_id(), 32, &mc_store::TextCursor::default()).await?;
    println!("embedding worker's first sweep over tasks (nothing pending): {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    if !sweep.jobs.is_empty() {
        bail!("some tasks have no vector");
    }
    let t = Instant::now();
    let idle = store.pending_embeddings_from(embedder.model_id(), 32, &sweep.next).await?;
    println!("embedding worker's idle pass over tasks after it: {:.2} ms", t.elapsed().as_secs_f64() * 1e3);
    if !idle.jobs.is_empty() {
        bail!("the walk found work where there is none");
    }

    let server = mc_server::start(
        store.clone(),
        clock,
        mc_server::ServerOptions {
            listen: "127.0.0.1:0".into(),
            embedder: Some(configured.clone()),
            ..Default::default()
        },
    )
    .await?;
    // an embedder without a shipped scorer (the hashing one) gets one calibrated at start
    if !server.scorer_ready(Duration::from_secs(600)).await {
        bail!("the overlap scorer was not calibrated within 10 min");
    }
    let base = format!("http://{}", server.addr());
    let http = reqwest::Client::new();
    // new texts, not in the store and not asked before (the server keeps the vectors of recent
    // texts): the embedder runs inside every measured request
    let queries: Vec<String> = (0..args.samples).map(|i| format!("{} (request {i})", title(i * 13 + 5))).collect();
    let asked_again = |q: &str, what: &str| format!("{q} ({what})");
    let k0 = klusters[0].id;
    let m0 = klusters[0].mission_id;
    let mut overlap = Vec::new();
    let mut search_mission = Vec::new();
    let mut search_all = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        let t = Instant::now();
        let r = http
            .post(format!("{base}/api/v1/overlap"))
            .bearer_auth("bench")
            .json(&json!({"kluster_id": k0, "title": q}))
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await?;
        overlap.push(t.elapsed());
        if !status.is_success() || v.get("warnings").is_some() {
            bail!("overlap check failed or degraded: {status} {v}");
        }
        for (bucket, url) in [
            (
                &mut search_mission,
                format!("{base}/api/v1/search?q={}&mission_id={m0}&limit=10", urlencode(&asked_again(q, "mission"))),
            ),
            (&mut search_all, format!("{base}/api/v1/search?q={}&limit=10", urlencode(&asked_again(q, "all")))),
        ] {
            let t = Instant::now();
            let v: Value = http.get(url).bearer_auth("bench").send().await?.json().await?;
            bucket.push(t.elapsed());
            if v["items"].as_array().is_none_or(|a| a.is_empty()) || v.get("warnings").is_some() {
                bail!("search {i} returned nothing or degraded: {v}");
            }
        }
    }
    // where the time goes: the store's hybrid query alone, and the scorer alone
    let mut store_text = Vec::new();
    let mut store_hybrid = Vec::new();
    let mut scoring = Vec::new();
    let mut embedding = Vec::new();
    for q in &queries {
        let q = format!("{q} (embedded alone)");
        let t = Instant::now();
        embedder.embed(std::slice::from_ref(&q)).await?;
        embedding.push(t.elapsed());
    }
    let model_id = embedder.model_id().to_owned();
    let qv = embedder.embed(&queries[..queries.len().min(50)]).await?;
    let scorer = mc_overlap::shipped_for(&model_id);
    for (i, q) in queries.iter().enumerate() {
        let filter = mc_store::SearchFilter {
            mission_id: Some(m0),
            statuses: mc_domain::TaskStatus::LIVE.to_vec(),
            ..Default::default()
        };
        let t = Instant::now();
        let hits = store
            .search_tasks(&mc_store::SearchRequest { text: q.clone(), vector: None, filter: filter.clone(), limit: 20 })
            .await?;
        store_text.push(t.elapsed());
        let vector = Some(mc_store::VectorQuery { model: model_id.clone(), vector: qv[i % qv.len()].clone() });
        let t = Instant::now();
        store.search_tasks(&mc_store::SearchRequest { text: q.clone(), vector, filter, limit: 20 }).await?;
        store_hybrid.push(t.elapsed());
        let t = Instant::now();
        for h in &hits {
            let a = mc_overlap::ItemText { title: &h.task.title, description: &h.task.description };
            let b = mc_overlap::ItemText { title: q, description: "" };
            let f = mc_overlap::PairFeatures::new(a, b, h.cosine.unwrap_or(0.5), mc_overlap::PathRelation::Unknown);
            std::hint::black_box(scorer.judge(&f));
        }
        scoring.push(t.elapsed());
    }
    let line = |name: &str, v: Vec<Duration>| {
        println!("{name:<38} p50 {:>7.2} ms  p99 {:>7.2} ms  (n={})", pct(v.clone(), 0.5), pct(v, 0.99), args.samples)
    };
    println!("\n== {} tasks, {} per mission ==", args.tasks, args.tasks / args.missions.max(1));
    line("overlap check (draft, incl. embedding)", overlap);
    line("hybrid search, one mission", search_mission);
    line("hybrid search, everything", search_all);
    line("  of which: embedding the new text", embedding);
    line("  of which: store full-text query", store_text);
    line("  of which: store hybrid query", store_hybrid);
    line("  of which: scoring 20 candidates", scoring);
    if args.docs > 0 {
        let checks = doc_checks(&args, store.as_ref(), embedder.as_ref(), &http, &base, k0).await?;
        println!("\n== {} docs in one mission ==", args.docs);
        line("doc overlap check (incl. embedding)", checks);
    }
    server.shutdown().await?;
    Ok(())
}

/// Stores `args.docs` docs with vectors in the kluster's mission, then times overlap checks of
/// new doc drafts over HTTP: the draft's text and the subjects of its candidates' titles are
/// embedded inside the request (titles seen lately come from the server's cache).
async fn doc_checks(
    args: &Args,
    store: &dyn Store,
    embedder: &dyn mc_embed::Embedder,
    http: &reqwest::Client,
    base: &str,
    kluster: mc_domain::KlusterId,
) -> Result<Vec<Duration>> {
    let t0 = Instant::now();
    let mut docs = Vec::new();
    for i in 0..args.docs {
        let (title, body) = doc_text(i, args.doc_sentences);
        let raw = RawDocFields { title: Some(&title), body: Some(&body), paths: None };
        docs.push(store.create_doc(&admin(), NewDoc::parse(None, Some(kluster), DocKind::Doc, raw)?).await?.value);
    }
    let texts: Vec<String> = docs.iter().map(Doc::embedding_text).collect();
    let vectors = embedder.embed(&texts).await?;
    let items = docs
        .iter()
        .zip(&texts)
        .zip(vectors)
        .map(|((d, text), vector)| DocEmbedded {
            doc_id: d.id,
            text_hash: mc_domain::ledger::sha256_hex(text.as_bytes()),
            vector,
        })
        .collect();
    store.put_doc_embeddings(embedder.model_id(), items).await?;
    println!("stored {} docs with vectors in {:.1} s", args.docs, t0.elapsed().as_secs_f64());
    let t = Instant::now();
    let live = store.pending_doc_embeddings(embedder.model_id(), 1).await?;
    println!("embedding worker's idle pass over docs: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    if !live.is_empty() {
        bail!("some docs have no vector");
    }
    let mut checks = Vec::new();
    for i in 0..args.samples {
        let (title, body) = doc_text(args.docs + i, args.doc_sentences);
        let draft = json!({"kluster_id": kluster, "kind": "doc", "title": format!("{title} (request {i})"), "description": body});
        let t = Instant::now();
        let r = http.post(format!("{base}/api/v1/overlap")).bearer_auth("bench").json(&draft).send().await?;
        let status = r.status();
        let v: Value = r.json().await?;
        checks.push(t.elapsed());
        if !status.is_success() || v.get("warnings").is_some() {
            bail!("doc overlap check failed or degraded: {status} {v}");
        }
    }
    Ok(checks)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The store measured: the embedded one in `dir`, or PostgreSQL (`--database-url`, or a
/// throwaway cluster for `--postgres`, stopped when the returned guard drops).
async fn open_store(
    args: &Args,
    dir: &std::path::Path,
    clock: Arc<dyn Clock>,
) -> Result<(Arc<dyn Store>, Option<mc_store_postgres::testing::TempCluster>)> {
    let (url, cluster) = if args.postgres {
        let Some(bin) = mc_store_postgres::testing::bin_dir().map_err(anyhow::Error::msg)? else {
            bail!("--postgres needs MC_PG_BIN (the directory scripts/pg.sh prints)");
        };
        let cluster = mc_store_postgres::testing::TempCluster::start(&bin)?;
        println!("started a PostgreSQL cluster in {:.2} s", cluster.startup_time().as_secs_f64());
        (Some(cluster.create_database().await?), Some(cluster))
    } else {
        (args.database_url.clone(), None)
    };
    let store: Arc<dyn Store> = match url {
        Some(url) => {
            let store = mc_store_postgres::PgStore::open(mc_store_postgres::PgConfig::new(url, clock)).await?;
            println!("store: PostgreSQL at {}", store.location());
            Arc::new(store)
        }
        None => Arc::new(SqliteStore::open(SqliteConfig::new(dir.join("mc.db"), clock))?),
    };
    Ok((store, cluster))
}
