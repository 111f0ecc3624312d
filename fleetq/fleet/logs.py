"""`fleetq logs ID` from any clone (docs/design.md, "Live output").

Where the output comes from (``LogView.source``):

* ``local``: the machine that ran the task's latest attempt is this one: its full log file;
* ``live``: it runs on another machine now: the recent lines that machine's worker publishes
  on ``refs/fleetq/live/<machine>`` (no SSH);
* ``tails``: it ran elsewhere and finished: the last bytes of stdout and stderr kept in its result;
* ``ssh`` (``--full``): the full log file fetched from the worker over SSH, when config/machines.yaml
  gives that machine a ``host:`` (the log's path comes from the clone its heartbeat names).

``follow`` streams a running task's output (the local file, or the live ref, polled) until the task
leaves ``claimed``, then gives what its result adds.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from fleetq.core import heartbeat, live
from fleetq.core.clone import Fleet
from fleetq.core.config import FleetConfig
from fleetq.core.snapshot import Snapshot
from fleetq.core.states import CLAIMED, DONE, PENDING
from fleetq.core.task import Task
from fleetq.errors import FleetqError, NotFound
from fleetq.fleet import remote

LOCAL, LIVE, TAILS, SSH = "local", "live", "tails", "ssh"
FULL_TIMEOUT = 120.0  # seconds for `--full`'s ssh leg


@dataclass
class LogView:
    """What ``fleetq logs`` shows of one task."""

    id: str
    state: str
    machine: str | None  # where its latest attempt ran (or runs)
    source: str
    lines: list[str] = field(default_factory=list)  # the log, or stdout's tail
    stderr: list[str] = field(default_factory=list)  # with ``tails``: stderr's tail
    attempt: int | None = None
    note: str | None = None  # where the full log is, or why there is nothing yet
    summary: str | None = None  # how it ended (``done, exit 0 after 3.2s on mini``)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _attempt(t: Task) -> int | None:
    a = t.claim.get("attempt") if t.state == CLAIMED else t.result.get("attempt") or t.attempts or None
    return a if isinstance(a, int) and not isinstance(a, bool) else None


def ran_on(t: Task) -> str | None:
    """The machine of the task's latest attempt, as it names itself (the live ref and the heartbeat use it)."""
    by = t.claim.get("machine") if t.state == CLAIMED else t.result.get("machine") or t.claim.get("machine")
    return str(by) if isinstance(by, str) and by else None


def is_here(fleet: Fleet, cfg: FleetConfig, machine: str) -> bool:
    return (cfg.canonical(machine) or machine) == (cfg.canonical(fleet.machine) or fleet.machine)


def log_path(fleet: Fleet, task_id: str) -> Path:
    return fleet.state_dir / "logs" / f"{task_id}.log"


def _clone_of(fleet: Fleet, machine: str) -> str | None:
    """The clone the machine's heartbeat names (untrusted: anyone may push it), if it is an absolute path."""
    sha = fleet.repo.rev(heartbeat.ref_of(machine))
    state = heartbeat.read_state(fleet.repo, sha)[0] if sha else {}
    clone = state.get("clone")
    ok = isinstance(clone, str) and clone.startswith("/") and not any(c in clone for c in "\0\n\r")
    return clone if ok else None


def where_full(fleet: Fleet, cfg: FleetConfig, t: Task, machine: str) -> str:
    """One correct line saying where the full log is and how to get it."""
    clone = _clone_of(fleet, machine)
    path = f"{clone}/.git/fleetq/logs/{t.id}.log" if clone else f".git/fleetq/logs/{t.id}.log in its fleet clone"
    spec = cfg.machine(machine)
    if spec.declared and spec.host:
        return f"the full log is on {machine} ({path}): `fleetq logs --full {t.id}` fetches it over SSH"
    return (
        f"the full log is on {machine} ({path}); run `fleetq logs {t.id}` there, or give {machine} a host: "
        f"in config/machines.yaml for `fleetq logs --full`"
    )


def summary(t: Task) -> str | None:
    """How its last finished run ended, in one line (None while it runs or before it ever ran)."""
    r = t.result
    if t.state == CLAIMED or not r:
        return None
    outcome = str(r.get("outcome") or t.state)
    text = outcome if outcome == t.state else f"{outcome} (now {t.state})"
    if r.get("exit_code") is not None:
        text += f", exit {r['exit_code']}"
    dur = r.get("duration")
    if isinstance(dur, int | float) and not isinstance(dur, bool):
        text += f" after {dur:.1f}s"
    if r.get("machine"):
        text += f" on {r['machine']}"
    err = str(r.get("error") or "").strip()
    if err and outcome != DONE:
        text += f": {err.splitlines()[0][:200]}"
    return text


