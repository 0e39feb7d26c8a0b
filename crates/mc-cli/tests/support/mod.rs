//! What the MCP and `mc run` tests share: a real `mc server` on a loopback port (embedded SQLite in
//! a temp dir), `mc` commands with a clean environment, and `mc mcp` driven as a child process by
//! newline-delimited JSON-RPC.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const MC: &str = env!("CARGO_BIN_EXE_mc");
pub const TOKEN: &str = "test-token";
/// How long any single answer may take before a test gives up (generous: CI machines are slow).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// The golden tool list of `mc-mcp`.
pub fn golden_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../mc-mcp/tools.golden.json")
}

pub fn golden_tools() -> Value {
    let text = std::fs::read_to_string(golden_path()).expect("read tools.golden.json");
    serde_json::from_str::<Value>(&text).expect("golden is JSON")["tools"].clone()
}

/// A helper script of `mc-mcp`'s tests.
pub fn py_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../mc-mcp/tests/py").join(name)
}

/// `mc` with none of the developer's `MC_*` (or agent) settings.
pub fn command() -> Command {
    let mut cmd = Command::new(MC);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("MC_") || k.starts_with("GEMINI_CLI_") || k == "RUST_LOG" {
            cmd.env_remove(&*k);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// A running `mc server`; killed when dropped.
pub struct Server {
    child: Child,
    pub addr: String,
    log: PathBuf,
}

impl Server {
    /// `mc server` on a free port with its data in `dir/data` and MC_TOKEN=`TOKEN`. Embeddings
    /// are off: overlap and search judge on wording, fast and deterministic.
    pub fn start(dir: &Path) -> Server {
        for attempt in 0..3 {
            let addr = format!("127.0.0.1:{}", free_port());
            let log = dir.join(format!("server-{attempt}.log"));
            let child = command()
                .args(["server", "--listen", &addr, "--data-dir"])
                .arg(dir.join("data"))
                .env("MC_EMBEDDINGS", "off")
                .env("MC_TOKEN", TOKEN)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("server log"))
                .spawn()
                .expect("spawn mc server");
            let mut server = Server { child, addr, log };
            if server.wait_healthy() {
                return server;
            }
        }
        panic!("mc server did not start in 3 attempts");
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_healthy(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
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
        panic!("mc server did not become healthy:\n{}", self.log());
    }

    /// `mc --json <args>` against this server as the admin; the parsed stdout.
    pub fn mc_json(&self, args: &[&str]) -> Value {
        let out = command()
            .args(args)
            .arg("--json")
            .env("MC_BASE_URL", self.base_url())
            .env("MC_TOKEN", TOKEN)
            .output()
            .expect("run mc");
        assert!(out.status.success(), "mc {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("mc --json prints JSON")
    }

    /// A new mission and kluster; returns the kluster id.
    pub fn kluster(&self, name: &str) -> String {
        let m = self.mc_json(&["mission", "create", &format!("Mission for {name}")]);
        let mission = m["id"].as_str().expect("mission id").to_owned();
        let k = self.mc_json(&["kluster", "create", "--mission", &mission, name]);
        k["id"].as_str().expect("kluster id").to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn healthz(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.starts_with("HTTP/1.1 200")
}

/// `mc mcp` as a child process, spoken to line by line.
pub struct McpChild {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    next_id: u64,
    /// Every line the server wrote on stdout so far.
    pub seen: Vec<String>,
}

impl McpChild {
    /// Starts `mc mcp` against `server` as `agent` (none: no identity), with extra variables.
    pub fn start(server: &Server, agent: Option<&str>, extra_env: &[(&str, &str)]) -> McpChild {
        let mut cmd = command();
        cmd.arg("mcp").env("MC_BASE_URL", server.base_url()).env("MC_TOKEN", TOKEN);
        if let Some(a) = agent {
            cmd.env("MC_AGENT_ID", a);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn mc mcp");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        McpChild { child, stdin, lines: rx, next_id: 1, seen: Vec::new() }
    }

    /// Writes one line as is.
    pub fn send_raw(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).expect("write");
        stdin.write_all(b"\n").expect("write");
        stdin.flush().expect("flush");
    }

    /// The next line from the server, parsed.
    pub fn next_message(&mut self) -> Value {
        match self.lines.recv_timeout(ANSWER_TIMEOUT) {
            Ok(line) => {
                let v = serde_json::from_str(&line).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                self.seen.push(line);
                v
            }
            Err(RecvTimeoutError::Timeout) => panic!("no answer from mc mcp within {ANSWER_TIMEOUT:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("mc mcp closed its output"),
        }
    }

    /// Whether the server says anything within `wait` (it should not, e.g. after a notification).
    pub fn quiet_for(&mut self, wait: Duration) -> Option<String> {
        self.lines.recv_timeout(wait).ok()
    }

    /// Sends a request and returns the whole response message (result or error).
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send_raw(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string());
        loop {
            let msg = self.next_message();
            if msg.get("id") == Some(&json!(id)) {
                return msg;
            }
        }
    }

    pub fn initialize(&mut self) -> Value {
        let r = self.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}),
        );
        self.send_raw(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        r["result"].clone()
    }

    /// `tools/call`; returns the result (`structuredContent`, `isError`, `content`).
    pub fn call(&mut self, tool: &str, args: Value) -> Value {
        let r = self.request("tools/call", json!({"name": tool, "arguments": args}));
        assert!(r.get("error").is_none(), "protocol error calling {tool}: {r}");
        r["result"].clone()
    }

    /// A call expected to succeed; its structured content.
    pub fn ok(&mut self, tool: &str, args: Value) -> Value {
        let r = self.call(tool, args);
        assert_eq!(r["isError"], false, "{tool} failed: {r}");
        r["structuredContent"].clone()
    }

    /// A call expected to fail as a tool error; (code, message).
    pub fn tool_error(&mut self, tool: &str, args: Value) -> (String, String) {
        let r = self.call(tool, args);
        assert_eq!(r["isError"], true, "{tool} should have failed: {r}");
        let code = r["structuredContent"]["error"]["code"].as_str().expect("code").to_owned();
        let text = r["content"][0]["text"].as_str().expect("text").to_owned();
        (code, text)
    }

    /// Closes stdin (the end of the session) and waits for the process to exit.
    pub fn finish(mut self) -> ExitStatus {
        drop(self.stdin.take());
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "mc mcp did not exit after stdin closed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for McpChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
