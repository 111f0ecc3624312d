"""`fleetq work` end to end: real worker processes, separate clones, one bare remote."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from fleetq.core import transitions
from fleetq.core.heartbeat import Observer
from support.fleets import Fleets, git
from support.workers import WorkerProc, add, run_to_end, set_file, set_machines, states_of, tasks, wait_for

GENERIC = ["agent_run", "run_script", "git_pull", "npm_build", "test_run", "lint"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_three_workers_drain_thirty_tasks_exactly_once(fleets: Fleets, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    script = f'echo "$FLEETQ_TASK_ID $FLEETQ_MACHINE $FLEETQ_ATTEMPT" >> {ledger}; sleep 0.05'
    clones = [fleets.clone(f"w{i}") for i in range(3)]
    add(fleets.first, tasks(30, payload={"script": script}))
    run_to_end(*[WorkerProc(c, "--burst", "--slots", "3") for c in clones], timeout=120)
    runs = [line.split() for line in ledger.read_text().splitlines()]
    counts = Counter(r[0] for r in runs)
    assert len(counts) == 30 and set(counts.values()) == {1}, counts
    assert len({r[1] for r in runs}) >= 2, "the work was not shared"
    assert set(states_of(fleets.first).values()) == {"done"}
    hb = Observer(fleets.first).read()
    assert {"w0", "w1", "w2"} <= set(hb)
    assert hb["w0"].state["slots"] == 3 and "cpu" in hb["w0"].state["load"]


def test_sigkilled_worker_task_reruns_elsewhere_after_lease(fleets: Fleets, tmp_path: Path) -> None:
    a, b = fleets.clone("a"), fleets.clone("b")
    pidfile, runs = tmp_path / "pid", tmp_path / "runs"
    script = (
        f'echo "$FLEETQ_MACHINE $FLEETQ_ATTEMPT" >> {runs}; '
        f'if [ "$FLEETQ_ATTEMPT" = 1 ]; then sleep 60 & echo $! > {pidfile}; wait; fi'
    )
    add(fleets.first, tasks(1, "k", payload={"script": script}))
    wa = WorkerProc(a, "--lease", "2")
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 30, what="the task to start on a")
        child = int(pidfile.read_text())
        assert _alive(child)
        os.kill(wa.proc.pid, signal.SIGKILL)  # the worker only, not its process group
        wa.wait(10)
        wait_for(lambda: not _alive(child), 10, what="the killed worker's task tree to die")
    finally:
        wa.stop()
    wb = WorkerProc(b, "--lease", "2")
    try:
        wait_for(lambda: states_of(fleets.first).get("k000") == "done", 60, what="b to re-run the orphan")
    finally:
        wb.stop()
    t = fleets.first.snapshot().get("k000")
    assert t.attempts == 2 and t.result["machine"] == "b"
    assert runs.read_text().split("\n")[:2] == ["a 1", "b 2"]
    assert any("orphaned: a" in n["text"] for n in t.data["notes"])
    fleets.first.repo.fetch()
    log = git(fleets.first.root, "log", "origin/main", "--format=%s")
    assert "b hands back k000" in log


def test_cancel_kills_a_running_task(fleets: Fleets, tmp_path: Path, cli) -> None:
    w = fleets.clone("w")
    pidfile = tmp_path / "pid"
    add(fleets.first, tasks(1, "c", payload={"script": f"sleep 60 & echo $! > {pidfile}; wait"}))
    proc = WorkerProc(w)
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 30, what="the task to start")
        child = int(pidfile.read_text())
        assert cli("--fleet", fleets.first.root, "cancel", "c000").code == 0
        wait_for(lambda: not _alive(child), 15, what="the cancelled task to be killed")
        wait_for(
            lambda: "late result" in json.dumps(fleets.first.snapshot().get("c000").data),
            15,
            what="the killed run's result to be noted",
        )
    finally:
        proc.stop()
    t = fleets.first.snapshot().get("c000")
    assert t.state == "failed" and t.result["cancelled"] is True


def test_timeout_kills_the_process_tree(fleets: Fleets, tmp_path: Path) -> None:
    w = fleets.clone("w")
    pids = tmp_path / "pids"
    add(
        fleets.first,
        tasks(
            1,
            "o",
            timeout=1,
            max_attempts=1,
            payload={"script": f"sleep 60 & echo $! >> {pids}; sleep 60 & echo $! >> {pids}; wait"},
        ),
    )
    run_to_end(WorkerProc(w, "--burst"), timeout=60)
    t = fleets.first.snapshot().get("o000")
    assert t.state == "failed" and t.result.get("timed_out") is True, t.result
    assert t.result["duration"] < 10
    for pid in map(int, pids.read_text().split()):
        assert not _alive(pid)


def test_targeting_and_capabilities_across_workers(fleets: Fleets, tmp_path: Path) -> None:
    mac, linux = fleets.clone("mac"), fleets.clone("linux")
    set_machines(
        fleets.first,
        {
            "mac": {"capabilities": GENERIC + ["ios_build"], "slots": 2},
            "linux": {"capabilities": GENERIC + ["docker"], "slots": 2},
        },
    )
    ledger = tmp_path / "ledger"
    script = f'echo "$FLEETQ_TASK_ID $FLEETQ_MACHINE" >> {ledger}'
    add(
        fleets.first,
        tasks(3, "pin", target="mac", payload={"script": script})
        + tasks(3, "req", requires=["docker"], payload={"script": script})
        + tasks(2, "ios", type="ios_build", payload={"command": script, "cwd": str(tmp_path)}),
    )
    run_to_end(*[WorkerProc(c, "--burst") for c in (mac, linux)], timeout=60)
    where = dict(line.split() for line in ledger.read_text().splitlines())
    assert all(where[f"pin{i:03d}"] == "mac" for i in range(3))
    assert all(where[f"req{i:03d}"] == "linux" for i in range(3))
    assert all(where[f"ios{i:03d}"] == "mac" for i in range(2))


def test_signals_warm_stop_then_hand_back(fleets: Fleets, tmp_path: Path) -> None:
    w = fleets.clone("w")
    started = tmp_path / "started"
    add(fleets.first, tasks(1, "warm", payload={"script": f"touch {started}; sleep 1.5"}))
    p = WorkerProc(w)
    try:
        wait_for(started.exists, 30, what="the task to start")
        p.signal(signal.SIGTERM)
        assert p.wait(30) == 0
    finally:
        p.stop()
    assert states_of(fleets.first)["warm000"] == "done"

    pidfile = tmp_path / "pid"
    add(fleets.first, tasks(1, "cold", payload={"script": f"sleep 60 & echo $! > {pidfile}; wait"}))
    p = WorkerProc(w)
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 30, what="the task to start")
        p.signal(signal.SIGTERM)
        time.sleep(0.3)
        p.signal(signal.SIGTERM)
        assert p.wait(30) == 0, p.log
    finally:
        p.stop()
    assert not _alive(int(pidfile.read_text()))
    t = fleets.first.snapshot().get("cold000")
    assert t.state == "pending" and "worker shut down" in t.data["notes"][-1]["text"]


def test_results_survive_a_cut_remote_and_a_killed_worker(fleets: Fleets, tmp_path: Path) -> None:
    w = fleets.clone("w")
    runs, go = tmp_path / "runs", tmp_path / "go"
    add(fleets.first, tasks(1, "j", payload={"script": f"echo run >> {runs}; while [ ! -e {go} ]; do sleep 0.1; done"}))
    remote = Path(fleets.remote)
    hidden = remote.with_name(remote.name + ".away")
    p = WorkerProc(w)
    try:
        wait_for(runs.exists, 30, what="the task to start")
        remote.rename(hidden)  # the network is cut
        go.touch()  # the task finishes while offline
        journal = w.state_dir / "journal"
        wait_for(lambda: list(journal.glob("j000.*.yaml")), 15, what="the result in the journal")
        time.sleep(0.5)
        p.kill()  # and the worker dies before it could push
    finally:
        p.stop()
    hidden.rename(remote)
    assert states_of(fleets.first)["j000"] == "claimed"
    run_to_end(WorkerProc(w, "--burst"), timeout=60)
    t = fleets.first.snapshot().get("j000")
    assert t.state == "done" and t.attempts == 1
    assert runs.read_text().count("run") == 1, "a finished task ran again"
    assert not list((w.state_dir / "journal").glob("*.yaml"))


def test_dropped_yaml_file_is_queued_and_bad_one_reported(fleets: Fleets, tmp_path: Path) -> None:
    w = fleets.clone("w")
    out = tmp_path / "dropped-ran"
    p = WorkerProc(w)
    try:
        time.sleep(0.5)
        (w.root / "queue" / "pending" / "dropped.yaml").write_text(
            f"# dropped in by hand\nid: dropped\ntype: run_script\npayload:\n  script: touch {out}\n"
        )
        (w.root / "queue" / "pending" / "junk.yaml").write_text("id: [oops\n")
        wait_for(out.exists, 30, what="the dropped task to run")
        wait_for(lambda: "junk.yaml" in p.log, 10, what="the bad file to be reported")
    finally:
        p.stop()
    assert "invalid YAML" in p.log
    fleets.first.repo.fetch()
    assert "# dropped in by hand" in git(
        fleets.first.root, "log", "-p", "origin/main", "--", "queue/pending/dropped.yaml"
    )
    assert (w.root / "queue" / "pending" / "junk.yaml").exists()  # never deleted


def test_schedule_fires_once_across_three_workers(fleets: Fleets, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    set_file(
        fleets.first,
        "config/schedules.yaml",
        "schedules:\n  tick:\n    cron: '* * * * *'\n    task:\n      type: run_script\n"
        f"      payload:\n        script: echo $FLEETQ_TASK_ID >> {ledger}\n",
    )
    clones = [fleets.clone(f"s{i}") for i in range(3)]
    long_ago = time.time() - 600  # every worker last looked 10 minutes ago: 10 missed fires
    for c in clones:
        (c.state_dir / "schedules.yaml").write_text(f"tick: {long_ago}\n")
    run_to_end(*[WorkerProc(c, "--once") for c in clones], timeout=60)
    ids = [i for i in states_of(fleets.first) if i.startswith("sched-tick-")]
    assert len(ids) == 1, ids  # one catch-up, created once
    assert ledger.read_text().split() == ids


def test_handler_crash_and_unknown_type_go_to_needs_human(fleets: Fleets) -> None:
    w = fleets.clone("w")
    set_machines(fleets.first, {"w": {"capabilities": GENERIC + ["boom", "nosuch"]}})
    set_file(fleets.first, "handlers/boom.py", "def run(ctx):\n    raise RuntimeError('kaboom')\n")
    add(fleets.first, tasks(1, "boom", type="boom") + tasks(1, "nosuch", type="nosuch") + tasks(1, "fine"))
    run_to_end(WorkerProc(w, "--burst"), timeout=60)
    snap = fleets.first.snapshot()
    boom, nosuch = snap.get("boom000"), snap.get("nosuch000")
    assert boom.state == "needs_human" and "kaboom" in boom.result["error"]
    assert nosuch.state == "needs_human" and "unknown task type" in nosuch.result["error"]
    assert snap.get("fine000").state == "done"


def test_custom_handler_from_the_fleet_repo(fleets: Fleets) -> None:
    w = fleets.clone("w")
    set_machines(fleets.first, {"w": {"capabilities": GENERIC + ["greet"]}})
    set_file(
        fleets.first,
        "handlers/greet.py",
        "from fleetq.handlerapi import HandlerResult\n"
        "DEFAULT_TIMEOUT = 5\n"
        "def run(ctx):\n"
        "    return HandlerResult('done', exit_code=0,\n"
        "                         stdout_tail='hello ' + ctx.payload['who'] + ' ' + ctx.env['FLEETQ_ATTEMPT'])\n",
    )
    add(fleets.first, tasks(1, "g", type="greet", payload={"who": "world"}))
    run_to_end(WorkerProc(w, "--burst"), timeout=60)
    assert fleets.first.snapshot().get("g000").result["stdout_tail"] == "hello world 1"


def test_failure_with_attempts_left_retries_after_backoff(fleets: Fleets, tmp_path: Path) -> None:
    w = fleets.clone("w")
    set_file(fleets.first, "config/fleet.yaml", "retry_backoff: 1\n")
    runs = tmp_path / "runs"
    add(
        fleets.first,
        tasks(1, "r", max_attempts=2, payload={"script": f'echo $FLEETQ_ATTEMPT >> {runs}; [ "$FLEETQ_ATTEMPT" = 2 ]'}),
    )
    p = WorkerProc(w)
    try:
        wait_for(lambda: states_of(fleets.first).get("r000") == "done", 30, what="the retry to succeed")
    finally:
        p.stop()
    assert runs.read_text().split() == ["1", "2"]
    fleets.first.repo.fetch()
    assert "claimed->pending" in git(fleets.first.root, "log", "origin/main", "--format=%B")


@pytest.mark.parametrize("first", ["pri"])
def test_priority_then_age_and_dependencies(fleets: Fleets, first: str) -> None:
    from fleetq.core.config import MachineSpec
    from fleetq.core.matching import Seat

    f = fleets.first
    add(f, tasks(2, "low") + tasks(1, "high", priority=5))
    add(f, tasks(1, "dep", depends_on=["low001"], priority=9))
    seat = Seat(MachineSpec("alpha", capabilities=GENERIC))
    order = []
    for _ in range(4):
        got = transitions.claim(f, seat, 1)
        order += [t.id for t in got]
        transitions.complete(f, [transitions.Completion(t.id, 1, "done") for t in got])
    assert order == ["high000", "low000", "low001", "dep000"]


def test_prefer_grace_and_agent_filter(fleets: Fleets) -> None:
    import datetime as dt

    from fleetq.core.config import MachineSpec
    from fleetq.core.matching import Seat

    f = fleets.first
    add(
        f,
        tasks(1, "pref", prefer="elsewhere")
        + tasks(1, "ag", type="agent_run", agent="gemini", payload={"prompt": "hi"}),
    )
    now = dt.datetime.now(dt.timezone.utc)
    seat = Seat(MachineSpec("alpha", capabilities=GENERIC), agents={"claude"}, first_seen={"pref000": now})
    assert transitions.claim(f, seat, 5, grace=20) == []  # preference holds; gemini is not installed
    seat.first_seen["pref000"] = now - dt.timedelta(seconds=30)
    assert [t.id for t in transitions.claim(f, seat, 5, grace=20)] == ["pref000"]  # grace is over
    seat.agents = {"gemini"}
    assert [t.id for t in transitions.claim(f, seat, 5, grace=20)] == ["ag000"]


def test_agent_tasks_run_with_the_real_argv_contract(fleets: Fleets, tmp_path: Path) -> None:
    """claude, gemini and codex tasks through a real worker, with fake CLIs that check their argv."""
    from support.agents import fake_env

    w = fleets.clone("w")
    proj = tmp_path / "proj"
    proj.mkdir()
    calls = tmp_path / "calls.jsonl"
    add(
        fleets.first,
        [
            {
                **tasks(1, "cl")[0],
                "type": "agent_run",
                "agent": "claude",
                "payload": {"prompt": "fix it", "cwd": str(proj)},
            },
            {
                **tasks(1, "ge")[0],
                "type": "agent_run",
                "agent": "gemini",
                "payload": {"prompt": "explain", "cwd": str(proj), "model": "gemini-2.5-pro"},
            },
            {
                **tasks(1, "co")[0],
                "type": "agent_run",
                "agent": "codex",
                "payload": {"prompt": "refactor", "cwd": str(proj)},
            },
            {**tasks(1, "no")[0], "type": "agent_run", "agent": "nosuch", "payload": {"prompt": "x"}},
        ],
    )
    env = fake_env(tmp_path, FAKE_AGENT_LOG=str(calls), FAKE_AGENT_WRITE="made.txt=by agent")
    env["HOME"] = os.environ["HOME"]
    run_to_end(WorkerProc(w, "--burst", env=env), timeout=60)
    snap = fleets.first.snapshot()
    cl, ge, co = snap.get("cl000"), snap.get("ge000"), snap.get("co000")
    assert cl.state == ge.state == co.state == "done", (cl.result, ge.result, co.result)
    assert cl.result.get("cost_usd") is not None and cl.result.get("session_id")
    assert co.result.get("reply")
    assert snap.get("no000").state == "pending"  # nosuch is not installed here: never claimed
    seen = [json.loads(line) for line in calls.read_text().splitlines()]
    by_agent = {c["agent"]: c for c in seen}
    assert by_agent["claude"]["argv"][-2:] == ["--", "fix it"] and by_agent["claude"]["argv"][0] == "-p"
    assert "gemini-2.5-pro" in by_agent["gemini"]["argv"] and "--yolo" in by_agent["gemini"]["argv"]
    assert by_agent["codex"]["argv"][0] == "exec"
    assert all(c["cwd"] == str(proj) for c in seen)
    assert (proj / "made.txt").read_text() == "by agent"


def test_a_cut_off_worker_kills_its_task_before_another_reaps_it(fleets: Fleets, tmp_path: Path) -> None:
    """Self-fencing: a worker whose heartbeat cannot land kills its runs before the lease lets anyone reap."""
    a, b = fleets.clone("a"), fleets.clone("b")
    runs, pids = tmp_path / "runs", tmp_path / "pids"
    script = (
        f'echo "$FLEETQ_MACHINE $FLEETQ_ATTEMPT" >> {runs}; '
        f'if [ "$FLEETQ_MACHINE" = a ]; then sleep 60 & echo $! > {pids}; wait; '
        f'else s=$(cut -d" " -f3 /proc/$(cat {pids})/stat 2>/dev/null); '
        f'[ -n "$s" ] && [ "$s" != Z ] && echo OVERLAP >> {runs}; fi; true'
    )  # a zombie is dead
    add(fleets.first, tasks(1, "f", payload={"script": script}))
    wa = WorkerProc(a, "--lease", "4")
    wb = None
    try:
        wait_for(lambda: pids.exists() and pids.read_text().strip(), 30, what="the task to start on a")
        child = int(pids.read_text())
        git(a.root, "config", "remote.origin.url", str(tmp_path / "nowhere.git"))  # a's network is cut
        cut_at = time.monotonic()
        wb = WorkerProc(b, "--lease", "4")
        wait_for(lambda: not _alive(child), 15, what="a to fence its run")
        fenced_after = time.monotonic() - cut_at
        assert fenced_after < 4, f"fenced only after {fenced_after:.1f}s, past the lease"
        assert "fenced f000" in wa.log
        wait_for(lambda: states_of(fleets.first).get("f000") == "done", 60, what="b to reap and re-run it")
        git(a.root, "config", "remote.origin.url", fleets.remote)  # the network is back
        wait_for(lambda: "cannot" not in wa.log.splitlines()[-1], 20, what="a to reconnect")
        time.sleep(2)
    finally:
        wa.stop()
        if wb:
            wb.stop()
    assert runs.read_text().splitlines() == ["a 1", "b 2"], runs.read_text()
    t = fleets.first.snapshot().get("f000")
    assert t.state == "done" and t.result["machine"] == "b" and t.attempts == 2
    assert any("orphaned: a" in n["text"] for n in t.data["notes"])
