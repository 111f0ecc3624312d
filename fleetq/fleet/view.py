"""Seeing the fleet: who is online, what runs where, load, and per-machine totals.

Everything here is read from two places: the heartbeat refs (liveness judged by
this machine's own observation, docs/design.md, "Liveness and fencing") and the queue at the remote's
head. Nothing is written except the Observer's cache and the done totals (listing.done_totals).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from fleetq.core import listing, live
from fleetq.core.clone import Fleet
from fleetq.core.config import FleetConfig, MachineSpec
from fleetq.core.heartbeat import Beat, Observer
from fleetq.core.liveness import announced_lease
from fleetq.core.snapshot import Problem, Snapshot
from fleetq.core.states import CLAIMED, DONE, FAILED, NEEDS_HUMAN, PENDING, STATES
from fleetq.core.task import Task, now_utc, parse_time
from fleetq.errors import RemoteError
from fleetq.fleet.placement import Metrics, ago, beats_by_machine, metrics, weights_of
from fleetq.run.notify import Event, EventFeed, created_by

DONE_TOTALS = "done-totals.json"  # in the clone's state dir: per-day-shard totals for `status`


@dataclass
class View:
    """One consistent look at the fleet: the queue snapshot, its config, and the heartbeats."""

    fleet: Fleet
    snap: Snapshot
    cfg: FleetConfig
    beats: dict[str, Beat]  # by declared machine name (aliases folded in)
    warning: str | None = None
    problems: list[Problem] = field(default_factory=list)
    _tasks: dict[str, list[Task]] = field(default_factory=dict)

    @property
    def lease(self) -> float:
        return float(self.cfg.get("lease") or 60)

    def tasks(self, state: str) -> list[Task]:
        if state not in self._tasks:
            self._tasks[state] = self.snap.tasks([state], self.problems)
        return self._tasks[state]

    def names(self) -> list[str]:
        """Declared machines in config order, then machines that beat without being declared."""
        return list(self.cfg.machines) + sorted(n for n in self.beats if n not in self.cfg.machines)

    def spec(self, name: str) -> MachineSpec:
        return self.cfg.machine(name)

    def lease_of(self, name: str) -> tuple[float, str]:
        """(lease, where from) of one machine: the lease its heartbeat announces (``work --lease``),
        else the fleet's."""
        b = self.beats.get(name)
        own = announced_lease(b.state) if b is not None else None
        return (own, "worker") if own is not None else (self.lease, "fleet")

    def metrics(self, name: str) -> Metrics:
        return metrics(self.beats.get(name), self.lease, weights_of(self.cfg))

    def machine_of(self, t: Task) -> str | None:
        """The machine a task ran (or runs) on, by its declared name."""
        by = t.result.get("machine") or t.claim.get("machine")
        return (self.cfg.canonical(by) or by) if by else None

    def running(self, name: str) -> list[dict[str, Any]]:
        """The heartbeat's running entries that the queue agrees on (claimed by this machine).

        A heartbeat can lag a finished task by one beat; the queue at the head is the truth.
        """
        m = self.metrics(name)
        if not m.online or m.beat is None:
            return []
        claimed = {t.id: t for t in self.tasks(CLAIMED)}
        return [
            e
            for e in m.beat.state.get("running") or []
            if isinstance(e, dict)
            and str(e.get("id")) in claimed
            and self.machine_of(claimed[str(e.get("id"))]) == name
        ]

    def online_count(self) -> int:
        return sum(1 for n in self.names() if self.metrics(n).online)


def open_view(fleet: Fleet, *, fetch: bool = True) -> View:
    """Fetch once (main, the heartbeat and the live output refs), then read them; an unreachable remote
    shows the last fetch."""
    warning = None
    observer = Observer(fleet)
    try:
        if fetch:  # the heartbeats and the live output refs (monitor's last lines) in one fetch
            with fleet.lock:
                fleet.repo.fetch(machines=True, live=True)
        beats = observer.read(fetch=False)
    except RemoteError as e:
        warning = f"remote unreachable ({e}); showing the fleet as of the last fetch"
        beats = observer.read(fetch=False)
    snap = fleet.snapshot(fetch=False)
    cfg = fleet.config(snap)
    # A hostile or broken heartbeat ref (undeletable under denyDeletes) is one warning line, never a crash.
    problems = [Problem(ref, f"{ref}: {why}") for ref, why in observer.problems]
    return View(fleet, snap, cfg, beats_by_machine(cfg, beats), warning, problems)


