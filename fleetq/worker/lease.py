"""The worker's lease: heartbeats, and self-fencing when they stop landing (docs/design.md, "Liveness and fencing").

Other workers reap our claims after a full ``lease`` in which *they* saw our
heartbeat ref unchanged, and a heartbeat can only be seen after it landed. So
each heartbeat is timed from just before its push, and when none has landed for
``lease - max(2 x heartbeat, lease / 4)`` (a cut network, a remote that is down)
the fence kills the running tasks: they are handed back (no attempt spent) once
the remote answers again, or found already reaped. The kill lands before any
reap can, so a reaped task is never still running here. For the same reason the
worker claims only while its lease is held (it beats first when it is not).

Both the fence and the heartbeat run in their own threads: the loop may sit in a
git call to a dead remote, or in push retries, and must starve neither.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any

from fleetq.core import clock, liveness
from fleetq.core.cas import STATS
from fleetq.core.delegation import results_field
from fleetq.core.heartbeat import beat, load_metrics
from fleetq.errors import FleetqError
from fleetq.worker.state import WorkerState

log = logging.getLogger("fleetq.worker.lease")


class Lease:
    """Heartbeats and the fence of one worker."""

    def __init__(self, worker: WorkerState) -> None:
        self.worker = worker
        self.seq = 0
        # Monotonic (core/clock.py): a step of the wall clock neither holds nor breaks the lease.
        self.last_beat = -1e9  # when the last heartbeat attempt ended
        self.beat_landed = -1e9  # when the last heartbeat that landed was started (fencing)
        self._stop = threading.Event()  # ends the fence and heartbeat threads
        self._beat_lock = threading.Lock()  # the loop and the heartbeat thread never beat at once
        self._unread_said = False  # "not heartbeating" is logged once per spell
        self._failed_said: float | None = None  # when "heartbeat failed" was logged: once per spell of failures

    def _heartbeat(self) -> float:
        return self.worker.timing().heartbeat

    # -- threads --
    def start(self) -> None:
        """Start the fence and heartbeat threads (until :meth:`stop`)."""
        for target, name in ((self._fence_watch, "fence"), (self._beat_watch, "heartbeat")):
            threading.Thread(target=target, name=name, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _fence_watch(self) -> None:
        """The fence runs in its own thread: the loop may sit in a git call to a dead remote."""
        while not self._stop.wait(min(0.5, self._heartbeat() / 4)):
            self.fence()

    def _beat_watch(self) -> None:
        """Heartbeats in their own thread too: a pass stuck in push retries must not starve the lease."""
        hb = self._heartbeat()
        while not self._stop.wait(min(0.5, hb / 4)):
            if self.worker.cfg is not None and clock.mono() - self.last_beat >= hb:
                self.beat()

    # -- fencing --
    def fence_after(self) -> float:
        """Seconds without a landed heartbeat after which running tasks are killed (before anyone may reap)."""
        return self.worker.timing().fence_after

    def held(self) -> bool:
        """Whether a heartbeat landed recently enough that nobody may reap our claims yet."""
        return clock.mono() - self.beat_landed < self.fence_after()

    def fence(self) -> None:
        """Kill running tasks when our heartbeat has not landed for too long: others may reap them."""
        if self.held():
            return
        w = self.worker
        age = clock.mono() - self.beat_landed
        with w.lock:
            runs = [r for r in w.running.values() if not r.handing_back]
            for r in runs:
                r.why = f"lost the lease: no heartbeat landed for {age:.1f}s"
                r.handing_back = True  # its result must not count: another machine may run it next
                r.cancel.set()
        for r in runs:
            log.warning("fenced %s (attempt %d): %s; it goes back to pending", r.task.id, r.attempt, r.why)
        if runs:
            w.wake.set()

    # -- heartbeats --
    def next_beat_in(self) -> float:
        """Seconds until the next heartbeat is due (the loop sleeps no longer)."""
        return self.last_beat + self._heartbeat() - clock.mono()

    def beat(self, *, force: bool = False) -> None:
        """Heartbeat when one is due (or ``force``), unless the other thread is beating right now."""
        if not force and clock.mono() - self.last_beat < self._heartbeat():
            return
        # Forced (the claim gate): wait for a beat under way, which may be all the gate needs.
        if not self._beat_lock.acquire(blocking=force):
            return  # the other thread is beating right now
        try:
            if force and self.held():
                return
            self._beat_now()
        finally:
            self._beat_lock.release()

    def advertise(self) -> None:
        """A beat now, whatever the schedule: it carries results and free slots for others to fold and fill."""
        with self._beat_lock:
            self._beat_now()

    def goodbye(self) -> None:
        """The last heartbeat of a worker that exits: ``stopped`` when nothing runs here and every
        result is delivered, so it is offline at once (else a plain beat: its claims wait a lease)."""
        w = self.worker
        with w.lock:
            idle = not w.running
        done = idle and not w.journal.pending()
        with self._beat_lock:
            self._beat_now(stopped=done)

    def head_unread(self) -> str | None:
        """Why this worker must not heartbeat: it could not read the head for longer than the fence
        allows (a wedged clone whose pushes still land would otherwise keep its claims forever)."""
        silent = clock.mono() - self.worker.fetched_ok_at
        if silent <= self.fence_after():
            return None
        return f"no fetch of the remote's head has worked for {silent:.0f}s"

    def _beat_now(self, *, stopped: bool = False) -> None:
        w = self.worker
        unread = None if stopped else self.head_unread()
        if unread:
            if not self._unread_said:
                log.error("not heartbeating: %s; other workers may reap this machine's claims", unread)
            self._unread_said = True
            self.last_beat = clock.mono()
            return
        self._unread_said = False
        self.seq += 1
        spec = w.cfg.machine(w.fleet.machine) if w.cfg else None
        with w.lock:
            running = [
                {
                    "id": r.task.id,
                    "type": r.task.type,
                    "agent": r.task.agent,
                    "attempt": r.attempt,
                    "started": dt.datetime.fromtimestamp(r.started, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
                for r in w.running.values()
            ]
        info: dict[str, Any] = {
            "seq": self.seq,
            "state": liveness.STOPPED if stopped else "stopping" if w.stopping else "running",
            "lease": w.timing().lease,
            "slots": int(w.setting("slots")),
            "capabilities": list(spec.capabilities) if spec else [],
            "agents": sorted(w.installed),
            "running": running,
            "load": load_metrics(),
            "heartbeat": self._heartbeat(),
            "pushes": STATS.counters(),
        }
        if w.delegates and not stopped:  # others may fold our results and claim for our free slots
            info["delegate"] = not w.stopping
            info["free"] = max(0, w.offer_free)
            info["results"] = results_field(w.offer)
        try:
            started = clock.mono()  # before the push: a reaper can only see it after it landed
            beat(w.fleet, info)
            self.last_beat = clock.mono()
            self.beat_landed = started
        except FleetqError as e:
            if self._failed_said is None or self.beat_landed > self._failed_said:  # once until one lands
                log.warning("heartbeat failed: %s (logged once until one lands)", e)
            self._failed_said = self.last_beat = clock.mono()  # the next try waits a heartbeat, not 0.5 s
