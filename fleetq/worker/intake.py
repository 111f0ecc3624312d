"""New tasks a worker brings in: YAML files dropped into the clone's ``queue/pending/``, and due schedules.

Both are created in their own commits (docs/design.md, "The repo is the queue"):
a dropped file once it validates (a bad one is logged once and left in place),
a schedule fire under an id derived from its time, so that each fire happens
once whichever worker fires it.
"""

from __future__ import annotations

import logging

from fleetq import yamlio
from fleetq.core import schedules as schedmod
from fleetq.core import states, transitions
from fleetq.core import task as taskmod
from fleetq.core.snapshot import Snapshot
from fleetq.core.task import now_utc
from fleetq.errors import FleetqError, InvalidTask
from fleetq.git.repo import HookRejected
from fleetq.trust import signing
from fleetq.worker.state import WorkerState

log = logging.getLogger("fleetq.worker.intake")


class Intake:
    """Dropped files and schedule fires of one worker."""

    def __init__(self, worker: WorkerState) -> None:
        self.worker = worker
        self.dropped = True  # scan queue/pending for dropped files on the first pass (the watchdog sets it again)
        self.next_fire: float | None = None  # when the next schedule fires (epoch seconds)
        self.sched_state = worker.fleet.state_dir / "schedules.yaml"

    def note_dropped(self) -> None:
        """A file was dropped into queue/pending/ (the watchdog says): the next pass looks."""
        self.dropped = True

    # -- schedules --
    def fire_schedules(self, snap: Snapshot) -> None:
        w = self.worker
        try:
            # a fire is this worker's (maybe signed) commit of whatever the file says: not while it is tainted
            why = signing.untrusted(w.fleet.repo, snap.commit, "no schedule fires")
            if why:
                raise FleetqError(why)
            scheds, bad = schedmod.usable(snap)
        except FleetqError as e:
            if str(e) not in w.reported_bad:
                w.reported_bad.add(str(e))
                log.error("%s", e)
            return
        for why in bad:  # a bad schedule is skipped (logged once); the good ones still fire
            if why not in w.reported_bad:
                w.reported_bad.add(why)
                log.error("%s", why)
        if not scheds:
            self.next_fire = None
            return
        state = self._sched_state()
        now = now_utc()
        self.next_fire = min(s.next_fire(now) for s in scheds).timestamp()
        for s, fire in schedmod.due(scheds, state, now):
            try:
                if transitions.create_if_absent(w.fleet, s.task_for(fire, w.fleet.machine)):
                    log.info("schedule %s fired for %s", s.name, fire)
            except HookRejected as e:
                log.error("schedule %s: the remote refused the fire: %s", s.name, e)
            except InvalidTask as e:
                log.error("schedule %s: %s", s.name, e)
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

    # -- dropped files --
    def take_dropped(self, snap: Snapshot) -> None:
        """YAML files dropped (untracked) into the clone's queue/pending/: validate, commit, push."""
        w = self.worker
        self.dropped = False
        repo = w.fleet.repo
        for rel in repo.untracked(f"{states.QUEUE}/{states.PENDING}"):
            path = w.fleet.root / rel
            try:
                raw = path.read_bytes()
            except OSError:
                continue
            key = f"{rel}:{hash(raw)}"
            try:
                loc = states.parse_path(rel)
                if loc is None:
                    continue
                taskmod.parse(raw, state=loc.state, path=rel, file_id=loc.task_id)
                transitions.check_new_size(loc.task_id, raw)
                if snap.exists(loc.task_id):
                    raise FleetqError(f"{rel}: a task with id '{loc.task_id}' already exists in the queue")
            except (FleetqError, states.BadPath) as e:
                if key not in w.reported_bad:
                    w.reported_bad.add(key)
                    log.error("dropped file not queued: %s", e)
                continue
            landed = transitions.create_raw(w.fleet, loc.task_id, raw)
            if landed:
                log.info("queued dropped file %s", rel)
                path.unlink()
                if not repo.fast_forward_checkout():
                    path.write_bytes(raw)
