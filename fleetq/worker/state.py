"""What the parts of a worker share: its clone, journal, runs, settings and view of the head.

The parts (:mod:`~fleetq.worker.lease`, :mod:`~fleetq.worker.runner`,
:mod:`~fleetq.worker.headcache`, :mod:`~fleetq.worker.intake`) each get this
state; :class:`fleetq.worker.daemon.Worker` extends it with the loop.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fleetq import yamlio
from fleetq.core import clock, liveness
from fleetq.core.clone import Fleet
from fleetq.core.config import DEFAULT_SETTINGS, FleetConfig
from fleetq.core.task import Task, fmt_time, parse_time
from fleetq.errors import FleetqError, UsageError
from fleetq.run import notify
from fleetq.trust import signing
from fleetq.worker.journal import Journal

log = logging.getLogger("fleetq.worker")


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
        self.fetched_ok_at = clock.mono()  # the last fetch (or up-to-date ls-remote) that worked
        self.reported_bad: set[str] = set()  # problems logged once, not every pass
        self.cfg: FleetConfig | None = None
        self.agents: dict[str, Any] = {}
        self.installed: set[str] = set()
        self.claimed_total = 0
        self.finished_total = 0
        # what the heartbeat advertises for other machines' pushes to fold and fill (worker/fold.py)
        self.offer: list[Any] = []  # our results still live in main (transitions.Completion)
        self.offer_free = 0  # free slots
        self.delegates = False  # whether this worker takes claims made for it (a looping worker)
        # tells this machine's user about the tasks it created (not while a protected file is tainted)
        self.notifier = notify.Notifier(fleet, gate=signing.notify_gate(fleet.repo))

    # -- memory between passes: `work --once` from cron makes each pass a new process --
    def recall_times(self, name: str) -> dict[str, dt.datetime]:
        """A map of key -> time kept in the clone's state dir under ``name`` (empty when unreadable)."""
        try:
            data = yamlio.read_file(self.fleet.state_dir / name)
        except FleetqError:
            return {}
        out: dict[str, dt.datetime] = {}
        for k, v in (data if isinstance(data, dict) else {}).items():
            try:
                when = parse_time(v)
            except (TypeError, ValueError):
                when = None
            if isinstance(k, str) and when is not None:
                out[k] = when
        return out

    def keep_times(self, name: str, times: dict[str, dt.datetime]) -> None:
        path = self.fleet.state_dir / name
        try:
            yamlio.write_file(path, {k: fmt_time(v) for k, v in sorted(times.items())})
        except (OSError, FleetqError) as e:
            log.warning("cannot keep %s: %s", path, e)

    def timing(self) -> liveness.Timing:
        """The lease and heartbeat this worker keeps (flags first; fleet.yaml's pair when it holds).

        Flags that cannot fence were refused when the worker was made; a fleet.yaml pair that
        cannot (a hand edit) is logged once and replaced by its lease with the heartbeat following it."""
        settings = self.cfg.settings if self.cfg else {}
        default = float(DEFAULT_SETTINGS["lease"])
        try:
            return liveness.effective(self._opts.get("lease"), self._opts.get("heartbeat"), settings, default)
        except UsageError as e:
            if str(e) not in self.reported_bad:
                self.reported_bad.add(str(e))
                log.error("%s (using a heartbeat of lease / %d)", e, liveness.HEARTBEAT_SHARE)
            return liveness.timing(float(settings.get("lease") or default))

    def setting(self, key: str) -> Any:
        """A flag, else the fleet config (``slots``: this machine's, 2 before the config is read)."""
        if key in ("lease", "heartbeat"):
            t = self.timing()
            return t.lease if key == "lease" else t.heartbeat
        v = self._opts.get(key)
        if v is not None:
            return v
        if key == "slots":
            return self.cfg.machine(self.fleet.machine).slots if self.cfg else 2
        return self.cfg.get(key) if self.cfg else None
