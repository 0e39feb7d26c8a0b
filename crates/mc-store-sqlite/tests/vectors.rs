//! The in-memory vector index of the SQLite backend: it survives a restart (rebuilt from the
//! `vec0` tables and the doc vectors), follows status changes made by the lease reaper and doc
//! text changes, and never sees a vector whose transaction rolled back.

use std::sync::Arc;
use std::time::Duration;

use mc_domain::doc::{DocPatch, NewDoc, RawDocFields};
use mc_domain::input::{NewKluster, NewMission, NewTask, RawTaskFields};
use mc_domain::{Actor, AgentId, Doc, DocKind, ManualClock, Task, TaskStatus, clock::from_millis};
use mc_store::{DocEmbedded, Embedded, SearchFilter, SearchRequest, Store, VectorQuery, WriteCtx};
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

fn doc_vector(d: &Doc, v: Vec<f32>) -> DocEmbedded {
    DocEmbedded { doc_id: d.id, text_hash: mc_domain::ledger::sha256_hex(d.embedding_text().as_bytes()), vector: v }
}

/// The ids of the vector hits among docs for `v` of `model`, nearest first.
async fn nearest_docs(
    s: &dyn Store,
    model: &str,
    v: Vec<f32>,
    filter: SearchFilter,
    kind: Option<DocKind>,
) -> Vec<mc_domain::DocId> {
    let req = SearchRequest {
        text: String::new(),
        vector: Some(VectorQuery { model: model.into(), vector: v }),
        filter,
        limit: 10,
    };
    let hits = s.search_docs(&req, kind).await.expect("search");
    assert!(hits.iter().all(|h| h.vector_rank.is_some()));
    hits.into_iter().map(|h| h.doc.id).collect()
}

/// Doc vectors live in the in-memory index too: a text change takes the old vector out (and
/// deletes it), a vector of another dimension replaces the old one, and at open the index is
/// rebuilt from the stored vectors that still match their doc's text, with mission, kluster and
/// kind filters.
#[tokio::test]
async fn doc_vectors_are_held_in_memory_and_rebuilt_at_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(from_millis(1_800_000_000_000)));
    let raw_doc = |title: &'static str| RawDocFields { title: Some(title), body: Some("body text"), paths: None };
    let (m1, k, docs) = {
        let s = open(dir.path(), &clock);
        let m1 = s.create_mission(&ctx(), NewMission::parse("M1", None).expect("valid")).await.expect("m1").value;
        let m2 = s.create_mission(&ctx(), NewMission::parse("M2", None).expect("valid")).await.expect("m2").value;
        let k = s.create_kluster(&ctx(), NewKluster::parse(m1.id, "K", None).expect("valid")).await.expect("k").value;
        let mut docs = Vec::new();
        for (m, kl, kind, title) in [
            (m1.id, Some(k.id), DocKind::Doc, "runbook"),
            (m1.id, None, DocKind::Artifact, "report"),
            (m2.id, None, DocKind::Doc, "notes"),
            (m1.id, Some(k.id), DocKind::Doc, "rewritten"),
        ] {
            let new = NewDoc::parse(Some(m), kl, kind, raw_doc(title)).expect("valid");
            docs.push(s.create_doc(&ctx(), new).await.expect("doc").value);
        }
        let items = vec![
            doc_vector(&docs[0], vec![1.0, 0.0, 0.0, 0.0]),
            doc_vector(&docs[1], vec![0.9, 0.1, 0.0, 0.0]),
            doc_vector(&docs[2], vec![0.8, 0.2, 0.0, 0.0]),
            doc_vector(&docs[3], vec![0.95, 0.05, 0.0, 0.0]),
        ];
        s.put_doc_embeddings(MODEL, items).await.expect("vectors");
        let all = nearest_docs(&s, MODEL, vec![1.0, 0.0, 0.0, 0.0], SearchFilter::default(), None).await;
        assert_eq!(all, vec![docs[0].id, docs[3].id, docs[1].id, docs[2].id]);

        // the text changes: the vector is gone from the index and from the table
        let patch = DocPatch::parse(RawDocFields { body: Some("another text"), ..Default::default() }).expect("valid");
        s.update_doc(&ctx(), docs[3].id, patch, None).await.expect("update");
        let all = nearest_docs(&s, MODEL, vec![1.0, 0.0, 0.0, 0.0], SearchFilter::default(), None).await;
        assert_eq!(all, vec![docs[0].id, docs[1].id, docs[2].id]);
        let pending = s.pending_doc_embeddings(MODEL, 10).await.expect("pending");
        assert_eq!(pending.iter().map(|j| j.doc_id).collect::<Vec<_>>(), vec![docs[3].id]);

        // a vector of another dimension replaces the doc's old one
        s.put_doc_embeddings(MODEL, vec![doc_vector(&docs[1], vec![0.0, 1.0, 0.0])]).await.expect("vector");
        let four = nearest_docs(&s, MODEL, vec![1.0, 0.0, 0.0, 0.0], SearchFilter::default(), None).await;
        assert_eq!(four, vec![docs[0].id, docs[2].id]);
        assert_eq!(nearest_docs(&s, MODEL, vec![0.0, 1.0, 0.0], SearchFilter::default(), None).await, vec![docs[1].id]);
        (m1, k, docs)
    };
    let raw = rusqlite::Connection::open(dir.path().join("mc.db")).expect("open raw");
    let rows: i64 = raw
        .query_row("SELECT count(*) FROM doc_embeddings WHERE doc_id = ?1", [docs[3].id.to_string()], |r| r.get(0))
        .expect("count");
    assert_eq!(rows, 0, "the stale vector was deleted with the text change");
    // a stale vector left by an older version is not loaded
    raw.execute(
        "INSERT INTO doc_embeddings (doc_id, model, text_hash, dim, vector) VALUES (?1, 'test/stale', 'old', 2, ?2)",
        rusqlite::params![docs[0].id.to_string(), [0u8, 0, 128, 63, 0, 0, 0, 0].to_vec()],
    )
    .expect("stale row");
    drop(raw);

    let s = open(dir.path(), &clock);
    let any = SearchFilter::default;
    assert_eq!(nearest_docs(&s, MODEL, vec![1.0, 0.0, 0.0, 0.0], any(), None).await, vec![docs[0].id, docs[2].id]);
    assert_eq!(nearest_docs(&s, MODEL, vec![0.0, 1.0, 0.0], any(), None).await, vec![docs[1].id]);
    let in_m1 = SearchFilter { mission_id: Some(m1.id), ..Default::default() };
    assert_eq!(nearest_docs(&s, MODEL, vec![1.0, 0.0, 0.0, 0.0], in_m1, None).await, vec![docs[0].id]);
    let in_k = SearchFilter { kluster_id: Some(k.id), ..Default::default() };
    assert_eq!(nearest_docs(&s, MODEL, vec![0.0, 1.0, 0.0], in_k.clone(), None).await, Vec::<mc_domain::DocId>::new());
    assert_eq!(nearest_docs(&s, MODEL, vec![0.0, 1.0, 0.0, 0.0], in_k, None).await, vec![docs[0].id]);
    assert_eq!(nearest_docs(&s, MODEL, vec![0.0, 1.0, 0.0], any(), Some(DocKind::Artifact)).await, vec![docs[1].id]);
    assert!(nearest_docs(&s, MODEL, vec![1.0, 0.0, 0.0, 0.0], any(), Some(DocKind::Artifact)).await.is_empty());
    assert!(nearest_docs(&s, "test/stale", vec![1.0, 0.0], any(), None).await.is_empty());
}