def _lines(text: str) -> list[str]:
    return text.splitlines()


def _cut(lines: list[str], tail: int) -> list[str]:
    return lines[-tail:] if tail > 0 else lines


def read_local(fleet: Fleet, t: Task) -> list[str]:
    path = log_path(fleet, t.id)
    if not path.exists():
        raise NotFound(f"no log of {t.id} on {fleet.machine}: it ran here, but {path} is gone")
    return _lines(path.read_text(encoding="utf-8", errors="replace"))


def fetch_full(fleet: Fleet, cfg: FleetConfig, t: Task, machine: str) -> list[str]:
    """The full log from ``machine`` over SSH (its ``host:``; the path from the clone its heartbeat names)."""
    spec = cfg.machine(machine)
    if not (spec.declared and spec.host):
        raise FleetqError(
            f"--full: {machine} has no host: in config/machines.yaml; {where_full(fleet, cfg, t, machine)}"
        )
    clone = _clone_of(fleet, machine)
    if clone is None:
        raise FleetqError(f"--full: {machine}'s heartbeat names no clone, so the path of its log is unknown")
    path = str(PurePosixPath(clone) / ".git" / "fleetq" / "logs" / f"{t.id}.log")
    res = remote.capture_on(cfg, remote.host_for(cfg, machine), f"cat -- {shlex.quote(path)}", timeout=FULL_TIMEOUT)
    if res.exit_code != 0:
        why = (res.stderr_tail.strip().splitlines() or ["no output"])[-1]
        raise NotFound(f"no log of {t.id} on {machine} at {path}: {why}")
    return _lines(res.stdout)


def show(fleet: Fleet, task_id: str, *, tail: int = 0, full: bool = False) -> LogView:
    """What ``fleetq logs`` prints of a task (see the module docstring for where it comes from)."""
    snap = live.fetch_snapshot(fleet, machines=True, tolerate_offline=True)
    return view_of(fleet, snap, snap.get(task_id), tail=tail, full=full)


def view_of(fleet: Fleet, snap: Snapshot, t: Task, *, tail: int = 0, full: bool = False) -> LogView:
    cfg = fleet.config(snap)
    machine = ran_on(t)
    base = LogView(t.id, t.state, machine, LOCAL, attempt=_attempt(t), summary=summary(t))
    if machine is None:
        if log_path(fleet, t.id).exists():  # a run here that never reported (or a log of an old run)
            base.lines = _cut(read_local(fleet, t), tail)
            return base
        raise NotFound(f"no log of {t.id}: it has not run yet ({t.state})")
    if is_here(fleet, cfg, machine):
        base.lines = _cut(read_local(fleet, t), tail)
        return base
    if full:
        base.source, base.lines = SSH, _cut(fetch_full(fleet, cfg, t, machine), tail)
        return base
    if t.state == CLAIMED:
        base.source = LIVE
        entry = live.for_task(fleet.repo, t)
        if entry is None:
            every = live.interval_of(cfg.get("live_output"))
            base.note = (
                f"no live output from {machine} yet (its worker publishes every {every:g}s what a run older than "
                f"that printed); {where_full(fleet, cfg, t, machine)}"
                if every > 0
                else f"live output is off in this fleet (live_output: 0); {where_full(fleet, cfg, t, machine)}"
            )
            return base
        base.lines = _cut([*entry.lines, *([entry.partial] if entry.partial else [])], tail)
        base.note = f"live: the last lines {machine} published at {entry.at}; {where_full(fleet, cfg, t, machine)}"
        return base
    base.source = TAILS
    base.lines = _cut(_lines(str(t.result.get("stdout_tail") or "")), tail)
    base.stderr = _cut(_lines(str(t.result.get("stderr_tail") or "")), tail)
    kept = "the tails its result keeps" if t.result else f"{t.id} ran on {machine} and left no result ({t.state})"
    base.note = f"{kept}; {where_full(fleet, cfg, t, machine)}"
    return base


# ---------------------------------------------------------------- --follow


def _after(tail: list[str], printed: list[str]) -> list[str]:
    """What of a final tail came after the last lines already printed (all of it when they are not in it)."""
    last = [x for x in printed if x.strip()][-2:]
    if not last:
        return tail
    for i in range(len(tail) - 1, -1, -1):
        if tail[i] == last[-1] and (len(last) < 2 or (i > 0 and tail[i - 1] == last[0]) or i == 0):
            return tail[i + 1 :]
    return tail


