//! The conformance story every backend must pass, written once against `dyn Store`. A backend's
//! test file calls `conformance_tests!(make)` where `make(clock)` opens a fresh, empty store that
//! reads time from `clock`.

use std::sync::Arc;
use std::time::Duration;

use mc_domain::input::{NewKluster, NewMission, NewTask, RawTaskFields, ScopePatch, TaskPatch};
use mc_domain::{
    Actor, AgentId, Error, Kluster, KlusterId, ManualClock, Mission, MissionId, Principal, Role, ScopeStatus, Task,
    TaskId, TaskStatus,
};

use mc_domain::doc::{DocPatch, NewDoc, RawDocFields};
use mc_domain::{Doc, DocId, DocKind};

use crate::{
    DocEmbedded, DocFilter, Embedded, EmbeddingJob, IdempotencyKey, LedgerFilter, PendingPage, ReadyFilter,
    ScopeFilter, SearchFilter, SearchHit, SearchRequest, Store, TaskFilter, TextCursor, TokenRecord, VectorQuery,
    WriteCtx,
};

/// A fresh store for one test, and whatever keeps it alive (a temp dir, a server).
pub struct Harness {
    pub store: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
    pub guard: Box<dyn std::any::Any + Send>,
}

/// Generates one `#[tokio::test]` per conformance test. `$make` is an async fn taking an
/// `Arc<ManualClock>` and returning a `Harness`.
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@each $make;
            missions_and_klusters_lifecycle,
            tasks_are_created_validated_and_listed,
            illegal_transitions_are_refused,
            dependency_cycles_are_refused,
            ready_work_is_ordered_and_gated,
            leases_are_fenced,
            claim_next_takes_the_most_urgent_ready_task,
            expired_leases_are_reaped,
            ledger_records_every_mutation_in_a_chain,
            idempotency_keys_replay_the_first_result,
            concurrent_claims_never_double_assign,
            tokens_resolve_to_principals,
            search_fuses_text_and_vectors_under_filters,
            embeddings_follow_the_text_and_the_model,
            the_embedding_walk_reads_only_changed_texts,
            klusters_are_searched_by_text_and_vectors,
            queries_of_only_common_words_take_the_newest_matches,
            a_search_right_after_a_write_sees_it,
            docs_are_created_versioned_and_listed,
            docs_are_searched_by_text_and_vectors
        );
    };
    (@each $make:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let clock = ::std::sync::Arc::new(::mc_domain::ManualClock::new(
                    ::mc_domain::clock::from_millis(1_800_000_000_000),
                ));
                let h = $make(clock).await;
                $crate::conformance::$name(h.store.clone(), h.clock.clone()).await;
                drop(h);
            }
        )*
    };
}

fn admin() -> WriteCtx {
    WriteCtx::new(Actor { principal: Principal { name: "admin".into(), role: Role::Admin }, agent: None })
}

fn agent(name: &str) -> WriteCtx {
    let mut ctx = admin();
    ctx.actor.agent = Some(AgentId::parse(name).expect("valid agent id"));
    ctx
}

const TTL: Duration = Duration::from_secs(60);

async fn mission(s: &dyn Store, name: &str) -> Mission {
    s.create_mission(&admin(), NewMission::parse(name, Some("why")).expect("valid"))
        .await
        .expect("mission created")
        .value
}

async fn kluster(s: &dyn Store, m: &Mission, name: &str) -> Kluster {
    s.create_kluster(&admin(), NewKluster::parse(m.id, name, None).expect("valid"))
        .await
        .expect("kluster created")
        .value
}

async fn task(s: &dyn Store, k: KlusterId, title: &str, priority: i64, deps: &[TaskId]) -> Task {
    let new = NewTask::parse(
        k,
        RawTaskFields {
            title: Some(title),
            priority: Some(priority),
            depends_on: Some(deps),
            labels: Some(&["backend".to_owned()]),
            paths: Some(&["src/**/*.rs".to_owned()]),
            ..Default::default()
        },
    )
    .expect("valid task");
    s.create_task(&admin(), new).await.expect("task created").value
}

fn code(e: Error) -> &'static str {
    e.code()
}

pub async fn missions_and_klusters_lifecycle(s: Arc<dyn Store>, _clock: Arc<ManualClock>) {
    let s = s.as_ref();
    let m1 = mission(s, "Payments").await;
    let m2 = mission(s, "Search").await;
    assert_eq!(s.get_mission(m1.id).await.expect("get"), m1);

    let page = s.list_missions(&ScopeFilter { limit: 1, ..Default::default() }).await.expect("list");
    assert_eq!(page.items, vec![m1.clone()]);
    let cursor = page.next_cursor.expect("more pages");
    let page2 =
        s.list_missions(&ScopeFilter { limit: 1, cursor: Some(cursor), ..Default::default() }).await.expect("list 2");
    assert_eq!(page2.items, vec![m2.clone()]);
    assert_eq!(page2.next_cursor, None);

    let patch = ScopePatch::parse(Some("Payments v2"), None).expect("valid");
    let m1b = s.update_mission(&admin(), m1.id, patch).await.expect("update");
    assert_eq!(m1b.name, "Payments v2");
    assert_eq!(m1b.description, "why");

    let k = kluster(s, &m1, "Refunds").await;
    assert_eq!(k.mission_id, m1.id);
    let ks = s
        .list_klusters(&ScopeFilter { mission_id: Some(m1.id), limit: 10, ..Default::default() })
        .await
        .expect("klusters");
    assert_eq!(ks.items, vec![k.clone()]);
    let none = s
        .list_klusters(&ScopeFilter { mission_id: Some(m2.id), limit: 10, ..Default::default() })
        .await
        .expect("klusters of m2");
    assert!(none.items.is_empty());

    let archived = s.archive_kluster(&admin(), k.id).await.expect("archive kluster");
    assert_eq!(archived.status, ScopeStatus::Archived);
    let e = s.update_kluster(&admin(), k.id, ScopePatch::default()).await.expect_err("archived");
    assert_eq!(code(e), "archived");
    let listed =
        s.list_klusters(&ScopeFilter { mission_id: Some(m1.id), limit: 10, ..Default::default() }).await.expect("list");
    assert!(listed.items.is_empty(), "archived klusters are hidden by default");

    s.archive_mission(&admin(), m2.id).await.expect("archive mission");
    let e = s
        .create_kluster(&admin(), NewKluster::parse(m2.id, "late", None).expect("valid"))
        .await
        .expect_err("archived mission");
    assert_eq!(code(e), "archived");
    let e = s.get_mission(mc_domain::MissionId::new()).await.expect_err("unknown");
    assert!(matches!(e, Error::NotFound { entity: "mission", .. }));
}

