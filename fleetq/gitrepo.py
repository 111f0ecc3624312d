"""Every git call fleetq makes lives here.

Objects (blobs, trees, commits) are built in-process through gitpython's object
database; only the network legs (fetch, push, ls-remote) and a few porcelain
conveniences run ``git`` as a subprocess. The claim path never touches a working
tree: a person's checkout is moved forward only when it is clean.
"""
from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import git
from git.exc import GitCommandError, InvalidGitRepositoryError, NoSuchPathError
from git.objects.fun import tree_to_stream
from gitdb.base import IStream
from gitdb.db.loose import LooseObjectDB

from .errors import FleetqError, RemoteError

BRANCH = "main"
REMOTE = "origin"
TRACKING = f"refs/remotes/{REMOTE}/{BRANCH}"
MACHINE_REFS = "refs/fleetq/machines"
TREE_MODE = 0o40000
BLOB_MODE = 0o100644
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

_REMOTE_DOWN = re.compile(
    r"could not read from remote|does not appear to be a git repository|unable to access|"
    r"could not resolve host|connection (refused|timed out|closed)|no such file or directory|"
    r"not a git repository|network is unreachable|broken pipe|early eof|hung up",
    re.I,
)


# Every form in which git reports a lost race for a ref (a failed compare-and-swap).
_RACE = re.compile(r"non-fast-forward|fetch first|cannot lock ref|failed to lock|failed to update ref|stale info|"
                   r"incorrect old value|reference already exists", re.I)


class PushRejected(Exception):
    """The remote moved under us: a lost compare-and-swap. Fetch and try again."""


class HookRejected(RemoteError):
    """A server-side hook refused the push: retrying will not help."""


@dataclass(frozen=True)
class Entry:
    name: str
    is_tree: bool
    sha: str


@dataclass(frozen=True)
class LogEntry:
    sha: str
    author: str
    email: str
    when: str
    message: str
    files: tuple[tuple[str, str, str], ...]  # (status, old path, new path)


