"""Where should this run? Ranking machines for a task (docs/design.md, "Matchmaking": the submit side).

Requirements are the worker's own hard filter (``matching.blocker``: type and
``requires`` among the capabilities, the agent installed); rank is a composite
load score from the heartbeat refs, ``weights · (cpu %, memory %, load %) / 100``
(lower is better), with a penalty for a machine already picked in the same batch
and for one whose slots are all busy. Metrics of a machine whose heartbeat is
older than the lease are stale and not trusted. With no fresh metrics at all the
choice is round-robin, its cursor kept in the clone's state directory. Every
candidate gets a one-line explanation.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetq import yamlio
from fleetq.core.config import FleetConfig, MachineSpec
from fleetq.core.heartbeat import Beat
from fleetq.core.matching import Seat, blocker, lacking
from fleetq.core.snapshot import Snapshot
from fleetq.core.task import Task
from fleetq.errors import FleetqError

DEFAULT_WEIGHTS = {"cpu": 0.4, "memory": 0.3, "load": 0.3}
DEFAULT_PENALTY = 0.25  # score added per earlier pick of the same machine in one batch, and for full slots
CURSOR_FILE = "placement.yaml"


# ---------------------------------------------------------------- metrics


def weights_of(cfg: FleetConfig | None) -> dict[str, float]:
    """cpu / memory / load weights from config/fleet.yaml (``load_average`` and ``mem`` accepted)."""
    raw = (cfg.get("load_weights") if cfg else None) or {}
    if not isinstance(raw, dict):
        raise FleetqError("config/fleet.yaml: load_weights must be a mapping of cpu, memory, load")
    out = dict(DEFAULT_WEIGHTS)
    for key, names in (("cpu", ("cpu",)), ("memory", ("memory", "mem")), ("load", ("load", "load_average"))):
        for n in names:
            if isinstance(raw.get(n), int | float) and not isinstance(raw.get(n), bool):
                out[key] = float(raw[n])
    return out


def load_score(load: dict[str, Any] | None, weights: dict[str, float]) -> float | None:
    """The composite score of one heartbeat's load (None when a metric is missing)."""
    if not isinstance(load, dict):
        return None
    values = [load.get("cpu"), load.get("memory"), load.get("load_pct")]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return None
    cpu, mem, lp = (float(v) for v in values)  # type: ignore[arg-type]
    return round((weights["cpu"] * cpu + weights["memory"] * mem + weights["load"] * lp) / 100.0, 3)


def formula(load: dict[str, Any], weights: dict[str, float]) -> str:
    """``0.4×12% cpu + 0.3×35% mem + 0.3×9% load``."""
    return (
        f"{weights['cpu']:g}×{load.get('cpu', 0):g}% cpu + {weights['memory']:g}×{load.get('memory', 0):g}% mem"
        f" + {weights['load']:g}×{load.get('load_pct', 0):g}% load"
    )


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


@dataclass
class Metrics:
    """One machine's heartbeat as placement sees it."""

    beat: Beat | None
    online: bool
    fresh: bool  # load metrics trusted (online, and present)
    score: float | None
    load: dict[str, Any]
    stale_why: str = ""

    @property
    def age(self) -> float | None:
        return self.beat.age if self.beat else None


def metrics(beat: Beat | None, lease: float, weights: dict[str, float]) -> Metrics:
    if beat is None:
        return Metrics(None, False, False, None, {}, "no heartbeat ever (no worker has run there)")
    raw = beat.state.get("load")
    load: dict[str, Any] = raw if isinstance(raw, dict) else {}
    online = beat.alive(lease)
    score = load_score(load, weights)
    if not online:
        why = f"offline: last heartbeat {ago(beat.age)} ago (lease {lease:g}s); metrics stale, not trusted"
        return Metrics(beat, False, False, score, load, why)
    if score is None:
        return Metrics(beat, True, False, None, load, "online, but its heartbeat carries no load metrics")
    return Metrics(beat, True, True, score, load)


def beats_by_machine(cfg: FleetConfig, beats: dict[str, Beat]) -> dict[str, Beat]:
    """Heartbeats keyed by declared machine name (a beat under an alias counts for its machine; the newest wins)."""
    out: dict[str, Beat] = {}
    for name, b in beats.items():
        canon = cfg.canonical(name) or name
        if canon not in out or b.age < out[canon].age:
            out[canon] = b
    return out


# ---------------------------------------------------------------- what the task needs


