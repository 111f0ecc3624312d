"""Reviewing isolated agent runs: what awaits review, the diff, accept (merge) and reject (delete).

An isolated run (fleetq/isolate.py) leaves a branch ``fleetq/<id>`` in the project
repository on the machine that ran it, and records ``repo``, ``branch``, ``base``,
``head`` (and ``base_branch``, ``pushed``) in the task's result. The diff comes from
wherever the commits are: the repository on this machine, else the pushed branch
(fetched into a local clone of the project), else the worker's repository over SSH.
Accept and reject change the project repository, so they run where the repository
is (here, or after a fetch of the pushed branch); both record the decision on the
task (``result.review: {decision, by, at, ...}`` and a note), which stays in its state.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from fleetq.core import transitions
from fleetq.core.clone import Fleet
from fleetq.core.listing import newest_first
from fleetq.core.snapshot import Problem, Snapshot
from fleetq.core.states import FAILED, NEEDS_HUMAN
from fleetq.core.task import Task
from fleetq.errors import Conflict, FleetqError, RemoteError, UsageError
from fleetq.git.project import ProjectRepo
from fleetq.handlerapi import last_line
from fleetq.run.isolate import worktrees_home

ACCEPTED, REJECTED = "accepted", "rejected"


@dataclass(frozen=True)
class RunInfo:
    """Where an isolated run's commits are, from its task's result."""

    task_id: str
    repo: str
    branch: str
    base: str
    head: str
    base_branch: str | None
    pushed: str | None
    machine: str | None

    @classmethod
    def of(cls, task: Task) -> RunInfo:
        r = task.result
        if not r.get("branch") or not r.get("repo") or not r.get("head") or not r.get("base"):
            why = "it changed nothing" if r.get("files_changed") == 0 else "it was not an isolated agent run"
            raise UsageError(f"{task.id} has no branch to review ({why})")
        return cls(
            task.id,
            str(r["repo"]),
            str(r["branch"]),
            str(r["base"]),
            str(r["head"]),
            r.get("base_branch"),
            r.get("pushed"),
            r.get("machine"),
        )


REVIEW_DAYS = 30  # done/ day shards looked at for runs awaiting review (`fleetq diff ID` reaches any)


def awaiting(snap: Snapshot, problems: list[Problem] | None = None) -> list[Task]:
    """needs_human tasks, and finished isolated runs with a branch and no review decision yet."""
    waiting = newest_first(snap.tasks([NEEDS_HUMAN], problems))
    finished = snap.tasks([FAILED], problems) + snap.recent_done(REVIEW_DAYS, problems)
    runs = [t for t in finished if t.result.get("branch") and not t.result.get("review")]
    return waiting + sorted(runs, key=lambda t: str(t.result.get("finished_at") or ""))


def stat_of(task: Task) -> dict[str, int] | None:
    r = task.result
    if not r.get("branch"):
        return None
    return {k: int(r.get(k) or 0) for k in ("files_changed", "insertions", "deletions")}


# ---------------------------------------------------------------- where the commits are


def local_repo(info: RunInfo, given: str | None = None, task: Task | None = None) -> ProjectRepo | None:
    """A project repository on this machine holding the run's head commit (fetched from the push when needed)."""
    candidates = [given] if given else [info.repo, (task.payload.get("cwd") if task else None)]
    for c in candidates:
        if not c or not Path(str(c)).expanduser().is_dir():
            continue
        repo = ProjectRepo.find(Path(str(c)).expanduser())
        if repo is None:
            if given:
                raise UsageError(f"--repo {given}: not inside a git work tree")
            continue
        if repo.commit_of(info.head) is None and info.pushed:
            repo.fetch_branch(info.pushed, info.branch)
        if repo.commit_of(info.head) is not None:
            return repo
        if given:
            raise FleetqError(f"--repo {given} does not have {info.branch} ({info.head[:12]}) and it was not pushed")
    return None


def diff(fleet: Fleet, task: Task, *, stat: bool = False, repo: str | None = None) -> str:
    """The run's changes (base..head) as a patch or a --stat summary."""
    info = RunInfo.of(task)
    local = local_repo(info, repo, task)
    if local is not None:
        return local.diff(info.base, info.head, stat=stat)
    if info.machine and info.machine != fleet.machine:
        return _remote_git(fleet, info, f"diff {'--stat' if stat else '--patch'} {info.base} {info.head}")
    raise FleetqError(f"{info.repo} with {info.branch} is not on this machine and the branch was not pushed")


def _remote_git(fleet: Fleet, info: RunInfo, args: str) -> str:
    """``git -C <repo> ARGS`` on the machine that ran the task, over SSH."""
    from fleetq.fleet import remote  # imported on use: only this path needs it

    cfg = fleet.config(fleet.snapshot(tolerate_offline=True))
    host = remote.host_for(cfg, str(info.machine))
    res = remote.capture_on(cfg, host, f"git -C {shlex.quote(info.repo)} {args}", timeout=60)
    if res.exit_code != 0:
        raise RemoteError(f"git on {host.label} failed: {last_line(res.stderr_tail, res.stdout)}")
    return res.stdout


