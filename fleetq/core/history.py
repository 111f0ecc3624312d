"""A task's life, read from git history (the only history fleetq keeps)."""

from __future__ import annotations

from dataclasses import dataclass

from fleetq.core import states
from fleetq.git.repo import GitRepo
from fleetq.layout import TRACKING


@dataclass
class Event:
    sha: str
    when: str
    author: str
    machine: str
    transition: str  # e.g. pending->claimed, new->pending, done->archived
    subject: str

    def to_json(self) -> dict[str, str]:
        return self.__dict__.copy()


def _trailer(message: str, key: str) -> str:
    for line in message.splitlines():
        if line.startswith(f"{key}: "):
            return line[len(key) + 2 :].strip()
    return ""


def task_events(repo: GitRepo, task_id: str) -> list[Event]:
    """Every commit that touched the task's file, oldest first, with the move it made."""
    paths = [f":(glob){states.QUEUE}/*/{task_id}.yaml", f":(glob){states.QUEUE}/{states.DONE}/*/{task_id}.yaml"]
    events = []
    for entry in repo.log(paths, rev=TRACKING):
        removed = added = modified = None
        for status, _, path in entry.files:
            loc = states.location(path)
            if loc is None or loc.task_id != task_id:
                continue
            if status.startswith("D"):
                removed = loc.state
            elif status.startswith("A"):
                added = loc.state
            else:
                modified = loc.state
        if added and removed:
            move = f"{removed}->{added}"
        elif added:
            move = f"new->{added}"
        elif removed:
            move = f"{removed}->archived"
        else:
            move = f"{modified}->{modified} (edit)"
        events.append(
            Event(
                sha=entry.sha[:10],
                when=entry.when,
                author=entry.author,
                machine=_trailer(entry.message, "Fleetq-Machine") or "-",
                transition=move,
                subject=entry.message.splitlines()[0] if entry.message else "",
            )
        )
    return events
