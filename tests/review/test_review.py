"""Reviewing isolated agent runs: `fleetq review`, `diff`, `accept`, `reject` on real repos, clones and sshd."""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fleetq.core import transitions
from fleetq.core.clone import Fleet
from fleetq.core.config import MachineSpec
from fleetq.core.matching import Seat
from fleetq.run.handlers import load_handler
from support.fleets import Fleets, git
from support.handlers import make_ctx
from support.projects import files_in, fingerprint, make_project
from support.sshd import SshServer, sshd  # noqa: F401  (fixture)
from support.workers import set_machines, tasks

pytestmark = pytest.mark.timeout(60)


def finish(fleet: Fleet, env: dict[str, str], tid: str, prompt: str, **payload: str) -> dict:
    """Queue an agent task, claim it with ``fleet``, run the real handler, report its result: the task's result."""
    transitions.create(
        fleet,
        tasks(1, tid, type="agent_run", agent="claude", title=f"run {tid}", payload={"prompt": prompt, **payload}),
    )
    [t] = transitions.claim(fleet, Seat(MachineSpec(fleet.machine, capabilities=["agent_run"], agents=["claude"])), 1)
    ctx = dataclasses.replace(
        make_ctx(fleet.root.parent, env, "agent_run", t.payload),
        task_id=t.id,
        task=t.data,
        machine=fleet.machine,
        fleet_dir=fleet.root,
    )
    res = load_handler("agent_run", ctx.fleet_dir).run(ctx)
    transitions.complete(fleet, [transitions.Completion(t.id, t.attempts, res.outcome, res.to_dict())])
    return fleet.snapshot().get(t.id).result


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")


def test_review_diff_accept_reject(fleets: Fleets, cli, env: dict[str, str], project: Path) -> None:
    f = fleets.first
    root = f.root
    finish(f, env, "add", "@write new1.txt hello\\nworld\\n", cwd=str(project))
    finish(f, env, "edit", "@write a.txt one\\nTWO\\nthree\\n", cwd=str(project))
    finish(f, env, "drop", "@delete keep.md", cwd=str(project))
    finish(f, env, "nothing", "look only", cwd=str(project))  # no change: nothing to review
    transitions.create(f, tasks(1, "ask", title="a question"))
    [t] = transitions.claim(f, Seat(MachineSpec("alpha", capabilities=["run_script"])), 1)
    transitions.complete(f, [transitions.Completion(t.id, t.attempts, "needs_human", {"error": "which db?"})])

    doc = json.loads(cli("--fleet", root, "review", "--json").out)
    assert [t["id"] for t in doc["tasks"]] == ["ask000"]
    runs = {r["id"]: r["diffstat"] for r in doc["runs"]}
    assert runs == {
        "add000": {"files_changed": 1, "insertions": 2, "deletions": 0},
        "edit000": {"files_changed": 1, "insertions": 1, "deletions": 1},
        "drop000": {"files_changed": 1, "insertions": 0, "deletions": 1},
    }
    text = cli("--fleet", root, "review").out
    assert "which db?" in text and "fleetq resolve ask000" in text
    assert "fleetq/add000" in text and "+2" in text and "fleetq accept" in text

    res = cli("--fleet", root, "diff", "add000")
    assert res.code == 0 and "+++ b/new1.txt" in res.out and "+hello" in res.out, res.err
    assert "new1.txt | 2 ++" in cli("--fleet", root, "diff", "add000", "--stat").out
    doc = json.loads(cli("--fleet", root, "diff", "edit000", "--json").out)
    assert doc["branch"] == "fleetq/edit000" and "-two" in doc["diff"] and doc["files_changed"] == 1
    res = cli("--fleet", root, "diff", "nothing000")
    assert res.code == 2 and "no branch to review (it changed nothing)" in res.err
    res = cli("--fleet", root, "diff", "ask000")
    assert res.code == 2 and "not an isolated agent run" in res.err

    # accept, fast-forward: main is checked out and clean, so it moves (with the checkout)
    res = cli("--fleet", root, "accept", "add000")
    assert res.code == 0 and "accepted; main fast-forwarded" in res.out, res.err
    assert (project / "new1.txt").read_text() == "hello\nworld\n" and git(project, "status", "--porcelain") == ""
    assert "fleetq/add000" not in git(project, "branch", "--list")  # merged, so deleted
    res = cli("--fleet", root, "show", "add000", "--json")
    assert res.code == 0, res.err
    shown = json.loads(res.out)
    assert (
        shown["state"] == "done"
        and shown["result"]["review"]["decision"] == "accepted"
        and shown["result"]["review"]["into"] == "main"
    )
    assert any(n["text"] == "review: accepted" for n in shown["notes"])
    text = cli("--fleet", root, "show", "add000").out
    assert "fleetq/add000" in text and "accepted by" in text and "files, +" in text
    res = cli("--fleet", root, "accept", "add000")
    assert res.code == 4 and "already accepted" in res.err

    # main moved on: no fast-forward; with main checked out and dirty, no merge either
    res = cli("--fleet", root, "accept", "edit000")
    assert res.code == 4 and "cannot fast-forward; use --merge" in res.err
    (project / "src" / "b.py").write_text("dirty\n")
    res = cli("--fleet", root, "accept", "edit000", "--merge")
    assert res.code == 4 and "uncommitted changes" in res.err
    # the person switches to another branch (keeping the edit): main is merged in a private worktree
    git(project, "checkout", "-q", "-b", "side")
    before = fingerprint(project)
    doc = json.loads(cli("--fleet", root, "accept", "edit000", "--merge", "--json").out)
    before["main"] = doc["commit"] + "\n"  # the one thing that moves: main, which nobody has checked out
    assert doc["decision"] == "accepted" and doc["mode"] == "merge"
    assert fingerprint(project) == before
    assert git(project, "rev-parse", "main").strip() == doc["commit"]
    assert len(git(project, "log", "-1", "--format=%P", "main").split()) == 2
    assert files_in(project, "main")["a.txt"] == "one\nTWO\nthree\n" and "new1.txt" in files_in(project, "main")
    assert git(project, "worktree", "list", "--porcelain").count("worktree ") == 1

    res = cli("--fleet", root, "reject", "drop000", "--notes", "keep the file")
    assert res.code == 0 and "rejected; fleetq/drop000 deleted" in res.out, res.err
    assert "fleetq/drop000" not in git(project, "branch", "--list") and "keep.md" in files_in(project, "main")
    shown = json.loads(cli("--fleet", root, "show", "drop000", "--json").out)
    assert shown["result"]["review"]["decision"] == "rejected" and shown["result"]["review"]["notes"] == "keep the file"
    doc = json.loads(cli("--fleet", root, "review", "--json").out)
    assert doc["runs"] == [] and [t["id"] for t in doc["tasks"]] == ["ask000"]


