"""What the 8-worker drain found (bench/README.md, "Drain, pushes per task, idle cost"): a --burst worker
takes no claims made for it, the file watch is not woken by reads of the remote, `queue` reads no done shard."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

from fleetq import yamlio
from fleetq.core import transitions
from fleetq.core.cas import Plan, transact
from fleetq.core.config import MachineSpec
from fleetq.core.matching import Seat
from fleetq.core.passplan import pass_plan
from fleetq.core.states import DONE
from fleetq.core.task import now_utc
from fleetq.git.reader import ObjectReader
from fleetq.layout import TRACKING
from fleetq.trust import survey as surveying
from fleetq.worker import watch
from support.fleets import Fleets
from support.workers import FAST, WorkerProc, tasks, wait_for


def beat_state(remote: str, machine: str) -> dict:
    shown = subprocess.run(
        ["git", "--git-dir", remote, "show", f"refs/fleetq/machines/{machine}:state.yaml"],
        capture_output=True,
    )
    return yamlio.load_safe(shown.stdout) if shown.returncode == 0 else {}


def test_a_burst_worker_does_not_offer_itself_for_delegated_claims(fleets: Fleets) -> None:
    """It may be gone before a claim made for it lands, and a --burst fleet may have no one left to reap it
    (400 tasks drained by 4 --burst workers ended with 8 claimed by one that had exited)."""
    looping = WorkerProc(fleets.clone("looper"), *FAST)
    try:
        wait_for(lambda: beat_state(fleets.remote, "looper").get("delegate") is True, what="a looping beat")
    finally:
        looping.stop()
    transitions.create(fleets.first, tasks(1, "slow", payload={"script": "sleep 3"}))
    burst = WorkerProc(fleets.clone("burster"), *FAST, "--burst")
    state = wait_for(
        lambda: (st := beat_state(fleets.remote, "burster")).get("running") and st,
        what="a beat of the burst worker while its task runs",
    )
    assert burst.wait(60) == 0, burst.log()
    assert "delegate" not in state and "results" not in state, state


def test_reading_the_remote_does_not_wake_the_watch(fleets: Fleets, monkeypatch) -> None:  # noqa: ANN001
    """Every git that reads a local remote opens its HEAD, config and refs/heads/main; with 8 workers that
    was thousands of events a second, each handled in Python. Only changes reach the handler now."""
    calls: list[str] = []
    seen = watch._Wake.on_any_event

    def counting(self, event) -> None:  # noqa: ANN001
        calls.append(event.event_type)
        seen(self, event)

    monkeypatch.setattr(watch._Wake, "on_any_event", counting)
    fleet = fleets.first
    wake = threading.Event()
    obs = watch.start_watch(fleet, wake, lambda: None)
    try:
        for _ in range(10):
            subprocess.run(["git", "ls-remote", fleets.remote], capture_output=True, check=True)
            subprocess.run(["git", "-C", str(fleet.root), "fetch", "-q", "origin"], capture_output=True, check=True)
        time.sleep(0.5)  # let the observer deliver anything queued
        assert calls == [] and not wake.is_set(), calls[:5]
        transitions.create(fleet, tasks(1, "w"))  # a push moves main: that does wake it
        assert wake.wait(5)
    finally:
        obs.stop()


def test_queue_reads_no_done_shard(fleets: Fleets, monkeypatch) -> None:  # noqa: ANN001
    """`queue`'s problem list (survey(done=False)) leaves done shards to validate and fsck, even their names:
    with 100,000 done tasks the listing took 0.5 s against 0.2 s on an empty fleet."""
    fleet = fleets.first
    transitions.create(fleet, tasks(3, "d"))

    def finish(snap):  # noqa: ANN001, ANN202
        p = Plan(value=None, subject="finish")
        for t in snap.tasks(["pending"]):
            p.changes[f"queue/pending/{t.id}.yaml"] = None
            p.changes[f"queue/{DONE}/2026-01-02/{t.id}.yaml"] = t.raw
        return p

    transact(fleet, finish)
    head = fleet.repo.rev(TRACKING)
    snap_tree = fleet.repo.tree_of(head)
    shard = fleet.repo.lookup(snap_tree, f"queue/{DONE}/2026-01-02")
    assert shard is not None and shard.is_tree
    read: list[str] = []
    for name in ("entries", "raw_entries", "walk_blobs"):
        real = getattr(ObjectReader, name)

        def spying(self, sha: str, *args, real=real):  # noqa: ANN001, ANN002, ANN202
            read.append(sha)
            return real(self, sha, *args)

        monkeypatch.setattr(ObjectReader, name, spying)
    found = surveying.survey(fleet.repo, head, done=False, cache=Path(fleet.state_dir) / "checked-shards.json")
    assert shard.sha not in read, "queue read the done shard"
    assert found.tasks == [], found.tasks  # nothing open; the done ones were not read either


def test_an_own_claim_that_ended_during_the_pass_takes_no_slot(fleets: Fleets) -> None:
    """A run that ends while a pass is planned is in neither the running set nor the pass's results;
    only claims others made for us may take our slots, or the pass claims nothing with tasks pending
    (and a --burst worker takes that for idle and exits: seen as a flaky test_bad_input)."""
    fleet = fleets.first
    transitions.create(fleet, tasks(3, "p"))
    seat = Seat(MachineSpec("alpha", capabilities=["run_script"]))
    kw = dict(machine="alpha", results=[], handbacks={}, orphans={}, seat=seat, grace=0.0, shutdown=False)
    first = pass_plan(fleet.snapshot(), **kw, free=1, problems=[], now=now_utc(), known=set())
    transact(fleet, lambda snap: pass_plan(snap, **kw, free=1, problems=[], now=now_utc(), known=set()))
    assert len(first.value) == 1
    ended = first.value[0].id  # ours, claimed by us, its run just ended: unknown to this pass
    again = pass_plan(fleet.snapshot(), **kw, free=2, problems=[], now=now_utc(), known=set())
    assert len(again.value) == 2 and ended not in {t.id for t in again.value}
