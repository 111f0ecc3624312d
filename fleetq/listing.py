"""Selecting tasks for the listing commands (queue, review, failures)."""
from __future__ import annotations

import datetime as dt

from .errors import UsageError
from .snapshot import Problem, Snapshot
from .states import DONE, STATES
from .task import Task

STATUS_ALIASES = {"in_progress": "claimed", "running": "claimed", "needs-human": "needs_human", "review": "needs_human"}


def normalise_status(status: str | None) -> str | None:
    if status is None:
        return None
    s = STATUS_ALIASES.get(status, status)
    if s not in STATES:
        raise UsageError(f"--status takes one of {', '.join(STATES)}, not '{status}'")
    return s


def newest_first(tasks: list[Task]) -> list[Task]:
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return sorted(tasks, key=lambda t: (t.created_at or epoch, t.id), reverse=True)


def select(snap: Snapshot, *, status: str | None = None, machine: str | None = None, limit: int = 0,
           problems: list[Problem] | None = None) -> list[Task]:
    """Tasks newest first; done tasks are read one day shard at a time, only as far as ``limit`` needs."""
    status = normalise_status(status)
    wanted = [status] if status else list(STATES)
    tasks = snap.tasks([s for s in wanted if s != DONE], problems)
    if machine:
        tasks = [t for t in tasks if machine in (t.claim.get("machine"), t.target, t.prefer)]
    if DONE in wanted:
        done: list[Task] = []
        for day in snap.done_days() + [None]:
            refs = [r for r in snap.refs(DONE, problems=problems, days=[day] if day else []) if (r.loc.day == day)]
            for r in refs:
                try:
                    t = snap.load(r)
                except Exception as e:  # noqa: BLE001 - InvalidTask; reported, never raised
                    if problems is not None:
                        problems.append(Problem(r.loc.path, str(e)))
                    continue
                if not machine or machine in (t.claim.get("machine"), t.target):
                    done.append(t)
            if limit and len(done) + len(tasks) >= limit and day is not None:
                break
        tasks += done
    tasks = newest_first(tasks)
    return tasks[:limit] if limit else tasks


def age(t: dt.datetime | None, now: dt.datetime | None = None) -> str:
    if t is None:
        return "-"
    secs = int(((now or dt.datetime.now(dt.timezone.utc)) - t).total_seconds())
    if secs < 0:
        return "0s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"