pub async fn tasks_are_created_validated_and_listed(s: Arc<dyn Store>, _clock: Arc<ManualClock>) {
    let s = s.as_ref();
    let m = mission(s, "M").await;
    let k1 = kluster(s, &m, "K1").await;
    let k2 = kluster(s, &m, "K2").await;
    let a = task(s, k1.id, "write the parser", 1, &[]).await;
    let b = task(s, k1.id, "test the parser", 2, &[a.id]).await;
    let c = task(s, k2.id, "document", 3, &[]).await;
    assert_eq!(b.depends_on, vec![a.id]);
    assert_eq!(b.mission_id, m.id);
    assert_eq!(b.labels, vec!["backend"]);
    assert_eq!(b.status, TaskStatus::Open);
    assert_eq!(s.get_task(b.id).await.expect("get"), b);

    let unknown =
        NewTask::parse(KlusterId::new(), RawTaskFields { title: Some("x"), ..Default::default() }).expect("valid");
    assert!(matches!(s.create_task(&admin(), unknown).await, Err(Error::NotFound { entity: "kluster", .. })));
    let bad_dep = NewTask::parse(
        k1.id,
        RawTaskFields { title: Some("x"), depends_on: Some(&[TaskId::new()]), ..Default::default() },
    )
    .expect("valid");
    match s.create_task(&admin(), bad_dep).await {
        Err(Error::Validation { field, .. }) => assert_eq!(field, "depends_on[0]"),
        other => panic!("expected a validation error, got {other:?}"),
    }

    let in_k1 =
        s.list_tasks(&TaskFilter { kluster_id: Some(k1.id), limit: 10, ..Default::default() }).await.expect("list");
    assert_eq!(in_k1.items.iter().map(|t| t.id).collect::<Vec<_>>(), vec![a.id, b.id]);
    let all = s.list_tasks(&TaskFilter { limit: 2, ..Default::default() }).await.expect("page 1");
    assert_eq!(all.items.len(), 2);
    let rest =
        s.list_tasks(&TaskFilter { limit: 2, cursor: all.next_cursor, ..Default::default() }).await.expect("page 2");
    assert_eq!(rest.items.iter().map(|t| t.id).collect::<Vec<_>>(), vec![c.id]);
    assert!(rest.next_cursor.is_none());

    s.claim_task(&agent("a1"), a.id, TTL).await.expect("claim");
    let claimed = s
        .list_tasks(&TaskFilter { statuses: vec![TaskStatus::Claimed], limit: 10, ..Default::default() })
        .await
        .expect("by status");
    assert_eq!(claimed.items.iter().map(|t| t.id).collect::<Vec<_>>(), vec![a.id]);
    let held = s
        .list_tasks(&TaskFilter { holder: Some("a1".into()), limit: 10, ..Default::default() })
        .await
        .expect("by holder");
    assert_eq!(held.items.len(), 1);
    let labelled = s
        .list_tasks(&TaskFilter { label: Some("Backend".into()), limit: 10, ..Default::default() })
        .await
        .expect("by label");
    assert_eq!(labelled.items.len(), 3);
    let patch =
        TaskPatch::parse(RawTaskFields { labels: Some(&["docs".to_owned()]), ..Default::default() }).expect("valid");
    s.update_task(&admin(), c.id, patch, None).await.expect("relabel");
    let docs = s
        .list_tasks(&TaskFilter { label: Some("docs".into()), limit: 10, ..Default::default() })
        .await
        .expect("by new label");
    assert_eq!(docs.items.iter().map(|t| t.id).collect::<Vec<_>>(), vec![c.id]);
}

pub async fn illegal_transitions_are_refused(s: Arc<dyn Store>, _clock: Arc<ManualClock>) {
    let s = s.as_ref();
    let m = mission(s, "M").await;
    let k = kluster(s, &m, "K").await;
    let t = task(s, k.id, "t", 2, &[]).await;
    let e = s.transition_task(&admin(), t.id, TaskStatus::Done, None).await.expect_err("open → done");
    assert_eq!(e.code(), "illegal_transition");
    assert!(e.to_string().contains("allowed from open: claimed, blocked, cancelled"), "{e}");
    let e = s.transition_task(&admin(), t.id, TaskStatus::Claimed, None).await.expect_err("claim by transition");
    assert_eq!(e.code(), "use_claim");

    let ctx = agent("a1");
    let held = s.claim_task(&ctx, t.id, TTL).await.expect("claim");
    let tok = held.fencing_token;
    let e = s.transition_task(&ctx, t.id, TaskStatus::InProgress, None).await.expect_err("no token");
    assert_eq!(e.code(), "fencing_token_required");
    let t2 = s.transition_task(&ctx, t.id, TaskStatus::InProgress, Some(tok)).await.expect("start");
    assert_eq!(t2.status, TaskStatus::InProgress);
    let t3 = s.transition_task(&ctx, t.id, TaskStatus::Review, Some(tok)).await.expect("review");
    assert_eq!(t3.status, TaskStatus::Review);
    let done = s.complete_task(&ctx, t.id, tok).await.expect("complete");
    assert_eq!(done.status, TaskStatus::Done);
    assert!(done.lease.is_none());
    let e = s.transition_task(&admin(), t.id, TaskStatus::Open, None).await.expect_err("terminal");
    assert!(e.to_string().contains("done is terminal"), "{e}");

    let b = task(s, k.id, "b", 2, &[]).await;
    let blocked = s.transition_task(&admin(), b.id, TaskStatus::Blocked, None).await.expect("block");
    assert_eq!(blocked.status, TaskStatus::Blocked);
    let e = s.claim_task(&ctx, b.id, TTL).await.expect_err("blocked is not claimable");
    assert_eq!(e.code(), "not_claimable");
    s.transition_task(&admin(), b.id, TaskStatus::Open, None).await.expect("unblock");
}

pub async fn dependency_cycles_are_refused(s: Arc<dyn Store>, _clock: Arc<ManualClock>) {
    let s = s.as_ref();
    let m = mission(s, "M").await;
    let k = kluster(s, &m, "K").await;
    let a = task(s, k.id, "a", 2, &[]).await;
    let b = task(s, k.id, "b", 2, &[a.id]).await;
    let c = task(s, k.id, "c", 2, &[b.id]).await;
    let patch = TaskPatch { depends_on: Some(vec![c.id]), ..Default::default() };
    let e = s.update_task(&admin(), a.id, patch, None).await.expect_err("cycle");
    assert_eq!(e.code(), "dependency_cycle");
    assert_eq!(e.to_string(), format!("dependencies would form a cycle: {} → {} → {} → {}", a.id, c.id, b.id, a.id));
    // nothing was half-written
    assert!(s.get_task(a.id).await.expect("get").depends_on.is_empty());
    let self_dep = TaskPatch { depends_on: Some(vec![a.id]), ..Default::default() };
    assert_eq!(s.update_task(&admin(), a.id, self_dep, None).await.expect_err("self").code(), "dependency_cycle");
    // a legal re-wiring is accepted
    let ok = TaskPatch { depends_on: Some(vec![a.id]), ..Default::default() };
    let c2 = s.update_task(&admin(), c.id, ok, None).await.expect("rewire");
    assert_eq!(c2.depends_on, vec![a.id]);
}

