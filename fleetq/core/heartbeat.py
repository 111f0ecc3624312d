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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fleetq
from fleetq import yamlio
from fleetq.core import clock, liveness
from fleetq.core.cas import STATS
from fleetq.core.clone import Fleet
from fleetq.core.states import valid_id
from fleetq.core.task import fmt_time, now_utc, parse_time
from fleetq.errors import FleetqError
from fleetq.git.objects import shown
from fleetq.git.repo import GitRepo
from fleetq.layout import MACHINE_REFS

STATE_FILE = "state.yaml"
RECENT = 30.0  # seconds: a ref change seen within this of our previous look is dated by our clock


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def _text(v: Any) -> bool:
    return isinstance(v, str) and len(v) <= 4096


# What a field of a heartbeat must be: anyone who can push writes these refs, and every tool reads them.
FIELDS: dict[str, Callable[[Any], bool]] = {
    **dict.fromkeys(("machine", "time", "version", "host", "clone", "state"), _text),
    **dict.fromkeys(("pid", "seq"), lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "slots": lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 < v < 10_000,
    "lease": lambda v: _num(v) and v > 0,
    "heartbeat": lambda v: _num(v) and v > 0,
    **dict.fromkeys(("capabilities", "agents"), lambda v: isinstance(v, list) and all(_text(x) for x in v)),
    "free": lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 10_000,
    "delegate": lambda v: isinstance(v, bool),
    # push counters (cas.Stats.counters): main_tried, main_landed, own_tried, own_landed
    "pushes": lambda v: isinstance(v, dict) and all(isinstance(x, int) and not isinstance(x, bool) for x in v.values()),
    # finished runs advertised for folding (core/delegation.py reads them typed: delegation.advertised)
    "results": lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
}
RUN_FIELDS: dict[str, Callable[[Any], bool]] = {
    **dict.fromkeys(("id", "type", "agent", "started"), _text),
    "attempt": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "cost_usd": _num,
}


def clean_state(data: Any) -> tuple[dict[str, Any], list[str]]:
    """A heartbeat's state with every field of the wrong type left out, and what was wrong (one phrase each).

    ``running`` keeps its mappings (fields typed likewise), ``load`` its numbers; other keys pass as they are.
    """
    if not isinstance(data, dict):
        return {}, [f"{STATE_FILE} holds {type(data).__name__}, not a mapping"] if data is not None else []
    out: dict[str, Any] = {}
    bad: list[str] = []
    for key, value in data.items():
        check = FIELDS.get(key)
        if value is None or (check is not None and not check(value)):
            if value is not None:
                bad.append(f"'{key}' is {type(value).__name__}")
            continue
        if key == "running":
            ok = isinstance(value, list) and all(isinstance(r, dict) for r in value)
            value = [_typed(r, RUN_FIELDS) for r in value if isinstance(r, dict)] if isinstance(value, list) else []
            if not ok:
                bad.append("'running' is not a list of mappings")
        elif key == "load":
            ok = isinstance(value, dict) and all(_num(v) for v in value.values())
            value = {str(k): v for k, v in value.items() if _num(v)} if isinstance(value, dict) else {}
            if not ok:
                bad.append("'load' is not a mapping of numbers")
        out[str(key)] = value
    return out, bad


def _typed(entry: dict[str, Any], fields: dict[str, Callable[[Any], bool]]) -> dict[str, Any]:
    return {str(k): v for k, v in entry.items() if k not in fields or fields[k](v)}


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
    STATS.own_pushes += 1
    repo.push_refs([f"+{sha}:{ref_of(fleet.machine)}"])
    STATS.own_landed += 1
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
    problems: list[str] = field(default_factory=list)  # what was wrong with it (clean_state left it out)

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
        self.problems: list[tuple[str, str]] = []  # (ref, why) of the heartbeats the last read left out or mended

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
        self.problems = []
        for ref, sha in refs.items():
            name = ref[len(MACHINE_REFS) + 1 :]
            if not valid_id(name):  # a machine name is a task-id-like slug (core/clone.py)
                self.problems.append((shown(ref), "not a machine name; ignored"))
                continue
            prev = seen.get(name)
            mark = clock.Mark.load(prev)
            state, bad = self._state(sha)
            if bad:
                self.problems.append((ref, f"a bad heartbeat ({'; '.join(bad)}); read without it"))
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
            beats[name] = Beat(name, sha, state, mark.age() if mark else 0.0, bool(seen[name].get("observed")), bad)
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

    def _state(self, sha: str) -> tuple[dict[str, Any], list[str]]:
        """The heartbeat commit's state, typed (``clean_state``), and what was wrong with it."""
        return read_state(self.fleet.repo, sha)


def read_state(repo: GitRepo, sha: str) -> tuple[dict[str, Any], list[str]]:
    """A heartbeat commit's typed state and its problems: not a commit, no state.yaml, bad YAML, odd types."""
    try:
        e = repo.lookup(repo.tree_of(sha), STATE_FILE)
        if e is None or e.is_tree:
            return {}, [f"no {STATE_FILE} in it"]
        data = yamlio.to_plain(yamlio.load_safe(repo.read_blob(e.sha), STATE_FILE))
    except FleetqError as e:
        return {}, [str(e)]
    return clean_state(data)
