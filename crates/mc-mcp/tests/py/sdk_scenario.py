#!/usr/bin/env python3
"""Acceptance of MissionControl's MCP interface with the official MCP Python SDK (PyPI `mcp`) as the
client, over stdio (`mc mcp`) or Streamable HTTP (`/mcp` on the server).

Two agent identities, A and B, work one kluster:
  - both connect, initialize, and list tools (compared with the golden file), and load the kluster;
  - both create near-identical tasks: the second sees the first in overlap_suggestions;
  - both race claim_next_task: each gets a different task;
  - A lets its short lease lapse; B finishes its own task, then claim_next_task hands B the task A
    let go; A's heartbeat on it is refused with a message naming the next step;
  - bad calls (unknown tool, wrong argument types, huge arguments) get errors and the session
    keeps serving.
Prints a JSON summary; exits non-zero with a message on the first failed expectation.
"""

import argparse
import asyncio
import contextlib
import json
import sys
import time

from mcp import ClientSession, MCPError
from mcp.client.stdio import StdioServerParameters, stdio_client


class Failed(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Failed(what)


async def connect(stack, args, agent):
    if args.transport == "stdio":
        env = {"MC_BASE_URL": args.url, "MC_TOKEN": args.token, "MC_AGENT_ID": agent}
        params = StdioServerParameters(command=args.mc, args=["mcp"], env=env)
        read, write = await stack.enter_async_context(stdio_client(params))
    else:
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        http = await stack.enter_async_context(
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {args.token}", "x-mc-agent": agent}, timeout=60)
        )
        read, write = await stack.enter_async_context(streamable_http_client(f"{args.url}/mcp", http_client=http))
    session = await stack.enter_async_context(ClientSession(read, write))
    init = await session.initialize()
    expect(init.server_info.name == "missioncontrol", f"server name {init.server_info.name}")
    return session


async def call(session, tool, **arguments):
    r = await session.call_tool(tool, arguments)
    return bool(r.is_error), r.structured_content, (r.content[0].text if r.content else "")


async def ok(session, tool, **arguments):
    err, data, text = await call(session, tool, **arguments)
    expect(not err, f"{tool} failed: {text}")
    return data


def golden_tools(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)["tools"]


def comparable(tool):
    keep = ("name", "description", "inputSchema", "annotations")
    return {k: tool[k] for k in keep if k in tool and tool[k] is not None}


async def scenario(args):
    summary = {"transport": args.transport}
    async with contextlib.AsyncExitStack() as stack:
        a = await connect(stack, args, f"{args.prefix}-a")
        b = await connect(stack, args, f"{args.prefix}-b")

        # tools/list against the golden file
        listed = (await a.list_tools()).tools
        got = [comparable(t.model_dump(by_alias=True, exclude_none=True)) for t in listed]
        want = [comparable(t) for t in golden_tools(args.golden)]
        expect([t["name"] for t in got] == [t["name"] for t in want], f"tool names {[t['name'] for t in got]}")
        for g, w in zip(got, want):
            expect(g == w, f"tool {g['name']} differs from the golden file:\n{json.dumps(g)}\n{json.dumps(w)}")
        summary["tools"] = len(got)

        # both agents load the same kluster
        wa, wb = await asyncio.gather(
            ok(a, "load_kluster_workspace", kluster_id=args.kluster),
            ok(b, "load_kluster_workspace", kluster_id=args.kluster),
        )
        expect(wa["kluster"]["id"] == args.kluster == wb["kluster"]["id"], "workspace kluster")
        expect(wa["you"] == f"{args.prefix}-a" and wb["you"] == f"{args.prefix}-b", "workspace identity")

        # near-identical creates: the second sees the first
        first = await ok(
            a,
            "create_task",
            kluster_id=args.kluster,
            title="Add retries with exponential backoff to the payment webhook client",
            paths=["services/payments/webhook/**"],
        )
        t1 = first["task"]["id"]
        err, data, text = await call(
            b,
            "create_task",
            kluster_id=args.kluster,
            title="Add retry with exponential backoff to the payment webhook client",
            paths=["services/payments/webhook/**"],
        )
        if err:
            expect(data["error"]["code"] == "overlap_detected", f"second create: {text}")
            seen = [s["id"] for s in data["error"]["details"]["overlap_suggestions"]]
            expect("claim_task" in text and "acknowledge_overlap" in text, f"refusal names no next step: {text}")
            summary["second_create"] = "refused as a duplicate"
            # B takes up different work instead, so that two tasks are ready
            await ok(b, "create_task", kluster_id=args.kluster, title="Write the runbook for refund disputes")
        else:
            seen = [s["id"] for s in data["overlap_suggestions"]]
            summary["second_create"] = "created with overlap_suggestions"
        expect(t1 in seen, f"the second create did not see {t1} in overlap_suggestions: {seen}")

        # the race: each gets a different task; A's lease is short
        (ea, ca, ta), (eb, cb, tb) = await asyncio.gather(
            call(a, "claim_next_task", kluster_id=args.kluster, ttl_seconds=5),
            call(b, "claim_next_task", kluster_id=args.kluster),
        )
        expect(not ea and not eb, f"claims failed: {ta} / {tb}")
        expect(ca["task"] is not None and cb["task"] is not None, f"a claim came back empty: {ca} {cb}")
        task_a, task_b = ca["task"]["id"], cb["task"]["id"]
        expect(task_a != task_b, "both agents got the same task")
        expect(ca["task"]["yours"] and cb["task"]["yours"], "claims not marked as yours")

        # B works (heartbeat without any fencing token) and finishes; A goes quiet
        await ok(b, "heartbeat_task", task_id=task_b)
        done = await ok(b, "complete_task", task_id=task_b)
        expect(done["status"] == "done", f"complete: {done}")

        # once A's lease lapses, claim_next_task hands A's task to B
        deadline = time.monotonic() + 60
        while True:
            nxt = await ok(b, "claim_next_task", kluster_id=args.kluster)
            if nxt["task"] is not None:
                break
            expect(time.monotonic() < deadline, "A's lapsed task never came back")
            await asyncio.sleep(0.5)
        expect(nxt["task"]["id"] == task_a, f"B got {nxt['task']['id']}, not A's lapsed task {task_a}")
        summary["lapsed_task_reclaimed_by_b"] = True

        # A, late, is told what happened and what to do
        err, data, text = await call(a, "heartbeat_task", task_id=task_a)
        expect(err, "A's heartbeat on a task it lost was accepted")
        expect(data["error"]["code"] in ("task_held", "stale_fencing_token", "lease_expired"), text)
        expect("claim_next_task" in text or "claim_task" in text, f"no next step in: {text}")
        summary["late_heartbeat"] = text

        await ok(b, "complete_task", task_id=task_a)
        ws = await ok(a, "load_kluster_workspace", kluster_id=args.kluster)
        expect(ws["claimed"] == [], f"claimed after all completes: {ws['claimed']}")
        actions = [e["action"] for e in ws["recent_events"]]
        expect("task.complete" in actions, f"recent events: {actions}")

        # bad calls: errors, and the session keeps serving
        try:
            r = await a.call_tool("no_such_tool", {})
            expect(r.is_error, "an unknown tool succeeded")
        except MCPError as e:
            summary["unknown_tool"] = str(e)
        err, data, text = await call(a, "search_tasks", query="x", limit="five")
        expect(err and data["error"]["code"] == "invalid_arguments" and "limit" in text, f"wrong type: {text}")
        err, data, text = await call(a, "get_task", task_id=12)
        expect(err and "task_id" in text, f"wrong type: {text}")
        # Over stdio the bridge refuses them as a tool error; over HTTP the body is over the server's
        # request limit (413), which the SDK raises as a protocol error. Either way the session lives.
        try:
            err, data, text = await call(a, "search_tasks", query="x" * (2 * 1024 * 1024))
            expect(err and data["error"]["code"] == "arguments_too_large", f"huge arguments: {text}")
            summary["huge_arguments"] = "tool error"
        except MCPError as e:
            expect(args.transport == "http", f"huge arguments over stdio: protocol error {e}")
            summary["huge_arguments"] = f"protocol error: {e}"
        still = await ok(a, "list_missions")
        expect(isinstance(still["items"], list), "the session stopped serving after bad calls")
        summary["bad_calls"] = "refused; session still serving"
    return summary


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--transport", choices=["stdio", "http"], required=True)
    p.add_argument("--mc", help="the mc binary (stdio)")
    p.add_argument("--url", required=True, help="the control plane, e.g. http://127.0.0.1:8008")
    p.add_argument("--token", required=True)
    p.add_argument("--kluster", required=True)
    p.add_argument("--golden", required=True)
    p.add_argument("--prefix", default="agent")
    args = p.parse_args()
    try:
        summary = asyncio.run(scenario(args))
    except Failed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
