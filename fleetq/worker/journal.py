"""The worker's local journal: a result is on disk before it is pushed.

A worker killed after a handler finished, or cut off from the remote, finds its
results here when it starts again and reports them, so a finished task is not
run again and no result is lost.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fleetq import yamlio
from fleetq.core.transitions import Completion
from fleetq.errors import FleetqError

log = logging.getLogger("fleetq.worker.journal")


class Journal:
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "journal"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._memory: dict[str, Completion] = {}  # kept when the disk refuses a write

    def _path(self, c: Completion) -> Path:
        return self.dir / f"{c.task_id}.{c.attempt}.yaml"

    def record(self, c: Completion) -> None:
        data = {
            "task_id": c.task_id,
            "attempt": c.attempt,
            "outcome": c.outcome,
            "result": c.result,
            "retry_after": c.retry_after,
        }
        try:
            yamlio.write_file(self._path(c), data)
        except FleetqError as e:
            log.error("journal: %s; keeping the result of %s in memory until it is pushed", e, c.task_id)
            self._memory[self._path(c).name] = c

    def pending(self) -> list[Completion]:
        found = dict(self._memory)
        for f in sorted(self.dir.glob("*.yaml")):
            try:
                d = yamlio.read_file(f)
                found[f.name] = Completion(
                    str(d["task_id"]),
                    int(d["attempt"]),
                    str(d["outcome"]),
                    dict(d.get("result") or {}),
                    d.get("retry_after"),
                )
            except (FleetqError, KeyError, TypeError, ValueError) as e:
                log.error("journal: %s is unreadable (%s); moved aside", f.name, e)
                f.rename(f.with_suffix(".bad"))
        return list(found.values())

    def clear(self, c: Completion) -> None:
        self._memory.pop(self._path(c).name, None)
        self._path(c).unlink(missing_ok=True)

    def ids(self) -> set[str]:
        return {c.task_id for c in self.pending()}
