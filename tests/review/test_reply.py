"""`fleetq reply` without running an agent: what it queues, each refusal in one line (exit 2), and the
chain links of show, log and review. The real resumed runs are in tests/run/real/test_real_reply.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fleetq import yamlio
from fleetq.core import transitions
from fleetq.core.clone import Fleet
from fleetq.core.config import MachineSpec
from fleetq.core.matching import Seat
from fleetq.errors import FleetqError
from fleetq.run.agents.argv import build_argv
from fleetq.run.agents.registry import agents_from, load_agents
from support.fleets import Fleets, git
from support.projects import make_project
from support.workers import set_file, set_machines, tasks

pytestmark = pytest.mark.timeout(60)


def finished(fleet: Fleet, tid: str, *, outcome: str = "done", type_: str = "agent_run", **result: Any) -> str:
    """A task run by ``fleet``'s machine and finished with ``result`` (the id)."""
    agent = result.get("agent", "claude")
    payload = {"prompt": "p"} if type_ == "agent_run" else {"script": "true"}
    transitions.create(fleet, tasks(1, tid, type=type_, agent=agent, payload=payload))
    seat = Seat(MachineSpec(fleet.machine, capabilities=[type_], agents=[agent]))
    [t] = transitions.claim(fleet, seat, 1)
    full = {"machine": fleet.machine, "agent": agent, "session_id": "sess-1", **result}
    transitions.complete(fleet, [transitions.Completion(t.id, t.attempts, outcome, full)])
    if result.get("machine"):  # the worker records its own name: a hand edit says another
        done = fleet.snapshot().get(t.id)
        data = yamlio.to_plain(yamlio.load_safe(done.raw))
        data["result"]["machine"] = result["machine"]
        set_file(fleet, done.path, yamlio.dump_plain(data))
    return t.id


@pytest.fixture
def f(fleets: Fleets) -> Fleet:
    set_machines(fleets.first, {"alpha": {"capabilities": ["agent_run", "run_script"]}})
    return fleets.first


def test_refusals_are_one_line_exit_2(f: Fleet, cli) -> None:
    transitions.create(f, tasks(1, "pend", type="agent_run", payload={"prompt": "p"}))
    cases = {
        "pend000": "it is still pending",
        finished(f, "scr", type_="run_script"): "not an agent_run",
        finished(f, "nos", session_id=None): "recorded no session id",
        finished(f, "grq", agent="groq"): "agent groq cannot resume a session",
        finished(f, "gone", machine="ghost"): "machine ghost, where its session is, is gone",
        finished(f, "acc", review={"decision": "accepted"}): "its run was accepted",
    }
    for tid, why in cases.items():
        res = cli("--fleet", f.root, "reply", tid, "go on")
        assert res.code == 2 and why in res.err and res.err.count("\n") == 1, (tid, res)
    assert cli("--fleet", f.root, "reply", "nos000", " ").code == 2  # no message


