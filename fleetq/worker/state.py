"""What the parts of a worker share: its clone, journal, runs, settings and view of the head.

The parts (:mod:`~fleetq.worker.lease`, :mod:`~fleetq.worker.runner`,
:mod:`~fleetq.worker.headcache`, :mod:`~fleetq.worker.intake`) each get this
state; :class:`fleetq.worker.daemon.Worker` extends it with the loop.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fleetq.core.clone import Fleet
from fleetq.core.config import FleetConfig
from fleetq.core.task import Task
from fleetq.run import notify
from fleetq.worker.journal import Journal


@dataclass
class Run:
    """One attempt of a task running here."""

    task: Task
    attempt: int
    cancel: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.time)
    thread: threading.Thread | None = None
    handing_back: bool = False  # killed to go back to pending: its result does not count
    why: str = ""  # why it was cancelled


class WorkerState:
    """Shared by a worker's parts. ``running`` is guarded by ``lock``; ``cfg``, ``agents`` and
    ``installed`` are as of the head (kept by the head cache); ``wake`` wakes the loop."""

    def __init__(self, fleet: Fleet, opts: dict[str, Any]) -> None:
        self.fleet = fleet
        self._opts = opts  # flags given on the command line: they win over the fleet config
        self.journal = Journal(fleet.state_dir)
        self.logs_dir = fleet.state_dir / "logs"
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.head_dir = fleet.state_dir / "head"  # committed handlers/ and config/agents.yaml, as of the head
        self.running: dict[str, Run] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = False
        self.handback = False
        self.reported_bad: set[str] = set()  # problems logged once, not every pass
        self.cfg: FleetConfig | None = None
        self.agents: dict[str, Any] = {}
        self.installed: set[str] = set()
        self.notifier = notify.Notifier(fleet)  # tells this machine's user about the tasks it created

    def setting(self, key: str) -> Any:
        """A flag, else the fleet config (``slots``: this machine's, 2 before the config is read)."""
        v = self._opts.get(key)
        if v is not None:
            return v
        if key == "slots":
            return self.cfg.machine(self.fleet.machine).slots if self.cfg else 2
        return self.cfg.get(key) if self.cfg else None
