"""Every git call fleetq makes lives in fleetq/git; this module runs git for one fleet clone.

Objects (blobs, trees, commits) are built in-process through gitpython's object
database (tree parsing and the nested rewrite are fleetq/git/objects.py); only the
network legs (fetch, push, ls-remote: under a time limit, fleetq/git/netcall.py; over ssh
through fleetq/git/link.py) and a few porcelain conveniences run ``git`` as a subprocess. A
call stopped by a lock file a killed git left is retried once the lock is gone (fleetq/git/locks.py).
The claim path never touches a working tree: a person's checkout is moved forward only when
it is clean (fleetq/git/checkout.py). Integrity and trust helpers are fleetq/git/inspect.py;
a person's project repository is fleetq/git/project.py.
"""

from __future__ import annotations

import io
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git
from git.exc import GitCommandError, InvalidGitRepositoryError, NoSuchPathError
from gitdb.base import IStream
from gitdb.db.loose import LooseObjectDB

from fleetq.errors import FleetqError, RemoteError
from fleetq.git import checkout, locks, netcall
from fleetq.git.link import git_failed, git_ssh_env
from fleetq.git.objects import EMPTY_TREE, Entry, apply_nested, commit_data, nest, tree_data
from fleetq.git.reader import ObjectReader
from fleetq.layout import BRANCH, LIVE_REFS, MACHINE_REFS, REMOTE, TRACKING

_REMOTE_DOWN = re.compile(
    r"could not read from remote|does not appear to be a git repository|unable to access|"
    r"could not resolve host|connection (refused|timed out|closed)|no such file or directory|"
    r"not a git repository|network is unreachable|broken pipe|early eof|hung up",
    re.I,
)


# Every form in which git reports a lost race for a ref (a failed compare-and-swap).
_RACE = re.compile(
    r"non-fast-forward|fetch first|cannot lock ref|failed to lock|failed to update ref|stale info|"
    r"incorrect old value|reference already exists",
    re.I,
)


_LOG_FORMAT = "%x00%H%x1f%an%x1f%ae%x1f%aI%x1f%B%x1e"  # NUL, then sha, author, email, date, body, RS
_NET_CONFIG = r"^(core\.sshcommand|fleetq\.gittimeout)$"  # what the network legs read of the clone's config
log = logging.getLogger("fleetq.git")


class PushRejected(Exception):
    """The remote moved under us: a lost compare-and-swap. Fetch and try again."""


class HookRejected(RemoteError):
    """A server-side hook refused the push: retrying will not help."""


@dataclass(frozen=True)
class LogEntry:
    sha: str
    author: str
    email: str
    when: str
    message: str
    files: tuple[tuple[str, str, str], ...]  # (status, old path, new path)


