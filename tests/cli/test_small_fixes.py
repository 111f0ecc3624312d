"""Issue 13, part 10: one-line usage errors, a closed stdout, the newest fleet as the default,
hand-written tasks dated by their commit, and each worker's own lease in `fleetq status`."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleetq.core.heartbeat import beat
from fleetq.core.task import fmt_time, now_utc
from fleetq.git.repo import GitRepo
from support.fleets import Fleets, git
from support.workers import WorkerProc, add, set_file, set_machines, tasks, wait_for

# -- a. click's usage errors


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["assign", "--bogus"], "fleetq assign: no such option '--bogus' (see fleetq assign --help)"),
        (["bogus"], "fleetq: no such command 'bogus' (see fleetq --help)"),
        (["queue", "--limit", "x"], "fleetq queue: invalid value for '--limit': 'x' is not a valid integer"),
        (["assign"], "fleetq assign: missing argument 'DESCRIPTION...' (see fleetq assign --help)"),
        (["init", "d", "--bare", "--remote", "u"], "fleetq init: --bare makes a remote; it takes no --remote"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(cli, args: list[str], line: str) -> None:
    res = cli(*args)
    assert res.code == 2 and res.out == ""
    assert res.err.count("\n") == 1 and res.err.startswith(line), res.err


def test_help_is_still_clicks(cli) -> None:
    res = cli("assign", "--help")
    assert res.code == 0 and res.out.startswith("Usage: fleetq assign [OPTIONS] DESCRIPTION...")
    assert "--machine" in res.out and res.err == ""


# -- b. a closed stdout (`fleetq monitor | head -1`)


@pytest.mark.parametrize(
    "args",
    [["queue"], ["queue", "--json"], ["status"], ["monitor"], ["show", "t000", "--json"], ["--help"], ["--version"]],
)
def test_a_closed_stdout_ends_quietly_with_0(fleets: Fleets, args: list[str]) -> None:
    add(fleets.first, tasks(3))
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write: every write gets EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "fleetq", "--fleet", str(fleets.first.root), *args],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)
    assert (proc.returncode, proc.stderr) == (0, "")


def test_a_closed_stdout_after_a_partial_read(fleets: Fleets) -> None:
    """The shell's `fleetq monitor --watch | head -1`: the reader leaves after one line."""
    cmd = f"{sys.executable} -m fleetq --fleet {fleets.first.root} monitor --watch --interval 0.1 | head -1"
    proc = subprocess.run(
        ["bash", "-c", cmd + "; echo rc=${PIPESTATUS[0]}"], capture_output=True, text=True, timeout=60
    )
    assert proc.stdout.startswith("fleet monitor") and "rc=0" in proc.stdout and proc.stderr == "", proc


# -- c. the newest init or join is the default fleet


def test_the_newest_init_or_join_becomes_the_default(cli, tmp_path: Path) -> None:
    first, second, third = tmp_path / "one", tmp_path / "two", tmp_path / "three"
    res = cli("init", first, "--machine", "m1")
    assert res.code == 0 and f"default fleet is now {first}\n" in res.out
    res = cli("init", second, "--machine", "m2")
    assert res.code == 0 and f"default fleet is now {second} (was {first})" in res.out
    tid = cli("assign", "lands in two", "--set", "script=true").out.strip()
    assert json.loads(cli("--fleet", second, "show", tid, "--json").out)["id"] == tid
    assert cli("--fleet", first, "show", tid).code == 2
    url = git(first, "remote", "get-url", "origin").strip()
    res = cli("join", url, third, "--machine", "m3")
    assert res.code == 0 and f"default fleet is now {third} (was {second})" in res.out
    assert GitRepo(third).config_get("fleetq.machine") == "m3"
    assert cli("show", tid).code == 2  # the default is the first fleet's clone now


def test_a_join_that_fails_keeps_the_default(fleets: Fleets, cli, tmp_path: Path) -> None:
    live = fleets.clone("mini")  # the newest: the default now
    beat(live, {"seq": 1, "state": "running", "slots": 1, "running": []})
    res = cli("join", fleets.remote, tmp_path / "twin", "--machine", "mini")
    assert res.code == 4 and "mini is live on" in res.err
    res = cli("init", tmp_path / "next", "--machine", "n")
    assert f"(was {live.root})" in res.out  # not the removed twin


def test_joining_what_is_not_a_fleet_is_bad_input(cli, tmp_path: Path) -> None:
    """Exit 2, as the README's table has it for bad input (it was 1), and no clone left behind."""
    empty = tmp_path / "empty.git"
    git(tmp_path, "init", "-q", "--bare", str(empty))
    res = cli("join", empty, tmp_path / "c1")
    assert res.code == 2 and "holds no fleet yet" in res.err and not (tmp_path / "c1").exists()
    project = tmp_path / "project"
    git(tmp_path, "init", "-q", str(project))
    (project / "README").write_text("x")
    git(project, "add", "README")
    git(project, "commit", "-q", "-m", "a project, not a fleet")
    res = cli("join", project, tmp_path / "c2")
    assert res.code == 2 and "not a fleet" in res.err and not (tmp_path / "c2").exists()


