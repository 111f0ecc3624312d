"""One liveness model (core/liveness.py): the heartbeat follows the lease, a pair that cannot fence
is refused, a worker's own lease is honoured by reapers, and a stopped worker is offline at once."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetq.core import liveness, transitions
from fleetq.core.config import MachineSpec
from fleetq.core.heartbeat import beat
from fleetq.core.matching import Seat
from fleetq.errors import UsageError
from support.fleets import Fleets, run_fleetq
from support.workers import add, set_file, states_of, tasks


@given(lease=st.floats(1, 3600), share=st.floats(0.01, 1.0))
def test_every_accepted_pair_fences_before_any_reap_with_room_for_a_beat(lease: float, share: float) -> None:
    hb = lease * share
    try:
        t = liveness.timing(lease, hb)
    except UsageError:
        assert hb > lease / 4
        return
    assert hb <= lease / 4
    assert t.heartbeat < t.fence_after < t.lease  # the next beat is due before the fence; the fence before a reap
    assert t.fence_after - t.heartbeat >= lease / 4 - 1e-9  # room for a slow push


@given(lease=st.floats(1, 3600))
def test_the_heartbeat_follows_the_lease_unless_set(lease: float) -> None:
    t = liveness.effective(lease, None, {"lease": 60, "heartbeat": 10}, 60)
    assert t.heartbeat == pytest.approx(lease / 6) and t.fence_after > t.heartbeat
    assert liveness.effective(None, None, {"lease": 60, "heartbeat": 10}, 60).heartbeat == 10
    assert liveness.effective(None, None, {}, 60).heartbeat == 10


def test_lease_4_alone_claims_and_a_contradictory_pair_is_refused(fleets: Fleets) -> None:
    """`work --lease 4` used to keep the fixed 10 s heartbeat: its fence point was negative, it never held its
    lease and never claimed anything, silently."""
    root = str(fleets.first.root)
    add(fleets.first, tasks(2, "l"))
    proc = run_fleetq("--fleet", root, "work", "--lease", "4", "--burst", "--poll", "0.2", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert states_of(fleets.first) == {"l000": "done", "l001": "done"}
    bad = run_fleetq("--fleet", root, "work", "--lease", "4", "--heartbeat", "10", "--burst", timeout=30)
    assert bad.returncode == 2 and "cannot hold a 4s lease" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_reap_with_a_short_lease_leaves_a_live_claim_alone(fleets: Fleets, cli) -> None:
    """A live worker (beating, lease 60) keeps its claim against `reap --lease 1`: refused, or with
    --force still honoured when the worker's own beat is fresh within the longer lease."""
    ghost = fleets.clone("busy")
    add(fleets.first, tasks(1, "r"))
    transitions.claim(ghost, Seat(MachineSpec("busy", capabilities=["run_script"])), 1)
    beat(ghost, {"seq": 1, "running": [{"id": "r000"}], "lease": 60})
    time.sleep(1.5)
    res = cli("--fleet", fleets.first.root, "reap", "--lease", "1")
    assert res.code == 2 and "shorter than the fleet's lease (60s)" in res.err
    assert states_of(fleets.first)["r000"] == "claimed"
    set_file(fleets.first, "config/fleet.yaml", "lease: 1\n")  # even a fleet lease of 1 s...
    res = cli("--fleet", fleets.first.root, "reap")
    assert res.code == 0 and "no orphaned claims" in res.out  # ...honours the worker's own 60 s
    res = cli("--fleet", fleets.first.root, "reap", "--lease", "1", "--force")
    assert res.code == 0 and "r000: claimed -> pending" in res.out  # a person insisted


def test_a_stopped_worker_is_offline_at_once_and_never_picked(fleets: Fleets, cli) -> None:
    root = str(fleets.first.root)
    other = fleets.clone("beta")
    add(fleets.first, tasks(1, "s"))
    assert run_fleetq("--fleet", str(other.root), "work", "--burst", "--poll", "0.2", timeout=60).returncode == 0
    rows = {r["machine"]: r for r in json.loads(cli("--fleet", root, "status", "--json").out)["machines"]}
    assert rows["beta"]["online"] is False and rows["beta"]["liveness"].startswith("offline (stopped)"), rows["beta"]
    picked = cli("--fleet", root, "pick", "--json")
    doc = json.loads(picked.out)
    assert "choice" in doc and doc["choice"] != "beta", doc


def test_a_heartbeat_flag_is_checked_against_the_fleets_lease(fleets: Fleets) -> None:
    from fleetq.worker.daemon import Worker

    with pytest.raises(UsageError, match="cannot hold a 60s lease"):
        Worker(fleets.first, heartbeat=20, once=True, watch=False)
    set_file(fleets.first, "config/fleet.yaml", "lease: 120\n")
    w = Worker(fleets.first, heartbeat=20, once=True, watch=False)  # 20 s fits a 120 s lease
    w.cfg = fleets.first.config(fleets.first.snapshot())
    assert (w.setting("lease"), w.setting("heartbeat")) == (120.0, 20.0)


