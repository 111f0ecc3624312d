"""Selecting tasks for the listing commands (queue, review, failures)."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetq.core import history
from fleetq.core.snapshot import Problem, Ref, Snapshot
from fleetq.core.states import DONE, STATES
from fleetq.core.task import Task
from fleetq.errors import UsageError

STATUS_ALIASES = {"in_progress": "claimed", "running": "claimed", "needs-human": "needs_human", "review": "needs_human"}


def normalise_status(status: str | None) -> str | None:
    if status is None:
        return None
    s = STATUS_ALIASES.get(status, status)
    if s not in STATES:
        raise UsageError(f"--status takes one of {', '.join(STATES)}, not '{status}'")
    return s


def newest_first(tasks: list[Task]) -> list[Task]:
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return sorted(tasks, key=lambda t: (t.created_at or epoch, t.id), reverse=True)


def select(
    snap: Snapshot,
    *,
    status: str | None = None,
    machine: str | Collection[str] | None = None,
    limit: int = 0,
    problems: list[Problem] | None = None,
) -> list[Task]:
    """Tasks newest first; done tasks are read one day shard at a time, only as far as ``limit`` needs.

    ``machine``: a name, or every name one machine goes by (``FleetConfig.names_of``: its aliases too)."""
    status = normalise_status(status)
    wanted = [status] if status else list(STATES)
    names = {machine} if isinstance(machine, str) else set(machine or ())
    tasks = snap.tasks([s for s in wanted if s != DONE], problems)
    if names:
        tasks = [t for t in tasks if names & {t.claim.get("machine"), t.target, t.prefer}]
    if DONE in wanted:
        done: list[Task] = []
        for day in snap.done_days() + [None]:
            for t in snap.load_all(shard_refs(snap, day, problems), problems):
                if not names or names & {t.claim.get("machine"), t.target}:
                    done.append(t)
            if limit and len(done) + len(tasks) >= limit and day is not None:
                break
        tasks += done
    history.date_undated(snap.repo, snap.commit, tasks)  # hand-written files: dated by their commit
    tasks = newest_first(tasks)
    return tasks[:limit] if limit else tasks


def shard_refs(snap: Snapshot, day: str | None, problems: list[Problem] | None = None) -> list[Ref]:
    """The done task files of one day shard (None: files lying directly in done/)."""
    if day is not None:
        return list(snap.shard(day, problems))
    return [r for r in snap.refs(DONE, problems=problems, days=[]) if r.loc.day is None]


def finished_by(t: Task) -> tuple[str | None, str | None, float | None]:
    """(machine as written, agent, agent cost in USD) of a finished task: what `fleetq status` adds up."""
    by = t.result.get("machine") or t.claim.get("machine")
    agent = t.agent or t.result.get("agent")
    c = t.result.get("cost_usd")
    cost = float(c) if isinstance(c, int | float) and not isinstance(c, bool) else None
    return (str(by) if by else None, str(agent) if agent else None, cost)


# machine -> {"n": tasks, "agents": {agent: runs}, "cost": USD or None}
Totals = dict[str, dict[str, Any]]
TOTALS_FORMAT = 2


def tally(totals: Totals, t: Task) -> None:
    by, agent, cost = finished_by(t)
    if not by:
        return
    m = totals.setdefault(by, {"n": 0, "agents": {}, "cost": None})
    m["n"] += 1
    if agent:
        m["agents"][agent] = m["agents"].get(agent, 0) + 1
    if cost is not None:
        m["cost"] = (m["cost"] or 0.0) + cost


def merge_totals(into: Totals, more: Totals) -> None:
    for by, m in more.items():
        acc = into.setdefault(by, {"n": 0, "agents": {}, "cost": None})
        acc["n"] += m["n"]
        for a, n in m["agents"].items():
            acc["agents"][a] = acc["agents"].get(a, 0) + n
        if m["cost"] is not None:
            acc["cost"] = (acc["cost"] or 0.0) + m["cost"]


@dataclass
class DoneTotals:
    files: int  # done task files (parsed or not)
    machines: Totals


def done_totals(snap: Snapshot, cache: Path | None = None, problems: list[Problem] | None = None) -> DoneTotals:
    """Per machine, over every done task: how many, by which agents, at what cost; and the file count.

    Parsing is the cost (about 0.3 ms a task), and a day shard stops changing once its
    day is over, so each shard's totals are kept in ``cache`` (a JSON file in the
    clone's state dir) by the shard's tree sha: 100,000 done tasks are parsed once per
    clone, not on every `fleetq status`. A changed shard has a new sha and is recounted.
    """
    stored = _read_totals(cache)
    used: dict[str, Any] = {}
    out = DoneTotals(0, {})
    for day, sha in snap.done_shards():
        entry = stored.get(sha)
        if entry is None:
            found: list[Problem] = []
            part: Totals = {}
            refs = shard_refs(snap, day, found)
            for t in snap.load_all(refs, found):
                tally(part, t)
            entry = {"files": len(refs), "totals": part, "problems": [[p.path, p.reason] for p in found]}
        used[sha] = entry
        out.files += entry["files"]
        merge_totals(out.machines, entry["totals"])
        if problems is not None:
            problems += [Problem(path, reason) for path, reason in entry["problems"]]
    loose = shard_refs(snap, None, problems)  # files directly in done/: few, never cached
    out.files += len(loose)
    for t in snap.load_all(loose, problems):
        tally(out.machines, t)
    if cache is not None and used.keys() != stored.keys():
        _write_totals(cache, used)
    return out


def done_count(snap: Snapshot, cache: Path | None = None) -> int:
    """Done task files: counted from ``cache`` where done_totals kept a shard, else listed (never parsed)."""
    stored = _read_totals(cache)
    n = len(shard_refs(snap, None))
    for day, sha in snap.done_shards():
        entry = stored.get(sha)
        n += entry["files"] if entry is not None else len(shard_refs(snap, day))
    return n


def _read_totals(cache: Path | None) -> dict[str, Any]:
    return read_shard_cache(cache, {"format": TOTALS_FORMAT})


def _write_totals(cache: Path, shards: dict[str, Any]) -> None:
    write_shard_cache(cache, {"format": TOTALS_FORMAT}, shards)


def read_shard_cache(cache: Path | None, stamp: dict[str, Any]) -> dict[str, Any]:
    """A JSON cache of per-shard entries by tree sha; empty unless it was written with the same ``stamp``."""
    try:
        data = json.loads(cache.read_text()) if cache is not None else {}
    except (OSError, ValueError):
        return {}  # missing or torn: recount
    ok = isinstance(data, dict) and all(data.get(k) == v for k, v in stamp.items())
    return data.get("shards", {}) if ok else {}


def write_shard_cache(cache: Path, stamp: dict[str, Any], shards: dict[str, Any]) -> None:
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({**stamp, "shards": shards}))
        os.replace(tmp, cache)  # readers see the old file or the new one, never half of one
    except OSError:
        tmp.unlink(missing_ok=True)  # a cache: failing to keep it only costs time


def age(t: dt.datetime | None, now: dt.datetime | None = None) -> str:
    if t is None:
        return "-"
    secs = int(((now or dt.datetime.now(dt.timezone.utc)) - t).total_seconds())
    if secs < 0:
        return "0s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"
