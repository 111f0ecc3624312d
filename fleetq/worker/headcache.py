"""What the worker knows of the remote head (docs/design.md, "The repo is the queue").

Fetching the head (only when it moved), the config, agents and custom handlers
as committed there (cached by their trees' shas), when this machine first saw
each pending task, and the bookkeeping a pass reports: runs whose task moved
on (killed here), orphaned claims to reap, and killed runs to hand back.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from fleetq.core import clock, states
from fleetq.core.config import FleetConfig
from fleetq.core.heartbeat import Beat, Observer
from fleetq.core.reaper import find_orphans
from fleetq.core.snapshot import Snapshot
from fleetq.core.states import CLAIMED
from fleetq.errors import FleetqError, InvalidTask
from fleetq.layout import TRACKING
from fleetq.run import notify
from fleetq.run.agents.registry import installed_agents, load_agents
from fleetq.trust.fsck import rewritten
from fleetq.worker.state import WorkerState

log = logging.getLogger("fleetq.worker.headcache")
SIGHTINGS = "sightings.yaml"


FOLLOW_EVERY = 2.0  # seconds between checkout moves of a busy worker


class HeadCache:
    """The worker's view of the remote head; it keeps the worker's ``cfg``, ``agents`` and ``installed``."""

    def __init__(self, worker: WorkerState) -> None:
        self.worker = worker
        self.observer = Observer(worker.fleet)
        # task id -> when this machine first saw it pending; on disk, so `work --once` from cron keeps it
        self.first_seen: dict[str, dt.datetime] = worker.recall_times(SIGHTINGS)
        self.last_reap = 0.0
        self.beats: dict[str, Beat] = {}  # the heartbeats as of the last reap pass (read once, used twice)
        self._tree: tuple[str, ...] | None = None
        self._followed_at = -FOLLOW_EVERY  # clock.mono() of the last checkout move
        self.beats_fetched = False  # the last sync fetched the heartbeat refs with main

    def sync(self, *, force: bool, machines: bool = False) -> str | None:
        """The remote head: fetched when it moved (a cheap ls-remote decides) or when we will push anyway;
        with ``machines`` the heartbeat refs come in the same fetch (``beats_fetched``: the fold reads them)."""
        fleet = self.worker.fleet
        repo = fleet.repo
        self.beats_fetched = False
        local = repo.rev(TRACKING)
        if not force:
            remote = repo.ls_remote_head()
            if remote == local and local is not None:
                self.worker.fetched_ok_at = clock.mono()
                self._follow()  # another fetch (the heartbeat read's) may have moved the tracking ref
                return local
        with fleet.lock:
            head = repo.fetch(machines=machines)
        self.beats_fetched = machines
        self._follow()  # a clean checkout keeps up with the queue
        self.worker.fetched_ok_at = clock.mono()  # the lease counts only while the head can be read (lease.py)
        if repo.forced_update:
            why = rewritten(repo)
            if why:
                log.error("%s", why)
        return head

    def _follow(self) -> None:
        """Move a clean checkout to the tracking ref, at most every FOLLOW_EVERY seconds: on a busy
        worker each move is four git processes, and the files it rewrites wake the dropped-file watch;
        the way out (daemon._refresh_checkout) catches up in the end."""
        now = clock.mono()
        if now - self._followed_at < FOLLOW_EVERY:
            return
        self._followed_at = now
        with self.worker.fleet.lock:
            self.worker.fleet.follow()

    def refresh(self, snap: Snapshot) -> FleetConfig:
        """Config, agents and custom handlers as committed at the head (cached by their trees' shas)."""
        w = self.worker
        key = tuple(
            e.sha if e else ""
            for e in (snap.repo.lookup(snap.tree, d) if snap.tree else None for d in ("config", "handlers"))
        )
        if key == self._tree and w.cfg is not None:
            return w.cfg
        cfg = w.cfg = FleetConfig(snap)
        for rel in ("config/agents.yaml",):
            raw = snap.read(rel)
            target = w.head_dir / rel
            if raw is None:
                target.unlink(missing_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(raw)
        hdir = w.head_dir / "handlers"
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
            w.agents = load_agents(w.head_dir)
        except FleetqError as e:
            log.error("%s (using the built-in agents)", e)
            w.agents = load_agents(None)
        w.installed = set(installed_agents(w.agents))
        w.notifier.select = notify.created_by([w.fleet.machine, *cfg.machine(w.fleet.machine).aliases])
        self._tree = key
        return cfg

    def note_sightings(self, snap: Snapshot, now: dt.datetime) -> None:
        """When this machine first saw each pending task (prefer's grace runs on our own clock)."""
        pending = {r.id for r in snap.refs(states.PENDING)}
        before = set(self.first_seen)
        for tid in pending:
            self.first_seen.setdefault(tid, now)
        for tid in list(self.first_seen):
            if tid not in pending:
                del self.first_seen[tid]
        if set(self.first_seen) != before:
            self.worker.keep_times(SIGHTINGS, self.first_seen)

    def check_running(self, snap: Snapshot) -> None:
        """A task moved out of claimed (cancel, resolve, reap) while it runs is killed here."""
        w = self.worker
        with w.lock:
            runs = list(w.running.values())
        if not runs:
            return
        claimed = {r.id: r for r in snap.refs(CLAIMED)}
        for r in runs:
            if r.cancel.is_set():
                continue
            found = [claimed[r.task.id]] if r.task.id in claimed else snap.locate(r.task.id)
            live = False
            if found and found[0].loc.state == CLAIMED:
                try:
                    t = snap.load(found[0])
                except InvalidTask:  # a hand edit broke its file: let it finish (its report sets it aside)
                    continue
                live = t.claim.get("machine") == w.fleet.machine and t.claim.get("attempt") == r.attempt
            if not live:
                r.why = f"moved to {found[0].loc.state if found else 'nowhere'}"
                log.info("%s %s while running: killing it", r.task.id, r.why)
                r.cancel.set()

    def orphans(self, snap: Snapshot) -> dict[str, tuple[str, str, int]]:
        """Claims to reap (throttled): other machines' whose lease ran out, and ours that nothing here runs."""
        w = self.worker
        lease = float(w.setting("lease"))
        if time.time() - self.last_reap < min(lease / 2, float(w.setting("heartbeat") or 10)):
            return {}
        self.last_reap = time.time()
        me = w.fleet.machine
        self.beats = self.observer.read(fetch=True)
        found = find_orphans(snap, self.observer, lease, me=me, beats=self.beats)
        # Our own claims that nothing here runs (a crash or restart lost them): hand back at once. A claim
        # another machine made for us that we have not started yet (no started marker) is not lost: the
        # pass starts it or declines it (worker/fold.py).
        busy = set(w.running) | w.journal.ids()
        started = w.fleet.state_dir / "started"
        for t in snap.tasks([CLAIMED]):
            by = t.claim.get("by")
            if by not in (None, me) and not (started / f"{t.id}.{t.claim.get('attempt')}").exists():
                continue
            if t.claim.get("machine") == me and t.id not in busy:
                # No attempt in the claim (a hand edit): 0, like None, makes handback_plan skip the attempt check.
                found[t.id] = ("its worker restarted", me, t.claim.get("attempt") or 0)
        return found

    def running_elsewhere(self) -> dict[str, str]:
        """Task id -> machine, for every run another machine's live heartbeat still lists (as of the last
        reap pass, at most ``min(lease / 2, heartbeat)`` ago)."""
        w = self.worker
        lease = float(w.setting("lease"))
        out: dict[str, str] = {}
        for name, b in self.beats.items():  # no extra git call on the claim path: the reap pass read them
            if name != w.fleet.machine and b.alive(lease):
                out.update({tid: name for tid in b.running if tid})
        return out

    def handbacks(self) -> dict[str, tuple[str | None, int | None]]:
        """Runs killed to be handed back (shutdown, fencing) whose threads have ended."""
        w = self.worker
        with w.lock:
            done = {
                tid: r
                for tid, r in w.running.items()
                if r.handing_back and r.thread is not None and not r.thread.is_alive()
            }
            for tid in done:
                del w.running[tid]
        return {tid: (w.fleet.machine, r.attempt) for tid, r in done.items()}
