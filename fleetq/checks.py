"""Checking task and config files wherever they come from: a working tree, the index, a pushed tree."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from . import states, task as taskmod, yamlio
from .config import MACHINES, SETTINGS, parse_machines
from .errors import FleetqError, InvalidTask


@dataclass(frozen=True)
class Finding:
    path: str
    reason: str

    def __str__(self) -> str:
        return self.reason if self.reason.startswith(self.path) else f"{self.path}: {self.reason}"


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
        taskmod.parse(raw, state=loc.state, path=path, file_id=loc.task_id)
    except InvalidTask as e:
        return [Finding(path, str(e))]
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
    except FleetqError as e:
        return [Finding(path, str(e))]
    return []


def check_file(path: str, raw: bytes) -> list[Finding]:
    if path.startswith(f"{states.QUEUE}/"):
        return check_task_file(path, raw)
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
    return [Finding(ps[0], f"task {tid} is in {len(ps)} places: {', '.join(sorted(ps))}")
            for tid, ps in sorted(where.items()) if len(ps) > 1]


def check_files(files: dict[str, bytes]) -> list[Finding]:
    found: list[Finding] = []
    for path, raw in sorted(files.items()):
        found += check_file(path, raw)
    return found + duplicates(files)
