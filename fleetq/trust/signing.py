"""Signed tasks: with ``require_signed``, only what an allowed key signed may run.

Whoever can push a task can run a command on a worker. With ``require_signed:
true`` in ``config/fleet.yaml`` and an allowed-signers file committed at
``config/allowed_signers`` (git's ``gpg.ssh.allowedSignersFile`` format), a
worker runs a task only when the commit that created it and every commit that
changed what it runs (``EXEC_FIELDS``) carry a good SSH signature by an allowed
key. fleetq's own transition commits (claims, reports, hand-backs, notes) change
none of those fields and need no signature.

The rule is only as strong as the files that define it, so commits that change a
*protected* file (anything under ``config/`` or ``handlers/``: the settings, the
signers, machines, agents' argv templates, skills' install commands, schedules,
the notifier, custom handler code) must be signed too, by a key allowed before
the change. A remote with the pre-receive hook refuses such commits; a worker
checks the same chain itself (``trust_at``, first-parent diffs as the hook sees
them, so a merge's own changes count), so a remote that runs no hooks (GitHub) is
covered too: an unsigned change to a protected file stops every task (and every
notifier and schedule: ``untrusted``) until a signed commit changes that file again.

A re-run is a new order: a commit that sends a finished task (done, failed or
needs_human) back to pending or claimed must be signed as well (``rerun``), so
nobody can replay signed work without a signature.

A machine owner can pin the rule locally, out of reach of anyone who can push:
``git config fleetq.requireSigned true`` and ``git config
fleetq.allowedSignersFile PATH`` in the worker's clone (or the bare remote).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetq import yamlio
from fleetq.core import states
from fleetq.core.config import SETTINGS
from fleetq.core.states import CLAIMED, DONE, FAILED, NEEDS_HUMAN, PENDING
from fleetq.core.task import Task
from fleetq.errors import FleetqError
from fleetq.git.repo import GitRepo
from fleetq.layout import LOCAL_REQUIRE, LOCAL_SIGNERS, PROTECTED_DIRS
from fleetq.trust.checks import SIGNERS, location, touched_ids, tree_snapshot
from fleetq.trust.signatures import verify_commits

# What decides what a task runs and where: a change to any of these must be signed.
EXEC_FIELDS = ("type", "title", "agent", "payload", "target", "requires")
_PREFIXES = tuple(f"{d}/" for d in PROTECTED_DIRS)  # layout.PROTECTED_DIRS: config/ and handlers/, every file
RUNNABLE = frozenset({PENDING, CLAIMED})
FINISHED = frozenset({DONE, FAILED, NEEDS_HUMAN})  # back to RUNNABLE from here only by a signed order
_UNREADABLE = "<unreadable>"


@dataclass(frozen=True)
class Policy:
    """The signing rule in force: required or not, and which signers file decides."""

    require: bool
    signers: str | None  # blob sha of the committed signers file, or "file:PATH" when pinned locally


@dataclass
class Trust:
    """The signing rule as of a head, walked commit by commit from the root (see ``trust_at``)."""

    head: str | None
    require: bool = False
    signers: str | None = None
    tainted: dict[str, tuple[str, str]] = field(default_factory=dict)  # path -> (commit, why)
    guard: tuple[str, ...] = ()  # shas of the trees holding protected files at ``head``


def is_protected(path: str) -> bool:
    """Whether ``path`` decides what runs or where: the hooks, the worker's chain of trust and fsck all ask this."""
    return path in PROTECTED_DIRS or path.startswith(_PREFIXES)


def protected_paths(repo: GitRepo, tree: str | None) -> list[str]:
    """The protected files present in ``tree`` (what a signed "I reviewed this" commit must touch)."""
    found: list[str] = []
    for d in PROTECTED_DIRS:
        e = repo.lookup(tree, d) if tree else None
        if e is not None:
            found += [f"{d}/{p}" for p, _ in repo.walk_blobs(e.sha)] if e.is_tree else [d]
    return found


def rerun(old: set[str], new: set[str]) -> str | None:
    """'done -> pending' when a task in the states ``old`` (none runnable) is sent back to run; else None."""
    back = sorted(new & RUNNABLE)
    if old and old <= FINISHED and back:
        return f"{'/'.join(sorted(old))} -> {back[0]}"
    return None


# -- the rule at one tree --

_LOCAL: dict[str, tuple[float, bool, str | None]] = {}


def local_policy(repo: GitRepo) -> tuple[bool, str | None]:
    """This clone's own pins (git config), cached until its config file changes."""
    key = str(repo.git_dir)
    try:
        stamp = (repo.git_dir / "config").stat().st_mtime
    except OSError:
        stamp = 0.0
    hit = _LOCAL.get(key)
    if hit is None or hit[0] != stamp:
        require = (repo.config_get(LOCAL_REQUIRE) or "").lower() in ("true", "yes", "1", "on")
        pinned = repo.config_get(LOCAL_SIGNERS)
        hit = (stamp, require, f"file:{Path(pinned).expanduser()}" if pinned else None)
        _LOCAL[key] = hit
    return hit[1], hit[2]


