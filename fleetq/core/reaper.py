"""Orphaned claims: tasks claimed by a machine that stopped beating go back to pending (or failed)."""

from __future__ import annotations

from collections.abc import Mapping

from fleetq.core import liveness
from fleetq.core.cas import Plan, transact
from fleetq.core.clone import Fleet
from fleetq.core.heartbeat import Beat, Observer
from fleetq.core.snapshot import Snapshot
from fleetq.core.states import CLAIMED
from fleetq.core.task import now_utc
from fleetq.core.transitions import handback_plan

# why, machine, attempt of an orphaned claim. A claim record without an attempt (a hand edit) gives 0,
# which, like None, makes handback_plan skip the attempt check.
Orphan = tuple[str, str, int]


def find_orphans(
    snap: Snapshot,
    observer: Observer,
    lease: float,
    *,
    me: str,
    fetch: bool = True,
    forced: bool = False,
    beats: Mapping[str, Beat] | None = None,
) -> dict[str, Orphan]:
    """task id -> (why, machine, attempt) of each orphaned claim.

    A worker's heartbeat announces its own lease and the longer one counts (core/liveness.py),
    unless ``forced`` (`reap --lease S --force`: a person insists). This machine's own claims
    are the worker's business. ``beats``: the heartbeats already read (else read here)."""
    if beats is None:
        beats = observer.read(fetch=fetch)
    out: dict[str, Orphan] = {}
    for t in snap.tasks([CLAIMED]):
        m = t.claim.get("machine")
        if not m or m == me:
            continue
        b = beats.get(m)
        if b is None:
            silent = observer.silent_for(m)
            if silent > lease:
                out[t.id] = (
                    f"{m} never sent a heartbeat in {silent:.0f}s (lease {lease:g}s)",
                    m,
                    t.claim.get("attempt") or 0,
                )
        elif not liveness.alive(b.state, b.age, lease, own_lease=not forced):
            held = lease if forced else max(lease, liveness.announced_lease(b.state) or 0.0)
            why = (
                "stopped" if b.state.get("state") == liveness.STOPPED else f"silent for {b.age:.0f}s (lease {held:g}s)"
            )
            out[t.id] = (f"{m} {why}", m, t.claim.get("attempt") or 0)
    return out


def reap_plan(snap: Snapshot, orphans: Mapping[str, Orphan], machine: str) -> Plan:
    p = Plan(value=[])
    for tid, (why, by, attempt) in orphans.items():
        sub = handback_plan(snap, {tid: (by, attempt)}, machine, f"orphaned: {why}", now_utc())
        p.add(sub)
        p.value += sub.value
    p.subject = f"fleetq: {machine} reaps {', '.join(v[0] for v in p.value)}"
    return p


def reap(
    fleet: Fleet, lease: float, observer: Observer | None = None, *, forced: bool = False
) -> list[tuple[str, str, str]]:
    """One reaping pass: hand orphaned claims back, in a commit that says why for each."""
    observer = observer or Observer(fleet)
    snap = fleet.snapshot()
    orphans = find_orphans(snap, observer, lease, me=fleet.machine, forced=forced)
    if not orphans:
        return []
    landed = transact(fleet, lambda s: reap_plan(s, orphans, fleet.machine))
    return landed.value if landed else []