class Follower:
    """Streams one task's output while it runs; :meth:`poll` gives the new lines of each look."""

    def __init__(self, fleet: Fleet, task_id: str, *, tail: int = 0) -> None:
        self.fleet = fleet
        self.tail = tail
        snap = live.fetch_snapshot(fleet, tolerate_offline=True)
        self.task = snap.get(task_id)
        self.snap = snap
        self.attempt: int | None = None
        self.printed = 0  # live: the number of the last line printed
        self.pos: int | None = None  # local: the log's bytes printed
        self.carry = b""  # local: an unfinished last line
        self.recent: list[str] = []  # the last lines printed (to skip them in the final tails)
        self.ran = False  # seen claimed
        self.first = True

    def _emit(self, lines: list[str]) -> list[str]:
        if self.first and self.tail > 0:
            lines = lines[-self.tail :]
        if lines:
            self.first = False
        self.recent = (self.recent + lines)[-50:]
        return lines

    def running(self) -> bool:
        return self.task.state == CLAIMED or (self.task.state == PENDING and not self.ran)

    def refresh(self) -> None:
        self.snap = live.fetch_snapshot(self.fleet, tolerate_offline=True)
        self.task = self.snap.get(self.task.id)

    def poll(self) -> list[str]:
        """The lines that are new since the last look (fetching nothing: :meth:`refresh` does)."""
        t = self.task
        if t.state != CLAIMED:
            return []
        cfg = self.fleet.config(self.snap)
        machine = ran_on(t) or ""
        out: list[str] = []
        attempt = _attempt(t)
        if attempt != self.attempt:
            if self.ran:
                out.append(f"--- {t.id} attempt {attempt} on {machine} ---")
            self.attempt, self.printed, self.pos, self.carry = attempt, 0, None, b""
        self.ran = True
        if is_here(self.fleet, cfg, machine):
            return self._emit(out + self._local(t))
        entry = live.for_task(self.fleet.repo, t)
        if entry is None:
            return self._emit(out)
        new = [(n, text) for n, text in entry.numbered() if n > self.printed]
        if new and new[0][0] > self.printed + 1 and not (self.first and self.tail):
            out.append(f"[... {new[0][0] - self.printed - 1} lines not shown ...]")
        out += [text for _, text in new]
        self.printed = max(self.printed, entry.line)
        return self._emit(out)

    def _local(self, t: Task) -> list[str]:
        path = log_path(self.fleet, t.id)
        try:
            with open(path, "rb") as f:
                if self.pos is None:  # start at this attempt's header
                    data = f.read()
                    self.pos = max(0, data.rfind(live.header(t.id, self.attempt)))
                    data = data[self.pos :]
                else:
                    f.seek(self.pos)
                    data = f.read()
        except OSError:
            return []
        self.pos += len(data)
        data = self.carry + data
        done, _, self.carry = data.rpartition(b"\n")
        return done.decode("utf-8", "replace").split("\n") if done or data.startswith(b"\n") else []

    def finish(self) -> LogView:
        """What the ended run adds: the rest of the local log, or the result's tails after what was shown."""
        t = self.task
        cfg = self.fleet.config(self.snap)
        machine = ran_on(t)
        view = LogView(t.id, t.state, machine, TAILS, attempt=_attempt(t), summary=summary(t))
        if machine is not None and is_here(self.fleet, cfg, machine) and self.pos is not None:
            view.source = LOCAL
            try:
                with open(log_path(self.fleet, t.id), "rb") as f:
                    f.seek(self.pos)
                    rest = self.carry + f.read()
            except OSError:
                rest = self.carry
            view.lines = _lines(rest.decode("utf-8", "replace"))
            return view
        if not self.ran:  # it was not running when we came: the plain view
            return view_of(self.fleet, self.snap, t, tail=self.tail)
        view.lines = _after(_lines(str(t.result.get("stdout_tail") or "")), self.recent)
        view.stderr = _after(_lines(str(t.result.get("stderr_tail") or "")), self.recent)
        return view


def follow(
    fleet: Fleet,
    task_id: str,
    on_lines: Callable[[list[str]], None],
    *,
    tail: int = 0,
    interval: float = 1.0,
    timeout: float | None = None,
) -> LogView:
    """Stream the task's output to ``on_lines`` until it leaves ``claimed`` (waiting while it is pending),
    then return what its end adds (``finish``). ``timeout``: stop following after that many seconds."""
    f = Follower(fleet, task_id, tail=tail)
    start = time.monotonic()
    while True:
        lines = f.poll()
        if lines:
            on_lines(lines)
        if not f.running() or (timeout is not None and time.monotonic() - start >= timeout):
            break
        time.sleep(interval)
        f.refresh()
    return f.finish()
