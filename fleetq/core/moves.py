"""Writing a transition into a task's file, and what happens when it cannot be written.

``move`` is the change set of one transition; it raises ``Unwritable`` when the file would grow past
yamlio's size limit (or cannot be rendered). ``set_aside`` is then the way out (docs/design.md, "The
claim protocol"): the file goes to needs_human with a note, so one bad file never stops a pass. New tasks
are held to ``MAX_NEW_BYTES``, which leaves room for what fleetq writes into them (claim, notes, result).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fleetq import yamlio
from fleetq.core import states
from fleetq.core import task as taskmod
from fleetq.core.cas import Plan
from fleetq.core.snapshot import Ref, Snapshot
from fleetq.core.states import DONE, NEEDS_HUMAN
from fleetq.core.task import Task, fmt_time, now_utc
from fleetq.errors import Conflict, FleetqError, InvalidTask

# A new task's file leaves room under yamlio.MAX_BYTES for what fleetq writes into it: claim, notes, result.
MAX_NEW_BYTES = yamlio.MAX_BYTES - 64 * 1024


class Unwritable(FleetqError):
    """A transition that cannot be written into the task's file (it would grow past the size limit)."""


def too_big(size: int) -> str:
    return (
        f"file is {size} bytes; a new task may be at most {MAX_NEW_BYTES} bytes "
        f"(room for its claim and result under the {yamlio.MAX_BYTES} byte limit)"
    )


def check_new_size(task_id: str, raw: bytes) -> None:
    if len(raw) > MAX_NEW_BYTES:
        raise InvalidTask(f"task {task_id!r}: {too_big(len(raw))}")


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
    try:
        body = taskmod.edit(task, fields or {})
    except FleetqError as e:
        raise Unwritable(f"{task.path}: {e}") from None
    if len(body) > yamlio.MAX_BYTES:
        raise Unwritable(
            f"{task.path}: the file would grow to {len(body)} bytes, over the {yamlio.MAX_BYTES} byte limit"
        )
    changes: dict[str, bytes | None] = {new_path: body}
    if task.path != new_path:
        changes[task.path] = None
    return changes


def trail(task_id: str, src: str, dst: str) -> list[tuple[str, str]]:
    return [("Fleetq-Task", task_id), ("Fleetq-Transition", f"{src}->{dst}")]


def _note(task: Task, text: str, by: str, now: dt.datetime) -> list[dict[str, Any]]:
    return list(task.data.get("notes") or []) + [{"at": fmt_time(now), "by": by, "text": text}]


def ref_of(t: Task) -> Ref:
    return Ref(states.TaskLocation(t.state, t.id, t.path.split("/")[2] if t.state == DONE else None), t.blob)


def set_aside(snap: Snapshot, ref: Ref, why: str, by: str, now: dt.datetime) -> Plan:
    """Move a task file fleetq cannot write a transition into (it does not validate, or would grow past
    the size limit) to needs_human with a note saying why, so that it stops no pass; its bytes go as
    they are when even the note cannot be written. An empty plan when it cannot move from where it is."""
    p = Plan(value=[])
    src = ref.loc.state
    if src == NEEDS_HUMAN or not states.is_legal(src, NEEDS_HUMAN):
        return p
    raw = snap.repo.read_blob(ref.blob)
    body = raw
    try:
        doc = yamlio.load_rt(raw, ref.loc.path)
        notes = doc.get("notes") if isinstance(doc, dict) else False
        if notes is None or isinstance(notes, list):
            note = {"at": fmt_time(now), "by": by, "text": f"set aside: {why}"}
            doc["notes"] = yamlio.to_rt([*yamlio.to_plain(notes or []), note])
            body = yamlio.dump_rt(doc).encode("utf-8")
    except FleetqError:
        pass  # a file that does not even parse moves as it is
    p.changes = {states.task_path(NEEDS_HUMAN, ref.id): body if len(body) <= yamlio.MAX_BYTES else raw}
    p.changes[ref.loc.path] = None
    p.trailers = trail(ref.id, src, NEEDS_HUMAN)
    p.value = [ref.id]
    return p