pub async fn ready_work_is_ordered_and_gated(s: Arc<dyn Store>, clock: Arc<ManualClock>) {
    let s = s.as_ref();
    let m = mission(s, "M").await;
    let k = kluster(s, &m, "K").await;
    let other = kluster(s, &m, "other").await;
    let low_old = task(s, k.id, "low old", 3, &[]).await;
    clock.advance(Duration::from_millis(5));
    let urgent = task(s, k.id, "urgent", 0, &[]).await;
    clock.advance(Duration::from_millis(5));
    let low_new = task(s, k.id, "low new", 3, &[]).await;
    let gated = task(s, k.id, "gated", 0, &[urgent.id]).await;
    task(s, other.id, "elsewhere", 0, &[]).await;

    let ready = |limit| ReadyFilter { kluster_id: Some(k.id), limit, ..Default::default() };
    let ids: Vec<TaskId> = s.ready_tasks(&ready(10)).await.expect("ready").iter().map(|t| t.id).collect();
    assert_eq!(ids, vec![urgent.id, low_old.id, low_new.id]);
    assert_eq!(s.ready_tasks(&ready(1)).await.expect("ready").len(), 1);

    let ctx = agent("a1");
    let e = s.claim_task(&ctx, gated.id, TTL).await.expect_err("deps not done");
    assert_eq!(e.code(), "dependencies_not_done");
    let held = s.claim_task(&ctx, urgent.id, TTL).await.expect("claim");
    s.complete_task(&ctx, urgent.id, held.fencing_token).await.expect("done");
    let ids: Vec<TaskId> = s.ready_tasks(&ready(10)).await.expect("ready").iter().map(|t| t.id).collect();
    assert_eq!(ids, vec![gated.id, low_old.id, low_new.id]);
    let all = s.ready_tasks(&ReadyFilter { mission_id: Some(m.id), limit: 10, ..Default::default() }).await;
    assert_eq!(all.expect("mission ready").len(), 4);
}

pub async fn leases_are_fenced(s: Arc<dyn Store>, _clock: Arc<ManualClock>) {
    let s = s.as_ref();
    let m = mission(s, "M").await;
    let k = kluster(s, &m, "K").await;
    let t = task(s, k.id, "t", 2, &[]).await;
    let (a1, a2) = (agent("a1"), agent("a2"));

    let held = s.claim_task(&a1, t.id, TTL).await.expect("a1 claims");
    let lease = held.lease.clone().expect("lease");
    assert_eq!(lease.holder, "a1");
    assert_eq!(lease.fencing_token, 1);
    assert_eq!(held.status, TaskStatus::Claimed);

    let e = s.claim_task(&a2, t.id, TTL).await.expect_err("a2 loses");
    assert_eq!(e.code(), "task_held");
    assert!(e.to_string().contains("held by a1"), "{e}");

    // re-claim by the holder renews without a new tenure
    assert_eq!(s.claim_task(&a1, t.id, TTL).await.expect("reclaim").fencing_token, 1);

    let e = s.heartbeat_task(&a1, t.id, 0, TTL).await.expect_err("stale token");
    assert_eq!(e.code(), "stale_fencing_token");
    let e = s.heartbeat_task(&a2, t.id, 1, TTL).await.expect_err("not the holder");
    assert_eq!(e.code(), "task_held");
    s.heartbeat_task(&a1, t.id, 1, TTL).await.expect("heartbeat");
    let patch = TaskPatch { title: Some("renamed".into()), ..Default::default() };
    let e = s.update_task(&a1, t.id, patch.clone(), None).await.expect_err("update needs token");
    assert_eq!(e.code(), "fencing_token_required");
    assert_eq!(s.update_task(&a1, t.id, patch, Some(1)).await.expect("update").title, "renamed");

    let released = s.release_task(&a1, t.id, 1).await.expect("release");
    assert_eq!(released.status, TaskStatus::Open);
    assert!(released.lease.is_none());
    let e = s.release_task(&a1, t.id, 1).await.expect_err("not held");
    assert_eq!(e.code(), "not_held");

    let again = s.claim_task(&a2, t.id, TTL).await.expect("a2 claims");
    assert_eq!(again.fencing_token, 2, "token grows at every change of holder");
    let e = s.complete_task(&a1, t.id, 1).await.expect_err("old holder");
    assert_eq!(e.code(), "task_held");
    let e = s.complete_task(&a2, t.id, 1).await.expect_err("old token");
    assert_eq!(e.code(), "stale_fencing_token");
    assert_eq!(s.complete_task(&a2, t.id, 2).await.expect("complete").status, TaskStatus::Done);
}

pub async fn claim_next_takes_the_most_urgent_ready_task(s: Arc<dyn Store>, _clock: Arc<ManualClock>) {
    let s = s.as_ref();
    let m = mission(s, "M").await;
    let k = kluster(s, &m, "K").await;
    let low = task(s, k.id, "low", 4, &[]).await;
    let high = task(s, k.id, "high", 0, &[]).await;
    let first = s.claim_next_task(&agent("a1"), k.id, TTL).await.expect("claim next").expect("some");
    assert_eq!(first.id, high.id);
    let second = s.claim_next_task(&agent("a2"), k.id, TTL).await.expect("claim next").expect("some");
    assert_eq!(second.id, low.id);
    assert_eq!(second.lease.expect("lease").holder, "a2");
    assert!(s.claim_next_task(&agent("a3"), k.id, TTL).await.expect("claim next").is_none());
    let e = s.claim_next_task(&agent("a3"), KlusterId::new(), TTL).await.expect_err("unknown kluster");
    assert!(matches!(e, Error::NotFound { entity: "kluster", .. }));
}

pub async fn expired_leases_are_reaped(s: Arc<dyn Store>, clock: Arc<ManualClock>) {
    let s = s.as_ref();
    let m = mission(s, "M").await;
    let k = kluster(s, &m, "K").await;
    let t = task(s, k.id, "t", 2, &[]).await;
    let a1 = agent("a1");
    s.claim_task(&a1, t.id, Duration::from_secs(10)).await.expect("claim");
    clock.advance(Duration::from_secs(9));
    assert!(s.reap_expired_leases(100).await.expect("reap").is_empty(), "lease still live");
    clock.advance(Duration::from_secs(2));
    let e = s.heartbeat_task(&a1, t.id, 1, TTL).await.expect_err("expired");
    assert_eq!(e.code(), "lease_expired");
    let reaped = s.reap_expired_leases(100).await.expect("reap");
    assert_eq!(reaped.iter().map(|t| t.id).collect::<Vec<_>>(), vec![t.id]);
    let now = s.get_task(t.id).await.expect("get");
    assert_eq!(now.status, TaskStatus::Open);
    assert!(now.lease.is_none());
    let events = s
        .list_ledger(&LedgerFilter {
            entity_id: Some(t.id.to_string()),
            action: Some("task.lease_expired".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("ledger");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].actor, "system");
    let b = s.claim_task(&agent("a2"), t.id, TTL).await.expect("a2 takes over");
    assert_eq!(b.fencing_token, 2);
    assert_eq!(s.heartbeat_task(&a1, t.id, 1, TTL).await.expect_err("a1 fenced off").code(), "task_held");
}

pub async fn ledger_records_every_mutation_in_a_chain(s: Arc<dyn Store>, _clock: Arc<ManualClock>) {
    let s = s.as_ref();
    let m = mission(s, "M").await;
    let k = kluster(s, &m, "K").await;
    let t = task(s, k.id, "t", 2, &[]).await;
    let a1 = agent("a1");
    let mut ctx = a1.clone();
    ctx.request_id = Some("req-42".into());
    s.claim_task(&ctx, t.id, TTL).await.expect("claim");
    s.heartbeat_task(&a1, t.id, 1, TTL).await.expect("hb");
    s.complete_task(&a1, t.id, 1).await.expect("done");
    // a refused mutation leaves no event
    s.claim_task(&a1, t.id, TTL).await.expect_err("done is not claimable");

    let all = s.list_ledger(&LedgerFilter { limit: 100, ..Default::default() }).await.expect("ledger");
    let actions: Vec<&str> = all.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        vec!["mission.create", "kluster.create", "task.create", "task.claim", "task.heartbeat", "task.complete"]
    );
    assert_eq!(all[3].actor, "admin/a1");
    assert_eq!(all[3].request_id.as_deref(), Some("req-42"));
    for pair in all.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    let after = s
        .list_ledger(&LedgerFilter { after_seq: Some(all[4].seq), limit: 100, ..Default::default() })
        .await
        .expect("after");
    assert_eq!(after.len(), 1);
    let claims = s
        .list_ledger(&LedgerFilter { actor: Some("admin/a1".into()), limit: 100, ..Default::default() })
        .await
        .expect("by actor");
    assert_eq!(claims.len(), 3);
    let v = s.verify_ledger().await.expect("verify");
    assert!(v.ok, "{v:?}");
    assert_eq!(v.checked, 6);
    assert_eq!(v.head_hash, all[5].hash);
}

