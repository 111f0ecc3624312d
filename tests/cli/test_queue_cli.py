"""The queue commands end to end, against a real bare remote and several clones."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from fleetq.core import transitions
from fleetq.core.config import MachineSpec
from fleetq.core.matching import Seat
from support.fleets import Fleets, git


def _ids(cli, root: Path, *args: str) -> list[str]:
    res = cli("--fleet", root, "queue", "--json", *args)
    assert res.code == 0, res.err
    return [t["id"] for t in json.loads(res.out)["tasks"]]


def test_init_makes_an_embedded_fleet(fleets: Fleets, cli) -> None:
    root = fleets.first.root
    for state in ("pending", "claimed", "done", "failed", "needs_human"):
        assert (root / "queue" / state).is_dir()
    assert "alpha:" in (root / "config" / "machines.yaml").read_text()
    assert Path(fleets.remote).is_dir() and Path(fleets.remote, "HEAD").exists()
    assert git(root, "config", "fleetq.machine").strip() == "alpha"
    # the fleet is found from inside the clone, and as the user's default elsewhere
    res = cli("queue")
    assert res.code == 0 and "(no tasks)" in res.out


def test_init_refuses_a_non_empty_dir_and_unreachable_remote(tmp_path: Path, cli) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "f").write_text("x")
    res = cli("init", str(tmp_path / "busy"))
    assert res.code == 2 and "not empty" in res.err
    res = cli("init", str(tmp_path / "f2"), "--remote", str(tmp_path / "nowhere.git"))
    assert res.code == 3 and "fleetq:" in res.err and "Traceback" not in res.err
    assert not (tmp_path / "f2").exists()


def test_init_with_remote_pushes_then_adopts(tmp_path: Path, cli) -> None:
    bare = tmp_path / "shared.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    assert cli("init", str(tmp_path / "a"), "--remote", str(bare), "--machine", "a").code == 0
    assert cli("init", str(tmp_path / "b"), "--remote", str(bare), "--machine", "b").code == 0
    text = (tmp_path / "b" / "config" / "machines.yaml").read_text()
    assert "a:" in text and "b:" in text


def test_assign_queue_show_on_every_clone(fleets: Fleets, cli) -> None:
    other = fleets.clone("beta")
    res = cli(
        "--fleet",
        fleets.first.root,
        "assign",
        "run",
        "the",
        "tests",
        "--set",
        "script=make test",
        "--set",
        "max_attempts=5",
        "--priority",
        "4",
        "--json",
    )
    assert res.code == 0, res.err
    data = json.loads(res.out)
    assert data["type"] == "run_script" and data["payload"]["script"] == "make test"
    assert data["max_attempts"] == 5 and data["priority"] == 4 and data["state"] == "pending"
    tid = data["id"]
    res = cli("--fleet", other.root, "queue")
    assert tid in res.out and "run the tests" in res.out
    res = cli("--fleet", other.root, "show", tid[:4], "--json")
    assert json.loads(res.out)["id"] == tid
    # the person's checkout followed (it was clean)
    assert (fleets.first.root / "queue" / "pending" / f"{tid}.yaml").exists()


def test_assign_checks_machine_capability_and_agent(fleets: Fleets, cli) -> None:
    root = fleets.first.root
    res = cli("--fleet", root, "assign", "build ios", "--machine", "alpha", "--type", "ios_build")
    assert res.code == 2 and "cannot run ios_build" in res.err
    res = cli("--fleet", root, "assign", "x", "--machine", "nosuch")
    assert res.code == 2 and "unknown machine 'nosuch'" in res.err
    res = cli("--fleet", root, "assign", "write code", "--machine", "alpha", "--agent", "nosuchagent")
    assert res.code == 2 and "agent nosuchagent is neither built in nor in config/agents.yaml" in res.err
    res = cli("--fleet", root, "assign", "write code", "--machine", "alpha", "--agent", "codex")
    assert res.code == 0, res.err  # a known agent the machine does not list: a warning only
    res2 = cli("--fleet", root, "show", res.out.strip(), "--json")
    assert json.loads(res2.out)["target"] == "alpha"
    res = cli("--fleet", root, "assign", "no script", "--type", "run_script")
    assert res.code == 2 and "needs a script" in res.err


def test_queue_columns_machine_arrow_and_claimer(fleets: Fleets, cli) -> None:
    root = fleets.first.root
    pinned = cli("--fleet", root, "assign", "pinned", "--machine", "alpha", "--set", "script=true").out.strip()
    res = cli("--fleet", root, "queue")
    line = next(ln for ln in res.out.splitlines() if ln.startswith(pinned))
    assert "→alpha" in line
    seat = Seat(MachineSpec("alpha", capabilities=["run_script"]))
    claimed = transitions.claim(fleets.first, seat, 1)
    assert [t.id for t in claimed] == [pinned]
    line = next(ln for ln in cli("--fleet", root, "queue").out.splitlines() if ln.startswith(pinned))
    assert "claimed" in line and " alpha " in line and "→" not in line
    assert _ids(cli, root, "--status", "claimed") == [pinned]
    assert _ids(cli, root, "--status", "in_progress") == [pinned]
    assert cli("--fleet", root, "queue", "--status", "bogus").code == 2


def test_newest_first_and_id_prefix(fleets: Fleets, cli) -> None:
    root = fleets.first.root
    a = cli("--fleet", root, "assign", "first", "--id", "abc-1", "--set", "script=true").out.strip()
    time.sleep(1.05)  # created_at has one-second resolution
    b = cli("--fleet", root, "assign", "second", "--id", "abd-2", "--set", "script=true").out.strip()
    assert _ids(cli, root)[:2] == [b, a]
    assert json.loads(cli("--fleet", root, "show", "abc", "--json").out)["id"] == "abc-1"
    res = cli("--fleet", root, "show", "ab")
    assert res.code == 2 and "matches 2 tasks" in res.err
    res = cli("--fleet", root, "show", "../etc/passwd")
    assert res.code == 2 and "not a task id" in res.err
    res = cli("--fleet", root, "show", "zzz")
    assert res.code == 2 and "no task" in res.err


def test_resolve_cancel_review_failures_log(fleets: Fleets, cli) -> None:
    f = fleets.first
    root = f.root
    tid = cli("--fleet", root, "assign", "job", "--set", "script=false").out.strip()
    seat = Seat(MachineSpec("alpha", capabilities=["run_script"]))
    [t] = transitions.claim(f, seat, 1)
    transitions.complete(
        f, [transitions.Completion(tid, t.attempts, "needs_human", {"error": "agent asked a question"})]
    )
    res = cli("--fleet", root, "review")
    assert tid in res.out and "agent asked a question" in res.out and "fleetq resolve" in res.out
    res = cli("--fleet", root, "resolve", tid, "failed", "--notes", "handled")
    assert res.code == 0 and "needs_human -> failed" in res.out
    res = cli("--fleet", root, "failures")
    assert tid in res.out and f"fleetq resolve {tid} pending" in res.out
    assert cli("--fleet", root, "resolve", tid, "pending").code == 0
    shown = json.loads(cli("--fleet", root, "show", tid, "--json").out)
    # re-queued with a fresh budget; the attempt count (the fencing token) never goes back
    assert shown["state"] == "pending" and shown["attempts"] == 1 and shown["max_attempts"] == 1 + 3
    assert any("handled" in n["text"] for n in shown["notes"])
    assert cli("--fleet", root, "cancel", tid).out.strip() == f"{tid}: pending -> failed"
    res = cli("--fleet", root, "cancel", tid)
    assert res.code == 4 and "only pending" in res.err
    events = json.loads(cli("--fleet", root, "log", tid, "--json").out)["events"]
    assert [e["transition"] for e in events] == [
        "new->pending",
        "pending->claimed",
        "claimed->needs_human",
        "needs_human->failed",
        "failed->pending",
        "pending->failed",
    ]
    assert all(e["machine"] == "alpha" for e in events)


def test_resolve_all_takes_every_needs_human(fleets: Fleets, cli) -> None:
    f = fleets.first
    seat = Seat(MachineSpec("alpha", capabilities=["run_script"]), first_seen={})
    ids = [cli("--fleet", f.root, "assign", f"j{i}", "--set", "script=true").out.strip() for i in range(3)]
    claimed = transitions.claim(f, seat, 3)
    transitions.complete(f, [transitions.Completion(t.id, 1, "needs_human") for t in claimed])
    res = cli("--fleet", f.root, "resolve", "all")
    assert res.code == 0 and res.out.count("needs_human -> done") == 3
    assert sorted(_ids(cli, f.root, "--status", "done")) == sorted(ids)


def test_hand_written_task_is_seen_everywhere_and_bad_ones_reported(fleets: Fleets, cli) -> None:
    other = fleets.clone("beta")
    root = fleets.first.root
    (root / "queue" / "pending" / "by-hand.yaml").write_text(
        "# a person wrote this\nid: by-hand\ntype: run_script\npayload:\n  script: echo hand\n"
    )
    (root / "queue" / "pending" / "broken.yaml").write_text("id: broken\ntype: [oops\n")
    (root / "queue" / "pending" / "wrong-name.yaml").write_text("id: something-else\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "tasks by hand")
    git(root, "pull", "-q", "--rebase", "origin", "main")  # beta's join moved the remote
    git(root, "push", "-q", "origin", "main")
    res = cli("--fleet", other.root, "queue")
    assert res.code == 0
    assert "by-hand" in res.out
    assert "queue/pending/broken.yaml" in res.err and "invalid YAML" in res.err
    assert "does not match the file name" in res.err
    res = cli("--fleet", root, "validate")
    assert res.code == 1 and "broken.yaml" in res.err and "2 problems" in res.out
    assert cli("--fleet", root, "validate", str(root / "queue" / "pending" / "by-hand.yaml")).code == 0
    # bad files never stop the good one from being claimed
    seat = Seat(MachineSpec("beta", capabilities=["run_script"]))
    problems: list = []
    claimed = transitions.claim(other, seat, 5, problems=problems)
    assert [t.id for t in claimed] == ["by-hand"]
    assert len(problems) == 2
    text = (other.root / ".git").exists() and git(other.root, "show", "origin/main:queue/claimed/by-hand.yaml")
    assert "# a person wrote this" in text and "machine: beta" in text


def test_archive_keeps_history(fleets: Fleets, cli) -> None:
    f = fleets.first
    tid = cli("--fleet", f.root, "assign", "old", "--set", "script=true").out.strip()
    seat = Seat(MachineSpec("alpha", capabilities=["run_script"]))
    transitions.claim(f, seat, 1)
    transitions.complete(f, [transitions.Completion(tid, 1, "done", {"exit_code": 0})])
    assert _ids(cli, f.root, "--status", "done") == [tid]
    res = cli("--fleet", f.root, "archive", "--before", "2026-13-01")  # no such day: refused, not "nothing"
    assert res.code == 2 and "--before takes a date YYYY-MM-DD" in res.err
    res = cli("--fleet", f.root, "archive", "--before", "2999-01-01")
    assert res.code == 0 and "archived 1 day" in res.out
    assert _ids(cli, f.root, "--status", "done") == []
    events = json.loads(cli("--fleet", f.root, "log", tid, "--json").out)["events"]
    assert events[-1]["transition"] == "done->archived"


def test_stdlib_queue_is_not_shadowed() -> None:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", "import queue; queue.Queue(); print(queue.__file__)"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(root) not in proc.stdout
    assert not (root / "queue" / "__init__.py").exists()


def test_machine_name_sources(fleets: Fleets, cli, monkeypatch) -> None:
    root = fleets.first.root
    assert (
        json.loads(cli("--fleet", root, "assign", "a", "--set", "script=true", "--json").out)["created_by"] == "alpha"
    )
    monkeypatch.setenv("FLEETQ_MACHINE", "from-env")
    assert (
        json.loads(cli("--fleet", root, "assign", "b", "--set", "script=true", "--json").out)["created_by"]
        == "from-env"
    )
    assert (
        json.loads(cli("--fleet", root, "--machine", "flag", "assign", "c", "--set", "script=true", "--json").out)[
            "created_by"
        ]
        == "flag"
    )
    monkeypatch.setenv("FLEETQ_MACHINE", "../bad")
    res = cli("--fleet", root, "queue")
    assert res.code == 2 and "not a safe name" in res.err


def test_a_repo_with_a_queue_dir_is_not_taken_for_a_fleet(fleets: Fleets, cli, tmp_path: Path, monkeypatch) -> None:
    """fleetq's own source tree has queue/ and config/: only the .fleetq marker makes a fleet."""
    other = tmp_path / "project"
    (other / "queue" / "pending").mkdir(parents=True)
    (other / "config").mkdir()
    (other / "config" / "machines.yaml").write_text("machines: {}\n")
    git(tmp_path, "init", "-q", str(other))
    monkeypatch.chdir(other)
    tid = cli("assign", "x", "--set", "script=true").out.strip()
    assert tid and (fleets.first.root / ".fleetq").is_file()
    assert json.loads(cli("--fleet", fleets.first.root, "show", tid, "--json").out)["id"] == tid


def test_a_push_refused_for_another_reason_is_not_a_race(fleets: Fleets, cli, tmp_path: Path) -> None:
    """A non-bare origin with main checked out refuses pushes: one clear error, no retry loop."""
    work = tmp_path / "checked-out"
    git(tmp_path, "clone", "-q", fleets.remote, str(work))
    f = fleets.first
    git(f.root, "remote", "set-url", "origin", str(work))
    res = cli("--fleet", f.root, "assign", "x", "--set", "script=true")
    assert res.code == 3 and "refused the push" in res.err