class GitRepo:
    """One local clone of the fleet repo."""

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
        self.forced_update = False  # the last fetch found main rewritten (force-pushed)
        self._own_ssh: bool | None = None  # the user set core.sshCommand: fleetq leaves git's ssh alone
        self._url: str | None = None

    # -- subprocess plumbing --
    def _run(self, *args: str, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
        kw: dict = {"with_extended_output": True, "with_exceptions": False}
        if env:
            kw["env"] = dict(env)
        status, out, err = self.repo.git.execute(["git", *args], **kw)
        return status, out, err

    def _check(self, *args: str, what: str, remote: bool = False) -> str:
        status, out, err = self._run(*args)
        if status != 0:
            msg = _one_line(err or out)
            if remote:
                raise RemoteError(f"{what}: the remote did not answer: {msg}")
            raise FleetqError(f"{what}: {msg}")
        return out

    # -- config --
    def config_get(self, key: str) -> str | None:
        status, out, _ = self._run("config", "--get", key)
        return out.strip() if status == 0 and out.strip() else None

    def config_set(self, key: str, value: str) -> None:
        self._check("config", key, value, what=f"git config {key}")

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
    def _net(self, *args: str) -> tuple[int, str, str]:
        """A git call that talks to the remote: over ssh, through fleetq's reused connection (ssh.py)."""
        from . import ssh  # ssh.py imports config, which reads snapshots: import late

        url = self.remote_url_cached()
        if self._own_ssh is None:
            self._own_ssh = bool(self.config_get("core.sshCommand"))  # the user's choice wins
        env = None if self._own_ssh else ssh.git_ssh_env(url)
        status, out, err = self._run(*args, env=env)
        if status != 0 and env:
            ssh.git_failed(url, err)
        return status, out, err

    def remote_url_cached(self) -> str | None:
        if self._url is None:
            self._url = self.remote_url() or ""
        return self._url or None

    def fetch(self, *, machines: bool = False) -> str | None:
        """Fetch the remote's main (and, if asked, the heartbeat refs); return main's sha."""
        specs = [f"+refs/heads/{BRANCH}:{TRACKING}"]
        if machines:
            specs.append(f"+{MACHINE_REFS}/*:{MACHINE_REFS}/*")
        # Not --quiet: git's ref-update lines tell a forced update of main at no extra cost.
        status, _, err = self._net("fetch", "--no-tags", "--no-write-fetch-head", REMOTE, *specs)
        self.forced_update = any("forced update" in ln and TRACKING.split("/", 2)[2] in ln for ln in err.splitlines())
        if status != 0:
            if "couldn't find remote ref" in err:
                return None
            raise RemoteError(f"cannot fetch from {self.remote_url()}: {_one_line(err)}")
        return self.rev(TRACKING)

    def ls_remote_head(self) -> str | None:
        """The remote's main without fetching objects (the worker's cheap wake-up check)."""
        status, out, err = self._net("ls-remote", REMOTE, f"refs/heads/{BRANCH}")
        if status != 0:
            raise RemoteError(f"cannot reach {self.remote_url()}: {_one_line(err)}")
        line = out.strip().split()
        return line[0] if line else None

    def push(self, sha: str, ref: str = f"refs/heads/{BRANCH}", *, force: bool = False) -> None:
        """Push ``sha`` to ``ref`` as a compare-and-swap.

        Raises PushRejected when the remote moved (any form: non-fast-forward,
        fetch first, cannot lock ref, stale info), HookRejected when a server hook
        declined, RemoteError when the remote cannot be reached.
        """
        spec = f"{'+' if force else ''}{sha}:{ref}"
        status, out, err = self._net("push", "--porcelain", "--quiet", REMOTE, spec)
        if status == 0:
            return
        text = f"{out}\n{err}"
        if "hook declined" in text:
            raise HookRejected(_hook_message(err) or "the remote's hook refused the push")
        rejected = [ln for ln in out.splitlines() if ln.startswith("!")]
        if rejected and all(_RACE.search(ln) for ln in rejected):
            raise PushRejected(_one_line(text))
        if rejected:
            raise RemoteError(f"{self.remote_url()} refused the push: {rejected[0].split(chr(9))[-1].strip()}")
        if _REMOTE_DOWN.search(text) or status == 128:
            raise RemoteError(f"cannot push to {self.remote_url()}: {_one_line(err or out)}")
        raise PushRejected(_one_line(text))

    def push_refs(self, refspecs: list[str]) -> None:
        status, out, err = self._net("push", "--porcelain", "--quiet", REMOTE, *refspecs)
        if status != 0:
            raise RemoteError(f"cannot push to {self.remote_url()}: {_one_line(err or out)}")

    # -- refs and history --
    def rev(self, ref: str) -> str | None:
        try:
            return self.repo.rev_parse(ref).hexsha
        except (git.BadName, ValueError, GitCommandError):
            return None

    def set_ref(self, ref: str, sha: str) -> None:
        self._check("update-ref", ref, sha, what=f"update {ref}")

    def refs_under(self, prefix: str) -> dict[str, str]:
        status, out, _ = self._run("for-each-ref", "--format=%(objectname) %(refname)", prefix)
        refs: dict[str, str] = {}
        if status == 0:
            for line in out.splitlines():
                sha, _, name = line.partition(" ")
                refs[name] = sha
        return refs

    def is_ancestor(self, old: str, new: str) -> bool:
        status, _, _ = self._run("merge-base", "--is-ancestor", old, new)
        return status == 0

    def log(self, paths: list[str], *, rev: str = TRACKING, grep: str | None = None) -> list[LogEntry]:
        """Commits touching ``paths`` (pathspecs), oldest first, with their file changes."""
        args = ["log", "--reverse", "--no-renames", "--name-status", "--format=%x00%H%x1f%an%x1f%ae%x1f%aI%x1f%B%x1e", rev]
        if grep:
            args[1:1] = ["--grep", grep]
        args += ["--", *paths]
        status, out, err = self._run(*args)
        if status != 0:
            raise FleetqError(f"git log: {_one_line(err)}")
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

    # -- reading objects --
    def read_blob(self, sha: str) -> bytes:
        return self.repo.odb.stream(bytes.fromhex(sha)).read()

    def tree_of(self, commit: str) -> str:
        data = self.repo.odb.stream(bytes.fromhex(commit)).read()
        first = data.split(b"\n", 1)[0]
        if not first.startswith(b"tree "):
            raise FleetqError(f"{commit} is not a commit")
        return first[5:].decode()

    def entries(self, tree: str) -> list[Entry]:
        """A tree's entries; trees are immutable, so they are cached by sha."""
        hit = self._trees.get(tree)
        if hit is not None:
            return hit
        found = _parse_tree(self.repo.odb.stream(bytes.fromhex(tree)).read())
        if len(self._trees) > 4096:
            self._trees.clear()
        self._trees[tree] = found
        return found

    def lookup(self, tree: str, path: str) -> Entry | None:
        """The entry at ``path`` below ``tree``, or None."""
        cur: Entry | None = Entry("", True, tree)
        for part in [p for p in path.split("/") if p]:
            if cur is None or not cur.is_tree:
                return None
            cur = self.names(cur.sha).get(part)
        return cur

    def names(self, tree: str) -> dict[str, Entry]:
        """A tree's entries by name (cached like ``entries``): lookups in a 100,000-file shard stay O(1)."""
        hit = self._names.get(tree)
        if hit is None:
            if len(self._names) > 4096:
                self._names.clear()
            hit = self._names[tree] = {e.name: e for e in self.entries(tree)}
        return hit

    def walk_blobs(self, tree: str, prefix: str = "") -> Iterator[tuple[str, str]]:
        """(path, blob sha) for every file below ``tree``."""
        for e in self.entries(tree):
            p = f"{prefix}{e.name}"
            if e.is_tree:
                yield from self.walk_blobs(e.sha, p + "/")
            else:
                yield p, e.sha

    # -- writing objects --
    def _store(self, kind: bytes, data: bytes) -> str:
        # gitpython's GitCmdObjectDB.store runs `git hash-object` per object; the loose-object
        # writer it inherits does the same in-process (zlib + rename), with no subprocess.
        return LooseObjectDB.store(self.repo.odb, IStream(kind, len(data), io.BytesIO(data))).hexsha.decode()

    def write_blob(self, data: bytes) -> str:
        return self._store(b"blob", data)

    def write_tree(self, entries: list[Entry]) -> str:
        ordered = sorted(entries, key=lambda e: e.name + ("/" if e.is_tree else ""))
        buf = io.BytesIO()
        tree_to_stream(
            [(bytes.fromhex(e.sha), TREE_MODE if e.is_tree else BLOB_MODE, e.name) for e in ordered], buf.write
        )
        return self._store(b"tree", buf.getvalue())

    def apply(self, tree: str | None, changes: Mapping[str, bytes | None]) -> str:
        """A new tree: ``tree`` with each path set to new bytes, or removed for None.

        Only the subtrees on changed paths are rewritten; empty directories vanish.
        """
        nested: dict[str, dict] = {}
        for path, data in changes.items():
            node = nested
            parts = path.split("/")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise FleetqError(f"{path}: a file stands where a directory should")
            node[parts[-1]] = data
        return self._apply(tree, nested) or EMPTY_TREE

    def _apply(self, tree: str | None, nested: dict) -> str | None:
        current = {e.name: e for e in self.entries(tree)} if tree else {}
        for name, change in nested.items():
            if isinstance(change, dict):
                old = current.get(name)
                sub = self._apply(old.sha if old is not None and old.is_tree else None, change)
                if sub is None:
                    current.pop(name, None)
                else:
                    current[name] = Entry(name, True, sub)
            elif change is None:
                current.pop(name, None)
            else:
                current[name] = Entry(name, False, self.write_blob(change))
        if not current:
            return None
        return self.write_tree(list(current.values()))

    def commit(self, tree: str, parents: list[str], message: str, machine: str, *, when: float | None = None) -> str:
        name, email = self.identity(machine)
        stamp = f"{int(when if when is not None else time.time())} +0000"
        lines = [f"tree {tree}"] + [f"parent {p}" for p in parents]
        lines += [f"author {name} <{email}> {stamp}", f"committer {name} <{email}> {stamp}", "", message]
        text = "\n".join(lines)
        if not text.endswith("\n"):
            text += "\n"
        return self._store(b"commit", text.encode("utf-8"))

    def commit_signed(self, tree: str, parents: list[str], message: str) -> str:
        """A commit made by ``git commit-tree -S`` (the user's signing set-up)."""
        args = ["commit-tree", "-S", tree]
        for p in parents:
            args += ["-p", p]
        args += ["-m", message]
        return self._check(*args, what="sign the commit").strip()

    # -- the person's checkout --
    def untracked(self, under: str) -> list[str]:
        """Files below ``under`` that git does not track and does not ignore."""
        status, out, _ = self._run("ls-files", "--others", "--exclude-standard", "--", under)
        return [ln for ln in out.splitlines() if ln.strip()] if status == 0 else []

    def fast_forward_checkout(self) -> bool:
        """Move the checked-out main to the tracking ref, only when that loses nothing."""
        if self.repo.bare:
            return False
        status, head_ref, _ = self._run("symbolic-ref", "-q", "HEAD")
        if status != 0 or head_ref.strip() != f"refs/heads/{BRANCH}":
            return False
        target = self.rev(TRACKING)
        head = self.rev("HEAD")
        if target is None or head == target:
            return head == target
        if head is not None and not self.is_ancestor(head, target):
            return False
        status, out, _ = self._run("status", "--porcelain", "--untracked-files=no")
        if status != 0 or out.strip():
            return False
        if head is None:
            status, _, _ = self._run("reset", "--keep", "-q", target)
        else:
            status, _, _ = self._run("merge", "--ff-only", "-q", target)
        return status == 0


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
    r._check("remote", "add", REMOTE, url, what="add remote")
    return r


def checkout_tracking(repo: GitRepo) -> None:
    """Point main at the tracking ref and check it out (a fresh clone's first checkout)."""
    repo._check("checkout", "-q", "-B", BRANCH, TRACKING, what="checkout")
    repo._check("branch", "-q", f"--set-upstream-to={REMOTE}/{BRANCH}", BRANCH, what="set upstream")


def find_worktree_root(start: Path) -> Path | None:
    """The top of the git work tree containing ``start``, or None."""
    try:
        r = git.Repo(str(start), search_parent_directories=True)
    except (InvalidGitRepositoryError, NoSuchPathError):
        return None
    return Path(r.working_tree_dir) if r.working_tree_dir else None


def _parse_tree(data: bytes) -> list[Entry]:
    """A raw tree object's entries (``<mode> <name>\\0<20-byte sha>`` each).

    gitpython's tree_entries_from_data validates every name through its path checks and
    costs ~8 µs an entry; a 100,000-task done/ history made that seconds per process.
    Names are only ever used as paths inside the repo (fleetq checks task paths itself).
    """
    out: list[Entry] = []
    i, n, find = 0, len(data), data.find
    while i < n:
        sp = find(b" ", i)
        nul = find(b"\0", sp)
        if sp < 0 or nul < 0 or nul + 21 > n:
            raise FleetqError("a damaged tree object in the fleet repo")
        out.append(Entry(data[sp + 1:nul].decode("utf-8", "surrogateescape"), data[i:sp] == b"40000",
                         data[nul + 1:nul + 21].hex()))
        i = nul + 21
    return out


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip() and not ln.startswith("To ") and ln.strip() != "Done"]
    return (lines[-1] if lines else "unknown error")[:300]


