"""A stopped run's whole process group gets the SIGTERM grace, even when ``sh`` (the leader) exits at once.

Issue 14, finding 9: a run_script's program got SIGKILL with no grace because the leader's exit swept the
group. Both supervision paths (the zygote and a supervisor per command) are run.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from fleetq.run import trees, zygote_client
from fleetq.run.handlers import load_handler
from support.handlers import make_ctx

pytestmark = pytest.mark.timeout(30)

# A child that needs a moment to clean up on SIGTERM (well inside the 2 s grace), then says so.
CHILD = """
import signal, sys, time
def on_term(*_):
    time.sleep(0.5)
    open(sys.argv[1], "w").write("TERM")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term if sys.argv[3] == "clean" else signal.SIG_IGN)
open(sys.argv[2], "w").write(str(__import__("os").getpid()))
while True:
    time.sleep(100)
"""


@pytest.fixture(autouse=True, params=["zygote", "supervisor"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(zygote_client, "ZYGOTE", request.param == "zygote")
    return request.param


def cancel_run_script(tmp_path: Path, how: str) -> tuple[float, int]:
    """A run_script whose sh traps TERM and exits at once, with a grandchild; cancelled once it runs.
    Returns (seconds from the cancel to the result, the grandchild's pid)."""
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    got, ready = tmp_path / "got", tmp_path / "ready"
    script = f"trap 'exit 0' TERM; {sys.executable} {child} {got} {ready} {how} & wait"
    ctx = make_ctx(tmp_path, dict(os.environ), "run_script", {"script": script, "cwd": str(tmp_path)})
    result: list = []
    t = threading.Thread(target=lambda: result.append(load_handler("run_script", None).run(ctx)))
    t.start()
    deadline = time.monotonic() + 10
    while not (ready.exists() and ready.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    pid = int(ready.read_text())
    cancelled = time.monotonic()
    ctx.cancel.set()
    t.join(15)
    assert result and result[0].outcome == "failed" and result[0].error == "cancelled", result
    return time.monotonic() - cancelled, pid


def gone(pid: int, within: float = 2.0) -> bool:
    """Dead (or a zombie) within ``within`` seconds: a SIGKILL takes a moment to land."""
    deadline = time.monotonic() + within
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def test_the_grandchild_gets_sigterm_and_time_to_clean_up(tmp_path: Path) -> None:
    took, pid = cancel_run_script(tmp_path, "clean")
    assert (tmp_path / "got").read_text() == "TERM"  # it was not SIGKILLed when sh exited
    assert took < trees.KILL_GRACE, took  # and the run ended once the group was gone, not after the grace
    assert gone(pid)


def test_a_grandchild_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    took, pid = cancel_run_script(tmp_path, "ignore")
    assert gone(pid) and not (tmp_path / "got").exists()
    assert trees.KILL_GRACE - 0.2 <= took < trees.KILL_GRACE + 3, took