@dataclass
class Need:
    type: str | None = None
    requires: list[str] = field(default_factory=list)
    agent: str | None = None

    def probe(self) -> Task:
        data: dict[str, Any] = {
            "id": "placement-probe",
            "type": self.type or "run_script",
            "requires": list(self.requires),
        }
        if self.agent:
            data["agent"] = self.agent
        return Task(data=data, state="pending", path="")


def blocked(need: Need, spec: MachineSpec, beat: Beat | None, snap: Snapshot | None) -> str | None:
    """Why ``spec`` may not run what ``need`` describes (the worker's rules); None when it may."""
    installed = set(beat.state.get("agents") or []) if beat and isinstance(beat.state.get("agents"), list) else None
    seat = Seat(spec, agents=installed)
    probe = need.probe()
    now = dt.datetime.now(dt.timezone.utc)
    if need.type:
        return blocker(probe, seat, snap, now, 0.0)  # type: ignore[arg-type]  # a probe has no dependencies
    lacks = lacking(spec, need.requires)
    if lacks:
        return lacks
    if need.agent and need.agent not in seat.installed():
        return f"agent {need.agent} is not installed here"
    return None


# ---------------------------------------------------------------- ranking


@dataclass
class Candidate:
    name: str
    spec: MachineSpec
    m: Metrics
    blocked: str | None = None
    penalty: float = 0.0
    notes: list[str] = field(default_factory=list)
    rr: bool = False  # ranked by round-robin

    @property
    def effective(self) -> float | None:
        return None if self.m.score is None or not self.m.fresh else round(self.m.score + self.penalty, 3)

    @property
    def slots_busy(self) -> bool:
        if not self.m.online or self.m.beat is None:
            return False
        slots = self.m.beat.state.get("slots") or self.spec.slots
        return isinstance(slots, int) and len(self.m.beat.running) >= slots

    def explain(self, weights: dict[str, float]) -> str:
        if self.blocked:
            return f"excluded: {self.blocked}"
        if self.m.fresh:
            text = f"score {self.m.score:.2f} = {formula(self.m.load, weights)}"
        else:
            text = self.m.stale_why
        if self.rr:
            text += "; round-robin order"
        extra = "; ".join(self.notes)
        return f"{text}; {extra}" if extra else text

    def to_json(self, weights: dict[str, float]) -> dict[str, Any]:
        return {
            "machine": self.name,
            "eligible": self.blocked is None,
            "online": self.m.online,
            "fresh": self.m.fresh,
            "score": self.m.score,
            "effective": self.effective,
            "penalty": self.penalty,
            "age": None if self.m.age is None else round(self.m.age, 1),
            "load": self.m.load,
            "why": self.explain(weights),
        }


@dataclass
class Ranking:
    ranked: list[Candidate]  # eligible machines, best first
    excluded: list[Candidate]
    mode: str  # "score" | "round-robin" | "none"
    why: str
    weights: dict[str, float]

    @property
    def choice(self) -> Candidate | None:
        return self.ranked[0] if self.ranked else None

    def to_json(self) -> dict[str, Any]:
        c = self.choice
        return {
            "choice": c.name if c else None,
            "mode": self.mode,
            "why": self.why,
            "weights": self.weights,
            "ranked": [x.to_json(self.weights) for x in self.ranked],
            "excluded": [x.to_json(self.weights) for x in self.excluded],
        }


