//! Full-stack tests of the `mc` binary: a real `mc server` (embedded SQLite in a temp dir) on a
//! loopback port, driven by real `mc` commands, as a user or an agent would.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

const MC: &str = env!("CARGO_BIN_EXE_mc");
const TOKEN: &str = "test-token";

/// Every variable `mc` reads; cleared so the developer's environment cannot leak into a test.
const MC_VARS: &[&str] = &[
    "MC_BASE_URL",
    "MC_TOKEN",
    "MC_AGENT_ID",
    "MC_CONFIG_DIR",
    "MC_LISTEN",
    "MC_DATA_DIR",
    "MC_MAX_BODY_BYTES",
    "MC_SQLITE_SYNC",
    "MC_DATABASE_URL",
    "MC_EMBEDDINGS",
    "MC_EMBEDDINGS_URL",
    "MC_EMBEDDINGS_MODEL",
    "MC_EMBEDDINGS_KEY",
    "MC_EMBEDDINGS_DIM",
    "MC_EMBEDDINGS_MODEL_DIR",
    "MC_LOG",
    "RUST_LOG",
];

fn command() -> Command {
    let mut cmd = Command::new(MC);
    for v in MC_VARS {
        cmd.env_remove(v);
    }
    cmd.stdin(Stdio::null());
    cmd
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// A running `mc server`; killed when dropped.
struct Server {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Server {
    /// Starts `mc server` on a free port with its data in `dir/data`; `token` becomes MC_TOKEN.
    /// Embeddings are off: overlap and search judge on wording only, fast and deterministic.
    fn start(dir: &Path, token: Option<&str>) -> Server {
        // The port is free when picked but could be taken before the server binds: retry.
        for attempt in 0..3 {
            let addr = format!("127.0.0.1:{}", free_port());
            let log = dir.join(format!("server-{}-{attempt}.log", std::process::id()));
            let mut cmd = command();
            cmd.args(["server", "--listen", &addr, "--data-dir"])
                .arg(dir.join("data"))
                .env("MC_EMBEDDINGS", "off")
                .stdout(Stdio::null())
                .stderr(fs::File::create(&log).expect("server log file"));
            if let Some(t) = token {
                cmd.env("MC_TOKEN", t);
            }
            let child = cmd.spawn().expect("spawn mc server");
            let mut server = Server { child, addr, log };
            if server.wait_healthy() {
                return server;
            }
        }
        panic!("mc server did not start in 3 attempts");
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for `/healthz`; false if the server exited (e.g. the port was taken).
    fn wait_healthy(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                eprintln!("mc server exited early ({status}):\n{}", self.log());
                return false;
            }
            if healthz(&self.addr) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("mc server did not become healthy in 30 s:\n{}", self.log());
    }

    /// Sends SIGTERM and waits for the process to exit.
    #[cfg(unix)]
    fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "mc server did not stop within 15 s of SIGTERM:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn healthz(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.starts_with("HTTP/1.1 200")
}

/// The result of one `mc` run.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts success and returns stdout.
    fn ok(self) -> String {
        assert_eq!(self.code, 0, "mc failed: {self:#?}");
        self.stdout
    }

    /// Asserts success and parses stdout as JSON.
    fn json(self) -> Value {
        let out = self.ok();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {out}"))
    }

    /// Asserts failure with `code`, an `error:` line first and nothing after it but `hint:` lines;
    /// returns the error line.
    fn fails(&self, code: i32) -> String {
        assert_eq!(self.code, code, "unexpected exit code: {self:#?}");
        let mut lines = self.stderr.lines();
        let first = lines.next().unwrap_or_default().to_owned();
        assert!(first.starts_with("error: "), "first stderr line is not an error line: {self:#?}");
        for l in lines {
            assert!(l.starts_with("hint: "), "stray stderr line {l:?}: {self:#?}");
        }
        first
    }

    fn hint(&self) -> Option<&str> {
        self.stderr.lines().find_map(|l| l.strip_prefix("hint: "))
    }
}

/// An `mc` client configuration: server, token, agent identity, config dir.
struct Mc {
    base_url: String,
    token: String,
    agent: Option<String>,
    config_dir: PathBuf,
}

impl Mc {
    fn new(server: &Server, config_dir: &Path) -> Self {
        Mc { base_url: server.base_url(), token: TOKEN.into(), agent: None, config_dir: config_dir.to_owned() }
    }

    fn as_agent(&self, agent: &str) -> Self {
        Mc {
            base_url: self.base_url.clone(),
            token: self.token.clone(),
            agent: Some(agent.into()),
            config_dir: self.config_dir.clone(),
        }
    }

    fn with_token(&self, token: &str) -> Self {
        Mc {
            base_url: self.base_url.clone(),
            token: token.into(),
            agent: self.agent.clone(),
            config_dir: self.config_dir.clone(),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut cmd = command();
        cmd.args(args)
            .env("MC_BASE_URL", &self.base_url)
            .env("MC_TOKEN", &self.token)
            .env("MC_CONFIG_DIR", &self.config_dir);
        if let Some(a) = &self.agent {
            cmd.env("MC_AGENT_ID", a);
        }
        Run::from(cmd.output().expect("run mc"))
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        self.run(&all).json()
    }

    /// The fencing tokens remembered in the leases file, as JSON.
    fn leases(&self) -> Value {
        match fs::read_to_string(self.config_dir.join("leases.json")) {
            Ok(s) => serde_json::from_str(&s).expect("leases.json is JSON"),
            Err(_) => Value::Null,
        }
    }
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_owned()
}

/// Starts a server and returns it with a client, a mission and a kluster.
fn setup(dir: &TempDir) -> (Server, Mc, String, String) {
    let server = Server::start(dir.path(), Some(TOKEN));
    let mc = Mc::new(&server, &dir.path().join("config"));
    let mission = id_of(&mc.json(&["mission", "create", "Checkout v2", "--description", "new payment flow"]));
    let kluster = id_of(&mc.json(&["kluster", "create", "--mission", &mission, "API"]));
    (server, mc, mission, kluster)
}

/// Header and rows of a human table, split on runs of spaces.
fn table(out: &str) -> Vec<Vec<String>> {
    out.lines().map(|l| l.split("  ").map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned).collect()).collect()
}

#[test]
fn a_task_goes_through_its_lifecycle_with_remembered_fencing_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, mc, mission, kluster) = setup(&dir);

    let a = mc.json(&[
        "task",
        "create",
        "--kluster",
        &kluster,
        "Design the refund endpoint",
        "--priority",
        "1",
        "--path",
        "api/refunds/**",
        "--label",
        "Design",
    ]);
    let a_id = id_of(&a);
    assert_eq!(a["mission_id"], mission.as_str());
    assert_eq!(a["labels"], serde_json::json!(["design"]));
    assert_eq!(a["status"], "open");
    let b_id = id_of(&mc.json(&["task", "create", "--kluster", &kluster, "Implement refunds", "--depends-on", &a_id]));

    // --json prints the API's body: `show` of an unchanged task equals what `create` printed, less
    // the overlap found before creating it.
    let mut a = a;
    let created = a.as_object_mut().expect("an object");
    assert_eq!(created.remove("overlap_suggestions"), Some(serde_json::json!([])));
    created.remove("warnings");
    assert_eq!(mc.json(&["task", "show", &a_id]), a);
    let listed = mc.json(&["task", "list", "--kluster", &kluster]);
    let ids: Vec<_> = listed["items"].as_array().expect("items").iter().map(id_of).collect();
    assert_eq!(ids, vec![a_id.clone(), b_id.clone()]);

    // Only A is ready: B waits on it.
    let ready = mc.run(&["task", "ready", "--kluster", &kluster]).ok();
    let rows = table(&ready);
    assert_eq!(rows[0], ["ID", "STATUS", "PRI", "HOLDER", "TITLE"], "{ready}");
    assert_eq!(rows[1], [a_id.as_str(), "open", "1", "-", "Design the refund endpoint"], "{ready}");
    assert_eq!(rows.len(), 2, "{ready}");

    // agent-1 claims A; the fencing token is remembered for agent-1.
    let agent1 = mc.as_agent("agent-1");
    let claimed = agent1.json(&["task", "claim", &a_id]);
    assert_eq!(claimed["lease"]["holder"], "agent-1");
    let fence = claimed["lease"]["fencing_token"].as_u64().expect("token");
    assert_eq!(agent1.leases()["agents"]["agent-1"][&a_id], fence);

    // Heartbeat without --fence uses the remembered token.
    let beat = agent1.run(&["task", "heartbeat", &a_id]).ok();
    assert!(beat.starts_with(&format!("renewed the lease on task {a_id} until ")), "{beat}");

    // agent-2 knows no token for A...
    let agent2 = mc.as_agent("agent-2");
    let r = agent2.run(&["task", "heartbeat", &a_id]);
    let line = r.fails(2);
    assert_eq!(
        line,
        format!("error: no fencing token known for task {a_id}; pass --fence N (see `mc task show {a_id}`)")
    );
    // ...and even with the right one it is not the holder.
    let r = agent2.run(&["task", "release", &a_id, "--fence", &fence.to_string()]);
    let hint = r.hint().map(str::to_owned);
    let line = r.fails(1);
    assert!(line.contains("is held by agent-1"), "{line}");
    assert!(line.contains("task_held"), "{line}");
    assert_eq!(hint, Some(format!("see the current holder and fencing token with `mc task show {a_id}`")));

    // The holder with a stale token is refused, and the message names the holder.
    let stale = (fence + 5).to_string();
    let line = agent1.run(&["task", "release", &a_id, "--fence", &stale]).fails(1);
    assert!(line.contains(&format!("fencing token {stale} is stale")), "{line}");
    assert!(line.contains("held by agent-1"), "{line}");

    // Transitions and done use the remembered token; done forgets it.
    let started = agent1.json(&["task", "start", &a_id]);
    assert_eq!(started["status"], "in_progress");
    let done = agent1.run(&["task", "done", &a_id]).ok();
    assert_eq!(done.trim(), format!("task {a_id} is done"));
    assert_eq!(mc.json(&["task", "show", &a_id])["status"], "done");
    assert!(agent1.leases()["agents"].get("agent-1").is_none(), "{}", agent1.leases());

    // B is ready now; agent-2 takes it with claim-next, releases it, takes it again.
    let ready = mc.json(&["task", "ready", "--kluster", &kluster]);
    assert_eq!(ready["items"].as_array().expect("items").iter().map(id_of).collect::<Vec<_>>(), vec![b_id.clone()]);
    let next = agent2.json(&["task", "claim-next", "--kluster", &kluster]);
    assert_eq!(id_of(&next["task"]), b_id);
    let first_token = next["task"]["lease"]["fencing_token"].as_u64().expect("token");
    let released = agent2.json(&["task", "release", &b_id]);
    assert_eq!(released["status"], "open");
    assert!(released["lease"].is_null());
    assert!(agent2.leases()["agents"].get("agent-2").is_none(), "{}", agent2.leases());
    let again = agent2.run(&["task", "claim-next", "--kluster", &kluster]).ok();
    assert!(
        again.starts_with(&format!("claimed task {b_id} as agent-2 (fencing token {}", first_token + 1)),
        "{again}"
    );
    let held = mc.json(&["task", "list", "--holder", "agent-2", "--status", "claimed"]);
    assert_eq!(held["items"].as_array().expect("items").len(), 1);
    agent2.run(&["task", "done", &b_id]).ok();

    // Nothing left: claim-next says so and succeeds.
    let none = agent2.run(&["task", "claim-next", "--kluster", &kluster]).ok();
    assert_eq!(none.trim(), format!("no ready task in kluster {kluster}"));
    assert_eq!(agent2.json(&["task", "claim-next", "--kluster", &kluster]), serde_json::json!({ "task": null }));

    // The ledger recorded A's story, and the chain verifies.
    let events = mc.json(&["ledger", "list", "--entity", &a_id]);
    let events = events["items"].as_array().expect("items");
    assert!(events.iter().all(|e| e["entity_id"] == a_id.as_str()), "{events:?}");
    let actions: Vec<&str> = events.iter().filter_map(|e| e["action"].as_str()).collect();
    for want in ["task.create", "task.claim", "task.heartbeat", "task.complete"] {
        assert!(actions.contains(&want), "{want} missing from {actions:?}");
    }
    assert!(events.iter().any(|e| e["actor"].as_str().is_some_and(|a| a.ends_with("agent-1"))), "{events:?}");
    let verify = mc.run(&["ledger", "verify"]).ok();
    let total = mc.json(&["ledger", "list", "--limit", "500"])["items"].as_array().expect("items").len();
    assert!(verify.starts_with(&format!("ledger OK: {total} events, head ")), "{verify} (total {total})");
    assert_eq!(mc.json(&["ledger", "verify"])["ok"], true);
}