# ---------------------------------------------------------------- decisions


def _require_local(info: RunInfo, repo: str | None, task: Task, verb: str) -> ProjectRepo:
    local = local_repo(info, repo, task)
    if local is None:
        where = f"on {info.machine}" if info.machine else "where it ran"
        raise FleetqError(
            f"cannot {verb} {task.id} here: {info.repo} is not on this machine and {info.branch} was "
            f"not pushed; run `fleetq {verb} {task.id}` {where}, or pass --repo PATH of a clone"
        )
    return local


def accept(
    fleet: Fleet,
    task: Task,
    *,
    mode: str = "ff",
    into: str | None = None,
    repo: str | None = None,
    notes: str | None = None,
) -> dict:
    """Merge the run's head into its base branch without disturbing anyone's checkout; record the decision.

    ``mode``: ``ff`` (fast-forward only) or ``merge`` (always a merge commit). The
    base branch checked out somewhere: merged there when that checkout is clean,
    refused when it is dirty. Not checked out: the ref is moved (ff), or the merge is
    made in a temporary worktree. The merged run branch is deleted.
    """
    if mode not in ("ff", "merge"):
        raise UsageError(f"accept mode is ff or merge, not '{mode}'")
    info = RunInfo.of(task)
    transitions.check_undecided(task)  # before touching the repo; record_review checks again on the head
    target = into or info.base_branch
    if not target:
        raise UsageError(f"{task.id}: the run did not start from a branch; say which one with --into BRANCH")
    local = _require_local(info, repo, task, "accept")
    old = local.commit_of(f"refs/heads/{target}")
    if old is None:
        raise UsageError(f"no branch '{target}' in {local.path}")
    message = f"Merge {info.branch}: {task.title or task.id}\n\nFleetq-Task: {task.id}\n"
    merged = _merge(fleet, local, target, old, info.head, mode, message, task.id)
    if local.has_branch(info.branch) and local.is_ancestor(info.head, merged):
        local.delete_branch(info.branch)
    detail = {"into": target, "mode": mode, "commit": merged}
    transitions.record_review(fleet, task.id, ACCEPTED, notes, detail)
    return detail


def _merge(
    fleet: Fleet, local: ProjectRepo, target: str, old: str, head: str, mode: str, message: str, task_id: str
) -> str:
    if local.is_ancestor(head, old):
        raise Conflict(f"{target} already contains {head[:12]}")
    if mode == "ff" and not local.is_ancestor(old, head):
        raise Conflict(f"{target} has moved on since the run started: cannot fast-forward; use --merge")
    where = local.checked_out().get(target)
    if where is not None:
        tree = ProjectRepo(where)
        if tree.is_dirty():
            raise Conflict(f"{target} is checked out at {where} with uncommitted changes; commit or stash them first")
        ok, why = tree.merge(head, ff_only=mode == "ff", message=message)
        if not ok:
            raise Conflict(f"cannot merge into {target}: {why}")
        return tree.commit_of("HEAD") or head
    if mode == "ff":
        local.update_branch(target, head, old)
        return head
    tmp = worktrees_home(fleet.root) / f"accept-{task_id}"
    local.remove_worktree(tmp)
    local.add_detached_worktree(tmp, old)
    try:
        tree = ProjectRepo(tmp)
        ok, why = tree.merge(head, ff_only=False, message=message)
        if not ok:
            raise Conflict(f"cannot merge into {target}: {why}")
        new = tree.commit_of("HEAD")
        assert new is not None
        local.update_branch(target, new, old)
        return new
    finally:
        local.remove_worktree(tmp)


def reject(fleet: Fleet, task: Task, *, notes: str | None = None, repo: str | None = None) -> dict:
    """Delete the run's branch (here, on the pushed remote, or on the worker over SSH); record the decision."""
    info = RunInfo.of(task)
    transitions.check_undecided(task)  # before touching the repo; record_review checks again on the head
    deleted: list[str] = []
    local = local_repo(info, repo, task)
    if local is not None and local.delete_branch(info.branch):
        deleted.append(str(local.path))
    if info.pushed:
        problem = (local or ProjectRepo(Path.cwd())).delete_remote_branch(info.pushed, info.branch)
        if problem:
            raise RemoteError(f"cannot delete {info.branch} on {info.pushed}: {problem}")
        deleted.append(info.pushed)
    if local is None and info.machine and info.machine != fleet.machine:
        _remote_git(fleet, info, f"branch -D {shlex.quote(info.branch)}")
        deleted.append(f"{info.machine}:{info.repo}")
    detail = {"branch": info.branch, "deleted_from": deleted}
    transitions.record_review(fleet, task.id, REJECTED, notes, detail)
    return detail
