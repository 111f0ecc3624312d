"""Isolated agent runs (fleetq/isolate.py): a worktree and branch per run, against real git repos and fake agents."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fleetq.run.handlers import load_handler
from fleetq.run.isolate import worktrees_home
from support.fleets import FAKES, Fleets, git
from support.handlers import make_ctx
from support.projects import files_in, fingerprint, make_project
from support.workers import WorkerProc, add, run_to_end, set_machines, states_of, tasks

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")


def run_agent_task(tmp_path: Path, env: dict[str, str], payload: dict, **task):
    task.setdefault("title", "fix the thing")
    ctx = make_ctx(tmp_path, env, "agent_run", {"agent": "claude", **payload}, **task)
    (tmp_path / "fleet" / ".git").mkdir(parents=True, exist_ok=True)  # the worker's state area lives here
    return load_handler("agent_run", ctx.fleet_dir).run(ctx)


def calls(tmp_path: Path) -> list[dict]:
    path = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def worktrees(repo: Path) -> int:
    return git(repo, "worktree", "list", "--porcelain").count("worktree ")


def test_run_commits_its_changes_on_its_own_branch(tmp_path: Path, env: dict[str, str], project: Path) -> None:
    before = fingerprint(project)
    prompt = "@write a.txt one\\nTWO\\n\n@write src/new.py x = 1\\ny = 2\\n\n@delete keep.md"
    res = run_agent_task(tmp_path, env, {"prompt": prompt, "cwd": str(project)})
    assert res.outcome == "done", res
    x = res.extra
    base = git(project, "rev-parse", "main").strip()
    assert (x["repo"], x["branch"], x["base"], x["base_branch"]) == (str(project), "fleetq/t1", base, "main")
    assert x["head"] == git(project, "rev-parse", "fleetq/t1").strip()
    # a.txt: 2 lines out, 1 in ("two"/"three" -> "TWO"); new.py: 2 in; keep.md: 1 out
    assert (x["files_changed"], x["insertions"], x["deletions"]) == (3, 3, 3)
    assert files_in(project, "fleetq/t1") == {
        "a.txt": "one\nTWO\n",
        "src/b.py": "print(1)\n",
        "src/new.py": "x = 1\ny = 2\n",
    }
    message = git(project, "log", "-1", "--format=%B", "fleetq/t1")
    assert message.startswith("fix the thing\n")
    assert "Fleetq-Task: t1" in message and "Fleetq-Agent: claude" in message and "Fleetq-Machine: testbox" in message
    assert git(project, "log", "-1", "--format=%an", "fleetq/t1").strip() == "Test Person"  # the repo's identity
    # the agent ran in a worktree outside the repo, which is gone now; the checkout is as it was
    [call] = calls(tmp_path)
    assert Path(call["cwd"]) == worktrees_home(tmp_path / "fleet") / "t1"
    assert not Path(call["cwd"]).exists()
    assert worktrees(project) == 1
    assert fingerprint(project) == before


def test_dirty_repository_is_left_exactly_as_it_was(tmp_path: Path, env: dict[str, str], project: Path) -> None:
    (project / "a.txt").write_text("one\ntwo\nthree\nuncommitted\n")
    (project / "src" / "b.py").write_text("print(2)\n")
    git(project, "add", "src/b.py")  # staged, too
    (project / "scratch.txt").write_text("untracked\n")
    before = fingerprint(project)
    res = run_agent_task(tmp_path, env, {"prompt": "@append ../a.txt four\\n", "cwd": str(project / "src")})
    assert res.outcome == "done", res
    assert fingerprint(project) == before
    # the agent saw committed code only, in the same subdirectory of its worktree
    assert files_in(project, "fleetq/t1")["a.txt"] == "one\ntwo\nthree\nfour\n"
    assert "scratch.txt" not in files_in(project, "fleetq/t1")
    assert Path(calls(tmp_path)[0]["cwd"]).name == "src"
    assert (res.extra["files_changed"], res.extra["insertions"], res.extra["deletions"]) == (1, 1, 0)


def test_failed_agent_keeps_its_partial_work_and_no_change_means_no_branch(
    tmp_path: Path, env: dict[str, str], project: Path
) -> None:
    res = run_agent_task(tmp_path, {**env, "FAKE_AGENT_EXIT": "3"}, {"prompt": "@write half.txt half done"})
    assert res.outcome == "failed" and "branch" not in res.extra  # no cwd given: not isolated (ran in HOME)
    res = run_agent_task(
        tmp_path, {**env, "FAKE_AGENT_EXIT": "3"}, {"prompt": "@write half.txt half done", "cwd": str(project)}
    )
    assert res.outcome == "failed" and res.extra["branch"] == "fleetq/t1", res
    assert files_in(project, "fleetq/t1")["half.txt"] == "half done"
    git(project, "branch", "-D", "fleetq/t1")
    res = run_agent_task(tmp_path, env, {"prompt": "just look around", "cwd": str(project)})
    assert res.outcome == "done" and "branch" not in res.extra
    assert (res.extra["files_changed"], res.extra["head"]) == (0, res.extra["base"])
    assert "fleetq/t1" not in git(project, "branch", "--list")


def test_isolate_switch_and_bad_payloads(tmp_path: Path, env: dict[str, str], project: Path, proj: Path) -> None:
    res = run_agent_task(tmp_path, env, {"prompt": "@write direct.txt d", "cwd": str(project), "isolate": False})
    assert res.outcome == "done" and (project / "direct.txt").read_text() == "d" and "branch" not in res.extra
    res = run_agent_task(tmp_path, env, {"prompt": "x", "cwd": str(proj), "isolate": True})
    assert res.outcome == "needs_human" and "not inside a git work tree" in res.error
    res = run_agent_task(tmp_path, env, {"prompt": "x", "cwd": str(project), "isolate": "yes"})
    assert res.outcome == "needs_human" and "payload.isolate must be true or false" in res.error
    res = run_agent_task(tmp_path, env, {"prompt": "x", "cwd": str(project), "base": "no-such-ref"})
    assert res.outcome == "needs_human" and "payload.base 'no-such-ref' is not a commit" in res.error
    res = run_agent_task(tmp_path, env, {"prompt": "@write p.txt p", "cwd": str(project), "push": ["a", "b"]})
    assert res.outcome == "needs_human" and "payload.push must be text" in res.error
    assert git(project, "branch", "--list", "fleetq/*") == "" and calls(tmp_path)[-1]["cwd"] == str(project)
    res = run_agent_task(tmp_path, env, {"prompt": "x", "cwd": str(proj)})  # not a repo, not forced: runs in place
    assert res.outcome == "done" and "branch" not in res.extra
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    res = run_agent_task(tmp_path, env, {"prompt": "x", "cwd": str(empty)})
    assert res.outcome == "needs_human" and "no commits yet" in res.error


def test_base_branch_and_push(tmp_path: Path, env: dict[str, str], project: Path) -> None:
    git(project, "checkout", "-q", "-b", "feature")
    (project / "f.txt").write_text("feature\n")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "feature")
    git(project, "checkout", "-q", "main")
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(project, "remote", "add", "pub", str(remote))
    res = run_agent_task(
        tmp_path, env, {"prompt": "@write g.txt g", "cwd": str(project), "base": "feature", "push": "pub"}
    )
    assert res.outcome == "done", res
    assert res.extra["base_branch"] == "feature" and res.extra["pushed"] == "pub"
    assert res.extra["base"] == git(project, "rev-parse", "feature").strip()
    assert git(remote, "rev-parse", "fleetq/t1").strip() == res.extra["head"]
    res = run_agent_task(tmp_path, env, {"prompt": "@write g.txt h", "cwd": str(project), "push": "nowhere"})
    assert res.outcome == "done" and "nowhere" in res.extra["push_error"] and "pushed" not in res.extra
    assert res.extra["branch"] == "fleetq/t1"  # a retried run resets its branch; the run still counts
    assert files_in(project, "fleetq/t1")["g.txt"] == "h" and "f.txt" not in files_in(project, "fleetq/t1")


def test_two_agent_tasks_in_one_repo_run_at_once_on_one_worker(fleets: Fleets, tmp_path: Path, project: Path) -> None:
    """A real `fleetq work` with 2 slots: the runs overlap in time, each on its own branch and worktree."""
    set_machines(fleets.first, {"w": {"capabilities": ["agent_run"], "agents": ["claude", "gemini"], "slots": 2}})
    spans = tmp_path / "spans.jsonl"
    before = fingerprint(project)
    add(
        fleets.first,
        [
            *tasks(
                1,
                "one",
                type="agent_run",
                agent="claude",
                title="edit a and add new1",
                payload={
                    "cwd": str(project),
                    "prompt": "@write a.txt one\\n2\\nthree\\nfour\\n\n@write new1.txt hello\\n",
                },
            ),
            *tasks(
                1,
                "two",
                type="agent_run",
                agent="gemini",
                title="touch b and add docs",
                payload={
                    "cwd": str(project),
                    "prompt": "@append src/b.py print(2)\\n\n@write docs/new2.md # a\\nb\\nc\\n",
                },
            ),
        ],
    )
    w = fleets.clone("w")
    env = {
        "PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}",
        "FAKE_AGENT_SLEEP": "1.5",
        "FAKE_AGENT_SPANS": str(spans),
    }
    run_to_end(WorkerProc(w, "--burst", "--slots", "2", env=env), timeout=60)
    assert states_of(fleets.first) == {"one000": "done", "two000": "done"}
    a, b = [json.loads(line) for line in spans.read_text().splitlines()]
    assert a["start"] < b["end"] and b["start"] < a["end"], "the two runs did not overlap"
    assert a["cwd"] != b["cwd"] and not any(Path(s["cwd"]).is_relative_to(project) for s in (a, b))
    snap = fleets.first.snapshot()
    one, two = snap.get("one000").result, snap.get("two000").result
    assert files_in(project, "fleetq/one000") == {
        "a.txt": "one\n2\nthree\nfour\n",
        "new1.txt": "hello\n",
        "src/b.py": "print(1)\n",
        "keep.md": "keep\n",
    }
    assert files_in(project, "fleetq/two000") == {
        "a.txt": "one\ntwo\nthree\n",
        "src/b.py": "print(1)\nprint(2)\n",
        "docs/new2.md": "# a\nb\nc\n",
        "keep.md": "keep\n",
    }
    assert (one["files_changed"], one["insertions"], one["deletions"]) == (2, 3, 1)
    assert (two["files_changed"], two["insertions"], two["deletions"]) == (2, 4, 0)
    assert one["machine"] == "w" and one["head"] == git(project, "rev-parse", "fleetq/one000").strip()
    assert worktrees(project) == 1  # both worktrees removed
    assert fingerprint(project) == before
