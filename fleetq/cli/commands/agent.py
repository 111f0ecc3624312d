"""`fleetq run AGENT PROMPT...` and `fleetq test [AGENT]`: agents here and now, no queue."""

from __future__ import annotations

import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from fleetq.cli import output
from fleetq.cli.context import AppContext
from fleetq.core.clone import locate
from fleetq.errors import FleetqError, NotFound
from fleetq.handlerapi import DONE, NEEDS_HUMAN, HandlerResult
from fleetq.run.agents.registry import AGENT_TIMEOUT, load_agents
from fleetq.run.agents.runners import run_agent

SMOKE_PROMPT = "This is a connectivity test. Reply with exactly one word: pong"


def _fleet_dir() -> Path | None:
    """The fleet clone, for its config/agents.yaml; none found -> the built-in agents only."""
    ctx = click.get_current_context(silent=True)
    app = ctx.find_object(AppContext) if ctx else None
    if app is not None and app.fleet_dir:
        return locate(app.fleet_dir)  # asked for by --fleet: an error if it is not one
    try:
        return locate(None)
    except FleetqError:
        return None


def _exit_code(res: HandlerResult) -> int:
    if res.outcome == DONE:
        return 0
    return res.exit_code if res.exit_code else 1


@click.command("run")
@click.argument("agent")
@click.argument("prompt", nargs=-1, required=True)
@click.option("--cwd", default=".", show_default=True, help="Directory the agent works in.")
@click.option("--model", help="Model override (default: the agent's own).")
@click.option(
    "--timeout",
    type=float,
    default=AGENT_TIMEOUT,
    show_default=True,
    help="Seconds before the agent is stopped (0: never).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def run(agent: str, prompt: tuple[str, ...], cwd: str, model: str | None, timeout: float, as_json: bool) -> None:
    """Run AGENT on PROMPT here and now (no queue); exit with the agent's exit code."""
    agents = load_agents(_fleet_dir())
    fd, log_name = tempfile.mkstemp(prefix=f"fleetq-run-{agent}-", suffix=".log")
    os.close(fd)
    log = Path(log_name)
    spec = agents.get(agent) or {}
    streamed = not as_json and spec.get("output") == "text"
    res = run_agent(
        agent,
        " ".join(prompt),
        agents=agents,
        cwd=cwd,
        model=model,
        env=dict(os.environ),
        timeout=timeout if timeout > 0 else None,
        log_path=log,
        reply_limit=None,
        echo=not as_json,
    )
    if as_json:
        output.emit_json({"agent": agent, **res.to_dict(), "log": str(log) if res.outcome != DONE else None})
    elif not streamed and res.extra.get("reply"):
        output.info(str(res.extra["reply"]))
    if res.outcome == DONE:
        log.unlink(missing_ok=True)
    elif not as_json:
        output.error(res.error or res.outcome)
        if res.outcome != NEEDS_HUMAN:
            output.warn(f"full output: {log}")
    click.get_current_context().exit(_exit_code(res))


def _smoke(name: str, agents: dict, cwd: Path, timeout: float) -> dict:
    log = cwd / f"{name}.log"
    res = run_agent(
        name, SMOKE_PROMPT, agents=agents, cwd=cwd, model=None, env=dict(os.environ), timeout=timeout, log_path=log
    )
    reply = str(res.extra.get("reply") or "")
    if res.outcome == NEEDS_HUMAN and res.extra.get("not_installed"):
        status, detail = "not installed", res.error or ""
    elif res.outcome == DONE and "pong" in reply.lower():
        status, detail = "pass", reply
    else:
        status = "FAIL"
        detail = res.error or (f"unexpected reply: {reply}" if reply else "empty reply")
    return {
        "agent": name,
        "status": status,
        "seconds": round(res.duration, 1),
        "detail": detail,
        "model": res.extra.get("model"),
        "cost_usd": res.extra.get("cost_usd"),
    }


@click.command("test")
@click.argument("agent", required=False)
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds per agent.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def test(agent: str | None, timeout: float, as_json: bool) -> None:
    """Smoke-test the installed agents (or just AGENT) with a tiny prompt."""
    agents = load_agents(_fleet_dir())
    if agent and agent not in agents:
        raise NotFound(f"unknown agent '{agent}' (known: {', '.join(agents)})")
    names = [agent] if agent else list(agents)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fleetq-test-") as tmp, ThreadPoolExecutor(len(names)) as pool:
        rows = list(pool.map(lambda n: _smoke(n, agents, Path(tmp), timeout), names))
    if as_json:
        output.emit_json({"agents": rows, "seconds": round(time.monotonic() - started, 1)})
    else:
        output.emit_table(
            [[r["agent"], r["status"], r["seconds"], output.preview(r["detail"], 70)] for r in rows],
            ["agent", "status", "seconds", "reply / error"],
        )
    failed = any(r["status"] == "FAIL" for r in rows) or (agent and rows[0]["status"] != "pass")
    click.get_current_context().exit(1 if failed else 0)


commands = [run, test]
