//! HTTP API tests against a real server on a free loopback port, backed by a real SQLite store in
//! a temp dir; plus handler tests through `oneshot` and the lease reaper under paused time.

use std::sync::Arc;
use std::time::Duration;

use mc_domain::{Clock, ManualClock, SystemClock};
use mc_server::{AppState, RunningServer, ServerOptions};
use mc_store_sqlite::{SqliteConfig, SqliteStore};
use reqwest::StatusCode;
use serde_json::{Value, json};

const TOKEN: &str = "test-token-123";

struct App {
    base: String,
    http: reqwest::Client,
    server: Option<RunningServer>,
    _dir: tempfile::TempDir,
}

impl App {
    async fn spawn() -> Self {
        Self::spawn_with(Arc::new(SystemClock), 1024 * 1024).await
    }

    async fn spawn_with(clock: Arc<dyn Clock>, max_body: usize) -> Self {
        Self::spawn_full(clock, max_body, None).await
    }

    async fn spawn_full(clock: Arc<dyn Clock>, max_body: usize, embedder: Option<Arc<dyn mc_embed::Embedder>>) -> Self {
        let opts = ServerOptions { max_body_bytes: max_body, embedder, ..Default::default() };
        Self::spawn_options(clock, opts).await
    }

    /// A server with these options, on a free loopback port, with a store in a new temp dir.
    async fn spawn_options(clock: Arc<dyn Clock>, opts: ServerOptions) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(SqliteConfig::new(dir.path().join("mc.db"), clock.clone())).expect("store");
        let store: Arc<dyn mc_store::Store> = Arc::new(store);
        mc_server::bootstrap_admin_token(store.as_ref(), Some(TOKEN)).await.expect("token");
        let opts = ServerOptions { listen: "127.0.0.1:0".into(), ..opts };
        let server = mc_server::start(store, clock, opts).await.expect("server starts");
        let base = format!("http://{}", server.addr());
        Self { base, http: reqwest::Client::new(), server: Some(server), _dir: dir }
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base)).bearer_auth(TOKEN)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        agent: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self.req(method, path);
        if let Some(a) = agent {
            r = r.header("x-mc-agent", a);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let v = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON body") };
        (status, v)
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, None, Some(body)).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None, None).await
    }

    /// A mission and kluster to work in; returns the kluster id.
    async fn kluster(&self) -> String {
        let (s, m) = self.post("/api/v1/missions", json!({"name": "Payments"})).await;
        assert_eq!(s, StatusCode::CREATED, "{m}");
        let (s, k) = self.post("/api/v1/klusters", json!({"mission_id": m["id"], "name": "Refunds"})).await;
        assert_eq!(s, StatusCode::CREATED, "{k}");
        k["id"].as_str().expect("id").to_owned()
    }

    async fn task(&self, kluster: &str, title: &str, priority: i64) -> String {
        let (s, t) =
            self.post("/api/v1/tasks", json!({"kluster_id": kluster, "title": title, "priority": priority})).await;
        assert_eq!(s, StatusCode::CREATED, "{t}");
        t["id"].as_str().expect("id").to_owned()
    }
}

fn assert_error(v: &Value, code: &str) {
    assert_eq!(v["error"]["code"], code, "unexpected body: {v}");
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "message missing: {v}");
}

