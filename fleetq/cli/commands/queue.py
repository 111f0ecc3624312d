"""Looking at tasks: `queue`, `show`, `log`, `failures`."""

from __future__ import annotations

import datetime as dt

import click

from fleetq.cli import output
from fleetq.cli.context import AppContext, pass_app
from fleetq.core import archive as archiving
from fleetq.core import history, listing
from fleetq.core.clone import Fleet
from fleetq.core.config import FleetConfig
from fleetq.core.heartbeat import Beat, Observer
from fleetq.core.snapshot import Problem, Snapshot
from fleetq.core.states import FAILED, PENDING
from fleetq.core.task import Task, now_utc
from fleetq.errors import FleetqError, NotFound, RemoteError
from fleetq.fleet.waiting import Wait, summary, waits
from fleetq.review import chains
from fleetq.trust.checks import Finding
from fleetq.trust.fsck import rewritten
from fleetq.trust.reach import Reach
from fleetq.trust.survey import CACHE_FILE, survey

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _report(problems: list[Problem] | list[Finding]) -> None:
    for p in problems:
        output.warn(str(p))


def _state_column(t: Task, now: dt.datetime) -> str:
    """``pending (waits 1h)`` while a pending task's not_before (retry backoff, usage limit) is ahead."""
    nb = t.not_before
    if t.state == PENDING and nb is not None and nb > now:
        return f"{t.state} (waits {listing.age(now, nb)})"
    return t.state


def _row(t: Task, now: dt.datetime, wait: list[Wait] | None) -> list[str]:
    note = summary(wait) if wait is not None else ""
    return [
        t.id,
        _state_column(t, now),
        t.type,
        t.machine_column(),
        t.agent or "",
        str(t.priority),
        listing.age(t.created_at),
        output.preview(t.summary()) + (f"  ({output.preview(note, 100)})" if note else ""),
    ]


HEADERS = ["ID", "State", "Type", "Machine", "Agent", "Pri", "Age", "Task / Notes"]


def _snapshot(app: AppContext) -> tuple[Fleet, Snapshot]:
    fleet, snap, _ = _look(app, beats=False)
    return fleet, snap


def _look(app: AppContext, *, beats: bool = True) -> tuple[Fleet, Snapshot, dict[str, Beat]]:
    """The queue as of the remote's head (and, with ``beats``, every machine's heartbeat), fetched once."""
    fleet = app.fleet()
    seen: dict[str, Beat] = {}
    if beats:
        try:
            seen = Observer(fleet).read(fetch=True)
        except RemoteError:
            fleet.offline = True
            seen = Observer(fleet).read(fetch=False)
        snap = fleet.snapshot(fetch=False)
    else:
        snap = fleet.snapshot(tolerate_offline=True)
    if fleet.offline:
        output.warn("remote unreachable: showing the queue as of the last fetch")
    why = rewritten(fleet.repo)
    if why:
        output.warn(why)
    return fleet, snap, seen


def _config(snap: Snapshot) -> FleetConfig | None:
    try:
        return FleetConfig(snap)
    except FleetqError:
        return None  # a broken machines.yaml or fleet.yaml: the problem list says so


@click.command()
@click.option("--status", metavar="S", help="pending, claimed, done, failed or needs_human.")
@click.option("--machine", "machine", metavar="M", help="Only tasks claimed by, pinned to or preferring M.")
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many rows (0: all).")
@json_option
@pass_app
def queue(app: AppContext, status: str | None, machine: str | None, limit: int, as_json: bool) -> None:
    """List tasks, newest first.

    A pending task's Notes say why it waits; the warnings are the problems `validate` reports.
    """
    fleet, snap, beats = _look(app)
    cfg = _config(snap)
    names = cfg.names_of(machine) if cfg and machine else machine  # an old alias finds the machine's tasks
    tasks = listing.select(snap, status=status, machine=names, limit=limit)
    problems = survey(
        fleet.repo, snap.commit, beats=_states(beats), cache=fleet.state_dir / CACHE_FILE, done=False
    ).findings
    wait = waits(tasks, snap, cfg, beats) if cfg else {}
    if as_json:
        docs = [t.to_json() | ({"waiting": _waiting(wait[t.id])} if t.id in wait else {}) for t in tasks]
        output.emit_json({"tasks": docs, "problems": [p.to_json() for p in problems]})
        return
    now = now_utc()
    output.emit_table([_row(t, now, wait.get(t.id)) for t in tasks], HEADERS, empty="(no tasks)")
    _report(problems)


def _states(beats: dict[str, Beat]) -> dict[str, dict]:
    return {n: b.state for n, b in beats.items()}


def _waiting(found: list[Wait]) -> dict[str, str]:
    return {w.machine: w.reason for w in found}


