//! MCP end to end: `mc mcp` (stdio) and the server's `/mcp/tools`, `/mcp/call` and Streamable HTTP
//! `/mcp`, against a real `mc server`; and the official MCP Python SDK as a client over both
//! transports (skipped with a notice when the SDK is not installed, unless MC_REQUIRE_MCP_SDK=1).

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::{McpChild, Server, TOKEN, command, golden_tools};

#[test]
fn stdio_lists_the_golden_tools_and_runs_the_work_loop_without_fencing_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let kluster = server.kluster("API");
    let mut mcp = McpChild::start(&server, Some("agent-1"), &[]);

    let init = mcp.initialize();
    assert_eq!(init["serverInfo"]["name"], "missioncontrol");
    assert!(init["capabilities"]["tools"].is_object(), "{init}");
    assert!(init["instructions"].as_str().is_some_and(|i| i.contains("load_kluster_workspace")));
    let listed = mcp.request("tools/list", json!({}));
    assert_eq!(listed["result"]["tools"], golden_tools(), "tools/list differs from tools.golden.json");

    let ws = mcp.ok("load_kluster_workspace", json!({"kluster_id": kluster}));
    assert_eq!(ws["kluster"]["id"], kluster.as_str());
    assert_eq!(ws["kluster"]["name"], "API");
    assert_eq!(ws["you"], "agent-1");
    assert_eq!((ws["ready"].clone(), ws["claimed"].clone()), (json!([]), json!([])));

    let created = mcp.ok(
        "create_task",
        json!({"kluster_id": kluster, "title": "Design the refund endpoint", "priority": 1, "labels": ["api"]}),
    );
    let task = created["task"]["id"].as_str().expect("id").to_owned();
    assert_eq!(created["overlap_suggestions"], json!([]));
    let later =
        mcp.ok("create_task", json!({"kluster_id": kluster, "title": "Implement refunds", "depends_on": [task]}));
    let later_id = later["task"]["id"].as_str().expect("id").to_owned();
    let ready = mcp.ok("list_ready_tasks", json!({"kluster_id": kluster}));
    let ready_ids: Vec<&str> =
        ready["items"].as_array().expect("items").iter().filter_map(|t| t["id"].as_str()).collect();
    assert_eq!(ready_ids, [task.as_str()], "the dependent task waits");

    let claimed = mcp.ok("claim_next_task", json!({"kluster_id": kluster, "ttl_seconds": 60}));
    assert_eq!(claimed["task"]["id"], task.as_str());
    assert_eq!((claimed["task"]["holder"].clone(), claimed["task"]["yours"].clone()), (json!("agent-1"), json!(true)));
    // No fencing token is ever passed: the bridge remembers it.
    let beat = mcp.ok("heartbeat_task", json!({"task_id": task, "ttl_seconds": 90}));
    assert_eq!(beat["status"], "claimed");
    let moved =
        mcp.ok("update_task", json!({"task_id": task, "status": "in_progress", "description": "REST + events"}));
    assert_eq!(moved["status"], "in_progress");
    let detail = mcp.ok("get_task", json!({"task_id": task}));
    assert_eq!(detail["description"], "REST + events");
    assert_eq!(detail["yours"], true);
    let done = mcp.ok("complete_task", json!({"task_id": task}));
    assert_eq!(done["status"], "done");
    // Done: the bridge forgot the lease, and says so in terms of the next step.
    let (code, text) = mcp.tool_error("release_task", json!({"task_id": task}));
    assert_eq!(code, "no_lease_in_session");
    assert!(text.contains("call claim_task first"), "{text}");

    let ws = mcp.ok("load_kluster_workspace", json!({"kluster_id": kluster}));
    let ready: Vec<&str> = ws["ready"].as_array().expect("ready").iter().filter_map(|t| t["id"].as_str()).collect();
    assert_eq!(ready, [later_id.as_str()]);
    let actions: Vec<&str> =
        ws["recent_events"].as_array().expect("events").iter().filter_map(|e| e["action"].as_str()).collect();
    for a in ["task.create", "task.claim", "task.heartbeat", "task.complete"] {
        assert!(actions.contains(&a), "{a} missing from recent events {actions:?}");
    }

    let found = mcp.ok("search_tasks", json!({"query": "refund endpoint", "limit": 5}));
    assert_eq!(found["items"][0]["id"], task.as_str(), "{found}");
    assert!(found["items"][0]["why"].as_array().is_some_and(|w| !w.is_empty()));
    let missions = mcp.ok("list_missions", json!({}));
    assert_eq!(missions["items"][0]["name"], "Mission for API");
    let klusters = mcp.ok("list_klusters", json!({"mission_id": missions["items"][0]["id"]}));
    assert_eq!(klusters["items"][0]["id"], kluster.as_str());
    let overlap = mcp.ok("get_overlap_suggestions", json!({"kluster_id": kluster, "title": "Implement the refunds"}));
    assert_eq!(overlap["overlap_suggestions"][0]["id"], later_id.as_str(), "{overlap}");

    assert!(mcp.finish().success(), "mc mcp exits 0 when the client closes stdin");
}

