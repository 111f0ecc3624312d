"""The compare-and-swap loop every queue change goes through (docs/design.md, "The claim protocol").

fetch -> plan on the fetched head -> commit in-process -> push. A rejected push
is a lost race: fetch again, plan again on the new head (the plan function
re-checks that each transition is still legal), and retry with jittered
exponential backoff. Never rebase or merge: a plan is always recomputed.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fleetq.core.clone import Fleet
from fleetq.core.snapshot import Snapshot
from fleetq.errors import Conflict
from fleetq.git.repo import PushRejected
from fleetq.layout import TRACKING

MAX_TRIES = 25
BASE_DELAY = 0.02
MAX_DELAY = 0.5


@dataclass
class Plan:
    """What one commit changes, and what the caller gets back when it lands."""

    changes: dict[str, bytes | None] = field(default_factory=dict)
    subject: str = ""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    value: Any = None
    sign: bool = False

    def message(self, machine: str) -> str:
        lines = [self.subject or "fleetq: update", "", f"Fleetq-Machine: {machine}"]
        lines += [f"{k}: {v}" for k, v in self.trailers]
        return "\n".join(lines) + "\n"

    def add(self, other: Plan) -> None:
        self.changes.update(other.changes)
        self.trailers += other.trailers


@dataclass
class Stats:
    """Counters a benchmark or the worker log can read."""

    pushes: int = 0
    rejected: int = 0
    fetches: int = 0


STATS = Stats()
STATS_ENV = "FLEETQ_STATS_FILE"


def _dump_stats(path: str, pid: int) -> None:
    """Write STATS as JSON (``{pid}`` in the path is this process's id); a forked child writes nothing."""
    if os.getpid() != pid:
        return
    try:
        with open(path.replace("{pid}", str(pid)), "w") as f:
            json.dump(dataclasses.asdict(STATS), f)
    except OSError:
        pass  # a benchmark aid: never fail an exit over it


if os.environ.get(STATS_ENV):  # opt-in: benchmarks read rejected pushes / pushes from worker processes
    atexit.register(_dump_stats, os.environ[STATS_ENV], os.getpid())


def backoff(attempt: int) -> float:
    return random.uniform(0, min(MAX_DELAY, BASE_DELAY * (2**attempt)))


def transact(
    fleet: Fleet,
    make_plan: Callable[[Snapshot], Plan | None],
    *,
    fetch: bool = True,
    tries: int = MAX_TRIES,
) -> Plan | None:
    """Run ``make_plan`` on the remote head and push its commit, retrying lost races.

    Returns the plan that landed, or the (empty) plan / None when there was
    nothing to do. ``fetch=False`` plans on the last fetched head first (the
    caller just fetched); a rejection always fetches.
    """
    repo = fleet.repo
    pending: tuple[str, Plan] | None = None
    for attempt in range(tries):
        with fleet.lock:
            if fetch or attempt:
                head = repo.fetch()
                STATS.fetches += 1
            else:
                head = repo.rev(TRACKING)
            if pending and head and repo.is_ancestor(pending[0], head):
                return pending[1]  # the "rejected" push had landed after all
            snap = Snapshot(repo, head)
            plan = make_plan(snap)
            if plan is None or not plan.changes:
                return plan
            tree = repo.apply(snap.tree, plan.changes)
            message = plan.message(fleet.machine)
            parents = [head] if head else []
            sha = (
                repo.commit_signed(tree, parents, message)
                if plan.sign
                else repo.commit(tree, parents, message, fleet.machine)
            )
            try:
                STATS.pushes += 1
                repo.push(sha)
                return plan
            except PushRejected:
                STATS.rejected += 1
                pending = (sha, plan)
        time.sleep(backoff(attempt))
    raise Conflict(f"gave up after {tries} lost races for the remote; the queue is busy, try again")