#[test]
fn a_token_remembered_from_an_expired_lease_is_refused_naming_the_new_holder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, mc, _mission, kluster) = setup(&dir);
    let task = id_of(&mc.json(&["task", "create", "--kluster", &kluster, "Short lease"]));
    let agent1 = mc.as_agent("agent-1");
    let agent2 = mc.as_agent("agent-2");

    let claimed = agent1.json(&["task", "claim", &task, "--ttl", "5"]);
    let old_token = claimed["lease"]["fencing_token"].as_u64().expect("token");
    // agent-2 is refused while the lease lives, then gets the task once it expired.
    let deadline = Instant::now() + Duration::from_secs(30);
    let new_token = loop {
        let r = agent2.run(&["task", "claim", &task, "--json"]);
        if r.code == 0 {
            let t: Value = serde_json::from_str(&r.stdout).expect("json");
            break t["lease"]["fencing_token"].as_u64().expect("token");
        }
        let line = r.fails(1);
        assert!(line.contains("held by agent-1") || line.contains("expired"), "{line}");
        assert!(Instant::now() < deadline, "the 5 s lease never expired");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(new_token > old_token, "{new_token} > {old_token}");

    // agent-1 still remembers its old token; every write with it is refused, naming agent-2.
    assert_eq!(agent1.leases()["agents"]["agent-1"][&task], old_token);
    for args in [vec!["task", "heartbeat", &task], vec!["task", "done", &task]] {
        let line = agent1.run(&args).fails(1);
        assert!(line.contains("agent-2"), "{args:?}: {line}");
    }
    assert_eq!(mc.json(&["task", "show", &task])["lease"]["holder"], "agent-2");
}