def test_reply_queues_a_pinned_continuation_and_links_the_chain(f: Fleet, cli, tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    base = git(project, "rev-parse", "main").strip()
    head = "b" * 40
    iso = {"repo": str(project), "branch": "fleetq/src000", "base": base, "head": head, "base_branch": "main"}
    src = finished(f, "src", outcome="failed", **iso)
    res = cli("--fleet", f.root, "reply", src, "fix", "the", "tests", "--priority", "7", "--json")
    assert res.code == 0, res
    doc = json.loads(res.out)
    p = doc["payload"]
    assert (doc["target"], doc["agent"], doc["priority"], doc["title"]) == (f.machine, "claude", 7, "fix the tests")
    assert p["resume"] == "sess-1" and p["reply_to"] == src and p["chain_root"] == src, p
    assert (p["isolate"], p["base"], p["chain_base"], p["base_branch"]) == (True, head, base, "main"), p
    new = doc["id"]

    shown = json.loads(cli("--fleet", f.root, "show", src, "--json").out)
    assert shown["replies"] == [new]
    back = json.loads(cli("--fleet", f.root, "show", new, "--json").out)
    assert (back["reply_to"], back["chain_root"]) == (src, src)
    lines = cli("--fleet", f.root, "show", src).out.splitlines()
    assert any(ln.startswith("replies") and ln.split()[-1] == new for ln in lines), lines
    lines = cli("--fleet", f.root, "show", new).out.splitlines()
    assert any(ln.startswith("reply to") and ln.endswith(f"{src} (chain {src})") for ln in lines), lines
    assert json.loads(cli("--fleet", f.root, "log", src, "--json").out)["replies"] == [new]
    assert "replies" in cli("--fleet", f.root, "log", src).out
    # the replied-to run no longer waits for review on its own: its chain's newest link stands for it
    runs = json.loads(cli("--fleet", f.root, "review", "--json").out)["runs"]
    assert src not in [r["id"] for r in runs]
    # one reply at a time: the second is refused, pointing at the first
    again = cli("--fleet", f.root, "reply", src, "and more")
    assert again.code == 2 and f"already has a reply, {new} (pending)" in again.err, again


def test_a_reply_of_a_reply_keeps_the_chain_root(f: Fleet, cli) -> None:
    src = finished(f, "one")
    second = json.loads(cli("--fleet", f.root, "reply", src, "more", "--json").out)["id"]
    [t] = transitions.claim(f, Seat(MachineSpec(f.machine, capabilities=["agent_run"], agents=["claude"])), 1)
    assert t.id == second
    result = {"machine": f.machine, "agent": "claude", "session_id": "sess-1"}
    transitions.complete(f, [transitions.Completion(t.id, t.attempts, "done", result)])
    refused = cli("--fleet", f.root, "reply", src, "again")
    assert refused.code == 2 and f"reply to {second} instead" in refused.err, refused
    doc = json.loads(cli("--fleet", f.root, "reply", second, "again", "--json").out)
    assert (doc["payload"]["reply_to"], doc["payload"]["chain_root"], doc["payload"]["isolate"]) == (second, src, False)


def test_resume_argv_of_each_builtin() -> None:
    agents = load_agents(None)
    cwd = Path("/w")

    def argv(name: str, session: str | None) -> list[str]:
        return build_argv(agents[name], "hi", model=None, output_file=Path("/o"), cwd=cwd, session=session)

    assert argv("claude", "S")[-4:] == ["--resume", "S", "--", "hi"]
    assert argv("codex", "S")[-4:] == ["resume", "S", "--", "hi"] and argv("codex", "S")[:2] == ["codex", "exec"]
    assert argv("gemini", "S")[-1] == "--resume=S"
    for name in ("claude", "codex", "gemini"):
        assert "{resume_args}" not in argv(name, None) and "S" not in argv(name, None)
    # a user's argv with no {resume_args}: before the first "--"; a whole resume_argv wins
    mine = agents_from({"agents": {"x": {"argv": ["x", "--", "{prompt}"], "resume_args": ["-r", "{session}"]}}})["x"]
    assert build_argv(mine, "hi", model=None, output_file=None, cwd=cwd, session="S") == ["x", "-r", "S", "--", "hi"]
    whole = agents_from(
        {"agents": {"y": {"argv": ["y", "{prompt}"], "resume_argv": ["y", "cont", "{session}", "{prompt}"]}}}
    )
    assert build_argv(whole["y"], "hi", model=None, output_file=None, cwd=cwd, session="S") == ["y", "cont", "S", "hi"]
    both = agents_from(
        {"agents": {"w": {"argv": ["w"], "resume_argv": ["w", "{session}"], "resume_args": ["-r", "{session}"]}}}
    )
    assert build_argv(both["w"], "hi", model=None, output_file=None, cwd=cwd, session="S") == ["w", "S"]
    with pytest.raises(FleetqError, match="need a '\\{session\\}' element"):
        agents_from({"agents": {"z": {"argv": ["z"], "resume_args": ["--resume"]}}})
