"""Heartbeats: each worker's state on its own ref, and liveness judged by local observation.

A heartbeat is a parentless commit on ``refs/fleetq/machines/<name>`` holding
``state.yaml``; one writer per ref, so no contention and no growth of main's
history. Whether a machine is alive is judged by when *this* machine saw its
ref change (clock skew between machines never matters); a machine never
observed before falls back to the time written in its heartbeat.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fleetq
from fleetq import yamlio
from fleetq.core import clock, liveness
from fleetq.core.clone import Fleet
from fleetq.core.task import fmt_time, now_utc, parse_time
from fleetq.errors import FleetqError
from fleetq.layout import MACHINE_REFS

STATE_FILE = "state.yaml"
RECENT = 30.0  # seconds: a ref change seen within this of our previous look is dated by our clock


def ref_of(machine: str) -> str:
    return f"{MACHINE_REFS}/{machine}"


def load_metrics() -> dict[str, float]:
    """CPU %, memory % and load average (psutil), for placement."""
    import psutil

    try:
        load1, load5, _ = os.getloadavg()
    except (AttributeError, OSError):
        load1 = load5 = 0.0
    cpus = os.cpu_count() or 1
    return {
        "cpu": round(psutil.cpu_percent(interval=None), 1),
        "memory": round(psutil.virtual_memory().percent, 1),
        "load1": round(load1, 2),
        "load5": round(load5, 2),
        "load_pct": round(100.0 * load1 / cpus, 1),
        "cpus": cpus,
    }


def beat(fleet: Fleet, info: dict[str, Any]) -> str:
    """Publish this machine's state; returns the heartbeat commit."""
    doc = {
        "machine": fleet.machine,
        "time": fmt_time(now_utc()),
        "version": fleetq.__version__,
        "host": socket.gethostname(),
        "clone": str(fleet.root),
        "pid": os.getpid(),
        **info,
    }
    repo = fleet.repo
    tree = repo.apply(None, {STATE_FILE: yamlio.dump_plain(doc).encode()})
    sha = repo.commit(tree, [], f"heartbeat {fleet.machine} #{info.get('seq', 0)}\n", fleet.machine)
    repo.push_refs([f"+{sha}:{ref_of(fleet.machine)}"])
    try:
        repo.set_ref(ref_of(fleet.machine), sha)
    except FleetqError:
        pass  # the local copy is a cache (a fetch may hold the ref's lock); the push is what counts
    return sha


@dataclass
class Beat:
    machine: str
    sha: str
    state: dict[str, Any]
    age: float  # seconds since this machine saw it change (or since its own time stamp)
    observed: bool  # age judged by local observation

    def alive(self, lease: float) -> bool:
        """Holds its lease: not ``stopped``, and heard from within the longer of ``lease`` and its own."""
        return liveness.alive(self.state, self.age, lease)

    @property
    def running(self) -> list[str | None]:
        """The ids of the tasks the beat says are running (None for an entry that names none)."""
        return [r.get("id") if isinstance(r, dict) else str(r) for r in self.state.get("running") or []]


class Observer:
    """Remembers, in the clone, when each heartbeat ref was first seen with its current value."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.path: Path = fleet.state_dir / "observed.yaml"

    def _load(self) -> dict[str, Any]:
        try:
            data = yamlio.read_file(self.path)
        except FleetqError:
            data = None
        return data if isinstance(data, dict) else {}

    def read(self, *, fetch: bool = True) -> dict[str, Beat]:
        """Every machine's latest heartbeat, with its locally observed age (core/clock.py: monotonic)."""
        repo = self.fleet.repo
        if fetch:
            with self.fleet.lock:
                repo.fetch(machines=True)
        refs = repo.refs_under(MACHINE_REFS)
        seen = self._load()
        now = clock.Mark.now()
        last = clock.Mark.load(seen.get("#last_read"))
        recent = last is not None and last.age() < RECENT
        stepped = bool(last and last.jumped())  # our wall clock jumped: time stamps cannot be placed
        seen["#last_read"] = now.plain()
        beats: dict[str, Beat] = {}
        for ref, sha in refs.items():
            name = ref[len(MACHINE_REFS) + 1 :]
            prev = seen.get(name)
            mark = clock.Mark.load(prev)
            state = self._state(sha)
            if mark is None or not isinstance(prev, dict) or prev.get("sha") != sha:
                stamp = parse_time(state.get("time"))
                # Watched it change since a recent look: our own clock dates it. Otherwise it changed
                # some time since our last look; its own time stamp, kept within that window, dates it,
                # unless a clock jumped (ours between looks, or theirs: a stamp in the future or going
                # back): then liveness is unknown and it counts from now, never as expired.
                changed = isinstance(prev, dict) and prev.get("sha") != sha
                observed = changed and recent
                ago = 0.0
                if stamp is not None and not observed and not stepped:
                    s = stamp.timestamp()
                    prev_stamp = prev.get("stamp") if isinstance(prev, dict) else None
                    back = isinstance(prev_stamp, int | float) and s < float(prev_stamp)
                    if s <= now.wall + clock.JUMP and not back:
                        floor = last.wall if last is not None and isinstance(prev, dict) else 0.0
                        ago = max(0.0, now.wall - max(s, floor))
                entry = {"sha": sha, **clock.Mark.now(ago=ago).plain(), "observed": observed}
                if stamp is not None:
                    entry["stamp"] = stamp.timestamp()
                seen[name] = entry
                mark = clock.Mark.load(entry)
            beats[name] = Beat(name, sha, state, mark.age() if mark else 0.0, bool(seen[name].get("observed")))
        try:
            yamlio.write_file(self.path, seen)
        except FleetqError:
            pass  # observations are a cache; a full disk must not stop the worker
        return beats

    def silent_for(self, machine: str) -> float:
        """Seconds since this clone first noticed ``machine`` holding claims with no heartbeat ref at all."""
        seen = self._load()
        key = f"{machine}#missing"
        mark = clock.Mark.load(seen.get(key))
        if mark is None:
            mark = clock.Mark.now()
            seen[key] = {"sha": None, **mark.plain(), "observed": True}
            try:
                yamlio.write_file(self.path, seen)
            except FleetqError:
                pass
        return mark.age()

    def _state(self, sha: str) -> dict[str, Any]:
        repo = self.fleet.repo
        try:
            e = repo.lookup(repo.tree_of(sha), STATE_FILE)
            data = yamlio.load_safe(repo.read_blob(e.sha), STATE_FILE) if e else None
        except FleetqError:
            data = None
        return yamlio.to_plain(data) if isinstance(data, dict) else {}
