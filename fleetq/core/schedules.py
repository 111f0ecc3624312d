"""Cron schedules: config/schedules.yaml entries that enqueue tasks, each fire exactly once fleet-wide.

A fire's task id is derived from the schedule name and the fire time, so two
workers firing the same schedule race to create the same file and git's
compare-and-swap lets one win. Fires missed while every worker was down give
one catch-up run, not a flood.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from fleetq import yamlio
from fleetq.core.snapshot import Snapshot
from fleetq.core.task import fmt_time, validate
from fleetq.errors import FleetqError, UsageError
from fleetq.layout import SCHEDULES

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,40}$")


@dataclass
class Schedule:
    name: str
    cron: str
    timezone: str
    task: dict[str, Any]

    def zone(self) -> dt.tzinfo:
        try:
            return ZoneInfo(self.timezone) if self.timezone != "UTC" else dt.timezone.utc
        except (ZoneInfoNotFoundError, ValueError):
            raise FleetqError(f"{SCHEDULES}: schedule '{self.name}': unknown time zone '{self.timezone}'") from None

    def fires(self, after: dt.datetime, until: dt.datetime, limit: int = 1000) -> list[dt.datetime]:
        """Fire times in (after, until], as aware UTC datetimes."""
        zone = self.zone()
        out: list[dt.datetime] = []
        for t in CronSim(self.cron, after.astimezone(zone)):
            t = t.astimezone(dt.timezone.utc)
            if t > until or len(out) >= limit:
                break
            out.append(t)
        return out

    def next_fire(self, now: dt.datetime) -> dt.datetime:
        return next(iter(CronSim(self.cron, now.astimezone(self.zone())))).astimezone(dt.timezone.utc)

    def task_id(self, fire: dt.datetime) -> str:
        return f"sched-{self.name}-{fire.astimezone(dt.timezone.utc):%Y%m%d%H%M}"

    def task_for(self, fire: dt.datetime, machine: str) -> dict[str, Any]:
        data = {k: v for k, v in self.task.items() if k != "id"}
        data.setdefault("type", "run_script" if "script" in (data.get("payload") or {}) else "agent_run")
        data.setdefault("title", f"{self.name} ({fire:%Y-%m-%d %H:%M}Z)")
        data["id"] = self.task_id(fire)
        data["created_at"] = fmt_time(fire)
        data["created_by"] = f"schedule {self.name} via {machine}"
        return data


def parse(data: Any) -> list[Schedule]:
    """Every schedule; the first bad one is a FleetqError (``problems`` lists them all)."""
    out = []
    for s in _entries(data):
        if isinstance(s, FleetqError):
            raise s
        out.append(s)
    return out


def problems(data: Any) -> list[str]:
    """Every bad schedule in a parsed schedules.yaml (cron expression, time zone, name, task), one line each."""
    try:
        return [str(s) for s in _entries(data) if isinstance(s, FleetqError)]
    except FleetqError as e:
        return [str(e)]


def _entries(data: Any) -> list[Schedule | FleetqError]:
    """Each entry checked on its own: a Schedule, or the error that makes it unusable."""
    if data is None:
        return []
    if not isinstance(data, dict) or not isinstance(data.get("schedules") or {}, dict):
        raise FleetqError(f"{SCHEDULES}: expected a top-level 'schedules:' mapping")
    out: list[Schedule | FleetqError] = []
    for name, spec in (data.get("schedules") or {}).items():
        if not isinstance(spec, dict) or not isinstance(spec.get("cron"), str):
            out.append(FleetqError(f"{SCHEDULES}: schedule '{name}' needs a 'cron' expression"))
            continue
        if not isinstance(spec.get("task") or {}, dict):
            out.append(FleetqError(f"{SCHEDULES}: schedule '{name}': task must be a mapping of task fields"))
            continue
        s = Schedule(str(name), spec["cron"], str(spec.get("timezone") or "UTC"), dict(spec.get("task") or {}))
        try:
            check(s)
        except FleetqError as e:
            out.append(e)
            continue
        out.append(s)
    return out


def check(s: Schedule) -> None:
    if not NAME_RE.match(s.name):
        raise FleetqError(f"{SCHEDULES}: schedule name '{s.name}' must be lowercase letters, digits and '-'")
    try:
        CronSim(s.cron, dt.datetime.now(dt.timezone.utc))
    except CronSimError as e:
        raise FleetqError(f"{SCHEDULES}: schedule '{s.name}': bad cron expression '{s.cron}': {e}") from None
    s.zone()
    errs = validate(s.task_for(dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc), "check"))
    if errs:
        raise FleetqError(f"{SCHEDULES}: schedule '{s.name}': task: {'; '.join(errs)}")


def load(snap: Snapshot) -> list[Schedule]:
    return parse(snap.read_yaml(SCHEDULES))


def usable(snap: Snapshot) -> tuple[list[Schedule], list[str]]:
    """The schedules a worker can fire, and one line for each it cannot (the worker skips those)."""
    try:
        found = _entries(snap.read_yaml(SCHEDULES))
    except FleetqError as e:
        return [], [str(e)]
    return [s for s in found if isinstance(s, Schedule)], [str(e) for e in found if isinstance(e, FleetqError)]


def due(schedules: list[Schedule], last: dict[str, float], now: dt.datetime) -> list[tuple[Schedule, dt.datetime]]:
    """The fire to enqueue for each schedule since it was last checked: the latest one only (catch-up, not flood)."""
    out = []
    for s in schedules:
        since = last.get(s.name)
        if since is None:
            continue  # first sight of this schedule here: start counting from now
        fires = s.fires(dt.datetime.fromtimestamp(since, dt.timezone.utc), now)
        if fires:
            out.append((s, fires[-1]))
    return out


def edit_doc(raw: bytes | None) -> Any:
    return yamlio.load_rt_section(raw, SCHEDULES, "schedules")


def add_change(snap: Snapshot, s: Schedule, *, replace: bool = False) -> dict[str, bytes | None]:
    check(s)
    doc = edit_doc(snap.read(SCHEDULES))
    if s.name in doc["schedules"] and not replace:
        raise UsageError(f"schedule '{s.name}' exists (remove it first, or pass --replace)")
    entry: dict[str, Any] = {"cron": s.cron}
    if s.timezone != "UTC":
        entry["timezone"] = s.timezone
    entry["task"] = s.task
    doc["schedules"][s.name] = yamlio.to_rt(entry)
    return {SCHEDULES: yamlio.dump_rt(doc).encode()}


def rm_change(snap: Snapshot, name: str) -> dict[str, bytes | None]:
    doc = edit_doc(snap.read(SCHEDULES))
    if name not in doc["schedules"]:
        raise UsageError(f"no schedule named '{name}'")
    del doc["schedules"][name]
    return {SCHEDULES: yamlio.dump_rt(doc).encode()}
