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
    """Counters a benchmark, the worker log and its heartbeat read: pushes of main (``pushes`` tried,
    ``landed``, ``rejected`` as lost races) and of this machine's own refs (heartbeat: ``own_pushes``
    tried, ``own_landed``)."""

    pushes: int = 0
    rejected: int = 0
    fetches: int = 0
    landed: int = 0
    own_pushes: int = 0
    own_landed: int = 0
    push_s: float = 0.0  # a moving average of one try's wall time (fetch, plan, push): the worker's deference step

    def timed(self, seconds: float) -> None:
        self.push_s = seconds if not self.push_s else 0.7 * self.push_s + 0.3 * seconds

    def counters(self) -> dict[str, int]:
        """The push counters as a heartbeat carries them."""
        return {
            "main_tried": self.pushes,
            "main_landed": self.landed,
            "own_tried": self.own_pushes,
            "own_landed": self.own_landed,
        }


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
    wait: Callable[[int], float] | None = None,
) -> Plan | None:
    """Run ``make_plan`` on the remote head and push its commit, retrying lost races.

    Returns the plan that landed, or the (empty) plan / None when there was
    nothing to do. ``fetch=False`` plans on the last fetched head first (the
    caller just fetched); a rejection always fetches. ``wait(n)``: the sleep after the n-th lost race
    (default: jittered exponential backoff; the worker's grows with the number of other workers).
    """
    repo = fleet.repo
    pending: tuple[str, Plan] | None = None
    for attempt in range(tries):
        t0 = time.monotonic()
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
                STATS.landed += 1
                STATS.timed(time.monotonic() - t0)
                return plan
            except PushRejected:
                STATS.rejected += 1
                STATS.timed(time.monotonic() - t0)
                pending = (sha, plan)
        time.sleep(backoff(attempt) if wait is None else wait(attempt))
    raise Conflict(f"gave up after {tries} lost races for the remote; the queue is busy, try again")
