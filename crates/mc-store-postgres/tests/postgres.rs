//! What the conformance story does not pin down but PostgreSQL must get right: many writers at
//! once on one chain, a retried create racing its first attempt, migrations applied once, and
//! filtered nearest-neighbour search through the HNSW index.

#![cfg(mc_pg_bin)]

use std::sync::Arc;

use mc_domain::input::{NewKluster, NewMission, NewTask, RawTaskFields};
use mc_domain::{Actor, ManualClock, Principal, Role};
use mc_store::{Embedded, IdempotencyKey, LedgerFilter, SearchFilter, SearchRequest, Store, VectorQuery, WriteCtx};
use mc_store_postgres::testing::TempCluster;
use mc_store_postgres::{PgConfig, PgStore};

fn admin() -> WriteCtx {
    WriteCtx::new(Actor { principal: Principal { name: "admin".into(), role: Role::Admin }, agent: None })
}

async fn fresh() -> (Arc<PgStore>, String) {
    let cluster = TempCluster::shared().expect("PostgreSQL").expect("MC_PG_BIN is set");
    let url = cluster.create_database().await.expect("a fresh database");
    let clock = Arc::new(ManualClock::new(mc_domain::clock::from_millis(1_800_000_000_000)));
    (Arc::new(PgStore::open(PgConfig::new(url.clone(), clock)).await.expect("open")), url)
}

async fn kluster(s: &dyn Store) -> mc_domain::Kluster {
    let m = s.create_mission(&admin(), NewMission::parse("M", None).expect("valid")).await.expect("mission").value;
    s.create_kluster(&admin(), NewKluster::parse(m.id, "K", None).expect("valid")).await.expect("kluster").value
}

fn new_task(k: &mc_domain::Kluster, title: &str) -> NewTask {
    NewTask::parse(k.id, RawTaskFields { title: Some(title), ..Default::default() }).expect("valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_share_one_unbroken_chain() {
    let (s, _) = fresh().await;
    let k = kluster(s.as_ref()).await;
    let mut handles = Vec::new();
    for i in 0..48 {
        let (s, k) = (Arc::clone(&s), k.clone());
        handles.push(tokio::spawn(async move { s.create_task(&admin(), new_task(&k, &format!("task {i}"))).await }));
    }
    for h in handles {
        h.await.expect("join").expect("every create succeeds");
    }
    let events = s.list_ledger(&LedgerFilter { limit: 1000, ..Default::default() }).await.expect("ledger");
    assert_eq!(events.len(), 50);
    assert!(events.windows(2).all(|w| w[1].seq == w[0].seq + 1 && w[1].prev_hash == w[0].hash));
    let v = s.verify_ledger().await.expect("verify");
    assert!(v.ok && v.checked == 50, "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_racing_the_first_call_replays_it() {
    let (s, _) = fresh().await;
    let k = kluster(s.as_ref()).await;
    let mut ctx = admin();
    ctx.idempotency = Some(IdempotencyKey { scope: "admin".into(), key: "k-1".into(), fingerprint: "f".into() });
    ctx.replay_extra = Some(serde_json::json!({ "suggestions": [] }));
    let mut handles = Vec::new();
    for _ in 0..16 {
        let (s, k, ctx) = (Arc::clone(&s), k.clone(), ctx.clone());
        handles.push(tokio::spawn(async move { s.create_task(&ctx, new_task(&k, "once")).await }));
    }
    let mut created = Vec::new();
    for h in handles {
        created.push(h.await.expect("join").expect("no caller sees an error"));
    }
    assert_eq!(created.iter().filter(|c| !c.replayed).count(), 1, "exactly one call creates");
    assert!(created.iter().all(|c| c.value.id == created[0].value.id));
    assert!(created.iter().filter(|c| c.replayed).all(|c| c.extra == ctx.replay_extra));
    let creates = LedgerFilter { action: Some("task.create".into()), limit: 100, ..Default::default() };
    assert_eq!(s.list_ledger(&creates).await.expect("ledger").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once() {
    let (s, url) = fresh().await;
    assert!(mc_store_postgres::migrate(&url).await.expect("migrate").is_empty(), "already current");
    let h = s.health().await;
    assert!(h.ok, "{h:?}");
    assert_eq!(h.schema_version, mc_store_postgres::schema::latest_version());
    assert!(!h.detail.contains("postgres@"), "no credentials in the health detail: {}", h.detail);
}

/// A filter that rejects most of the nearest neighbours still gets its results: the HNSW scan
/// (which the store makes the planner take, even at this size) goes on past them (iterative
/// scan), and an exact scan decides when the walk comes back short. (With neither, this finds
/// nothing: the 40 candidates of `ef_search` all belong to `near`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_knn_through_the_index_finds_enough_rows() {
    let (s, _) = fresh().await;
    let m = s.create_mission(&admin(), NewMission::parse("M", None).expect("valid")).await.expect("m").value;
    let near = s.create_kluster(&admin(), NewKluster::parse(m.id, "near", None).expect("valid")).await.expect("k");
    let far = s.create_kluster(&admin(), NewKluster::parse(m.id, "far", None).expect("valid")).await.expect("k");
    let model = "test/knn";
    let mut items = Vec::new();
    for i in 0..600 {
        // 580 tasks close to the query in `near`, 20 further away in `far`
        let (k, base) = if i < 580 { (&near.value, 0.0) } else { (&far.value, 1.0) };
        let t = s.create_task(&admin(), new_task(k, &format!("task {i}"))).await.expect("task").value;
        let x = i as f32 / 600.0;
        let vector = vec![1.0 - base * 0.5, base + x * 0.01, x, 0.1, 0.2, 0.3, 0.4, 0.5];
        let text_hash = mc_domain::ledger::sha256_hex(t.embedding_text().as_bytes());
        items.push(Embedded { task_id: t.id, text_hash, vector });
    }
    s.put_embeddings(model, items).await.expect("put");
    let hits = s
        .search_tasks(&SearchRequest {
            text: String::new(),
            vector: Some(VectorQuery { model: model.into(), vector: vec![1.0, 0.0, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5] }),
            filter: SearchFilter { kluster_id: Some(far.value.id), ..Default::default() },
            limit: 10,
        })
        .await
        .expect("search");
    assert_eq!(hits.len(), 10, "ten of the twenty tasks of `far`, though 580 nearer ones are filtered out");
    assert!(hits.iter().all(|h| h.task.kluster_id == far.value.id));
    assert!(hits.windows(2).all(|w| w[0].cosine >= w[1].cosine), "nearest first");
}