class Placer:
    """Ranks the fleet's machines; remembers picks made in one batch and the round-robin cursor."""

    def __init__(
        self,
        cfg: FleetConfig,
        beats: dict[str, Beat],
        *,
        snap: Snapshot | None = None,
        state_dir: Path | None = None,
        lease: float | None = None,
    ) -> None:
        self.cfg = cfg
        self.snap = snap
        self.beats = beats_by_machine(cfg, beats)
        self.lease = float(lease if lease is not None else cfg.get("lease") or 60)
        self.weights = weights_of(cfg)
        penalty = cfg.get("placement_penalty")
        self.penalty = float(penalty) if isinstance(penalty, int | float) else DEFAULT_PENALTY
        self.cursor_path = state_dir / CURSOR_FILE if state_dir else None
        self.batch: Counter[str] = Counter()
        self._rr_last: str | None = None  # this batch's round-robin position (persisted when state_dir is given)

    def machines(self) -> list[MachineSpec]:
        return list(self.cfg.machines.values())

    def candidate(self, spec: MachineSpec, need: Need) -> Candidate:
        beat = self.beats.get(spec.name)
        c = Candidate(spec.name, spec, metrics(beat, self.lease, self.weights), blocked(need, spec, beat, self.snap))
        picks = self.batch[spec.name]
        if picks:
            c.penalty += self.penalty * picks
            c.notes.append(f"+{self.penalty * picks:g} already picked {picks}× in this batch")
        if c.slots_busy:
            c.penalty += self.penalty
            c.notes.append(f"+{self.penalty:g} all its slots are busy")
        return c

    def rank(self, need: Need | None = None, *, exclude: Iterable[str] = ()) -> Ranking:
        need = need or Need()
        skip = {self.cfg.canonical(x) or x for x in exclude}
        cands = [self.candidate(s, need) for s in self.machines() if s.name not in skip]
        eligible = [c for c in cands if c.blocked is None]
        excluded = [c for c in cands if c.blocked is not None]
        fresh = sorted((c for c in eligible if c.m.fresh), key=lambda c: (c.effective, c.name))
        if fresh:
            rest = self._unscored(c for c in eligible if not c.m.fresh)
            best = fresh[0]
            why = (
                f"lowest load score ({best.effective:.2f}) among {len(fresh)} machine(s) with fresh metrics"
                if len(fresh) > 1
                else f"the only eligible machine with fresh load metrics (score {best.effective:.2f})"
            )
            return Ranking(fresh + rest, excluded, "score", why, self.weights)
        if not eligible:
            return Ranking([], excluded, "none", self._none_why(need, excluded), self.weights)
        live = [c for c in eligible if c.m.online]
        if not live:  # a pin to a machine nobody works on would wait forever
            names = ", ".join(c.name for c in eligible)
            why = f"no live worker on any eligible machine ({names}): start `fleetq work` on one, or name it"
            return Ranking([], excluded + eligible, "none", why, self.weights)
        ordered = self._round_robin(live) + [c for c in eligible if not c.m.online]
        why = "no fresh load metrics on any eligible machine: round-robin among those with a live worker"
        last = self._cursor()
        why += f" (next after {last})" if last else ""
        return Ranking(ordered, excluded, "round-robin", why, self.weights)

    def pick(self, need: Need | None = None, *, exclude: Iterable[str] = ()) -> Ranking:
        """Rank, then count the choice in this batch (and move the round-robin cursor)."""
        r = self.rank(need, exclude=exclude)
        if r.choice is not None:
            self.batch[r.choice.name] += 1
            if r.mode == "round-robin":
                self._rr_last = r.choice.name
                self._save_cursor(r.choice.name)
        return r

    # -- helpers --
    @staticmethod
    def _unscored(cands: Iterable[Candidate]) -> list[Candidate]:
        """Machines without trusted metrics, after the scored ones: online first, then most recently seen."""
        return sorted(cands, key=lambda c: (not c.m.online, c.m.age if c.m.age is not None else float("inf"), c.name))

    def _round_robin(self, eligible: list[Candidate]) -> list[Candidate]:
        names = sorted(c.name for c in eligible)
        last = self._cursor()
        start = 0
        if last is not None:
            start = next((i for i, n in enumerate(names) if n > last), 0)
        order = {n: i for i, n in enumerate(names[start:] + names[:start])}
        for c in eligible:
            c.rr = True
        # Online machines first (in rotation order); offline ones only when no machine is online.
        return sorted(eligible, key=lambda c: (not c.m.online, order[c.name]))

    def _cursor(self) -> str | None:
        if self._rr_last is not None:
            return self._rr_last
        if self.cursor_path is None:
            return None
        try:
            data = yamlio.read_file(self.cursor_path)
        except FleetqError:
            return None
        last = data.get("round_robin_last") if isinstance(data, dict) else None
        return str(last) if last else None

    def _save_cursor(self, name: str) -> None:
        if self.cursor_path is None:
            return
        try:
            yamlio.write_file(self.cursor_path, {"round_robin_last": name})
        except FleetqError:
            pass  # a cache: losing it only restarts the rotation

    def _none_why(self, need: Need, excluded: list[Candidate]) -> str:
        if not excluded:
            return "no machines are declared in config/machines.yaml"
        what = [
            f"type {need.type}" if need.type else "",
            *(need.requires or []),
            f"agent {need.agent}" if need.agent else "",
        ]
        wanted = ", ".join(w for w in what if w) or "this task"
        return f"no declared machine can run {wanted}"