#[tokio::test]
async fn probes_are_open_and_every_response_has_a_request_id() {
    let app = App::spawn().await;
    let r = app.http.get(format!("{}/healthz", app.base)).send().await.expect("healthz");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("x-request-id"));
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["status"], "ok");
    let r = app.http.get(format!("{}/readyz", app.base)).send().await.expect("readyz");
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["storage"]["ok"], true);

    let r = app
        .http
        .get(format!("{}/api/v1/missions", app.base))
        .header("x-request-id", "my-req-1")
        .send()
        .await
        .expect("unauthenticated");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["x-request-id"], "my-req-1", "request id echoed even on errors");
    assert_error(&r.json::<Value>().await.expect("json"), "unauthorized");

    let r = app.http.get(format!("{}/api/v1/missions", app.base)).bearer_auth("wrong").send().await.expect("bad token");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let (s, who) = app.call(reqwest::Method::GET, "/api/v1/whoami", Some("agent-7"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(who["principal"]["name"], "admin");
    assert_eq!(who["agent"], "agent-7");
    let mut app = app;
    app.server.take().expect("running").shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn tasks_flow_end_to_end_over_http() {
    let app = App::spawn().await;
    let k = app.kluster().await;
    let a = app.task(&k, "design the schema", 1).await;
    let (s, b) = app
        .post(
            "/api/v1/tasks",
            json!({"kluster_id": k, "title": "write migrations", "depends_on": [a], "paths": ["db/**/*.sql"], "labels": ["DB"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(b["labels"], json!(["db"]));
    let b = b["id"].as_str().expect("id").to_owned();

    let (_, ready) = app.get(&format!("/api/v1/tasks/ready?kluster_id={k}")).await;
    let ids: Vec<&str> = ready["items"].as_array().expect("items").iter().filter_map(|t| t["id"].as_str()).collect();
    assert_eq!(ids, vec![a.as_str()], "b waits on a");

    let (s, claimed) =
        app.call(reqwest::Method::POST, &format!("/api/v1/klusters/{k}/claim-next"), Some("agent-1"), None).await;
    assert_eq!(s, StatusCode::OK, "{claimed}");
    assert_eq!(claimed["task"]["id"], a.as_str());
    let fence = claimed["task"]["lease"]["fencing_token"].as_u64().expect("token");

    let (s, err) = app.call(reqwest::Method::POST, &format!("/api/v1/tasks/{a}/claim"), Some("agent-2"), None).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_error(&err, "task_held");
    assert_eq!(err["error"]["details"]["holder"], "agent-1");

    let (s, err) = app
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/tasks/{a}/heartbeat"),
            Some("agent-1"),
            Some(json!({"fencing_token": fence + 1})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_error(&err, "stale_fencing_token");
    let (s, t) = app
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/tasks/{a}/transition"),
            Some("agent-1"),
            Some(json!({"status": "in_progress", "fencing_token": fence})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["status"], "in_progress");
    let (s, t) = app
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/tasks/{a}/complete"),
            Some("agent-1"),
            Some(json!({"fencing_token": fence})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(t["status"], "done");

    let (_, ready) = app.get(&format!("/api/v1/tasks/ready?kluster_id={k}")).await;
    assert_eq!(ready["items"][0]["id"], b.as_str(), "b is ready once a is done");

    let (s, err) = app.post(&format!("/api/v1/tasks/{a}/transition"), json!({"status": "open"})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_error(&err, "illegal_transition");

    let (s, err) =
        app.call(reqwest::Method::PATCH, &format!("/api/v1/tasks/{a}"), None, Some(json!({"depends_on": [b]}))).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_error(&err, "task_closed");

    let (_, page) = app.get(&format!("/api/v1/tasks?kluster_id={k}&status=done&limit=1")).await;
    assert_eq!(page["items"].as_array().expect("items").len(), 1);

    let (_, ledger) = app.get(&format!("/api/v1/ledger?entity_id={a}")).await;
    let actions: Vec<&str> =
        ledger["items"].as_array().expect("items").iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, vec!["task.create", "task.claim", "task.transition", "task.complete"]);
    let claim_event = &ledger["items"][1];
    assert_eq!(claim_event["actor"], "admin/agent-1");
    assert!(claim_event["request_id"].as_str().is_some_and(|r| !r.is_empty()), "request id recorded: {claim_event}");
    let (_, v) = app.get("/api/v1/ledger/verify").await;
    assert_eq!(v["ok"], true, "{v}");

    // a client-chosen request id is echoed and lands in the ledger
    let r = app
        .req(reqwest::Method::POST, "/api/v1/tasks")
        .header("x-request-id", "flow-req-1")
        .json(&json!({"kluster_id": k, "title": "traced"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.headers()["x-request-id"], "flow-req-1");
    let t: Value = r.json().await.expect("json");
    let (_, ev) = app.get(&format!("/api/v1/ledger?entity_id={}", t["id"].as_str().expect("id"))).await;
    assert_eq!(ev["items"][0]["request_id"], "flow-req-1");
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let app = App::spawn_with(Arc::new(SystemClock), 4096).await;
    let k = app.kluster().await;

    let (s, e) = app.post("/api/v1/tasks", json!({"kluster_id": k, "title": "x", "colour": "red"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&e, "invalid_body");
    assert!(e["error"]["message"].as_str().expect("msg").contains("unknown field `colour`"), "{e}");

    let (s, e) = app.post("/api/v1/tasks", json!({"kluster_id": k, "title": "x", "priority": "high"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["error"]["details"]["field"], "priority", "{e}");

    let (s, e) = app.post("/api/v1/tasks", json!({"kluster_id": k, "title": "   "})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error(&e, "validation_failed");
    assert_eq!(e["error"]["details"]["field"], "title");

    let (s, e) = app.post("/api/v1/tasks", json!({"kluster_id": "not-a-uuid", "title": "x"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["error"]["details"]["field"], "kluster_id", "{e}");

    let (s, e) = app
        .post(
            "/api/v1/tasks",
            json!({"kluster_id": k, "title": "x", "depends_on": ["00000000-0000-7000-8000-000000000000"]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["error"]["details"]["field"], "depends_on[0]", "{e}");

    let r = app.req(reqwest::Method::POST, "/api/v1/tasks").body("{not json").send().await.expect("sent");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_error(&r.json::<Value>().await.expect("json"), "invalid_json");

    let huge = "x".repeat(8192);
    let (s, e) = app.post("/api/v1/tasks", json!({"kluster_id": k, "title": "x", "description": huge})).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&e, "payload_too_large");

    let (s, e) = app.get("/api/v1/tasks/nope").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error(&e, "invalid_id");
    let (s, e) = app.get("/api/v1/tasks/0190f0f0-0000-7000-8000-000000000000").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&e, "not_found");
    let (s, e) = app.get("/api/v1/tasks?limit=100000").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["error"]["details"]["field"], "limit");
    let (s, e) = app.get("/api/v1/tasks?status=finished").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(e["error"]["message"].as_str().expect("msg").contains("unknown status `finished`"), "{e}");
    let (s, e) = app.get("/api/v1/tasks?colour=red").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error(&e, "invalid_query");
    let (s, e) = app.get("/api/v1/tasks?cursor=zzz").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["error"]["details"]["field"], "cursor");
    let (s, e) = app.get("/api/v1/nothing-here").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&e, "route_not_found");
    let (s, e) = app.call(reqwest::Method::DELETE, "/api/v1/tasks", None, None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&e, "method_not_allowed");
    let (s, e) = app.call(reqwest::Method::GET, "/api/v1/whoami", Some("bad agent"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error(&e, "invalid_header");
    let (s, e) = app.post(&format!("/api/v1/klusters/{k}/claim-next"), json!({"ttl_seconds": 1})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["error"]["details"]["field"], "ttl_seconds");

    // nothing above created a task or a ledger event beyond the mission and kluster
    let (_, tasks) = app.get(&format!("/api/v1/tasks?kluster_id={k}")).await;
    assert_eq!(tasks["items"].as_array().expect("items").len(), 0);
    let (_, ledger) = app.get("/api/v1/ledger").await;
    assert_eq!(ledger["items"].as_array().expect("items").len(), 2);
}

#[tokio::test]
async fn idempotency_key_replays_the_first_response() {
    let app = App::spawn().await;
    let k = app.kluster().await;
    let body = json!({"kluster_id": k, "title": "exactly once"});
    let send =
        |b: Value| app.req(reqwest::Method::POST, "/api/v1/tasks").header("Idempotency-Key", "retry-1").json(&b).send();
    let first = send(body.clone()).await.expect("first");
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(!first.headers().contains_key("idempotent-replayed"));
    let first: Value = first.json().await.expect("json");
    let second = send(body.clone()).await.expect("retry");
    assert_eq!(second.status(), StatusCode::CREATED);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let second: Value = second.json().await.expect("json");
    assert_eq!(first, second);
    let other = send(json!({"kluster_id": k, "title": "something else"})).await.expect("reuse");
    assert_eq!(other.status(), StatusCode::CONFLICT);
    assert_error(&other.json::<Value>().await.expect("json"), "idempotency_key_reused");
    let (_, tasks) = app.get(&format!("/api/v1/tasks?kluster_id={k}")).await;
    assert_eq!(tasks["items"].as_array().expect("items").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_racing_never_share_a_task() {
    let app = Arc::new(App::spawn().await);
    let k = app.kluster().await;
    let mut ids = Vec::new();
    for i in 0..200 {
        ids.push(app.task(&k, &format!("task {i}"), i % 5).await);
    }
    let mut handles = Vec::new();
    for c in 0..64 {
        let app = Arc::clone(&app);
        let k = k.clone();
        handles.push(tokio::spawn(async move {
            // each client has its own connection pool, like separate agents
            let http = reqwest::Client::new();
            let agent = format!("agent-{c}");
            let mut won = Vec::new();
            loop {
                let r = http
                    .post(format!("{}/api/v1/klusters/{k}/claim-next", app.base))
                    .bearer_auth(TOKEN)
                    .header("x-mc-agent", &agent)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = r.status();
                let v: Value = r.json().await.map_err(|e| e.to_string())?;
                if status != StatusCode::OK {
                    return Err(format!("{status}: {v}"));
                }
                match v["task"]["id"].as_str() {
                    Some(id) => won.push((id.to_owned(), agent.clone())),
                    None => return Ok::<_, String>(won),
                }
            }
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("join").expect("no client saw an error"));
    }
    let mut claimed: Vec<&str> = all.iter().map(|(id, _)| id.as_str()).collect();
    claimed.sort();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(claimed, expected, "each task claimed exactly once, none lost");
    for (id, agent) in all.iter().step_by(7) {
        let (_, t) = app.get(&format!("/api/v1/tasks/{id}")).await;
        assert_eq!(t["lease"]["holder"], agent.as_str());
    }
    let (_, v) = app.get("/api/v1/ledger/verify").await;
    assert_eq!(v["ok"], true);
}

#[tokio::test]
async fn openapi_and_swagger_ui_are_served() {
    let app = App::spawn().await;
    let doc: Value =
        app.http.get(format!("{}/api/openapi.json", app.base)).send().await.expect("doc").json().await.expect("json");
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/api/v1/tasks",
        "/api/v1/tasks/{id}/claim",
        "/api/v1/klusters/{id}/claim-next",
        "/api/v1/ledger/verify",
        "/healthz",
    ] {
        assert!(paths.contains_key(p), "{p} missing from the OpenAPI document");
    }
    assert!(doc["components"]["schemas"]["Task"].is_object());
    let ui = app.http.get(format!("{}/api/docs/", app.base)).send().await.expect("ui");
    assert_eq!(ui.status(), StatusCode::OK);
    assert!(ui.text().await.expect("html").contains("swagger-ui"));
}

#[tokio::test]
async fn handlers_answer_through_oneshot() {
    use tower::ServiceExt;
    let dir = tempfile::tempdir().expect("dir");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Arc::new(SqliteStore::open(SqliteConfig::new(dir.path().join("mc.db"), clock.clone())).expect("store"));
    mc_server::bootstrap_admin_token(store.as_ref(), Some(TOKEN)).await.expect("token");
    let app = mc_server::app(AppState::new(store, clock), 1024);
    let req = axum::http::Request::post("/api/v1/missions")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(axum::body::Body::from(r#"{"name": ""}"#))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("response");
    assert_eq!(resp.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    let v: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(v["error"]["details"]["field"], "name");
}

#[tokio::test(start_paused = true)]
async fn reaper_reopens_expired_leases_under_paused_time() {
    let clock = Arc::new(ManualClock::new(chrono::Utc::now()));
    let dir = tempfile::tempdir().expect("dir");
    let store: Arc<dyn mc_store::Store> =
        Arc::new(SqliteStore::open(SqliteConfig::new(dir.path().join("mc.db"), clock.clone())).expect("store"));
    let ctx = mc_store::WriteCtx::new(mc_domain::Actor {
        principal: mc_domain::Principal { name: "admin".into(), role: mc_domain::Role::Admin },
        agent: Some(mc_domain::AgentId::parse("a1").expect("agent")),
    });
    let m = store
        .create_mission(&ctx, mc_domain::input::NewMission::parse("m", None).expect("m"))
        .await
        .expect("mission")
        .value;
    let k = store
        .create_kluster(&ctx, mc_domain::input::NewKluster::parse(m.id, "k", None).expect("k"))
        .await
        .expect("kluster")
        .value;
    let t = store
        .create_task(
            &ctx,
            mc_domain::input::NewTask::parse(
                k.id,
                mc_domain::input::RawTaskFields { title: Some("t"), ..Default::default() },
            )
            .expect("t"),
        )
        .await
        .expect("task")
        .value;
    store.claim_task(&ctx, t.id, Duration::from_secs(30)).await.expect("claim");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reaper = tokio::spawn(mc_server::reaper::run(store.clone(), Duration::from_secs(1), stop_rx));
    // 29 s later the lease still holds, however often the reaper runs
    clock.advance(Duration::from_secs(29));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(store.get_task(t.id).await.expect("get").status, mc_domain::TaskStatus::Claimed);
    // past expiry, the next tick reopens it
    clock.advance(Duration::from_secs(2));
    // Virtual time runs ahead while the writer (a real thread) commits, so bound the wait in
    // real time: the reaper must get there within a few seconds of wall clock.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut reopened = false;
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if store.get_task(t.id).await.expect("get").status == mc_domain::TaskStatus::Open {
            reopened = true;
            break;
        }
    }
    assert!(reopened, "the reaper reopened the task");
    let _ = stop_tx.send(true);
    reaper.await.expect("reaper stops on shutdown");
}

/// Finds a Chromium to drive; `MC_REQUIRE_BROWSER=1` (set by the test script) turns a missing one
/// into a failure instead of a skip.
fn chromium() -> Option<std::path::PathBuf> {
    let candidates = [
        std::env::var("MC_CHROMIUM").unwrap_or_default(),
        "/usr/bin/chromium".into(),
        "/usr/bin/chromium-browser".into(),
    ];
    let found = candidates.iter().filter(|c| !c.is_empty()).map(std::path::PathBuf::from).find(|p| p.exists());
    if found.is_none() {
        assert!(std::env::var("MC_REQUIRE_BROWSER").is_err(), "MC_REQUIRE_BROWSER is set but no Chromium was found");
        eprintln!("skipping: no Chromium installed (scripts/test.sh installs it)");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_renders_offline_in_a_real_browser() {
    let Some(browser) = chromium() else { return };
    let app = App::spawn().await;
    let profile = tempfile::tempdir().expect("profile dir");
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                "--no-first-run",
                "--virtual-time-budget=15000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--dump-dom")
            .arg(format!("{}/api/docs/", app.base))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium finished in time")
    .expect("chromium ran");
    let dom = String::from_utf8_lossy(&out.stdout);
    // operations are rendered by Swagger UI's JavaScript, so they only appear if its assets loaded
    assert!(
        dom.contains("opblock"),
        "Swagger UI did not render operations; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dom.contains("/api/v1/klusters/{id}/claim-next"), "claim-next operation missing from the rendered page");
}

/// A server with the deterministic hashing embedder (real vectors, real indexes, no model load),
/// once the server has calibrated its scorer for it (no scorer is shipped for this embedder).
async fn spawn_hashing() -> App {
    let app =
        App::spawn_full(Arc::new(SystemClock), 1024 * 1024, Some(Arc::new(mc_embed::HashingEmbedder::default()))).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (s, info) = app.get("/api/v1/system/info").await;
        assert_eq!(s, StatusCode::OK, "{info}");
        match info["semantic"]["scorer"].as_str() {
            Some("calibrated") => break,
            Some("calibrating") => {}
            other => panic!("unexpected scorer {other:?}: {info}"),
        }
        assert!(std::time::Instant::now() < deadline, "the scorer was not calibrated in 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_reports_overlap_and_refuses_a_duplicate_unless_acknowledged() {
    let app = spawn_hashing().await;
    let k = app.kluster().await;
    let (s, first) = app
        .post(
            "/api/v1/tasks",
            json!({"kluster_id": k, "title": "Create Helm chart for staging", "paths": ["deploy/helm/staging/**"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert_eq!(first["overlap_suggestions"], json!([]), "nothing to overlap with yet");
    assert!(first.get("warnings").is_none(), "the embedder answered: {first}");

    // the same sentence about another object: related, created
    let (s, other) =
        app.post("/api/v1/tasks", json!({"kluster_id": k, "title": "Create Helm chart for production"})).await;
    assert_eq!(s, StatusCode::CREATED, "{other}");
    let sugg = &other["overlap_suggestions"][0];
    assert_eq!(sugg["id"], first["id"]);
    assert_eq!(sugg["relation"], "related", "{other}");
    assert!(sugg["reasons"].to_string().contains("staging vs production"), "{sugg}");

    // the same work again: refused with the suggestion, nothing written
    let (s, refused) =
        app.post("/api/v1/tasks", json!({"kluster_id": k, "title": "Create Helm chart for staging"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{refused}");
    assert_error(&refused, "overlap_detected");
    assert_eq!(refused["error"]["details"]["overlap_suggestions"][0]["id"], first["id"]);
    assert_eq!(refused["error"]["details"]["overlap_suggestions"][0]["relation"], "duplicate");
    let (_, tasks) = app.get(&format!("/api/v1/tasks?kluster_id={k}")).await;
    assert_eq!(tasks["items"].as_array().expect("items").len(), 2);

    // acknowledged: created, and the ledger says so
    let (s, acked) = app
        .post(
            "/api/v1/tasks",
            json!({"kluster_id": k, "title": "Create Helm chart for staging", "acknowledge_overlap": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{acked}");
    assert_eq!(acked["overlap_suggestions"][0]["relation"], "duplicate");
    let (_, ev) = app.get(&format!("/api/v1/ledger?entity_id={}", acked["id"].as_str().expect("id"))).await;
    assert_eq!(ev["items"][0]["action"], "task.create.overlap_acknowledged");

    // a draft is checked without creating anything; paths overlap is explained
    let (s, draft) = app
        .post(
            "/api/v1/overlap",
            json!({"kluster_id": k, "title": "Tune resource limits", "paths": ["deploy/helm/staging/values.yaml"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{draft}");
    let by_path = draft["overlap_suggestions"]
        .as_array()
        .expect("suggestions")
        .iter()
        .find(|x| x["id"] == first["id"])
        .expect("the task with overlapping paths is suggested");
    assert!(by_path["reasons"].to_string().contains("paths overlap"), "{by_path}");
    let (_, tasks) = app.get(&format!("/api/v1/tasks?kluster_id={k}")).await;
    assert_eq!(tasks["items"].as_array().expect("items").len(), 3, "a draft creates nothing");

    // an existing task is compared with the others, not with itself
    let (s, own) = app.get(&format!("/api/v1/tasks/{}/overlap", first["id"].as_str().expect("id"))).await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<&Value> = own["overlap_suggestions"].as_array().expect("list").iter().map(|x| &x["id"]).collect();
    assert!(!ids.contains(&&first["id"]));
    assert!(ids.contains(&&acked["id"]), "its duplicate is found: {own}");

    // a bulk import may skip the check; the ledger says so
    let (s, bulk) = app
        .post(
            "/api/v1/tasks",
            json!({"kluster_id": k, "title": "Create Helm chart for staging", "check_overlap": false}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{bulk}");
    assert_eq!(bulk["overlap_suggestions"], json!([]));
    let (_, ev) = app.get(&format!("/api/v1/ledger?entity_id={}", bulk["id"].as_str().expect("id"))).await;
    assert_eq!(ev["items"][0]["action"], "task.create.overlap_unchecked");

    // a bad glob is a field error before anything happens
    let (s, e) = app.post("/api/v1/tasks", json!({"kluster_id": k, "title": "x", "paths": ["src/[a"]})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["error"]["details"]["field"], "paths[0]", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn klusters_are_searched_with_reasons() {
    let app = spawn_hashing().await;
    let (_, m) = app.post("/api/v1/missions", json!({"name": "Platform"})).await;
    let mut ids = Vec::new();
    for (name, description) in [
        ("Observability", "Metrics, traces and alerting dashboards"),
        ("Billing", "Invoices, refunds and payment retries"),
    ] {
        let (s, k) = app
            .post("/api/v1/klusters", json!({"mission_id": m["id"], "name": name, "description": description}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{k}");
        ids.push(k["id"].clone());
    }
    // the embedding worker gives klusters their vectors in the background
    let mut r = Value::Null;
    for _ in 0..100 {
        r = app.get("/api/v1/search/klusters?q=alerting%20dashboards").await.1;
        if r["items"][0]["why"].to_string().contains("semantic") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(r["items"][0]["kluster"]["id"], ids[0], "{r}");
    let why = r["items"][0]["why"].to_string();
    assert!(why.contains("alert") && why.contains("semantic"), "{why}");
    let (_, r) =
        app.get(&format!("/api/v1/search/klusters?q=refunds&mission_id={}", m["id"].as_str().expect("id"))).await;
    assert_eq!(r["items"][0]["kluster"]["id"], ids[1], "{r}");
    for (query, field) in [("q=", "q"), ("q=x&limit=101", "limit")] {
        let (s, e) = app.get(&format!("/api/v1/search/klusters?{query}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}: {e}");
        assert_eq!(e["error"]["details"]["field"], field, "{query}: {e}");
    }
    let (s, e) = app.get("/api/v1/search/klusters?q=x&status=open").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
}

/// Identical drafts sent at the same instant: the checks run concurrently, yet exactly one is
/// created; every other one is refused as its duplicate (the first that got in). Tasks and docs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identical_drafts_racing_create_exactly_one_task_or_doc() {
    let app = Arc::new(spawn_hashing().await);
    let k = app.kluster().await;
    for route in ["/api/v1/tasks", "/api/v1/docs"] {
        for round in 0..3 {
            let title = format!("Rotate the signing keys of the payments gateway, round {round}");
            let mut racers = Vec::new();
            for _ in 0..8 {
                let (app, k, title) = (Arc::clone(&app), k.clone(), title.clone());
                racers
                    .push(tokio::spawn(async move { app.post(route, json!({"kluster_id": k, "title": title})).await }));
            }
            let mut created = Vec::new();
            let mut refused = Vec::new();
            for r in racers {
                let (s, v) = r.await.expect("racer");
                match s {
                    StatusCode::CREATED => created.push(v),
                    StatusCode::CONFLICT => refused.push(v),
                    other => panic!("unexpected {other}: {v}"),
                }
            }
            assert_eq!(created.len(), 1, "{route} round {round}: {created:?}");
            assert_eq!(refused.len(), 7);
            for r in &refused {
                assert_error(r, "overlap_detected");
                assert_eq!(r["error"]["details"]["overlap_suggestions"][0]["id"], created[0]["id"], "{r}");
            }
        }
        let (_, items) = app.get(&format!("{route}?kluster_id={k}")).await;
        assert_eq!(items["items"].as_array().expect("items").len(), 3, "{route}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_is_hybrid_filtered_and_explained() {
    let app = spawn_hashing().await;
    let k = app.kluster().await;
    let a = app.task(&k, "Rotate the database credentials of the reporting service", 2).await;
    let b = app.task(&k, "Add dark mode to the settings page", 2).await;
    let (s, r) = app.get("/api/v1/search?q=reporting%20credentials").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["items"][0]["task"]["id"], a.as_str());
    let why = r["items"][0]["why"].to_string();
    assert!(why.contains("credential") && why.contains("semantic"), "{why}");
    assert!(r.get("warnings").is_none());
    let (_, r) = app.get(&format!("/api/v1/search?q=dark%20mode&status=done&kluster_id={k}")).await;
    assert_eq!(r["items"], json!([]), "status filter");
    let (_, r) = app.get("/api/v1/search?q=dark%20mode&limit=1").await;
    assert_eq!(r["items"].as_array().expect("items").len(), 1);
    assert_eq!(r["items"][0]["task"]["id"], b.as_str());

    for (query, field) in [
        ("q=%20%20", "q"),
        ("q=x&limit=0", "limit"),
        ("q=x&limit=100000", "limit"),
        (&format!("q={}", "a".repeat(1001)), "q"),
        ("q=x&status=finished", "status"),
    ] {
        let (s, e) = app.get(&format!("/api/v1/search?{query}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}: {e}");
        assert_eq!(e["error"]["details"]["field"], field, "{query}: {e}");
    }
    let (s, e) = app.get("/api/v1/search?q=x&colour=red").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error(&e, "invalid_query");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_embedder_degrades_to_text_and_never_blocks_creation() {
    // an OpenAI-compatible endpoint on a port where nothing listens
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    drop(std::net::TcpListener::bind(("127.0.0.1", port)));
    let down =
        mc_embed::OpenAiEmbedder::new(&format!("http://127.0.0.1:{port}/v1"), "m", None, Some(8)).expect("client");
    let app = App::spawn_full(Arc::new(SystemClock), 1024 * 1024, Some(Arc::new(down))).await;
    let k = app.kluster().await;
    let (s, t) = app.post("/api/v1/tasks", json!({"kluster_id": k, "title": "Write the import guide"})).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    assert!(t["warnings"][0].as_str().expect("warning").contains("only text signals"), "{t}");
    let (s, r) = app.get("/api/v1/search?q=import%20guide").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["items"][0]["task"]["id"], t["id"]);
    assert!(r["warnings"][0].as_str().expect("warning").contains("full-text results only"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedding_worker_fills_vectors_for_changed_texts() {
    let dir = tempfile::tempdir().expect("dir");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store: Arc<dyn mc_store::Store> =
        Arc::new(SqliteStore::open(SqliteConfig::new(dir.path().join("mc.db"), clock)).expect("store"));
    let embedder = mc_embed::HashingEmbedder::default();
    let ctx = mc_store::WriteCtx::new(mc_domain::Actor::system());
    let m =
        store.create_mission(&ctx, mc_domain::input::NewMission::parse("m", None).expect("m")).await.expect("m").value;
    let k = store
        .create_kluster(&ctx, mc_domain::input::NewKluster::parse(m.id, "k", None).expect("k"))
        .await
        .expect("k")
        .value;
    let mut tasks = Vec::new();
    for title in ["one", "two", "three"] {
        let new = mc_domain::input::NewTask::parse(
            k.id,
            mc_domain::input::RawTaskFields { title: Some(title), ..Default::default() },
        )
        .expect("t");
        tasks.push(store.create_task(&ctx, new).await.expect("task").value);
    }
    use mc_embed::Embedder;
    let mut cursor = mc_store::TextCursor::default();
    let n = mc_server::overlap::embed_pending_once(store.as_ref(), &embedder, 32, &mut cursor).await.expect("embed");
    assert_eq!(n, 3, "the tasks first");
    let n = mc_server::overlap::embed_pending_once(store.as_ref(), &embedder, 32, &mut cursor).await.expect("klusters");
    assert_eq!(n, 1, "then the kluster");
    assert_eq!(
        mc_server::overlap::embed_pending_once(store.as_ref(), &embedder, 32, &mut cursor).await.expect("again"),
        0
    );
    assert!(store.pending_embeddings(embedder.model_id(), 10).await.expect("pending").is_empty());
    assert!(store.pending_kluster_embeddings(embedder.model_id(), 10).await.expect("pending").is_empty());

    // an old task's new text is found by the walk; a pass whose embedder is down keeps its place
    let patch = mc_domain::input::TaskPatch { title: Some("one, renamed".into()), ..Default::default() };
    store.update_task(&ctx, tasks[0].id, patch, None).await.expect("retitle");
    let before = cursor.clone();
    let down = Down(embedder.model_id().to_owned());
    let failed = mc_server::overlap::embed_pending_once(store.as_ref(), &down, 32, &mut cursor).await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(cursor, before, "the failed page is asked for again");
    let n = mc_server::overlap::embed_pending_once(store.as_ref(), &embedder, 32, &mut cursor).await.expect("retry");
    assert_eq!(n, 1, "the renamed task");
    let v = store.task_embedding(tasks[0].id, embedder.model_id()).await.expect("vector");
    assert!(v.is_some(), "the new text has its vector");
    assert!(store.pending_embeddings(embedder.model_id(), 10).await.expect("pending").is_empty());
}

/// An embedder whose service is down, under another embedder's model id.
#[derive(Debug)]
struct Down(String);

#[async_trait::async_trait]
impl mc_embed::Embedder for Down {
    fn model_id(&self) -> &str {
        &self.0
    }
    fn dim(&self) -> usize {
        384
    }
    async fn embed(&self, _texts: &[String]) -> Result<Vec<Vec<f32>>, mc_embed::EmbedError> {
        Err(mc_embed::EmbedError::Unavailable("connection refused".into()))
    }
}

/// An OpenAI-compatible embeddings endpoint serving a real model (the bundled one) on a free
/// loopback port. Requests of more than one text (the scorer's calibration sends batches; the
/// request path sends one text) wait while `gate` is closed.
async fn embeddings_endpoint(gate: tokio::sync::watch::Receiver<bool>) -> String {
    use axum::Json;
    use axum::extract::State;
    use mc_embed::Embedder;
    async fn embeddings(
        State(gate): State<tokio::sync::watch::Receiver<bool>>,
        Json(body): Json<Value>,
    ) -> (StatusCode, Json<Value>) {
        let inputs: Vec<String> =
            body["input"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect();
        if inputs.len() > 1 {
            let mut gate = gate.clone();
            let _ = gate.wait_for(|open| *open).await;
        }
        match mc_embed::PocketEmbedder::new().embed(&inputs).await {
            Ok(vectors) => {
                let data: Vec<Value> = vectors
                    .iter()
                    .enumerate()
                    .map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": v}))
                    .collect();
                (StatusCode::OK, Json(json!({"object": "list", "data": data, "model": body["model"]})))
            }
            Err(e) => (StatusCode::BAD_REQUEST, Json(json!({"error": {"message": e.to_string()}}))),
        }
    }
    let app = axum::Router::new().route("/v1/embeddings", axum::routing::post(embeddings)).with_state(gate);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{addr}/v1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedder_without_a_shipped_scorer_gets_one_calibrated_and_kept() {
    let (open, gate) = tokio::sync::watch::channel(false);
    let base = embeddings_endpoint(gate).await;
    let state = tempfile::tempdir().expect("state dir");
    let endpoint: Arc<dyn mc_embed::Embedder> =
        Arc::new(mc_embed::OpenAiEmbedder::new(&base, "pocket-served", None, None).expect("client"));
    let options = || ServerOptions {
        embedder: Some(endpoint.clone()),
        state_dir: Some(state.path().to_owned()),
        ..Default::default()
    };
    let app = App::spawn_options(Arc::new(SystemClock), options()).await;
    let k = app.kluster().await;
    let title = "Rotate the signing keys of the payments API";
    let (s, first) = app.post("/api/v1/tasks", json!({"kluster_id": k, "title": title})).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");

    let (_, info) = app.get("/api/v1/system/info").await;
    assert_eq!(info["semantic"]["scorer"], "calibrating", "{info}");
    // calibrating (held at the gate): suggestions come with a warning, and nothing is refused
    let (s, again) = app.post("/api/v1/tasks", json!({"kluster_id": k, "title": title})).await;
    assert_eq!(s, StatusCode::CREATED, "the interim scorer refuses nothing: {again}");
    assert_eq!(again["overlap_suggestions"][0]["id"], first["id"], "{again}");
    assert!(again["warnings"][0].as_str().expect("warning").contains("being calibrated"), "{again}");

    // calibrated: the same text again is refused as a duplicate, without the warning
    open.send(true).expect("open the gate");
    // kept under the id its vectors are stored with (the acronym revision changes it)
    let prepared_id = mc_server::overlap::prepared(endpoint.clone()).model_id().to_owned();
    assert!(prepared_id.starts_with(endpoint.model_id()), "{prepared_id}");
    let kept = mc_server::calibration::kept_path(state.path(), &prepared_id);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !kept.exists() {
        assert!(std::time::Instant::now() < deadline, "no calibrated scorer was kept in {}", kept.display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, info) = app.get("/api/v1/system/info").await;
    assert_eq!(info["semantic"]["scorer"], "calibrated", "{info}");
    let (s, refused) = app.post("/api/v1/tasks", json!({"kluster_id": k, "title": title})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"]["code"], "overlap_detected", "{refused}");
    let (s, draft) =
        app.post("/api/v1/overlap", json!({"kluster_id": k, "title": "Add dark mode to the settings page"})).await;
    assert_eq!(s, StatusCode::OK, "{draft}");
    assert!(draft.get("warnings").is_none_or(|w| w.as_array().is_some_and(Vec::is_empty)), "{draft}");
    let kept_text = std::fs::read_to_string(&kept).expect("kept scorer");
    let kept_json: Value = serde_json::from_str(&kept_text).expect("kept scorer is JSON");
    assert!(kept_json["holdout"]["duplicates"].as_u64().expect("held-out figures") > 0, "{kept_json}");
    let mut app = app;
    app.server.take().expect("running").shutdown().await.expect("clean shutdown");

    // the next start uses the kept scorer at once (the gate is closed again: no calibration can run)
    open.send(false).expect("close the gate");
    let app = App::spawn_options(Arc::new(SystemClock), options()).await;
    let k = app.kluster().await;
    let (s, first) = app.post("/api/v1/tasks", json!({"kluster_id": k, "title": title})).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let (s, refused) = app.post("/api/v1/tasks", json!({"kluster_id": k, "title": title})).await;
    assert_eq!(s, StatusCode::CONFLICT, "the kept scorer blocks at once: {refused}");
    let mut app = app;
    app.server.take().expect("running").shutdown().await.expect("clean shutdown");
}

/// Docs and artifacts: written after an overlap check against the mission's docs (a rewrite of
/// an existing doc is refused unless acknowledged; the same kind of doc about another object is
/// related), versioned on update, searched by text and meaning with reasons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_are_checked_for_overlap_versioned_and_searched() {
    let app = spawn_hashing().await;
    let k = app.kluster().await;
    let runbook = "Runbook for restoring the staging database from backups";
    let steps = "1. stop writes\n2. restore the latest snapshot";
    let (s, first) = app.post("/api/v1/docs", json!({"kluster_id": k, "title": runbook, "body": steps})).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert_eq!((first["version"].as_u64(), first["kind"].as_str()), (Some(1), Some("doc")), "{first}");
    assert_eq!(first["overlap_suggestions"], json!([]), "{first}");
    let id = first["id"].as_str().expect("id").to_owned();

    // another object: related, written
    let (s, other) = app
        .post(
            "/api/v1/docs",
            json!({"kluster_id": k, "title": "Runbook for restoring the production database from backups", "body": steps}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{other}");
    assert_eq!(other["overlap_suggestions"][0]["id"], id.as_str(), "{other}");
    assert_eq!(other["overlap_suggestions"][0]["kind"], "doc");
    assert_eq!(other["overlap_suggestions"][0]["relation"], "related", "{other}");

    // a draft is checked without writing anything (its body in `description`)
    let draft = json!({"kluster_id": k, "kind": "doc", "title": runbook, "description": steps});
    let (s, checked) = app.post("/api/v1/overlap", draft).await;
    assert_eq!(s, StatusCode::OK, "{checked}");
    assert_eq!(checked["overlap_suggestions"][0]["id"], id.as_str(), "{checked}");
    assert_eq!(checked["overlap_suggestions"][0]["relation"], "duplicate", "{checked}");
    let (_, listed) = app.get(&format!("/api/v1/docs?kluster_id={k}")).await;
    assert_eq!(listed["items"].as_array().expect("items").len(), 2, "the check wrote nothing");
    let (s, e) = app.post("/api/v1/overlap", json!({"kluster_id": k, "kind": "doc", "title": " "})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");

    // the same doc again: refused with the suggestion; acknowledged, written and recorded
    let (s, refused) = app.post("/api/v1/docs", json!({"kluster_id": k, "title": runbook, "body": steps})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{refused}");
    assert_error(&refused, "overlap_detected");
    assert_eq!(refused["error"]["details"]["overlap_suggestions"][0]["id"], id.as_str());
    assert!(refused["error"]["message"].as_str().expect("message").contains("doc "), "{refused}");
    let (s, acked) = app
        .post("/api/v1/docs", json!({"kluster_id": k, "title": runbook, "body": steps, "acknowledge_overlap": true}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{acked}");
    let (_, ev) = app.get(&format!("/api/v1/ledger?entity_id={}", acked["id"].as_str().expect("id"))).await;
    assert_eq!(ev["items"][0]["action"], "doc.create.overlap_acknowledged", "{ev}");

    // an artifact whose paths can touch the same file as another artifact's is suggested
    let (s, report) = app
        .post(
            "/api/v1/docs",
            json!({"kluster_id": k, "kind": "artifact", "title": "Weekly refund totals", "paths": ["reports/refunds/*.csv"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{report}");
    let (s, export) = app
        .post(
            "/api/v1/docs",
            json!({"kluster_id": k, "kind": "artifact", "title": "Chargeback export", "paths": ["reports/**/2026-*.csv"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{export}");
    let by_path = export["overlap_suggestions"]
        .as_array()
        .expect("suggestions")
        .iter()
        .find(|s| s["id"] == report["id"])
        .unwrap_or_else(|| panic!("the artifact with intersecting paths is suggested: {export}"));
    assert!(by_path["reasons"].to_string().contains("reports/refunds/"), "{by_path}");

    // versions: an update is the next version; a stale one is refused
    let (s, v2) = app
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/docs/{id}"),
            None,
            Some(json!({"body": "1. stop writes\n2. restore\n3. verify checksums", "if_version": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v2}");
    assert_eq!(v2["version"], 2);
    let (s, stale) = app
        .call(reqwest::Method::PATCH, &format!("/api/v1/docs/{id}"), None, Some(json!({"title": "x", "if_version": 1})))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{stale}");
    assert_error(&stale, "version_conflict");
    let (_, got) = app.get(&format!("/api/v1/docs/{id}")).await;
    assert!(got["body"].as_str().expect("body").ends_with("verify checksums"), "{got}");

    // lists and search: newest first; the worker embeds docs, then search says why they matched
    let (_, list) = app.get(&format!("/api/v1/docs?kluster_id={k}&kind=artifact")).await;
    let titles: Vec<&str> =
        list["items"].as_array().expect("items").iter().filter_map(|d| d["title"].as_str()).collect();
    assert_eq!(titles, vec!["Chargeback export", "Weekly refund totals"]);
    let mut r = Value::Null;
    for _ in 0..100 {
        r = app.get("/api/v1/search/docs?q=verify%20checksums&kind=doc").await.1;
        if r["items"][0]["why"].to_string().contains("semantic") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(r["items"][0]["doc"]["id"], id.as_str(), "{r}");
    assert!(r["items"][0]["why"].to_string().contains("checksum"), "{r}");

    // bad input: clear 4xx answers
    for (body, field) in [
        (json!({"title": "no scope"}), "mission_id"),
        (json!({"kluster_id": k, "title": " "}), "title"),
        (json!({"kluster_id": k, "title": "x", "body": "y".repeat(256 * 1024 + 1)}), "body"),
        (json!({"kluster_id": k, "title": "x", "paths": ["[unclosed"]}), "paths[0]"),
    ] {
        let (s, e) = app.post("/api/v1/docs", body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        assert_eq!(e["error"]["details"]["field"], field, "{e}");
    }
    let (s, e) = app.post("/api/v1/docs", json!({"kluster_id": k, "title": "x", "kind": "memo"})).await;
    assert!(s.is_client_error(), "{s}: {e}");
    let (s, e) = app.get("/api/v1/search/docs?q=x&kind=memo").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["error"]["details"]["field"], "kind", "{e}");
    let (s, e) = app.get(&format!("/api/v1/docs/{}", uuid::Uuid::now_v7())).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
}

/// With the bundled model: docs are judged by their titles as well as their contents. Docs
/// written from one template about different subjects are related (not duplicates), two
/// meetings' notes under one title are written, and the same report filed again with one figure
/// changed is refused; a long body is judged by its start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_from_one_template_are_related_and_a_refiled_doc_is_refused() {
    let app =
        App::spawn_full(Arc::new(SystemClock), 1024 * 1024, Some(Arc::new(mc_embed::PocketEmbedder::new()))).await;
    let k = app.kluster().await;
    let report = |target: &str, p99: u32, finding: &str| {
        format!(
            "# Summary\nWe ran a load test against the {target} with k6 for 30 minutes at 500 requests per second.\n\
             # Results\np50 latency was 42 ms and p99 was {p99} ms. The error rate stayed below 0.1%.\n\
             # Findings\n{finding}\n# Next steps\nRepeat the test after the fix lands and compare the p99."
        )
    };
    let checkout =
        report("checkout API", 310, "The p99 spikes come from the payment provider call, which has no timeout.");
    let (s, first) = app
        .post("/api/v1/docs", json!({"kluster_id": k, "title": "Load test report: checkout API", "body": checkout}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let search = report("search API", 95, "Search holds up; the index fits in memory and the cache hit rate is 92%.");
    let (s, other) = app
        .post("/api/v1/docs", json!({"kluster_id": k, "title": "Load test report: search API", "body": search}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{other}");
    let suggestion = &other["overlap_suggestions"][0];
    assert_eq!((suggestion["id"].as_str(), suggestion["relation"].as_str()), (first["id"].as_str(), Some("related")));
    assert!(suggestion["reasons"].to_string().contains("titles: "), "{suggestion}");

    // one title, two meetings
    let notes = [
        "Attendees: platform and payments. Decided to freeze the payments API until the PCI audit ends. \
         Platform will upgrade the Kubernetes clusters next week.",
        "Attendees: mobile and design. The new onboarding screens are ready for review. \
         Mobile release 4.2 slips a week because of a crash on Android 12.",
    ];
    let (s, a) =
        app.post("/api/v1/docs", json!({"kluster_id": k, "title": "Weekly sync notes", "body": notes[0]})).await;
    assert_eq!(s, StatusCode::CREATED, "{a}");
    let (s, b) =
        app.post("/api/v1/docs", json!({"kluster_id": k, "title": "Weekly sync notes", "body": notes[1]})).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let same_title = b["overlap_suggestions"]
        .as_array()
        .expect("suggestions")
        .iter()
        .find(|x| x["id"] == a["id"])
        .unwrap_or_else(|| panic!("the other notes are suggested: {b}"));
    assert_eq!(same_title["relation"], "related", "{same_title}");
    assert!(same_title["reasons"].to_string().contains("contents differ"), "{same_title}");

    // the checkout report again, one figure changed: refused, naming it
    let again = checkout.replace("310 ms", "320 ms");
    let (s, refused) = app
        .post("/api/v1/docs", json!({"kluster_id": k, "title": "Load test report: checkout API", "body": again}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"]["details"]["overlap_suggestions"][0]["id"], first["id"], "{refused}");

    // a body of 200 KB: its start is compared, the rest is kept
    let long = "http_req_duration{name=search} avg=18ms p(99)=95ms\n".repeat(4000);
    let (s, big) = app
        .post("/api/v1/docs", json!({"kluster_id": k, "kind": "artifact", "title": "Raw k6 output", "body": long}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{}", big.to_string().chars().take(400).collect::<String>());
    let (_, got) = app.get(&format!("/api/v1/docs/{}", big["id"].as_str().expect("id"))).await;
    assert_eq!(got["body"].as_str().map(str::len), Some(long.len()));
}

/// With the bundled model: a hit found by meaning alone is shown only above the scorer's search
/// floor, so an off-topic query finds nothing instead of the least unlike tasks, while a query in
/// other words than the task still finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_leaves_out_semantic_matches_no_better_than_unrelated_text() {
    let app =
        App::spawn_full(Arc::new(SystemClock), 1024 * 1024, Some(Arc::new(mc_embed::PocketEmbedder::new()))).await;
    let (_, info) = app.get("/api/v1/system/info").await;
    assert_eq!(info["semantic"]["scorer"], "shipped", "{info}");
    let k = app.kluster().await;
    let mut ids = Vec::new();
    for title in [
        "Add rate limiting to the public API",
        "Support dark mode in the settings page",
        "Make search ignore accents",
        "Write French docs for the CLI",
        "Upgrade tokio to 1.40",
    ] {
        ids.push(app.task(&k, title, 2).await);
    }
    // the worker embeds the tasks in the background
    let mut r = Value::Null;
    for _ in 0..200 {
        r = app.get("/api/v1/search?q=throttle%20requests").await.1;
        if !r["items"].as_array().is_none_or(Vec::is_empty) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let items = r["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "only the match above the floor: {r}");
    assert_eq!(items[0]["task"]["id"], ids[0].as_str(), "{r}");
    assert!(items[0]["why"].to_string().contains("semantic"), "{r}");
    for q in ["weather%20in%20Paris", "banana%20bread%20recipe", "quarterly%20tax%20filing"] {
        let (s, r) = app.get(&format!("/api/v1/search?q={q}")).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        assert_eq!(r["items"], json!([]), "{q}: nothing relates, nothing is shown");
    }
    // found by its words, a hit is shown however low its similarity
    let (_, r) = app.get("/api/v1/search?q=tokio").await;
    assert_eq!(r["items"][0]["task"]["id"], ids[4].as_str(), "{r}");
}
