"""Folded results and delegated claims (docs/design.md, "The claim protocol": "One push for the fleet"),
with real `fleetq work` processes on real clones of one bare remote."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from fleetq.core.cas import transact
from fleetq.core.config import MachineSpec
from fleetq.core.matching import Seat
from fleetq.core.task import now_utc
from fleetq.core.transitions import claim_plan
from support.chaos import Interval, overlaps
from support.fleets import Fleets, git
from support.workers import WorkerProc, add, set_machines, states_of, tasks, wait_for

CAPS = ["run_script", "lint"]


def logged(log: Path, secs: float) -> str:
    """A script that records its run (start/end stamps), like the chaos test's."""
    line = f"$FLEETQ_TASK_ID $FLEETQ_MACHINE $FLEETQ_ATTEMPT $(date +%s.%N) >> {log}"
    return f"echo start {line}; sleep {secs}; echo end {line}"


def runs(log: Path) -> list[Interval]:
    out: dict[tuple[str, int], Interval] = {}
    every: list[Interval] = []
    for ln in log.read_text().splitlines() if log.exists() else []:
        kind, tid, host, attempt, at = ln.split()
        if kind == "start":
            out[(tid, int(attempt))] = iv = Interval(tid, host, int(attempt), float(at), None, "open")
            every.append(iv)
        elif (tid, int(attempt)) in out:
            out[(tid, int(attempt))].end = float(at)
    return every


def delegate(fleets: Fleets, tid: str, to: str, by: str = "w9") -> None:
    """A claim of ``tid`` made for ``to`` by another machine, as a delegating push writes it."""
    seat = Seat(MachineSpec(to, capabilities=CAPS))

    def plan(snap):  # noqa: ANN001, ANN202
        rest = [t for t in snap.tasks(["pending"]) if t.id == tid]
        assert rest, f"{tid} is not pending"
        return claim_plan(
            snap,
            seat,
            1,
            now=now_utc(),
            grace=0,
            machine=to,
            by=by,
            skip={t.id for t in snap.tasks(["pending"]) if t.id != tid},
        )

    transact(fleets.first, plan)


def claim_of(fleets: Fleets, tid: str) -> dict:
    snap = fleets.first.snapshot()
    return snap.get(tid).data


def test_three_workers_fold_and_delegate_with_one_run_at_a_time(fleets: Fleets, cli) -> None:
    set_machines(fleets.first, {n: {"capabilities": CAPS, "slots": 4} for n in ("w0", "w1", "w2")})
    log = fleets.tmp / "runs.log"
    add(fleets.first, tasks(48, "d", payload={"script": logged(log, 0.3)}))
    procs = [WorkerProc(fleets.clone(n)) for n in ("w0", "w1", "w2")]
    try:
        wait_for(
            lambda: states_of(fleets.first) and set(states_of(fleets.first).values()) == {"done"},
            60,
            what="every task done",
        )
        doc = json.loads(cli("--fleet", fleets.first.root, "status", "--json").out)
    finally:
        for p in procs:
            p.stop()
    body = git(fleets.first.root, "log", "--format=%B", "origin/main")
    assert "Fleetq-Delegated:" in body, "no claim was made on behalf of another machine"
    assert "Fleetq-Folded:" in body, "no result was folded into another machine's push"
    snap = fleets.first.snapshot()
    done = [snap.get(f"d{i:03d}") for i in range(48)]
    assert any((t.data.get("claim") or {}).get("by") for t in done), "no done task was claimed by another machine"
    every = runs(log)
    assert not overlaps(every), overlaps(every)
    assert sorted({r.task for r in every}) == [f"d{i:03d}" for i in range(48)]
    assert len(every) == 48, "a task ran twice"
    rows = {r["machine"]: r for r in doc["machines"]}
    for n in ("w0", "w1", "w2"):
        pushes = rows[n]["pushes"]
        assert pushes["own_tried"] > 0 and pushes["own_landed"] > 0, pushes
        assert {"main_tried", "main_landed"} <= set(pushes), pushes
    assert sum(rows[n]["pushes"]["main_tried"] for n in rows if rows[n]["pushes"]) < 48


def test_a_claim_made_for_a_worker_runs_there_once(fleets: Fleets) -> None:
    set_machines(fleets.first, {"w1": {"capabilities": CAPS, "slots": 2}})
    log = fleets.tmp / "runs.log"
    add(fleets.first, tasks(1, "x", prefer="w9", payload={"script": logged(log, 0.1)}))  # w1 waits 20 s for it
    w = WorkerProc(fleets.clone("w1"), "--lease", "20")
    try:
        wait_for(lambda: "worker w1 starting" in w.log or "starting" in w.log, 20, what="the worker to start")
        time.sleep(1.0)
        delegate(fleets, "x000", "w1")
        wait_for(lambda: states_of(fleets.first).get("x000") == "done", 20, what="x000 done")
    finally:
        w.stop()
    t = claim_of(fleets, "x000")
    assert t["attempts"] == 1, t  # started as delegated, never handed back as "its worker restarted"
    assert t["result"]["machine"] == "w1" and t["result"]["attempt"] == 1
    assert [r.attempt for r in runs(log)] == [1]


def test_a_claim_the_worker_cannot_take_goes_back_within_seconds(fleets: Fleets) -> None:
    set_machines(fleets.first, {"w1": {"capabilities": ["run_script"], "slots": 1}})
    add(fleets.first, tasks(1, "busy", payload={"script": "sleep 6"}))
    add(fleets.first, tasks(1, "lt", type="lint"))  # w1 cannot run lint
    w = WorkerProc(fleets.clone("w1"), "--lease", "20")
    try:
        wait_for(lambda: states_of(fleets.first).get("busy000") == "claimed", 20, what="w1 busy")
        t0 = time.time()
        delegate(fleets, "lt000", "w1")
        wait_for(lambda: states_of(fleets.first).get("lt000") == "pending", 10, what="lt000 handed back")
        took = time.time() - t0
    finally:
        w.stop()
    t = claim_of(fleets, "lt000")
    assert took < 8, took  # far under the 20 s lease
    assert "declined" in t["notes"][-1]["text"], t["notes"]


def test_a_started_claim_made_for_a_killed_worker_is_not_run_twice(fleets: Fleets) -> None:
    set_machines(fleets.first, {"w1": {"capabilities": CAPS, "slots": 2}})
    log = fleets.tmp / "runs.log"
    add(fleets.first, tasks(1, "k", prefer="w9", payload={"script": logged(log, 4)}))
    clone = fleets.clone("w1")
    w = WorkerProc(clone, "--lease", "20")
    try:
        wait_for(lambda: "starting" in w.log, 20, what="the worker to start")
        time.sleep(1.0)
        delegate(fleets, "k000", "w1")
        wait_for(lambda: runs(log), 15, what="the delegated run to start")
        w.proc.send_signal(signal.SIGKILL)
        w.proc.wait(10)
        w2 = WorkerProc(clone, "--lease", "20")
        try:  # the restarted worker hands it back (it cannot know how far the run got), never reruns attempt 1
            wait_for(lambda: states_of(fleets.first).get("k000") == "pending", 15, what="k000 handed back")
            time.sleep(5)  # the old run's 4 s are over: a second start of attempt 1 would show by now
        finally:
            w2.stop()
    finally:
        w.stop()
    attempts = [r.attempt for r in runs(log)]
    assert attempts == [1], attempts  # attempt 1 started once, never again after the restart
    assert "restarted" in claim_of(fleets, "k000")["notes"][-1]["text"]