def liveness(m: Metrics) -> str:
    """``online 3s`` / ``offline 5m`` / ``never seen``."""
    if m.beat is None:
        return "never seen"
    state = m.beat.state.get("state")
    word = "online" if m.online else "offline"
    if state == "stopped" or (m.online and state and state != "running"):
        word = f"{word} ({state})"
    return f"{word} {ago(m.age)}"


# ---------------------------------------------------------------- status


def status(v: View) -> list[dict[str, Any]]:
    """Per machine: liveness, slots, lease, active and finished counts, top agent, agent cost.

    Done tasks are counted from per-shard totals cached in the clone (listing.done_totals),
    so a long history costs one parse per day shard per clone, not one per call.
    """
    finished: dict[str, Counter[str]] = {}
    agents: dict[str, Counter[str]] = {}
    cost: dict[str, float] = {}
    per_state = {DONE: done_totals(v, v.problems).machines}
    for state in (FAILED, NEEDS_HUMAN):
        per_state[state] = {}
        for t in v.tasks(state):
            listing.tally(per_state[state], t)
    for state, totals in per_state.items():
        for raw, tally in totals.items():
            by = v.cfg.canonical(raw) or raw
            finished.setdefault(by, Counter())[state] += tally["n"]
            agents.setdefault(by, Counter()).update(tally["agents"])
            if tally["cost"] is not None:
                cost[by] = cost.get(by, 0.0) + tally["cost"]
    active = Counter(v.machine_of(t) for t in v.tasks(CLAIMED))
    pinned = Counter(v.cfg.canonical(t.target) or t.target for t in v.tasks(PENDING) if t.target)
    rows = []
    for name in v.names():
        m = v.metrics(name)
        spec = v.spec(name)
        running = len(v.running(name))
        slots = (m.beat.state.get("slots") if m.beat else None) or spec.slots  # typed: heartbeat.clean_state
        top = agents.get(name, Counter()).most_common(1)
        fin = finished.get(name, Counter())
        lease, lease_from = v.lease_of(name)
        rows.append(
            {
                "machine": name,
                "declared": spec.declared,
                "online": m.online,
                "liveness": liveness(m),
                "age": None if m.age is None else round(m.age, 1),
                "running": running,
                "slots": slots,
                "lease": lease,
                "lease_from": lease_from,
                "active": active.get(name, 0),
                "pending_pinned": pinned.get(name, 0),
                "done": fin[DONE],
                "failed": fin[FAILED],
                "needs_human": fin[NEEDS_HUMAN],
                "top_agent": top[0][0] if top else None,
                "top_agent_runs": top[0][1] if top else 0,
                "cost_usd": round(cost[name], 4) if name in cost else None,
                "version": m.beat.state.get("version") if m.beat else None,
                # push counters of its worker since it started (heartbeat `pushes`: main and own refs)
                "pushes": (m.beat.state.get("pushes") or None) if m.beat else None,
            }
        )
    return rows


def queue_counts(v: View) -> dict[str, int]:
    """Tasks per state; done is counted by file, never parsed (it can hold 100,000s)."""
    return {
        s: listing.done_count(v.snap, v.fleet.state_dir / DONE_TOTALS) if s == DONE else len(v.tasks(s)) for s in STATES
    }


def done_totals(v: View, problems: list[Problem] | None = None) -> listing.DoneTotals:
    return listing.done_totals(v.snap, v.fleet.state_dir / DONE_TOTALS, problems)


# ---------------------------------------------------------------- load


def load(v: View) -> list[dict[str, Any]]:
    """Per machine: CPU, memory, load average, composite score; stale metrics marked. Best first."""
    rows = []
    for name in v.names():
        m = v.metrics(name)
        ld = m.load
        rows.append(
            {
                "machine": name,
                "online": m.online,
                "fresh": m.fresh,
                "liveness": liveness(m),
                "cpu": ld.get("cpu"),
                "memory": ld.get("memory"),
                "load1": ld.get("load1"),
                "load5": ld.get("load5"),
                "cpus": ld.get("cpus"),
                "load_pct": ld.get("load_pct"),
                "score": m.score,
                "stale": None if m.fresh else (m.stale_why or "no metrics"),
            }
        )
    rows.sort(key=lambda r: (not r["fresh"], r["score"] if r["score"] is not None else 9e9, r["machine"]))
    return rows


