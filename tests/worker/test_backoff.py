"""The worker backs off while the remote is down (fleetq/worker/outage.py): a bounded number of log
lines and of passes, not one of each every 50 ms."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from fleetq.errors import RemoteError
from fleetq.worker import outage
from support.fleets import Fleets, git
from support.workers import WorkerProc, wait_for


def _reads(trace: Path) -> int:
    """The loop's looks at the remote so far (ls-remote and fetch), from git's own trace."""
    text = trace.read_text(errors="replace") if trace.exists() else ""
    return sum(1 for ln in text.splitlines() if "built-in: git ls-remote" in ln or "built-in: git fetch" in ln)


def test_a_worker_backs_off_while_the_remote_is_down(fleets: Fleets, tmp_path: Path) -> None:
    w = fleets.clone("w")
    trace = tmp_path / "git-trace"
    p = WorkerProc(w, env={"GIT_TRACE": str(trace)})
    try:
        beats = ["for-each-ref", "refs/fleetq/machines/w"]
        wait_for(lambda: git(Path(fleets.remote), *beats).strip(), 30, what="the worker's first heartbeat")
        git(w.root, "remote", "set-url", "origin", str(tmp_path / "nowhere.git"))  # the remote goes away
        time.sleep(1)
        before, reads = len(p.log.splitlines()), _reads(trace)
        time.sleep(5)
        during, reads = p.log.splitlines()[before:], _reads(trace) - reads
        assert len(during) < 10, "\n".join(during)  # it polls every 0.2 s (support/workers.py FAST)
        assert reads < 10, f"{reads} tries in 5s"
        git(w.root, "remote", "set-url", "origin", fleets.remote)
        wait_for(lambda: "answers again" in p.log, 40, what="the worker to reach the remote again")
    finally:
        p.stop()


def test_the_wait_doubles_per_full_wait_up_to_the_cap_and_wakeups_do_not_grow_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    o = outage.Outage(clock=lambda: now[0])
    down = RemoteError("cannot reach origin")
    with caplog.at_level(logging.INFO, logger="fleetq.worker.outage"):
        o.failed(down, cap=5)
        for _ in range(3):  # passes a wake-up ran at once: no longer wait, no more lines
            now[0] += 0.1
            o.failed(down, cap=5)
        assert o.delay == 1 and len(caplog.records) == 1
        waits = []
        for _ in range(5):
            now[0] += o.delay
            o.failed(down, cap=5)
            waits.append(o.delay)
        assert waits == [2, 4, 5, 5, 5]
        assert len(caplog.records) == 4  # the start and three steps
        o.answered()
    assert not o.down and o.delay == 0 and "answers again" in caplog.records[-1].getMessage()
