"""Run one command on many machines: one hard-pinned task per machine, then wait for all of them.

``queue_on`` builds the tasks (run_script by default; another type gets the
command as ``payload.command``, agent_run as the prompt) and creates them in one
commit. ``wait`` polls the remote (a fetch per poll) until every task is done,
failed or needs_human, or the timeout passes, and ``table`` aggregates them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fleetq.core import live, transitions
from fleetq.core.clone import Fleet
from fleetq.core.config import FleetConfig
from fleetq.core.heartbeat import Beat
from fleetq.core.snapshot import Snapshot
from fleetq.core.states import CLAIMED, DONE, FAILED, NEEDS_HUMAN, PENDING
from fleetq.core.task import fmt_time, new_id, now_utc, validate
from fleetq.errors import FleetqError, UsageError
from fleetq.fleet.placement import beats_by_machine
from fleetq.handlerapi import last_line
from fleetq.run.notify import Event, EventFeed, Notifier

TERMINAL = (DONE, FAILED, NEEDS_HUMAN)
TIMED_OUT = 124  # exit code when the wait gave up (as timeout(1) does)


@dataclass
class Targets:
    machines: list[str]  # where tasks are queued
    offline: list[str]  # queued there although no worker is online (named explicitly, or nothing was online)
    skipped: dict[str, str]  # machine -> why no task was queued there


def targets(
    cfg: FleetConfig, beats: dict[str, Beat], *, names: list[str] | None, all_: bool, task_type: str
) -> Targets:
    """Which machines get a task: the named ones (each must run the type), or all declared ones that can,
    preferring those online (offline ones are skipped and named unless none is online)."""
    if bool(names) == all_:
        raise UsageError("name the machines with --machines a,b, or use --all")
    lease = float(cfg.get("lease") or 60)
    live = {n for n, b in beats_by_machine(cfg, beats).items() if b.alive(lease)}
    if names:
        chosen = []
        for n in names:
            spec = cfg.machine(n, strict=True)
            if not spec.can_run(task_type):
                caps = ", ".join(spec.capabilities) or "none"
                raise UsageError(f"{spec.name} cannot run {task_type} tasks (capabilities: {caps})")
            if spec.name not in chosen:
                chosen.append(spec.name)
        return Targets(chosen, [n for n in chosen if n not in live], {})
    skipped = {n: f"cannot run {task_type}" for n, s in cfg.machines.items() if not s.can_run(task_type)}
    capable = [n for n in cfg.machines if n not in skipped]
    if not capable:
        raise UsageError(f"no declared machine can run {task_type} tasks")
    online = [n for n in capable if n in live]
    if not online:
        return Targets(capable, capable, skipped)
    skipped.update({n: "offline (no heartbeat within the lease)" for n in capable if n not in live})
    return Targets(online, [], skipped)


def task_data(
    command: str,
    machine: str,
    task_type: str,
    *,
    group: str,
    created_by: str,
    cwd: str | None,
    timeout: float | None,
    attempts: int = 1,
) -> dict[str, Any]:
    payload: dict[str, Any] = {}
    if task_type == "run_script":
        payload["script"] = command
    elif task_type == "agent_run":
        payload["prompt"] = command
    else:
        payload["command"] = command
    if cwd:
        payload["cwd"] = cwd
    data: dict[str, Any] = {
        "id": f"{group}-{machine}",
        "type": task_type,
        "title": f"[{group}] {command}",
        "target": machine,
        "created_at": fmt_time(now_utc()),
        "created_by": created_by,
        "max_attempts": attempts,
        "payload": payload,
    }
    if timeout is not None:
        data["timeout"] = timeout
    errs = validate(data)
    if errs:
        raise UsageError("; ".join(errs))
    return data


def queue_on(
    fleet: Fleet,
    machines: list[str],
    command: str,
    *,
    task_type: str = "run_script",
    cwd: str | None = None,
    timeout: float | None = None,
    attempts: int = 1,
) -> list[str]:
    """One pinned task per machine, created in one commit; their ids (``p<hex>-<machine>``).

    One attempt by default: a fan-out reports each machine's first result rather than retrying it later.
    """
    if not command.strip():
        raise UsageError("give the command to run")
    group = f"p{new_id()[:6]}"
    datas = [
        task_data(
            command, m, task_type, group=group, created_by=fleet.machine, cwd=cwd, timeout=timeout, attempts=attempts
        )
        for m in machines
    ]
    return transitions.create(fleet, datas)


# ---------------------------------------------------------------- waiting


@dataclass
class Outcome:
    id: str
    machine: str
    state: str
    exit_code: int | None = None
    duration: float | None = None
    last: str = ""
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def outcome(snap: Snapshot, task_id: str) -> Outcome:
    t = snap.get(task_id)
    r = t.result
    machine = str(r.get("machine") or t.claim.get("machine") or t.target or "-")
    err = r.get("error")
    streams = (
        (r.get("stderr_tail"), r.get("stdout_tail"))
        if t.state != DONE
        else (r.get("stdout_tail"), r.get("stderr_tail"))
    )
    last = last_line(*(str(s or "") for s in streams)) or (str(err) if err else "")
    if t.state == CLAIMED:  # running: the last line its worker published (fetched with main: live.fetch_snapshot)
        entry = live.for_task(snap.repo, t)
        last = entry.last_line()[:200] if entry else ""
    dur = r.get("duration")
    return Outcome(
        t.id,
        machine,
        t.state,
        r.get("exit_code") if t.state in TERMINAL else None,
        float(dur) if isinstance(dur, int | float) and t.state in TERMINAL else None,
        last,
        str(err) if err and t.state in TERMINAL else None,
    )


def resolve_ids(snap: Snapshot, given: list[str]) -> list[str]:
    ids: list[str] = []
    for g in given:
        tid = snap.resolve(g).id
        if tid not in ids:
            ids.append(tid)
    return ids


def progress_text(outs: list[Outcome], elapsed: float) -> str:
    c = Counter(o.state for o in outs)
    done = sum(c[s] for s in TERMINAL)
    parts = [f"{done}/{len(outs)} finished"]
    parts += [f"{c[s]} {s}" for s in (DONE, FAILED, NEEDS_HUMAN) if c[s]]
    running = [o.machine for o in outs if o.state == CLAIMED]
    if running:
        parts.append(f"running on {', '.join(running)}")
    if c[PENDING]:
        parts.append(f"{c[PENDING]} pending")
    return f"waiting: {' · '.join(parts)} · {int(elapsed)}s"


def wait(
    fleet: Fleet,
    ids: list[str],
    *,
    timeout: float | None = None,
    interval: float = 1.0,
    on_poll: Callable[[list[Outcome], float], None] | None = None,
    on_event: Callable[[Event], None] | None = None,
    notifier: Notifier | None = None,
) -> tuple[list[Outcome], bool]:
    """Poll (fetching each time) until every task is finished; (outcomes, timed out).

    ``on_event`` gets each waited task's arrival in done, failed or needs_human as it is seen;
    ``notifier`` is checked on every poll (this machine's notifications while nothing else runs here).
    """
    start = time.monotonic()
    wanted = set(ids)
    feed = EventFeed(lambda t: t.id in wanted, from_start=True)
    while True:
        snap = live.fetch_snapshot(fleet)
        outs = [outcome(snap, tid) for tid in ids]
        elapsed = time.monotonic() - start
        if notifier is not None:
            notifier.check(snap)
        if on_event is not None:
            for e in feed.poll(snap):
                on_event(e)
        if on_poll:
            on_poll(outs, elapsed)
        if all(o.finished for o in outs):
            return outs, False
        if timeout is not None and elapsed >= timeout:
            return outs, True
        left = None if timeout is None else max(0.0, timeout - elapsed)
        time.sleep(interval if left is None else min(interval, left))


def exit_code(outs: list[Outcome], timed_out: bool) -> int:
    if any(o.state in (FAILED, NEEDS_HUMAN) for o in outs):
        return 1
    return TIMED_OUT if timed_out else 0


def table(outs: list[Outcome]) -> tuple[list[list[str]], list[str]]:
    rows = [
        [
            o.machine,
            o.id,
            o.state,
            "-" if o.exit_code is None else str(o.exit_code),
            "-" if o.duration is None else f"{o.duration:.1f}s",
            o.last,
        ]
        for o in outs
    ]
    return rows, ["Machine", "Task", "State", "Exit", "Duration", "Last output"]


def check_interval(interval: float) -> float:
    if interval <= 0:
        raise FleetqError("--interval must be positive")
    return interval