#[test]
fn bad_input_gets_protocol_or_tool_errors_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let kluster = server.kluster("API");
    let mut mcp = McpChild::start(&server, Some("agent-1"), &[]);
    mcp.initialize();

    // Not JSON at all: a parse error with a null id (JSON-RPC 2.0), and the next request is served.
    mcp.send_raw("this is not json {");
    let r = mcp.next_message();
    assert_eq!(r["error"]["code"], -32700, "{r}");
    assert!(r["id"].is_null(), "{r}");
    assert_eq!(mcp.request("ping", json!({}))["result"], json!({}));
    // JSON but not JSON-RPC: an "invalid request" error.
    mcp.send_raw(r#"{"id": 5, "method": "ping"}"#);
    assert_eq!(mcp.next_message()["error"]["code"], -32600);
    // An unknown method, an unknown tool, params of the wrong shape: protocol errors with the id.
    assert_eq!(mcp.request("no/such/method", json!({}))["error"]["code"], -32601);
    let r = mcp.request("tools/call", json!({"name": "drop_database", "arguments": {}}));
    assert_eq!(r["error"]["code"], -32602);
    assert!(r["error"]["message"].as_str().is_some_and(|m| m.contains("there is no tool `drop_database`")), "{r}");
    assert!(mcp.request("tools/call", json!({"name": "get_task", "arguments": [1]}))["error"].is_object());

    // Wrong argument types and unknown fields: tool errors naming the argument.
    let (code, text) = mcp.tool_error("search_tasks", json!({"query": "x", "limit": "five"}));
    assert_eq!(code, "invalid_arguments");
    assert_eq!(
        text,
        "search_tasks: invalid argument `limit`: invalid type: string \"five\", expected a non-negative integer; \
         see its input schema"
    );
    let (_, text) = mcp.tool_error("get_task", json!({"task_id": "not-a-uuid"}));
    assert_eq!(text, "invalid argument `task_id`: `not-a-uuid` is not a valid task id (a UUID)");
    let (_, text) = mcp.tool_error("claim_task", json!({"task": "x"}));
    assert!(text.contains("unknown field `task`"), "{text}");
    let (code, text) = mcp.tool_error("get_task", json!({}));
    assert_eq!(code, "invalid_arguments");
    assert!(text.contains("missing field `task_id`"), "{text}");
    // Rules the server checks come back with its words.
    let (code, text) = mcp.tool_error("create_task", json!({"kluster_id": kluster, "title": "   "}));
    assert_eq!(code, "validation_failed");
    assert!(text.starts_with("invalid argument: title"), "{text}");
    let (code, text) = mcp.tool_error("get_task", json!({"task_id": "01a00000-0000-7000-8000-000000000000"}));
    assert_eq!(code, "not_found");
    assert!(text.contains("check the id"), "{text}");

    // Huge arguments: refused before anything is sent.
    let (code, text) = mcp.tool_error("search_tasks", json!({"query": "x".repeat(3 * 1024 * 1024)}));
    assert_eq!(code, "arguments_too_large");
    assert!(text.contains("the limit is 1048576"), "{text}");
    // A line over the 16 MiB line limit is discarded whole and answered as an invalid request.
    let huge = json!({"jsonrpc": "2.0", "id": 999, "method": "ping", "params": {"pad": "y".repeat(17 << 20)}});
    mcp.send_raw(&huge.to_string());
    let r = mcp.next_message();
    assert_eq!(r["error"]["code"], -32600, "{r}");
    assert!(r["error"]["message"].as_str().is_some_and(|m| m.contains("16 MiB line limit")), "{r}");
    assert_eq!(mcp.request("tools/list", json!({}))["result"]["tools"], golden_tools());

    // Everything on stdout was protocol.
    assert!(mcp.seen.iter().all(|l| serde_json::from_str::<Value>(l).is_ok()));
    assert!(mcp.finish().success());
}

