"""Reviewing isolated agent runs: what awaits review, the diff, accept (merge) and reject (delete).

An isolated run (fleetq/isolate.py) leaves a branch ``fleetq/<id>`` in the project
repository on the machine that ran it, and records ``repo``, ``branch``, ``base``,
``head`` (and ``base_branch``, ``pushed``) in the task's result. The diff comes from
wherever the commits are: the repository on this machine, else the pushed branch
(fetched into a local clone of the project), else the worker's repository over SSH.
Accept and reject change the project repository, so they run where the repository
is (here, or after a fetch of the pushed branch); both record the decision on the
task (``result.review: {decision, by, at, ...}`` and a note), which stays in its state.

The result is untrusted input: anyone who can push may edit a finished task's result
(done -> done needs no signature). So before anything runs: ``branch`` must be
``fleetq/<id>``, ``base``/``head`` commit ids, ``repo`` the repository around the task's
``payload.cwd``, ``pushed`` the remote the task asked for and one configured in the
repository used; a field that breaks its rule is refused in one line (exit 2). Words
sent to the worker's shell are quoted, revisions follow ``--end-of-options``.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from fleetq.core import transitions
from fleetq.core.clone import Fleet
from fleetq.core.listing import newest_first
from fleetq.core.snapshot import Problem, Snapshot
from fleetq.core.states import CLAIMED, FAILED, NEEDS_HUMAN, PENDING
from fleetq.core.task import Task
from fleetq.errors import Conflict, FleetqError, RemoteError, UsageError
from fleetq.git.project import ProjectRepo
from fleetq.handlerapi import last_line
from fleetq.review.chains import REVIEW_DAYS, chain_root, replied
from fleetq.run.isolate import run_branch, worktrees_home

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
        """The run's fields, each checked against its rule (UsageError naming the first that breaks one)."""
        r = task.result
        if not r.get("branch") or not r.get("repo") or not r.get("head") or not r.get("base"):
            why = "it changed nothing" if r.get("files_changed") == 0 else "it was not an isolated agent run"
            raise UsageError(f"{task.id} has no branch to review ({why})")
        own = run_branch(chain_root(task))  # a reply works on its chain's branch (review/chains.py)
        bad = (
            ("branch", "is not " + own, r["branch"] == own),
            ("base", "is not a commit id", _is_commit(r["base"])),
            ("head", "is not a commit id", _is_commit(r["head"])),
            ("repo", "is not the repository of the task's cwd", _is_own_repo(r["repo"], task.payload.get("cwd"))),
            ("base_branch", "is not a branch name", r.get("base_branch") is None or _is_name(r["base_branch"])),
            ("pushed", "is not a remote name", r.get("pushed") is None or _is_name(r["pushed"])),
            ("machine", "is not a machine name", r.get("machine") is None or _is_name(r["machine"])),
        )
        for field, why, ok in bad:
            if not ok:
                raise refusal(task.id, field, why)
        return cls(
            task.id,
            r["repo"],
            r["branch"],
            r["base"],
            r["head"],
            r.get("base_branch"),
            r.get("pushed"),
            r.get("machine"),
        )


def refusal(task_id: str, field: str, why: str) -> UsageError:
    return UsageError(f"result.{field} of {task_id} {why}: refusing")


_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1, or SHA-256 repositories


def _is_commit(value: Any) -> bool:
    return isinstance(value, str) and _COMMIT.fullmatch(value) is not None


def _is_name(value: Any) -> bool:
    """A branch, remote (name or URL) or machine name that cannot pass for an option or carry controls."""
    return isinstance(value, str) and value[:1] not in ("", "-") and value.isprintable()


def _within(path: str, top: str) -> bool:
    """``path`` is ``top`` or below it, as written or once both are resolved on this machine."""
    for p, t in ((path, top), (os.path.realpath(path), os.path.realpath(top))):
        if os.path.commonpath([os.path.normpath(p), os.path.normpath(t)]) == os.path.normpath(t):
            return True
    return False


