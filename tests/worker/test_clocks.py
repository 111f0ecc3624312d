"""Leases and fences on the monotonic clock: a wall-clock step on a real worker never overlaps two runs.

Each worker here runs with tests/support/skewclock on PYTHONPATH, which steps its ``time.time``
by the seconds in a file while leaving ``time.monotonic`` alone, as NTP or a person would.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from fleetq import yamlio
from fleetq.core import clock
from fleetq.core.heartbeat import Observer
from support.fleets import Fleets, git
from support.workers import WorkerProc, add, states_of, tasks, wait_for

SKEW_DIR = Path(__file__).resolve().parents[1] / "support" / "skewclock"


def _skewed(skew: Path) -> dict[str, str]:
    skew.write_text("0")
    path = os.pathsep.join(p for p in (str(SKEW_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "FLEETQ_TEST_SKEW_FILE": str(skew)}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _overlap_script(runs: Path, pids: Path) -> str:
    """On a: a long run whose pid is kept; elsewhere: note OVERLAP if a's run is still alive."""
    return (
        f'echo "$FLEETQ_MACHINE $FLEETQ_ATTEMPT" >> {runs}; '
        f'if [ "$FLEETQ_MACHINE" = a ]; then sleep 60 & echo $! > {pids}; wait; '
        f'else s=$(cut -d" " -f3 /proc/$(cat {pids})/stat 2>/dev/null); '
        f'[ -n "$s" ] && [ "$s" != Z ] && echo OVERLAP >> {runs}; fi; true'
    )


def test_a_cut_off_worker_whose_clock_steps_back_still_fences_before_the_reap(fleets: Fleets, tmp_path: Path) -> None:
    """The fence counts on the monotonic clock: stepping the wall clock back a minute does not hold the lease."""
    a, b = fleets.clone("a"), fleets.clone("b")
    runs, pids, skew = tmp_path / "runs", tmp_path / "pids", tmp_path / "skew"
    add(fleets.first, tasks(1, "f", payload={"script": _overlap_script(runs, pids)}))
    wa = WorkerProc(a, "--lease", "4", env=_skewed(skew))
    wb = None
    try:
        wait_for(lambda: pids.exists() and pids.read_text().strip(), 30, what="the task to start on a")
        child = int(pids.read_text())
        git(a.root, "config", "remote.origin.url", str(tmp_path / "nowhere.git"))  # a's network is cut
        skew.write_text("-60")  # ... and its clock steps back a minute
        cut_at = time.monotonic()
        wb = WorkerProc(b, "--lease", "4")
        wait_for(lambda: not _alive(child), 15, what="a to fence its run")
        assert time.monotonic() - cut_at < 4, "fenced only after the lease"
        wait_for(lambda: states_of(fleets.first).get("f000") == "done", 60, what="b to reap and re-run it")
    finally:
        wa.kill()  # cut off, with nothing left to run: its stop would wait on the remote
        wa.stop()
        if wb:
            wb.stop()
    assert runs.read_text().splitlines() == ["a 1", "b 2"], runs.read_text()


def test_a_reaper_whose_clock_steps_forward_leaves_a_live_claim_alone(fleets: Fleets, tmp_path: Path) -> None:
    """Heartbeat ages count on the monotonic clock: a jump of the reaper's wall clock is not a silent lease."""
    a, b = fleets.clone("a"), fleets.clone("b")
    runs, pids, skew = tmp_path / "runs", tmp_path / "pids", tmp_path / "skew"
    add(fleets.first, tasks(1, "f", payload={"script": _overlap_script(runs, pids)}))
    wa = WorkerProc(a, "--lease", "4")
    wb = None
    try:
        wait_for(lambda: pids.exists() and pids.read_text().strip(), 30, what="the task to start on a")
        wb = WorkerProc(b, "--lease", "4", env=_skewed(skew))
        wait_for(lambda: "a:" in (b.state_dir / "observed.yaml").read_text(), 30, what="b to watch a's heartbeat")
        time.sleep(1)
        skew.write_text("300")  # b's clock jumps five minutes ahead
        time.sleep(5)  # more than a lease
        t = fleets.first.snapshot().get("f000")
        assert t.state == "claimed" and t.claim["machine"] == "a" and t.claim["attempt"] == 1
        assert _alive(int(pids.read_text())), wb.log
    finally:
        for _ in range(2):  # the second SIGTERM hands the run back instead of waiting a minute for it
            wa.signal(signal.SIGTERM)
            time.sleep(0.3)
        wa.stop()
        if wb:
            wb.stop()


def test_marks_from_another_boot_are_unknown_not_old(tmp_path: Path, monkeypatch) -> None:
    """An observation written before a reboot cannot be measured from: the age starts again at zero."""
    mark = clock.Mark.now(ago=3600).plain()
    assert clock.Mark.load(mark) is not None and clock.Mark.load(mark).age() >= 3600  # type: ignore[union-attr]
    assert clock.Mark.load({**mark, "boot": "another"}) is None
    assert clock.Mark.load({"at": mark["at"]}) is None  # the format before monotonic marks
    monkeypatch.setattr(clock, "wall", lambda: time.time() + 100)
    assert 99 < clock.Mark.load(mark).jumped() < 101  # type: ignore[union-attr]


def test_an_observation_file_from_before_is_re_dated_not_reaped(fleets: Fleets) -> None:
    """observed.yaml written by an older fleetq (wall-clock ``at`` only) ages from now."""
    a = fleets.clone("a")
    wa = WorkerProc(a, "--burst")
    assert wa.wait(60) == 0
    obs = Observer(fleets.first)
    obs.read()
    data = yamlio.read_file(obs.path)
    data["a"] = {"sha": data["a"]["sha"], "at": time.time() - 3600, "observed": True}
    yamlio.write_file(obs.path, data)
    assert obs.read(fetch=False)["a"].age < 5


def test_a_worker_that_cannot_read_the_head_stops_heartbeating(fleets: Fleets, caplog) -> None:
    """Pushes that land while fetches fail (a wedged clone) must not keep this machine's claims alive."""
    from fleetq.worker.daemon import Worker

    a = fleets.clone("a")
    w = Worker(a, lease=6)
    w.cfg = a.config(a.snapshot())
    w.fetched_ok_at = clock.mono() - 10  # past the 4 s fence point of a 6 s lease
    w.lease.beat(force=True)
    assert a.repo.refs_under("refs/fleetq/machines") == {}
    assert "not heartbeating: no fetch of the remote's head has worked for 10s" in caplog.text
    w.fetched_ok_at = clock.mono()
    w.lease.beat(force=True)
    assert list(a.repo.refs_under("refs/fleetq/machines")) == ["refs/fleetq/machines/a"]