def _hook_message(err: str) -> str:
    msgs = [ln[len("remote:"):].strip() for ln in err.splitlines() if ln.startswith("remote:")]
    msgs = [m.removeprefix("fleetq: ") for m in msgs if m and not m.startswith("fleetq: push rejected")]
    return "; ".join(msgs)[:1000]


# -- trust and integrity (hooks, pre-receive, signatures, maintenance) --

ZERO_SHA = "0" * 40


def hooks_dir(repo: GitRepo) -> Path:
    """Where git looks for this repo's hooks (honours core.hooksPath)."""
    out = repo._check("rev-parse", "--git-path", "hooks", what="find the hooks directory").strip()
    p = Path(out)
    return p if p.is_absolute() else (Path(repo.repo.working_dir or repo.git_dir) / p).resolve()


def index_tree(repo: GitRepo) -> str:
    """The staged index as a tree object (``git write-tree``; honours $GIT_INDEX_FILE)."""
    return repo._check("write-tree", what="read the staged files").strip()


def parents_of(repo: GitRepo, commit: str) -> list[str]:
    """A commit's parents, read from the object in-process."""
    data = repo.repo.odb.stream(bytes.fromhex(commit)).read()
    head = data.split(b"\n\n", 1)[0]
    return [line[7:].decode() for line in head.split(b"\n") if line.startswith(b"parent ")]


