"""The queue's core API: create, claim, complete, resolve, cancel, reap, archive.

Each call builds a plan function for ``cas.transact``: it is re-run on every
fetched head, so a transition is re-checked after every lost race and applied
only while it is still legal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fleetq.core import states
from fleetq.core import task as taskmod
from fleetq.core.cas import Plan, transact
from fleetq.core.clone import Fleet
from fleetq.core.matching import Seat, choose
from fleetq.core.moves import Unwritable, _note, check_new_size, move, ref_of, set_aside, trail
from fleetq.core.snapshot import Problem, Snapshot
from fleetq.core.states import CLAIMED, DONE, FAILED, NEEDS_HUMAN, PENDING
from fleetq.core.task import Task, fmt_time, now_utc
from fleetq.errors import Conflict, InvalidTask, UsageError


def _subject(verb: str, ids: list[str]) -> str:
    shown = ", ".join(ids[:4]) + (f" (+{len(ids) - 4})" if len(ids) > 4 else "")
    return f"fleetq: {verb} {shown}"


# -- create --


def create(fleet: Fleet, datas: list[dict[str, Any]], *, sign: bool = False) -> list[str]:
    """Add new pending tasks (validated; an id already used anywhere is refused)."""
    for d in datas:
        errs = taskmod.validate(d)
        if errs:
            raise InvalidTask(f"task {d.get('id')!r}: " + "; ".join(errs))
    ids = [d["id"] for d in datas]
    if len(set(ids)) != len(ids):
        raise UsageError("duplicate ids in one submission")
    bodies = {d["id"]: taskmod.render_new(d) for d in datas}
    for tid, body in bodies.items():
        check_new_size(tid, body)

    def plan(snap: Snapshot) -> Plan:
        p = Plan(subject=_subject("add", ids), value=ids, sign=sign)
        for d in datas:
            if snap.exists(d["id"]):
                raise Conflict(f"a task with id '{d['id']}' already exists")
            p.changes[states.task_path(PENDING, d["id"])] = bodies[d["id"]]
            p.trailers += trail(d["id"], "new", PENDING)
        return p

    transact(fleet, plan)
    return ids


def create_raw(fleet: Fleet, task_id: str, raw: bytes) -> bool:
    """Queue a task file as written (a person's bytes, comments and all) unless its id exists."""
    check_new_size(task_id, raw)

    def plan(snap: Snapshot) -> Plan | None:
        if snap.exists(task_id):
            return None
        return Plan(
            changes={states.task_path(PENDING, task_id): raw},
            subject=_subject("add", [task_id]),
            trailers=trail(task_id, "new", PENDING),
            value=True,
            sign=signs(fleet),
        )

    landed = transact(fleet, plan)
    return bool(landed and landed.value)


def signs(fleet: Fleet) -> bool:
    """Whether this clone's git is set up to sign commits (then fleetq signs what a person submits)."""
    return fleet.repo.config_get("commit.gpgsign") == "true"


def create_if_absent(fleet: Fleet, data: dict[str, Any]) -> bool:
    """Create a task unless its id exists (schedules: a derived id makes a fire happen once)."""
    return create_raw(fleet, data["id"], taskmod.render_new(data))


# -- claim --


def claim_plan(
    snap: Snapshot,
    seat: Seat,
    k: int,
    *,
    now: dt.datetime,
    grace: float,
    machine: str,
    problems: list | None = None,
    skip: set[str] | None = None,
    by: str | None = None,
) -> Plan | None:
    """Claim up to ``k`` pending tasks; ``skip``: ids this commit already changes (a late note on a
    task that went back to pending: claiming it too would write over that change); ``by``: the
    delegator of a claim made for ``machine`` by another machine (core/delegation.py)."""
    pending = snap.tasks([PENDING], problems)
    p = Plan(value=[])
    seen: set[str] = set(skip or ())  # claimed or set aside: out of the next choice
    while len(p.value) < k:
        # A task that is also in another state (hand edits, a bad merge) is fsck's business, never run again.
        rest = [t for t in pending if t.id not in seen]
        picked = [t for t in choose(rest, seat, snap, k - len(p.value), now, grace) if len(snap.locate(t.id)) == 1]
        aside = False
        for t in picked:
            seen.add(t.id)
            attempt = t.attempts + 1
            claim = {"machine": machine, "at": fmt_time(now), "attempt": attempt, **({"by": by} if by else {})}
            fields = {"attempts": attempt, "claim": claim}
            try:
                p.changes.update(move(t, CLAIMED, fields))
            except Unwritable as e:  # its claim cannot be written: it goes to a person, the others are claimed
                p.add(set_aside(snap, ref_of(t), f"its claim cannot be written: {e}", machine, now))
                if problems is not None:
                    problems.append(Problem(t.path, f"{e}: its claim cannot be written; moved to {NEEDS_HUMAN}"))
                aside = True
                continue
            p.trailers += trail(t.id, PENDING, CLAIMED)
            p.value.append(Task(data={**t.data, **fields}, state=CLAIMED, path=states.task_path(CLAIMED, t.id)))
        if not aside:
            break
    if not p.changes:
        return None
    p.subject = _subject(f"{machine} claims", [t.id for t in p.value] or sorted(seen))
    return p


def claim(
    fleet: Fleet, seat: Seat, k: int, *, grace: float = 20.0, fetch: bool = True, problems: list | None = None
) -> list[Task]:
    """Claim up to ``k`` eligible tasks for this machine in one commit; the claimed tasks."""

    def plan(snap: Snapshot) -> Plan | None:
        if problems is not None:
            problems.clear()
        return claim_plan(snap, seat, k, now=now_utc(), grace=grace, machine=fleet.machine, problems=problems)

    landed = transact(fleet, plan, fetch=fetch)
    return landed.value if landed and landed.value else []


# -- complete --


@dataclass
class Completion:
    task_id: str
    attempt: int
    outcome: str  # done | failed | needs_human
    result: dict[str, Any] = field(default_factory=dict)
    retry_after: float | None = None  # seconds: a failure with attempts left goes back to pending
    status: str = ""  # filled in: applied | retried | waiting (usage limit: result.wait_until) | stale


def complete_plan(snap: Snapshot, items: list[Completion], machine: str, now: dt.datetime) -> Plan | None:
    p = Plan(value=items)
    applied: list[str] = []
    for c in items:
        found = snap.locate(c.task_id)
        if not found:
            c.status = "stale"
            continue
        text = f"attempt {c.attempt} on {machine}: {c.outcome}"
        if c.result.get("exit_code") is not None:
            text += f", exit {c.result['exit_code']}"
        try:
            t = snap.load(found[0])
        except InvalidTask as e:  # a hand edit broke the running task's file: it goes to a person, with the result
            c.status = "set_aside" if found[0].loc.state == CLAIMED else "stale"
            if c.status == "set_aside":
                p.add(set_aside(snap, found[0], f"the result of {text} cannot be written: {e}", machine, now))
            continue
        live = t.state == CLAIMED and t.claim.get("machine") == machine and t.claim.get("attempt") == c.attempt
        if not live:
            # Fencing: a late result never overrides the live attempt; it is kept as a note (when it fits).
            c.status = "stale"
            try:
                p.changes.update(move(t, t.state, {"notes": _note(t, f"late result of {text}", machine, now)}, now=now))
                p.trailers += trail(t.id, t.state, t.state)
            except Unwritable:
                pass
            continue
        dst = c.outcome
        fields: dict[str, Any] = {
            "result": {**c.result, "machine": machine, "attempt": c.attempt, "finished_at": fmt_time(now)}
        }
        wait_until = c.result.get("wait_until") if dst == FAILED else None
        if wait_until:
            # A usage limit is no failure of the task: it waits for the reset whatever its attempts,
            # and the attempt is given back by growing max_attempts (the claim's attempt number,
            # a fencing token, never goes down).
            dst = PENDING
            why = f"usage limit (agent {c.result.get('agent') or '?'}) until {wait_until}; this attempt does not count"
            fields.update(
                not_before=wait_until, claim=None, max_attempts=t.max_attempts + 1, notes=_note(t, why, machine, now)
            )
            c.status = "waiting"
        elif dst == FAILED and c.retry_after is not None and t.attempts < t.max_attempts:
            dst = PENDING
            fields["not_before"] = fmt_time(now + dt.timedelta(seconds=c.retry_after))
            fields["claim"] = None
            c.status = "retried"
        else:
            c.status = "applied"
        try:
            p.changes.update(move(t, dst, fields, now=now))
        except Unwritable as e:
            c.status = "set_aside"
            p.add(set_aside(snap, found[0], f"the result of {text} cannot be written: {e}", machine, now))
            continue
        p.trailers += trail(t.id, CLAIMED, dst)
        applied.append(t.id)
    p.subject = _subject(f"{machine} reports", applied or [c.task_id for c in items])
    return p


def complete(fleet: Fleet, items: list[Completion], *, fetch: bool = True) -> list[Completion]:
    """Report results (batched in one commit); each item's ``status`` says what happened."""
    transact(fleet, lambda snap: complete_plan(snap, items, fleet.machine, now_utc()), fetch=fetch)
    return items


# -- people's transitions --


def _each(
    fleet: Fleet,
    given: list[str],
    verb: str,
    edit: Callable[[Task, dt.datetime], tuple[str, dict[str, Any]] | None],
    *,
    pick: Callable[[Snapshot], Iterable[Task]] | None = None,
) -> list[tuple[str, str, str]]:
    """Apply ``edit`` (task -> (dst, fields)) to each named task in one commit; (id, from, to) list."""

    def plan(snap: Snapshot) -> Plan | None:
        now = now_utc()
        tasks = list(pick(snap)) if pick else [snap.get(g) for g in given]
        p = Plan(value=[], sign=signs(fleet))  # a re-run is a new order: signed when this git signs
        for t in tasks:
            out = edit(t, now)
            if out is None:
                continue
            dst, fields = out
            p.changes.update(move(t, dst, fields, now=now))
            p.trailers += trail(t.id, t.state, dst)
            p.value.append((t.id, t.state, dst))
        p.subject = _subject(verb, [v[0] for v in p.value])
        return p

    landed = transact(fleet, plan)
    return landed.value if landed and landed.value else []


def resolve(
    fleet: Fleet, given: list[str], to: str = DONE, notes: str | None = None, *, all_waiting: bool = False
) -> list[tuple[str, str, str]]:
    """A person's verdict: move tasks to done, pending (re-run) or failed."""
    if to not in (DONE, PENDING, FAILED):
        raise UsageError(f"resolve to done, pending or failed, not '{to}'")

    def edit(t: Task, now: dt.datetime) -> tuple[str, dict[str, Any]] | None:
        if t.state == to and to != PENDING:
            return None
        if t.state == CLAIMED and to == PENDING:
            raise Conflict(f"{t.id} is running on {t.claim.get('machine')}; cancel it first")
        fields: dict[str, Any] = {}
        text = f"resolved {t.state} -> {to}" + (f": {notes}" if notes else "")
        fields["notes"] = _note(t, text, fleet.machine, now)
        if to == PENDING:
            # A fresh budget, but the attempt count (the claim's fencing token) never goes back: a run of
            # the old attempt that is still being stopped must not pass for the next one.
            fields.update({"claim": None, "not_before": None, "max_attempts": t.attempts + t.max_attempts})
        return to, fields

    pick = (lambda snap: snap.tasks([NEEDS_HUMAN])) if all_waiting else None
    return _each(fleet, given, f"resolve -> {to}", edit, pick=pick)


def cancel(fleet: Fleet, given: list[str], reason: str | None = None) -> list[tuple[str, str, str]]:
    """Pending or running tasks -> failed; a running one is killed by its worker."""

    def edit(t: Task, now: dt.datetime) -> tuple[str, dict[str, Any]] | None:
        if t.state not in (PENDING, CLAIMED, NEEDS_HUMAN):
            raise Conflict(f"{t.id} is {t.state}; only pending, claimed or needs_human tasks can be cancelled")
        result = {
            **t.result,
            "error": f"cancelled by {fleet.machine}" + (f": {reason}" if reason else ""),
            "cancelled": True,
        }
        return FAILED, {"result": result}

    return _each(fleet, given, "cancel", edit)


def handback_plan(
    snap: Snapshot,
    expected: dict[str, tuple[str | None, int | None]],
    machine: str,
    why: str,
    now: dt.datetime,
    *,
    spend: bool = True,
) -> Plan:
    """Claimed tasks -> pending (or failed when attempts are spent and ``spend``).

    ``expected`` maps each task id to the (machine, attempt) of the claim being
    handed back; a task claimed anew since (another attempt) is left alone.
    """
    p = Plan(value=[])
    for tid, (by, attempt) in expected.items():
        found = [r for r in snap.locate(tid) if r.loc.state == CLAIMED]
        if not found:
            continue
        try:
            t = snap.load(found[0])
        except InvalidTask as e:  # cannot tell whose claim it is, nor write one back: a person decides
            p.add(set_aside(snap, found[0], f"cannot hand it back ({why}): {e}", machine, now))
            p.value.append((tid, CLAIMED, NEEDS_HUMAN))
            continue
        if (by and t.claim.get("machine") != by) or (attempt and t.claim.get("attempt") != attempt):
            continue
        note = _note(t, f"{why} (attempt {t.attempts} on {t.claim.get('machine')})", machine, now)
        fields: dict[str, Any]
        if spend and t.attempts >= t.max_attempts:
            dst, fields = (
                FAILED,
                {"notes": note, "result": {**t.result, "error": f"{why}; {t.attempts} attempts spent"}},
            )
        else:
            dst, fields = PENDING, {"notes": note, "claim": None}
        try:
            p.changes.update(move(t, dst, fields, now=now))
        except Unwritable as e:
            p.add(set_aside(snap, found[0], f"cannot hand it back ({why}): {e}", machine, now))
            dst = NEEDS_HUMAN
        else:
            p.trailers += trail(t.id, CLAIMED, dst)
        p.value.append((t.id, CLAIMED, dst))
    p.subject = _subject(f"{machine} hands back", [v[0] for v in p.value])
    return p


# -- review of isolated agent runs (fleetq/review.py) --


def check_undecided(t: Task) -> None:
    """Conflict when a person already accepted or rejected this run."""
    done = t.result.get("review")
    if isinstance(done, dict) and done.get("decision"):
        raise Conflict(f"{t.id} was already {done['decision']} by {done.get('by')} at {done.get('at')}")


def record_review(
    fleet: Fleet, task_id: str, decision: str, notes: str | None = None, detail: dict[str, Any] | None = None
) -> list[tuple[str, str, str]]:
    """Record a person's accept/reject of a run's branch: ``result.review: {decision, by, at, ...}`` and a note.

    The task stays in its state; a decision already recorded (by anyone) is a Conflict. It lives in
    ``result`` (not a new top-level field) because it is about that run: a re-run's result replaces it.
    """

    def edit(t: Task, now: dt.datetime) -> tuple[str, dict[str, Any]]:
        check_undecided(t)
        review = {"decision": decision, "by": fleet.machine, "at": fmt_time(now), **(detail or {})}
        if notes:
            review["notes"] = notes
        text = f"review: {decision}" + (f": {notes}" if notes else "")
        return t.state, {"result": {**t.result, "review": review}, "notes": _note(t, text, fleet.machine, now)}

    return _each(fleet, [task_id], f"review {decision}", edit)
