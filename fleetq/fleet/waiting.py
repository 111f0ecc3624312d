"""Why is it waiting? For a pending task, what keeps each machine from taking it.

Each machine with a live worker is judged by the worker's own rule (``matching.blocker``)
on a seat built from its heartbeat (the agents it has installed, and the runs other live
machines still report); a machine with no live worker says so. Read-only: what `show` and
the Notes column of `queue` print.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from fleetq.core.config import FleetConfig
from fleetq.core.heartbeat import Beat
from fleetq.core.liveness import STOPPED
from fleetq.core.matching import Seat, blocker
from fleetq.core.snapshot import Snapshot
from fleetq.core.task import Task
from fleetq.fleet.placement import ago, beats_by_machine


@dataclass(frozen=True)
class Wait:
    machine: str
    reason: str
    ready: bool = False  # this machine may take it at its next pass


def _seats(cfg: FleetConfig, beats: Mapping[str, Beat], lease: float) -> dict[str, Seat | str]:
    """Per machine: the seat its live worker sits in, or why it has none."""
    live = {n: b for n, b in beats.items() if b.alive(lease)}
    out: dict[str, Seat | str] = {}
    for name in list(cfg.machines) + sorted(n for n in beats if n not in cfg.machines):
        b = beats.get(name)
        if b is None:
            out[name] = "no worker has ever run there"
        elif name not in live:
            stopped = "stopped" if b.state.get("state") == STOPPED else "silent"
            out[name] = f"no live worker ({stopped}; last heartbeat {ago(b.age)} ago)"
        else:
            agents = b.state.get("agents")
            elsewhere = {tid: other for other, ob in live.items() if other != name for tid in ob.running if tid}
            out[name] = Seat(
                cfg.machine(name),
                agents=set(agents) if isinstance(agents, list) else None,
                running_elsewhere=elsewhere,
            )
    return out


def waits(tasks: list[Task], snap: Snapshot, cfg: FleetConfig, beats: Mapping[str, Beat]) -> dict[str, list[Wait]]:
    """For each pending task among ``tasks`` (by id): every machine's reason, live machines first."""
    lease = float(cfg.get("lease") or 60)
    grace = float(cfg.get("prefer_grace") or 0)
    folded = beats_by_machine(cfg, dict(beats))
    seats = _seats(cfg, folded, lease)
    now = dt.datetime.now(dt.timezone.utc)
    out: dict[str, list[Wait]] = {}
    for t in tasks:
        if t.state != "pending":
            continue
        found = []
        for name, seat in seats.items():
            if isinstance(seat, str):
                found.append(Wait(name, seat))
                continue
            why = blocker(t, seat, snap, now, grace)
            if why is not None:
                found.append(Wait(name, why))
                continue
            b = folded[name]
            said = b.state.get("slots")
            slots = said if isinstance(said, int) else seat.spec.slots
            if len(b.running) >= slots:
                found.append(Wait(name, f"could run it, but all its {slots} slots are busy"))
            else:
                found.append(Wait(name, "may run it: its next pass claims it", ready=True))
        out[t.id] = sorted(found, key=lambda w: isinstance(seats[w.machine], str))
    return out


def summary(found: list[Wait]) -> str:
    """One short line for the Notes column: the reasons, each with the machines that give it."""
    if not found:
        return "waits: no machine is declared and no worker has run"
    if any(w.ready for w in found):
        return ""
    by: dict[str, list[str]] = {}
    for w in found:
        by.setdefault(w.reason, []).append(w.machine)
    return "waits: " + "; ".join(f"{', '.join(ms)}: {why}" for why, ms in by.items())