#[test]
fn doctor_passes_with_the_right_token_and_fails_with_a_wrong_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), Some(TOKEN));
    let mc = Mc::new(&server, &dir.path().join("config"));

    let out = mc.run(&["system", "doctor"]).ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    for (line, name) in lines.iter().zip(["reachable", "auth", "version", "storage", "clock", "overlap"]) {
        assert!(line.starts_with(&format!("[PASS] {name} ")), "{out}");
    }
    assert!(lines[5].contains("embeddings are off"), "this test server runs without embeddings: {out}");
    assert!(lines[1].contains("authenticated as admin"), "{out}");
    assert!(lines[2].contains(&format!("server {v}, mc {v}", v = env!("CARGO_PKG_VERSION"))), "{out}");
    let report = mc.json(&["system", "doctor"]);
    assert_eq!(report["ok"], true);
    assert_eq!(report["checks"].as_array().expect("checks").len(), 6);

    let r = mc.with_token("wrong-token").run(&["system", "doctor"]);
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(r.stdout.contains("[PASS] reachable"), "{r:#?}");
    assert!(r.stdout.contains("[FAIL] auth"), "{r:#?}");
    assert!(r.stdout.contains("hint: set MC_TOKEN"), "{r:#?}");
    assert!(!r.stdout.contains("[PASS] clock"), "clock needs auth: {r:#?}");
    let r = mc.with_token("wrong-token").run(&["system", "doctor", "--json"]);
    assert_eq!(r.code, 1);
    let report: Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(report["ok"], false);
    assert_eq!(report["checks"][1]["name"], "auth");
    assert_eq!(report["checks"][1]["status"], "fail");

    drop(server);
    let r = mc.run(&["system", "doctor"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.starts_with("[FAIL] reachable"), "{r:#?}");
}