pub async fn idempotency_keys_replay_the_first_result(s: Arc<dyn Store>, _clock: Arc<ManualClock>) {
    let s = s.as_ref();
    let m = mission(s, "M").await;
    let k = kluster(s, &m, "K").await;
    let mut ctx = admin();
    ctx.idempotency = Some(IdempotencyKey { scope: "admin".into(), key: "k-1".into(), fingerprint: "f1".into() });
    let new = NewTask::parse(k.id, RawTaskFields { title: Some("once"), ..Default::default() }).expect("valid");
    let first = s.create_task(&ctx, new.clone()).await.expect("first");
    assert!(!first.replayed);
    let second = s.create_task(&ctx, new.clone()).await.expect("retry");
    assert!(second.replayed);
    assert_eq!(second.value.id, first.value.id);
    let count = s.list_tasks(&TaskFilter { kluster_id: Some(k.id), limit: 10, ..Default::default() }).await;
    assert_eq!(count.expect("list").items.len(), 1, "a retry never duplicates");

    let mut other = ctx.clone();
    other.idempotency = Some(IdempotencyKey { scope: "admin".into(), key: "k-1".into(), fingerprint: "f2".into() });
    assert_eq!(s.create_task(&other, new.clone()).await.expect_err("reused").code(), "idempotency_key_reused");
    // the same key in another scope is another key
    let mut scoped = ctx.clone();
    scoped.idempotency = Some(IdempotencyKey { scope: "bob".into(), key: "k-1".into(), fingerprint: "f1".into() });
    assert!(!s.create_task(&scoped, new).await.expect("other scope").replayed);
}

pub async fn concurrent_claims_never_double_assign(s: Arc<dyn Store>, _clock: Arc<ManualClock>) {
    let m = mission(s.as_ref(), "M").await;
    let k = kluster(s.as_ref(), &m, "K").await;
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(task(s.as_ref(), k.id, &format!("t{i}"), i % 5, &[]).await.id);
    }
    let mut handles = Vec::new();
    for a in 0..64 {
        let s = Arc::clone(&s);
        handles.push(tokio::spawn(async move {
            let ctx = agent(&format!("agent-{a}"));
            let mut won = Vec::new();
            loop {
                match s.claim_next_task(&ctx, k.id, TTL).await {
                    Ok(Some(t)) => won.push((t.id, ctx.actor.holder().to_owned())),
                    Ok(None) => return Ok(won),
                    Err(e) => return Err(e.to_string()),
                }
            }
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("join").expect("no client sees an error"));
    }
    let mut claimed: Vec<TaskId> = all.iter().map(|(t, _)| *t).collect();
    claimed.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(claimed, expected, "every task claimed exactly once");
    for (id, holder) in all {
        let t = s.get_task(id).await.expect("get");
        assert_eq!(t.lease.expect("held").holder, holder);
        assert_eq!(t.fencing_token, 1);
    }
    assert!(s.verify_ledger().await.expect("verify").ok);
}

pub async fn tokens_resolve_to_principals(s: Arc<dyn Store>, _clock: Arc<ManualClock>) {
    assert!(!s.has_tokens().await.expect("has"));
    let p = Principal { name: "ops".into(), role: Role::Admin };
    s.put_token(TokenRecord { token_hash: "h1".into(), principal: p.clone() }).await.expect("put");
    s.put_token(TokenRecord { token_hash: "h1".into(), principal: p.clone() }).await.expect("put twice");
    assert!(s.has_tokens().await.expect("has"));
    assert_eq!(s.principal_for_token("h1").await.expect("lookup"), Some(p));
    assert_eq!(s.principal_for_token("nope").await.expect("lookup"), None);
    let h = s.health().await;
    assert!(h.ok, "{h:?}");
}

async fn embed_as(s: &dyn Store, model: &str, t: &Task, v: [f32; 4]) {
    let jobs = s.pending_embeddings(model, 1000).await.expect("pending");
    let job = jobs.iter().find(|j| j.task_id == t.id).expect("task is pending");
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let vector = v.iter().map(|x| x / norm).collect();
    s.put_embeddings(model, vec![Embedded { task_id: t.id, text_hash: job.text_hash.clone(), vector }])
        .await
        .expect("put");
}

fn vq(v: [f32; 4]) -> Option<VectorQuery> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    Some(VectorQuery { model: "test/m1".into(), vector: v.iter().map(|x| x / norm).collect() })
}

