//! What the conformance story does not pin down but PostgreSQL must get right: many writers at
//! once on one chain, a retried create racing its first attempt, migrations applied once, and
//! filtered nearest-neighbour search through the HNSW indexes of tasks and docs.

#![cfg(mc_pg_bin)]

use std::sync::Arc;

use mc_domain::DocKind;
use mc_domain::doc::{DocPatch, NewDoc, RawDocFields};
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

/// Doc vectors as task vectors: a kind filter that rejects most of the nearest docs still gets
/// its results through the model's HNSW index (made with the first vectors), and a doc whose text
/// changes loses its vector at once (the worker embeds the new text), so search never compares
/// the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_doc_knn_through_the_index_finds_enough_rows() {
    let (s, url) = fresh().await;
    let k = kluster(s.as_ref()).await;
    let model = "test/doc-knn";
    let mut docs = Vec::new();
    let mut items = Vec::new();
    for i in 0..300 {
        // 290 docs close to the query, 10 artifacts further away
        let (kind, base) = if i < 290 { (DocKind::Doc, 0.0) } else { (DocKind::Artifact, 1.0) };
        let title = format!("doc {i}");
        let raw = RawDocFields { title: Some(&title), body: Some("body"), paths: None };
        let d = s.create_doc(&admin(), NewDoc::parse(None, Some(k.id), kind, raw).expect("valid")).await.expect("doc");
        let x = i as f32 / 300.0;
        let vector = vec![1.0 - base * 0.5, base + x * 0.01, x, 0.1, 0.2, 0.3, 0.4, 0.5];
        let text_hash = mc_domain::ledger::sha256_hex(d.value.embedding_text().as_bytes());
        items.push(mc_store::DocEmbedded { doc_id: d.value.id, text_hash, vector });
        docs.push(d.value);
    }
    s.put_doc_embeddings(model, items).await.expect("put");
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let indexes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_indexes WHERE tablename = 'doc_embeddings' AND indexdef LIKE '%USING hnsw%'",
    )
    .fetch_one(&pool)
    .await
    .expect("pg_indexes");
    assert_eq!(indexes, 1, "one HNSW index for the model and dimension");
    let search = |kind| {
        let s = s.clone();
        async move {
            let req = SearchRequest {
                text: String::new(),
                vector: Some(VectorQuery { model: model.into(), vector: vec![1.0, 0.0, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5] }),
                filter: SearchFilter { kluster_id: Some(k.id), ..Default::default() },
                limit: 5,
            };
            s.search_docs(&req, kind).await.expect("search")
        }
    };
    let hits = search(Some(DocKind::Artifact)).await;
    assert_eq!(hits.len(), 5, "five of the ten artifacts, though 290 nearer docs are filtered out");
    assert!(hits.iter().all(|h| h.doc.kind == DocKind::Artifact));
    assert!(hits.windows(2).all(|w| w[0].cosine >= w[1].cosine), "nearest first");

    let nearest = search(None).await;
    assert_eq!(nearest.len(), 5);
    let first = nearest[0].doc.id;
    let patch = DocPatch::parse(RawDocFields { title: None, body: Some("another body"), paths: None }).expect("valid");
    s.update_doc(&admin(), first, patch, None).await.expect("update");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM doc_embeddings WHERE doc_id = $1")
        .bind(first.as_uuid())
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(stored, 0, "the vector of the old text is gone");
    let after = search(None).await;
    assert!(after.iter().all(|h| h.doc.id != first), "a doc without a current vector is not found by meaning");
    let pending = s.pending_doc_embeddings(model, 10).await.expect("pending");
    assert_eq!(pending.iter().map(|j| j.doc_id).collect::<Vec<_>>(), vec![first], "the worker embeds the new text");
    pool.close().await;
}

