"""Auto-routing in `fleetq assign`: rules (keywords, agents, load) and a (fake) router agent."""

from __future__ import annotations

import io
import json
import os

import pytest

from fleetq.core.heartbeat import beat
from fleetq.fleet.routing import capability_hints, guess_type, parse_reply
from support.fleets import FAKES, Fleets
from support.workers import set_file, set_machines

GENERIC = ["agent_run", "run_script", "git_pull", "npm_build", "test_run", "lint"]
MACHINES = {
    "mini": {"os": "macos", "capabilities": GENERIC + ["ios_build", "xcode"], "agents": ["claude", "gemini"]},
    "tp": {
        "os": "linux",
        "capabilities": GENERIC + ["android_build", "python_backend", "docker"],
        "agents": ["claude"],
    },
    "box": {"os": "linux", "capabilities": GENERIC, "agents": ["codex", "claude"]},
}
LOADS = {"mini": 60, "tp": 40, "box": 5}  # box is the idlest


@pytest.fixture
def fleet(fleets: Fleets, monkeypatch: pytest.MonkeyPatch):
    set_machines(fleets.first, MACHINES)
    for name, pct in LOADS.items():
        beat(
            fleets.clone(name),
            {
                "seq": 1,
                "slots": 2,
                "agents": MACHINES[name]["agents"],
                "running": [],
                "load": {"cpu": pct, "memory": pct, "load_pct": pct, "load1": 1.0, "cpus": 4},
            },
        )
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    return fleets.first


def _assign(cli, fleet, *args: str) -> dict:
    res = cli("--fleet", fleet.root, "assign", *args, "--machine", "auto", "--yes", "--json")
    assert res.code == 0, res.err
    return json.loads(res.out)


def test_keyword_and_capability_hints() -> None:
    assert guess_type("build the iOS release") == "ios_build"
    assert guess_type("fix the iOS login crash") is None  # no build verb: agent work
    assert guess_type("run the test suite") == "test_run"
    assert guess_type("write unit tests for the cart") is None
    from fleetq.core.config import FleetConfig, parse_machines

    cfg = FleetConfig.__new__(FleetConfig)
    cfg.machines, cfg.settings = parse_machines({"machines": MACHINES}), {}
    assert capability_hints("Refactor the Python backend", cfg, {}) == ["python_backend"]
    assert capability_hints("update the Dockerfile", cfg, {}) == ["docker"]
    assert parse_reply('Sure!\n```json\n{"machine": "tp", "reason": "x {y}"}\n```') == {
        "machine": "tp",
        "reason": "x {y}",
    }


def test_rules_route_by_keywords_agents_and_load(fleet, cli) -> None:
    doc = _assign(cli, fleet, "build", "the", "iOS", "release")
    assert (doc["target"], doc["type"], doc.get("agent")) == ("mini", "ios_build", None)
    assert doc["route"]["source"] == "rules" and "type ios_build from the description" in doc["route"]["reason"]

    doc = _assign(cli, fleet, "refactor the python backend error handling")
    assert (doc["target"], doc["type"], doc["agent"]) == ("tp", "agent_run", "claude")
    assert "mentions python_backend, which tp has" in doc["route"]["reason"]

    doc = _assign(cli, fleet, "summarise the last ten commits")
    assert (doc["target"], doc["agent"]) == ("box", "codex")  # lowest load; its first listed agent
    assert "load score 0.05 (lowest)" in doc["route"]["reason"]
    assert doc["payload"]["prompt"] == "summarise the last ten commits"

    doc = _assign(cli, fleet, "ask gemini to review the design", "--agent", "gemini")
    assert (doc["target"], doc["agent"]) == ("mini", "gemini")  # only mini has gemini

    doc = _assign(cli, fleet, "deploy the site", "--set", "script=./deploy.sh")
    assert (doc["target"], doc["type"]) == ("box", "run_script")


def test_confirm_prompt_can_decline(fleet, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    before = set(fleet.snapshot().all_refs())
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    res = cli("--fleet", fleet.root, "assign", "tidy the readme", "--machine", "auto")
    assert res.code == 1 and "Confirm? [Y/n]" in res.out and "not queued" in res.out
    assert "Machine    box" in res.out and "Task type  agent_run" in res.out and "Reason" in res.out
    assert set(fleet.snapshot().all_refs()) == before
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))  # Enter takes the default: yes
    res = cli("--fleet", fleet.root, "assign", "tidy the readme", "--machine", "auto")
    assert res.code == 0
    tid = res.out.strip().splitlines()[-1].split()[-1]
    assert fleet.snapshot().get(tid).target == "box"
    queued = set(fleet.snapshot().all_refs())
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # off a terminal, nothing to read: say so, queue nothing
    res = cli("--fleet", fleet.root, "assign", "tidy the readme", "--machine", "auto")
    assert res.code == 2 and "stdin is not a terminal: pass --yes" in res.err and "aborted" not in res.err
    assert set(fleet.snapshot().all_refs()) == queued


def test_router_agent_recommends_and_bad_answers_fall_back(
    fleet, cli, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    set_file(fleet, "config/fleet.yaml", "router: claude\n")
    log = tmp_path / "agent.log"
    monkeypatch.setenv("FAKE_AGENT_LOG", str(log))
    monkeypatch.setenv(
        "FAKE_AGENT_REPLY",
        '{"machine": "tp", "agent": "claude", "type": "agent_run", '
        '"reason": "Python backend work, no mobile tooling needed"}',
    )
    doc = _assign(cli, fleet, "refactor the payment service")
    assert (doc["target"], doc["agent"], doc["type"]) == ("tp", "claude", "agent_run")
    assert doc["route"] == {
        "machine": "tp",
        "agent": "claude",
        "type": "agent_run",
        "source": "router:claude",
        "reason": "Python backend work, no mobile tooling needed",
        "notes": [],
    }
    prompt = json.loads(log.read_text().splitlines()[-1])["argv"][-1]  # after "--"
    assert "refactor the payment service" in prompt and "- tp: os linux" in prompt and "load score 0.40" in prompt

    # The user's flags win over the router's answer.
    doc = _assign(cli, fleet, "refactor the payment service", "--agent", "gemini")
    assert doc["route"]["source"] == "rules" and "agent 'gemini' is not listed for tp" in doc["route"]["notes"][0]

    monkeypatch.setenv("FAKE_AGENT_REPLY", '{"machine": "nosuch"}')
    res = cli("--fleet", fleet.root, "assign", "x", "--machine", "auto", "--yes")
    assert res.code == 0 and "router claude gave no usable answer (it named machine 'nosuch'" in res.err
    monkeypatch.setenv("FAKE_AGENT_EXIT", "3")
    res = cli("--fleet", fleet.root, "assign", "x", "--machine", "auto", "--yes")
    assert res.code == 0 and "router claude gave no usable answer" in res.err


def test_router_not_installed_routes_by_rules(fleet, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    set_file(fleet, "config/fleet.yaml", "router: claude\n")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    doc = _assign(cli, fleet, "summarise the changelog")
    assert doc["route"]["source"] == "rules"
    assert doc["route"]["notes"] == ["router 'claude' is not installed here; routed by rules"]


def test_without_auto_nothing_changes(fleet, cli) -> None:
    res = cli("--fleet", fleet.root, "assign", "free for all", "--set", "script=true", "--json")
    doc = json.loads(res.out)
    assert "target" not in doc and "route" not in doc  # not a terminal: no routing, unpinned as before
    doc = json.loads(
        cli("--fleet", fleet.root, "assign", "x", "--machine", "any", "--set", "script=true", "--json").out
    )
    assert "target" not in doc
