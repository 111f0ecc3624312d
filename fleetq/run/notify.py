"""Being told: events for tasks this machine created, and the user's notifier command.

An *event* is a task created by this machine found in needs_human, failed or done
(one per (id, state, attempt, finish time)). ``new_events`` finds the ones not seen
yet in a snapshot; the worker, ``fleetq wait`` and ``fleetq monitor --watch`` all use
it. :class:`Notifier` keeps what was seen in a small file in the fleet's state dir
(under a file lock) so a restart, or a ``wait`` running next to the worker, never
tells twice, and a first run starts from "now" rather than the whole history.

The command comes from ``config/notify.yaml`` (or a ``notify:`` key in
``config/fleet.yaml``), documented in that file. It runs in the background with a
timeout; a notifier that fails or hangs is logged and never blocks the queue.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shlex
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetq import yamlio
from fleetq.core.clone import Fleet
from fleetq.core.snapshot import Snapshot
from fleetq.core.states import DONE, FAILED, NEEDS_HUMAN
from fleetq.core.task import Task, now_utc, parse_time
from fleetq.errors import FleetqError
from fleetq.layout import NOTIFY
from fleetq.run.procs import run_command

log = logging.getLogger("fleetq.run.notify")
NOTIFY_FILE = NOTIFY
EVENT_STATES = (NEEDS_HUMAN, FAILED, DONE)
PLACEHOLDERS = ("id", "title", "state", "from", "machine", "error", "type", "agent", "attempt", "by")
DEFAULT_TIMEOUT = 30.0
DONE_DAYS = 7  # done/ day shards looked at for events (older ones finished long ago)
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class Event:
    id: str
    state: str
    attempt: int
    title: str = ""
    type: str = ""
    agent: str = ""
    machine: str = ""  # where it ran
    error: str = ""
    by: str = ""  # the machine that created it
    at: str = ""  # when it finished (result.finished_at)

    @property
    def key(self) -> str:
        return f"{self.id}:{self.state}:{self.attempt}:{self.at}"

    def values(self) -> dict[str, str]:
        """Placeholder values; ``from`` is the machine that created the task (the event's sender)."""
        return {
            "id": self.id,
            "title": self.title,
            "state": self.state,
            "from": self.by,
            "machine": self.machine,
            "error": self.error,
            "type": self.type,
            "agent": self.agent,
            "attempt": str(self.attempt),
            "by": self.by,
        }

    def env(self) -> dict[str, str]:
        """The same data as FLEETQ_EVENT_* variables (safe for any title: no quoting involved)."""
        return {f"FLEETQ_EVENT_{k.upper()}": v for k, v in self.values().items()}

    def line(self, now: dt.datetime | None = None) -> str:
        """``12:03:04 fix-login done on mini`` (local time), with the error when it did not succeed."""
        when = parse_time(self.at) or now or now_utc()
        text = f"{when.astimezone():%H:%M:%S} {self.id} {self.state}"
        if self.machine:
            text += f" on {self.machine}"
        if self.error and self.state != DONE:
            text += f": {' '.join(self.error.split())[:120]}"
        return text

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def event_of(t: Task) -> Event:
    r = t.result
    return Event(
        id=t.id,
        state=t.state,
        attempt=int(r.get("attempt") or t.attempts or 0),
        title=t.title or "",
        type=t.type,
        agent=str(t.agent or r.get("agent") or ""),
        machine=str(r.get("machine") or t.claim.get("machine") or ""),
        error=str(r.get("error") or ""),
        by=str(t.data.get("created_by") or ""),
        at=str(r.get("finished_at") or ""),
    )


def terminal_tasks(snap: Snapshot, *, done_days: int = DONE_DAYS) -> Iterable[Task]:
    """Tasks in needs_human and failed, and in the last ``done_days`` day shards of done."""
    yield from snap.tasks([NEEDS_HUMAN, FAILED])
    yield from snap.recent_done(done_days)


def new_events(snap: Snapshot, seen: set[str], select: Callable[[Task], bool]) -> tuple[list[Event], set[str]]:
    """Events of the selected tasks not in ``seen``: (new events, oldest first; every current key)."""
    current: dict[str, Event] = {}
    for t in terminal_tasks(snap):
        if select(t):
            e = event_of(t)
            current[e.key] = e
    new = sorted((e for k, e in current.items() if k not in seen), key=lambda e: (e.at, e.id))
    return new, set(current)


class EventFeed:
    """Events as a watcher sees them (in memory): those new since it started, or with ``from_start``
    also the ones already there at its first look. ``fleetq wait`` and ``monitor --watch`` print these."""

    def __init__(self, select: Callable[[Task], bool], *, from_start: bool = False) -> None:
        self.select = select
        self.seen: set[str] | None = set() if from_start else None

    def poll(self, snap: Snapshot) -> list[Event]:
        new, current = new_events(snap, self.seen or set(), self.select)
        first = self.seen is None
        self.seen = (self.seen or set()) | current
        return [] if first else new


def created_by(names: Iterable[str]) -> Callable[[Task], bool]:
    """Select the tasks created by this machine (any of its names)."""
    wanted = {n for n in names if n}
    return lambda t: t.data.get("created_by") in wanted


# ---------------------------------------------------------------- configuration


@dataclass
class NotifyConfig:
    on: dict[str, list[str]] = field(default_factory=dict)  # state -> argv template
    timeout: float = DEFAULT_TIMEOUT

    def argv(self, e: Event) -> list[str] | None:
        """The command for this event: the template split first, then placeholders filled in each word
        (a title with quotes or spaces stays one argument)."""
        template = self.on.get(e.state)
        if not template:
            return None
        values = e.values()
        return [_PLACEHOLDER.sub(lambda m: values[m.group(1)], word) for word in template]


def _words(value: Any, where: str) -> list[str] | None:
    if value is None or value is False or value == "":
        return None
    if isinstance(value, str):
        try:
            words = shlex.split(value)
        except ValueError as e:
            raise FleetqError(f"{where}: cannot split the command ({e})") from None
    elif isinstance(value, list) and all(isinstance(x, str | int | float) for x in value):
        words = [str(x) for x in value]
    else:
        raise FleetqError(f"{where}: a command is a string or a list of words")
    return words or None


def parse_config(data: Any, where: str, machine: str) -> NotifyConfig | None:
    """``{command, on: {state: command}, timeout, machines: {name: {same keys}}}`` -> config (None: nothing set)."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise FleetqError(f"{where}: expected a mapping (command, on, timeout, machines)")
    unknown = set(data) - {"command", "on", "timeout", "machines"}
    if unknown:
        raise FleetqError(
            f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} (command, on, timeout, machines)"
        )
    machines = data.get("machines") or {}
    if not isinstance(machines, dict):
        raise FleetqError(f"{where}: machines must map a machine name to its own command/on/timeout")
    mine = machines.get(machine) or {}
    if not isinstance(mine, dict):
        raise FleetqError(f"{where}: machines.{machine} must be a mapping")
    merged = {**{k: v for k, v in data.items() if k != "machines"}, **mine}
    on = merged.get("on") or {}
    if not isinstance(on, dict) or not set(on) <= set(EVENT_STATES):
        raise FleetqError(f"{where}: on maps {', '.join(EVENT_STATES)} to a command")
    default = _words(merged.get("command"), f"{where}: command")
    cfg = NotifyConfig()
    for state in EVENT_STATES:
        words = _words(on[state], f"{where}: on.{state}") if state in on else default
        if words:
            cfg.on[state] = words
    timeout = merged.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise FleetqError(f"{where}: timeout must be a positive number of seconds")
    cfg.timeout = float(timeout)
    return cfg if cfg.on else None


def load_config(snap: Snapshot, machine: str) -> NotifyConfig | None:
    """config/notify.yaml at the head, else the ``notify:`` key of config/fleet.yaml; None when neither sets one."""
    data = snap.read_yaml(NOTIFY_FILE)
    if data is not None:
        return parse_config(data, NOTIFY_FILE, machine)
    settings = snap.read_yaml("config/fleet.yaml")
    if isinstance(settings, dict) and settings.get("notify") is not None:
        return parse_config(settings["notify"], "config/fleet.yaml: notify", machine)
    return None


# ---------------------------------------------------------------- running the notifier


@dataclass
class Sent:
    event: Event
    argv: list[str]
    ok: bool
    detail: str  # exit code, or why it could not run


def run_notifier(cfg: NotifyConfig, e: Event, log_path: os.PathLike[str] | str) -> Sent | None:
    """Run the command for ``e`` now (its own process group, killed at the timeout); None: none configured."""
    argv = cfg.argv(e)
    if argv is None:
        return None
    try:
        proc = run_command(argv, cwd=None, env={**os.environ, **e.env()}, timeout=cfg.timeout, log_path=Path(log_path))
    except OSError as err:
        return Sent(e, argv, False, f"cannot run {argv[0]}: {err.strerror or err}")
    if proc.timed_out:
        return Sent(e, argv, False, f"timed out after {cfg.timeout:g}s")
    if proc.exit_code != 0:
        tail = proc.stderr_tail.strip().splitlines()
        return Sent(e, argv, False, f"exit {proc.exit_code}" + (f": {tail[-1]}" if tail else ""))
    return Sent(e, argv, True, "exit 0")


class Notifier:
    """Finds this machine's new events in each snapshot and runs the notifier for them, once each."""

    def __init__(
        self, fleet: Fleet, *, names: Iterable[str] = (), gate: Callable[[str | None], str | None] | None = None
    ) -> None:
        self.fleet = fleet
        self.gate = gate  # head -> why its config must not be used (trust/signing.notify_gate: a tainted file)
        self.select = created_by([fleet.machine, *names])
        self.state_path = fleet.state_dir / "notified.yaml"
        self.log_path = fleet.state_dir / "logs" / "notify.log"
        from filelock import FileLock

        self.lock = FileLock(str(fleet.state_dir / "notified.lock"))
        self.threads: list[threading.Thread] = []
        self._reported: set[str] = set()  # failure kinds already logged
        self._last_head: str | None = None

    def _read_seen(self) -> set[str] | None:
        try:
            data = yamlio.read_file(self.state_path)
        except FleetqError:
            data = None
        return {str(k) for k in data.get("seen") or []} if isinstance(data, dict) else None

    def check(self, snap: Snapshot) -> list[Event]:
        """The events new since the last check (by any process on this clone); fires the notifier for them.

        The first check on a clone only records what is there. Never raises.
        """
        if snap.commit is not None and snap.commit == self._last_head:
            return []
        why = self.gate(snap.commit) if self.gate else None
        if why:  # nothing recorded as seen: once the config is trusted again, its notifier tells
            self._once(f"gate:{why}", "notifications: %s", why)
            return []
        new: list[Event] = []
        try:
            cfg = load_config(snap, self.fleet.machine)
            with self.lock:
                if cfg is None:  # nothing to run: no scan; once one is set, it starts from then
                    self.state_path.unlink(missing_ok=True)
                else:
                    seen = self._read_seen()
                    new, current = new_events(snap, seen or set(), self.select)
                    if seen is None:
                        new = []  # first run: start from now, not from the whole history
                    yamlio.write_file(self.state_path, {"seen": sorted(current)})
            self._last_head = snap.commit
        except (FleetqError, OSError) as err:
            self._once(f"config:{err}", "notifications: %s", err)
            return []
        if cfg is None:
            return new  # nothing configured: no events
        for e in new:
            self.fire(cfg, e)
        return new

    def fire(self, cfg: NotifyConfig, e: Event) -> None:
        """Run the notifier in the background; a failure is logged (once per kind), never raised."""

        def work() -> None:
            try:
                sent = run_notifier(cfg, e, self.log_path)
            except Exception as err:  # noqa: BLE001 - a notifier must never take anything down
                self._once(f"crash:{type(err).__name__}", "notifier for %s crashed: %s", e.id, err)
                return
            if sent is not None and not sent.ok:
                self._once(
                    f"{sent.argv[0]}:{sent.detail.split(':')[0]}",
                    "notifier %s (%s %s) did not work: %s",
                    sent.argv[0],
                    e.id,
                    e.state,
                    sent.detail,
                )

        self.threads = [t for t in self.threads if t.is_alive()]
        t = threading.Thread(target=work, name=f"notify-{e.id}", daemon=True)
        self.threads.append(t)
        t.start()

    def drain(self, timeout: float | None = None) -> None:
        """Wait for running notifiers (a command about to exit lets them finish)."""
        limit = timeout if timeout is not None else DEFAULT_TIMEOUT + 5
        for t in list(self.threads):
            t.join(limit)

    def _once(self, kind: str, msg: str, *args: Any) -> None:
        level = logging.DEBUG if kind in self._reported else logging.WARNING
        self._reported.add(kind)
        log.log(level, msg, *args)