def test_a_requeued_task_gets_a_new_attempt_and_waits_for_the_old_run_to_stop(fleets: Fleets) -> None:
    """cancel, then `resolve pending`, used to reset attempts: the next claim reused the fencing token of the
    run still being stopped, and both ran at once. Now the count never goes back, and no worker claims a
    task that another machine's live heartbeat still lists as running."""
    from fleetq.core.transitions import cancel, claim_plan, resolve
    from fleetq.worker.daemon import Worker

    a = fleets.clone("a")
    add(fleets.first, tasks(1, "q", max_attempts=3))
    [first] = transitions.claim(a, Seat(MachineSpec("a", capabilities=["run_script"])), 1)
    assert first.claim["attempt"] == 1
    beat(a, {"seq": 1, "running": [{"id": "q000", "attempt": 1}], "lease": 60})  # a still stops its run
    cancel(fleets.first, ["q000"])
    resolve(fleets.first, ["q000"], "pending")
    t = fleets.first.snapshot().get("q000")
    assert t.state == "pending" and t.attempts == 1 and t.max_attempts == 4  # a fresh budget, the count kept

    w = Worker(fleets.first, once=True, watch=False)
    w.cfg = fleets.first.config(fleets.first.snapshot())
    w.heads.orphans(fleets.first.snapshot())  # the reap pass reads (fetches) the heartbeats
    elsewhere = w.heads.running_elsewhere()
    assert elsewhere == {"q000": "a"}
    seat = Seat(MachineSpec("alpha", capabilities=["run_script"]), running_elsewhere=elsewhere)
    now = transitions.now_utc()
    snap = fleets.first.snapshot()
    assert claim_plan(snap, seat, 1, now=now, grace=0, machine="alpha") is None
    beat(a, {"seq": 2, "running": [], "lease": 60})  # the old run is gone
    w.heads.last_reap = 0.0  # the next reap pass is due
    w.heads.orphans(fleets.first.snapshot())
    assert w.heads.running_elsewhere() == {}
    [second] = transitions.claim(fleets.first, Seat(MachineSpec("alpha", capabilities=["run_script"])), 1)
    assert second.claim["attempt"] == 2  # a new fencing token: the old run's result cannot land on it


def test_one_identity_per_machine_and_one_worker_per_clone(fleets: Fleets, cli, tmp_path) -> None:
    """A second worker calling itself mini (from another clone), a `join --machine mini` while mini is live,
    and a second `fleetq work` in the same clone are refused in one line; --force takes a name over."""
    from support.workers import WorkerProc, wait_for

    mini = fleets.clone("mini")
    add(fleets.first, tasks(1, "i"))
    w = WorkerProc(mini)
    try:
        wait_for(lambda: "mini" in json.dumps(json.loads(cli("--fleet", fleets.first.root, "status", "--json").out)),
                 30, what="mini's first heartbeat")  # fmt: skip
        wait_for(lambda: states_of(fleets.first)["i000"] == "done", 30, what="mini to run a task")
        twin = run_fleetq("--fleet", str(fleets.first.root), "--machine", "mini", "work", "--once", timeout=60)
        assert twin.returncode == 4 and "mini is live on" in twin.stderr and "--force" in twin.stderr, twin.stderr
        same = run_fleetq("--fleet", str(mini.root), "work", "--once", timeout=60)
        assert same.returncode == 4 and "one clone runs one worker" in same.stderr, same.stderr
        res = cli("join", fleets.remote, str(tmp_path / "mini-again"), "--machine", "mini")
        assert res.code == 4 and "mini is live on" in res.err and not (tmp_path / "mini-again").exists()
        res = cli("join", fleets.remote, str(tmp_path / "mini-moved"), "--machine", "mini", "--force")
        assert res.code == 0, res.err
    finally:
        w.stop()


def test_work_once_passes_from_cron_let_a_preferred_task_overflow_after_the_grace(fleets: Fleets) -> None:
    """The grace of a `prefer`red task counts from this machine's first sighting. Kept in memory, each
    `work --once` (a new process, as from cron) saw it for the first time and never let it overflow."""
    root = str(fleets.first.root)
    set_file(fleets.first, "config/fleet.yaml", "prefer_grace: 2\n")
    add(fleets.first, [{**tasks(1, "p")[0], "prefer": "mini"}])
    once = ["--fleet", root, "work", "--once", "--poll", "0.2"]
    assert run_fleetq(*once, timeout=60).returncode == 0
    assert states_of(fleets.first)["p000"] == "pending"  # within the grace: left for mini
    time.sleep(2.5)
    assert run_fleetq(*once, timeout=60).returncode == 0
    assert states_of(fleets.first)["p000"] == "done"  # the grace ran out across passes: alpha took it
