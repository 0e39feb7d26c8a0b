//! Crash safety: `kill -9` the real `mc server` in the middle of a stream of concurrent writes,
//! restart it on the same data dir, and check that every acknowledged write is there, nothing
//! that was never sent is, and the ledger chain still verifies.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const TOKEN: &str = "crash-test-token";

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

async fn start(data: &Path) -> Server {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_mc"))
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data)
        .env("MC_TOKEN", TOKEN)
        .env("MC_LOG", "warn")
        .env("MC_EMBEDDINGS", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mc server starts");
    let server = Server { child, base: format!("http://127.0.0.1:{port}") };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{}/readyz", server.base)).send().await
            && r.status().is_success()
        {
            return server;
        }
        assert!(Instant::now() < deadline, "server did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    agent: Option<&str>,
    body: Value,
) -> reqwest::Result<(u16, Value)> {
    let mut r = http.post(format!("{base}{path}")).bearer_auth(TOKEN).json(&body);
    if let Some(a) = agent {
        r = r.header("x-mc-agent", a);
    }
    let resp = r.send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await?))
}

async fn all_tasks(http: &reqwest::Client, base: &str, kluster: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/api/v1/tasks?kluster_id={kluster}&limit=500");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = http.get(url).bearer_auth(TOKEN).send().await.expect("list").json().await.expect("json");
        out.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = start(dir.path()).await;
    let http = reqwest::Client::new();
    let (_, m) = post(&http, &server.base, "/api/v1/missions", None, json!({"name": "crash"})).await.expect("mission");
    let (_, k) = post(&http, &server.base, "/api/v1/klusters", None, json!({"mission_id": m["id"], "name": "k"}))
        .await
        .expect("kluster");
    let kluster = k["id"].as_str().expect("kluster id").to_owned();

    // acknowledged creates (title → id) and claims (task id → holder); every title ever sent
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let claims: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let sent: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..16 {
        let (acked, claims, sent, base, kluster) =
            (acked.clone(), claims.clone(), sent.clone(), server.base.clone(), kluster.clone());
        writers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let agent = format!("agent-{w}");
            for i in 0.. {
                let title = format!("w{w}-t{i}");
                sent.lock().expect("lock").insert(title.clone());
                match post(&http, &base, "/api/v1/tasks", None, json!({"kluster_id": kluster, "title": title})).await {
                    Ok((201, t)) => {
                        acked.lock().expect("lock").insert(title, t["id"].as_str().expect("id").to_owned());
                    }
                    Ok((status, body)) => panic!("unexpected answer before the kill: {status} {body}"),
                    Err(_) => return, // the server died mid-request: not acknowledged
                }
                if i % 3 == 0 {
                    match post(&http, &base, &format!("/api/v1/klusters/{kluster}/claim-next"), Some(&agent), json!({}))
                        .await
                    {
                        Ok((200, v)) => {
                            if let Some(id) = v["task"]["id"].as_str() {
                                claims.lock().expect("lock").insert(id.to_owned(), agent.clone());
                            }
                        }
                        Ok((status, body)) => panic!("unexpected answer before the kill: {status} {body}"),
                        Err(_) => return,
                    }
                }
            }
        }));
    }
    // let the stream run, then kill -9 while writes are in flight
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().expect("lock").len() < 2000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut server = server;
    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("reaped");
    for w in writers {
        w.await.expect("writer task");
    }
    let acked = acked.lock().expect("lock").clone();
    let claims = claims.lock().expect("lock").clone();
    let sent = sent.lock().expect("lock").clone();
    assert!(acked.len() >= 1000, "the stream ran long enough to matter ({} acks)", acked.len());
    drop(server);

    let server = start(dir.path()).await;
    let tasks = all_tasks(&http, &server.base, &kluster).await;
    let by_title: HashMap<String, Value> =
        tasks.iter().map(|t| (t["title"].as_str().expect("title").to_owned(), t.clone())).collect();
    assert_eq!(by_title.len(), tasks.len(), "no title stored twice");
    for (title, id) in &acked {
        let t = by_title.get(title).unwrap_or_else(|| panic!("acknowledged task {title} lost"));
        assert_eq!(t["id"], id.as_str());
    }
    for title in by_title.keys() {
        assert!(sent.contains(title), "task {title} was never sent");
    }
    let by_id: HashMap<&str, &Value> = tasks.iter().map(|t| (t["id"].as_str().expect("id"), t)).collect();
    for (id, agent) in &claims {
        let t = by_id.get(id.as_str()).unwrap_or_else(|| panic!("claimed task {id} lost"));
        assert_eq!(t["lease"]["holder"], agent.as_str(), "acknowledged claim of {id} lost");
    }
    let v: Value = http
        .get(format!("{}/api/v1/ledger/verify", server.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("verify")
        .json()
        .await
        .expect("json");
    assert_eq!(v["ok"], true, "ledger chain intact after kill -9: {v}");
    // one task.create event per stored task, no more, no less
    let mut creates = 0;
    let mut after = 0i64;
    loop {
        let page: Value = http
            .get(format!("{}/api/v1/ledger?action=task.create&after_seq={after}&limit=500", server.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("ledger")
            .json()
            .await
            .expect("json");
        let items = page["items"].as_array().expect("items");
        creates += items.len();
        match page["next_cursor"].as_str() {
            Some(c) => after = c.parse().expect("seq cursor"),
            None => break,
        }
    }
    assert_eq!(creates, tasks.len());
}
