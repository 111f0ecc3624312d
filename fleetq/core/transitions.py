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
from fleetq.core.snapshot import Snapshot
from fleetq.core.states import CLAIMED, DONE, FAILED, NEEDS_HUMAN, PENDING
from fleetq.core.task import Task, fmt_time, now_utc
from fleetq.errors import Conflict, InvalidTask, UsageError


def day_of(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%d")


def move(
    task: Task, dst: str, fields: dict[str, Any] | None = None, *, now: dt.datetime | None = None
) -> dict[str, bytes | None]:
    """The change set that moves ``task`` to ``dst`` with ``fields`` edited in."""
    if not states.is_legal(task.state, dst):
        raise Conflict(f"{task.id}: {task.state} -> {dst} is not a legal transition")
    day = day_of(now or now_utc()) if dst == DONE else None
    if dst == DONE and task.state == DONE:
        new_path = task.path  # an edit in place keeps its shard
    else:
        new_path = states.task_path(dst, task.id, day)
    body = taskmod.edit(task, fields or {})
    changes: dict[str, bytes | None] = {new_path: body}
    if task.path != new_path:
        changes[task.path] = None
    return changes


def trail(task_id: str, src: str, dst: str) -> list[tuple[str, str]]:
    return [("Fleetq-Task", task_id), ("Fleetq-Transition", f"{src}->{dst}")]


def _subject(verb: str, ids: list[str]) -> str:
    shown = ", ".join(ids[:4]) + (f" (+{len(ids) - 4})" if len(ids) > 4 else "")
    return f"fleetq: {verb} {shown}"


def _note(task: Task, text: str, by: str, now: dt.datetime) -> list[dict[str, Any]]:
    return list(task.data.get("notes") or []) + [{"at": fmt_time(now), "by": by, "text": text}]


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

    def plan(snap: Snapshot) -> Plan:
        p = Plan(subject=_subject("add", ids), value=ids, sign=sign)
        for d in datas:
            if snap.exists(d["id"]):
                raise Conflict(f"a task with id '{d['id']}' already exists")
            p.changes[states.task_path(PENDING, d["id"])] = taskmod.render_new(d)
            p.trailers += trail(d["id"], "new", PENDING)
        return p

    transact(fleet, plan)
    return ids


def create_raw(fleet: Fleet, task_id: str, raw: bytes) -> bool:
    """Queue a task file as written (a person's bytes, comments and all) unless its id exists."""

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
    snap: Snapshot, seat: Seat, k: int, *, now: dt.datetime, grace: float, machine: str, problems: list | None = None
) -> Plan | None:
    pending = snap.tasks([PENDING], problems)
    # A task that is also in another state (hand edits, a bad merge) is fsck's business, never run again.
    picked = [t for t in choose(pending, seat, snap, k, now, grace) if len(snap.locate(t.id)) == 1]
    if not picked:
        return None
    p = Plan(subject=_subject(f"{machine} claims", [t.id for t in picked]), value=[])
    for t in picked:
        attempt = t.attempts + 1
        fields = {"attempts": attempt, "claim": {"machine": machine, "at": fmt_time(now), "attempt": attempt}}
        p.changes.update(move(t, CLAIMED, fields))
        p.trailers += trail(t.id, PENDING, CLAIMED)
        p.value.append(Task(data={**t.data, **fields}, state=CLAIMED, path=states.task_path(CLAIMED, t.id)))
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
        t = snap.load(found[0])
        live = t.state == CLAIMED and t.claim.get("machine") == machine and t.claim.get("attempt") == c.attempt
        if not live:
            # Fencing: a late result never overrides the live attempt; it is kept as a note.
            c.status = "stale"
            text = f"late result of attempt {c.attempt} on {machine}: {c.outcome}"
            if c.result.get("exit_code") is not None:
                text += f", exit {c.result['exit_code']}"
            p.changes.update(move(t, t.state, {"notes": _note(t, text, machine, now)}, now=now))
            p.trailers += trail(t.id, t.state, t.state)
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
        p.changes.update(move(t, dst, fields, now=now))
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
        p = Plan(value=[])
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
        t = snap.load(found[0])
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
        p.changes.update(move(t, dst, fields, now=now))
        p.trailers += trail(t.id, CLAIMED, dst)
        p.value.append((t.id, CLAIMED, dst))
    p.subject = _subject(f"{machine} hands back", [v[0] for v in p.value])
    return p


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