#[test]
fn errors_are_one_line_with_distinct_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, mc, _mission, _kluster) = setup(&dir);

    // Refused by the server: exit 1, the server's message.
    let missing = "01a21317-0000-7000-8000-000000000000";
    let r = mc.run(&["task", "show", missing]);
    assert_eq!(r.stderr.lines().count(), 1, "{r:#?}");
    assert_eq!(r.fails(1), format!("error: task {missing} not found (not_found, HTTP 404)"));
    let line = mc.run(&["mission", "create", "  "]).fails(1);
    assert!(line.contains("name: must not be empty"), "{line}");

    // A wrong token: exit 1, with a hint.
    let r = mc.with_token("nope").run(&["mission", "list"]);
    assert!(r.hint().is_some_and(|h| h.contains("MC_TOKEN")), "{r:#?}");
    assert!(r.fails(1).contains("HTTP 401"));

    // Nobody listening: exit 3, with a hint to start the server.
    let gone = format!("http://127.0.0.1:{}", free_port());
    let mut unreachable = mc.with_token(TOKEN);
    unreachable.base_url = gone.clone();
    let r = unreachable.run(&["mission", "list"]);
    assert!(r.hint().is_some_and(|h| h.contains("mc server")), "{r:#?}");
    let line = r.fails(3);
    assert!(line.starts_with(&format!("error: cannot connect to {gone}")), "{line}");

    // Used wrongly: exit 2.
    assert_eq!(mc.run(&["task", "show", "not-a-uuid"]).code, 2);
    assert_eq!(mc.run(&["task", "create", "--kluster", missing, "t", "--priority", "9"]).code, 2);
    let r = mc.run(&["task", "claim", missing]);
    assert!(r.hint().is_some_and(|h| h.contains("MC_AGENT_ID")), "{r:#?}");
    assert!(r.fails(2).contains("needs an agent identity"));
    let r = mc.as_agent("bad agent!").run(&["mission", "list"]);
    assert!(r.fails(2).contains("invalid agent identity"), "{r:#?}");
}

#[test]
fn missions_and_klusters_list_as_tables_and_creates_are_idempotent_by_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, mc, mission, kluster) = setup(&dir);

    let first = id_of(&mc.json(&["mission", "create", "Retry me", "--idempotency-key", "key-1"]));
    let second = id_of(&mc.json(&["mission", "create", "Retry me", "--idempotency-key", "key-1"]));
    assert_eq!(first, second, "same key, same request: the first mission comes back");
    let line = mc.run(&["mission", "create", "Something else", "--idempotency-key", "key-1"]).fails(1);
    assert!(line.contains("key-1"), "{line}");
    let third = id_of(&mc.json(&["mission", "create", "Retry me"]));
    assert_ne!(third, first, "without a key every call creates");

    let out = mc.run(&["mission", "list"]).ok();
    let rows = table(&out);
    assert_eq!(rows[0], ["ID", "STATUS", "UPDATED", "NAME"], "{out}");
    assert_eq!(rows.len(), 4, "{out}");
    assert!(rows.iter().any(|r| r[0] == mission && r[1] == "active" && r[3] == "Checkout v2"), "{out}");

    let renamed = mc.json(&["mission", "update", &first, "--name", "Renamed"]);
    assert_eq!(renamed["name"], "Renamed");
    assert_eq!(mc.json(&["mission", "archive", &first])["status"], "archived");
    let active: Vec<String> =
        mc.json(&["mission", "list"])["items"].as_array().expect("items").iter().map(id_of).collect();
    assert!(!active.contains(&first), "archived missions are hidden by default");
    let all = mc.json(&["mission", "list", "--all"]);
    assert!(all["items"].as_array().expect("items").iter().any(|m| m["id"] == first.as_str()));
    let page = mc.json(&["mission", "list", "--all", "--limit", "1"]);
    let cursor = page["next_cursor"].as_str().expect("a next page").to_owned();
    let page2 = mc.json(&["mission", "list", "--all", "--limit", "1", "--cursor", &cursor]);
    assert_ne!(page2["items"][0]["id"], page["items"][0]["id"]);
    let human = mc.run(&["mission", "list", "--all", "--limit", "1"]).ok();
    assert!(human.trim_end().ends_with(&format!("(more: pass --cursor {cursor})")), "{human}");

    let out = mc.run(&["kluster", "list", "--mission", &mission]).ok();
    let rows = table(&out);
    assert_eq!(rows[0], ["ID", "MISSION", "STATUS", "NAME"], "{out}");
    assert_eq!(rows[1], [kluster.as_str(), mission.as_str(), "active", "API"], "{out}");
    let shown = mc.run(&["kluster", "show", &kluster]).ok();
    assert!(shown.starts_with(&format!("id           {kluster}\nname         API\n")), "{shown}");
    assert_eq!(mc.run(&["kluster", "update", &kluster]).code, 2, "nothing to update is a usage error");
}

/// Ids of the tasks of a kluster.
fn task_ids(mc: &Mc, kluster: &str) -> Vec<String> {
    mc.json(&["task", "list", "--kluster", kluster])["items"].as_array().expect("items").iter().map(id_of).collect()
}