pub async fn search_fuses_text_and_vectors_under_filters(s: Arc<dyn Store>, _clock: Arc<ManualClock>) {
    let s = s.as_ref();
    let m = mission(s, "M").await;
    let k1 = kluster(s, &m, "K1").await;
    let k2 = kluster(s, &m, "K2").await;
    let refund = task(s, k1.id, "Design the refund endpoint", 1, &[]).await;
    let cache = task(s, k1.id, "Cache catalogue lookups in memory", 2, &[]).await;
    let flaky = task(s, k2.id, "Stabilise the flaky login test", 2, &[]).await;
    embed_as(s, "test/m1", &refund, [1.0, 0.0, 0.0, 0.0]).await;
    embed_as(s, "test/m1", &cache, [0.0, 1.0, 0.0, 0.0]).await;
    embed_as(s, "test/m1", &flaky, [0.0, 0.0, 1.0, 0.1]).await;

    let q = |text: &str, v: Option<VectorQuery>, filter: SearchFilter| SearchRequest {
        text: text.into(),
        vector: v,
        filter,
        limit: 10,
    };
    // full text alone (stemming: "endpoints" finds "endpoint")
    let hits = s.search_tasks(&q("refund endpoints", None, SearchFilter::default())).await.expect("search");
    assert_eq!(hits.first().map(|h| h.task.id), Some(refund.id));
    assert_eq!(hits[0].text_rank, Some(1));
    assert!(hits[0].vector_rank.is_none());
    // vectors alone: nearest first, with the cosine
    let hits = s.search_tasks(&q("", vq([0.0, 0.1, 1.0, 0.0]), SearchFilter::default())).await.expect("search");
    assert_eq!(hits.first().map(|h| h.task.id), Some(flaky.id));
    assert!(hits[0].cosine.expect("cosine") > 0.9);
    // fused: matched by both indexes ranks first
    let hits =
        s.search_tasks(&q("catalogue", vq([0.1, 1.0, 0.0, 0.0]), SearchFilter::default())).await.expect("search");
    assert_eq!(hits[0].task.id, cache.id);
    assert!(hits[0].text_rank.is_some() && hits[0].vector_rank.is_some());
    assert!(hits.iter().skip(1).all(|h| h.score < hits[0].score));
    // a vector still being computed (and not the request's) gives the same hits as one given up front, whether it
    // is there at once (one search) or only later (full text first)
    let outline = |hits: Vec<SearchHit>| -> Vec<_> {
        hits.into_iter().map(|h| (h.task.id, h.text_rank, h.vector_rank, h.cosine.map(|c| (c * 1e4).round()))).collect()
    };
    let k1_only = SearchFilter { kluster_id: Some(k1.id), ..Default::default() };
    for (text, v, filter) in [
        ("catalogue", vq([0.1, 1.0, 0.0, 0.0]), SearchFilter::default()),
        ("refund endpoints", None, SearchFilter::default()),
        ("", vq([0.0, 0.1, 1.0, 0.0]), SearchFilter::default()),
        ("cache the refund", vq([0.0, 0.0, 1.0, 0.0]), k1_only),
    ] {
        let given = outline(s.search_tasks(&q(text, v.clone(), filter.clone())).await.expect("search"));
        assert!(!given.is_empty(), "{text:?} finds something");
        let decoy = q(text, vq([0.0, 0.0, 0.0, 1.0]), filter);
        let (ready, v) = (v.clone(), v);
        let now = outline(s.search_tasks_while(&decoy, Box::pin(async move { ready })).await.expect("search"));
        assert_eq!(now, given, "{text:?}, vector ready");
        let later = Box::pin(async move {
            tokio::task::yield_now().await;
            v
        });
        assert_eq!(outline(s.search_tasks_while(&decoy, later).await.expect("search")), given, "{text:?}, later");
    }
    // filters apply to both indexes
    let only_k2 = SearchFilter { kluster_id: Some(k2.id), ..Default::default() };
    let hits = s.search_tasks(&q("refund", vq([1.0, 0.0, 0.0, 0.0]), only_k2)).await.expect("search");
    assert!(hits.iter().all(|h| h.task.kluster_id == k2.id), "kluster filter");
    let ctx = agent("a1");
    let held = s.claim_task(&ctx, refund.id, TTL).await.expect("claim");
    s.complete_task(&ctx, refund.id, held.fencing_token).await.expect("done");
    let live = SearchFilter { statuses: TaskStatus::LIVE.to_vec(), ..Default::default() };
    let hits = s.search_tasks(&q("refund", vq([1.0, 0.0, 0.0, 0.0]), live)).await.expect("search");
    assert!(hits.iter().all(|h| h.task.id != refund.id), "done work is filtered out of both indexes");
    let docs = SearchFilter { labels: vec!["nope".into()], ..Default::default() };
    assert!(s.search_tasks(&q("refund", vq([1.0, 0.0, 0.0, 0.0]), docs)).await.expect("search").is_empty());
    // another model's vectors are never compared
    let other = Some(VectorQuery { model: "test/other".into(), vector: vec![1.0, 0.0, 0.0, 0.0] });
    assert!(s.search_tasks(&q("", other, SearchFilter::default())).await.expect("search").is_empty());
    // nothing to search for gives nothing, not an error
    assert!(s.search_tasks(&q("?!", None, SearchFilter::default())).await.expect("search").is_empty());
    let with_paths = s.tasks_with_paths(&SearchFilter { mission_id: Some(m.id), ..Default::default() }, 10).await;
    assert_eq!(with_paths.expect("paths").len(), 3);
}

/// Embeds every job of a page under `model` (unit vectors) and returns the cursor to go on from.
async fn embed_page(s: &dyn Store, model: &str, page: PendingPage<EmbeddingJob>) -> TextCursor {
    let items = page
        .jobs
        .into_iter()
        .map(|j| Embedded { task_id: j.task_id, text_hash: j.text_hash, vector: vec![0.5; 4] })
        .collect();
    s.put_embeddings(model, items).await.expect("put");
    page.next
}

pub async fn the_embedding_walk_reads_only_changed_texts(s: Arc<dyn Store>, _clock: Arc<ManualClock>) {
    let s = s.as_ref();
    let model = "test/walk";
    let m = mission(s, "M").await;
    let k = kluster(s, &m, "K").await;
    let mut tasks = Vec::new();
    for i in 0..7 {
        tasks.push(task(s, k.id, &format!("Task number {i}"), 2, &[]).await);
    }
    // a sweep in pages of 3, newest change first; a page is asked for again until its cursor is passed back
    let start = TextCursor::default();
    let first = s.pending_embeddings_from(model, 3, &start).await.expect("page");
    let again = s.pending_embeddings_from(model, 3, &start).await.expect("page");
    assert_eq!(first.jobs, again.jobs, "a page whose vectors were not stored comes back the same");
    let titles = |p: &PendingPage<EmbeddingJob>| p.jobs.iter().map(|j| j.text.clone()).collect::<Vec<_>>();
    assert_eq!(titles(&first), ["Task number 6", "Task number 5", "Task number 4"]);
    let mut cursor = embed_page(s, model, first).await;
    let mut seen = 3;
    loop {
        let page = s.pending_embeddings_from(model, 3, &cursor).await.expect("page");
        let n = page.jobs.len();
        seen += n;
        cursor = embed_page(s, model, page).await;
        if n < 3 {
            break;
        }
    }
    assert_eq!(seen, 7, "one sweep hands out every task once");
    assert!(cursor.after.is_none() && cursor.done_below > 0, "the sweep ended and settled its marks: {cursor:?}");
    assert!(s.pending_embeddings(model, 10).await.expect("pending").is_empty());

    // nothing changed: nothing to read; an old task's new text is found, and a status change is not a new text
    let idle = s.pending_embeddings_from(model, 3, &cursor).await.expect("idle");
    assert!(idle.jobs.is_empty());
    cursor = idle.next;
    let patch = TaskPatch { title: Some("Task number 1, renamed".into()), ..Default::default() };
    s.update_task(&admin(), tasks[1].id, patch, None).await.expect("retitle");
    let ctx = agent("a1");
    s.claim_task(&ctx, tasks[2].id, TTL).await.expect("claim");
    let page = s.pending_embeddings_from(model, 3, &cursor).await.expect("changed");
    assert_eq!(titles(&page), ["Task number 1, renamed"]);
    cursor = embed_page(s, model, page).await;
    // a task created now is found too, and after it the walk is idle again
    task(s, k.id, "Task number 7", 2, &[]).await;
    let page = s.pending_embeddings_from(model, 3, &cursor).await.expect("new");
    assert_eq!(titles(&page), ["Task number 7"]);
    cursor = embed_page(s, model, page).await;
    assert!(s.pending_embeddings_from(model, 3, &cursor).await.expect("idle").jobs.is_empty());
    // the walk of another model starts from the beginning
    assert_eq!(
        s.pending_embeddings_from("test/other", 100, &TextCursor::default()).await.expect("other").jobs.len(),
        8
    );
}

