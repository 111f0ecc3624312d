"""Why is it waiting? `show` and `queue` give, for a pending task, each machine's reason, with a real worker."""

from __future__ import annotations

import json

from fleetq.core.config import GENERIC_TYPES
from support.fleets import Fleets
from support.workers import WorkerProc, set_machines, wait_for

GENERIC = list(GENERIC_TYPES)


def _assign(cli, root, *args: str) -> str:
    res = cli("--fleet", root, "assign", *args)
    assert res.code == 0, res.err
    return res.out.strip()


def test_show_and_queue_say_why_a_task_waits(fleets: Fleets, cli) -> None:
    f = fleets.first
    w1 = fleets.clone("w1")
    set_machines(f, {"w1": {"capabilities": GENERIC}, "gpubox": {"capabilities": GENERIC + ["gpu"]}})
    worker = WorkerProc(w1)
    try:
        warm = _assign(cli, f.root, "warm up", "--set", "script=true")
        wait_for(lambda: json.loads(cli("--fleet", f.root, "show", warm, "--json").out)["state"] == "done", 60)
        tid = _assign(cli, f.root, "train the model", "--set", "requires=[gpu]", "--set", "script=true")
        res = cli("--fleet", f.root, "show", tid)
        assert res.code == 0, res.err
        assert "w1: lacks capability gpu" in res.out and "gpubox: no worker has ever run there" in res.out
        doc = json.loads(cli("--fleet", f.root, "show", tid, "--json").out)
        assert doc["waiting"] == {"w1": "lacks capability gpu", "gpubox": "no worker has ever run there"}
        line = next(ln for ln in cli("--fleet", f.root, "queue").out.splitlines() if ln.startswith(tid))
        assert "waits: w1: lacks capability gpu; gpubox: no worker has ever run there" in line
        rows = json.loads(cli("--fleet", f.root, "queue", "--json").out)["tasks"]
        assert next(r for r in rows if r["id"] == tid)["waiting"]["w1"] == "lacks capability gpu"
        assert "waiting" not in next(r for r in rows if r["id"] == warm)  # done: nothing to wait for
    finally:
        worker.stop()
    doc = json.loads(cli("--fleet", f.root, "show", tid, "--json").out)
    assert doc["waiting"]["w1"].startswith("no live worker (stopped; last heartbeat")


def test_a_task_no_machine_could_run_is_refused_at_assign(fleets: Fleets, cli) -> None:
    root = fleets.first.root
    res = cli("--fleet", root, "assign", "simulate", "--set", "requires=[quantum]", "--set", "script=true")
    assert res.code == 2 and res.out == ""
    assert res.err.strip().count("\n") == 0, res.err  # one line
    assert "no machine could ever run this task" in res.err and "capability quantum" in res.err
    assert "--force" in res.err
    assert cli("--fleet", root, "queue", "--json").out.count('"id"') == 0
    res = cli("--fleet", root, "assign", "simulate", "--set", "requires=[quantum]", "--set", "script=true", "--force")
    assert res.code == 0, res.err
    assert "no machine could ever run it yet" in res.err
    doc = json.loads(cli("--fleet", root, "show", res.out.strip(), "--json").out)
    assert doc["requires"] == ["quantum"] and "capability quantum" in doc["never_runs"]
    # a pin to a machine no one knows, or an agent no registry has: refused alike, queued with --force
    res = cli("--fleet", root, "assign", "x", "--set", "target=nosuchbox", "--set", "script=true")
    assert res.code == 2 and "unknown machine 'nosuchbox'" in res.err
    assert cli("--fleet", root, "assign", "x", "--machine", "nosuchbox", "--set", "script=true", "--force").code == 0


def test_a_fresh_fleet_with_no_machines_accepts_ordinary_tasks(fleets: Fleets, cli) -> None:
    f = fleets.first
    set_machines(f, {})
    root = f.root
    assert cli("--fleet", root, "assign", "hello", "--set", "script=echo hi").code == 0
    assert cli("--fleet", root, "assign", "later", "--machine", "box-to-come", "--set", "script=true").code == 0
    res = cli("--fleet", root, "assign", "x", "--agent", "nosuchagent")
    assert res.code == 2 and "agent nosuchagent is neither built in" in res.err  # certain in any fleet


def test_queue_machine_filter_resolves_an_alias(fleets: Fleets, cli) -> None:
    f = fleets.first
    set_machines(f, {"alpha": {"capabilities": GENERIC, "aliases": ["old-alpha"]}})
    tid = _assign(cli, f.root, "pinned", "--machine", "alpha", "--set", "script=true")
    other = _assign(cli, f.root, "free", "--set", "script=true")
    rows = json.loads(cli("--fleet", f.root, "queue", "--machine", "old-alpha", "--json").out)["tasks"]
    assert [r["id"] for r in rows] == [tid] and other != tid
    rows = json.loads(cli("--fleet", f.root, "queue", "--machine", "alpha", "--json").out)["tasks"]
    assert [r["id"] for r in rows] == [tid]
