"""Archiving: done day shards older than a date leave the tree in one commit; history keeps them.

By hand (`fleetq archive --before DATE`: :func:`archive`) or by itself: every worker checks,
from the shard names alone and at most every ``CHECK_EVERY`` seconds (:class:`AutoArchive`),
whether a done day is older than ``keep_done_days`` (config/fleet.yaml, default 14; 0: never),
and then adds :func:`archive_plan` to its pass's one commit (core/passplan.py). The plan is
recomputed on every head the compare-and-swap loop tries, so when another worker archived
first there is nothing left to archive: it happens once fleet-wide. Each archived shard leaves
its ids in ``archived/<day>.ids`` (core/archindex.py) for prefix lookups and `fleetq show`.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Any

from fleetq.core import archindex, history, states
from fleetq.core import task as taskmod
from fleetq.core.cas import Plan, transact
from fleetq.core.clone import Fleet
from fleetq.core.snapshot import Snapshot
from fleetq.core.states import DONE
from fleetq.errors import FleetqError, NotFound, UsageError
from fleetq.git.repo import GitRepo
from fleetq.layout import ARCHIVED

log = logging.getLogger("fleetq.core.archive")
TRANSITION = "done->archived"  # the trailer reads `Fleetq-Transition: done->archived N tasks`
CHECK_EVERY = 600.0  # seconds between a worker's looks at the shard names (and one at start)


def archive_plan(snap: Snapshot, before: str) -> Plan | None:
    """Remove every done day shard older than ``before`` (YYYY-MM-DD) and index its ids; None: nothing to do."""
    days = [d for d in snap.done_days() if d < before]
    if not days:
        return None
    p = Plan(subject=f"fleetq: archive done before {before}", value=days)
    index: dict[str, list[str]] = {day: [] for day in days}  # index files of these days already there
    for day, name, _ in snap.archive_index():
        if day in index:
            index[day].append(name)
    count = 0
    for day in days:  # a whole day shard goes at once: one tree entry, not a path per task
        ids = [r.id for r in snap.shard(day)]
        count += len(ids)
        p.changes[f"{states.QUEUE}/{DONE}/{day}"] = None
        old = snap.archived_ids(day) if index[day] else set()  # a day archived before, that grew again
        for name in index[day]:
            p.changes[f"{ARCHIVED}/{name}"] = None
        for part, raw in enumerate(archindex.render(day, old | set(ids))):
            p.changes[archindex.path(day, part)] = raw
    p.trailers.append(("Fleetq-Transition", f"{TRANSITION} {count} tasks"))
    return p


def archive(fleet: Fleet, before: str) -> list[str]:
    """Remove done/ day shards older than ``before`` (YYYY-MM-DD) from the tree; history keeps them."""
    try:
        ok = bool(states.DAY_RE.match(before)) and dt.date.fromisoformat(before) is not None
    except ValueError:
        ok = False
    if not ok:
        raise UsageError(f"--before takes a date YYYY-MM-DD, not '{before}'")
    landed = transact(fleet, lambda snap: archive_plan(snap, before))
    return landed.value if landed else []


def cutoff(keep_days: int, now: dt.datetime) -> str:
    """The first day kept: shards of earlier days are older than ``keep_days`` days."""
    return (now.date() - dt.timedelta(days=keep_days)).isoformat()


def landed_count(plan: Plan | None) -> int | None:
    """How many tasks a landed plan archived (None: it archived nothing)."""
    for key, value in plan.trailers if plan else []:
        if key == "Fleetq-Transition" and value.startswith(f"{TRANSITION} "):
            return int(value.split()[1])
    return None


class AutoArchive:
    """A worker's look at whether its pass should archive: the shard names only, at most every ``every`` s."""

    def __init__(self, every: float = CHECK_EVERY) -> None:
        self.every = every
        self.next_at = 0.0  # monotonic; 0: at start
        self.off = False  # the remote's hook refused a pass that archived: never again in this process

    def due(self, snap: Snapshot, keep_days: int | None, now: dt.datetime) -> str | None:
        """The cutoff day when a done shard is older than ``keep_days`` (0: never; the setting is typed by
        config.SETTING_RULES, a wrong value reads as its default)."""
        if self.off or time.monotonic() < self.next_at:
            return None
        self.next_at = time.monotonic() + self.every
        if not keep_days:
            return None
        before = cutoff(keep_days, now)
        days = snap.done_days()
        return before if days and days[-1] < before else None

    def refused(self, before: str | None) -> None:
        """The pass that carried an archive was refused by the remote's hook: stop archiving, say so once."""
        if before is not None and not self.off:
            self.off = True
            log.error("auto-archive is off in this worker: the remote refused a pass that archived done days")


# -- an archived task, for `fleetq show` --


@dataclass
class Archived:
    """A task archived out of the tree: where its last file is in history, and that file parsed."""

    id: str
    day: str
    commit: str | None  # the archive commit (None: not in this clone's history)
    when: str
    task: taskmod.Task | None

    @property
    def last_path(self) -> str:
        return states.task_path(DONE, self.id, self.day)

    def git_show(self) -> str | None:
        return f"git show {self.commit[:10]}^:{self.last_path}" if self.commit else None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = self.task.to_json() if self.task is not None else {"id": self.id}
        doc["state"] = "archived"
        doc["archived"] = {"day": self.day, "commit": self.commit, "at": self.when, "last_file": self.git_show()}
        return doc


def archived_id(snap: Snapshot, given: str) -> tuple[str, str]:
    """(id, day) of the archived task ``given`` names: an id or a unique prefix in the index; an exact id
    that is not in it (archived before there was an index) is itself, with no day: its history may know it."""
    try:
        return snap.find_archived(given)
    except NotFound:
        if not states.valid_id(given):
            raise
        return given, ""


def find(repo: GitRepo, snap: Snapshot, given: str) -> Archived:
    """The archived task ``given`` names (:func:`archived_id`). NotFound when neither the index nor
    history knows it."""
    tid, day = archived_id(snap, given)
    events = [e for e in history.task_events(repo, tid) if e.transition == f"{DONE}->archived"]
    commit = repo.rev(events[-1].sha) if events else None
    if not day and commit is None:
        raise NotFound(f"no task with id or prefix '{given}' (in the tree or archived)")
    found = Archived(tid, day, commit, events[-1].when if events else "", None)
    if commit is not None:
        found.day, found.task = _last_file(repo, commit, tid, day)
    return found


def _last_file(repo: GitRepo, commit: str, tid: str, day: str) -> tuple[str, taskmod.Task | None]:
    """(day, task) of the file the archive commit removed: read from its parent's tree."""
    parent = repo.rev(f"{commit}^")
    parent_snap = Snapshot(repo, parent) if parent else None
    if parent_snap is None:
        return day, None
    for ref in parent_snap.locate(tid):
        if ref.loc.state == DONE and (not day or ref.loc.day == day):
            try:
                return ref.loc.day or day, parent_snap.load(ref)
            except FleetqError:
                return ref.loc.day or day, None
    return day, None