#[test]
fn toolsets_limit_what_a_session_lists_and_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let mut mcp = McpChild::start(&server, Some("agent-1"), &[("MC_MCP_TOOLSETS", "core")]);
    mcp.initialize();
    let tools = mcp.request("tools/list", json!({}))["result"]["tools"].clone();
    let names: Vec<&str> = tools.as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "load_kluster_workspace",
            "get_task",
            "list_ready_tasks",
            "claim_next_task",
            "claim_task",
            "heartbeat_task",
            "release_task",
            "complete_task"
        ]
    );
    let r = mcp.request("tools/call", json!({"name": "create_task", "arguments": {}}));
    assert_eq!(r["error"]["code"], -32602);
    assert!(r["error"]["message"].as_str().is_some_and(|m| m.contains("`plan` toolset")), "{r}");
    drop(mcp);

    // A session without an agent identity may read, not claim.
    let kluster = server.kluster("API");
    let mut anon = McpChild::start(&server, None, &[]);
    anon.initialize();
    anon.ok("load_kluster_workspace", json!({"kluster_id": kluster}));
    let (code, text) = anon.tool_error("claim_next_task", json!({"kluster_id": kluster}));
    assert_eq!(code, "agent_required");
    assert!(text.contains("MC_AGENT_ID"), "{text}");

    // A bad toolset name stops `mc mcp` at once, saying which names exist.
    let out = command()
        .args(["mcp", "--toolsets", "core,everything"])
        .env("MC_BASE_URL", server.base_url())
        .output()
        .expect("run mc mcp");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown toolset `everything` (valid: core, search, plan, or all)"), "{err}");
    assert!(out.stdout.is_empty(), "nothing but protocol on stdout");
}