pub async fn embeddings_follow_the_text_and_the_model(s: Arc<dyn Store>, _clock: Arc<ManualClock>) {
    let s = s.as_ref();
    let m = mission(s, "M").await;
    let k = kluster(s, &m, "K").await;
    let t = task(s, k.id, "Write the parser", 2, &[]).await;
    let jobs = s.pending_embeddings("test/m1", 10).await.expect("pending");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].text, "Write the parser");
    embed_as(s, "test/m1", &t, [1.0, 2.0, 3.0, 4.0]).await;
    assert!(s.pending_embeddings("test/m1", 10).await.expect("pending").is_empty());
    assert_eq!(s.pending_embeddings("test/m2", 10).await.expect("pending").len(), 1, "another model has no vector");
    let v = s.task_embedding(t.id, "test/m1").await.expect("get").expect("current vector");
    assert_eq!(v.len(), 4);
    // a vector computed for an older text is ignored
    let old_hash = jobs[0].text_hash.clone();
    let patch = TaskPatch { title: Some("Write the tokenizer".into()), ..Default::default() };
    s.update_task(&admin(), t.id, patch, None).await.expect("retitle");
    assert!(s.task_embedding(t.id, "test/m1").await.expect("get").is_none(), "stale after the text changed");
    let again = s.pending_embeddings("test/m1", 10).await.expect("pending");
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].text_hash, old_hash);
    s.put_embeddings("test/m1", vec![Embedded { task_id: t.id, text_hash: old_hash, vector: vec![0.5; 4] }])
        .await
        .expect("stale put is ignored, not an error");
    assert_eq!(s.pending_embeddings("test/m1", 10).await.expect("pending").len(), 1);
    let hits = s
        .search_tasks(&SearchRequest {
            text: "tokenizer".into(),
            vector: None,
            filter: SearchFilter::default(),
            limit: 5,
        })
        .await
        .expect("search");
    assert_eq!(hits.first().map(|h| h.task.id), Some(t.id), "the full-text index follows the new title");
    let hits = s
        .search_tasks(&SearchRequest { text: "parser".into(), vector: None, filter: SearchFilter::default(), limit: 5 })
        .await
        .expect("search");
    assert!(hits.is_empty(), "the old title is gone from the index");
}

/// Klusters are found by their name and description, by vectors of the same model, within a
/// mission; archived ones and stale vectors are not.
pub async fn klusters_are_searched_by_text_and_vectors(s: Arc<dyn Store>, _clock: Arc<ManualClock>) {
    let s = s.as_ref();
    let m1 = mission(s, "Payments").await;
    let m2 = mission(s, "Search").await;
    let new_kluster = |m: MissionId, name: &str, description: &str| {
        NewKluster::parse(m, name, Some(description)).expect("valid kluster")
    };
    let refunds = s
        .create_kluster(&admin(), new_kluster(m1.id, "Refunds", "Refund flows and chargeback handling"))
        .await
        .expect("kluster")
        .value;
    let ledger = s
        .create_kluster(&admin(), new_kluster(m1.id, "Ledger", "Double-entry bookkeeping of every payment"))
        .await
        .expect("kluster")
        .value;
    let ranking = s
        .create_kluster(&admin(), new_kluster(m2.id, "Ranking", "Relevance tuning for refund searches"))
        .await
        .expect("kluster")
        .value;
    let req = |text: &str, vector: Option<VectorQuery>, mission_id: Option<MissionId>| SearchRequest {
        text: text.into(),
        vector,
        filter: SearchFilter { mission_id, ..Default::default() },
        limit: 10,
    };
    let ids = |hits: Vec<crate::KlusterHit>| hits.into_iter().map(|h| h.kluster.id).collect::<Vec<_>>();

    // full text over name and description, stemmed; the mission filter applies
    let hits = s.search_klusters(&req("chargebacks", None, None)).await.expect("search");
    assert_eq!(ids(hits), vec![refunds.id]);
    let hits = s.search_klusters(&req("refund", None, None)).await.expect("search");
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| h.text_rank.is_some() && h.vector_rank.is_none()));
    let hits = s.search_klusters(&req("refund", None, Some(m2.id))).await.expect("search");
    assert_eq!(ids(hits), vec![ranking.id]);

    // vectors: pending until embedded, then nearest first, with the cosine
    let jobs = s.pending_kluster_embeddings("test/m1", 10).await.expect("pending");
    assert_eq!(jobs.len(), 3);
    let job = |id: KlusterId| jobs.iter().find(|j| j.kluster_id == id).expect("pending").clone();
    let put = |id: KlusterId, v: [f32; 4]| crate::KlusterEmbedded {
        kluster_id: id,
        text_hash: job(id).text_hash,
        vector: vq(v).expect("vector").vector,
    };
    s.put_kluster_embeddings(
        "test/m1",
        vec![put(refunds.id, [1.0, 0.0, 0.0, 0.0]), put(ledger.id, [0.0, 1.0, 0.0, 0.0])],
    )
    .await
    .expect("put");
    assert_eq!(s.pending_kluster_embeddings("test/m1", 10).await.expect("pending").len(), 1);
    let hits = s.search_klusters(&req("", vq([0.1, 1.0, 0.0, 0.0]), Some(m1.id))).await.expect("search");
    assert_eq!(ids(hits.clone()), vec![ledger.id, refunds.id]);
    assert!(hits[0].cosine.expect("cosine") > 0.99);
    // fused: text and vector agreeing ranks first
    let hits = s.search_klusters(&req("bookkeeping", vq([0.0, 1.0, 0.0, 0.0]), None)).await.expect("search");
    assert_eq!(hits[0].kluster.id, ledger.id);
    assert!(hits[0].text_rank.is_some() && hits[0].vector_rank.is_some());
    // another model is never compared
    let other = Some(VectorQuery { model: "test/other".into(), vector: vec![0.0, 1.0, 0.0, 0.0] });
    assert!(s.search_klusters(&req("", other, None)).await.expect("search").is_empty());

    // a renamed kluster is found by its new text; its old vector no longer counts
    let patch = ScopePatch::parse(Some("Disputes"), Some("Card disputes raised by customers")).expect("valid");
    s.update_kluster(&admin(), refunds.id, patch).await.expect("update");
    assert!(s.search_klusters(&req("chargebacks", None, None)).await.expect("search").is_empty());
    let hits = s.search_klusters(&req("disputes", None, None)).await.expect("search");
    assert_eq!(ids(hits), vec![refunds.id]);
    let hits = s.search_klusters(&req("", vq([1.0, 0.0, 0.0, 0.0]), Some(m1.id))).await.expect("search");
    assert_eq!(ids(hits), vec![ledger.id], "a stale vector is not compared");
    assert_eq!(s.pending_kluster_embeddings("test/m1", 10).await.expect("pending").len(), 2);

    // archived klusters are not found
    s.archive_kluster(&admin(), ledger.id).await.expect("archive");
    assert!(s.search_klusters(&req("bookkeeping", None, None)).await.expect("search").is_empty());
    let hits = s.search_klusters(&req("", vq([0.0, 1.0, 0.0, 0.0]), None)).await.expect("search");
    assert!(hits.iter().all(|h| h.kluster.id != ledger.id));
}

