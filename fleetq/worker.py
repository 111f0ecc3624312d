"""`fleetq work`: the cron-style runner (DESIGN.md §5).

One loop per machine. Each pass: report finished results, hand back orphans,
claim up to the free slots, all in one commit and one push; heartbeat; fire
due schedules. Runs happen in threads, each driving a supervised process tree.
The loop wakes on a timer (a cheap ``ls-remote`` first), on watchdog events
(the local remote's refs, files dropped into ``queue/pending/``), when a run
ends, and at schedule fire times.

Self-fencing (no task runs on two machines at once): other workers reap our
claims after a full ``lease`` in which *they* saw our heartbeat ref unchanged,
and a heartbeat can only be seen after it landed. So this worker times each
heartbeat from just before its push, and when none has landed for
``lease - max(2 x heartbeat, lease / 4)`` (a cut network, a remote that is
down) a watchdog thread kills its running tasks: they are handed back (no
attempt spent) once the remote answers again, or found already reaped. The
kill lands before any reap can, so a reaped task is never still running here.
For the same reason the worker claims only while its lease is fresh (it
beats first when it is not). Results finished before the fence stay in the
journal and are pushed when the remote answers (a reaped one as a note).
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import agents as agentsmod, handlers_loader, notify, schedules as schedmod, signing, states, transitions, yamlio
from .cas import Plan, transact
from .config import FleetConfig
from .errors import Conflict, FleetqError, RemoteError
from .gitrepo import HookRejected
from .fleet import Fleet
from .handlerapi import HandlerContext, HandlerResult
from .heartbeat import Observer, beat, load_metrics
from .journal import Journal
from .matching import Seat
from .reaper import find_orphans, reap_plan
from .redact import redact_result
from .fsck import rewritten
from .snapshot import Problem, Snapshot
from .ssh import presync
from .states import CLAIMED, FAILED, NEEDS_HUMAN
from .task import Task, fmt_time, now_utc, parse_time

log = logging.getLogger("fleetq.worker")
LINGER = 0.015  # seconds


@dataclass
class Run:
    task: Task
    attempt: int
    cancel: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.time)
    thread: threading.Thread | None = None
    handing_back: bool = False
    why: str = ""


class Worker:
    def __init__(self, fleet: Fleet, *, slots: int | None = None, poll: float | None = None,
                 lease: float | None = None, once: bool = False, burst: bool = False,
                 heartbeat: float | None = None, grace: float | None = None, watch: bool = True) -> None:
        self.fleet = fleet
        self.once, self.burst, self.watch = once, burst, watch
        self._opts = {"slots": slots, "poll": poll, "lease": lease, "heartbeat": heartbeat, "prefer_grace": grace}
        self.journal = Journal(fleet.state_dir)
        self.logs_dir = fleet.state_dir / "logs"
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.head_dir = fleet.state_dir / "head"  # committed handlers/ and config/agents.yaml, as of the head
        self.observer = Observer(fleet)
        self.running: dict[str, Run] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stopping = False
        self.handback = False
        self.seq = 0
        self.first_seen: dict[str, dt.datetime] = {}
        self.last_beat = 0.0
        self.beat_landed = 0.0  # when the last heartbeat that landed was started (fencing)
        self.fenced_total = 0
        self._fence_stop = threading.Event()  # ends the fence and heartbeat threads
        self._beat_lock = threading.Lock()  # the loop and the heartbeat thread never beat at once
        self.last_reap = 0.0
        self.last_checkout = 0.0
        self.sched_state = fleet.state_dir / "schedules.yaml"
        self.dropped = True  # scan queue/pending for dropped files on the first pass
        self.reported_bad: set[str] = set()
        self.cfg: FleetConfig | None = None
        self.agents: dict[str, Any] = {}
        self.installed: set[str] = set()
        self.limited: dict[str, dt.datetime] = {}  # agent -> until when it is usage-limited (seen here)
        self.notifier = notify.Notifier(fleet)  # tells this machine's user about the tasks it created
        self._head_tree: tuple[str, ...] | None = None
        self._observer_thread: Any = None
        self.claimed_total = 0
        self.next_fire: float | None = None
        self.idle = False
        self.finished_total = 0

    # -- settings: flag, else fleet config --
    def setting(self, key: str) -> Any:
        v = self._opts.get(key)
        if v is not None:
            return v
        if key == "slots":
            return self.cfg.machine(self.fleet.machine).slots if self.cfg else 2
        return self.cfg.get(key) if self.cfg else None

    # -- lifecycle --
    def run(self) -> int:
        self._install_signals()
        self._start_watch()
        log.info("worker %s starting on %s", self.fleet.machine, self.fleet.root)
        try:
            self._loop()
        finally:
            if self._observer_thread is not None:
                self._observer_thread.stop()
            self._beat(force=True)
            self._refresh_checkout(force=True)
            self._notify_last()
        log.info("worker %s stopped (%d claimed, %d finished)", self.fleet.machine, self.claimed_total, self.finished_total)
        return 0

    def stop(self, *, hand_back: bool = False) -> None:
        """Warm stop (finish running tasks), or with ``hand_back`` kill them and return them to pending."""
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

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("signal %s: %s", signum, "handing running tasks back" if self.stopping else "finishing running tasks, then exiting")
            self.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    def _loop(self) -> None:
        for target, name in ((self._fence_watch, "fence"), (self._beat_watch, "heartbeat")):
            threading.Thread(target=target, name=name, daemon=True).start()
        try:
            self._loop_passes()
        finally:
            self._fence_stop.set()

    def _loop_passes(self) -> None:
        passes = 0
        while True:
            self.idle = False
            try:
                self.tick(claim=not (self.once and passes))
            except HookRejected as e:
                log.error("the remote's hook refused a push: %s", e)
            except RemoteError as e:
                log.warning("remote unreachable: %s (results stay in the journal)", e)
            except Conflict as e:
                log.warning("%s", e)
            except FleetqError as e:
                log.error("%s", e)
            passes += 1
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
        """Until the timer, the next heartbeat or the next schedule fire, whichever is first."""
        poll = float(self.setting("poll") or 5)
        hb = float(self.setting("heartbeat") or 10)
        until = [poll, self.last_beat + hb - time.time()]
        if self.next_fire is not None:
            until.append(self.next_fire - time.time() + 0.05)
        return max(0.05, min(until))

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
        if free and not self._lease_held():
            self._beat(force=True)  # fencing: claim only while our heartbeat is known to land
            if not self._lease_held():
                free = 0
        head = self._sync(force=bool(results) or free > 0 and self._busy_recently)
        snap = Snapshot(fleet.repo, head)
        self._refresh_head(snap)
        self.notifier.check(snap)
        self._check_running(snap)
        if self.dropped:
            self._take_dropped(snap)
        if claim:  # schedules fire in passes that may claim (not in --once's later passes)
            self._fire_schedules(snap)
        orphans = self._orphans(snap)
        handbacks = self._handbacks()
        if not (results or orphans or handbacks) and free == 0:
            self._beat()
            return False
        with self.lock:
            nothing_running = not self.running
        seat = Seat(self.cfg.machine(fleet.machine), agents=self._usable_agents(), first_seen=self.first_seen)
        problems: list[Problem] = []

        def plan(s: Snapshot) -> Plan | None:
            now = now_utc()
            p = Plan(value=[])
            self._note_sightings(s, now)
            if results:
                p.add(transitions.complete_plan(s, results, fleet.machine, now))
            if handbacks:
                p.add(transitions.handback_plan(s, handbacks, fleet.machine, "worker shut down" if self.handback
                                                else "its worker lost the lease (fenced)", now, spend=False))
            if orphans:
                p.add(reap_plan(s, orphans, fleet.machine))
            if free:
                problems.clear()
                c = transitions.claim_plan(s, seat, free, now=now, grace=float(self.setting("prefer_grace")),
                                           machine=fleet.machine, problems=problems)
                if c is not None:
                    p.add(c)
                    p.value = c.value
            p.subject = _subject(fleet.machine, p.trailers)
            return p

        landed = transact(fleet, plan, fetch=False)
        self._report_problems(problems)
        for c in results:
            self.journal.clear(c)
            if c.status == "stale":
                log.warning("result of %s attempt %d was stale (task moved on); kept as a note", c.task_id, c.attempt)
        self.finished_total += len(results)
        for tid in handbacks:
            log.info("handed %s back to pending", tid)
        claimed: list[Task] = landed.value if landed and landed.value else []
        for t in claimed:
            why = self._untrusted(t)
            if why:
                self._refuse(t, why)
            else:
                self._start(t)
        self.claimed_total += len(claimed)
        self._busy_recently = bool(claimed)
        # Idle: it could claim, found nothing, had nothing to report and nothing was running.
        self.idle = free > 0 and not claimed and not results and nothing_running
        self._beat()
        self._refresh_checkout()
        return bool(claimed or results)

    def _notify_last(self) -> None:
        """On the way out: tell about what the last pass reported, and let running notifiers finish."""
        try:
            self.notifier.check(Snapshot(self.fleet.repo, self.fleet.repo.rev("refs/remotes/origin/main")))
        except FleetqError as e:
            log.debug("no last notification check: %s", e)
        self.notifier.drain(5)

    def _refresh_checkout(self, *, force: bool = False) -> None:
        """Keep the person's checkout current when it is clean (throttled: it costs a few git calls)."""
        if not force and time.time() - self.last_checkout < 10:
            return
        self.last_checkout = time.time()
        try:
            self.fleet.refresh_checkout()
        except FleetqError as e:
            log.debug("checkout not refreshed: %s", e)

    _busy_recently = True

    def _fence_after(self) -> float:
        """Seconds without a landed heartbeat after which running tasks are killed (before anyone may reap)."""
        lease = float(self.setting("lease") or 60)
        hb = float(self.setting("heartbeat") or 10)
        return lease - max(2 * hb, lease / 4)

    def _lease_held(self) -> bool:
        return time.time() - self.beat_landed < self._fence_after()

    def _fence_watch(self) -> None:
        """The fence runs in its own thread: the loop may sit in a git call to a dead remote."""
        while not self._fence_stop.wait(min(0.5, float(self.setting("heartbeat") or 10) / 4)):
            self._fence()

    def _beat_watch(self) -> None:
        """Heartbeats in their own thread too: a pass stuck in push retries must not starve the lease."""
        hb = float(self.setting("heartbeat") or 10)
        while not self._fence_stop.wait(min(0.5, hb / 4)):
            if self.cfg is not None and time.time() - self.last_beat >= hb:
                self._beat()

    def _fence(self) -> None:
        """Kill running tasks when our heartbeat has not landed for too long: others may reap them."""
        if self._lease_held():
            return
        age = time.time() - self.beat_landed
        with self.lock:
            runs = [r for r in self.running.values() if not r.handing_back]
            for r in runs:
                r.why = f"lost the lease: no heartbeat landed for {age:.1f}s"
                r.handing_back = True  # its result must not count: another machine may run it next
                r.cancel.set()
        for r in runs:
            self.fenced_total += 1
            log.warning("fenced %s (attempt %d): %s; it goes back to pending", r.task.id, r.attempt, r.why)
        if runs:
            self.wake.set()

    def _sync(self, *, force: bool) -> str | None:
        """The remote head: fetched when it moved (a cheap ls-remote decides) or when we will push anyway."""
        repo = self.fleet.repo
        local = repo.rev("refs/remotes/origin/main")
        if not force:
            remote = repo.ls_remote_head()
            if remote == local and local is not None:
                return local
        with self.fleet.lock:
            head = repo.fetch()
        if repo.forced_update:
            why = rewritten(repo)
            if why:
                log.error("%s", why)
        return head

    def _refresh_head(self, snap: Snapshot) -> None:
        """Config, agents and custom handlers as committed at the head (cached by their trees' shas)."""
        key = tuple(e.sha if e else "" for e in (snap.repo.lookup(snap.tree, d) if snap.tree else None
                                                 for d in ("config", "handlers")))
        if key == self._head_tree and self.cfg is not None:
            return
        self.cfg = FleetConfig(snap)
        for rel in ("config/agents.yaml",):
            raw = snap.read(rel)
            target = self.head_dir / rel
            if raw is None:
                target.unlink(missing_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(raw)
        hdir = self.head_dir / "handlers"
        hdir.mkdir(parents=True, exist_ok=True)
        wanted = {}
        entry = snap.repo.lookup(snap.tree, "handlers") if snap.tree else None
        if entry is not None and entry.is_tree:
            wanted = {e.name: e.sha for e in snap.repo.entries(entry.sha) if not e.is_tree and e.name.endswith(".py")}
        for f in hdir.glob("*.py"):
            if f.name not in wanted:
                f.unlink()
        for name, sha in wanted.items():
            data = snap.repo.read_blob(sha)
            path = hdir / name
            if not path.exists() or path.read_bytes() != data:
                path.write_bytes(data)
        try:
            self.agents = agentsmod.load_agents(self.head_dir)
        except FleetqError as e:
            log.error("%s (using the built-in agents)", e)
            self.agents = agentsmod.load_agents(None)
        self.installed = set(agentsmod.installed_agents(self.agents))
        self.notifier.select = notify.created_by([self.fleet.machine, *self.cfg.machine(self.fleet.machine).aliases])
        self._head_tree = key

    def _note_sightings(self, snap: Snapshot, now: dt.datetime) -> None:
        """When this machine first saw each pending task (prefer's grace runs on our own clock)."""
        pending = {r.id for r in snap.refs(states.PENDING)}
        for tid in pending:
            self.first_seen.setdefault(tid, now)
        for tid in list(self.first_seen):
            if tid not in pending:
                del self.first_seen[tid]

    def _check_running(self, snap: Snapshot) -> None:
        """A task moved out of claimed (cancel, resolve, reap) while it runs is killed here."""
        with self.lock:
            runs = list(self.running.values())
        if not runs:
            return
        claimed = {r.id: r for r in snap.refs(CLAIMED)}
        for r in runs:
            if r.cancel.is_set():
                continue
            found = [claimed[r.task.id]] if r.task.id in claimed else snap.locate(r.task.id)
            live = False
            if found and found[0].loc.state == CLAIMED:
                t = snap.load(found[0])
                live = t.claim.get("machine") == self.fleet.machine and t.claim.get("attempt") == r.attempt
            if not live:
                r.why = f"moved to {found[0].loc.state if found else 'nowhere'}"
                log.info("%s %s while running: killing it", r.task.id, r.why)
                r.cancel.set()

    def _orphans(self, snap: Snapshot) -> dict[str, tuple[str, str, int]]:
        lease = float(self.setting("lease"))
        if time.time() - self.last_reap < min(lease / 2, float(self.setting("heartbeat") or 10)):
            return {}
        self.last_reap = time.time()
        found = find_orphans(snap, self.observer, lease, me=self.fleet.machine)
        # Our own claims that nothing here runs (a crash or restart lost them): hand back at once.
        busy = set(self.running) | self.journal.ids()
        for t in snap.tasks([CLAIMED]):
            if t.claim.get("machine") == self.fleet.machine and t.id not in busy:
                found[t.id] = ("its worker restarted", self.fleet.machine, t.claim.get("attempt"))
        return found

    def _handbacks(self) -> dict[str, tuple[str | None, int | None]]:
        """Runs killed to be handed back (shutdown, fencing) whose threads have ended."""
        with self.lock:
            done = {tid: r for tid, r in self.running.items()
                    if r.handing_back and r.thread is not None and not r.thread.is_alive()}
            for tid in done:
                del self.running[tid]
        return {tid: (self.fleet.machine, r.attempt) for tid, r in done.items()}

    # -- running tasks --
    def _untrusted(self, task: Task) -> str | None:
        """Why the fleet's signing rule forbids running ``task`` (None: it may run). Main thread only."""
        head = self.fleet.repo.rev("refs/remotes/origin/main")
        return signing.verify_task(self.fleet.repo, head, task) if head else None

    def _refuse(self, task: Task, why: str) -> None:
        """A claimed task that must not run goes to needs_human with the reason (reported next pass)."""
        log.error("not running %s: %s", task.id, why)
        attempt = task.claim.get("attempt") or task.attempts
        self.journal.record(transitions.Completion(task.id, attempt, NEEDS_HUMAN, {"error": why}))
        self.wake.set()

    def _start(self, task: Task) -> None:
        run = Run(task=task, attempt=task.claim.get("attempt") or task.attempts)
        with self.lock:
            self.running[task.id] = run
        run.thread = threading.Thread(target=self._execute, args=(run,), name=f"task-{task.id}", daemon=True)
        run.thread.start()
        log.info("running %s (%s, attempt %d)", task.id, task.type, run.attempt)

    def _execute(self, run: Run) -> None:
        t = run.task
        env = {**os.environ, "FLEETQ_TASK_ID": t.id, "FLEETQ_MACHINE": self.fleet.machine,
               "FLEETQ_ATTEMPT": str(run.attempt), "FLEETQ_FLEET": str(self.fleet.root)}
        log_path = self.logs_dir / f"{t.id}.log"
        res: HandlerResult
        try:
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(f"=== {t.id} attempt {run.attempt} on {self.fleet.machine} at {now_utc():%Y-%m-%dT%H:%M:%SZ}\n")
            module = handlers_loader.load_handler(t.type, self.head_dir)
            ctx = HandlerContext(task_id=t.id, task=t.data, payload=dict(t.payload), machine=self.fleet.machine,
                                 attempt=run.attempt, fleet_dir=self.fleet.root, log_path=log_path, env=env,
                                 agents=self.agents, cancel=run.cancel, timeout=t.timeout)
            res = presync(ctx) or module.run(ctx)  # payload.sync: pull the code first
            if not isinstance(res, HandlerResult):
                raise TypeError(f"handler returned {type(res).__name__}, not HandlerResult")
        except FleetqError as e:
            res = HandlerResult(NEEDS_HUMAN, error=str(e))
        except Exception as e:  # noqa: BLE001 - a handler crash must never kill the worker
            res = HandlerResult(NEEDS_HUMAN, error=f"handler crashed: {type(e).__name__}: {e}")
        if run.handing_back:
            return  # the loop hands it back; its result does not count
        if run.cancel.is_set() and res.outcome != NEEDS_HUMAN:
            res.outcome = FAILED
            res.error = res.error or f"cancelled ({run.why or 'stopped'})"
        retry = None
        if res.outcome == FAILED and not run.cancel.is_set():
            retry = float(self.setting("retry_backoff") or 30)
            if res.extra.get("usage_limit"):
                self._limit_wait(t, res)
        c = transitions.Completion(t.id, run.attempt, res.outcome, redact_result(res.to_dict(), self.cfg), retry)
        self.journal.record(c)
        with self.lock:
            self.running.pop(t.id, None)
        log.info("finished %s: %s%s", t.id, res.outcome, f" ({res.error})" if res.error else "")
        self.wake.set()

    def _limit_wait(self, t: Task, res: HandlerResult) -> None:
        """A usage-limited run: the task waits for the reset (``result.wait_until``, read by
        complete_plan), and this worker claims nothing else for that agent until then."""
        now = now_utc()
        wait = agentsmod.limit_wait(parse_time(res.extra.get("usage_limit_reset")), t.result, now=now,
                                    backoff=float(self.setting("usage_limit_backoff") or 900),
                                    max_waits=int(self.setting("usage_limit_max_waits") or 10))
        if wait is None:
            log.warning("%s hit a usage limit %s times in a row: failing it", t.id, self.setting("usage_limit_max_waits"))
            return
        until, waits = wait
        res.extra.update(wait_until=fmt_time(until), limit_waits=waits)
        agent = res.extra.get("agent")
        if agent:
            with self.lock:
                self.limited[str(agent)] = max(until, self.limited.get(str(agent), until))
        log.info("%s: usage limit (agent %s) until %s", t.id, agent or "?", fmt_time(until))

    def _usable_agents(self) -> set[str]:
        """Installed agents minus those this worker saw hit a usage limit that has not reset yet."""
        now = now_utc()
        with self.lock:
            for name in [n for n, until in self.limited.items() if until <= now]:
                del self.limited[name]
            return self.installed - set(self.limited)

    # -- heartbeat, schedules, dropped files --
    def _beat(self, *, force: bool = False) -> None:
        hb = float(self.setting("heartbeat") or 10)
        if not force and time.time() - self.last_beat < hb:
            return
        if not self._beat_lock.acquire(blocking=False):
            return  # the other thread is beating right now
        try:
            self._beat_now()
        finally:
            self._beat_lock.release()

    def _beat_now(self) -> None:
        self.seq += 1
        spec = self.cfg.machine(self.fleet.machine) if self.cfg else None
        with self.lock:
            running = [{"id": r.task.id, "type": r.task.type, "agent": r.task.agent, "attempt": r.attempt,
                        "started": dt.datetime.fromtimestamp(r.started, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
                       for r in self.running.values()]
        info = {"seq": self.seq, "state": "stopping" if self.stopping else "running", "slots": int(self.setting("slots")),
                "capabilities": list(spec.capabilities) if spec else [], "agents": sorted(self.installed),
                "running": running, "load": load_metrics()}
        try:
            started = time.time()  # before the push: a reaper can only see it after it landed
            beat(self.fleet, info)
            self.last_beat = time.time()
            self.beat_landed = started
        except FleetqError as e:
            log.warning("heartbeat failed: %s", e)

    def _fire_schedules(self, snap: Snapshot) -> None:
        try:
            scheds = schedmod.load(snap)
        except FleetqError as e:
            if str(e) not in self.reported_bad:
                self.reported_bad.add(str(e))
                log.error("%s", e)
            return
        if not scheds:
            self.next_fire = None
            return
        state = self._sched_state()
        now = now_utc()
        self.next_fire = min(s.next_fire(now) for s in scheds).timestamp()
        for s, fire in schedmod.due(scheds, state, now):
            try:
                if transitions.create_if_absent(self.fleet, s.task_for(fire, self.fleet.machine)):
                    log.info("schedule %s fired for %s", s.name, fire)
            except HookRejected as e:
                log.error("schedule %s: the remote refused the fire: %s", s.name, e)
        new = {s.name: now.timestamp() for s in scheds}
        if new != state:
            try:
                yamlio.write_file(self.sched_state, new)
            except FleetqError as e:
                log.warning("%s", e)

    def _sched_state(self) -> dict[str, float]:
        try:
            data = yamlio.read_file(self.sched_state)
        except FleetqError:
            data = None
        return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _take_dropped(self, snap: Snapshot) -> None:
        """YAML files dropped (untracked) into the clone's queue/pending/: validate, commit, push."""
        self.dropped = False
        repo = self.fleet.repo
        for rel in repo.untracked(f"{states.QUEUE}/{states.PENDING}"):
            path = self.fleet.root / rel
            try:
                raw = path.read_bytes()
            except OSError:
                continue
            key = f"{rel}:{hash(raw)}"
            try:
                loc = states.parse_path(rel)
                if loc is None:
                    continue
                from . import task as taskmod

                taskmod.parse(raw, state=loc.state, path=rel, file_id=loc.task_id)
                if snap.exists(loc.task_id):
                    raise FleetqError(f"{rel}: a task with id '{loc.task_id}' already exists in the queue")
            except (FleetqError, states.BadPath) as e:
                if key not in self.reported_bad:
                    self.reported_bad.add(key)
                    log.error("dropped file not queued: %s", e)
                continue
            landed = transitions.create_raw(self.fleet, loc.task_id, raw)
            if landed:
                log.info("queued dropped file %s", rel)
                path.unlink()
                if not self.fleet.repo.fast_forward_checkout():
                    path.write_bytes(raw)

    def _report_problems(self, problems: list[Problem]) -> None:
        for p in problems:
            key = f"{p.path}:{p.reason}"
            if key not in self.reported_bad:
                self.reported_bad.add(key)
                log.error("skipping bad task file: %s", p.reason)

    # -- watchdog --
    def _start_watch(self) -> None:
        if not self.watch or self.once:
            return
        try:
            from .watch import start_watch

            self._observer_thread = start_watch(self)
        except Exception as e:  # noqa: BLE001 - the timer still works without events
            log.warning("file watching unavailable (%s); polling only", e)


def _subject(machine: str, trailers: list[tuple[str, str]]) -> str:
    """`fleetq: m reports a, b; claims c` from the plan's trailers."""
    verbs = {"pending->claimed": "claims", "claimed->pending": "hands back", "claimed->failed": "reports",
             "claimed->done": "reports", "claimed->needs_human": "reports"}
    groups: dict[str, list[str]] = {}
    tid = ""
    for key, value in trailers:
        if key == "Fleetq-Task":
            tid = value
        elif key == "Fleetq-Transition":
            groups.setdefault(verbs.get(value, "updates"), []).append(tid)
    parts = [f"{verb} {', '.join(ids[:3])}" + (f" (+{len(ids) - 3})" if len(ids) > 3 else "") for verb, ids in groups.items()]
    return f"fleetq: {machine} " + ("; ".join(parts) or "updates")