#[tokio::test]
async fn http_lists_tools_publicly_and_calls_them_with_the_callers_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let kluster = server.kluster("API");
    let base = server.base_url();
    let http = reqwest::Client::new();

    let tools: Value = http.get(format!("{base}/mcp/tools")).send().await.expect("get").json().await.expect("json");
    assert_eq!(tools["tools"], golden_tools(), "GET /mcp/tools serves the same registry");
    let core: Value =
        http.get(format!("{base}/mcp/tools?toolsets=core")).send().await.expect("get").json().await.expect("json");
    assert_eq!(core["tools"].as_array().map(Vec::len), Some(8));

    let call = |body: Value, agent: Option<&'static str>| {
        let mut rb = http.post(format!("{base}/mcp/call")).bearer_auth(TOKEN).json(&body);
        if let Some(a) = agent {
            rb = rb.header("x-mc-agent", a);
        }
        async move {
            let resp = rb.send().await.expect("post");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("json body"))
        }
    };
    let (status, body) = call(
        json!({"tool": "create_task", "args": {"kluster_id": kluster, "title": "Rotate the webhook signing key"}}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let task = body["result"]["task"]["id"].as_str().expect("id").to_owned();
    let (status, body) =
        call(json!({"tool": "search_tasks", "args": {"query": "webhook signing", "limit": 5}}), None).await;
    assert_eq!((status, body["result"]["items"][0]["id"].clone()), (200, json!(task)));

    // Ownership over the stateless route: the claim's token is passed back explicitly.
    let (status, body) = call(json!({"tool": "claim_task", "args": {"task_id": task}}), Some("agent-h")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["holder"], "agent-h");
    let (status, body) = call(json!({"tool": "complete_task", "args": {"task_id": task}}), Some("agent-h")).await;
    assert_eq!((status, body["error"]["code"].clone()), (409, json!("no_lease_in_session")), "{body}");
    let detail = call(json!({"tool": "get_task", "args": {"task_id": task}}), None).await.1;
    let fence = detail["result"]["fencing_token"].clone();
    let (status, body) =
        call(json!({"tool": "complete_task", "args": {"task_id": task, "fencing_token": fence}}), Some("agent-h"))
            .await;
    assert_eq!((status, body["result"]["status"].clone()), (200, json!("done")), "{body}");
    // Another agent is refused with the guidance of the MCP tools.
    let (status, body) = call(json!({"tool": "claim_task", "args": {"task_id": task}}), Some("agent-x")).await;
    assert_eq!((status, body["error"]["code"].clone()), (409, json!("not_claimable")), "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.ends_with("call claim_next_task for ready work")));

    // Refusals: no token, a bad token, an unknown tool, a bad body, bad arguments.
    let r = http.post(format!("{base}/mcp/call")).json(&json!({"tool": "list_missions"})).send().await.expect("post");
    assert_eq!(r.status().as_u16(), 401);
    let r = http.post(format!("{base}/mcp/call")).bearer_auth("wrong").json(&json!({"tool": "list_missions"})).send();
    assert_eq!(r.await.expect("post").status().as_u16(), 401);
    let (status, body) = call(json!({"tool": "drop_database"}), None).await;
    assert_eq!((status, body["error"]["code"].clone()), (404, json!("unknown_tool")));
    let (status, body) = call(json!({"tool": "list_missions", "argz": {}}), None).await;
    assert_eq!((status, body["error"]["code"].clone()), (400, json!("invalid_body")));
    let (status, body) = call(json!({"tool": "list_missions", "args": [1]}), None).await;
    assert_eq!((status, body["error"]["code"].clone()), (400, json!("invalid_arguments")));
    let (status, body) = call(json!({"tool": "list_missions", "args": {"limit": -1}}), None).await;
    assert_eq!((status, body["error"]["details"]["field"].clone()), (400, json!("limit")), "{body}");
    let r = http.post(format!("{base}/mcp/call")).bearer_auth(TOKEN).body("{not json").send().await.expect("post");
    assert_eq!(r.status().as_u16(), 400);

    // Streamable HTTP needs the token too; with it, the handshake answers.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let r = http
        .post(format!("{base}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .post(format!("{base}/mcp"))
        .bearer_auth(TOKEN)
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().get("mcp-session-id").is_some());
    let text = r.text().await.expect("body");
    assert!(text.contains(r#""serverInfo":{"name":"missioncontrol""#), "{text}");
}

/// The official MCP Python SDK, over stdio and over Streamable HTTP: see `sdk_scenario.py`.
#[test]
fn the_python_sdk_runs_the_multi_agent_scenario_over_stdio_and_streamable_http() {
    let Some(sdk) = std::env::var_os("MC_TEST_PYMCP").filter(|v| !v.is_empty()) else {
        assert!(
            std::env::var_os("MC_REQUIRE_MCP_SDK").is_none_or(|v| v != "1"),
            "MC_REQUIRE_MCP_SDK=1 but MC_TEST_PYMCP is not set (bash scripts/test.sh installs the SDK)"
        );
        eprintln!("skipped: the MCP Python SDK is not installed (set MC_TEST_PYMCP; scripts/test.sh does)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    for transport in ["stdio", "http"] {
        let kluster = server.kluster(&format!("scenario over {transport}"));
        let out = Command::new("python3")
            .arg(support::py_script("sdk_scenario.py"))
            .args(["--transport", transport, "--mc", support::MC, "--url", &server.base_url()])
            .args(["--token", TOKEN, "--kluster", &kluster, "--prefix", transport])
            .arg("--golden")
            .arg(support::golden_path())
            .env("PYTHONPATH", &sdk)
            .env_remove("MC_TOKEN")
            .output()
            .expect("run python3");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "the SDK scenario over {transport} failed:\n{stderr}\n{stdout}\n{}",
            server.log()
        );
        let summary: Value = serde_json::from_str(stdout.trim()).expect("summary JSON");
        assert_eq!(summary["tools"].as_u64(), golden_tools().as_array().map(|t| t.len() as u64), "{summary}");
        assert_eq!(summary["lapsed_task_reclaimed_by_b"], true, "{summary}");
        eprintln!("SDK scenario over {transport}: {summary}");
    }
    // The server is still healthy after both scenarios and their bad calls.
    std::thread::sleep(Duration::from_millis(10));
    assert!(server.mc_json(&["mission", "list"])["items"].as_array().is_some_and(|m| m.len() == 2));
}

#[test]
fn agents_write_find_and_version_docs_over_stdio() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let kluster = server.kluster("API");
    let mut mcp = McpChild::start(&server, Some("agent-1"), &[]);
    mcp.initialize();

    let body = "Refunds go through POST /refunds with an idempotency key. ".repeat(10);
    let created = mcp.ok(
        "create_doc",
        json!({"kluster_id": kluster, "title": "Refund API design notes", "body": body, "paths": ["docs/api/refunds.md"]}),
    );
    let id = created["doc"]["id"].as_str().expect("id").to_owned();
    assert_eq!(created["doc"]["version"], 1);
    assert_eq!(created["overlap_suggestions"], json!([]));
    let excerpt = created["doc"]["excerpt"].as_str().expect("excerpt");
    assert!(excerpt.ends_with('…') && excerpt.chars().count() < body.len(), "a summary, not the whole text: {excerpt}");

    // the workspace lists the kluster's docs; get_doc has the whole text
    let ws = mcp.ok("load_kluster_workspace", json!({"kluster_id": kluster}));
    assert_eq!(ws["docs"], json!([{"id": id, "kind": "doc", "title": "Refund API design notes", "version": 1}]));
    let full = mcp.ok("get_doc", json!({"doc_id": id}));
    assert_eq!(full["body"], body.as_str());

    // a draft doc is checked without writing anything
    let checked = mcp.ok(
        "get_overlap_suggestions",
        json!({"kluster_id": kluster, "kind": "doc", "title": "Refund API design notes", "description": body}),
    );
    assert_eq!(checked["overlap_suggestions"][0]["id"], id.as_str(), "{checked}");

    // a duplicate is refused as a tool error naming the first; search finds it with reasons
    let (code, text) =
        mcp.tool_error("create_doc", json!({"kluster_id": kluster, "title": "Refund API design notes", "body": body}));
    assert_eq!(code, "overlap_detected", "{text}");
    assert!(text.contains(&id), "{text}");
    let found = mcp.ok("search_docs", json!({"query": "idempotency key", "limit": 3}));
    assert_eq!(found["items"][0]["id"], id.as_str(), "{found}");
    assert!(found["items"][0]["why"].as_array().is_some_and(|w| !w.is_empty()), "{found}");

    // versions, and bad input
    let v2 = mcp.ok("update_doc", json!({"doc_id": id, "title": "Refund API design", "if_version": 1}));
    assert_eq!(v2["version"], 2);
    let (code, _) = mcp.tool_error("update_doc", json!({"doc_id": id, "title": "again", "if_version": 1}));
    assert_eq!(code, "version_conflict");
    let (code, text) = mcp.tool_error("update_doc", json!({"doc_id": id}));
    assert_eq!(code, "invalid_arguments", "{text}");
    let (code, _) = mcp.tool_error("create_doc", json!({"title": "no scope"}));
    assert_eq!(code, "invalid_arguments");
    let (code, _) = mcp.tool_error("search_docs", json!({"query": "x", "kind": "memo"}));
    assert_eq!(code, "invalid_arguments");
    assert!(mcp.finish().success());
}
