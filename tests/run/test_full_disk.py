"""A disk that fills while a task writes its output: that run ends failed with the reason, the worker goes on.

The clone's logs dir (.git/fleetq/logs) is a 1 MB tmpfs and a real worker runs a task that writes 5 MB,
then a task that writes a line. Needs root (mount); skipped with the reason otherwise.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from fleetq.core.clone import Fleet
from support.fleets import Fleets
from support.workers import WorkerProc, add, run_to_end, tasks

pytestmark = pytest.mark.timeout(60)

FLOOD = "head -c 5000000 /dev/zero | tr '\\0' x; echo; echo still here"


@pytest.fixture
def small_logs(fleets: Fleets) -> Iterator[Fleet]:
    """A worker clone whose logs dir is a 1 MB tmpfs."""
    clone = fleets.clone("w")
    logs = clone.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(logs)], capture_output=True, text=True
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip() or mount.returncode}")
    try:
        yield clone
    finally:
        subprocess.run(["umount", "-l", str(logs)], check=False)


def test_a_full_disk_fails_that_run_and_the_worker_goes_on(fleets: Fleets, small_logs: Fleet) -> None:
    add(fleets.first, tasks(1, "flood", priority=9, payload={"script": FLOOD}, max_attempts=1))
    add(fleets.first, tasks(1, "after", payload={"script": "echo next one ran"}))
    w = WorkerProc(small_logs, "--burst", "--slots", "1")
    run_to_end(w, timeout=45)
    snap = fleets.first.snapshot()
    flood, after = snap.get("flood000"), snap.get("after000")
    assert flood.state == "failed", (flood.state, flood.result, w.log)
    assert flood.result["error"] == "no space left on device while writing output", flood.result
    assert after.state == "done" and "next one ran" in after.result["stdout_tail"], (after.state, after.result)
    assert "Traceback" not in w.log, w.log
    # the flood's output was given back: the next runs (and the worker) have room again
    log = (small_logs.state_dir / "logs" / "flood000.log").read_text(errors="replace")
    assert len(log) < 100_000 and "no space left on device" in log, log[-500:]