def new_commits(repo: GitRepo, new: str, old: str | None) -> list[str]:
    """Commits that ``new`` adds, oldest first: ``old..new``, or everything not yet on any ref."""
    args = ["rev-list", "--reverse", "--topo-order", new]
    args += [f"^{old}"] if old else ["--not", "--all"]
    return repo._check(*args, what="list the pushed commits").split()


def signature_status(repo: GitRepo, commits: list[str], signers_file: Path | None) -> dict[str, tuple[str, str]]:
    """commit -> (git's %G? code, signing key fingerprint), SSH signatures checked against ``signers_file``.

    'G' is the only good answer: 'N' unsigned, 'U' a key not in the file, 'B' bad, 'E' cannot check.
    """
    if not commits:
        return {}
    conf = ["-c", "gpg.format=ssh"]
    if signers_file is not None:
        conf += ["-c", f"gpg.ssh.allowedSignersFile={signers_file}"]
    status, out, err = repo._run(*conf, "log", "--no-walk=unsorted", "--format=%H %G? %GK", *commits)
    if status != 0:
        raise FleetqError(f"cannot check commit signatures: {_one_line(err)}")
    found: dict[str, tuple[str, str]] = {}
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) >= 2 and len(parts[0]) == 40:
            found[parts[0]] = (parts[1], parts[2] if len(parts) > 2 else "")
    return found