def require_from(raw: bytes | None) -> bool:
    """``require_signed`` from the bytes of config/fleet.yaml; unreadable settings fail closed."""
    if raw is None:
        return False
    try:
        data = yamlio.to_plain(yamlio.load_safe(raw, SETTINGS))
    except FleetqError:
        return True
    if data is None:
        return False
    if not isinstance(data, dict):
        return True
    value = data.get("require_signed", False)
    if value is None or isinstance(value, bool):
        return bool(value)
    return str(value).strip().lower() not in ("false", "no", "off", "0", "")  # a typo fails closed


def _blob_at(repo: GitRepo, tree: str | None, path: str) -> str | None:
    e = repo.lookup(tree, path) if tree else None
    return e.sha if e is not None and not e.is_tree else None


def policy_at(repo: GitRepo, tree: str | None) -> Policy:
    """The rule a commit built on ``tree`` must follow (the tree's settings, plus local pins)."""
    local_require, pinned = local_policy(repo)
    settings = _blob_at(repo, tree, SETTINGS)
    require = local_require or require_from(repo.read_blob(settings) if settings else None)
    return Policy(require, pinned or _blob_at(repo, tree, SIGNERS))


# -- what needs a signature --


def exec_view_data(data: Any) -> Any:
    """The fields that decide what a task runs, as comparable plain data."""
    if not isinstance(data, dict):
        return _UNREADABLE
    view = {k: data.get(k) for k in EXEC_FIELDS if data.get(k) not in (None, "", [], {})}
    return json.dumps(view, sort_keys=True, default=str)


def exec_view(raw: bytes) -> Any:
    try:
        return exec_view_data(yamlio.to_plain(yamlio.load_safe(raw, "task")))
    except FleetqError:
        return _UNREADABLE


def needs_signature(repo: GitRepo, old_tree: str | None, new_tree: str | None, paths: list[str]) -> str | None:
    """Why a commit from ``old_tree`` to ``new_tree`` (changing ``paths``) must be signed; None if it need not."""
    for p in paths:
        if is_protected(p):
            return f"it changes {p}"
    before, after = tree_snapshot(repo, old_tree), tree_snapshot(repo, new_tree)
    for tid in sorted(touched_ids(paths)):
        new = after.locate(tid)
        if not new:
            continue
        old = before.locate(tid)
        view = exec_view(repo.read_blob(new[0].blob))
        if not old:
            return f"it creates task {tid}"
        if view != exec_view(repo.read_blob(old[0].blob)):
            return f"it changes what task {tid} runs"
        move = rerun({r.loc.state for r in old}, {r.loc.state for r in new})
        if move:
            return f"it sends task {tid} back to run ({move}), a new order"
    return None


# -- the chain of trust, as a worker sees it --

_TRUST: dict[str, Trust] = {}


def _step(repo: GitRepo, trust: Trust, commit: str, paths: list[str], local: tuple[bool, str | None]) -> None:
    """Apply one commit that changed protected files: approve its changes, or taint those files."""
    require = trust.require or local[0]
    if require:
        why = verify_commits(repo, [(commit, local[1] or trust.signers)]).get(commit)
        if why:
            for p in paths:
                trust.tainted[p] = (commit, why)
            return
    tree = repo.tree_of(commit)
    for p in paths:
        trust.tainted.pop(p, None)
    if SIGNERS in paths:
        trust.signers = _blob_at(repo, tree, SIGNERS)
    if SETTINGS in paths:
        blob = _blob_at(repo, tree, SETTINGS)
        trust.require = require_from(repo.read_blob(blob) if blob else None)


def trust_at(repo: GitRepo, head: str) -> Trust:
    """The signing rule at ``head``, each protected change checked against the rule before it.

    Walks only the commits that touched protected files, and only those new since
    the last head it saw (when that head is an ancestor).
    """
    key = str(repo.git_dir)
    prev = _TRUST.get(key)
    if prev is not None and prev.head == head:
        return prev
    guard = _protected_trees(repo, head)
    if prev is not None and prev.guard == guard:
        # No protected file can have changed (their trees are the same): the worker's own claims and
        # reports move the head every pass, and this answers them with no git call at all.
        trust = Trust(head, prev.require, prev.signers, dict(prev.tainted), guard)
        _TRUST[key] = trust
        return trust
    if prev is not None and prev.head and repo.is_ancestor(prev.head, head):
        trust = Trust(head, prev.require, prev.signers, dict(prev.tainted))
        rev = f"{prev.head}..{head}"
    else:
        trust, rev = Trust(head), head
    local = local_policy(repo)
    for entry in repo.log(list(PROTECTED_DIRS), rev=rev, first_parent=True):  # a merge's own changes count
        paths = [p for _, _, p in entry.files if is_protected(p)]
        if paths:
            _step(repo, trust, entry.sha, paths, local)
    trust.guard = guard
    _TRUST[key] = trust
    return trust