def test_pushed_branch_reviewed_from_another_clone(
    fleets: Fleets, cli, env: dict[str, str], tmp_path: Path, project: Path
) -> None:
    remote = tmp_path / "pub.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(project, "remote", "add", "pub", str(remote))
    git(project, "push", "-q", "pub", "main")
    mine = tmp_path / "mine"
    git(tmp_path, "clone", "-q", str(remote), str(mine))
    worker = fleets.clone("w")
    finish(worker, env, "pushed", "@write feature.txt new feature\\n", cwd=str(project), push=str(remote))
    finish(worker, env, "other", "@write junk.txt junk\\n", cwd=str(project), push=str(remote))
    root = fleets.first.root
    res = cli("--fleet", root, "diff", "pushed", "--stat", "--repo", mine)  # fetched from the remote
    assert res.code == 0 and "feature.txt | 1 +" in res.out, res.err
    res = cli("--fleet", root, "accept", "pushed", "--repo", mine)
    assert res.code == 0, res.err
    assert (mine / "feature.txt").read_text() == "new feature\n"
    res = cli("--fleet", root, "reject", "other", "--repo", mine)
    assert res.code == 0 and str(remote) in res.out, res.err
    assert "fleetq/other000" not in git(remote, "branch", "--list")
    res = cli("--fleet", root, "diff", "other", "--repo", tmp_path)
    assert res.code == 2 and "not inside a git work tree" in res.err


def test_diff_over_ssh_from_the_worker(fleets: Fleets, env: dict[str, str], tmp_path: Path, sshd: SshServer) -> None:  # noqa: F811
    """The repo is only on the worker (hidden here by a private mount namespace): the diff comes over SSH."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("needs unshare -m (root or user namespaces) to hide the repo from the reviewing side")
    hidden = tmp_path / "worker-disk"
    project = make_project(hidden / "project")
    set_machines(
        fleets.first,
        {"alpha": {"capabilities": ["agent_run"]}, "w": {"capabilities": ["agent_run"], "host": sshd.alias("fleet-w")}},
    )
    finish(fleets.clone("w"), env, "far", "@write remote.txt from afar\\n", cwd=str(project))
    fleetq = f"{shlex.quote(sys.executable)} -m fleetq --fleet {shlex.quote(str(fleets.first.root))} --machine alpha"
    script = (
        f"mount -t tmpfs none {shlex.quote(str(hidden))} && test ! -e {shlex.quote(str(project))} && "
        f"{fleetq} diff far --stat && {fleetq} reject far"
    )
    res = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "remote.txt | 1 +" in res.stdout and "deleted from w:" in res.stdout
    assert "fleetq/far000" not in git(project, "branch", "--list")