class GitRepo(ObjectReader):
    """One local clone of the fleet repo (its object reads: fleetq/git/reader.py)."""

    def __init__(self, path: Path | str) -> None:
        try:
            self.repo = git.Repo(str(path))
        except (InvalidGitRepositoryError, NoSuchPathError):
            raise FleetqError(f"{path} is not a git clone of a fleet") from None
        self.path = Path(self.repo.working_tree_dir or path)
        self.git_dir = Path(self.repo.git_dir)
        self._identity: tuple[str, str] | None = None
        self._trees: dict[str, list[Entry]] = {}
        self._names: dict[str, dict[str, Entry]] = {}
        self._odd: dict[str, dict[str, str]] = {}  # tree -> its odd entries (reader.py)
        self._noticed: set[tuple[str, str]] = set()  # odd tree entries already noticed
        self.forced_update = False  # the last fetch found main rewritten (force-pushed)
        self.fetches = 0  # fetches that worked (the CLI moves a checkout after a command that fetched)
        self._net_config: dict[str, str] | None = None  # core.sshCommand (the user's ssh wins), fleetq.gitTimeout
        self._url: str | None = None
        self.net = netcall.NetCalls()  # time limits for the network legs (a stopping worker hurries them)
        self.notice: Callable[[str], None] = log.warning  # what fleetq did unasked (a Fleet shows it its way)

    # -- subprocess plumbing --
    def run_git(self, *args: str, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
        kw: dict[str, Any] = {"with_extended_output": True, "with_exceptions": False}
        if env:
            kw["env"] = dict(env)
        return locks.unlocked(lambda: self.repo.git.execute(["git", *args], **kw), self.path, self.git_dir, self.notice)

    def check_git(self, *args: str, what: str, remote: bool = False) -> str:
        status, out, err = self.run_git(*args)
        if status != 0:
            msg = one_line(err or out)
            if remote:
                raise RemoteError(f"{what}: the remote did not answer: {msg}")
            raise FleetqError(f"{what}: {msg}")
        return out

    # -- config --
    def config_get(self, key: str) -> str | None:
        status, out, _ = self.run_git("config", "--get", key)
        return out.strip() if status == 0 and out.strip() else None

    def config_set(self, key: str, value: str) -> None:
        self.check_git("config", key, value, what=f"git config {key}")

    def remote_url(self) -> str | None:
        return self.config_get(f"remote.{REMOTE}.url")

    def identity(self, fallback: str) -> tuple[str, str]:
        """(name, email) for commits: the user's git identity, else the machine's."""
        if self._identity is None:
            name = os.environ.get("GIT_AUTHOR_NAME") or self.config_get("user.name")
            email = os.environ.get("GIT_AUTHOR_EMAIL") or self.config_get("user.email")
            self._identity = (name or f"fleetq@{fallback}", email or f"fleetq@{fallback}")
        return self._identity

    # -- network legs --
    def _net(self, *args: str, what: str) -> tuple[int, str, str]:
        """A git call that talks to the remote, under a time limit (netcall.py): over ssh, through
        fleetq's reused connection (link.py) unless the user set core.sshCommand."""
        url = self.remote_url_cached()
        if self._net_config is None:
            _, out, _ = self.run_git("config", "--get-regexp", _NET_CONFIG)
            self._net_config = dict(ln.partition(" ")[::2] for ln in out.splitlines())
        limit = netcall.timeout(self._net_config.get(netcall.CONFIG_TIMEOUT))
        env = None if self._net_config.get("core.sshcommand") else git_ssh_env(url)
        cwd, label = str(self.repo.working_tree_dir or self.git_dir), f"{what} {url or REMOTE}"
        try:
            status, out, err = locks.unlocked(
                lambda: self.net.run(args, cwd=cwd, env=env, limit=limit, what=label),
                self.path,
                self.git_dir,
                self.notice,
            )
        except netcall.RemoteTimeout:
            if env:
                git_failed(url, "broken pipe")  # a hung link: its master goes, the next call starts afresh
            raise
        if status != 0 and env:
            git_failed(url, err)
        return status, out, err

    def remote_url_cached(self) -> str | None:
        if self._url is None:
            self._url = self.remote_url() or ""
        return self._url or None

    def fetch(self, *, machines: bool = False, live: bool = False) -> str | None:
        """Fetch the remote's main (and, if asked, the heartbeat refs and the live output refs); return main's sha."""
        specs = [f"+refs/heads/{BRANCH}:{TRACKING}"]
        if machines:
            specs.append(f"+{MACHINE_REFS}/*:{MACHINE_REFS}/*")
        if live:
            specs.append(f"+{LIVE_REFS}/*:{LIVE_REFS}/*")
        # Not --quiet: git's ref-update lines tell a forced update of main at no extra cost.
        status, _, err = self._net("fetch", "--no-tags", "--no-write-fetch-head", REMOTE, *specs, what="fetch from")
        self.forced_update = any("forced update" in ln and TRACKING.split("/", 2)[2] in ln for ln in err.splitlines())
        if status != 0:
            if "couldn't find remote ref" in err:
                return None
            raise RemoteError(f"cannot fetch from {self.remote_url()}: {one_line(err)}")
        self.fetches += 1
        return self.rev(TRACKING)

    def ls_remote_head(self) -> str | None:
        """The remote's main without fetching objects (the worker's cheap wake-up check)."""
        status, out, err = self._net("ls-remote", REMOTE, f"refs/heads/{BRANCH}", what="ls-remote")
        if status != 0:
            raise RemoteError(f"cannot reach {self.remote_url()}: {one_line(err)}")
        line = out.strip().split()
        return line[0] if line else None

    def push(self, sha: str, ref: str = f"refs/heads/{BRANCH}", *, force: bool = False) -> None:
        """Push ``sha`` to ``ref`` as a compare-and-swap.

        Raises PushRejected when the remote moved (any form: non-fast-forward,
        fetch first, cannot lock ref, stale info), HookRejected when a server hook
        declined, RemoteError when the remote cannot be reached (docs/design.md, "The claim protocol").
        """
        spec = f"{'+' if force else ''}{sha}:{ref}"
        status, out, err = self._net("push", "--porcelain", "--quiet", REMOTE, spec, what="push to")
        if status == 0:
            return
        text = f"{out}\n{err}"
        if "hook declined" in text:
            raise HookRejected(_hook_message(err) or "the remote's hook refused the push")
        rejected = [ln for ln in out.splitlines() if ln.startswith("!")]
        if rejected and all(_RACE.search(ln) for ln in rejected):
            raise PushRejected(one_line(text))
        if rejected:
            raise RemoteError(f"{self.remote_url()} refused the push: {rejected[0].split(chr(9))[-1].strip()}")
        if _REMOTE_DOWN.search(text) or status == 128:
            raise RemoteError(f"cannot push to {self.remote_url()}: {one_line(err or out)}")
        raise PushRejected(one_line(text))

    def push_refs(self, refspecs: list[str]) -> None:
        status, out, err = self._net("push", "--porcelain", "--quiet", REMOTE, *refspecs, what="push to")
        if status != 0:
            raise RemoteError(f"cannot push to {self.remote_url()}: {one_line(err or out)}")

    # -- refs and history --
    def rev(self, ref: str) -> str | None:
        try:
            return self.repo.rev_parse(ref).hexsha
        except (git.BadName, ValueError, GitCommandError):
            return None

    def set_ref(self, ref: str, sha: str) -> None:
        self.check_git("update-ref", ref, sha, what=f"update {ref}")

    def refs_under(self, prefix: str) -> dict[str, str]:
        status, out, _ = self.run_git("for-each-ref", "--format=%(objectname) %(refname)", prefix)
        refs: dict[str, str] = {}
        if status == 0:
            for line in out.splitlines():
                sha, _, name = line.partition(" ")
                refs[name] = sha
        return refs

    def is_ancestor(self, old: str, new: str) -> bool:
        status, _, _ = self.run_git("merge-base", "--is-ancestor", old, new)
        return status == 0

    def log(
        self, paths: list[str], *, rev: str = TRACKING, grep: str | None = None, first_parent: bool = False
    ) -> list[LogEntry]:
        """Commits touching ``paths``, oldest first, with their changes (``first_parent``: merges against parent 1)."""
        args = ["log", "--reverse", "--no-renames", "--name-status", f"--format={_LOG_FORMAT}", rev]
        args[1:1] = (["--grep", grep] if grep else []) + (["--first-parent", "-m"] if first_parent else [])
        args += ["--", *paths]
        status, out, err = self.run_git(*args)
        if status != 0:
            raise FleetqError(f"git log: {one_line(err)}")
        entries = []
        for chunk in out.split("\x00")[1:]:
            head, _, files = chunk.partition("\x1e")
            sha, author, email, when, message = head.split("\x1f", 4)
            changes = []
            for line in files.strip().splitlines():
                parts = line.split("\t")
                if len(parts) == 2:
                    changes.append((parts[0], parts[1], parts[1]))
            entries.append(LogEntry(sha, author, email, when, message.strip(), tuple(changes)))
        return entries

    # -- writing objects --
    def _store(self, kind: bytes, data: bytes) -> str:
        # gitpython's GitCmdObjectDB.store runs `git hash-object` per object; the loose-object
        # writer it inherits does the same in-process (zlib + rename), with no subprocess.
        return LooseObjectDB.store(self.repo.odb, IStream(kind, len(data), io.BytesIO(data))).hexsha.decode()

    def write_blob(self, data: bytes) -> str:
        return self._store(b"blob", data)

    def write_tree(self, entries: list[Entry]) -> str:
        return self._store(b"tree", tree_data(entries))

    def apply(self, tree: str | None, changes: Mapping[str, bytes | None]) -> str:
        """A new tree: ``tree`` with each path set to new bytes, or removed for None.

        Only the subtrees on changed paths are rewritten; empty directories vanish.
        """
        done = apply_nested(
            tree, nest(changes), entries=self.raw_entries, write_blob=self.write_blob, write_tree=self.write_tree
        )
        return done or EMPTY_TREE

    def commit(self, tree: str, parents: list[str], message: str, machine: str, *, when: float | None = None) -> str:
        stamp = int(when if when is not None else time.time())
        return self._store(b"commit", commit_data(tree, parents, message, self.identity(machine), stamp))

    def commit_signed(self, tree: str, parents: list[str], message: str) -> str:
        """A commit made by ``git commit-tree -S`` (the user's signing set-up)."""
        args = ["commit-tree", "-S", tree]
        for p in parents:
            args += ["-p", p]
        args += ["-m", message]
        return self.check_git(*args, what="sign the commit").strip()

    # -- the person's checkout --
    def untracked(self, under: str) -> list[str]:
        """Files below ``under`` that git does not track and does not ignore."""
        status, out, _ = self.run_git("ls-files", "--others", "--exclude-standard", "--", under)
        return [ln for ln in out.splitlines() if ln.strip()] if status == 0 else []

    def fast_forward_checkout(self) -> bool:
        """Move the checked-out main to the tracking ref, only when that loses nothing (checkout.py)."""
        return checkout.fast_forward(self) in (checkout.CURRENT, checkout.MOVED)


def init_bare(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    git.Repo.init(str(path), bare=True, initial_branch=BRANCH)
    r = git.Repo(str(path))
    with r.config_writer() as cw:
        cw.set_value("receive", "denyNonFastForwards", "true")
        cw.set_value("receive", "denyDeletes", "true")
        cw.set_value("gc", "auto", "0")
        cw.set_value("receive", "autogc", "false")
        cw.set_value("core", "logAllRefUpdates", "true")


def init_clone(path: Path, url: str) -> GitRepo:
    """A new local repo at ``path`` with ``url`` as origin, nothing fetched yet."""
    path.mkdir(parents=True, exist_ok=True)
    git.Repo.init(str(path), initial_branch=BRANCH)
    r = GitRepo(path)
    r.check_git("remote", "add", REMOTE, url, what="add remote")
    return r


def checkout_tracking(repo: GitRepo) -> None:
    """Point main at the tracking ref and check it out (a fresh clone's first checkout)."""
    repo.check_git("checkout", "-q", "-B", BRANCH, TRACKING, what="checkout")
    repo.check_git("branch", "-q", f"--set-upstream-to={REMOTE}/{BRANCH}", BRANCH, what="set upstream")


def find_worktree_root(start: Path) -> Path | None:
    """The top of the git work tree containing ``start``, or None."""
    try:
        r = git.Repo(str(start), search_parent_directories=True)
    except (InvalidGitRepositoryError, NoSuchPathError):
        return None
    return Path(r.working_tree_dir) if r.working_tree_dir else None


def one_line(text: str) -> str:
    """git's complaint as one line (its last meaningful one, at most 300 characters)."""
    lines = [
        ln.strip()
        for ln in (text or "").splitlines()
        if ln.strip() and not ln.startswith("To ") and ln.strip() != "Done"
    ]
    return (lines[-1] if lines else "unknown error")[:300]


def _hook_message(err: str) -> str:
    msgs = [ln[len("remote:") :].strip() for ln in err.splitlines() if ln.startswith("remote:")]
    msgs = [m.removeprefix("fleetq: ") for m in msgs if m and not m.startswith("fleetq: push rejected")]
    return "; ".join(msgs)[:1000]
