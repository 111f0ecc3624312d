"""`fleetq reply` end to end with the real agent CLIs against the provider fakes: an isolated agent_run
finishes on a worker, the reply queues a continuation pinned to the same machine, the worker runs it,
and the agent really resumed its session (the provider receives the first prompt and the reply in one
conversation), both runs' commits on the one branch ``fleetq/<first id>``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fleetq.core.clone import Fleet
from support.fleets import Fleets, git, run_fleetq
from support.projects import files_in, make_project
from support.providers import ProviderFake, Request
from support.realagents import ROUTES, agent_env
from support.workers import add, tasks

pytestmark = pytest.mark.timeout(150)

FIRST, SECOND = "write the first note", "now write the second note too"


def _work_once(fleet: Fleet, env: dict[str, str]) -> None:
    proc = run_fleetq("--fleet", str(fleet.root), "work", "--once", env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _texts(cli: str, req: Request) -> str:
    """The conversation a request carries, as text (the prompts are in it verbatim)."""
    body: Any = req.body
    key = {"claude": "messages", "gemini": "contents", "codex": "input"}[cli]
    return json.dumps(body.get(key) if isinstance(body, dict) else None)


@pytest.mark.parametrize("cli", ["claude", "codex", "gemini"])
def test_reply_resumes_the_session_on_the_same_machine_and_branch(cli: str, fleets: Fleets, tmp_path: Path) -> None:
    f = fleets.first
    project = make_project(tmp_path / "project")
    base = git(project, "rev-parse", "main").strip()
    with ProviderFake(ROUTES[cli]) as fake:
        env = agent_env(cli, fake, tmp_path)
        fake.mode, fake.reply, fake.edit = "edit", "wrote one", ("notes/one.txt", "one\n")
        task = {**tasks(1, "r")[0], "type": "agent_run", "agent": cli, "title": FIRST}
        task["payload"] = {"prompt": FIRST, "cwd": str(project)}
        add(f, [task])
        _work_once(f, env)
        first = f.snapshot().get("r000")
        assert first.state == "done", first.result
        assert first.result["session_id"] and first.result["branch"] == "fleetq/r000", first.result

        fake.reply, fake.edit = "wrote two", ("notes/two.txt", "two\n")
        asked = len(fake.requests)
        out = run_fleetq("--fleet", str(f.root), "reply", "r000", SECOND, "--json", env=env, check=True)
        doc = json.loads(out.stdout)
        assert doc["target"] == f.machine and doc["agent"] == cli and doc["state"] == "pending", doc
        assert doc["payload"]["resume"] == first.result["session_id"], doc
        _work_once(f, env)

    second = f.snapshot().get(doc["id"])
    assert second.state == "done", second.result
    r = second.result
    assert r["machine"] == f.machine and r["branch"] == "fleetq/r000" and r["base"] == base, r
    # the session really resumed: one request of the reply's run carries the first prompt and the reply
    later = [_texts(cli, q) for q in fake.requests[asked:] if q.method == "POST"]
    assert any(FIRST in t and SECOND in t for t in later), later
    # both runs' commits are on the one branch; its diff is the whole chain
    assert files_in(project, "fleetq/r000")["notes/one.txt"] == "one\n"
    assert files_in(project, "fleetq/r000")["notes/two.txt"] == "two\n"
    assert git(project, "rev-list", "--count", f"{base}..fleetq/r000").strip() == "2"
    assert (r["files_changed"], r["head"]) == (2, git(project, "rev-parse", "fleetq/r000").strip()), r
    # review shows the chain once, by its newest link; diff of the first id takes the whole chain
    runs = json.loads(run_fleetq("--fleet", str(f.root), "review", "--json", check=True).stdout)["runs"]
    assert [x["id"] for x in runs] == [second.id], runs
    stat = run_fleetq("--fleet", str(f.root), "diff", "r000", "--stat", check=True)
    assert "notes/one.txt" in stat.stdout and "notes/two.txt" in stat.stdout, stat.stdout
    assert f"taking its chain's newest link, {second.id}" in stat.stderr, stat.stderr
