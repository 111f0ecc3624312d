"""`fleetq mcp`: the MCP server driven by the official client SDK over stdio, the real claude CLI using it
(against the Anthropic provider fake) to queue a task, and `fleetq mcp install` with the real CLIs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
import click
import pytest

from fleetq.cli import app as cliapp
from fleetq.cli import mcptools
from fleetq.core.clone import Fleet
from support import realclis
from support.fleets import Fleets, run_fleetq
from support.providers import ProviderFake, Request, all_routes
from support.providers.anthropic import MAIN_USAGE, _answer, _message, cli_env, is_side_call
from support.workers import WorkerProc

pytestmark = pytest.mark.timeout(120)

TOOL_NAMES = {
    "assign",
    "queue",
    "show",
    "wait",
    "logs",
    "status",
    "pick",
    "diff",
    "accept",
    "reject",
    "reply",
    "cancel",
}


# ---------------------------------------------------------------- the table against the real commands


def test_every_tool_argument_is_a_real_option_of_its_command() -> None:
    """Each tool runs a real command with --json, and each argument maps to an option (or argument) it has."""
    real = {name: cmd for name, (_, cmd) in cliapp.real_commands().items()}
    assert TOOL_NAMES <= set(mcptools.BY_NAME)
    for spec in mcptools.TOOLS:
        cmd = real.get(spec.command)
        assert cmd is not None, f"tool {spec.name}: no command {spec.command}"
        opts = {o for p in cmd.params if isinstance(p, click.Option) for o in p.opts}
        positional = [p for p in cmd.params if isinstance(p, click.Argument)]
        assert "--json" in opts, f"fleetq {spec.command} has no --json"
        for flag in spec.fixed:
            assert flag in opts, (spec.name, flag)
        for p in spec.params:
            if p.kind in (mcptools.ARG, mcptools.ARGS):
                continue
            for flag in p.flag.split("/"):
                assert flag in opts, f"tool {spec.name}: argument {p.name} maps to {flag}, not an option of it"
        wanted = [p for p in spec.params if p.kind in (mcptools.ARG, mcptools.ARGS)]
        assert len(wanted) == len(positional) or (positional and positional[-1].nargs == -1), (spec.name, positional)


def test_a_call_becomes_one_argv_list() -> None:
    spec = mcptools.BY_NAME["assign"]
    args = {
        "description": "-x fix the login bug",
        "machine": "auto",
        "agent": "claude",
        "priority": 3,
        "after": ["a1", "b2"],
        "timeout": 90,
        "set": ["model=m1", "k=v w"],
        "force": True,
    }
    got = mcptools.argv(spec, args, fleet_dir="/f", machine="lap")
    assert got == [
        "--fleet", "/f", "--machine", "lap", "assign",
        "--machine", "auto", "--agent", "claude", "--priority", "3", "--after", "a1", "--after", "b2",
        "--timeout", "90", "--set", "model=m1", "--set", "k=v w", "--force",
        "--yes", "--json", "--", "-x fix the login bug",
    ]  # fmt: skip
    wait = mcptools.argv(mcptools.BY_NAME["wait"], {"ids": ["t1", "t2"]}, fleet_dir=None, machine=None)
    assert wait == ["wait", "--timeout", "60", "--json", "--", "t1", "t2"]
    for bad in ({"ids": ["t1"], "timeout": 601}, {"ids": []}, {"ids": "t1"}, {"ids": ["t1"], "bogus": 1}):
        with pytest.raises(Exception) as e:
            mcptools.argv(mcptools.BY_NAME["wait"], bad, fleet_dir=None, machine=None)
        assert e.value.__class__.__name__ == "UsageError", bad


# ---------------------------------------------------------------- the server over stdio


def _params(fleet: Fleet, *extra: str) -> Any:
    from mcp import StdioServerParameters

    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "fleetq", "--fleet", str(fleet.root), "--machine", fleet.machine, *extra, "mcp"],
        env=dict(os.environ),
    )


async def _session_run(fleet: Fleet, body: Any) -> Any:
    from mcp import ClientSession, stdio_client

    with open(os.devnull, "w") as quiet:
        async with stdio_client(_params(fleet), errlog=quiet) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await body(session)


def test_server_lists_tools_queues_shows_and_waits_while_a_worker_runs_it(fleets: Fleets) -> None:
    laptop = fleets.clone("laptop")  # the user's agent talks to its own clone; the worker is another
    calls: dict[str, Any] = {}

    async def body(session: Any) -> None:
        listed = await session.list_tools()
        calls["tools"] = {t.name: t for t in listed.tools}
        calls["assign"] = await session.call_tool(
            "assign",
            {"description": "say hi over mcp", "type": "run_script", "machine": "alpha", "set": ["script=echo hi"]},
        )
        tid = calls["assign"].structured_content["id"]
        calls["show"] = await session.call_tool("show", {"id": tid})
        worker = WorkerProc(fleets.first, "--burst")
        try:
            calls["wait"] = await session.call_tool("wait", {"ids": [tid], "timeout": 45})
        finally:
            worker.stop()
        calls["missing"] = await session.call_tool("show", {"id": "nosuchtask"})
        calls["bad"] = await session.call_tool("wait", {"ids": [tid], "timeout": 10_000})

    anyio.run(_session_run, laptop, body)

    tools = calls["tools"]
    assert TOOL_NAMES <= set(tools)
    assert "least loaded" in tools["assign"].description and "all machines" in tools["parallel"].description
    assert set(tools["assign"].input_schema["properties"]) >= {"description", "machine", "set", "sync", "after"}
    assert tools["show"].annotations.read_only_hint and tools["cancel"].annotations.destructive_hint

    a = calls["assign"]
    assert not a.is_error, a.content
    doc = json.loads(a.content[0].text)  # the CLI's JSON, as text and as structured content
    assert doc == a.structured_content and doc["state"] == "pending" and doc["title"] == "say hi over mcp"
    assert doc["target"] == "alpha" and doc["created_by"] == "laptop"

    s = calls["show"]
    assert not s.is_error and s.structured_content["id"] == doc["id"] and s.structured_content["state"] == "pending"

    w = calls["wait"]
    assert not w.is_error, w.content
    [t] = w.structured_content["tasks"]
    assert (t["id"], t["state"], t["machine"], t["exit_code"]) == (doc["id"], "done", "alpha", 0)
    assert w.structured_content["timed_out"] is False and w.structured_content["exit_code"] == 0

    m = calls["missing"]
    said = run_fleetq("--fleet", str(laptop.root), "show", "nosuchtask", "--json")
    assert said.returncode == 2 and said.stdout == ""
    assert m.is_error and [c.text for c in m.content] == [said.stderr.strip()]  # the CLI's own one line
    assert "nosuchtask" in m.content[0].text and "\n" not in m.content[0].text

    b = calls["bad"]
    assert b.is_error and b.content[0].text == "fleetq: wait: timeout is at most 600"


# ---------------------------------------------------------------- the real claude CLI dispatching work

DESC = "run the lint job on alpha"


def _dispatching_fake(fake: ProviderFake, req: Request) -> Any:
    """The main model answers the first turn with a call to fleetq's `assign`; once its result is back, a text."""
    body = req.body if isinstance(req.body, dict) else {}
    if is_side_call(body):
        return None  # the usual short answers for background helpers
    model = str(body.get("model") or "claude-unknown")
    fake.state.setdefault("tools", {}).update({t.get("name"): t for t in body.get("tools") or []})
    results = [
        b
        for m in body.get("messages") or []
        if isinstance(m.get("content"), list)
        for b in m["content"]
        if isinstance(b, dict) and b.get("type") == "tool_result"
    ]  # (the CLI may add a system message after the tool result: not only the last message counts)
    if results:
        fake.state["tool_result"] = results
        return _answer(
            body, _message(model, [{"type": "text", "text": "Queued on the fleet."}], "end_turn", MAIN_USAGE)
        )
    tool_input = {"description": DESC, "type": "run_script", "machine": "alpha", "set": ["script=make lint"]}
    tool = {"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:24], "name": "mcp__fleetq__assign"}
    content = [{"type": "text", "text": "I'll queue it."}, {**tool, "input": tool_input}]
    return _answer(body, _message(model, content, "tool_use", MAIN_USAGE))


def test_real_claude_queues_a_task_through_fleetq_mcp(fleets: Fleets, tmp_path: Path) -> None:
    claude = realclis.require("claude")
    laptop = fleets.clone("laptop")
    with ProviderFake(routes=[("POST", r"/v1/messages$", _dispatching_fake), *all_routes()]) as fake:
        env = cli_env(
            fake,
            tmp_path / "claude-home",
            PATH=os.pathsep.join([str(claude.parent), os.environ.get("PATH", os.defpath)]),
            IS_SANDBOX="1",
            ENABLE_TOOL_SEARCH="false",  # MCP tools in the request's tool list, not deferred behind ToolSearch
        )
        for extra in ([], ["--machine", "laptop"]):  # the second replaces the first (claude refuses to overwrite)
            inst = subprocess.run(
                [sys.executable, "-m", "fleetq", "--fleet", str(laptop.root), *extra, "mcp", "install", "claude"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert inst.returncode == 0, inst.stderr
            assert "ran: " in inst.stdout and "claude mcp add --scope user fleetq --" in inst.stdout
        assert "claude mcp remove --scope user fleetq" in inst.stdout
        registered = json.loads((tmp_path / "claude-home" / ".claude.json").read_text())["mcpServers"]["fleetq"]
        assert registered["command"] == sys.executable
        assert registered["args"] == [
            "-m",
            "fleetq",
            "--fleet",
            str(laptop.root.resolve()),
            "--machine",
            "laptop",
            "mcp",
        ]

        proj = tmp_path / "work"
        proj.mkdir()
        run = subprocess.run(
            [str(claude), "-p", "Put the lint job on the fleet.", "--output-format", "json"]
            + ["--allowedTools", "mcp__fleetq__assign"],
            cwd=proj,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert run.returncode == 0, (run.stdout, run.stderr)
        assert json.loads(run.stdout)["result"] == "Queued on the fleet."

    offered = fake.state["tools"]  # what claude showed the model: fleetq's tools, described as the server says
    assert {f"mcp__fleetq__{n}" for n in TOOL_NAMES} <= set(offered), sorted(offered)
    assert "least loaded" in offered["mcp__fleetq__assign"]["description"]
    assert "set" in offered["mcp__fleetq__assign"]["input_schema"]["properties"]
    [block] = fake.state["tool_result"]
    pending = [t for t in laptop.snapshot().tasks(["pending"])]  # fetched from the remote
    [task] = [t for t in pending if t.title == DESC]
    assert task.target == "alpha" and task.payload["script"] == "make lint" and task.data["created_by"] == "laptop"
    assert not block.get("is_error") and task.id in json.dumps(block["content"])  # assign's JSON went back


# ---------------------------------------------------------------- install for gemini and codex


def _server_args(fleet: Fleet) -> list[str]:
    return ["-m", "fleetq", "--fleet", str(fleet.root.resolve()), "mcp"]


def test_install_writes_gemini_and_codex_config_and_print_changes_nothing(
    fleets: Fleets, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Path(os.environ["HOME"])  # the test's own HOME (conftest), never the real one
    fleet = str(fleets.first.root)
    monkeypatch.setenv("PATH", os.pathsep.join([str(realclis.require("gemini").parent), os.environ["PATH"]]))
    monkeypatch.delenv("CODEX_HOME", raising=False)  # codex: ~/.codex (a CODEX_HOME must exist already)

    before = sorted(str(p) for p in home.rglob("*"))
    for name in ("gemini", "codex", "claude"):
        res = cli("--fleet", fleet, "mcp", "install", name, "--print")
        assert res.code == 0, res.err
        assert f"{name} mcp add" in res.out and f"--fleet {fleets.first.root.resolve()} mcp" in res.out
    assert sorted(str(p) for p in home.rglob("*")) == before, "--print wrote something"

    res = cli("--fleet", fleet, "mcp", "install", "gemini")
    assert res.code == 0, res.err
    settings = home / ".gemini" / "settings.json"
    assert f"ran: {realclis.bin_dir() / 'gemini'} mcp add --scope user fleetq {sys.executable} -m fleetq" in res.out
    assert str(settings) in res.out
    entry = json.loads(settings.read_text())["mcpServers"]["fleetq"]
    assert entry["command"] == sys.executable and entry["args"] == _server_args(fleets.first)

    res = cli("--fleet", fleet, "mcp", "install", "codex")
    assert res.code == 0, res.err
    toml = (home / ".codex" / "config.toml").read_text()
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    entry = tomllib.loads(toml)["mcp_servers"]["fleetq"]
    assert entry["command"] == sys.executable and entry["args"] == _server_args(fleets.first)

    res = cli("--fleet", fleet, "mcp", "install", "codex", "--scope", "project")
    assert res.code == 2 and "no --scope project" in res.err

    only_git = tmp_path / "only-git"  # a PATH with git (the fleet needs it) and no claude
    only_git.mkdir()
    (only_git / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    monkeypatch.setenv("PATH", str(only_git))
    res = cli("--fleet", fleet, "mcp", "install", "claude")
    assert res.code == 2 and res.err.strip() == (
        "fleetq: claude is not installed here (not on PATH); `fleetq mcp install claude --print` shows the command"
    )