#[test]
fn a_duplicate_task_is_refused_until_acknowledged_and_the_ledger_records_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, mc, _mission, kluster) = setup(&dir);

    let first = mc.json(&["task", "create", "--kluster", &kluster, "Add retries to the payment webhook"]);
    let first_id = id_of(&first);
    assert_eq!(first["overlap_suggestions"], serde_json::json!([]), "{first}");
    // Without an embedder the server judges on wording and says so.
    assert!(!first["warnings"].as_array().expect("warnings").is_empty(), "{first}");

    // The same title again: refused, naming the first task, with the suggestion table and a hint.
    let r = mc.run(&["task", "create", "--kluster", &kluster, "Add retries to the payment webhook"]);
    assert_eq!(r.code, 1, "{r:#?}");
    assert_eq!(r.stdout, "", "{r:#?}");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert!(lines[0].starts_with("error: "), "{r:#?}");
    assert!(lines[0].contains("overlap_detected"), "{r:#?}");
    assert!(lines[0].contains(&first_id), "{r:#?}");
    assert_eq!(lines.iter().filter(|l| l.starts_with("error: ")).count(), 1, "{r:#?}");
    let rows = table(&r.stderr);
    assert_eq!(rows[1], ["RELATION", "SCORE", "ID", "STATUS", "HOLDER", "TITLE"], "{r:#?}");
    assert_eq!(rows[2][0], "duplicate", "{r:#?}");
    assert_eq!(rows[2][2..], [first_id.as_str(), "open", "-", "Add retries to the payment webhook"], "{r:#?}");
    assert!(lines[3].starts_with("top match: "), "{r:#?}");
    assert_eq!(lines.last().copied(), Some("hint: reuse it, or pass --acknowledge-overlap to create anyway"), "{r:#?}");
    assert_eq!(task_ids(&mc, &kluster), [first_id.as_str()], "nothing was created");

    // Acknowledged: created, the duplicate reported, and the ledger records the acknowledgement.
    let second = mc.json(&[
        "task",
        "create",
        "--kluster",
        &kluster,
        "Add retries to the payment webhook",
        "--acknowledge-overlap",
    ]);
    let second_id = id_of(&second);
    assert_eq!(second["title"], "Add retries to the payment webhook");
    assert_eq!(second["overlap_suggestions"][0]["id"], first_id.as_str(), "{second}");
    assert_eq!(second["overlap_suggestions"][0]["relation"], "duplicate", "{second}");
    assert_eq!(task_ids(&mc, &kluster), [first_id.clone(), second_id.clone()]);

    let action = "task.create.overlap_acknowledged";
    let events = mc.json(&["ledger", "list", "--action", action]);
    let events = events["items"].as_array().expect("items");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["entity_id"], second_id.as_str());
    let out = mc.run(&["ledger", "list", "--action", action]).ok();
    let rows = table(&out);
    assert_eq!(rows[0], ["SEQ", "AT", "ACTOR", "ACTION", "ENTITY"], "{out}");
    assert_eq!(rows[1][3..], [action.to_owned(), format!("task {second_id}")], "{out}");
    assert_eq!(rows.len(), 2, "{out}");
}

#[test]
fn a_related_task_is_created_with_the_suggestion_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, mc, _mission, kluster) = setup(&dir);
    let staging = id_of(&mc.json(&["task", "create", "--kluster", &kluster, "Create Helm chart for staging"]));

    let r = mc.run(&["task", "create", "--kluster", &kluster, "Create Helm chart for production"]);
    let out = r.stdout.clone();
    assert_eq!(r.code, 0, "{r:#?}");
    assert!(out.starts_with("id "), "the task block comes first: {out}");
    assert!(out.contains("title          Create Helm chart for production\n"), "{out}");
    let (_block, rest) = out.split_once("\n\n").unwrap_or_else(|| panic!("no suggestions after the block: {out}"));
    let rows = table(rest);
    assert_eq!(rows[0], ["RELATION", "SCORE", "ID", "STATUS", "HOLDER", "TITLE"], "{out}");
    assert_eq!(rows[1][0], "related", "{out}");
    assert_eq!(rows[1][2..], [staging.as_str(), "open", "-", "Create Helm chart for staging"], "{out}");
    let score: f32 = rows[1][1].parse().expect("a score");
    assert!((0.0..=1.0).contains(&score), "{out}");
    let lines: Vec<&str> = rest.lines().collect();
    assert_eq!(lines.len(), 3, "one suggestion, then why: {out}");
    assert!(lines[2].starts_with("top match: "), "{out}");
    // The server's warnings go to stderr, one line each, not into the output.
    assert!(!r.stderr.is_empty() && r.stderr.lines().all(|l| l.starts_with("warning: ")), "{r:#?}");
    assert!(!out.contains("warning"), "{out}");
}

