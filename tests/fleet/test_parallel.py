"""`fleetq parallel` and `fleetq wait` over real worker processes."""

from __future__ import annotations

import json

from fleetq.core import transitions
from fleetq.core.heartbeat import Observer
from support.fleets import Fleets
from support.workers import WorkerProc, set_machines, wait_for

GENERIC = ["agent_run", "run_script", "git_pull", "npm_build", "test_run", "lint"]
SCRIPT = 'if [ "$FLEETQ_MACHINE" = w1 ]; then echo "w1 is broken" >&2; exit 3; fi; echo "hello from $FLEETQ_MACHINE"'


def test_parallel_all_wait_over_three_workers(fleets: Fleets, cli) -> None:
    set_machines(
        fleets.first,
        {n: {"capabilities": GENERIC} for n in ("w0", "w1", "w2", "ghost")} | {"mac": {"capabilities": ["ios_build"]}},
    )
    clones = [fleets.clone(f"w{i}") for i in range(3)]
    procs = [WorkerProc(c) for c in clones]
    root = fleets.first.root
    try:
        wait_for(lambda: {"w0", "w1", "w2"} <= set(Observer(fleets.first).read()), 30, what="three heartbeats")
        res = cli("--fleet", root, "parallel", SCRIPT, "--all", "--wait", "--interval", "0.2", "--timeout", "60")
        assert res.code == 1, res.out + res.err
        assert "queued 3 task(s) on w0, w1, w2" in res.out
        assert "skipped mac: cannot run run_script" in res.out and "skipped ghost: offline" in res.out
        lines = {ln.split()[0]: ln for ln in res.out.splitlines() if ln.startswith("w")}
        assert "done" in lines["w0"] and "hello from w0" in lines["w0"] and " 0 " in lines["w0"]
        assert "failed" in lines["w1"] and "w1 is broken" in lines["w1"] and " 3 " in lines["w1"]
        assert "hello from w2" in lines["w2"]
        assert "1 of 3 did not succeed: w1 (failed)" in res.err

        res = cli("--fleet", root, "parallel", "echo ok", "--machines", "w0,w2", "--json")
        ids = json.loads(res.out)["ids"]
        assert len(ids) == 2 and all(i.endswith(("-w0", "-w2")) for i in ids)
        res = cli("--fleet", root, "wait", *ids, "--interval", "0.2", "--timeout", "60", "--json")
        assert res.code == 0, res.err
        doc = json.loads(res.out)
        assert [t["state"] for t in doc["tasks"]] == ["done", "done"] and doc["exit_code"] == 0
        assert {t["machine"] for t in doc["tasks"]} == {"w0", "w2"}

        res = cli(
            "--fleet",
            root,
            "parallel",
            "sleep 20",
            "--machines",
            "w0",
            "--wait",
            "--timeout",
            "0.5",
            "--interval",
            "0.2",
        )
        assert res.code == 124 and "timed out after 0.5s; still unfinished" in res.err
        stuck = [t.id for t in fleets.first.snapshot().tasks(["pending", "claimed"])]
        transitions.cancel(fleets.first, stuck)  # its worker kills the sleep: a quick stop
    finally:
        for p in procs:
            p.stop()


def test_parallel_needs_machines_and_capable_targets(fleets: Fleets, cli) -> None:
    set_machines(fleets.first, {"a": {"capabilities": GENERIC}, "mac": {"capabilities": ["ios_build"]}})
    root = fleets.first.root
    assert cli("--fleet", root, "parallel", "true").code == 2
    res = cli("--fleet", root, "parallel", "true", "--machines", "mac")
    assert res.code == 2 and "mac cannot run run_script" in res.err
    res = cli("--fleet", root, "parallel", "true", "--all")  # nothing online: queued anyway, and said so
    assert res.code == 0 and "no worker online on a" in res.out and "fleetq wait p" in res.out
    assert cli("--fleet", root, "wait", "nosuch").code == 2
