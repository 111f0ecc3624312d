"""git that never hangs or wedges (fleetq/git/netcall.py, fleetq/git/locks.py): a remote that accepts
and never answers fails in bounded time with exit 3, and a lock file a killed git left is removed."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fleetq.core.clone import Fleet
from fleetq.errors import UsageError
from fleetq.git import locks, netcall
from support.fleets import Fleets, git, run_fleetq
from support.hang import gits_in, silent_remote
from support.workers import WorkerProc, add, run_to_end, states_of, tasks, wait_for


def _point_at(fleet: Fleet, url: str) -> None:
    git(fleet.root, "remote", "set-url", "origin", url)


def _stale_lock(fleet: Fleet, rel: str = "refs/remotes/origin/main.lock", age: float = 60) -> Path:
    """A lock file as a git killed ``age`` seconds ago leaves it."""
    path = fleet.repo.git_dir / rel
    path.write_text("")
    then = time.time() - age
    os.utime(path, (then, then))
    return path


@pytest.mark.parametrize(
    "args", [["queue"], ["status"], ["assign", "--machine", "w", "--type", "run_script", "say hi"]], ids=str
)
def test_a_remote_that_never_answers_fails_in_bounded_time(fleets: Fleets, args: list[str]) -> None:
    w = fleets.clone("w")
    with silent_remote() as url:
        _point_at(w, url)
        started = time.monotonic()
        p = run_fleetq("--fleet", str(w.root), "--machine", "w", *args, env={"FLEETQ_GIT_TIMEOUT": "2"}, timeout=40)
        took = time.monotonic() - started
        assert not gits_in(w.root), "a git call was left running"
    assert p.returncode == 3, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "timed out after 2s" in lines[0], p.stderr
    assert took < 20


def test_the_clone_config_sets_the_limit_and_a_bad_value_is_refused(fleets: Fleets, monkeypatch) -> None:
    w = fleets.clone("w")
    with silent_remote() as url:
        _point_at(w, url)
        git(w.root, "config", "fleetq.gitTimeout", "1")
        started = time.monotonic()
        with pytest.raises(netcall.RemoteTimeout, match="timed out after 1s"):
            Fleet(w.root, "w").repo.ls_remote_head()
        assert time.monotonic() - started < 5
    monkeypatch.setenv(netcall.ENV_TIMEOUT, "soon")
    with pytest.raises(UsageError, match="positive number of seconds"):
        Fleet(w.root, "w").repo.ls_remote_head()


def test_a_worker_stuck_on_a_silent_remote_stops_on_sigterm(fleets: Fleets) -> None:
    w = fleets.clone("w")
    with silent_remote() as url:
        _point_at(w, url)
        p = WorkerProc(w, "--lease", "6", env={"FLEETQ_GIT_TIMEOUT": "120"})
        try:
            wait_for(lambda: gits_in(w.root), 20, what="the worker to wait on the remote")
            time.sleep(1)
            p.signal(signal.SIGTERM)
            started = time.monotonic()
            code = p.wait(30)
            took = time.monotonic() - started
        finally:
            p.stop()
        assert code == 0, p.log
        assert took < 10, f"took {took:.1f}s to stop\n{p.log}"
        assert "stopped" in p.log
        assert not gits_in(w.root)


def test_a_stale_tracking_lock_does_not_stop_queue(fleets: Fleets, cli) -> None:
    w = fleets.clone("w")
    lock = _stale_lock(w)
    add(fleets.first, tasks(1, "s"))
    r = cli("--fleet", w.root, "--machine", "w", "queue")
    assert r.code == 0, r.err
    assert "s000" in r.out  # fetched: before, "remote unreachable" and the queue of the last fetch
    assert "removed a stale lock" in r.err and "unreachable" not in r.err
    assert not lock.exists()


def test_a_lock_held_by_a_running_git_is_named_not_called_unreachable(fleets: Fleets, cli) -> None:
    w = fleets.clone("w")
    # A git working in the clone that started before the lock was taken: it may own it.
    holder = subprocess.Popen(["git", "hash-object", "--stdin"], cwd=w.root, stdin=subprocess.PIPE)
    try:
        time.sleep(1.2)
        lock = _stale_lock(w, age=0)
        add(fleets.first, tasks(1, "h"))
        r = cli("--fleet", w.root, "--machine", "w", "queue")
    finally:
        holder.communicate(b"")
    assert r.code == 1
    assert r.err.strip() == f"fleetq: {lock} is locked by a running git (pid {holder.pid}); try again when it ends"
    assert lock.exists()


def test_a_stale_lock_does_not_wedge_a_worker(fleets: Fleets) -> None:
    w = fleets.clone("w")
    add(fleets.first, tasks(1, "k"))
    _stale_lock(w, age=0)  # a git killed a moment ago: removed once it is a few seconds old
    run_to_end(WorkerProc(w, "--burst"), timeout=60)
    assert states_of(fleets.first)["k000"] == "done"


def test_locked_path_reads_only_the_clones_own_locks(tmp_path: Path) -> None:
    gd = tmp_path / "c" / ".git"
    own = f"error: Unable to create '{gd}/packed-refs.lock': File exists."
    remote = f"remote: error: Unable to create '{tmp_path}/r.git/refs/heads/main.lock': File exists."
    assert locks.locked_path(own, gd) == gd / "packed-refs.lock"
    assert locks.locked_path(remote, gd) is None
    assert locks.locked_path("fatal: could not read from remote repository", gd) is None
