"""A task's life, read from git history (the only history fleetq keeps)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from fleetq import yamlio
from fleetq.core import states
from fleetq.core.task import Task, fmt_time, parse_time
from fleetq.errors import FleetqError
from fleetq.git.repo import GitRepo
from fleetq.layout import TRACKING


@dataclass
class Event:
    sha: str
    when: str
    author: str
    machine: str
    transition: str  # e.g. pending->claimed, new->pending, done->archived
    subject: str

    def to_json(self) -> dict[str, str]:
        return self.__dict__.copy()


def _trailer(message: str, key: str) -> str:
    for line in message.splitlines():
        if line.startswith(f"{key}: "):
            return line[len(key) + 2 :].strip()
    return ""


def task_events(repo: GitRepo, task_id: str) -> list[Event]:
    """Every commit that touched the task's file, oldest first, with the move it made."""
    paths = [f":(glob){states.QUEUE}/*/{task_id}.yaml", f":(glob){states.QUEUE}/{states.DONE}/*/{task_id}.yaml"]
    events = []
    for entry in repo.log(paths, rev=TRACKING):
        removed = added = modified = None
        for status, _, path in entry.files:
            loc = states.location(path)
            if loc is None or loc.task_id != task_id:
                continue
            if status.startswith("D"):
                removed = loc.state
            elif status.startswith("A"):
                added = loc.state
            else:
                modified = loc.state
        if added and removed:
            move = f"{removed}->{added}"
        elif added:
            move = f"new->{added}"
        elif removed:
            move = f"{removed}->archived"
        else:
            move = f"{modified}->{modified} (edit)"
        events.append(
            Event(
                sha=entry.sha[:10],
                when=entry.when,
                author=entry.author,
                machine=_trailer(entry.message, "Fleetq-Machine") or "-",
                transition=move,
                subject=entry.message.splitlines()[0] if entry.message else "",
            )
        )
    return events


ADDED = "added.yaml"  # in the clone's state dir: task id -> when its file first came into the queue ("" unknown)


def date_undated(repo: GitRepo, rev: str | None, tasks: list[Task]) -> None:
    """Give each task with no (readable) ``created_at`` — a file written and committed by hand — the
    time of the commit that first added it to the queue, as ``added_at``, so "newest first" holds.

    At most one ``git log`` for all of them (none when every task is dated, as fleetq's own are),
    and each answer is kept in the clone (``ADDED``): a walk of a long history costs ~0.5 s per
    30,000 commits, ~70 ms with the commit-graph's changed-path filters (``fleetq maintenance``).
    Every task enters in pending/, so its pending path is asked for by name (literal paths keep
    those filters usable), with its path now for a file committed straight into another state.
    Best effort: without the history they stay undated.
    """
    undated = {t.id: t for t in tasks if t.created_at is None and t.added_at is None}
    if not undated or rev is None:
        return
    cache = repo.git_dir / "fleetq" / ADDED
    try:
        known = yamlio.read_file(cache)
    except FleetqError:
        known = None
    known = known if isinstance(known, dict) else {}
    ask = {i: t for i, t in undated.items() if i not in known}
    if ask:
        paths = {f"{states.QUEUE}/{states.PENDING}/{i}.yaml" for i in ask} | {t.path for t in ask.values()}
        try:
            entries = repo.log(sorted(paths), rev=rev)
        except FleetqError:
            return
        for entry in entries:  # oldest first: the first add of a task's file is when it came in
            for status, _, path in entry.files:
                loc = states.location(path)
                if loc is not None and loc.task_id in ask and status.startswith("A"):
                    known.setdefault(loc.task_id, fmt_time(dt.datetime.fromisoformat(entry.when)))
        for i in ask:
            known.setdefault(i, "")
        try:
            yamlio.write_file(cache, known)
        except FleetqError:
            pass  # a cache: failing to keep it only costs the next listing a walk
    for i, t in undated.items():
        t.added_at = parse_time(known.get(i))