# ---------------------------------------------------------------- monitor


def _elapsed(entry: dict[str, Any], beat: Beat) -> float | None:
    """Seconds a task has run, skew-free: (heartbeat time - start), both on the worker's clock,
    plus the beat's local age."""
    started, stamp = parse_time(entry.get("started")), parse_time(beat.state.get("time"))
    if started is None or stamp is None:
        return None
    return max(0.0, (stamp - started).total_seconds() + beat.age)


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def money(value: float | None) -> str:
    return "-" if value is None else f"${value:.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"


def monitor(v: View) -> list[dict[str, Any]]:
    """What runs where right now: per machine its running tasks (agent, elapsed, cost so far, last output line)
    and today's totals."""
    claimed = {t.id: t for t in v.tasks(CLAIMED)}
    today = now_utc().date()
    spent: dict[str, list[float]] = {}
    for t in [*v.snap.recent_done(2), *v.tasks(FAILED), *v.tasks(NEEDS_HUMAN)]:  # today's shard is among the newest 2
        fin = parse_time(t.result.get("finished_at"))
        by = v.machine_of(t)
        if by and fin and fin.date() == today:
            c = t.result.get("cost_usd")
            spent.setdefault(by, []).append(float(c) if isinstance(c, int | float) and not isinstance(c, bool) else 0.0)
    out = []
    for name in v.names():
        m = v.metrics(name)
        running = []
        for entry in v.running(name):
            t = claimed[str(entry.get("id"))]
            cost = entry.get("cost_usd")
            elapsed = _elapsed(entry, m.beat) if m.beat else None
            out_now = live.for_task(v.fleet.repo, t)  # what its worker last published of its output
            running.append(
                {
                    "id": entry.get("id"),
                    "type": entry.get("type") or t.type,
                    "agent": entry.get("agent") or t.agent,
                    "attempt": entry.get("attempt"),
                    "elapsed": None if elapsed is None else round(elapsed, 1),
                    "cost_usd": cost if isinstance(cost, int | float) else None,
                    "title": t.title,
                    "last_output": out_now.last_line() if out_now else None,
                }
            )
        day = spent.get(name, [])
        out.append(
            {
                "machine": name,
                "online": m.online,
                "liveness": liveness(m),
                "running": running,
                "slots": (m.beat.state.get("slots") if m.beat else None) or v.spec(name).slots,
                "load_score": m.score if m.fresh else None,
                "today": {"finished": len(day), "cost_usd": round(sum(day), 4)},
            }
        )
    return out


def monitor_lines(entry: dict[str, Any]) -> tuple[str, list[str]]:
    """A machine's box: its title and one line per running task, then today's totals."""
    title = f"{entry['machine']} · {entry['liveness']} · {len(entry['running'])}/{entry['slots']} slots"
    if entry["load_score"] is not None:
        title += f" · load {entry['load_score']:.2f}"
    lines = []
    for r in entry["running"]:
        agent = r["agent"] or "-"
        lines.append(
            f"▸ {r['id']}  {r['type'] or '?'}  {agent}  {clock(r['elapsed'])}  {money(r['cost_usd'])}  "
            f"{r['title'] or ''}".rstrip()
        )
        if r.get("last_output"):
            lines.append(f"  ↳ {' '.join(str(r['last_output']).split())}")
    if not lines:
        lines.append("idle" if entry["online"] else "(no worker running)")
    today = entry["today"]
    lines.append(f"today: {today['finished']} finished, {money(today['cost_usd'])} agent cost")
    return title, lines


# ---------------------------------------------------------------- events (monitor --watch)


class EventLog:
    """The last few events of tasks this machine created, seen while watching (under the boxes)."""

    def __init__(self, fleet: Fleet, keep: int = 8) -> None:
        self.fleet = fleet
        self.feed = EventFeed(created_by([fleet.machine]))
        self.recent: deque[str] = deque(maxlen=keep)

    def update(self, v: View) -> list[Event]:
        self.feed.select = created_by([v.fleet.machine, *v.spec(v.fleet.machine).aliases])
        new = self.feed.poll(v.snap)
        self.recent.extend(e.line() for e in new)
        return new

    def lines(self) -> list[str]:
        return ["", "events:", *(f"  {line}" for line in self.recent)] if self.recent else []
