"""Which pending tasks this machine may run, and in what order (docs/design.md, "Matchmaking").

Requirements are a hard filter (type and `requires` among the capabilities,
`target`, `prefer` within its grace period, dependencies done, agent installed,
`not_before` passed); rank is priority, then age.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from fleetq.core.config import MachineSpec
from fleetq.core.snapshot import Snapshot
from fleetq.core.states import DONE
from fleetq.core.task import Task

AGENT_TYPES = frozenset({"agent_run"})


@dataclass
class Seat:
    """This machine as matchmaking sees it."""

    spec: MachineSpec
    agents: set[str] | None = None  # installed agents; None = trust machines.yaml
    first_seen: dict[str, dt.datetime] = field(default_factory=dict)  # task id -> when this machine first saw it
    # task id -> the machine whose live heartbeat still lists a run of it (a cancel, then a re-queue, while
    # that run is being stopped): not claimable until it is gone, so two runs never overlap
    running_elsewhere: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> set[str]:
        return {self.spec.name, *self.spec.aliases}

    def installed(self) -> set[str]:
        return set(self.spec.agents) if self.agents is None else self.agents


def lacking(spec: MachineSpec, requires: Iterable[str]) -> str | None:
    """``lacks capability gpu`` when ``spec`` misses any of ``requires`` (None: it has them all)."""
    missing = [c for c in requires if c not in spec.capabilities]
    if not missing:
        return None
    return f"lacks {'capability' if len(missing) == 1 else 'capabilities'} {', '.join(missing)}"


def blocker(task: Task, seat: Seat, snap: Snapshot, now: dt.datetime, grace: float) -> str | None:
    """Why ``seat`` may not run ``task`` now (None: it may)."""
    spec = seat.spec
    if task.id in seat.running_elsewhere:
        return f"a run of it is still stopping on {seat.running_elsewhere[task.id]}"
    if task.target and task.target not in seat.names:
        return f"pinned to {task.target}"
    if not spec.can_run(task.type):
        return f"type {task.type} is not among {spec.name}'s capabilities"
    lacks = lacking(spec, task.requires)
    if lacks:
        return lacks
    if task.prefer and task.prefer not in seat.names:
        seen = seat.first_seen.get(task.id) or task.created_at or now
        # Judged by this machine's own clock where it can be (first sighting), so skew does not matter.
        if (now - seen).total_seconds() < grace:
            return f"prefers {task.prefer} (grace {grace:g}s)"
    if task.type in AGENT_TYPES:
        installed = seat.installed()
        if task.agent and task.agent not in installed:
            return f"agent {task.agent} is not installed here"
        if not task.agent and not installed:
            return "no agent installed here"
    nb = task.not_before
    if nb and now < nb:
        return f"waits until {nb:%Y-%m-%d %H:%M:%S}Z"
    for dep in task.depends_on:
        state = snap.state_of(dep)
        if state != DONE:
            return f"waits for {dep} ({state or 'missing'})"
    return None


def order_key(task: Task) -> tuple:
    created = task.created_at
    return (-task.priority, created.timestamp() if created else 0.0, task.id)


def choose(tasks: Iterable[Task], seat: Seat, snap: Snapshot, k: int, now: dt.datetime, grace: float) -> list[Task]:
    """Up to ``k`` tasks this seat may run, best first."""
    if k <= 0:
        return []
    picked: list[Task] = []
    for t in sorted(tasks, key=order_key):
        if blocker(t, seat, snap, now, grace) is None:
            picked.append(t)
            if len(picked) >= k:
                break
    return picked
