"""A worker's pass as one commit (docs/design.md, "The claim protocol").

Each pass of ``fleetq work`` reports its finished results, hands back the runs
it killed, reaps orphaned claims and claims up to its free slots, all in one
commit and one push. :func:`pass_plan` assembles that commit on a snapshot;
``transact`` calls it again on a fresh head after a lost race. It is pure: it
reads the snapshot and its arguments, and writes nothing but ``problems``.
"""

from __future__ import annotations

import datetime as dt

from fleetq.core import delegation, transitions
from fleetq.core.archive import TRANSITION, archive_plan
from fleetq.core.cas import Plan
from fleetq.core.matching import Seat
from fleetq.core.reaper import reap_plan
from fleetq.core.snapshot import Problem, Snapshot

# Why a worker hands back the runs it killed: it is shutting down, or it lost its lease.
SHUTDOWN = "worker shut down"
FENCED = "its worker lost the lease (fenced)"

VERBS = {
    "pending->claimed": "claims",
    "claimed->pending": "hands back",
    "claimed->failed": "reports",
    "claimed->done": "reports",
    "claimed->needs_human": "reports",
    "pending->needs_human": "sets aside",
}


def pass_plan(
    snap: Snapshot,
    *,
    machine: str,
    results: list[transitions.Completion],
    handbacks: dict[str, tuple[str | None, int | None]],
    orphans: dict[str, tuple[str, str, int]],
    seat: Seat,
    free: int,
    grace: float,
    shutdown: bool,
    problems: list[Problem],
    now: dt.datetime,
    archive_before: str | None = None,
    others: list[delegation.Advert] | None = None,
    known: set[str] | None = None,
    declined: dict[str, tuple[str, int, str]] | None = None,
) -> Plan:
    """One pass's commit: report ``results``, hand back ``handbacks``, reap ``orphans``, claim up to ``free``.

    ``value`` is the list of claimed tasks (empty when it claims nothing).
    ``shutdown`` says why the handbacks go back (else: the lease was lost).
    ``problems`` is cleared and filled with the bad task files the claim skipped or set aside (a task
    whose claim or report cannot be written goes to needs_human with a note: transitions.set_aside).
    ``others``: other live machines' adverts, whose results are folded in and whose free slots get
    delegated claims (core/delegation.py). ``known``: the tasks this worker runs or has journaled; a
    claim of ours at this head that is none of them (delegated to us, not started yet) takes a slot.
    """
    p = Plan(value=[])
    for r in results:  # folded into main by another machine's push meanwhile: nothing left to report
        if delegation.standing(snap, machine, r) == delegation.APPLIED:
            r.status = "folded"
    results = [r for r in results if r.status != "folded"]
    if results:
        done = transitions.complete_plan(snap, results, machine, now)
        if done is not None:
            p.add(done)
    if handbacks:
        why = SHUTDOWN if shutdown else FENCED
        p.add(transitions.handback_plan(snap, handbacks, machine, why, now, spend=False))
    for tid, (by, attempt, why) in (declined or {}).items():  # delegated claims we cannot take: back at once
        p.add(transitions.handback_plan(snap, {tid: (by, attempt)}, machine, why, now, spend=False))
    if free:
        problems.clear()
    if orphans:
        try:
            p.add(reap_plan(snap, orphans, machine))
        except transitions.Unwritable as e:  # the reap waits for a person; reports and claims still land
            problems.append(Problem(str(e).split(": ", 1)[0], f"cannot reap: {e}"))
    touched = {v for k, v in p.trailers if k == "Fleetq-Task"}  # one change per task file per commit
    folded: dict[str, int] = {}
    if others:
        fold, folded = delegation.fold_plan(snap, others, now, touched)
        p.add(fold)
    if free and known is not None:  # claims delegated to us since the pass began fill our slots first
        # only claims made for us by others: one of our own that ran and ended since the pass began is
        # in neither ``known`` nor a claim of someone else's making (counting it once let a pass claim
        # nothing while tasks were pending, and a --burst worker then exited with them unclaimed)
        made = [t for t in delegation.claims_of(snap, machine) if t.claim.get("by") not in (None, machine)]
        waiting = {t.id for t in made} - known - set(orphans) - set(handbacks)
        waiting -= set(declined or {})
        free = max(0, free - len(waiting))
    if free:
        c = transitions.claim_plan(
            snap, seat, free, now=now, grace=grace, machine=machine, problems=problems, skip=touched
        )
        if c is not None:
            p.add(c)
            p.value = c.value
            touched.update(t.id for t in c.value)
            touched.update(v for k, v in c.trailers if k == "Fleetq-Task")
    if others:
        p.add(delegation.delegate_plan(snap, others, folded, now=now, grace=grace, delegator=machine, skip=touched))
    if archive_before:  # done days older than this leave the tree (core/archive.py); none left: nothing
        arch = archive_plan(snap, archive_before)
        if arch is not None:
            p.add(arch)
    p.subject = subject(machine, p.trailers)
    return p


def subject(machine: str, trailers: list[tuple[str, str]]) -> str:
    """`fleetq: m reports a, b; claims c` from the plan's trailers."""
    groups: dict[str, list[str]] = {}
    tid = ""
    for key, value in trailers:
        if key == "Fleetq-Task":
            tid = value
        elif key == "Fleetq-Transition" and value.startswith(TRANSITION + " "):
            groups.setdefault("archives", []).append(value.split()[1] + " done tasks")
        elif key == "Fleetq-Transition":
            groups.setdefault(VERBS.get(value, "updates"), []).append(tid)
    parts = [
        f"{verb} {', '.join(ids[:3])}" + (f" (+{len(ids) - 3})" if len(ids) > 3 else "") for verb, ids in groups.items()
    ]
    return f"fleetq: {machine} " + ("; ".join(parts) or "updates")