#[test]
fn task_check_and_task_overlap_find_duplicates_without_creating_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, mc, mission, kluster) = setup(&dir);
    let first = id_of(&mc.json(&["task", "create", "--kluster", &kluster, "Rotate the database credentials"]));

    // Nothing else yet: the task overlaps nothing.
    assert_eq!(mc.run(&["task", "overlap", &first]).ok().trim(), "no overlap found");
    assert_eq!(mc.json(&["task", "overlap", &first])["overlap_suggestions"], serde_json::json!([]));

    // A draft with the same title is a duplicate; checking it creates nothing.
    let out = mc.run(&["task", "check", "--kluster", &kluster, "Rotate the database credentials"]).ok();
    let rows = table(&out);
    assert_eq!(rows[0], ["RELATION", "SCORE", "ID", "STATUS", "HOLDER", "TITLE"], "{out}");
    assert_eq!(rows[1][0], "duplicate", "{out}");
    assert_eq!(rows[1][2], first, "{out}");
    assert!(out.lines().nth(2).is_some_and(|l| l.starts_with("top match: ")), "{out}");
    let v = mc.json(&[
        "task",
        "check",
        "--mission",
        &mission,
        "Rotate the database credentials",
        "--description",
        "quarterly",
        "--path",
        "ops/**",
    ]);
    assert_eq!(v["overlap_suggestions"][0]["id"], first.as_str(), "{v}");
    assert_eq!(v["overlap_suggestions"][0]["kind"], "task", "{v}");
    assert!(v["overlap_suggestions"][0]["reasons"].as_array().is_some_and(|r| !r.is_empty()), "{v}");
    assert_eq!(task_ids(&mc, &kluster), [first.as_str()], "a check creates nothing");
    let out = mc.run(&["task", "check", "--kluster", &kluster, "Translate the onboarding emails to German"]).ok();
    assert_eq!(out.trim(), "no overlap found");

    // Scope is required, and one only; a missing kluster is the server's 404.
    assert_eq!(mc.run(&["task", "check", "Rotate"]).code, 2);
    assert_eq!(mc.run(&["task", "check", "--kluster", &kluster, "--mission", &mission, "Rotate"]).code, 2);
    let missing = "01a21317-0000-7000-8000-000000000000";
    assert!(mc.run(&["task", "check", "--kluster", missing, "Rotate"]).fails(1).contains("not_found"));

    // Once a duplicate exists, the existing task overlaps it.
    let second = id_of(&mc.json(&[
        "task",
        "create",
        "--kluster",
        &kluster,
        "Rotate the database credentials",
        "--acknowledge-overlap",
    ]));
    let v = mc.json(&["task", "overlap", &first]);
    let ids: Vec<&str> =
        v["overlap_suggestions"].as_array().expect("suggestions").iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids, [second.as_str()], "{v}");
}

#[test]
fn search_finds_tasks_by_a_word_of_their_title_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, mc, mission, kluster) = setup(&dir);
    let helm = id_of(&mc.json(&["task", "create", "--kluster", &kluster, "Create Helm chart for staging"]));
    let creds = id_of(&mc.json(&[
        "task",
        "create",
        "--kluster",
        &kluster,
        "Rotate the database credentials",
        "--label",
        "ops",
    ]));

    let r = mc.run(&["search", "helm"]);
    assert_eq!(r.code, 0, "{r:#?}");
    let rows = table(&r.stdout);
    assert_eq!(rows[0], ["SCORE", "ID", "STATUS", "TITLE", "WHY"], "{r:#?}");
    assert_eq!(rows.len(), 2, "{r:#?}");
    assert_eq!(rows[1][1..4], [helm.as_str(), "open", "Create Helm chart for staging"], "{r:#?}");
    assert!(rows[1][4].contains("helm"), "the WHY column names the matched term: {r:#?}");
    assert!(r.stderr.lines().all(|l| l.starts_with("warning: ")), "{r:#?}");

    // Several words are one query; --json prints the response.
    let v = mc.json(&["search", "database", "credentials", "--mission", &mission]);
    let items = v["items"].as_array().expect("items");
    assert_eq!(items[0]["task"]["id"], creds.as_str(), "{v}");
    assert!(items[0]["score"].as_f64().is_some_and(|s| s > 0.0), "{v}");
    let why = items[0]["why"].as_array().expect("why");
    assert!(why.iter().any(|w| w.as_str().is_some_and(|w| w.contains("database"))), "{v}");
    assert_eq!(items.len(), 1, "the helm chart matches neither word: {v}");
    assert!(!v["warnings"].as_array().expect("warnings").is_empty(), "wording only, and said so: {v}");

    // Filters.
    let none = mc.json(&["search", "helm", "--status", "done"]);
    assert_eq!(none["items"], serde_json::json!([]));
    assert_eq!(mc.run(&["search", "helm", "--status", "done"]).ok().trim(), "no matching tasks");
    assert_eq!(mc.json(&["search", "helm", "--label", "ops"])["items"], serde_json::json!([]));
    let v = mc.json(&["search", "rotate", "--label", "ops", "--kluster", &kluster, "--limit", "1"]);
    assert_eq!(v["items"].as_array().expect("items").len(), 1);

    // An empty query is refused with one error line; so is a limit out of range.
    let r = mc.run(&["search", ""]);
    assert_ne!(r.code, 0);
    let line = r.fails(2);
    assert_eq!(line, "error: the search query is empty");
    assert_eq!(r.stderr.lines().filter(|l| l.starts_with("error: ")).count(), 1, "{r:#?}");
    assert_eq!(mc.run(&["search", "  "]).code, 2);
    assert_eq!(mc.run(&["search"]).code, 2);
    assert_eq!(mc.run(&["search", "helm", "--limit", "101"]).code, 2);

    // Klusters are searched by their name and description.
    let refunds =
        id_of(&mc.json(&["kluster", "create", "--mission", &mission, "Refunds", "--description", "money back"]));
    let out = mc.run(&["search", "--klusters", "refunds"]).ok();
    let rows = table(&out);
    assert_eq!(rows[0], ["SCORE", "ID", "NAME", "WHY"], "{out}");
    assert_eq!(rows[1][1], refunds, "{out}");
    assert_eq!(rows.len(), 2, "{out}");
    let v = mc.json(&["search", "--klusters", "money", "--mission", &mission]);
    assert_eq!(v["items"][0]["kluster"]["id"], refunds.as_str(), "{v}");
    assert_eq!(mc.run(&["search", "--klusters", "nothing-like-it"]).ok().trim(), "no matching klusters");
    assert_eq!(mc.run(&["search", "--klusters", "refunds", "--status", "open"]).code, 2, "tasks-only filter");
}

