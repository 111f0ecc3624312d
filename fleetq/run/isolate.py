"""Isolated agent runs: a fresh git worktree and branch per run, committed for review.

An agent that edits a shared checkout collides with the next agent and leaves
changes nobody can review. So when an agent_run's ``cwd`` is inside a git work
tree, the worker:

1. makes a worktree of that repository on a new branch ``fleetq/<task id>`` from
   ``payload.base`` (default: the repository's HEAD commit at run start). The
   worktree lives in the worker's state area (``<fleet clone>/.git/fleetq/worktrees/<id>``),
   never inside the person's repository, so their checkout, index and uncommitted
   edits are not touched (the agent sees committed code only);
2. runs the agent there (in the same subdirectory ``cwd`` named);
3. commits whatever the agent changed, even when the agent failed or was cancelled
   (partial work is reviewable, and otherwise lost): subject = task title, trailers
   ``Fleetq-Task``, ``Fleetq-Agent``, ``Fleetq-Machine``;
4. with ``payload.push: REMOTE`` pushes the branch there (a failed push is recorded
   as ``push_error``, the run still counts);
5. removes the worktree and keeps the branch (deleted instead when nothing changed).

``payload.isolate``: true forces it (needs_human when cwd is not in a git repo),
false turns it off; absent: on when ``payload.cwd`` is given and inside a git work tree.

Worktree add/remove in one repository are serialised by a file lock per
repository (two runs of one worker are threads of one process). A retried attempt
resets the branch to the base: the branch holds the latest attempt.

A reply (``fleetq reply``; ``payload.chain_root`` names the chain's first task) continues
the chain's branch ``fleetq/<root>`` instead: its worktree starts at ``payload.base`` (the
head the replied-to run left) at the path the first run used (agents keep sessions per
directory), and its result records the chain's ``payload.chain_base`` as ``base``, so the
branch's diff, and accept/reject, take the whole chain. A link that changes nothing keeps
the branch.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from filelock import FileLock

from fleetq.core.states import valid_id
from fleetq.errors import FleetqError
from fleetq.git.project import ProjectRepo
from fleetq.handlerapi import NEEDS_HUMAN, HandlerContext, HandlerResult, Stop, text_field
from fleetq.layout import RUN_BRANCH_PREFIX


def run_branch(task_id: str) -> str:
    return f"{RUN_BRANCH_PREFIX}{task_id}"


def worktrees_home(fleet_dir: Path) -> Path:
    """The worker's private area for run worktrees: the fleet clone's git dir, else the user's cache."""
    gitdir = Path(fleet_dir) / ".git"
    if gitdir.is_dir():
        return gitdir / "fleetq" / "worktrees"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "fleetq" / "worktrees"


def repo_lock(home: Path, repo: Path) -> FileLock:
    """One lock per project repository, for worktree add/remove."""
    home.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(str(repo.resolve()).encode()).hexdigest()[:16]
    return FileLock(str(home / f"repo-{key}.lock"))


@dataclass
class Isolation:
    """One run's worktree, decided before the agent starts."""

    project: ProjectRepo  # the person's repository (its main work tree)
    sub: PurePath  # cwd relative to the repository's top
    base: str  # commit the diff is taken from (a reply: the chain's first base)
    base_branch: str | None  # the branch that was checked out (or named as base): what `accept` merges into
    branch: str
    worktree: Path
    lock: FileLock
    push: str | None = None  # payload.push: the remote to push the branch to
    start: str | None = None  # commit the worktree starts at, when not ``base`` (a reply: the last head)

    @property
    def start_at(self) -> str:
        return self.start or self.base

    @property
    def cwd(self) -> Path:
        return self.worktree / self.sub


