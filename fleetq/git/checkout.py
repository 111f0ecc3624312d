"""A person's checkout of the fleet repo, kept up with the queue (docs/design.md, "The claim protocol").

After each fetch the checked-out ``main`` is moved to the tracking ref when that loses nothing:
on ``main``, no local changes, and an ancestor of the tracking ref. It costs nothing while HEAD
is the tracking ref (two in-process ref reads), and one ``git status`` when the head moved.
With local changes or commits the checkout stays, and :func:`follow` says how far behind it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import git

from fleetq.layout import BRANCH, TRACKING

CURRENT, MOVED, DIRTY, DIVERGED, ELSEWHERE, FAILED = "current", "moved", "dirty", "diverged", "elsewhere", "failed"


class _Clone(Protocol):
    repo: git.Repo

    def run_git(self, *args: str, env: Mapping[str, str] | None = None) -> tuple[int, str, str]: ...
    def rev(self, ref: str) -> str | None: ...
    def is_ancestor(self, old: str, new: str) -> bool: ...


@dataclass(frozen=True)
class Behind:
    """A checkout that local changes (or commits) keep behind the queue."""

    commits: int
    why: str  # DIRTY, DIVERGED or FAILED

    @property
    def message(self) -> str:
        n = f"{self.commits} commit{'' if self.commits == 1 else 's'}"
        if self.why == DIVERGED:
            return f"your checkout is behind the queue by {n} and has local commits: `git pull --rebase`"
        return (
            f"your checkout is behind the queue by {n} and has local changes: "
            "commit or stash them, then `git pull --rebase`"
        )


def fast_forward(clone: _Clone) -> str:
    """Move the checked-out main to the tracking ref, only when that loses nothing; what happened."""
    if clone.repo.bare:
        return ELSEWHERE
    target, head = clone.rev(TRACKING), clone.rev("HEAD")
    if target is None or head == target:
        return CURRENT  # the cheap, common case: no subprocess at all
    status, head_ref, _ = clone.run_git("symbolic-ref", "-q", "HEAD")
    if status != 0 or head_ref.strip() != f"refs/heads/{BRANCH}":
        return ELSEWHERE  # another branch, or a detached HEAD: the person's choice
    if head is not None and not clone.is_ancestor(head, target):
        return DIVERGED
    status, out, _ = clone.run_git("status", "--porcelain", "--untracked-files=no")
    if status != 0 or out.strip():
        return DIRTY
    if head is None:
        status, _, _ = clone.run_git("reset", "--keep", "-q", target)
    else:
        status, _, _ = clone.run_git("merge", "--ff-only", "-q", target)  # refuses to overwrite untracked files
    return MOVED if status == 0 else FAILED


def follow(clone: _Clone) -> Behind | None:
    """Fast-forward the checkout; a :class:`Behind` when local changes keep it behind the queue."""
    why = fast_forward(clone)
    if why not in (DIRTY, DIVERGED, FAILED) or (why == DIVERGED and not _local_commits(clone)):
        return None  # diverged with no commit of its own: main was rewritten, which trust/fsck.py reports
    status, out, _ = clone.run_git("rev-list", "--count", f"HEAD..{TRACKING}")
    commits = int(out.strip()) if status == 0 and out.strip().isdigit() else 0
    return Behind(commits, why) if commits else None


def _local_commits(clone: _Clone) -> bool:
    """HEAD has commits the remote never had (none of the tracking ref's recent values holds them)."""
    status, out, _ = clone.run_git("log", "-g", "-n", "100", "--format=%H", TRACKING, "--")
    seen = sorted(set(out.split())) if status == 0 else []
    status, out, _ = clone.run_git("rev-list", "--count", "HEAD", "--not", TRACKING, *seen)
    return status != 0 or out.strip() != "0"
