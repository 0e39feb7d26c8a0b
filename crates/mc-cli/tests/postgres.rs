//! The real `mc server` on PostgreSQL: `MC_DATABASE_URL` pointing at a fresh database of a
//! throwaway cluster (`mc_store_postgres::testing::TempCluster`), driven over HTTP. Skipped
//! without `MC_PG_BIN` unless `MC_REQUIRE_POSTGRES=1`.

use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mc_store_postgres::testing::TempCluster;
use serde_json::{Value, json};

const MC: &str = env!("CARGO_BIN_EXE_mc");
const TOKEN: &str = "pg-test-token";

/// A running `mc server`; killed when dropped.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mc(database_url: &str) -> Command {
    let mut cmd = Command::new(MC);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MC_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd.env("MC_DATABASE_URL", database_url).env("MC_EMBEDDINGS", "off").stdin(Stdio::null());
    cmd
}

fn start_server(database_url: &str, dir: &std::path::Path) -> Server {
    for attempt in 0..3 {
        let port = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let log = dir.join(format!("server-{attempt}.log"));
        let child = mc(database_url)
            .args(["server", "--listen", &format!("127.0.0.1:{port}")])
            // no data dir is needed on PostgreSQL; one that cannot be created proves it is unused
            .env("MC_DATA_DIR", "/nonexistent/mc-data")
            .env("MC_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn mc server");
        let mut server = Server { child, base: format!("http://127.0.0.1:{port}"), log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = server.child.try_wait().expect("try_wait") {
                eprintln!("mc server exited ({status}): {}", fs::read_to_string(&server.log).unwrap_or_default());
                break;
            }
            if std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("mc server did not start on PostgreSQL");
}

async fn call(http: &reqwest::Client, req: reqwest::RequestBuilder) -> (u16, Value) {
    let _ = http;
    let r = req.bearer_auth(TOKEN).send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mc_server_runs_on_postgres() {
    let cluster = match TempCluster::shared() {
        Ok(Some(c)) => c,
        Ok(None) => {
            eprintln!("skipped: mc server on PostgreSQL (set MC_PG_BIN, e.g. from scripts/pg.sh)");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let url = cluster.create_database().await.expect("a fresh database");
    let dir = tempfile::tempdir().expect("temp dir");

    // `mc server migrate` on PostgreSQL, then again: nothing left to apply
    let out = mc(&url).args(["server", "migrate", "--json"]).output().expect("run migrate");
    assert!(out.status.success(), "migrate failed: {}", String::from_utf8_lossy(&out.stderr));
    let applied: Value = serde_json::from_slice(&out.stdout).expect("json");
    let all: Vec<i64> = mc_store_postgres::schema::MIGRATIONS.iter().map(|m| m.0).collect();
    assert_eq!(applied, json!({"database": "postgres", "applied": all}));
    let out = mc(&url).args(["server", "migrate", "--json"]).output().expect("run migrate again");
    let applied: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(applied["applied"], json!([]));
    // another scheme is refused, not silently replaced by the embedded store
    let out = mc("mysql://nope").args(["server", "migrate"]).output().expect("run migrate");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("postgres://"), "{}", String::from_utf8_lossy(&out.stderr));

    let server = start_server(&url, dir.path());
    let base = format!("{}/api/v1", server.base);
    let http = reqwest::Client::new();

    let ready: Value =
        http.get(format!("{}/readyz", server.base)).send().await.expect("readyz").json().await.expect("json");
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["storage"]["backend"], "postgres", "{ready}");

    let (s, m) = call(&http, http.post(format!("{base}/missions")).json(&json!({"name": "Payments"}))).await;
    assert_eq!(s, 201, "{m}");
    let (s, k) =
        call(&http, http.post(format!("{base}/klusters")).json(&json!({"mission_id": m["id"], "name": "Refunds"})))
            .await;
    assert_eq!(s, 201, "{k}");
    let (s, t) = call(
        &http,
        http.post(format!("{base}/tasks")).json(&json!({
            "kluster_id": k["id"],
            "title": "Design the refund endpoint",
            "description": "Partial refunds through the payment provider",
        })),
    )
    .await;
    assert_eq!(s, 201, "{t}");
    let task_id = t["id"].as_str().expect("task id").to_owned();

    // claim it as an agent: a lease with the first fencing token
    let (s, claimed) = call(
        &http,
        http.post(format!("{base}/tasks/{task_id}/claim")).header("x-mc-agent", "agent-1").json(&json!({})),
    )
    .await;
    assert_eq!(s, 200, "{claimed}");
    assert_eq!(claimed["status"], "claimed");
    assert_eq!(claimed["fencing_token"], 1);
    let (s, again) = call(
        &http,
        http.post(format!("{base}/tasks/{task_id}/claim")).header("x-mc-agent", "agent-2").json(&json!({})),
    )
    .await;
    assert_eq!(s, 409, "{again}");
    assert_eq!(again["error"]["code"], "task_held");

    // full-text search (stemmed: "refunds" finds "refund")
    let (s, found) = call(&http, http.get(format!("{base}/search?q=refunds%20endpoints"))).await;
    assert_eq!(s, 200, "{found}");
    let items = found["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{found}");
    assert_eq!(items[0]["task"]["id"], task_id.as_str());
    let (_, none) = call(&http, http.get(format!("{base}/search?q=kubernetes"))).await;
    assert_eq!(none["items"].as_array().map(Vec::len), Some(0), "{none}");

    // every mutation is in the chain
    let (s, v) = call(&http, http.get(format!("{base}/ledger/verify"))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["checked"], 4, "{v}");
    drop(server);
}