#[test]
#[cfg(unix)]
fn the_server_generates_a_token_once_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), None);
    let log = server.log();
    let prefix = "generated admin token (shown once, store it): ";
    let token = log
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no generated token in the log:\n{log}"))
        .trim()
        .to_owned();
    assert!(token.starts_with("mct_") && token.len() > 40, "{token}");
    // the banner is printed just after the port accepts connections: wait for it
    let listening = format!("MissionControl listening on http://{} (data: ", server.addr);
    let mut log = log;
    for _ in 0..100 {
        if log.contains(&listening) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        log = server.log();
    }
    assert!(log.contains(&listening), "{log}");

    let mc = Mc::new(&server, &dir.path().join("config")).with_token(&token);
    let mission = id_of(&mc.json(&["mission", "create", "Survives restarts"]));

    let status = server.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}\n{}", server.log());
    assert!(server.log().contains("shutting down"), "{}", server.log());

    // Same data dir, still no MC_TOKEN: no new token; the old one and the data are still there.
    let server = Server::start(dir.path(), None);
    assert!(!server.log().contains(prefix), "{}", server.log());
    let mc = Mc::new(&server, &dir.path().join("config")).with_token(&token);
    assert_eq!(mc.json(&["mission", "show", &mission])["name"], "Survives restarts");
}

#[test]
fn server_migrate_reports_applied_versions_then_up_to_date() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    let out = Run::from(command().args(["server", "migrate", "--data-dir", data]).output().expect("run")).ok();
    assert!(out.starts_with("applied migrations 1"), "{out}");
    assert!(dir.path().join("data").join("mc.db").exists());
    let out = Run::from(command().args(["server", "migrate", "--data-dir", data]).output().expect("run")).ok();
    assert!(out.starts_with("schema is up to date"), "{out}");
    let v =
        Run::from(command().args(["server", "migrate", "--data-dir", data, "--json"]).output().expect("run")).json();
    assert_eq!(v["applied"], serde_json::json!([]));
}

