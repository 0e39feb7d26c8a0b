//! The in-memory vector index of the SQLite backend: it survives a restart (rebuilt from the
//! `vec0` tables), follows status changes made by the lease reaper, and never sees a vector
//! whose transaction rolled back.

use std::sync::Arc;
use std::time::Duration;

use mc_domain::input::{NewKluster, NewMission, NewTask, RawTaskFields};
use mc_domain::{Actor, AgentId, ManualClock, Task, TaskStatus, clock::from_millis};
use mc_store::{Embedded, SearchFilter, SearchRequest, Store, VectorQuery, WriteCtx};
use mc_store_sqlite::{SqliteConfig, SqliteStore};

const MODEL: &str = "test/vectors";

fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> SqliteStore {
    SqliteStore::open(SqliteConfig::new(dir.join("mc.db"), clock.clone())).expect("open store")
}

fn ctx() -> WriteCtx {
    WriteCtx::new(Actor::system())
}

async fn tasks(s: &dyn Store, titles: &[&str]) -> Vec<Task> {
    let m = s.create_mission(&ctx(), NewMission::parse("M", None).expect("valid")).await.expect("mission").value;
    let k = s.create_kluster(&ctx(), NewKluster::parse(m.id, "K", None).expect("valid")).await.expect("kluster");
    let mut out = Vec::new();
    for t in titles {
        let new = NewTask::parse(k.value.id, RawTaskFields { title: Some(t), ..Default::default() }).expect("valid");
        out.push(s.create_task(&ctx(), new).await.expect("task").value);
    }
    out
}

fn item(t: &Task, v: Vec<f32>) -> Embedded {
    Embedded { task_id: t.id, text_hash: mc_domain::ledger::sha256_hex(t.embedding_text().as_bytes()), vector: v }
}

/// The ids of the vector hits for `v` under `filter`, nearest first.
async fn nearest(s: &dyn Store, v: Vec<f32>, filter: SearchFilter) -> Vec<mc_domain::TaskId> {
    let req = SearchRequest {
        text: String::new(),
        vector: Some(VectorQuery { model: MODEL.into(), vector: v }),
        filter,
        limit: 10,
    };
    let hits = s.search_tasks(&req).await.expect("search");
    assert!(hits.iter().all(|h| h.vector_rank.is_some()));
    hits.into_iter().map(|h| h.task.id).collect()
}

#[tokio::test]
async fn the_index_is_rebuilt_from_the_vector_tables_at_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(from_millis(1_800_000_000_000)));
    let ids = {
        let s = open(dir.path(), &clock);
        let ts = tasks(&s, &["alpha", "beta", "gamma"]).await;
        let items = vec![
            item(&ts[0], vec![1.0, 0.0, 0.0, 0.0]),
            item(&ts[1], vec![0.0, 1.0, 0.0, 0.0]),
            item(&ts[2], vec![0.7, 0.7, 0.0, 0.0]),
        ];
        s.put_embeddings(MODEL, items).await.expect("vectors");
        ts.iter().map(|t| t.id).collect::<Vec<_>>()
    };
    let s = open(dir.path(), &clock);
    let found = nearest(&s, vec![0.0, 1.0, 0.1, 0.0], SearchFilter::default()).await;
    assert_eq!(found, vec![ids[1], ids[2], ids[0]]);
    let hits = s
        .search_tasks(&SearchRequest {
            text: String::new(),
            vector: Some(VectorQuery { model: MODEL.into(), vector: vec![1.0, 0.0, 0.0, 0.0] }),
            filter: SearchFilter::default(),
            limit: 1,
        })
        .await
        .expect("search");
    // the similarity shown is the cosine, to int8 precision
    assert!((hits[0].cosine.expect("cosine") - 1.0).abs() < 0.002);
}

#[tokio::test]
async fn a_reaped_task_is_live_again_in_the_vector_index() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(from_millis(1_800_000_000_000)));
    let s = open(dir.path(), &clock);
    let ts = tasks(&s, &["alpha"]).await;
    s.put_embeddings(MODEL, vec![item(&ts[0], vec![1.0, 0.0, 0.0])]).await.expect("vector");
    let mut agent = ctx();
    agent.actor.agent = Some(AgentId::parse("a1").expect("valid"));
    s.claim_task(&agent, ts[0].id, Duration::from_secs(10)).await.expect("claim");
    let open_only = || SearchFilter { statuses: vec![TaskStatus::Open], ..Default::default() };
    assert!(nearest(&s, vec![1.0, 0.0, 0.0], open_only()).await.is_empty(), "claimed work is not open");
    clock.advance(Duration::from_secs(11));
    assert_eq!(s.reap_expired_leases(10).await.expect("reap").len(), 1);
    assert_eq!(nearest(&s, vec![1.0, 0.0, 0.0], open_only()).await, vec![ts[0].id]);
}

#[tokio::test]
async fn a_rolled_back_vector_is_never_indexed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(from_millis(1_800_000_000_000)));
    let s = open(dir.path(), &clock);
    let ts = tasks(&s, &["alpha", "beta"]).await;
    // the second vector is refused (no dimensions), so the whole call rolls back
    let err = s.put_embeddings(MODEL, vec![item(&ts[0], vec![1.0, 0.0]), item(&ts[1], vec![])]).await;
    assert!(err.is_err());
    assert!(nearest(&s, vec![1.0, 0.0], SearchFilter::default()).await.is_empty());
    assert_eq!(s.pending_embeddings(MODEL, 10).await.expect("pending").len(), 2);
    s.put_embeddings(MODEL, vec![item(&ts[0], vec![1.0, 0.0])]).await.expect("vector");
    assert_eq!(nearest(&s, vec![1.0, 0.0], SearchFilter::default()).await, vec![ts[0].id]);
}

/// A database from before the text hashes were kept beside the search documents: they are
/// filled in at open, and the tasks waiting for a vector are still exactly the ones without one.
#[tokio::test]
async fn text_hashes_missing_from_an_older_database_are_filled_in_at_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(from_millis(1_800_000_000_000)));
    let ts = {
        let s = open(dir.path(), &clock);
        let ts = tasks(&s, &["alpha", "beta", "gamma"]).await;
        s.put_embeddings(MODEL, vec![item(&ts[0], vec![1.0, 0.0]), item(&ts[2], vec![0.0, 1.0])]).await.expect("put");
        ts
    };
    let raw = rusqlite::Connection::open(dir.path().join("mc.db")).expect("open raw");
    let cleared = raw.execute("UPDATE search_docs SET text_hash = NULL", []).expect("clear");
    assert_eq!(cleared, 3);
    drop(raw);

    let s = open(dir.path(), &clock);
    let pending = s.pending_embeddings(MODEL, 10).await.expect("pending");
    assert_eq!(pending.iter().map(|j| j.task_id).collect::<Vec<_>>(), vec![ts[1].id]);
    assert_eq!(pending[0].text, "beta");
    let raw = rusqlite::Connection::open(dir.path().join("mc.db")).expect("open raw");
    let missing: i64 =
        raw.query_row("SELECT count(*) FROM search_docs WHERE text_hash IS NULL", [], |r| r.get(0)).expect("count");
    assert_eq!(missing, 0);
}
