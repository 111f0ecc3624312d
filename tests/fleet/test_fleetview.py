"""`fleetq status`, `load`, `monitor`: fed by the heartbeats of real worker processes."""

from __future__ import annotations

import json
import os

from fleetq.core import transitions
from fleetq.core.heartbeat import Observer
from support.fleets import FAKES, Fleets
from support.workers import WorkerProc, add, set_machines, states_of, tasks, wait_for

GENERIC = ["agent_run", "run_script", "git_pull", "npm_build", "test_run", "lint"]


def test_status_load_monitor_from_three_workers(fleets: Fleets, cli) -> None:
    set_machines(
        fleets.first, {name: {"capabilities": GENERIC, "agents": ["claude"]} for name in ("w0", "w1", "w2", "ghost")}
    )
    clones = {n: fleets.clone(n) for n in ("w0", "w1", "w2")}
    add(fleets.first, tasks(1, "ag", type="agent_run", agent="claude", target="w0", payload={"prompt": "say hi"}))
    add(fleets.first, tasks(1, "long", target="w1", title="the long one", payload={"script": "sleep 30"}))
    env = {"PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}"}
    procs = [WorkerProc(c, env=env) for c in clones.values()]
    root = fleets.first.root
    try:
        wait_for(lambda: states_of(fleets.first).get("ag000") == "done", 60, what="the agent task to finish")

        def long_running() -> bool:
            beats = Observer(fleets.first).read()
            return {"w0", "w1", "w2"} <= set(beats) and "long000" in beats["w1"].running

        wait_for(long_running, 30, what="w1's heartbeat to show the long task")

        res = cli("--fleet", root, "status", "--json")
        assert res.code == 0, res.err
        doc = json.loads(res.out)
        rows = {r["machine"]: r for r in doc["machines"]}
        assert doc["online"] == 3 and doc["declared"] == 4 and doc["queue"]["claimed"] == 1
        assert rows["w0"]["online"] and rows["w0"]["done"] == 1 and rows["w0"]["top_agent"] == "claude"
        assert rows["w0"]["cost_usd"] == 0.0123  # the fake claude's reported cost
        assert rows["w1"]["active"] == 1 and rows["w1"]["running"] == 1
        assert not rows["ghost"]["online"] and rows["ghost"]["liveness"] == "never seen"
        text = cli("--fleet", root, "status").out
        assert "3/4 workers online" in text and "claude (1)" in text and "$0.01" in text

        doc = json.loads(cli("--fleet", root, "load", "--json").out)
        rows = {r["machine"]: r for r in doc["machines"]}
        assert all(rows[n]["fresh"] and isinstance(rows[n]["score"], float) for n in ("w0", "w1", "w2"))
        assert not rows["ghost"]["fresh"] and "no heartbeat" in rows["ghost"]["stale"]
        assert doc["weights"] == {"cpu": 0.4, "memory": 0.3, "load": 0.3}
        assert [r["machine"] for r in doc["machines"]][-1] == "ghost"  # stale last
        assert "score = 0.4·cpu + 0.3·memory + 0.3·load" in cli("--fleet", root, "load").out

        doc = json.loads(cli("--fleet", root, "monitor", "--json").out)
        mon = {m["machine"]: m for m in doc["machines"]}
        (run,) = mon["w1"]["running"]
        assert run["id"] == "long000" and run["type"] == "run_script" and run["title"] == "the long one"
        assert 0 <= run["elapsed"] < 60
        assert mon["w0"]["running"] == [] and mon["w0"]["today"]["finished"] == 1
        assert mon["w0"]["today"]["cost_usd"] == 0.0123
        text = cli("--fleet", root, "monitor").out
        assert "┌─ w1 · online" in text and "▸ long000  run_script" in text and "the long one" in text
        assert "(no worker running)" in text  # ghost's box
        transitions.cancel(fleets.first, ["long000"])
    finally:
        for p in procs:
            p.stop()
    # Stopped workers go stale once the lease passes (judged by this clone's own observation).
    res = cli("--fleet", root, "status", "--json")
    assert res.code == 0


def test_status_offline_remote_shows_last_fetch(fleets: Fleets, cli, tmp_path) -> None:
    root = fleets.first.root
    fleets.first.repo.config_set("remote.origin.url", str(tmp_path / "gone.git"))
    res = cli("--fleet", root, "status")
    assert res.code == 0 and "remote unreachable" in res.err and "alpha" in res.out
    assert cli("--fleet", root, "monitor", "--watch", "--json").code == 2


def test_monitor_watch_redraws_until_interrupted(fleets: Fleets) -> None:
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetq", "--fleet", str(fleets.first.root), "monitor", "--watch", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert out.count("fleet monitor · 0/1 online") >= 2 and out.count("┌─ alpha · never seen") >= 2
