"""One push for the whole fleet: folded results and delegated claims (docs/design.md, "The claim protocol").

A worker advertises on its own heartbeat ref what it would otherwise push to ``main`` itself:
its finished runs (``results``, as its journal holds them: redacted, bounded in size) and its
free slots (``free``). Any worker's pass commit then also

- *folds* the advertised results of other live machines: each applies only while the task is
  still claimed by that (machine, attempt) at the head being planned on (``complete_plan``'s
  live-attempt rule); a stale one is left to its own worker's pass, which writes the late note;
- *delegates* claims to idle live machines with free slots: the claim names that machine and
  its attempt, plus ``by: <delegator>``; the named worker starts it on its next look
  (worker/fold.py), or hands it back at once when it cannot.

The plan functions here are pure, like :mod:`fleetq.core.passplan`: a lost race re-plans on
the new head, so nothing is applied twice.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fleetq.core import transitions
from fleetq.core.cas import Plan
from fleetq.core.matching import Seat
from fleetq.core.snapshot import Snapshot
from fleetq.core.states import CLAIMED, DONE, FAILED, NEEDS_HUMAN
from fleetq.core.task import Task
from fleetq.core.transitions import Completion
from fleetq.errors import InvalidTask

ADVERT_BYTES = 256 * 1024  # at most this much of results on one heartbeat ref (JSON size); the rest waits
OUTCOMES = (DONE, FAILED, NEEDS_HUMAN)
LIVE, APPLIED, STALE = "live", "applied", "stale"


@dataclass
class Advert:
    """What another live machine's fresh heartbeat offers this pass: results to fold, slots to fill."""

    machine: str
    results: list[Completion] = field(default_factory=list)
    seat: Seat | None = None  # None: delegate nothing to it (not idle, stopping, stale, old worker)
    slots: int = 0


def results_field(results: Iterable[Completion], limit: int = ADVERT_BYTES) -> list[dict[str, Any]]:
    """The ``results`` of a heartbeat: journal entries, oldest first, while they fit in ``limit`` bytes."""
    out: list[dict[str, Any]] = []
    size = 0
    for c in results:
        entry = {"id": c.task_id, "attempt": c.attempt, "outcome": c.outcome, "result": c.result}
        if c.retry_after is not None:
            entry["retry_after"] = c.retry_after
        try:
            n = len(json.dumps(entry, default=str))
        except (TypeError, ValueError):
            continue
        if size + n > limit:
            continue
        size += n
        out.append(entry)
    return out


def advertised(state: dict[str, Any]) -> list[Completion]:
    """The results a heartbeat's state advertises, typed (anything malformed is left out)."""
    raw = state.get("results")
    out: list[Completion] = []
    for e in raw if isinstance(raw, list) else []:
        if not isinstance(e, dict):
            continue
        tid, attempt, outcome, result = e.get("id"), e.get("attempt"), e.get("outcome"), e.get("result")
        retry = e.get("retry_after")
        if not isinstance(tid, str) or not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
            continue
        if outcome not in OUTCOMES or not isinstance(result, dict):
            continue
        if retry is not None and (isinstance(retry, bool) or not isinstance(retry, int | float) or retry < 0):
            retry = None
        out.append(Completion(tid, attempt, str(outcome), dict(result), retry))
    return out


def claims_of(snap: Snapshot, machine: str) -> list[Task]:
    """The tasks claimed by ``machine`` at this head."""
    return [t for t in snap.tasks([CLAIMED]) if t.claim.get("machine") == machine]


def standing(snap: Snapshot, machine: str, c: Completion) -> str:
    """Where ``machine``'s result ``c`` stands at this head: ``live`` (the claim is still there, to report),
    ``applied`` (the task moved on with this very result) or ``stale`` (moved on otherwise: reaped, cancelled)."""
    found = snap.locate(c.task_id)
    if not found:
        return STALE
    try:
        t = snap.load(found[0])
    except InvalidTask:  # a broken file: never folded; its own worker's report sets it aside
        return STALE
    if t.state == CLAIMED and t.claim.get("machine") == machine and t.claim.get("attempt") == c.attempt:
        return LIVE
    r = t.result
    return APPLIED if r.get("machine") == machine and r.get("attempt") == c.attempt else STALE


def fold_plan(snap: Snapshot, adverts: list[Advert], now: dt.datetime, skip: set[str]) -> tuple[Plan, dict[str, int]]:
    """Other machines' advertised results, applied only while their claim is live at this head
    (never a late note: that is their own worker's business). Also: how many each machine had folded."""
    p = Plan(value=[])
    folded: dict[str, int] = {}
    for a in adverts:
        live = [c for c in a.results if c.task_id not in skip and standing(snap, a.machine, c) == LIVE]
        if not live:
            continue
        copies = [Completion(c.task_id, c.attempt, c.outcome, dict(c.result), c.retry_after) for c in live]
        sub = transitions.complete_plan(snap, copies, a.machine, now)
        if sub is None:
            continue
        p.add(sub)
        for c in copies:
            skip.add(c.task_id)
            p.trailers.append(("Fleetq-Folded", f"{c.task_id} {a.machine} {c.attempt}"))
        folded[a.machine] = len(copies)
    return p, folded


def delegate_plan(
    snap: Snapshot,
    adverts: list[Advert],
    folded: dict[str, int],
    *,
    now: dt.datetime,
    grace: float,
    delegator: str,
    skip: set[str],
    problems: list | None = None,
) -> Plan:
    """Claims for idle live machines: up to ``slots − claimed by it at this head + folded now`` each,
    chosen by that machine's own seat (its capabilities, agents, target/prefer rules)."""
    p = Plan(value=[])
    held = Counter(t.claim.get("machine") for t in snap.tasks([CLAIMED]))  # one pass over claimed/, not one a machine
    for a in adverts:
        if a.seat is None:
            continue
        free = a.slots - held[a.machine] + folded.get(a.machine, 0)
        if free <= 0:
            continue
        c = transitions.claim_plan(
            snap, a.seat, free, now=now, grace=grace, machine=a.machine, problems=problems, skip=skip, by=delegator
        )
        if c is None:
            continue
        p.add(c)
        for t in c.value:
            skip.add(t.id)
            p.trailers.append(("Fleetq-Delegated", f"{t.id} {a.machine} {t.claim.get('attempt')}"))
        # tasks set aside while claiming for it count as touched too
        skip.update(v for k, v in c.trailers if k == "Fleetq-Task")
    return p