# -- d. a task written by hand, with no created_at


def _hand_commit(clone: Path, tid: str, when: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a person does: write the file, commit it (at ``when``), push."""
    git(clone, "pull", "-q")
    (clone / "queue" / "pending" / f"{tid}.yaml").write_text(
        f"id: {tid}\ntype: run_script\ntitle: by hand\npayload:\n  script: 'true'\n"
    )
    git(clone, "add", "queue")
    monkeypatch.setenv("GIT_AUTHOR_DATE", when)
    monkeypatch.setenv("GIT_COMMITTER_DATE", when)
    git(clone, "commit", "-q", "-m", f"add {tid} by hand")
    monkeypatch.delenv("GIT_AUTHOR_DATE")
    monkeypatch.delenv("GIT_COMMITTER_DATE")
    git(clone, "push", "-q", "origin", "HEAD:main")


def test_a_hand_written_task_is_dated_by_its_commit(fleets: Fleets, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    now = now_utc().timestamp()
    three_hours_ago = dt.datetime.fromtimestamp(now - 3 * 3600, dt.timezone.utc)
    add(fleets.first, [{**tasks(1, "old")[0], "created_at": fmt_time(three_hours_ago)}])
    add(fleets.first, tasks(1, "new"))
    _hand_commit(fleets.first.root, "byhand", f"@{int(now - 3600)} +0000", monkeypatch)
    root = fleets.first.root

    def order() -> list[str]:
        res = cli("--fleet", root, "queue", "--json")
        assert res.code == 0, res.err
        return [t["id"] for t in json.loads(res.out)["tasks"]]

    assert order() == ["new000", "byhand", "old000"]
    other = fleets.clone("beta")  # another clone finds it in its own history
    assert [t["id"] for t in json.loads(cli("--fleet", other.root, "queue", "--json").out)["tasks"]][1] == "byhand"
    row = next(line for line in cli("--fleet", root, "queue").out.splitlines() if line.startswith("byhand"))
    assert " 1h " in row
    # The answer is kept in the clone: the next listing walks no history.
    monkeypatch.setattr(GitRepo, "log", lambda *a, **k: pytest.fail("walked the history again"))
    assert order() == ["new000", "byhand", "old000"]


def test_a_listing_of_dated_tasks_walks_no_history(fleets: Fleets, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    add(fleets.first, tasks(3))
    monkeypatch.setattr(GitRepo, "log", lambda *a, **k: pytest.fail("walked the history for dated tasks"))
    res = cli("--fleet", fleets.first.root, "queue", "--json")
    assert res.code == 0 and len(json.loads(res.out)["tasks"]) == 3


# -- g. each worker's own lease in `fleetq status`


def test_status_shows_each_workers_own_lease(fleets: Fleets, cli) -> None:
    generic = {"capabilities": ["run_script"]}
    set_machines(fleets.first, {"w0": generic, "w1": generic, "ghost": generic})
    set_file(fleets.first, "config/fleet.yaml", "lease: 20\n")
    procs = [WorkerProc(fleets.clone("w0")), WorkerProc(fleets.clone("w1"), "--lease", "45")]
    root = fleets.first.root
    try:

        def rows() -> dict[str, dict]:
            doc = json.loads(cli("--fleet", root, "status", "--json").out)
            assert doc["lease"] == 20
            return {r["machine"]: r for r in doc["machines"]}

        def settled() -> bool:  # a worker's first beat comes before it read config/fleet.yaml
            got = rows()
            return got["w0"]["online"] and got["w1"]["online"] and got["w0"]["lease"] == 20

        wait_for(settled, 60, what="both workers' heartbeats, w0's with the fleet's lease")
        got = rows()
        assert (got["w0"]["lease"], got["w0"]["lease_from"]) == (20, "worker")
        assert (got["w1"]["lease"], got["w1"]["lease_from"]) == (45, "worker")
        assert (got["ghost"]["lease"], got["ghost"]["lease_from"]) == (20, "fleet")
        text = cli("--fleet", root, "status").out
        lines = {line.split()[0]: line for line in text.splitlines() if line.split()}
        assert "Lease" in text and " 45s " in lines["w1"] and " 20s " in lines["w0"]
        assert " 20s (fleet) " in lines["ghost"] and "(fleet lease 20s)" in text
    finally:
        for p in procs:
            p.stop()
