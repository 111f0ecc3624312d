"""Checking task and config files wherever they come from: a working tree, the index, a pushed tree."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from fleetq import yamlio
from fleetq.core import archindex, moves, schedules, states
from fleetq.core import task as taskmod
from fleetq.core.config import MACHINES, SETTINGS, parse_machines, settings_problems, unknown_machine_keys
from fleetq.core.snapshot import Problem, Snapshot
from fleetq.core.task import Task
from fleetq.errors import FleetqError
from fleetq.git.objects import shown
from fleetq.git.repo import GitRepo
from fleetq.layout import AGENTS, ARCHIVED, SCHEDULES, SIGNERS
from fleetq.run import redact
from fleetq.run.agents.registry import agents_from

# What a finding is, by fsck's names: invalid id_mismatch misplaced secret duplicate dangling_dep
# never_runs bad_config odd_entry (fsck adds ghost_claim untrusted rewritten, which need more than the tree).


@dataclass(frozen=True)
class Finding:
    """One problem with a file: its path, one readable line (starting with the path), and its kind."""

    path: str
    reason: str
    kind: str = "invalid"
    task_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    __str__ = Problem.__str__

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "reason": str(self), "kind": self.kind, "task_id": self.task_id}


def examine_task(path: str, raw: bytes, blob: str = "") -> tuple[list[Finding], Task | None]:
    """A file under queue/: its problems, and the task it holds when it parses (None otherwise)."""
    try:
        loc = states.parse_path(path)
    except states.BadPath as e:
        return [Finding(path, str(e), "misplaced")], None
    if loc is None:
        return [], None
    tid = loc.task_id
    if not states.valid_id(tid):
        return [Finding(path, f"{path}: file name is not a safe task id", "misplaced")], None
    try:
        data = yamlio.to_plain(yamlio.load_safe(raw, path))
    except FleetqError as e:
        return [Finding(path, str(e), "invalid", tid)], None
    errs = taskmod.validate(data, file_id=tid)
    if errs:
        # An id that disagrees with the file name, and nothing else wrong: fsck can mend that one.
        kind = "id_mismatch" if not taskmod.validate(data) else "invalid"
        return [Finding(path, f"{path}: " + "; ".join(errs), kind, tid)], None
    t = Task(data=data, state=loc.state, path=path, blob=blob, raw=raw)
    if len(raw) > moves.MAX_NEW_BYTES and not any(k in data for k in taskmod.SYSTEM_FIELDS):
        return [Finding(path, f"{path}: {moves.too_big(len(raw))}", "invalid", tid)], None  # no room for a claim
    hit = redact.find_secret([data.get(k) for k in taskmod.USER_FIELDS])
    if hit:
        why = (
            f"{path}: looks like it carries a secret ({hit}); name an environment variable "
            f"set on the worker instead (e.g. $API_TOKEN): the repo is not a secret store"
        )
        return [Finding(path, why, "secret", tid)], t
    return [], t


def check_task_file(path: str, raw: bytes) -> list[Finding]:
    return examine_task(path, raw)[0]


def config_problems(path: str, data: Any) -> list[str]:
    """What is wrong with one parsed config file (the first structural error raises FleetqError)."""
    if path == MACHINES:
        parse_machines(data)
        return [f"{MACHINES}: {p}" for p in unknown_machine_keys(data)]
    if path == SCHEDULES:
        return schedules.problems(data)
    if path == SETTINGS:
        return settings_problems(data)
    if path == AGENTS:
        agents_from(data)
    return []


def check_config_file(path: str, raw: bytes) -> list[Finding]:
    if not path.startswith("config/") or not path.endswith((".yaml", ".yml")):
        return []
    try:
        found = config_problems(path, yamlio.to_plain(yamlio.load_safe(raw, path)))
    except FleetqError as e:
        found = [str(e)]
    return [Finding(path, why, "bad_config") for why in found]


KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
_B64 = re.compile(r"^[A-Za-z0-9+/]{16,}={0,2}$")


def check_signers_file(path: str, raw: bytes) -> list[Finding]:
    """Each line: ``principals [options] keytype base64-key [comment]`` (blank lines and # comments allowed)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return [Finding(path, f"{path}: not UTF-8 text", "bad_config")]
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        at = next((i for i, w in enumerate(words) if w in KEY_TYPES), None)
        if at is None or at == 0 or at + 1 >= len(words) or not _B64.match(words[at + 1]):
            found.append(
                Finding(
                    path,
                    f"{path}:{n}: expected 'principal [options] KEYTYPE BASE64KEY', "
                    f"e.g. 'alice@example.com ssh-ed25519 AAAA...'",
                    "bad_config",
                )
            )
    return found


def examine(path: str, raw: bytes, blob: str = "") -> tuple[list[Finding], Task | None]:
    """Any file of the tree: its problems, and the task it holds when it is a valid task file."""
    if path.startswith(f"{states.QUEUE}/"):
        return examine_task(path, raw, blob)
    if path == SIGNERS:
        return check_signers_file(path, raw), None
    if path.startswith(f"{ARCHIVED}/"):  # an archive index: report only (fsck quarantines no such file)
        return [Finding(path, why) for why in archindex.problems(path, raw)], None
    return check_config_file(path, raw), None


def check_file(path: str, raw: bytes) -> list[Finding]:
    return examine(path, raw)[0]


def check_blob(repo: GitRepo, path: str, blob: str) -> tuple[list[Finding], Task | None]:
    """``examine`` of a file in git, each finding carrying its blob (a many-MB blob is refused unread;
    an object that cannot be read, a corrupt loose file, is that file's one problem)."""
    try:
        size = repo.object_size(blob)
        raw = repo.read_blob(blob) if size <= yamlio.MAX_BYTES else b""
    except FleetqError as e:
        return [_unreadable(path, f"{path}: {e}", blob)], None
    if size > yamlio.MAX_BYTES:
        return [_unreadable(path, f"{path}: file is {size} bytes, over the {yamlio.MAX_BYTES} byte limit", blob)], None
    found, t = examine(path, raw, blob)
    return [replace(f, extra={**f.extra, "blob": blob}) for f in found], t


def _unreadable(path: str, why: str, blob: str) -> Finding:
    loc = states.location(path)
    kind = "invalid" if path.startswith(f"{states.QUEUE}/") else "bad_config"
    return Finding(path, why, kind, loc.task_id if loc else None, {"blob": blob})


def odd_entry(path: str, why: str) -> Finding:
    """A tree entry no reader can use (a gitlink, a name that is not UTF-8: ``Entry.odd``), anywhere in the tree."""
    path = shown(path)
    return Finding(path, f"{path}: {why}", "odd_entry")


def odd_entries(repo: GitRepo, tree: str | None, skip: frozenset[str] = frozenset()) -> list[Finding]:
    """``odd_entry`` of every such entry below ``tree`` but in the trees ``skip`` (fsck, validate: the
    readers skip them)."""
    return [odd_entry(p, why) for p, why in repo.odd_below(tree, skip=skip)] if tree else []


def places(paths: Iterable[str], into: dict[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Task id -> the files that hold it (badly placed files hold no task)."""
    where: dict[str, list[str]] = defaultdict(list) if into is None else into
    for p in paths:
        loc = states.location(p)
        if loc is not None:
            where[loc.task_id].append(p)
    return where


def duplicates(paths: Iterable[str]) -> list[Finding]:
    """A task id in more than one file (two states, or two done shards)."""
    return duplicated(places(paths))


def duplicated(where: dict[str, list[str]]) -> list[Finding]:
    """``duplicates`` of a ``places`` map."""
    return [
        Finding(min(ps), f"task {tid} is in {len(ps)} places: {', '.join(sorted(ps))}", "duplicate", tid)
        for tid, ps in sorted(where.items())
        if len(ps) > 1
    ]


# -- changes between two trees (the index, a commit, a pushed range) --


@dataclass(frozen=True)
class Change:
    """One file that differs between two trees (blob shas; None = absent)."""

    path: str
    old: str | None
    new: str | None


def diff_trees(repo: GitRepo, a: str | None, b: str | None, prefix: str = "") -> list[Change]:
    """Changed files between two trees, descending only into subtrees that differ."""
    if a == b:
        return []
    left = {e.name: e for e in repo.raw_entries(a)} if a else {}  # odd entries too: the hook refuses them
    right = {e.name: e for e in repo.raw_entries(b)} if b else {}
    out: list[Change] = []
    for name in sorted(left.keys() | right.keys()):
        x, y = left.get(name), right.get(name)
        if x is not None and y is not None and x == y:
            continue
        path = f"{prefix}{name}"
        sub_a = x.sha if x is not None and x.is_tree else None
        sub_b = y.sha if y is not None and y.is_tree else None
        if sub_a or sub_b:
            out += diff_trees(repo, sub_a, sub_b, path + "/")
        blob_a = x.sha if x is not None and not x.is_tree else None
        blob_b = y.sha if y is not None and not y.is_tree else None
        if blob_a != blob_b:
            out.append(Change(path, blob_a, blob_b))
    return out


def tree_snapshot(repo: GitRepo, tree: str | None) -> Snapshot:
    """A Snapshot of a bare tree (the index as a tree, or a commit's tree), for ``locate``."""
    snap = Snapshot(repo, None)
    snap.tree = tree
    return snap


location = states.location


def touched_ids(paths: Iterable[str]) -> set[str]:
    """Task ids whose files are among ``paths`` (badly placed files are not tasks)."""
    ids = set()
    for p in paths:
        loc = location(p)
        if loc is not None and states.valid_id(loc.task_id):
            ids.add(loc.task_id)
    return ids
