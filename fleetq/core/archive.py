"""Archiving: done day shards older than a date leave the tree in one commit; history keeps them."""

from __future__ import annotations

import datetime as dt

from fleetq.core import states
from fleetq.core.cas import Plan, transact
from fleetq.core.clone import Fleet
from fleetq.core.snapshot import Snapshot
from fleetq.core.states import DONE
from fleetq.errors import UsageError


def archive(fleet: Fleet, before: str) -> list[str]:
    """Remove done/ day shards older than ``before`` (YYYY-MM-DD) from the tree; history keeps them."""
    try:
        ok = bool(states.DAY_RE.match(before)) and dt.date.fromisoformat(before) is not None
    except ValueError:
        ok = False
    if not ok:
        raise UsageError(f"--before takes a date YYYY-MM-DD, not '{before}'")

    def plan(snap: Snapshot) -> Plan | None:
        days = [d for d in snap.done_days() if d < before]
        if not days:
            return None
        p = Plan(subject=f"fleetq: archive done before {before}", value=days)
        count = 0
        for day in days:  # a whole day shard goes at once: one tree entry, not a path per task
            count += sum(1 for _ in snap.shard(day))
            p.changes[f"{states.QUEUE}/{DONE}/{day}"] = None
        p.trailers.append(("Fleetq-Transition", f"done->archived {count} tasks"))
        return p

    landed = transact(fleet, plan)
    return landed.value if landed else []