def _is_own_repo(repo: Any, cwd: Any) -> bool:
    """``repo`` (an absolute path) holds the task's ``payload.cwd``.

    A cwd under ``~`` or a ``$VAR`` was expanded on the worker, whose home this machine may not know:
    then what follows it must continue the repository's path (``~/code/app/src`` fits ``/home/b/code/app``).
    No cwd (the worker's home): any absolute path.
    """
    if not isinstance(repo, str) or not os.path.isabs(repo) or not repo.isprintable():
        return False
    if cwd is None or cwd == "":
        return True
    if not isinstance(cwd, str):
        return False
    parts = PurePosixPath(os.path.normpath(cwd)).parts
    anchors = [i for i, p in enumerate(parts) if p.startswith("~") or "$" in p]
    if not anchors and os.path.isabs(cwd):
        return _within(cwd, repo)
    if _within(os.path.abspath(os.path.expanduser(os.path.expandvars(cwd))), repo):
        return True
    rel, top = parts[anchors[-1] + 1 :] if anchors else parts, PurePosixPath(os.path.normpath(repo)).parts
    return not rel or any(top[-k:] == rel[:k] for k in range(1, min(len(rel), len(top) - 1) + 1))


def check_pushed(local: ProjectRepo, info: RunInfo, task: Task) -> str:
    """``result.pushed``, once known to be what the task asked for and a remote of ``local`` (name or URL)."""
    pushed = str(info.pushed)
    if pushed != task.payload.get("push"):
        raise refusal(task.id, "pushed", "is not the remote the task asked to push to")
    remotes = local.remotes()
    if pushed not in remotes and pushed not in remotes.values():
        raise refusal(task.id, "pushed", f"is not a remote of {local.path}")
    return pushed


def awaiting(snap: Snapshot, problems: list[Problem] | None = None) -> list[Task]:
    """needs_human tasks, and finished isolated runs with a branch and no review decision yet.

    A task someone replied to is left out: its chain's newest link stands for it (one row per branch).
    ``REVIEW_DAYS`` of done shards are looked at (`fleetq diff ID` reaches any).
    """
    human = snap.tasks([NEEDS_HUMAN], problems)
    finished = snap.tasks([FAILED], problems) + snap.recent_done(REVIEW_DAYS, problems)
    answered = replied([*snap.tasks([PENDING, CLAIMED]), *human, *finished])
    waiting = newest_first([t for t in human if t.id not in answered])
    runs = [t for t in finished if t.result.get("branch") and not t.result.get("review") and t.id not in answered]
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
        if repo.commit_of(info.head) is None and info.pushed and task is not None:
            repo.fetch_branch(check_pushed(repo, info, task), info.branch)
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
        return _remote_git(
            fleet, info, ["diff", "--stat" if stat else "--patch", "--end-of-options", info.base, info.head, "--"]
        )
    raise FleetqError(f"{info.repo} with {info.branch} is not on this machine and the branch was not pushed")


def _remote_git(fleet: Fleet, info: RunInfo, args: list[str]) -> str:
    """``git -C <repo> ARGS`` on the machine that ran the task, over SSH (every word quoted for its shell)."""
    from fleetq.fleet import remote  # imported on use: only this path needs it

    cfg = fleet.config(fleet.snapshot(tolerate_offline=True))
    host = remote.host_for(cfg, str(info.machine))
    res = remote.capture_on(cfg, host, shlex.join(["git", "-C", info.repo, *args]), timeout=60)
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
    pusher = local or ProjectRepo(Path.cwd())
    pushed = check_pushed(pusher, info, task) if info.pushed else None  # checked before anything is deleted
    if local is not None and local.delete_branch(info.branch):
        deleted.append(str(local.path))
    if pushed:
        problem = pusher.delete_remote_branch(pushed, info.branch)
        if problem:
            raise RemoteError(f"cannot delete {info.branch} on {pushed}: {problem}")
        deleted.append(pushed)
    if local is None and info.machine and info.machine != fleet.machine:
        _remote_git(fleet, info, ["branch", "-D", "--", info.branch])
        deleted.append(f"{info.machine}:{info.repo}")
    detail = {"branch": info.branch, "deleted_from": deleted}
    transitions.record_review(fleet, task.id, REJECTED, notes, detail)
    return detail
