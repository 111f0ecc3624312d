"""Live output through the fleet remote: a run on one clone is watched from another, with no SSH.

A real `fleetq work` on clone ``w`` runs the task; ``alpha`` (no worker) reads it through
``refs/fleetq/live/w`` with `fleetq logs --follow` as a real subprocess, `monitor` and `wait`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from fleetq.core import live
from fleetq.git.inspect import ZERO_SHA
from fleetq.trust import receive
from support.fleets import Fleets, git
from support.sshd import SshServer, sshd  # noqa: F401  (fixture)
from support.workers import WorkerProc, add, set_file, set_machines, tasks, wait_for

GENERIC = ["agent_run", "run_script", "git_pull", "npm_build", "test_run", "lint"]
SECRET = "sk-ant-" + "Zq7" * 8  # shaped like an Anthropic key: the redaction patterns know it


def _fast_live(fleets: Fleets, interval: float = 0.4) -> None:
    f = fleets.first
    text = (f.root / "config" / "fleet.yaml").read_text()
    set_file(f, "config/fleet.yaml", text + f"live_output: {interval}\n")


def _remote_ref(fleets: Fleets, machine: str) -> str | None:
    try:
        return git(Path(fleets.remote), "rev-parse", "--verify", "-q", live.ref_of(machine)).strip() or None
    except subprocess.CalledProcessError:
        return None


def _remote_tree_names(fleets: Fleets, sha: str) -> list[str]:
    return git(Path(fleets.remote), "ls-tree", "--name-only", sha).split()


def _finished_remote_run(fleets: Fleets, machines: dict) -> tuple[list[tuple[str, bool]], int, str]:
    """Run a task on worker clone ``w`` while ``alpha`` follows it with `fleetq logs --follow` (a subprocess):
    the lines it printed, each with whether the run had ended on the worker when it arrived."""
    f = fleets.first
    set_machines(f, machines)
    _fast_live(fleets)
    w = fleets.clone("w")
    script = f"echo start; echo 'key {SECRET}'; for i in $(seq 1 10); do echo line-$i; sleep 0.3; done; echo bye >&2"
    add(f, tasks(1, "live", payload={"script": script}))
    worker_log = w.state_dir / "logs" / "live000.log"
    proc = WorkerProc(w)
    got: list[tuple[str, bool]] = []
    try:
        follower = subprocess.Popen(
            [sys.executable, "-m", "fleetq", "--fleet", str(f.root), "logs", "--follow", "live000"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

        def read() -> None:
            assert follower.stdout is not None
            for line in follower.stdout:
                ended = worker_log.exists() and "# exit " in worker_log.read_text()
                got.append((line.rstrip("\n"), ended))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        code = follower.wait(40)
        reader.join(5)
        err = follower.stderr.read() if follower.stderr else ""
    finally:
        proc.stop()
    assert SECRET in worker_log.read_text()  # only the worker's own log keeps it
    return got, code, err


def test_follow_from_another_clone_streams_while_it_runs(fleets: Fleets, cli) -> None:
    f = fleets.first
    machines = {"alpha": {"capabilities": GENERIC}, "w": {"capabilities": GENERIC, "host": "fleet-w"}}
    got, code, err = _finished_remote_run(fleets, machines)
    lines = [x for x, _ in got]
    assert code == 0, (lines, err)
    live_lines = [x for x, ended in got if not ended]
    assert any(x.startswith("line-") for x in live_lines), (got, err)  # arrived while it ran: live, not the tails
    assert f"key {SECRET}" not in "\n".join(lines) and "key [redacted]" in lines, lines
    assert "line-10" in lines and "bye" in lines, lines  # the end came from the result's tails
    assert len([x for x in lines if x == "line-1"]) == 1, lines  # printed once, not again from the tails
    assert "live000: done, exit 0" in err, err

    # Finished, from the other clone: the result's tails, and a correct line saying where the full log is.
    w_root = fleets.tmp / "clone-w"
    res = cli("--fleet", f.root, "logs", "live000")
    assert res.code == 0 and "line-10" in res.out and "bye" in res.out, res
    assert "fleetq --machine" not in res.err and "fleetq logs --full live000" in res.err, res.err
    assert f"{w_root}/.git/fleetq/logs/live000.log" in res.err, res.err
    doc = json.loads(cli("--fleet", f.root, "logs", "--json", "live000").out)
    assert doc["source"] == "tails" and doc["machine"] == "w" and doc["state"] == "done", doc
    assert "line-10" in doc["lines"] and doc["stderr"] == ["bye"], doc
    here = cli("--fleet", w_root, "--machine", "w", "logs", "--json", "live000")
    assert json.loads(here.out)["source"] == "local", here
    # No host: --full is one line that says what to do instead, exit 1.
    set_machines(f, {"alpha": {"capabilities": GENERIC}, "w": {"capabilities": GENERIC}})
    res = cli("--fleet", f.root, "logs", "--full", "live000")
    assert res.code == 1 and len(res.err.strip().splitlines()) == 1, res
    assert "w has no host: in config/machines.yaml" in res.err and "run `fleetq logs live000` there" in res.err


def test_full_log_over_ssh(fleets: Fleets, cli, sshd: SshServer) -> None:  # noqa: F811
    machines = {"alpha": {"capabilities": GENERIC}, "w": {"capabilities": GENERIC, "host": sshd.alias("fleet-w")}}
    got, code, err = _finished_remote_run(fleets, machines)
    assert code == 0, (got, err)
    doc = json.loads(cli("--fleet", fleets.first.root, "logs", "--full", "--json", "live000").out)
    assert doc["source"] == "ssh" and "line-1" in doc["lines"] and any("# exit 0" in x for x in doc["lines"]), doc
    assert f"key {SECRET}" in doc["lines"]  # the worker's own file, as `fleetq logs` shows it there


def test_monitor_and_wait_show_the_last_line_and_an_idle_worker_pushes_nothing(fleets: Fleets, cli) -> None:
    f = fleets.first
    _fast_live(fleets)
    w = fleets.clone("w")
    proc = WorkerProc(w)
    try:
        wait_for(lambda: "worker w starting" in proc.log, 20, what="the worker to start")
        time.sleep(1.0)  # idle for over two intervals
        assert _remote_ref(fleets, "w") is None  # idle: no live push at all
        add(f, tasks(1, "quick", payload={"script": "echo hi"}))
        wait_for(lambda: f.snapshot().state_of("quick000") == "done", 20, what="the short task")
        time.sleep(1.0)
        assert _remote_ref(fleets, "w") is None  # shorter than an interval: never published
        script = "i=0; while [ $i -lt 20 ]; do i=$((i+1)); echo tick-$i; sleep 0.05; done; sleep 30"
        add(f, tasks(1, "slow", payload={"script": script}))
        wait_for(lambda: f.snapshot().state_of("slow000") == "claimed", 20, what="the slow task to start")

        def seen() -> dict | None:
            doc = json.loads(cli("--fleet", f.root, "monitor", "--json").out)
            runs = [r for m in doc["machines"] for r in m["running"] if r["id"] == "slow000"]
            return runs[0] if runs and runs[0]["last_output"] == "tick-20" else None

        run = wait_for(seen, 20, every=0.3, what="monitor to show the last line")
        assert run["last_output"] == "tick-20"
        text = cli("--fleet", f.root, "monitor").out
        assert "↳ tick-20" in text, text
        res = cli("--fleet", f.root, "wait", "--timeout", "0.5", "--json", "slow000")
        out = json.loads(res.out)["tasks"][0]
        assert res.code == 124 and out["state"] == "claimed" and out["last"] == "tick-20", res
        rows = cli("--fleet", f.root, "wait", "--timeout", "0.5", "slow000").out
        assert "tick-20" in rows, rows
        # The line is redacted-but-unchanged output: nothing new, so no new push while it sleeps.
        first = _remote_ref(fleets, "w")
        assert first is not None and _remote_tree_names(fleets, first) == ["slow000.yaml"]
        time.sleep(1.2)
        assert _remote_ref(fleets, "w") == first
        assert cli("--fleet", f.root, "cancel", "slow000").code == 0
        wait_for(lambda: f.snapshot().state_of("slow000") == "failed", 20, what="the cancel")

        def emptied() -> bool:
            sha = _remote_ref(fleets, "w")
            return bool(sha and sha != first and _remote_tree_names(fleets, sha) == [])

        wait_for(emptied, 10, what="the ended run's entry to go")
        last = _remote_ref(fleets, "w")
        time.sleep(1.2)
        assert _remote_ref(fleets, "w") == last  # idle again: no more pushes
    finally:
        proc.stop()


def test_the_hook_accepts_live_refs_and_readers_check_the_entries(fleets: Fleets, cli) -> None:
    """refs/fleetq/live/* pass the pre-receive hook (whose script starts no Python for them); a hand-pushed
    entry of the wrong shape is no live output."""
    f = fleets.first
    assert cli("hooks", "install", "--bare", fleets.remote).code == 0
    assert receive.check_update(f.repo, ZERO_SHA, "1" * 40, live.ref_of("w")) == []
    good = live.LiveEntry("x1", 2, 5, ["a", "b"], "c")
    sha = live.publish(f, [good], 1)  # through the installed hook
    assert _remote_ref(fleets, f.machine) == sha
    assert live.read(f.repo, f.machine) == {"x1": live.LiveEntry("x1", 2, 5, ["a", "b"], "c", machine=f.machine)}
    assert [n for n, _ in good.numbered()] == [4, 5] and good.last_line() == "c"
    for bad in ({**good.doc(), "attempt": "2"}, {**good.doc(), "id": "other"}, {**good.doc(), "lines": "a"}, [1]):
        assert live.parse_entry(bad, "x1", "w") is None


def test_a_track_reads_only_its_attempt_numbers_lines_and_redacts(tmp_path: Path, monkeypatch) -> None:
    """The publisher's view of one log: from this attempt's header on, incrementally, lines counted, the
    tail redacted before the cut (a secret variable's value too), a progress bar's latest state."""
    from fleetq.worker.live import Track

    monkeypatch.setenv("DEPLOY_TOKEN", "hunter2-very-secret")
    log = tmp_path / "t1.log"
    log.write_text("=== t1 attempt 1 on w at X\n$ old\nold-1\n# exit 1\n=== t1 attempt 2 on w at Y\n$ cmd\n")
    t = Track("t1", 2, log, 0.0)
    t.read()
    with log.open("a") as f:
        f.write("".join(f"n-{i}\n" for i in range(1, 101)) + "deploy hunter2-very-secret\nprogress 10%\rprogress 50%")
    t.read()
    e = t.entry([], 7, "w")
    assert e.line == 102 and len(e.lines) == 40 and e.lines[-1] == "deploy [redacted]", e
    assert e.numbered()[-2] == (101, "n-100") and e.partial == "progress 50%" and "old-1" not in e.lines
    before = t.version
    t.read()
    assert t.version == before  # nothing new: no change to publish
    with log.open("a") as f:
        f.write("\nlast\n")
    t.read()
    e = t.entry([], 8, "w")
    assert e.line == 104 and e.lines[-2:] == ["progress 50%", "last"] and e.partial == ""