/// Words found in more documents than a backend ranks (1,000 on both) say next to nothing about
/// which document is meant: a query of only such words takes the newest documents holding all of
/// them instead of ranking thousands, and one rare word in the query brings ranking back.
pub async fn queries_of_only_common_words_take_the_newest_matches(s: Arc<dyn Store>, _clock: Arc<ManualClock>) {
    let s = s.as_ref();
    let m = mission(s, "M").await;
    let k = kluster(s, &m, "K").await;
    let mut created = Vec::new();
    for i in 0..1005 {
        created.push(task(s, k.id, &format!("Tidy the common module {i}"), 1, &[]).await.id);
    }
    let q = |text: &str| SearchRequest { text: text.into(), vector: None, filter: SearchFilter::default(), limit: 10 };
    let hits = s.search_tasks(&q("common module")).await.expect("search");
    let newest: Vec<TaskId> = created.iter().rev().take(10).copied().collect();
    assert_eq!(hits.iter().map(|h| h.task.id).collect::<Vec<_>>(), newest);
    assert_eq!(hits.iter().map(|h| h.text_rank).collect::<Vec<_>>(), (1..=10).map(Some).collect::<Vec<_>>());
    let hits = s.search_tasks(&q("common module 517")).await.expect("search");
    assert_eq!(hits.first().map(|h| h.task.id), Some(created[517]), "the rare word ranks its task first");
    // status filters, whether the wanted statuses or the others hold fewer tasks
    let with = |statuses: Vec<TaskStatus>| SearchRequest {
        filter: SearchFilter { statuses, ..Default::default() },
        ..q("common module 517")
    };
    let hits = s.search_tasks(&with(TaskStatus::LIVE.to_vec())).await.expect("search");
    assert_eq!(hits.first().map(|h| h.task.id), Some(created[517]));
    let hits = s.search_tasks(&with(vec![TaskStatus::Done])).await.expect("search");
    assert!(hits.is_empty(), "no task is done: {:?}", hits.iter().map(|h| &h.task.title).collect::<Vec<_>>());
}

/// Whatever a backend keeps between searches (SQLite keeps match counts that choose query plans),
/// a search after an acknowledged write sees it: here a word no task had when it was last searched,
/// and a word that moves past the ranking budget.
pub async fn a_search_right_after_a_write_sees_it(s: Arc<dyn Store>, _clock: Arc<ManualClock>) {
    let s = s.as_ref();
    let m = mission(s, "M").await;
    let k = kluster(s, &m, "K").await;
    let q = |text: &str| SearchRequest { text: text.into(), vector: None, filter: SearchFilter::default(), limit: 10 };
    for round in 0..3 {
        let word = format!("quokka{round}");
        assert!(s.search_tasks(&q(&word)).await.expect("search").is_empty(), "{word} is in no task yet");
        let t = task(s, k.id, &format!("Feed the {word}"), 1, &[]).await;
        let hits = s.search_tasks(&q(&word)).await.expect("search");
        assert_eq!(hits.iter().map(|h| h.task.id).collect::<Vec<_>>(), vec![t.id], "{word} right after its task");
    }
    // "wombat" alone fits the budget, then no longer does; "wombat hutch" must still find the hutch.
    let hutch = task(s, k.id, "Clean the wombat hutch", 1, &[]).await;
    assert_eq!(s.search_tasks(&q("wombat hutch")).await.expect("search").first().map(|h| h.task.id), Some(hutch.id));
    for i in 0..1005 {
        task(s, k.id, &format!("Weigh wombat {i}"), 1, &[]).await;
    }
    let hits = s.search_tasks(&q("wombat hutch")).await.expect("search");
    assert_eq!(hits.first().map(|h| h.task.id), Some(hutch.id), "the rare word still ranks its task first");
}

fn new_doc(
    m: Option<MissionId>,
    k: Option<KlusterId>,
    kind: DocKind,
    title: &str,
    body: &str,
    paths: &[String],
) -> NewDoc {
    NewDoc::parse(m, k, kind, RawDocFields { title: Some(title), body: Some(body), paths: Some(paths) })
        .expect("valid doc")
}

async fn doc(s: &dyn Store, m: Option<MissionId>, k: Option<KlusterId>, kind: DocKind, title: &str, body: &str) -> Doc {
    s.create_doc(&admin(), new_doc(m, k, kind, title, body, &[])).await.expect("doc created").value
}

pub async fn docs_are_created_versioned_and_listed(s: Arc<dyn Store>, _clock: Arc<ManualClock>) {
    let s = s.as_ref();
    let m = mission(s, "Payments").await;
    let other = mission(s, "Other").await;
    let k = kluster(s, &m, "Refunds").await;
    let elsewhere = kluster(s, &other, "Elsewhere").await;

    let runbook = doc(s, Some(m.id), None, DocKind::Doc, "Refund runbook", "1. find the charge").await;
    assert_eq!((runbook.version, runbook.kluster_id, runbook.created_by.as_str()), (1, None, "admin"));
    let paths = ["reports/refunds/*.csv".to_owned()];
    let report = s
        .create_doc(&admin(), new_doc(None, Some(k.id), DocKind::Artifact, "Refund report", "weekly", &paths))
        .await
        .expect("artifact")
        .value;
    assert_eq!((report.mission_id, report.kluster_id, report.kind), (m.id, Some(k.id), DocKind::Artifact));
    assert_eq!(report.paths, paths.to_vec());
    assert_eq!(s.get_doc(report.id).await.expect("get"), report);

    // scope errors
    let e = s.create_doc(&admin(), new_doc(Some(m.id), Some(elsewhere.id), DocKind::Doc, "x", "", &[])).await;
    assert!(matches!(e, Err(Error::Validation { ref field, .. }) if field == "kluster_id"), "{e:?}");
    let e = s.create_doc(&admin(), new_doc(Some(MissionId::new()), None, DocKind::Doc, "x", "", &[])).await;
    assert!(matches!(e, Err(Error::NotFound { entity: "mission", .. })), "{e:?}");
    let e = s.create_doc(&admin(), new_doc(None, Some(KlusterId::new()), DocKind::Doc, "x", "", &[])).await;
    assert!(matches!(e, Err(Error::NotFound { entity: "kluster", .. })), "{e:?}");
    s.archive_kluster(&admin(), elsewhere.id).await.expect("archive");
    let e = s.create_doc(&admin(), new_doc(None, Some(elsewhere.id), DocKind::Doc, "x", "", &[])).await;
    assert_eq!(code(e.expect_err("archived kluster")), "archived");
    assert!(matches!(s.get_doc(DocId::new()).await, Err(Error::NotFound { entity: "doc", .. })));

    // lists: newest first, filtered, paged
    let notes = doc(s, Some(m.id), Some(k.id), DocKind::Doc, "Refund notes", "").await;
    let list = |f: DocFilter| async move {
        s.list_docs(&f).await.expect("list").items.into_iter().map(|d| d.id).collect::<Vec<_>>()
    };
    let all = DocFilter { mission_id: Some(m.id), limit: 10, ..Default::default() };
    assert_eq!(list(all.clone()).await, vec![notes.id, report.id, runbook.id]);
    assert_eq!(list(DocFilter { kluster_id: Some(k.id), ..all.clone() }).await, vec![notes.id, report.id]);
    assert_eq!(list(DocFilter { kind: Some(DocKind::Artifact), ..all.clone() }).await, vec![report.id]);
    assert_eq!(list(DocFilter { with_paths: true, ..all.clone() }).await, vec![report.id]);
    assert!(list(DocFilter { mission_id: Some(other.id), ..all.clone() }).await.is_empty());
    let first = s.list_docs(&DocFilter { limit: 2, ..all.clone() }).await.expect("page 1");
    assert_eq!(first.items.len(), 2);
    let cursor = first.next_cursor.expect("a next page");
    let second = s.list_docs(&DocFilter { limit: 2, cursor: Some(cursor), ..all.clone() }).await.expect("page 2");
    assert_eq!(second.items.iter().map(|d| d.id).collect::<Vec<_>>(), vec![runbook.id]);
    assert!(second.next_cursor.is_none());

    // updates make versions; a stale version is refused; an empty patch changes nothing
    let patch = DocPatch::parse(RawDocFields { body: Some("1. find the charge\n2. refund it"), ..Default::default() })
        .expect("valid");
    let v2 = s.update_doc(&admin(), runbook.id, patch.clone(), Some(1)).await.expect("update");
    assert_eq!((v2.version, v2.title.as_str()), (2, "Refund runbook"));
    assert!(v2.body.ends_with("refund it"));
    let e = s.update_doc(&admin(), runbook.id, patch, Some(1)).await.expect_err("stale");
    assert_eq!(code(e), "version_conflict");
    let same = s.update_doc(&admin(), runbook.id, DocPatch::default(), None).await.expect("empty patch");
    assert_eq!(same, v2);
    assert_eq!(s.get_doc(runbook.id).await.expect("get"), v2);

    // idempotent create
    let mut ctx = admin();
    ctx.idempotency = Some(IdempotencyKey { scope: "admin".into(), key: "d1".into(), fingerprint: "f".into() });
    let a = s.create_doc(&ctx, new_doc(Some(m.id), None, DocKind::Doc, "Once", "", &[])).await.expect("first");
    let b = s.create_doc(&ctx, new_doc(Some(m.id), None, DocKind::Doc, "Once", "", &[])).await.expect("replay");
    assert!(!a.replayed && b.replayed);
    assert_eq!(a.value, b.value);

    let events = s
        .list_ledger(&LedgerFilter { entity_kind: Some("doc".into()), limit: 100, ..Default::default() })
        .await
        .expect("ledger");
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, vec!["doc.create", "doc.create", "doc.create", "doc.update", "doc.create"]);
    assert!(s.verify_ledger().await.expect("verify").ok);
}

