"""`fleetq skills`: declared, available, add (comments kept), create (handler scaffold), list/install over SSH."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest

from fleetq.core.heartbeat import beat
from fleetq.handlerapi import HandlerContext
from fleetq.run import handlers as handlers_loader
from support.fleets import Fleets, git
from support.sshd import SshServer, sshd  # noqa: F401  (fixture)
from support.workers import set_file

MACHINES_YAML = """\
# The fleet's machines. Keep this comment!
machines:
  alpha:
    os: linux
    host: fleet-alpha
    capabilities: [agent_run, run_script]   # flow style, kept
  tp:
    os: linux
    host: fleet-tp      # SSH target
    # tp's capabilities, one per line
    capabilities:
      - run_script
      - android_build
    agents: [claude]
"""
SKILLS_YAML = """\
# Installable skills (a comment to keep)
skills:
  present:
    category: core
    check: "true"
    install: {linux: "true"}
    task_types: [run_script]
  absent:
    category: mobile
    check: "false"
    install: {macos: brew install absent}
    task_types: [absent_build]
  python:
    category: backend
    check: python3 --version
    task_types: [test_run, lint]
"""


@pytest.fixture
def fleet(fleets: Fleets):
    set_file(fleets.first, "config/machines.yaml", MACHINES_YAML)
    set_file(fleets.first, "config/skills.yaml", SKILLS_YAML)
    return fleets.first


def _remote_file(fleet, path: str) -> str:
    fleet.repo.fetch()
    return fleet.snapshot().read(path).decode()


def test_skills_add_keeps_comments_and_pushes(fleet, cli) -> None:
    root = fleet.root
    res = cli("--fleet", root, "skills", "add", "tp", "python")
    assert res.code == 0, res.err
    assert "tp: added python, test_run, lint" in res.out
    text = _remote_file(fleet, "config/machines.yaml")
    assert "# The fleet's machines. Keep this comment!" in text and "# tp's capabilities, one per line" in text
    assert "host: fleet-tp      # SSH target" in text and "# flow style, kept" in text
    assert "      - android_build\n      - python\n      - test_run\n      - lint\n" in text
    assert "skills add tp python" in git(root, "log", "-1", "--format=%B", "origin/main")
    assert (root / "config/machines.yaml").read_text() == text  # the clean checkout moved forward too
    assert "already declares python" in cli("--fleet", root, "skills", "add", "tp", "python").out
    res = cli("--fleet", root, "skills", "add", "alpha", "swiftlint")
    assert res.code == 0 and "not in config/skills.yaml: adding it as a plain capability" in res.err
    line = next(ln for ln in _remote_file(fleet, "config/machines.yaml").splitlines() if "swiftlint" in ln)
    assert (
        line.split("#")[0].strip() == "capabilities: [agent_run, run_script, swiftlint]"
        and "# flow style, kept" in line
    )
    assert cli("--fleet", root, "skills", "add", "nosuch", "python").code == 2


def test_skills_create_scaffolds_a_working_handler(fleet, cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    answers = "Summarise a pull request\nbackend\ngit --version\nbrew install git\nsudo apt-get install -y git\n\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(answers))
    res = cli("--fleet", fleet.root, "skills", "create", "summarise-pr")
    assert res.code == 0, res.err
    for prompt in (
        "Description:",
        "Category [custom]:",
        "Check command:",
        "Install (macos):",
        "Install (linux):",
        "Task type [summarise_pr]:",
    ):
        assert prompt in res.out
    assert "✓ Created handler: handlers/summarise_pr.py" in res.out and "✓ Registered in config/skills.yaml" in res.out
    reg = _remote_file(fleet, "config/skills.yaml")
    assert reg.startswith("# Installable skills (a comment to keep)")
    entry = fleet.snapshot().read_yaml("config/skills.yaml")["skills"]["summarise-pr"]
    assert entry == {
        "description": "Summarise a pull request",
        "category": "backend",
        "check": "git --version",
        "install": {"macos": "brew install git", "linux": "sudo apt-get install -y git"},
        "task_types": ["summarise_pr"],
        "handler": "handlers/summarise_pr.py",
    }
    module = handlers_loader.load_handler("summarise_pr", fleet.root)
    ctx = HandlerContext(
        task_id="t",
        task={},
        payload={},
        machine="alpha",
        attempt=1,
        fleet_dir=fleet.root,
        log_path=tmp_path / "log",
        env={},
        agents={},
        cancel=threading.Event(),
        timeout=None,
    )
    res = module.run(ctx)
    assert res.outcome == "needs_human" and "not implemented" in res.error
    monkeypatch.setattr("sys.stdin", io.StringIO(answers))
    assert cli("--fleet", fleet.root, "skills", "create", "summarise-pr").code == 4  # already there
    res = cli(
        "--fleet",
        fleet.root,
        "skills",
        "create",
        "Bad Name",
        "--description",
        "x",
        "--category",
        "c",
        "--check",
        "",
        "--install-macos",
        "",
        "--install-linux",
        "",
        "--type",
        "ok",
    )
    assert res.code == 2


def test_declared_and_available_from_heartbeats(fleet, fleets: Fleets, cli) -> None:
    root = fleet.root
    doc = json.loads(cli("--fleet", root, "skills", "--json").out)
    assert {m["name"]: m["capabilities"] for m in doc["machines"]}["tp"] == ["run_script", "android_build"]
    assert "android_build" in cli("--fleet", root, "skills").out
    beat(fleets.clone("tp"), {"seq": 1, "running": [], "skills": {"present": True, "absent": False}})
    doc = json.loads(cli("--fleet", root, "skills", "available", "--json").out)
    status = {s["name"]: s["machines"] for s in doc["skills"]}
    assert status["present"] == {"alpha": "declared", "tp": "installed"}  # tp's heartbeat reports its checks
    assert status["absent"] == {"alpha": "-", "tp": "missing"}
    doc = json.loads(cli("--fleet", root, "skills", "available", "--category", "mobile", "--json").out)
    assert [s["name"] for s in doc["skills"]] == ["absent"]


def test_list_and_install_here_and_over_ssh(fleet, cli, sshd: SshServer, tmp_path: Path) -> None:  # noqa: F811
    sshd.alias("fleet-tp")
    marker = tmp_path / "installed-marker"
    set_file(
        fleet,
        "config/skills.yaml",
        SKILLS_YAML + f"  marker:\n    category: core\n    check: test -f {marker}\n"
        f"    install: {{linux: touch {marker}}}\n",
    )
    root = fleet.root
    for machine in ("alpha", "tp"):  # alpha is this machine (no SSH); tp goes through the test sshd
        doc = json.loads(cli("--fleet", root, "skills", "list", machine, "--json").out)
        got = {s["skill"]: (s["installed"], s["declared"]) for s in doc["skills"]}
        assert got["present"] == (True, True) and got["absent"] == (False, False) and got["marker"][0] is False
    text = cli("--fleet", root, "skills", "list", "tp").out
    assert (
        "present is installed" not in text
        and "python is installed but not declared: fleetq skills add tp python" in text
    )

    res = cli("--fleet", root, "skills", "install", "tp", "marker")
    assert res.code == 0, res.err
    assert f"→ installing marker on tp (linux): touch {marker}" in res.out and "✓ marker installed on tp" in res.out
    assert "fleetq skills add tp marker" in res.out and marker.exists()
    res = cli("--fleet", root, "skills", "install", "tp", "absent")
    assert res.code == 1 and "no install recipe for linux" in res.err
    doc = json.loads(cli("--fleet", root, "skills", "available", "--check", "--json").out)
    assert {s["name"]: s["machines"] for s in doc["skills"]}["marker"] == {"alpha": "installed", "tp": "installed"}
