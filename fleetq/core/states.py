"""Task states, where each lives in the repo, and which moves between them are legal."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fleetq.layout import QUEUE

PENDING, CLAIMED, DONE, FAILED, NEEDS_HUMAN = "pending", "claimed", "done", "failed", "needs_human"
STATES: tuple[str, ...] = (PENDING, CLAIMED, DONE, FAILED, NEEDS_HUMAN)

# from -> allowed targets. Same-state edits (notes, a person fixing a pending task)
# are always allowed; `done` leaves only by an explicit re-run or an archive.
LEGAL: dict[str, frozenset[str]] = {
    PENDING: frozenset({CLAIMED, DONE, FAILED, NEEDS_HUMAN}),
    CLAIMED: frozenset({PENDING, DONE, FAILED, NEEDS_HUMAN}),
    NEEDS_HUMAN: frozenset({PENDING, DONE, FAILED}),
    FAILED: frozenset({PENDING, DONE, NEEDS_HUMAN}),
    DONE: frozenset({PENDING}),
}

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def is_legal(src: str, dst: str) -> bool:
    return src == dst or dst in LEGAL.get(src, frozenset())


def valid_id(task_id: object) -> bool:
    return isinstance(task_id, str) and bool(ID_RE.match(task_id)) and ".." not in task_id


def task_path(state: str, task_id: str, day: str | None = None) -> str:
    if state == DONE:
        if not day:
            raise ValueError("done tasks live in a day shard")
        return f"{QUEUE}/{DONE}/{day}/{task_id}.yaml"
    return f"{QUEUE}/{state}/{task_id}.yaml"


@dataclass(frozen=True)
class TaskLocation:
    state: str
    task_id: str
    day: str | None = None  # only for done

    @property
    def path(self) -> str:
        if self.state == DONE and self.day is None:
            return f"{QUEUE}/{DONE}/{self.task_id}.yaml"
        return task_path(self.state, self.task_id, self.day)


class BadPath(ValueError):
    """A file under queue/ that is not where a task file may be."""


def parse_path(path: str) -> TaskLocation | None:
    """Map a repo path to its task location.

    Returns None for paths outside queue/ and for placeholders (.gitkeep);
    raises BadPath for a file under queue/ that no state directory holds.
    """
    parts = path.split("/")
    if not parts or parts[0] != QUEUE or len(parts) < 2:
        return None
    name = parts[-1]
    if name.startswith("."):
        return None
    state = parts[1]
    if state not in STATES:
        raise BadPath(f"{path}: '{state}' is not a state directory ({', '.join(STATES)})")
    if not name.endswith(".yaml"):
        raise BadPath(f"{path}: task files end in .yaml")
    tid = name[: -len(".yaml")]
    if state == DONE and len(parts) == 4 and DAY_RE.match(parts[2]):
        return TaskLocation(DONE, tid, parts[2])
    if len(parts) != 3:
        raise BadPath(
            f"{path}: task files sit directly in queue/{state}/"
            + (" or in a queue/done/YYYY-MM-DD/ shard" if state == DONE else "")
        )
    return TaskLocation(state, tid, None)


def location(path: str) -> TaskLocation | None:
    """The task location of ``path``; None for non-task and badly placed paths."""
    try:
        return parse_path(path)
    except BadPath:
        return None