pub async fn docs_are_searched_by_text_and_vectors(s: Arc<dyn Store>, _clock: Arc<ManualClock>) {
    let s = s.as_ref();
    let m1 = mission(s, "Payments").await;
    let m2 = mission(s, "Search").await;
    let k = kluster(s, &m1, "Refunds").await;
    let runbook = doc(s, Some(m1.id), Some(k.id), DocKind::Doc, "Refund runbook", "How to reverse a chargeback").await;
    let report = doc(s, Some(m1.id), None, DocKind::Artifact, "Ledger report", "Double-entry totals per day").await;
    let ranking = doc(s, Some(m2.id), None, DocKind::Doc, "Ranking notes", "Tuning relevance for refund queries").await;
    let req = |text: &str, vector: Option<VectorQuery>, mission_id: Option<MissionId>| SearchRequest {
        text: text.into(),
        vector,
        filter: SearchFilter { mission_id, ..Default::default() },
        limit: 10,
    };
    let ids = |hits: Vec<crate::DocHit>| hits.into_iter().map(|h| h.doc.id).collect::<Vec<_>>();

    // full text over title and body, stemmed; mission, kluster and kind filters apply
    let hits = s.search_docs(&req("chargebacks", None, None), None).await.expect("search");
    assert_eq!(ids(hits), vec![runbook.id]);
    let hits = s.search_docs(&req("refund", None, None), None).await.expect("search");
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| h.text_rank.is_some() && h.vector_rank.is_none() && h.cosine.is_none()));
    let hits = s.search_docs(&req("refund", None, Some(m2.id)), None).await.expect("search");
    assert_eq!(ids(hits), vec![ranking.id]);
    let in_k = SearchRequest {
        filter: SearchFilter { kluster_id: Some(k.id), ..Default::default() },
        ..req("refund", None, None)
    };
    assert_eq!(ids(s.search_docs(&in_k, None).await.expect("search")), vec![runbook.id]);
    let hits = s.search_docs(&req("totals refund", None, Some(m1.id)), Some(DocKind::Artifact)).await.expect("search");
    assert_eq!(ids(hits), vec![report.id]);

    // vectors: pending until embedded, then nearest first, with the cosine
    let jobs = s.pending_doc_embeddings("test/m1", 10).await.expect("pending");
    assert_eq!(jobs.len(), 3);
    let job = |id: DocId| jobs.iter().find(|j| j.doc_id == id).expect("pending").clone();
    assert_eq!(job(runbook.id).text, runbook.embedding_text());
    let put = |id: DocId, v: [f32; 4]| DocEmbedded {
        doc_id: id,
        text_hash: job(id).text_hash,
        vector: vq(v).expect("vector").vector,
    };
    s.put_doc_embeddings("test/m1", vec![put(runbook.id, [1.0, 0.0, 0.0, 0.0]), put(report.id, [0.0, 1.0, 0.0, 0.0])])
        .await
        .expect("put");
    assert_eq!(s.pending_doc_embeddings("test/m1", 10).await.expect("pending").len(), 1);
    let hits = s.search_docs(&req("", vq([0.1, 1.0, 0.0, 0.0]), Some(m1.id)), None).await.expect("search");
    assert_eq!(ids(hits.clone()), vec![report.id, runbook.id]);
    assert!(hits[0].cosine.expect("cosine") > 0.99);
    // fused: a text hit carries its cosine too
    let hits = s.search_docs(&req("chargeback", vq([0.0, 1.0, 0.0, 0.0]), Some(m1.id)), None).await.expect("search");
    assert_eq!(hits.len(), 2);
    let rb = hits.iter().find(|h| h.doc.id == runbook.id).expect("runbook found");
    assert!(rb.text_rank.is_some());
    assert!(rb.cosine.expect("cosine of a text hit").abs() < 0.01);
    // another model is never compared
    let other = Some(VectorQuery { model: "test/other".into(), vector: vec![0.0, 1.0, 0.0, 0.0] });
    assert!(s.search_docs(&req("", other, None), None).await.expect("search").is_empty());

    // a rewritten doc is found by its new text; its old vector no longer counts
    let patch = DocPatch::parse(RawDocFields { body: Some("Card disputes raised by customers"), ..Default::default() })
        .expect("valid");
    s.update_doc(&admin(), runbook.id, patch, None).await.expect("update");
    assert!(s.search_docs(&req("chargebacks", None, None), None).await.expect("search").is_empty());
    assert_eq!(ids(s.search_docs(&req("disputes", None, None), None).await.expect("search")), vec![runbook.id]);
    let hits = s.search_docs(&req("", vq([1.0, 0.0, 0.0, 0.0]), Some(m1.id)), None).await.expect("search");
    assert_eq!(ids(hits), vec![report.id], "a stale vector is not compared");
    assert_eq!(s.pending_doc_embeddings("test/m1", 10).await.expect("pending").len(), 2);
}
