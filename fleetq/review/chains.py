"""Reply chains: a task and the replies that continue its agent's session (docs/design.md, "Replies").

A reply (``fleetq reply``, review/reply.py) is a new agent_run task whose ``payload.reply_to``
names the task it answers and ``payload.chain_root`` the chain's first task, whose branch
``fleetq/<root>`` every link works on. Nothing is written on the replied-to task: its replies
are found by scanning the open states and the done shards review looks at (``REVIEW_DAYS``),
so the link lives in the one commit that creates the reply and cannot disagree with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fleetq.core.snapshot import Problem, Snapshot
from fleetq.core.states import CLAIMED, DONE, FAILED, NEEDS_HUMAN, PENDING, valid_id
from fleetq.core.task import Task

REVIEW_DAYS = 30  # done/ day shards looked at for runs awaiting review and for replies


def reply_to(task: Task) -> str | None:
    """The id of the task this one answers (None: not a reply)."""
    value = task.payload.get("reply_to")
    return value if valid_id(value) and value != task.id else None


def chain_root(task: Task) -> str:
    """The chain's first task (its branch is ``fleetq/<root>``): the task itself unless it is a reply."""
    value = task.payload.get("chain_root")
    return str(value) if reply_to(task) and valid_id(value) else task.id


def candidates(snap: Snapshot, problems: list[Problem] | None = None) -> list[Task]:
    """Every task a reply may be: the open states and the recent done shards."""
    return snap.tasks([PENDING, CLAIMED, FAILED, NEEDS_HUMAN], problems) + snap.recent_done(REVIEW_DAYS, problems)


def replied(tasks: Iterable[Task]) -> set[str]:
    """The ids that some task among ``tasks`` replies to."""
    return {r for r in (reply_to(t) for t in tasks) if r}


def replies(snap: Snapshot, task_id: str, tasks: list[Task] | None = None) -> list[Task]:
    """The replies to ``task_id``, oldest first."""
    found = [t for t in (candidates(snap) if tasks is None else tasks) if reply_to(t) == task_id]
    return sorted(found, key=lambda t: str(t.data.get("created_at") or ""))


def latest(snap: Snapshot, task: Task) -> Task:
    """The chain's newest finished link from ``task`` on (itself when nothing finished answers it).

    ``diff``, ``accept`` and ``reject`` take the whole chain: its newest link's head is the branch's.
    """
    tasks = candidates(snap)
    seen = {task.id}
    while True:
        nxt = [t for t in replies(snap, task.id, tasks) if t.state in (DONE, FAILED) and t.id not in seen]
        if not nxt:
            return task
        task = nxt[-1]
        seen.add(task.id)


def links(snap: Snapshot, task: Task) -> dict[str, Any]:
    """What ``show``/``log`` print: the task it answers, its replies, the chain's root (only what applies)."""
    out: dict[str, Any] = {}
    if reply_to(task):
        out.update(reply_to=reply_to(task), chain_root=chain_root(task))
    found = [t.id for t in replies(snap, task.id)]
    if found:
        out["replies"] = found
    return out


def link_pairs(found: dict[str, Any]) -> list[tuple[str, object]]:
    """What ``links`` found as the key/value lines of ``show`` and ``log``."""
    pairs: list[tuple[str, object]] = []
    if "reply_to" in found:
        pairs.append(("reply to", f"{found['reply_to']} (chain {found['chain_root']})"))
    if "replies" in found:
        pairs.append(("replies", ", ".join(found["replies"])))
    return pairs