def maintenance(path: Path) -> list[str]:
    """gc and a commit-graph with changed-path filters (auto-gc is off on fleet remotes); what ran."""
    try:
        r = git.Repo(str(path))
    except (InvalidGitRepositoryError, NoSuchPathError):
        raise FleetqError(f"{path} is not a git repository") from None
    done = []
    for args in (["gc", "--quiet"], ["commit-graph", "write", "--reachable", "--changed-paths"]):
        status, _, err = r.git.execute(["git", *args], with_extended_output=True, with_exceptions=False)
        if status != 0:
            raise FleetqError(f"git {' '.join(args)} in {path}: {_one_line(err)}")
        done.append(f"git {' '.join(args)}")
    return done


def blob_size(repo: GitRepo, sha: str) -> int:
    """A blob's size without reading it (so a many-MB file is refused before it is loaded)."""
    return int(repo.repo.odb.info(bytes.fromhex(sha)).size)


def reflog_subjects(repo: GitRepo, ref: str, n: int = 1) -> list[tuple[str, str]]:
    """The newest ``n`` reflog entries of ``ref`` as (sha, subject), e.g. 'fetch: forced-update'."""
    status, out, _ = repo._run("reflog", "show", f"-n{n}", "--format=%H %gs", ref, "--")
    if status != 0:
        return []
    return [(line[:40], line[41:]) for line in out.splitlines() if len(line) > 41]