def _details(t: Task) -> list[tuple[str, object]]:
    r = t.result
    pairs: list[tuple[str, object]] = [
        ("id", t.id),
        ("state", t.state),
        ("type", t.type),
        ("title", t.title),
        ("priority", t.priority),
        ("target", t.target),
        ("prefer", t.prefer),
        ("requires", ", ".join(t.requires) or None),
        ("agent", t.agent),
        ("depends_on", ", ".join(t.depends_on) or None),
        ("created", f"{t.data.get('created_at', '')} by {t.data.get('created_by', '?')}"),
        ("attempts", f"{t.attempts}/{t.max_attempts}"),
        ("not_before", t.data.get("not_before")),
        (
            "claim",
            f"{t.claim.get('machine')} at {t.claim.get('at')} (attempt {t.claim.get('attempt')})" if t.claim else None,
        ),
    ]
    for k, v in t.payload.items():
        pairs.append((f"payload.{k}", v))
    for k in (
        "exit_code",
        "duration",
        "error",
        "cost_usd",
        "wait_until",
        "branch",
        "pushed",
        "push_error",
        "stdout_tail",
        "stderr_tail",
    ):
        if r.get(k) not in (None, ""):
            pairs.append((f"result.{k}", r[k]))
    if r.get("branch"):
        pairs.append(
            (
                "result.diffstat",
                f"{r.get('files_changed', 0)} files, +{r.get('insertions', 0)} "
                f"-{r.get('deletions', 0)} ({str(r.get('base', ''))[:10]}..{str(r.get('head', ''))[:10]})",
            )
        )
    review = r.get("review")
    if isinstance(review, dict):
        pairs.append(("result.review", f"{review.get('decision')} by {review.get('by')} at {review.get('at')}"))
    for n in t.data.get("notes") or []:
        pairs.append(("note", f"{n.get('at')} {n.get('by')}: {n.get('text')}" if isinstance(n, dict) else n))
    return [(k, v) for k, v in pairs if v not in (None, "")]


@click.command()
@click.argument("task_id")
@json_option
@pass_app
def show(app: AppContext, task_id: str, as_json: bool) -> None:
    """Show one task (an id or a unique prefix).

    A pending task also shows why each machine does not take it (the worker's own rule). A task archived
    out of the tree shows as it was last, with the commit that archived it.
    """
    fleet, snap, beats = _look(app)
    try:
        t = snap.get(task_id)
    except NotFound:
        _show_archived(archiving.find(fleet.repo, snap, task_id), as_json)
        return
    cfg = _config(snap)
    found = waits([t], snap, cfg, beats).get(t.id) if cfg else None
    never = Reach.at(snap, _states(beats)).never(t) if t.state == PENDING else None
    if as_json:
        doc = t.to_json()
        if found is not None:
            doc["waiting"] = _waiting(found)
        if never:
            doc["never_runs"] = never
        doc.update(chains.links(snap, t))  # reply_to, chain_root, replies (review/chains.py)
        output.emit_json(doc)
    else:
        pairs = _details(t) + chains.link_pairs(chains.links(snap, t))
        pairs += [("never runs", never)] if never else []
        pairs += [("waiting", f"{w.machine}: {w.reason}") for w in found or []]
        output.emit_kv(pairs)


def _show_archived(a: archiving.Archived, as_json: bool) -> None:
    if as_json:
        output.emit_json(a.to_json())
        return
    pairs: list[tuple[str, object]] = [("id", a.id), ("state", f"archived (done {a.day or '?'})")]
    if a.commit:
        pairs += [("archived", f"{a.when} by commit {a.commit[:10]}"), ("last file", a.git_show())]
    else:
        pairs += [("archived", "by a commit this clone's history does not hold")]
    pairs += [("history", f"fleetq log {a.id}")]
    if a.task is not None:
        pairs += [(k, v) for k, v in _details(a.task) if k not in ("id", "state")]
    output.emit_kv(pairs)


@click.command()
@click.argument("task_id")
@json_option
@pass_app
def log(app: AppContext, task_id: str, as_json: bool) -> None:
    """The life of a task from git history: when, who, which transition."""
    fleet, snap = _snapshot(app)
    try:
        tid = snap.resolve(task_id).id
    except NotFound:  # archived out of the tree: the archive index knows its id, history its life
        tid = archiving.archived_id(snap, task_id)[0]
    events = history.task_events(fleet.repo, tid)
    if not events:
        raise NotFound(f"no history for task '{task_id}'")
    linked = chains.links(snap, snap.get(tid)) if snap.exists(tid) else {}  # the reply chain, both ways
    if as_json:
        output.emit_json({"id": tid, "events": [e.to_json() for e in events], **linked})
        return
    output.emit_table(
        [[e.when, e.machine, e.author, e.transition, e.sha] for e in events],
        ["When", "Machine", "Author", "Transition", "Commit"],
    )
    output.emit_kv(chains.link_pairs(linked))


def _attention(app: AppContext, state: str, as_json: bool, hint: str) -> None:
    _, snap = _snapshot(app)
    problems: list[Problem] = []
    tasks = listing.select(snap, status=state, problems=problems)
    if as_json:
        output.emit_json({"tasks": [t.to_json() for t in tasks], "problems": [p.__dict__ for p in problems]})
        return
    if not tasks:
        output.info(f"nothing is {state}")
    for t in tasks:
        output.info(f"── {t.id}  {t.type}  {t.machine_column() or '-'}  {listing.age(t.created_at)} ago")
        output.emit_kv([(k, v) for k, v in _details(t) if k not in ("id", "state", "type")])
        output.info(hint.format(id=t.id))
        output.info("")
    _report(problems)


@click.command()
@json_option
@pass_app
def failures(app: AppContext, as_json: bool) -> None:
    """Failed tasks with their errors and the command that re-queues each."""
    _attention(app, FAILED, as_json, "   → re-queue: fleetq resolve {id} pending")


commands = [queue, show, log, failures]  # `review` lives in commands/review.py
