"""A finished run's ``result`` is untrusted: anyone who can push may edit it (done -> done needs no signature).

`diff` and `reject` check each field against its rule before anything runs (issue 14, finding 3).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest

from fleetq import yamlio
from fleetq.core import transitions
from fleetq.core.clone import Fleet
from fleetq.core.config import MachineSpec
from fleetq.core.matching import Seat
from support.fleets import Fleets, git
from support.projects import make_project
from support.sshd import SshServer, sshd  # noqa: F401  (fixture)
from support.workers import set_file, set_machines, tasks

pytestmark = pytest.mark.timeout(60)


def finished_run(fleet: Fleet, project: Path, tid: str, **payload: Any) -> dict[str, Any]:
    """An isolated run as the worker records it: branch fleetq/<id> with one commit, the task done."""
    base = git(project, "rev-parse", "main").strip()
    git(project, "branch", f"fleetq/{tid}000", base)
    git(project, "worktree", "add", "-q", str(project.parent / f"wt-{tid}"), f"fleetq/{tid}000")
    wt = project.parent / f"wt-{tid}"
    (wt / "new.txt").write_text("new\n")
    git(wt, "add", "-A")
    git(wt, "commit", "-q", "-m", "the agent's work")
    head = git(wt, "rev-parse", "HEAD").strip()
    git(project, "worktree", "remove", "--force", str(wt))
    payload = {"prompt": "p", "cwd": str(project), **payload}
    transitions.create(fleet, tasks(1, tid, type="agent_run", agent="claude", payload=payload))
    [t] = transitions.claim(fleet, Seat(MachineSpec(fleet.machine, capabilities=["agent_run"], agents=["claude"])), 1)
    result = {
        "repo": str(project),
        "branch": f"fleetq/{t.id}",
        "base": base,
        "head": head,
        "base_branch": "main",
        "machine": fleet.machine,
        "files_changed": 1,
        "insertions": 1,
        "deletions": 0,
        **({"pushed": payload["push"]} if "push" in payload else {}),
    }
    transitions.complete(fleet, [transitions.Completion(t.id, t.attempts, "done", result)])
    return result


def edit_result(fleet: Fleet, tid: str, **fields: Any) -> None:
    """What a hostile pusher does: a hand edit of the done task's file (done -> done, unsigned)."""
    t = fleet.snapshot().get(tid)
    data = yamlio.to_plain(yamlio.load_safe(t.raw))
    data["result"].update(fields)
    set_file(fleet, t.path, yamlio.dump_plain(data))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")


@pytest.mark.parametrize(
    "field,value,why",
    [
        ("base", "--output={out}", "is not a commit id"),
        ("head", "--output={out}", "is not a commit id"),
        ("base", "HEAD; touch {out}", "is not a commit id"),
        ("repo", "{other}", "is not the repository of the task's cwd"),
        ("branch", "main", "is not fleetq/run000"),
    ],
)
def test_diff_refuses_an_edited_field_locally(
    fleets: Fleets, cli, project: Path, tmp_path: Path, field: str, value: str, why: str
) -> None:
    f = fleets.first
    finished_run(f, project, "run")
    assert cli("--fleet", f.root, "diff", "run000", "--stat").code == 0  # as the worker wrote it: fine
    out, other = tmp_path / "overwritten", make_project(tmp_path / "other")
    edit_result(f, "run000", **{field: value.format(out=out, other=other)})
    res = cli("--fleet", f.root, "diff", "run000")
    assert res.code == 2 and res.err.strip() == f"fleetq: result.{field} of run000 {why}: refusing", res.err
    assert res.out == "" and not out.exists()


def test_diff_sends_nothing_unquoted_to_the_workers_shell(
    fleets: Fleets,
    cli,
    tmp_path: Path,
    sshd: SshServer,  # noqa: F811
) -> None:
    """The repository is only on the worker: the diff would come over SSH, through the worker's shell."""
    f = fleets.first
    far = tmp_path / "on-the-worker" / "project"  # not on this machine
    set_machines(f, {"alpha": {"capabilities": ["agent_run"]}, "w": {"host": sshd.alias("fleet-w")}})
    wf = fleets.clone("w")
    finished_run(wf, make_project(tmp_path / "staging"), "far", cwd=str(far))
    edit_result(wf, "far000", repo=str(far))
    pwned = tmp_path / "pwned"
    edit_result(wf, "far000", base=f"HEAD; touch {shlex.quote(str(pwned))} #")
    res = cli("--fleet", f.root, "diff", "far000")
    assert res.code == 2 and "result.base of far000 is not a commit id: refusing" in res.err, res.err
    assert len(res.err.strip().splitlines()) == 1 and not pwned.exists()


def test_reject_deletes_only_the_runs_own_branch(fleets: Fleets, cli, project: Path, tmp_path: Path) -> None:
    f = fleets.first
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(origin))
    git(project, "remote", "add", "origin", str(origin))
    git(project, "push", "-q", "origin", "main")
    git(project, "remote", "add", "evil", str(tmp_path / "evil.git"))
    git(project, "checkout", "-q", "-b", "side")  # main is not checked out: `branch -D main` would work
    finished_run(f, project, "run", push="origin")
    git(project, "push", "-q", "origin", "fleetq/run000")

    for field, value, why in (
        ("branch", "main", "is not fleetq/run000"),
        ("pushed", "evil", "is not the remote the task asked to push to"),
    ):
        edit_result(f, "run000", **{field: value})
        res = cli("--fleet", f.root, "reject", "run000")
        assert res.code == 2 and res.err.strip() == f"fleetq: result.{field} of run000 {why}: refusing"
        assert "main" in git(project, "branch", "--list", "main") and "main" in git(origin, "branch", "--list")
        assert "fleetq/run000" in git(project, "branch", "--list") and "fleetq/run000" in git(origin, "branch")
        edit_result(f, "run000", pushed="origin", branch="fleetq/run000")

    res = cli("--fleet", f.root, "reject", "run000")  # as the worker wrote it: the run's branch goes, both places
    assert res.code == 0, res.err
    assert "fleetq/run000" not in git(project, "branch", "--list") + git(origin, "branch", "--list")
    assert "main" in git(project, "branch", "--list", "main") and "main" in git(origin, "branch", "--list")