def _protected_trees(repo: GitRepo, head: str) -> tuple[str, ...]:
    """The shas of config/ and handlers/ at ``head`` (in-process object reads)."""
    tree = repo.tree_of(head)
    found = (repo.lookup(tree, d) for d in PROTECTED_DIRS)
    return tuple(e.sha if e is not None else "" for e in found)


def effective(repo: GitRepo, trust: Trust) -> Policy:
    local_require, pinned = local_policy(repo)
    return Policy(trust.require or local_require, pinned or trust.signers)


# -- a task --

_VERIFY_LOCK = threading.Lock()


def _tainted(trust: Trust, what: str) -> str | None:
    if not trust.tainted:
        return None
    path, (c, how) = sorted(trust.tainted.items())[0]
    return (
        f"{path} was changed by commit {c[:10]}, which is {how}, while signed commits are "
        f"required; {what} until a commit signed by an allowed key changes it again"
    )


def untrusted(repo: GitRepo, commit: str | None, what: str) -> str | None:
    """Why the fleet's config at ``commit`` must not be used (a protected file is tainted); None: it may.

    The notifier asks it (``notify_gate``) before it runs the command config/notify.yaml names, and the
    worker before it fires config/schedules.yaml: both would act on whatever a tainted file says.
    """
    if not commit:
        return None
    with _VERIFY_LOCK:
        try:
            return _tainted(trust_at(repo, commit), what)
        except FleetqError as e:
            return f"cannot check the fleet's chain of trust: {e}"


def notify_gate(repo: GitRepo) -> Callable[[str | None], str | None]:
    """The notifier's question (run/notify.Notifier ``gate``): may the config at this head name a command to run?"""
    return lambda commit: untrusted(repo, commit, "no notifier runs")


def verify_task(repo: GitRepo, commit: str, task: Task) -> str | None:
    """None when ``task`` may run as of ``commit``; otherwise the reason it may not.

    Call it from the thread that owns ``repo`` (gitpython's object reader is not
    thread-safe). Nothing is cached per task: a replay (an unsigned re-run of a task
    verified before) must be seen; signatures are cached per commit.
    """
    with _VERIFY_LOCK:
        try:
            trust = trust_at(repo, commit)
            why = _tainted(trust, "no task runs")
            if why:
                return why
            policy = effective(repo, trust)
            if not policy.require:
                return None
            return _history_problem(repo, commit, task, policy.signers)
        except FleetqError as e:
            return f"cannot verify the signatures of task {task.id}: {e}"


def _history_problem(repo: GitRepo, commit: str, task: Task, signers: str | None) -> str | None:
    """Why the commits that made ``task`` what it is (created it, changed what it runs, sent it back to run
    once finished) are not all signed by an allowed key. First-parent diffs, as the hook sees merges."""
    tid = task.id
    specs = [f":(glob){states.QUEUE}/*/{tid}.yaml", f":(glob){states.QUEUE}/{states.DONE}/*/{tid}.yaml"]
    prev: Any = None
    where: set[str] = set()  # the states it was last seen in
    need: list[tuple[str, str]] = []
    order: list[tuple[str, str]] = []  # the latest re-run: a signed one supersedes an unsigned one refused before
    for entry in repo.log(specs, rev=commit, first_parent=True):
        present = sorted(p for status, _, p in entry.files if not status.startswith("D") and _is(p, tid))
        if not present:
            if any(_is(p, tid) for _, _, p in entry.files):
                prev, where, order = None, set(), []  # it left the tree (archived): a re-creation is a creation
            continue
        blob = _blob_at(repo, repo.tree_of(entry.sha), present[0])
        view = exec_view(repo.read_blob(blob)) if blob else _UNREADABLE
        now = {loc.state for loc in map(location, present) if loc is not None}
        move = rerun(where, now)
        if view != prev:
            need.append((entry.sha, "created it" if prev is None else "changed what it runs"))
            prev = view
        if move:
            order = [(entry.sha, f"sent it back to run ({move})")]
        where = now
    need += order
    if prev is None:
        return f"task {tid}: no commit in the history adds it, so its signature cannot be checked"
    if prev != exec_view_data(task.data):
        return f"task {tid}: what it would run differs from its committed file"
    bad = verify_commits(repo, [(c, signers) for c, _ in need])
    for c, what in need:
        if c in bad:
            return f"task {tid}: commit {c[:10]}, which {what}, is {bad[c]}; signed commits are required"
    return None


def _is(path: str, tid: str) -> bool:
    loc = location(path)
    return loc is not None and loc.task_id == tid