#[test]
fn version_prints_this_binary_version() {
    let out = Run::from(command().arg("version").output().expect("run")).ok();
    assert_eq!(out, format!("mc {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn server_calibrate_measures_the_shipped_scorer_and_names_an_endpoint_it_cannot_reach() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    // the bundled model has a shipped scorer: measured on the shipped pairs, nothing is kept
    let v =
        Run::from(command().args(["server", "calibrate", "--data-dir", data, "--json"]).output().expect("run")).json();
    assert_eq!(v["scorer"], "shipped", "{v}");
    assert!(v["embedder"].as_str().expect("embedder").starts_with("pocket-encoder/"), "{v}");
    let held = &v["holdout"];
    let (dups, true_dups, said) = (
        held["duplicates"].as_u64().expect("duplicates"),
        held["true_duplicate"].as_u64().expect("true duplicates"),
        held["said_duplicate"].as_u64().expect("said duplicate"),
    );
    assert!(dups >= 95 && true_dups * 10 >= said * 9, "held-out precision below 0.9: {held}");
    assert_eq!(held["surfaced_unrelated"], 0, "{held}");
    assert_eq!(held["blocked_wrong"], 0, "{held}");
    assert_eq!(v["kept"], Value::Null);
    assert!(!dir.path().join("data").join("scorers").exists());

    // an endpoint nobody answers: one error line naming it, and nothing kept
    let port = free_port();
    let run = Run::from(
        command()
            .args(["server", "calibrate", "--data-dir", data])
            .env("MC_EMBEDDINGS_URL", format!("http://127.0.0.1:{port}/v1"))
            .env("MC_EMBEDDINGS_DIM", "8")
            .output()
            .expect("run"),
    );
    let err = run.fails(1);
    assert!(err.contains(&format!("openai/text-embedding-3-small@127.0.0.1:{port}")), "{err}");
    assert!(!dir.path().join("data").join("scorers").exists());
}

/// The all-MiniLM-L6-v2 directory from `MC_TEST_MINILM_DIR`; `None` (skip) when unset, unless
/// `MC_REQUIRE_MINILM=1` (CI).
fn minilm_dir() -> Option<PathBuf> {
    match std::env::var_os("MC_TEST_MINILM_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir)),
        None if std::env::var("MC_REQUIRE_MINILM").is_ok_and(|v| v == "1") => {
            panic!("MC_REQUIRE_MINILM=1 but MC_TEST_MINILM_DIR is not set")
        }
        None => None,
    }
}

#[cfg(unix)]
#[test]
fn server_calibrate_fits_another_model_as_the_shipped_scorer_was_fitted() {
    let Some(minilm) = minilm_dir() else {
        println!("skipping: MC_TEST_MINILM_DIR is not set");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    let calibrate = |model: &Path| {
        Run::from(
            command()
                .args(["server", "calibrate", "--data-dir", data, "--json"])
                .env("MC_EMBEDDINGS_MODEL_DIR", model)
                .output()
                .expect("run"),
        )
        .json()
    };
    let shipped = calibrate(&minilm);
    assert_eq!(shipped["scorer"], "shipped", "{shipped}");
    // The same weights under another config text: to the server another model (its fingerprint
    // differs), so no shipped scorer applies and one is fitted, by the procedure that fitted the
    // shipped one: the figures must come out the same, except that a calibrated scorer blocks
    // only far beyond any non-duplicate it saw (a larger block margin), so it blocks fewer.
    let other = dir.path().join("other").join("model");
    fs::create_dir_all(&other).expect("mkdir");
    std::os::unix::fs::symlink(minilm.join("model.safetensors"), other.join("model.safetensors")).expect("link");
    fs::copy(minilm.join("tokenizer.json"), other.join("tokenizer.json")).expect("copy");
    let config = fs::read_to_string(minilm.join("config.json")).expect("config");
    fs::write(other.join("config.json"), format!("{config}\n")).expect("write");
    let fitted = calibrate(&other);
    assert_eq!(fitted["scorer"], "calibrated", "{fitted}");
    assert_ne!(fitted["embedder"], shipped["embedder"]);
    let (mut fitted_holdout, mut shipped_holdout) = (fitted["holdout"].clone(), shipped["holdout"].clone());
    let blocked = |figures: &mut Value| {
        let figures = figures.as_object_mut().expect("figures");
        let counts = (figures.remove("blocked"), figures.remove("blocked_wrong"));
        let count = |v: Option<Value>| v.and_then(|v| v.as_u64()).expect("a block count");
        (count(counts.0), count(counts.1))
    };
    let (fitted_blocks, fitted_wrong) = blocked(&mut fitted_holdout);
    let (shipped_blocks, _) = blocked(&mut shipped_holdout);
    assert_eq!(fitted_holdout, shipped_holdout, "calibration reproduces the shipped scorer's held-out figures");
    assert!(fitted_blocks <= shipped_blocks, "calibrated {fitted_blocks} blocks, shipped {shipped_blocks}");
    assert_eq!(fitted_wrong, 0, "a calibrated scorer blocked a pair that is not a duplicate");
    let kept = PathBuf::from(fitted["kept"].as_str().expect("kept path"));
    assert!(kept.starts_with(dir.path().join("data").join("scorers")) && kept.is_file(), "{}", kept.display());
}

#[test]
fn docs_are_written_from_files_versioned_refused_as_duplicates_and_searched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, mc, mission, kluster) = setup(&dir);
    let text = dir.path().join("runbook.md");
    fs::write(&text, "# Restore\n1. stop writes\n2. restore the latest snapshot\n").expect("write the text");
    let path = text.to_str().expect("utf-8 path");

    let out = mc.run(&["doc", "create", "--kluster", &kluster, "Restore the staging database", "--file", path]).ok();
    let rows = table(&out);
    assert_eq!(rows[0][0], "id", "{out}");
    let id = rows[0][1].clone();
    assert!(out.contains("version") && out.contains("1. stop writes"), "{out}");
    let artifact = mc.json(&[
        "doc",
        "create",
        "--mission",
        &mission,
        "Weekly refund totals",
        "--kind",
        "artifact",
        "--body",
        "totals",
        "--path",
        "reports/refunds/*.csv",
    ]);
    assert_eq!((artifact["kind"].as_str(), artifact["kluster_id"].as_null()), (Some("artifact"), Some(())));

    // a draft is checked without writing anything
    let out = mc.run(&["doc", "check", "--kluster", &kluster, "Restore the staging database", "--file", path]).ok();
    let rows = table(&out);
    assert_eq!(rows[0], ["RELATION", "SCORE", "ID", "STATUS", "HOLDER", "TITLE"], "{out}");
    assert_eq!(
        (rows[1][0].as_str(), rows[1][2].as_str(), rows[1][3].as_str()),
        ("duplicate", id.as_str(), "v1"),
        "{out}"
    );

    // the same doc again: refused, naming the first, with the generic hint
    let r = mc.run(&["doc", "create", "--kluster", &kluster, "Restore the staging database", "--file", path]);
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(r.stderr.lines().next().is_some_and(|l| l.contains("overlap_detected") && l.contains(&id)), "{r:#?}");
    assert_eq!(r.hint(), Some("reuse it, or pass --acknowledge-overlap to create anyway"), "{r:#?}");

    // a new version from standard input; a stale version is a conflict
    let mut child = command()
        .args(["--json", "doc", "update", &id, "--file", "-", "--if-version", "1"])
        .env("MC_BASE_URL", &mc.base_url)
        .env("MC_TOKEN", TOKEN)
        .env("MC_CONFIG_DIR", dir.path().join("config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mc doc update");
    child.stdin.take().expect("stdin").write_all(b"1. stop writes\n2. restore\n3. verify checksums\n").expect("send");
    let out = child.wait_with_output().expect("update ran");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v2: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v2["version"], 2, "{v2}");
    let r = mc.run(&["doc", "update", &id, "--title", "Restore staging", "--if-version", "1"]);
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(r.stderr.contains("version_conflict"), "{r:#?}");
    assert_eq!(mc.run(&["doc", "update", &id]).code, 2, "nothing to update is a usage error");
    let shown = mc.run(&["doc", "show", &id]).ok();
    assert!(shown.trim_end().ends_with("3. verify checksums"), "{shown}");

    // lists and search
    let out = mc.run(&["doc", "list", "--mission", &mission]).ok();
    let rows = table(&out);
    assert_eq!(rows[0], ["ID", "KIND", "VERSION", "UPDATED", "TITLE"], "{out}");
    assert_eq!(rows.len(), 3, "{out}");
    assert_eq!(rows[1][1], "artifact", "newest first: {out}");
    let found = mc.json(&["search", "--docs", "checksums"]);
    assert_eq!(found["items"][0]["doc"]["id"], id.as_str(), "{found}");
    let none = mc.json(&["search", "--docs", "--kind", "artifact", "checksums"]);
    assert_eq!(none["items"], serde_json::json!([]), "{none}");
    assert_eq!(mc.run(&["search", "--docs", "--kind", "artifact", "checksums"]).ok().trim(), "no matching docs");
    assert_eq!(mc.run(&["search", "--kind", "doc", "x"]).code, 2, "--kind needs --docs");
}
