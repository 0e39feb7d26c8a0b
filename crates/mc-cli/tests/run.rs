//! `mc run claude|codex|gemini` with stand-in agents first on PATH: small Python programs named
//! like the real CLIs (`mc-mcp/tests/py/standin_agent.py`) that read the MCP configuration the way
//! each real agent does, start `mc mcp` from it with that agent's environment rules, call a tool,
//! and record what they saw.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use support::{Server, TOKEN, command, golden_tools};

/// A directory holding the stand-ins `claude`, `codex` and `gemini`.
fn standins(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let script = std::fs::read_to_string(support::py_script("standin_agent.py")).expect("stand-in script");
    for name in ["claude", "codex", "gemini"] {
        let path = bin.join(name);
        std::fs::write(&path, &script).expect("write stand-in");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
    }
    bin
}

/// PATH with `bin` first.
fn path_with(bin: &Path) -> std::ffi::OsString {
    let mut dirs = vec![bin.to_owned()];
    dirs.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    std::env::join_paths(dirs).expect("PATH")
}

struct Env {
    base_url: String,
    bin: PathBuf,
    config: PathBuf,
    record: PathBuf,
}

impl Env {
    fn mc_run(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut cmd = command();
        cmd.arg("run")
            .args(args)
            .env("PATH", path_with(&self.bin))
            .env("MC_BASE_URL", &self.base_url)
            .env("MC_TOKEN", TOKEN)
            .env("MC_CONFIG_DIR", &self.config)
            .env("STANDIN_RECORD", &self.record)
            // A stand-in for an installed system-wide Gemini CLI default file that must survive.
            .env("GEMINI_CLI_SYSTEM_DEFAULTS_PATH", self.config.join("installed-defaults.json"));
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().expect("run mc run")
    }

    fn record(&self) -> Value {
        let text = std::fs::read_to_string(&self.record).expect("the stand-in wrote its record");
        serde_json::from_str(&text).expect("record is JSON")
    }
}