# -- a user's project repository (isolated agent runs and their review; see fleetq/isolate.py, fleetq/review.py) --

RUN_BRANCH_PREFIX = "fleetq/"


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
        status, out, _ = git.Git(str(start)).execute(["git", "rev-parse", "--show-toplevel"], with_extended_output=True,
                                                     with_exceptions=False)
        return cls(Path(out.strip())) if status == 0 and out.strip() else None

    def run(self, *args: str) -> tuple[int, str, str]:
        status, out, err = self._git.execute(["git", *args], with_extended_output=True, with_exceptions=False,
                                             strip_newline_in_stdout=False)
        return status, out, err

    def check(self, *args: str, what: str) -> str:
        status, out, err = self.run(*args)
        if status != 0:
            raise FleetqError(f"{what} in {self.path}: {_one_line(err or out)}")
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

    def checked_out(self) -> dict[str, Path]:
        """branch -> the work tree (main or linked) that has it checked out."""
        found: dict[str, Path] = {}
        path: Path | None = None
        for line in self.check("worktree", "list", "--porcelain", what="list worktrees").splitlines():
            if line.startswith("worktree "):
                path = Path(line[9:])
            elif line.startswith("branch refs/heads/") and path is not None:
                found[line[len("branch refs/heads/"):]] = path
        return found

    def diffstat(self, base: str, head: str) -> DiffStat:
        """Files changed, lines inserted and deleted between two commits (binary files count as files)."""
        out = self.check("diff", "--numstat", "--no-renames", base, head, what="diff --numstat")
        files = ins = dels = 0
        for line in out.splitlines():
            parts = line.split("\t", 2)
            if len(parts) == 3:
                files += 1
                ins += int(parts[0]) if parts[0].isdigit() else 0
                dels += int(parts[1]) if parts[1].isdigit() else 0
        return DiffStat(files, ins, dels)

    def diff(self, base: str, head: str, *, stat: bool = False) -> str:
        return self.check("diff", "--stat" if stat else "--patch", base, head, what="git diff")

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
        return self.run("branch", "-D", branch)[0] == 0

    def update_branch(self, branch: str, new: str, old: str) -> None:
        """Move ``branch`` from ``old`` to ``new`` (a compare-and-swap on the ref)."""
        self.check("update-ref", "-m", "fleetq accept", f"refs/heads/{branch}", new, old, what=f"update {branch}")

    def merge(self, head: str, *, ff_only: bool, message: str) -> tuple[bool, str]:
        """Merge ``head`` into what is checked out here; (ok, git's complaint). A failed merge is aborted."""
        args = ["merge", "-q", "--ff-only", head] if ff_only else ["-c", "commit.gpgsign=false", "merge", "-q", "--no-ff",
                                                                   "--no-verify", "-m", message, head]
        status, out, err = self.run(*args)
        if status != 0:
            self.run("merge", "--abort")
            return False, _one_line(err or out)
        return True, ""

    # -- remotes --
    def push_branch(self, remote: str, branch: str) -> str | None:
        """Push ``branch`` to ``remote`` (forced: the branch is this run's own); git's complaint, or None."""
        status, out, err = self.run("push", "-q", remote, f"+refs/heads/{branch}:refs/heads/{branch}")
        return None if status == 0 else _one_line(err or out)

    def delete_remote_branch(self, remote: str, branch: str) -> str | None:
        status, out, err = self.run("push", "-q", remote, f":refs/heads/{branch}")
        return None if status == 0 else _one_line(err or out)

    def fetch_branch(self, remote: str, branch: str) -> str:
        """Fetch one branch from ``remote`` (a name or URL); its commit (kept as ``refs/fleetq/review/<branch>``)."""
        local = f"refs/fleetq/review/{branch}"
        self.check("fetch", "-q", "--no-tags", remote, f"+refs/heads/{branch}:{local}", what=f"fetch {branch}")
        sha = self.commit_of(local)
        if sha is None:
            raise FleetqError(f"fetch {branch} from {remote}: nothing arrived")
        return sha
