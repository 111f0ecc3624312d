"""`fleetq work`: the cron-style runner (docs/design.md, "The claim protocol" and "Running tasks").

One loop per machine. Each pass: report finished results, hand back orphans,
claim up to the free slots, all in one commit and one push
(:func:`fleetq.core.passplan.pass_plan`); heartbeat; fire due schedules. Runs
happen in threads, each driving a supervised process tree
(:mod:`fleetq.worker.runner`). The loop wakes on a timer (a cheap
``ls-remote`` first), on watchdog events (the local remote's refs, files
dropped into ``queue/pending/``), when a run ends, and at schedule fire times.

The worker fences itself when its heartbeats stop landing
(:mod:`fleetq.worker.lease`, docs/design.md, "Liveness and fencing"). Results
finished before the fence stay in the journal and are pushed when the remote
answers (a reaped one as a note).

SIGTERM/Ctrl-C (:mod:`fleetq.worker.signals`): the first finishes the running
tasks, then exits; the second kills them and hands them back.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import TYPE_CHECKING

from filelock import FileLock, Timeout

from fleetq.core import liveness
from fleetq.core.archive import AutoArchive, landed_count
from fleetq.core.cas import Plan, transact
from fleetq.core.clone import Fleet
from fleetq.core.config import DEFAULT_SETTINGS
from fleetq.core.matching import Seat
from fleetq.core.passplan import pass_plan
from fleetq.core.snapshot import Problem, Snapshot
from fleetq.core.task import Task, now_utc
from fleetq.errors import Conflict, FleetqError, RemoteError
from fleetq.git.locks import CloneLocked
from fleetq.git.netcall import RemoteTimeout
from fleetq.git.repo import HookRejected
from fleetq.handlerapi import HandlerResult
from fleetq.layout import SETTINGS, TRACKING
from fleetq.worker.fold import Fold
from fleetq.worker.headcache import HeadCache
from fleetq.worker.intake import Intake
from fleetq.worker.lease import Lease
from fleetq.worker.live import LiveOutput
from fleetq.worker.outage import CAP, Outage
from fleetq.worker.runner import Runner
from fleetq.worker.signals import Signals
from fleetq.worker.state import Run, WorkerState

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver

__all__ = ["LINGER", "Run", "Worker"]

log = logging.getLogger("fleetq.worker.daemon")
LINGER = 0.015  # seconds


class Worker(WorkerState):
    """One machine's worker: the loop over passes, and the parts it owns (the state they share is inherited)."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        slots: int | None = None,
        poll: float | None = None,
        lease: float | None = None,
        once: bool = False,
        burst: bool = False,
        heartbeat: float | None = None,
        grace: float | None = None,
        watch: bool = True,
        force: bool = False,
    ) -> None:
        fleet.warn = log.warning  # a checkout left behind, a stale lock removed: in the worker's log
        if lease is not None or heartbeat is not None:  # flags that cannot fence: refused before anything runs
            settings = fleet.config(fleet.snapshot()).settings if lease is None else {}
            liveness.effective(lease, heartbeat, settings, float(DEFAULT_SETTINGS["lease"]))
        opts = {"slots": slots, "poll": poll, "lease": lease, "heartbeat": heartbeat, "prefer_grace": grace}
        super().__init__(fleet, opts)
        self.once, self.burst, self.watch, self.force = once, burst, watch, force
        self._observer_thread: BaseObserver | None = None
        self._busy_recently = True
        self.claimed_total = 0
        self.finished_total = 0
        self.idle = False
        self.heads = HeadCache(self)
        self.lease = Lease(self)
        self.live = LiveOutput(self)  # running tasks' recent output on refs/fleetq/live/<machine>
        self.runner = Runner(self)
        # takes claims made for it, advertises results and free slots: a worker that stays (a --once or
        # --burst worker may be gone before a claim made for it lands, which would then wait for a reap)
        self.delegates = not (once or burst)
        self.fold = Fold(self, self.lease, self.runner, self.heads, once=once)
        self.intake = Intake(self)
        self.archiver = AutoArchive()
        self.outage = Outage()
        self.signals = Signals(self._on_signal)

    # -- lifecycle --
    def run(self) -> int:
        lock = self._one_per_clone()
        if self.signals.install():  # before the first fetch: SIGTERM must not wait for a remote that hangs
            self.signals.start()
        try:
            self._check_identity()
            return self._run()
        finally:
            self.signals.stop()
            lock.release()

    def _one_per_clone(self) -> FileLock:
        """One worker per clone: a second one would hand back the first one's running tasks as orphans."""
        lock = FileLock(str(self.fleet.state_dir / "worker.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            msg = f"another `fleetq work` runs in this clone ({self.fleet.root}); one clone runs one worker"
            raise Conflict(msg) from None
        return lock

    def _check_identity(self) -> None:
        """Refuse a machine name whose live heartbeat comes from another host or clone (unless forced)."""
        if self.force:
            return
        try:
            beats = self.heads.beats = self.heads.observer.read(fetch=True)
        except FleetqError as e:
            log.warning("cannot check that %s is not live elsewhere: %s", self.fleet.machine, e)
            return
        b = beats.get(self.fleet.machine)
        if b is not None:
            clash = liveness.identity_clash(
                b.state, b.age, self.timing().lease, host=socket.gethostname(), clone=str(self.fleet.root)
            )
            if clash:
                raise Conflict(clash)

    def _run(self) -> int:
        self._start_watch()
        log.info("worker %s starting on %s", self.fleet.machine, self.fleet.root)
        try:
            self._loop()
        finally:
            if self._observer_thread is not None:
                self._observer_thread.stop()
            self.lease.goodbye()
            self._refresh_checkout()
            self._notify_last()
        log.info(
            "worker %s stopped (%d claimed, %d finished)", self.fleet.machine, self.claimed_total, self.finished_total
        )
        return 0

    def stop(self, *, hand_back: bool = False) -> None:
        """Warm stop (finish running tasks), or with ``hand_back`` kill them and return them to pending.

        A second call hands back. Takes ``lock``: never call it from a signal handler.
        """
        if self.stopping and not hand_back:
            hand_back = True
        self.stopping = True
        if hand_back and not self.handback:
            self.handback = True
            with self.lock:
                for r in self.running.values():
                    r.handing_back = True
                    r.cancel.set()
        self.wake.set()

    def _on_signal(self, signum: int) -> None:
        """Act on SIGTERM/SIGINT (outside the handler): the first stops warm, the next hands back."""
        what = "handing running tasks back" if self.stopping else "finishing running tasks, then exiting"
        log.info("signal %s: %s", signum, what)
        self.fleet.repo.net.hurry()  # a git call waiting on a remote that does not answer ends now
        self.stop()

    def _loop(self) -> None:
        self.lease.start()
        self.live.start()
        try:
            self._loop_passes()
        finally:
            self.lease.stop()
            self.live.stop()

    def _loop_passes(self) -> None:
        passes = 0
        while True:
            self.signals.act()
            self.idle = False
            with self.lock:
                idle_stop = self.stopping and not self.running
            if idle_stop and not self.journal.pending():
                return  # stopped with nothing to report: no pass (the remote may not even answer)
            try:
                self.tick(claim=not (self.once and passes))
                self.outage.answered()
            except HookRejected as e:
                log.error("the remote's hook refused a push: %s", e)
            except (RemoteError, RemoteTimeout, CloneLocked) as e:
                self.outage.failed(e, cap=self._backoff_cap())  # one log line per step, not per try
            except Conflict as e:
                log.warning("%s", e)
            except FleetqError as e:
                log.error("%s", e)
            passes += 1
            self.signals.act()
            with self.lock:
                busy = bool(self.running)
            if not busy and (self.stopping or (self.once and passes > 1) or (self.burst and self.idle)):
                self._flush_quietly()
                return
            woke = self.wake.wait(self._sleep_for())
            self.wake.clear()
            if woke and busy:
                time.sleep(LINGER)  # let runs that end together share one commit and one push

    def _sleep_for(self) -> float:
        """Until the timer, the next heartbeat or the next schedule fire, whichever is first; while the
        remote is down, the backoff (heartbeats have their own thread: a failed one is not due at once)."""
        if self.outage.down:
            return self.outage.delay
        poll = float(self.setting("poll") or 5)
        until = [poll, self.lease.next_beat_in()]
        if self.intake.next_fire is not None:
            until.append(self.intake.next_fire - time.time() + 0.05)
        if self.fold.defer_until is not None:  # a deferring pass pushes main itself at its deadline
            until.append(self.fold.due_in())
        return max(0.05, min(until))

    def _backoff_cap(self) -> float:
        """The longest wait between passes while the remote is down (worker/outage.py)."""
        return min(CAP, max(float(self.setting("poll") or 5), self.timing().lease / 4))

    def _flush_quietly(self) -> None:
        try:
            if self.journal.pending():
                self.tick(claim=False)
        except FleetqError as e:
            log.warning("could not report results yet: %s (kept in the journal)", e)

    # -- one pass --
    def tick(self, *, claim: bool = True) -> bool:
        """One pass; True when it claimed or reported something."""
        fleet = self.fleet
        results = self.journal.pending()
        free = 0 if (self.stopping or not claim) else max(0, int(self.setting("slots")) - len(self.running))
        peers = self.delegates and bool(self.fold.peers())  # their beats come with main: one fetch, not two
        head = self.heads.sync(force=bool(results) or free > 0 and self._busy_recently, machines=peers)
        snap = Snapshot(fleet.repo, head)
        cfg = self.heads.refresh(snap)
        self._report_problems([Problem(SETTINGS, why) for why in cfg.problems], "config problem (using defaults)")
        seat = Seat(
            cfg.machine(fleet.machine),
            agents=self.runner.usable_agents(),
            first_seen=self.heads.first_seen,
            running_elsewhere=self.heads.running_elsewhere(),
        )
        if self.delegates:  # results others folded into main, claims others made for us (worker/fold.py)
            results = self.fold.settle(snap, results)
            if self.fold.take_delegated(snap, seat):
                free = 0 if (self.stopping or not claim) else max(0, int(self.setting("slots")) - len(self.running))
        if free and not self.lease.held():  # after the config is read: the beat announces its lease
            self.lease.beat(force=True)  # fencing: claim only while our heartbeat is known to land
            if not self.lease.held():
                free = 0
        self.notifier.check(snap)
        self.heads.check_running(snap)
        if self.intake.dropped:
            self.intake.take_dropped(snap)
        if claim:  # schedules fire in passes that may claim (not in --once's later passes)
            self.intake.fire_schedules(snap)
        archive_before = self.archiver.due(snap, self.setting("keep_done_days"), now_utc())  # shard names only
        orphans = self.heads.orphans(snap)
        handbacks = self.heads.handbacks()
        declined = dict(self.fold.declined)
        self.offer_free = free
        if not (results or orphans or handbacks or archive_before or declined) and free == 0:
            self.fold.defer_until = None
            self.lease.beat()
            return False
        if not (orphans or handbacks or archive_before or declined) and self.fold.defer(snap, results, free):
            return False  # advertised on our own ref: another worker's push may fold it (worker/fold.py)
        with self.lock:
            nothing_running = not self.running
        others = self.fold.others(seat) if self.delegates else None
        known = set(self.running) | {c.task_id for c in results}
        grace = float(self.setting("prefer_grace")) if free or others else 0.0
        problems: list[Problem] = []

        def plan(s: Snapshot) -> Plan:
            now = now_utc()
            self.heads.note_sightings(s, now)
            return pass_plan(
                s,
                machine=fleet.machine,
                results=results,
                handbacks=handbacks,
                orphans=orphans,
                seat=seat,
                free=free,
                grace=grace,
                shutdown=self.handback,
                problems=problems,
                now=now,
                archive_before=archive_before,
                others=others,
                known=known,
                declined=declined,
            )

        try:
            landed = transact(fleet, plan, fetch=False, wait=self.fold.backoff)
        except HookRejected:
            self.archiver.refused(archive_before)  # never let archiving block the pass again
            raise
        if landed_count(landed) is not None:
            log.info("archived %s done tasks (days before %s)", landed_count(landed), archive_before)
        self._report_problems(problems)
        for c in results:
            self.journal.clear(c)
            if c.status == "stale":
                log.warning("result of %s attempt %d was stale (task moved on); kept as a note", c.task_id, c.attempt)
            elif c.status == "set_aside":
                log.error("result of %s attempt %d not writable: its file went to needs_human", c.task_id, c.attempt)
        self.finished_total += len(results)
        for tid in handbacks:
            log.info("handed %s back to pending", tid)
        claimed: list[Task] = landed.value if landed and landed.value else []
        self.runner.take(claimed)
        self.claimed_total += len(claimed)
        if declined:
            self.fold.handed_back()
        if self.delegates:  # claims made for us in the head our push went onto: start them now
            claimed += self.fold.after_push(seat)
        self._busy_recently = bool(claimed)
        # Idle: it could claim, found nothing, had nothing to report and nothing was running.
        self.idle = free > 0 and not claimed and not results and nothing_running
        self.lease.beat()
        return bool(claimed or results)

    def _report_problems(self, problems: list[Problem], what: str = "skipping bad task file") -> None:
        for p in problems:
            key = f"{p.path}:{p.reason}"
            if key not in self.reported_bad:
                self.reported_bad.add(key)
                log.error("%s: %s", what, p.reason)

    def _notify_last(self) -> None:
        """On the way out: tell about what the last pass reported, and let running notifiers finish."""
        try:
            self.notifier.check(Snapshot(self.fleet.repo, self.fleet.repo.rev(TRACKING)))
        except FleetqError as e:
            log.debug("no last notification check: %s", e)
        self.notifier.drain(5)

    def _refresh_checkout(self) -> None:
        """On the way out: the person's checkout catches up with the last pass's push (during the run,
        each fetch moves it: headcache.sync)."""
        try:
            self.fleet.refresh_checkout()
        except FleetqError as e:
            log.debug("checkout not refreshed: %s", e)

    # -- watchdog --
    def _start_watch(self) -> None:
        if not self.watch or self.once:
            return
        try:
            from fleetq.worker.watch import start_watch

            self._observer_thread = start_watch(self.fleet, self.wake, self.intake.note_dropped)
        except Exception as e:  # noqa: BLE001 - the timer still works without events
            log.warning("file watching unavailable (%s); polling only", e)

    # -- usage limits (kept here for tests/run/test_usage_limit.py) --
    def _limit_wait(self, t: Task, res: HandlerResult) -> None:
        self.runner.limit_wait(t, res)

    def _usable_agents(self) -> set[str]:
        return self.runner.usable_agents()
