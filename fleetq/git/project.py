"""git in a person's project repository (isolated agent runs and their review; see fleetq/run/isolate.py
and fleetq/review/runs.py): worktrees, commits, merges and branch pushes, all through ``git`` porcelain.

Revisions, branch names and remotes may come from a task's result, which anyone who can push may edit:
fleetq/review/runs.py checks them first, and here each goes after ``--end-of-options`` or ``--``, so
none is ever read as an option (``--output=FILE``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import git

from fleetq.errors import FleetqError
from fleetq.git.repo import one_line
from fleetq.layout import REVIEW_REFS


@dataclass(frozen=True)
class DiffStat:
    files: int
    insertions: int
    deletions: int


class ProjectRepo:
    """git in a person's project repository, or in one of its worktrees (``path`` is where git runs).

    Unlike :class:`GitRepo` this never builds objects in-process: worktrees, commits
    and merges of a person's code are porcelain, and ``git`` keeps its own locks.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._git = git.Git(str(self.path))

    @classmethod
    def find(cls, start: Path | str) -> ProjectRepo | None:
        """The non-bare work tree containing ``start`` (its top), or None when there is none."""
        status, out, _ = git.Git(str(start)).execute(
            ["git", "rev-parse", "--show-toplevel"], with_extended_output=True, with_exceptions=False
        )
        return cls(Path(out.strip())) if status == 0 and out.strip() else None

    def run(self, *args: str) -> tuple[int, str, str]:
        status, out, err = self._git.execute(
            ["git", *args], with_extended_output=True, with_exceptions=False, strip_newline_in_stdout=False
        )
        return status, out, err

    def check(self, *args: str, what: str) -> str:
        status, out, err = self.run(*args)
        if status != 0:
            raise FleetqError(f"{what} in {self.path}: {one_line(err or out)}")
        return out

    # -- reading --
    def commit_of(self, ref: str) -> str | None:
        status, out, _ = self.run("rev-parse", "--verify", "-q", f"{ref}^{{commit}}")
        return out.strip() if status == 0 and out.strip() else None

    def head_branch(self) -> str | None:
        """The branch checked out here (None: detached or no repo)."""
        status, out, _ = self.run("symbolic-ref", "-q", "--short", "HEAD")
        return out.strip() if status == 0 and out.strip() else None

    def has_branch(self, branch: str) -> bool:
        return self.commit_of(f"refs/heads/{branch}") is not None

    def is_dirty(self) -> bool:
        """Tracked files changed (staged or not); untracked files do not count."""
        status, out, _ = self.run("status", "--porcelain", "--untracked-files=no")
        return status != 0 or bool(out.strip())

    def is_ancestor(self, old: str, new: str) -> bool:
        return self.run("merge-base", "--is-ancestor", old, new)[0] == 0

    def config_get(self, key: str) -> str | None:
        status, out, _ = self.run("config", "--get", key)
        return out.strip() if status == 0 and out.strip() else None

    def remotes(self) -> dict[str, str]:
        """Configured remote name -> its URL."""
        status, out, _ = self.run("config", "--get-regexp", r"^remote\..*\.url$")
        found = {}
        for line in out.splitlines() if status == 0 else []:
            key, _, url = line.partition(" ")
            found[key[len("remote.") : -len(".url")]] = url
        return found

    def checked_out(self) -> dict[str, Path]:
        """branch -> the work tree (main or linked) that has it checked out."""
        found: dict[str, Path] = {}
        path: Path | None = None
        for line in self.check("worktree", "list", "--porcelain", what="list worktrees").splitlines():
            if line.startswith("worktree "):
                path = Path(line[9:])
            elif line.startswith("branch refs/heads/") and path is not None:
                found[line[len("branch refs/heads/") :]] = path
        return found

    def diffstat(self, base: str, head: str) -> DiffStat:
        """Files changed, lines inserted and deleted between two commits (binary files count as files)."""
        out = self.check(
            "diff", "--numstat", "--no-renames", "--end-of-options", base, head, "--", what="diff --numstat"
        )
        files = ins = dels = 0
        for line in out.splitlines():
            parts = line.split("\t", 2)
            if len(parts) == 3:
                files += 1
                ins += int(parts[0]) if parts[0].isdigit() else 0
                dels += int(parts[1]) if parts[1].isdigit() else 0
        return DiffStat(files, ins, dels)

    def diff(self, base: str, head: str, *, stat: bool = False) -> str:
        return self.check(
            "diff", "--stat" if stat else "--patch", "--end-of-options", base, head, "--", what="git diff"
        )

    # -- worktrees and branches --
    def add_worktree(self, path: Path, branch: str, base: str) -> None:
        """A new work tree at ``path`` on ``branch`` (created, or reset, at ``base``)."""
        self.check("worktree", "add", "-q", "--no-track", "-B", branch, str(path), base, what="git worktree add")

    def add_detached_worktree(self, path: Path, commit: str) -> None:
        self.check("worktree", "add", "-q", "--detach", str(path), commit, what="git worktree add")

    def remove_worktree(self, path: Path) -> None:
        """Remove a linked work tree (changes in it are dropped) and forget stale ones."""
        if path.exists():
            self.run("worktree", "remove", "--force", "--force", str(path))
        self.run("worktree", "prune")

    def commit_all(self, message: str, fallback_identity: tuple[str, str]) -> str | None:
        """Stage everything in this work tree and commit it; the new commit, or None when nothing changed.

        No hooks (``--no-verify``) and no signing: an unattended worker must not stop
        at a hook's complaint or a passphrase prompt, and the agent's work must reach
        the branch to be reviewed at all. The repository's own identity is used;
        ``fallback_identity`` only when it has none.
        """
        self.check("add", "-A", ".", what="git add")
        if self.run("diff", "--cached", "--quiet")[0] == 0:
            return None
        conf = ["-c", "commit.gpgsign=false", "-c", "gc.auto=0"]
        if not (os.environ.get("GIT_AUTHOR_NAME") or self.config_get("user.name")):
            conf += ["-c", f"user.name={fallback_identity[0]}"]
        if not (os.environ.get("GIT_AUTHOR_EMAIL") or self.config_get("user.email")):
            conf += ["-c", f"user.email={fallback_identity[1]}"]
        self.check(*conf, "commit", "-q", "--no-verify", "-m", message, what="git commit")
        return self.commit_of("HEAD")

    def delete_branch(self, branch: str) -> bool:
        return self.run("branch", "-D", "--", branch)[0] == 0

    def update_branch(self, branch: str, new: str, old: str) -> None:
        """Move ``branch`` from ``old`` to ``new`` (a compare-and-swap on the ref)."""
        self.check("update-ref", "-m", "fleetq accept", f"refs/heads/{branch}", new, old, what=f"update {branch}")

    def merge(self, head: str, *, ff_only: bool, message: str) -> tuple[bool, str]:
        """Merge ``head`` into what is checked out here; (ok, git's complaint). A failed merge is aborted."""
        how = ["--ff-only"] if ff_only else ["--no-ff", "--no-verify", "-m", message]
        args = ["-c", "commit.gpgsign=false", "merge", "-q", *how, "--end-of-options", head]
        status, out, err = self.run(*args)
        if status != 0:
            self.run("merge", "--abort")
            return False, one_line(err or out)
        return True, ""

    # -- remotes --
    def push_branch(self, remote: str, branch: str) -> str | None:
        """Push ``branch`` to ``remote`` (forced: the branch is this run's own); git's complaint, or None."""
        status, out, err = self.run("push", "-q", "--", remote, f"+refs/heads/{branch}:refs/heads/{branch}")
        return None if status == 0 else one_line(err or out)

    def delete_remote_branch(self, remote: str, branch: str) -> str | None:
        status, out, err = self.run("push", "-q", "--", remote, f":refs/heads/{branch}")
        return None if status == 0 else one_line(err or out)

    def fetch_branch(self, remote: str, branch: str) -> str:
        """Fetch one branch from ``remote`` (a name or URL); its commit (kept as ``refs/fleetq/review/<branch>``)."""
        local = f"{REVIEW_REFS}/{branch}"
        self.check("fetch", "-q", "--no-tags", "--", remote, f"+refs/heads/{branch}:{local}", what=f"fetch {branch}")
        sha = self.commit_of(local)
        if sha is None:
            raise FleetqError(f"fetch {branch} from {remote}: nothing arrived")
        return sha
