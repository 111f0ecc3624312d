"""Checking task and config files wherever they come from: a working tree, the index, a pushed tree."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from fleetq import yamlio
from fleetq.core import states
from fleetq.core import task as taskmod
from fleetq.core.config import MACHINES, SETTINGS, parse_machines
from fleetq.core.snapshot import Problem, Snapshot
from fleetq.errors import FleetqError, InvalidTask
from fleetq.git.repo import GitRepo
from fleetq.layout import SIGNERS
from fleetq.run import redact


@dataclass(frozen=True)
class Finding:
    path: str
    reason: str

    __str__ = Problem.__str__


def check_task_file(path: str, raw: bytes) -> list[Finding]:
    try:
        loc = states.parse_path(path)
    except states.BadPath as e:
        return [Finding(path, str(e))]
    if loc is None:
        return []
    if not states.valid_id(loc.task_id):
        return [Finding(path, "file name is not a safe task id")]
    try:
        t = taskmod.parse(raw, state=loc.state, path=path, file_id=loc.task_id)
    except InvalidTask as e:
        return [Finding(path, str(e))]
    hit = redact.find_secret([t.data.get(k) for k in taskmod.USER_FIELDS])
    if hit:
        return [
            Finding(
                path,
                f"{path}: looks like it carries a secret ({hit}); name an environment variable "
                f"set on the worker instead (e.g. $API_TOKEN): the repo is not a secret store",
            )
        ]
    return []


def check_config_file(path: str, raw: bytes) -> list[Finding]:
    if not path.startswith("config/") or not path.endswith((".yaml", ".yml")):
        return []
    try:
        data = yamlio.to_plain(yamlio.load_safe(raw, path))
        if path == MACHINES:
            parse_machines(data)
        elif path == SETTINGS and data is not None and not isinstance(data, dict):
            raise FleetqError(f"{path}: expected a mapping of settings")
        elif path == SETTINGS and data and not isinstance(data.get("require_signed", False), bool):
            raise FleetqError(f"{path}: require_signed must be true or false")
    except FleetqError as e:
        return [Finding(path, str(e))]
    return []


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
        return [Finding(path, f"{path}: not UTF-8 text")]
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
                )
            )
    return found


def check_file(path: str, raw: bytes) -> list[Finding]:
    if path.startswith(f"{states.QUEUE}/"):
        return check_task_file(path, raw)
    if path == SIGNERS:
        return check_signers_file(path, raw)
    return check_config_file(path, raw)


def duplicates(paths: Iterable[str]) -> list[Finding]:
    """A task id in more than one file (two states, or two done shards)."""
    where: dict[str, list[str]] = defaultdict(list)
    for p in paths:
        try:
            loc = states.parse_path(p)
        except states.BadPath:
            continue
        if loc is not None:
            where[loc.task_id].append(p)
    return [
        Finding(ps[0], f"task {tid} is in {len(ps)} places: {', '.join(sorted(ps))}")
        for tid, ps in sorted(where.items())
        if len(ps) > 1
    ]


def check_files(files: dict[str, bytes]) -> list[Finding]:
    found: list[Finding] = []
    for path, raw in sorted(files.items()):
        found += check_file(path, raw)
    return found + duplicates(files)


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
    left = {e.name: e for e in repo.entries(a)} if a else {}
    right = {e.name: e for e in repo.entries(b)} if b else {}
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
