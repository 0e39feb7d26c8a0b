#!/usr/bin/env python3
"""Stand-in for an agent CLI in the tests of `mc run`. Installed under the names `claude`, `codex`
and `gemini`, it acts by the name it was started as:

1. records its argv and the MC_* / GEMINI_CLI_* part of its environment;
2. finds the MCP server entry `missioncontrol` the way that agent reads its configuration
   (Claude Code: the --mcp-config JSON file; Codex: the -c mcp_servers.* overrides; Gemini CLI: the
   settings file named by GEMINI_CLI_SYSTEM_DEFAULTS_PATH);
3. starts that server with the environment that agent would give it — the strict variants:
   Claude Code and Codex pass only a short allow-list plus what the entry names, Gemini CLI drops
   inherited variables named like secrets — so the test proves the entry carries what `mc mcp`
   needs;
4. speaks MCP to it (newline-delimited JSON-RPC on stdio): initialize, tools/list, and
   list_missions; records the answers;
5. writes the record to $STANDIN_RECORD and exits with $STANDIN_EXIT (default 0).

Standard library only, so the tests of `mc run` need no MCP SDK.
"""

import json
import os
import re
import subprocess
import sys
import tomllib

ENTRY = "missioncontrol"
# What the MCP TypeScript SDK (Claude Code) and Codex pass to a stdio server by default.
DEFAULT_ENV = ["HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "TMPDIR", "TZ"]
# Gemini CLI's redaction of inherited variables (name patterns).
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|KEY|AUTH|CREDENTIAL|CREDS|PRIVATE|CERT", re.I)


def expand_claude(value, env):
    """Claude Code expands ${VAR} and ${VAR:-default}; an unset ${VAR} stays as written."""

    def sub(m):
        name, default = m.group(1), m.group(3)
        if name in env:
            return env[name]
        return default if default is not None else m.group(0)

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}", sub, value)


def expand_gemini(value, env):
    """Gemini CLI expands $VAR and ${VAR}."""
    return re.sub(
        r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)",
        lambda m: env.get(m.group(1) or m.group(2), ""),
        value,
    )


def claude(argv, record):
    path = None
    for i, a in enumerate(argv):
        if a.startswith("--mcp-config="):
            path = a.split("=", 1)[1]
        elif a == "--mcp-config" and i + 1 < len(argv):
            path = argv[i + 1]
    if path is None:
        raise SystemExit("stand-in claude: no --mcp-config")
    text = open(path, encoding="utf-8").read()
    record["config_text"] = text
    server = json.loads(text)["mcpServers"][ENTRY]
    env = {k: os.environ[k] for k in DEFAULT_ENV if k in os.environ}
    env.update({k: expand_claude(v, os.environ) for k, v in server.get("env", {}).items()})
    cmd = [expand_claude(server["command"], os.environ)] + [expand_claude(a, os.environ) for a in server.get("args", [])]
    return cmd, env


def codex(argv, record):
    overrides = {}
    i = 0
    while i < len(argv):
        if argv[i] in ("-c", "--config") and i + 1 < len(argv):
            key, _, raw = argv[i + 1].partition("=")
            try:
                value = tomllib.loads(f"v = {raw}")["v"]
            except tomllib.TOMLDecodeError:
                value = raw  # Codex takes a value that is not TOML as a string
            overrides[key] = value
            i += 2
        else:
            i += 1
    record["config_text"] = json.dumps(overrides)
    prefix = f"mcp_servers.{ENTRY}."
    env = {k: os.environ[k] for k in DEFAULT_ENV if k in os.environ}
    env.update({k: os.environ[k] for k in overrides.get(prefix + "env_vars", []) if k in os.environ})
    env.update(overrides.get(prefix + "env", {}))
    return [overrides[prefix + "command"]] + list(overrides.get(prefix + "args", [])), env


def gemini(argv, record):
    path = os.environ["GEMINI_CLI_SYSTEM_DEFAULTS_PATH"]
    text = open(path, encoding="utf-8").read()
    record["config_text"] = text
    settings = json.loads(text)
    record["other_settings"] = sorted(k for k in settings if k != "mcpServers")
    server = settings["mcpServers"][ENTRY]
    env = {k: v for k, v in os.environ.items() if not SECRET_NAME.search(k)}
    env.update({k: expand_gemini(v, os.environ) for k, v in server.get("env", {}).items()})
    return [server["command"]] + list(server.get("args", [])), env


def talk(cmd, env):
    """A minimal MCP client over the server's stdio."""
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )

    def send(msg):
        proc.stdin.write(json.dumps(msg) + "\n")
        proc.stdin.flush()

    def request(rid, method, params):
        send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        while True:
            line = proc.stdout.readline()
            if not line:
                raise SystemExit(f"stand-in: the MCP server closed its output; stderr: {proc.stderr.read()}")
            msg = json.loads(line)
            if msg.get("id") == rid:
                if "error" in msg:
                    raise SystemExit(f"stand-in: {method} failed: {msg['error']}")
                return msg["result"]

    init = request(
        1,
        "initialize",
        {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "standin", "version": "1"}},
    )
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    tools = request(2, "tools/list", {})
    call = request(3, "tools/call", {"name": "list_missions", "arguments": {"limit": 50}})
    proc.stdin.close()
    proc.wait(timeout=20)
    return {
        "server": init["serverInfo"]["name"],
        "tools": [t["name"] for t in tools["tools"]],
        "is_error": call.get("isError", False),
        "result": call.get("structuredContent"),
        "text": call["content"][0]["text"] if call.get("content") else "",
    }


def main():
    name = os.path.basename(sys.argv[0])
    argv = sys.argv[1:]
    record = {
        "agent": name,
        "argv": argv,
        "env": {k: v for k, v in os.environ.items() if k.startswith(("MC_", "GEMINI_CLI_"))},
    }
    reader = {"claude": claude, "codex": codex, "gemini": gemini}.get(name)
    if reader is None:
        raise SystemExit(f"stand-in: unknown agent name {name}")
    cmd, env = reader(argv, record)
    record["server_env"] = sorted(k for k in env if k.startswith("MC_"))
    record["mcp"] = talk(cmd, env)
    with open(os.environ["STANDIN_RECORD"], "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    sys.exit(int(os.environ.get("STANDIN_EXIT", "0")))


if __name__ == "__main__":
    main()