def plan(ctx: HandlerContext, cwd: Path) -> Isolation | None:
    """Whether (and how) this run is isolated; Stop for a forced isolation that cannot be."""
    flag = ctx.payload.get("isolate")
    if flag is not None and not isinstance(flag, bool):
        raise Stop("payload.isolate must be true or false")
    if flag is False or (flag is None and not text_field(ctx.payload, "cwd")):
        return None
    project = ProjectRepo.find(cwd)
    if project is None:
        if flag:
            raise Stop(f"payload.isolate is true but {cwd} is not inside a git work tree")
        return None
    base_ref = text_field(ctx.payload, "base")
    push = text_field(ctx.payload, "push")  # checked now: a bad value is refused before the agent runs
    base = project.commit_of(base_ref or "HEAD")
    if base is None:
        raise Stop(
            f"payload.base '{base_ref}' is not a commit in {project.path}"
            if base_ref
            else f"{project.path} has no commits yet: nothing to branch from"
        )
    replying = bool(text_field(ctx.payload, "reply_to"))  # review/chains.py reads chain_root only then too
    root, start = (text_field(ctx.payload, "chain_root") if replying else None) or ctx.task_id, None
    if not valid_id(root):  # a path component of the worktree and a branch name
        raise Stop(f"payload.chain_root {root!r} is not a task id")
    if root != ctx.task_id:  # a reply: the chain's branch, from where the last link left it
        chain_base = text_field(ctx.payload, "chain_base") or base
        start, base = base, project.commit_of(chain_base)
        if base is None:
            raise Stop(f"payload.chain_base '{chain_base}' is not a commit in {project.path}")
        base_branch = text_field(ctx.payload, "base_branch") or None
    elif base_ref:
        base_branch = base_ref if project.has_branch(base_ref) else None
    else:
        base_branch = project.head_branch()
    home = worktrees_home(ctx.fleet_dir)
    sub = PurePath(os.path.relpath(cwd.resolve(), project.path.resolve()))
    return Isolation(
        project=project,
        sub=sub,
        base=base,
        base_branch=base_branch,
        branch=run_branch(root),
        worktree=home / root,
        lock=repo_lock(home, project.path),
        push=push,
        start=start,
    )


def commit_message(ctx: HandlerContext, agent: str) -> str:
    title = str(ctx.task.get("title") or text_field(ctx.payload, "prompt") or ctx.task_id)
    subject = " ".join(title.split()) or ctx.task_id
    return f"{subject}\n\nFleetq-Task: {ctx.task_id}\nFleetq-Agent: {agent}\nFleetq-Machine: {ctx.machine}\n"


def run_isolated(ctx: HandlerContext, cwd: Path, fn: Callable[[Path], HandlerResult]) -> HandlerResult:
    """``fn(directory)`` in a worktree of the repository around ``cwd`` when isolated, else ``fn(cwd)``."""
    iso = plan(ctx, cwd)
    if iso is None:
        return fn(cwd)
    with iso.lock:
        iso.project.remove_worktree(iso.worktree)  # a leftover of a crashed attempt
        iso.project.add_worktree(iso.worktree, iso.branch, iso.start_at)
    res: HandlerResult | None = None
    try:
        iso.cwd.mkdir(parents=True, exist_ok=True)  # an untracked subdirectory is not in the worktree
        res = fn(iso.cwd)
    finally:  # even when fn raised: the agent's partial work is committed, the worktree goes
        head, problem = _commit(ctx, iso, res)
        if problem is None:
            with iso.lock:
                iso.project.remove_worktree(iso.worktree)
    if problem is not None:  # the worktree is kept: it holds the only copy of the agent's work
        res.outcome, res.error = (
            NEEDS_HUMAN,
            f"cannot commit the agent's changes ({problem}); they are in {iso.worktree}",
        )
        return res
    res.extra.update(_record(iso, head))
    return res


def _commit(ctx: HandlerContext, iso: Isolation, res: HandlerResult | None) -> tuple[str | None, str | None]:
    """Commit everything in the worktree: (new commit or None when nothing changed, error or None)."""
    agent = (res.extra.get("agent") if res else None) or text_field(ctx.payload, "agent") or ctx.task.get("agent")
    fallback = (f"fleetq@{ctx.machine}", f"fleetq@{ctx.machine}")
    try:
        return ProjectRepo(iso.worktree).commit_all(commit_message(ctx, str(agent or "unknown")), fallback), None
    except FleetqError as e:
        return None, str(e)


def _record(iso: Isolation, head: str | None) -> dict[str, Any]:
    """The result keys of an isolated run; pushes the branch when asked."""
    out: dict[str, Any] = {"repo": str(iso.project.path), "base": iso.base, "base_branch": iso.base_branch}
    head = head or iso.start  # a reply that changed nothing leaves the chain's branch as it was
    if head is None or head == iso.base:
        iso.project.delete_branch(iso.branch)
        return {
            **out,
            "head": iso.base,
            "files_changed": 0,
            "insertions": 0,
            "deletions": 0,
            "isolation": "the agent changed nothing: no commit, no branch",
        }
    stat = iso.project.diffstat(iso.base, head)
    out.update(
        branch=iso.branch, head=head, files_changed=stat.files, insertions=stat.insertions, deletions=stat.deletions
    )
    if iso.push:
        problem = iso.project.push_branch(iso.push, iso.branch)
        if problem:
            out["push_error"] = f"git push {iso.push} {iso.branch}: {problem}"
        else:
            out["pushed"] = iso.push
    return out
