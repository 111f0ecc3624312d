"""The worker's side of folding and delegation (docs/design.md, "The claim protocol": "One push for the fleet").

- ``settle``: journal entries that ``main`` already shows applied (folded by another machine's
  push) are cleared without a push of our own.
- ``take_delegated``: claims another machine made for us (``claim.by``) are started under a
  fresh lease with a free slot, after a started marker is on disk (so a restarted worker hands
  them back instead of running them twice); the ones we cannot take are declined, and the next
  pass hands them back at once.
- ``adverts``: other live machines' fresh heartbeats as results to fold and slots to fill.
- ``defer``: with other live workers about, a pass that would push main only for its own results
  and claims first advertises them on its heartbeat ref and waits a short jittered time for
  someone else's push to fold them.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from fleetq.core import clock, delegation, liveness
from fleetq.core.cas import STATS
from fleetq.core.heartbeat import Beat
from fleetq.core.matching import Seat, blocker
from fleetq.core.snapshot import Snapshot
from fleetq.core.states import PENDING
from fleetq.core.task import Task, now_utc
from fleetq.core.transitions import Completion
from fleetq.layout import TRACKING
from fleetq.worker.headcache import HeadCache
from fleetq.worker.lease import Lease
from fleetq.worker.runner import Runner
from fleetq.worker.state import WorkerState

log = logging.getLogger("fleetq.worker.fold")
STARTED = "started"  # in the state dir: <id>.<attempt> per delegated claim started here
DEFER_STEP = 0.05  # seconds: the shortest turn of deference (one push and the others' look at it)
DEFER_MAX = 1.5  # seconds: the longest a pass defers


class Fold:
    """Folding, delegated claims and deference for one worker."""

    def __init__(self, worker: WorkerState, lease: Lease, runner: Runner, heads: HeadCache, *, once: bool) -> None:
        self.worker = worker
        self.lease, self.runner, self.heads, self.once = lease, runner, heads, once
        self.dir: Path = worker.fleet.state_dir / STARTED
        self.dir.mkdir(parents=True, exist_ok=True)
        self.declined: dict[str, tuple[str, int, str]] = {}  # id -> (machine, attempt, why): hand back next pass
        self.defer_until: float | None = None  # monotonic: when a deferring pass pushes main itself
        self.folded_total = 0

    # -- started markers --
    def _marker(self, tid: str, attempt: int) -> Path:
        return self.dir / f"{tid}.{attempt}"

    def marked(self, tid: str, attempt: int) -> bool:
        return self._marker(tid, attempt).exists()

    def sweep(self, snap: Snapshot) -> None:
        """Drop markers whose claim is gone from the head (an attempt number never comes back)."""
        names = {f"{t.id}.{t.claim.get('attempt')}" for t in delegation.claims_of(snap, self.worker.fleet.machine)}
        for f in self.dir.iterdir():
            if f.name not in names:
                f.unlink(missing_ok=True)

    # -- our own results --
    def settle(self, snap: Snapshot, results: list[Completion]) -> list[Completion]:
        """Clear the results ``main`` shows applied (folded by another push); the rest is still to report."""
        w = self.worker
        out = []
        for c in results:
            if delegation.standing(snap, w.fleet.machine, c) == delegation.APPLIED:
                w.journal.clear(c)
                w.finished_total += 1
                self.folded_total += 1
                log.debug("result of %s attempt %d was folded into main by another machine", c.task_id, c.attempt)
            else:
                out.append(c)
        w.offer = [c for c in out if delegation.standing(snap, w.fleet.machine, c) == delegation.LIVE]
        return out

    # -- claims made for us --
    def delegated(self, snap: Snapshot) -> list[Task]:
        """Claims another machine made for us at this head that we have neither started nor declined."""
        w = self.worker
        me = w.fleet.machine
        made = [t for t in delegation.claims_of(snap, me) if t.claim.get("by") not in (None, me)]
        if not made:
            return []  # the common case costs no journal read
        with w.lock:
            running = set(w.running)
        busy = running | w.journal.ids() | set(self.declined)
        return [t for t in made if t.id not in busy and not self.marked(t.id, int(t.claim.get("attempt") or 0))]

    def take_delegated(self, snap: Snapshot, seat: Seat) -> list[Task]:
        """Start the claims made for us (fresh lease, free slot, a seat that may run it), else decline them."""
        w = self.worker
        todo = self.delegated(snap)
        if not todo:
            return []
        if not w.stopping and not self.lease.held():
            self.lease.beat(force=True)  # the claim gate: start only while our heartbeat is known to land
            if not self.lease.held():
                return []  # neither start nor decline: reaped after a lease if we never come back
        now = now_utc()
        slots = int(w.setting("slots"))
        started: list[Task] = []
        for t in todo:
            attempt = int(t.claim.get("attempt") or 0)
            with w.lock:
                free = slots - len(w.running) - len(started)
            why = "worker stopping" if w.stopping else "no free slot" if free <= 0 else blocker(t, seat, snap, now, 0.0)
            if why:
                self.declined[t.id] = (w.fleet.machine, attempt, f"claim made for {w.fleet.machine} declined: {why}")
                log.info("declining %s (delegated by %s): %s", t.id, t.claim.get("by"), why)
                continue
            self._marker(t.id, attempt).touch()  # before it starts: a restart hands it back, never runs it twice
            started.append(t)
        if started:
            log.info("starting %d claim(s) made for us: %s", len(started), ", ".join(t.id for t in started))
            self.runner.take(started)
            w.claimed_total += len(started)
        if self.declined:
            w.wake.set()
        return started

    def after_push(self, seat: Seat) -> list[Task]:
        """After a pass: start the claims made for us at the head it went onto; tidy the markers."""
        w = self.worker
        head = w.fleet.repo.rev(TRACKING)
        snap = Snapshot(w.fleet.repo, head)
        started = self.take_delegated(snap, seat)
        self.sweep(snap)
        with w.lock:
            w.offer_free = max(0, int(w.setting("slots")) - len(w.running))
        return started

    def others(self, seat: Seat) -> list[delegation.Advert] | None:
        """Fresh adverts of the other machines for this pass's push (their refs fetched with main)."""
        if not self.peers():
            return None
        # with main, in this pass's sync when it fetched, else now: the plan sees the newest head and beats
        self.heads.beats = self.heads.observer.read(fetch=not self.heads.beats_fetched)
        self.heads.beats_fetched = False
        return self.adverts(self.heads.beats, seat)

    def due_in(self) -> float:
        """Seconds until a deferring pass pushes main itself."""
        return 0.0 if self.defer_until is None else self.defer_until - clock.mono()

    def handed_back(self) -> None:
        """The declined claims went back with the pass that just landed."""
        self.declined.clear()

    # -- other machines --
    def peers(self) -> dict[str, Beat]:
        """Other live workers that fold and delegate (their fresh beats say ``delegate``)."""
        w = self.worker
        lease = float(w.setting("lease"))
        return {
            n: b
            for n, b in self.heads.beats.items()
            if n != w.fleet.machine and b.alive(lease) and b.state.get("delegate") is True
        }

    def adverts(self, beats: dict[str, Beat], my_seat: Seat) -> list[delegation.Advert]:
        """Results to fold from every other live machine; seats to fill for the idle, fresh, running ones."""
        w = self.worker
        lease = float(w.setting("lease"))
        cfg = w.cfg
        out = []
        elsewhere = {
            tid: n for n, b in beats.items() if n != w.fleet.machine and b.alive(lease) for tid in b.running if tid
        }
        with w.lock:
            elsewhere.update({tid: w.fleet.machine for tid in w.running})
        for name, b in sorted(beats.items()):
            if name == w.fleet.machine or not b.alive(lease):
                continue
            a = delegation.Advert(name, delegation.advertised(b.state))
            st = b.state
            own = liveness.announced_lease(st) or lease
            hb = st.get("heartbeat")
            hb = float(hb) if isinstance(hb, int | float) else own / liveness.HEARTBEAT_SHARE
            fresh = b.age < liveness.Timing(own, hb).fence_after
            if cfg is not None and fresh and st.get("state") == "running" and st.get("delegate") is True:
                if int(st.get("free") or 0) > 0:
                    agents = st.get("agents")
                    a.seat = Seat(
                        cfg.machine(name),
                        agents=set(agents) if isinstance(agents, list) else None,
                        first_seen=my_seat.first_seen,
                        running_elsewhere={k: v for k, v in elsewhere.items() if v != name},
                    )
                    a.slots = int(st.get("slots") or a.seat.spec.slots)
            if a.results or a.seat is not None:
                out.append(a)
        return out

    # -- deference --
    def defer(self, snap: Snapshot, results: list[Completion], free: int) -> bool:
        """Whether this pass waits for another worker's push to fold its results and fill its slots.

        Only with other live workers about, and only while nothing but our own results and claims
        needs main; the first call advertises (a beat now) and sets a jittered deadline scaled by
        how many others there are; past it the pass pushes main itself (folding everyone)."""
        w = self.worker
        peers = self.peers()
        if not peers or w.stopping or self.once:
            self.defer_until = None
            return False
        if not results and not (free and any(True for _ in snap.refs(PENDING))):
            return False  # nothing to push: no need to wait either
        now = clock.mono()
        if self.defer_until is None:
            # A turn per worker, in an order that rotates with the head: the first in turn pushes at once,
            # the others wait a slot each for a push that folds them (two workers never share a slot).
            names = sorted([w.fleet.machine, *peers])
            turn = (names.index(w.fleet.machine) - int((snap.commit or "0")[:8], 16)) % len(names)
            step = self.step()
            wait = min(DEFER_MAX, turn * step) + random.uniform(0, step / 4)
            if turn == 0:
                return False
            self.defer_until = now + wait
            w.offer_free = free
            self.lease.advertise()
            return True
        if now < self.defer_until:
            return True
        self.defer_until = None
        return False

    def step(self) -> float:
        """One turn: about as long as a push of main takes here (so turns do not overlap)."""
        return max(DEFER_STEP, min(DEFER_MAX, 1.2 * STATS.push_s))

    def backoff(self, attempt: int) -> float:
        """After the n-th lost push: jittered, growing with n and in proportion to how many others push."""
        return random.uniform(0, min(DEFER_MAX, self.step() * (1 + len(self.peers())) / 2 * (1 + attempt)))