/// Migration 0007 on a database that already holds doc vectors: a vector of a doc's old text is
/// dropped, current ones get their doc's filter columns and key, and the HNSW index of their model
/// is built, so search finds them at once without re-embedding anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doc_vectors_stored_before_their_index_are_kept_and_indexed() {
    let cluster = TempCluster::shared().expect("PostgreSQL").expect("MC_PG_BIN is set");
    let url = cluster.create_database().await.expect("a fresh database");
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let mut c = pool.acquire().await.expect("connection");
    sqlx::raw_sql(
        "CREATE TABLE schema_migrations (
             version bigint PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut *c)
    .await
    .expect("schema_migrations");
    for &(version, name, sql) in mc_store_postgres::schema::MIGRATIONS.iter().filter(|m| m.0 <= 6) {
        sqlx::raw_sql(sql).execute(&mut *c).await.expect("an older migration");
        sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
            .bind(version)
            .bind(name)
            .execute(&mut *c)
            .await
            .expect("recorded");
    }
    let (mission, current, stale) = (mc_domain::MissionId::new(), mc_domain::DocId::new(), mc_domain::DocId::new());
    sqlx::query("INSERT INTO missions VALUES ($1, 'M', '', 'active', now(), now())")
        .bind(mission.as_uuid())
        .execute(&mut *c)
        .await
        .expect("mission");
    let model = "test/migrated";
    for (id, title) in [(current, "Runbook: failover"), (stale, "Runbook: restore")] {
        let text_hash = mc_domain::ledger::sha256_hex(mc_domain::task::embedding_text(title, "body").as_bytes());
        sqlx::query(
            "INSERT INTO docs (id, mission_id, kind, title, body, paths, version, created_by, text_hash, created_at, \
             updated_at) VALUES ($1, $2, 'doc', $3, 'body', '{}', 1, 'admin', $4, now(), now())",
        )
        .bind(id.as_uuid())
        .bind(mission.as_uuid())
        .bind(title)
        .bind(&text_hash)
        .execute(&mut *c)
        .await
        .expect("doc");
        // the second doc's vector was made from an earlier text
        let stored_hash = if id == stale { "an older text".to_owned() } else { text_hash };
        sqlx::query("INSERT INTO doc_embeddings VALUES ($1, $2, $3, 4, '[1,0,0,0]')")
            .bind(id.as_uuid())
            .bind(model)
            .bind(stored_hash)
            .execute(&mut *c)
            .await
            .expect("vector");
    }
    drop(c);

    assert_eq!(mc_store_postgres::migrate(&url).await.expect("migrate").first(), Some(&7));
    let rows: Vec<(mc_domain::id::Uuid, mc_domain::id::Uuid, String, String)> =
        sqlx::query_as("SELECT doc_id, mission_id, kind, index_key FROM doc_embeddings")
            .fetch_all(&pool)
            .await
            .expect("rows");
    let key = format!("{}_4", &mc_domain::ledger::sha256_hex(model.as_bytes())[..12]);
    assert_eq!(rows, vec![(current.as_uuid(), mission.as_uuid(), "doc".to_owned(), key.clone())]);
    let index: Option<String> = sqlx::query_scalar("SELECT indexdef FROM pg_indexes WHERE indexname = $1")
        .bind(format!("doc_embeddings_{key}"))
        .fetch_optional(&pool)
        .await
        .expect("pg_indexes");
    assert!(index.is_some_and(|d| d.contains("hnsw")), "the model's index is built by the migration");
    pool.close().await;

    let clock = Arc::new(ManualClock::new(mc_domain::clock::from_millis(1_800_000_000_000)));
    let s = PgStore::open(PgConfig::new(url, clock)).await.expect("open");
    let req = SearchRequest {
        text: String::new(),
        vector: Some(VectorQuery { model: model.into(), vector: vec![1.0, 0.0, 0.0, 0.0] }),
        filter: SearchFilter { mission_id: Some(mission), ..Default::default() },
        limit: 5,
    };
    let hits = s.search_docs(&req, None).await.expect("search");
    assert_eq!(hits.iter().map(|h| h.doc.id).collect::<Vec<_>>(), vec![current]);
    let pending = s.pending_doc_embeddings(model, 10).await.expect("pending");
    assert_eq!(
        pending.iter().map(|j| j.doc_id).collect::<Vec<_>>(),
        vec![stale],
        "only the stale one is embedded again"
    );
}