fn setup(dir: &Path, server: &Server) -> Env {
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("config dir");
    std::fs::write(config.join("installed-defaults.json"), r#"{"ui": {"theme": "GitHub"}}"#).expect("defaults");
    Env { base_url: server.base_url(), bin: standins(dir), config, record: dir.join("record.json") }
}

#[test]
fn each_agent_gets_its_own_config_format_reaches_mc_mcp_and_passes_its_exit_code_through() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    server.kluster("API");
    let env = setup(dir.path(), &server);

    for agent in ["claude", "codex", "gemini"] {
        let _ = std::fs::remove_file(&env.record);
        let out = env.mc_run(&[agent, "--", "-p", "claim the next task", "--model", "x"], &[("STANDIN_EXIT", "7")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(7), "{agent}: the exit code passes through; stderr:\n{stderr}");
        assert!(stderr.starts_with(&format!("mc run: {agent} as agent {agent}-")), "{stderr}");
        let r = env.record();

        // The user's arguments come last, untouched.
        let argv: Vec<&str> = r["argv"].as_array().expect("argv").iter().filter_map(Value::as_str).collect();
        assert!(argv.ends_with(&["-p", "claim the next task", "--model", "x"]), "{agent}: {argv:?}");
        // Credentials travel in the environment, never in the configuration.
        assert_eq!(r["env"]["MC_TOKEN"], TOKEN, "{agent}");
        assert_eq!(r["env"]["MC_BASE_URL"], server.base_url().as_str(), "{agent}");
        let agent_id = r["env"]["MC_AGENT_ID"].as_str().expect("agent id");
        assert!(agent_id.starts_with(&format!("{agent}-")), "{agent_id}");
        let config_text = r["config_text"].as_str().expect("config text");
        assert!(!config_text.contains(TOKEN), "{agent}: the token leaked into the configuration: {config_text}");
        assert!(config_text.contains("MC_TOKEN"), "{agent}: the configuration does not forward MC_TOKEN");

        // The agent, applying its own environment rules, started `mc mcp` and called a tool.
        let mcp = &r["mcp"];
        assert_eq!(mcp["server"], "missioncontrol", "{agent}: {r}");
        assert_eq!(mcp["tools"].as_array().map(Vec::len), golden_tools().as_array().map(Vec::len), "{agent}");
        assert_eq!(mcp["is_error"], false, "{agent}: {}", mcp["text"]);
        assert_eq!(mcp["result"]["items"][0]["name"], "Mission for API", "{agent}");
        let server_env: Vec<&str> = r["server_env"].as_array().expect("env").iter().filter_map(Value::as_str).collect();
        for var in ["MC_AGENT_ID", "MC_BASE_URL", "MC_TOKEN"] {
            assert!(server_env.contains(&var), "{agent}: mc mcp did not get {var}: {server_env:?}");
        }

        match agent {
            "claude" => {
                let flag = argv[0];
                assert!(flag.starts_with("--mcp-config="), "{argv:?}");
                let file = flag.trim_start_matches("--mcp-config=");
                assert!(file.starts_with(env.config.join("run").to_str().expect("utf-8")), "{file}");
                assert!(!Path::new(file).exists(), "the config file is removed after the run");
            }
            "codex" => {
                assert_eq!(argv[0], "-c");
                assert!(argv[1].starts_with("mcp_servers.missioncontrol.command="), "{argv:?}");
            }
            _ => {
                // Gemini: the installed system defaults are kept alongside our server.
                assert_eq!(r["other_settings"], serde_json::json!(["ui"]), "{r}");
                let file = r["env"]["GEMINI_CLI_SYSTEM_DEFAULTS_PATH"].as_str().expect("settings path");
                assert!(!Path::new(file).exists(), "the settings file is removed after the run");
            }
        }
    }

    // Exit 0 passes through as success, and an explicit agent identity is used as given.
    let out = env.mc_run(&["codex", "--", "exec", "hello"], &[("MC_AGENT_ID", "codex-reviewer")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(env.record()["env"]["MC_AGENT_ID"], "codex-reviewer");
}

#[test]
fn preflight_checks_everything_and_launches_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path());
    let env = setup(dir.path(), &server);

    let out = env.mc_run(&["claude", "--preflight-only", "--", "-p", "hi"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("ok   agent   claude found at "), "{stdout}");
    assert!(lines[1].starts_with(&format!("ok   server  {} answers (mc ", server.base_url())), "{stdout}");
    assert_eq!(lines[2], "ok   token   valid: admin (admin)", "{stdout}");
    assert!(lines[3].starts_with("ok   mcp     mc mcp: missioncontrol "), "{stdout}");
    let tools = format!("{} tools", golden_tools().as_array().map_or(0, Vec::len));
    assert!(lines[3].contains(&tools) && lines[3].ends_with("list_missions ok"), "{stdout}");
    assert!(stdout.contains("\"command\": "), "the configuration is shown: {stdout}");
    let run_line = lines.iter().find(|l| l.starts_with("would run: ")).expect("would run");
    assert!(run_line.contains("MC_TOKEN=<redacted>") && !run_line.contains(TOKEN), "{run_line}");
    assert!(run_line.contains(" --mcp-config=") && run_line.ends_with(" -p hi"), "{run_line}");
    assert!(!env.record.exists(), "preflight launched the agent");
    assert!(!env.config.join("run").exists(), "preflight wrote a configuration file");

    // JSON for scripts.
    let out = env.mc_run(&["gemini", "--preflight-only", "--json"], &[]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["checks"].as_array().map(Vec::len), Some(4));

    // Failures are all reported, with exit 1: no agent binary, a bad token.
    let out = env.mc_run(&["codex", "--preflight-only"], &[("PATH", "/nonexistent"), ("MC_TOKEN", "wrong")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL agent   codex not found on PATH: install the Codex CLI"), "{stdout}");
    assert!(stdout.contains("FAIL token   the bearer token is not valid"), "{stdout}");
    assert!(stdout.contains("FAIL mcp "), "{stdout}");

    // Without preflight, a missing agent is an error before anything runs.
    let out = env.mc_run(&["gemini"], &[("PATH", "/nonexistent")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: `gemini` was not found on PATH"), "{stderr}");
    assert!(stderr.contains("hint: install the Gemini CLI"), "{stderr}");
    drop(server);

    // The server down: the agent is not launched.
    let out = env.mc_run(&["claude"], &[]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!env.record.exists());
}
