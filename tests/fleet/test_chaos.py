"""The short chaos run (tests/support/chaos.py) in the normal suite: 4 worker hosts on network namespaces
(or the loopback fallback), 40 tasks, a worker SIGKILLed and restarted, a host cut off for longer
than the lease, the remote's sshd stopped for a few seconds. The long run is bench/chaos.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.chaos import run_chaos
from support.netbed import NetBed, bed_fixture


@pytest.fixture
def bed(request: pytest.FixtureRequest, tmp_path: Path) -> NetBed:
    return bed_fixture(request, tmp_path, 5)


def test_chaos_short(bed: NetBed, capsys: pytest.CaptureFixture[str]) -> None:
    lines: list[str] = []
    rep = run_chaos(
        bed,
        tasks=40,
        lease=8.0,
        heartbeat=1.0,
        kills=1,
        cut_extra=3.0,
        sshd_down=3.0,
        seed=7,
        short=(0.05, 0.5),
        long=(1.0, 2.5),
        long_share=0.3,
        timeout=150,
        say=lines.append,
    )
    with capsys.disabled():
        print("\n" + "\n".join(lines + rep.lines()))
    assert rep.ok, rep.problems
    assert rep.kills == 1 and rep.cuts and rep.cuts[0]["seconds"] > rep.lease and rep.sshd_down >= 3.0
    assert rep.states == {"done": 40} and not rep.overlaps and rep.fsck_clean
