"""Publishing the running tasks' recent output (docs/design.md, "Live output"; the format is core/live.py).

A thread, like the heartbeat's: every ``live_output`` seconds (config/fleet.yaml, 2 by default, 0 turns
it off) it reads what each running task's log (``.git/fleetq/logs/<id>.log``) gained since the attempt's
header, and when some run's output changed since the last publish it force-pushes one parentless commit
to ``refs/fleetq/live/<machine>`` with an entry per run. A run is published only once it has run for a
whole interval, so a short task costs no push; an ended run's entry goes with the next publish, and when
the last one ends an empty tree is pushed once. An idle worker pushes nothing.

Each read is incremental (only the bytes the log gained, counting newlines so readers can number the
lines); what is published is the redacted tail (``redact`` before the cut, as for results).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from fleetq.core import clock
from fleetq.core import live as fmt
from fleetq.core.task import fmt_time, now_utc
from fleetq.errors import FleetqError
from fleetq.run.procs import tail_text
from fleetq.run.redact import MARGIN, redact
from fleetq.worker.state import WorkerState

log = logging.getLogger("fleetq.worker.live")
KEEP = fmt.MAX_BYTES + MARGIN  # bytes of the output kept for the next publish (redacted before the cut)
CHUNK = 1 << 20
FIND_WITHIN = 64 * 1024  # how far back from where it was first seen the attempt's header is looked for
STEP = 0.25  # seconds between the thread's looks (a publish waits a whole interval)


@dataclass
class Track:
    """One run's log as read so far: from its attempt's header on."""

    task_id: str
    attempt: int
    path: Path
    seen: float  # monotonic: when this thread first saw the run
    pos: int = -1  # bytes of the file read (-1: not opened yet)
    found: bool = False  # the attempt's header was found: counting started after it
    lines: int = 0  # newlines since the header
    cut: bool = False  # ``tail`` does not start at the attempt's start
    tail: bytearray = field(default_factory=bytearray)
    version: int = 0  # bumped whenever the attempt's output grew
    published: int = -1  # ``version`` of the last publish that carried it

    def read(self) -> None:
        """Take in what the log gained (a log cut back, as a full disk does, is read afresh)."""
        try:
            size = self.path.stat().st_size
        except OSError:
            return
        if self.pos < 0 or size < self.pos:
            self.pos, self.found, self.lines = max(0, size - FIND_WITHIN), False, 0
            self.cut = self.pos > 0
            self.tail.clear()
        if size == self.pos:
            return
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                while True:
                    chunk = f.read(CHUNK)
                    if not chunk:
                        break
                    self.pos += len(chunk)
                    self._take(chunk)
        except OSError:
            return

    def _take(self, chunk: bytes) -> None:
        if not self.found:
            self.tail += chunk
            at = self.tail.rfind(fmt.header(self.task_id, self.attempt))
            end = self.tail.find(b"\n", at) if at >= 0 else -1
            if end < 0:
                if len(self.tail) > 2 * FIND_WITHIN:  # the header is further back: count from here
                    self.found, self.cut = True, True
                    self.lines = self.tail.count(b"\n")
                    self.version += 1
                return
            del self.tail[: end + 1]
            self.found, self.cut = True, False
            self.lines = self.tail.count(b"\n")
        else:
            self.tail += chunk
            self.lines += chunk.count(b"\n")
        if len(self.tail) > 2 * KEEP:
            del self.tail[: len(self.tail) - KEEP]
            self.cut = True
        self.version += 1

    def entry(self, names: list[str], seq: int, machine: str) -> fmt.LiveEntry:
        """What is published of it: the last complete lines (redacted, then cut) and the unfinished one."""
        raw = bytes(self.tail) if self.found else b""
        masked = redact(tail_text(raw, KEEP), names).encode("utf-8")
        cut = self.cut or len(masked) > fmt.MAX_BYTES
        text = tail_text(masked, fmt.MAX_BYTES)
        parts = text.split("\n")
        partial, complete = parts[-1], parts[:-1]
        if cut and complete:
            complete = complete[1:]  # it may start mid-line
        shown = [_shown(x) for x in complete[-fmt.MAX_LINES :]]
        return fmt.LiveEntry(
            self.task_id, self.attempt, self.lines, shown, _shown(partial), fmt_time(now_utc()), seq, machine
        )


def _shown(line: str) -> str:
    """A line as a terminal leaves it: what follows its last carriage return (a progress bar's latest state)."""
    line = line.rstrip("\r")
    return line.rsplit("\r", 1)[-1]


class LiveOutput:
    """The worker's live output publisher (one thread, until :meth:`stop`)."""

    def __init__(self, worker: WorkerState) -> None:
        self.worker = worker
        self.tracks: dict[tuple[str, int], Track] = {}
        self.published: set[str] = set()  # task ids in the last publish that landed
        self.last_push = -1e9  # monotonic: when the last publish was tried
        self.seq = 0
        self.pushes = 0  # publishes that landed (tests, bench)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed_said = False

    def interval(self) -> float:
        cfg = self.worker.cfg
        return fmt.interval_of(cfg.get("live_output")) if cfg is not None else 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="live-output", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread; an entry still published goes (readers would see a run that ended)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.published:
            self._publish([])

    def _watch(self) -> None:
        while not self._stop.wait(STEP):
            try:
                self.step()
            except Exception as e:  # noqa: BLE001 - live output must never stop the worker
                log.warning("live output: %s", e)

    def step(self) -> bool:
        """One look: publish when due and some running task's output changed (or an ended one must go)."""
        w = self.worker
        interval = self.interval()
        with w.lock:
            runs = {(r.task.id, r.attempt) for r in w.running.values() if not r.handing_back}
        now = clock.mono()
        for key in list(self.tracks):
            if key not in runs:
                del self.tracks[key]
        for tid, attempt in runs:
            if (tid, attempt) not in self.tracks:
                self.tracks[(tid, attempt)] = Track(tid, attempt, w.logs_dir / f"{tid}.log", now)
        if interval <= 0:
            return self._publish([]) if self.published else False
        for t in self.tracks.values():
            t.read()  # every look: the header is found near where it was written, and reads stay small
        if now - self.last_push < interval:
            return False
        ready = [t for t in self.tracks.values() if now - t.seen >= interval]
        changed = any(t.found and t.version != t.published for t in ready)
        gone = self.published - {t.task_id for t in ready}
        if not changed and not gone:
            return False
        return self._publish(ready)

    def _publish(self, ready: list[Track]) -> bool:
        w = self.worker
        extra = w.cfg.get("redact_env") if w.cfg is not None else None
        names = [str(n) for n in extra] if isinstance(extra, list) else []
        self.seq += 1
        self.last_push = clock.mono()
        shown = [t for t in ready if t.found]
        entries = [t.entry(names, self.seq, w.fleet.machine) for t in shown]
        try:
            fmt.publish(w.fleet, entries, self.seq)
        except FleetqError as e:
            if not self._failed_said:
                log.warning("live output not published: %s (logged once until one lands)", e)
            self._failed_said = True
            return False
        self._failed_said = False
        self.pushes += 1
        self.published = {t.task_id for t in shown}
        for t in shown:
            t.published = t.version
        log.debug("live output #%d: %s", self.seq, ", ".join(sorted(self.published)) or "none")
        return True
