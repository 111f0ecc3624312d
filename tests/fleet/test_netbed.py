"""The test bed itself (tests/support/netbed.py): hosts reach h0's sshd, not each other; a cut is a cut."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from support.netbed import NetBed, bed_fixture
from support.workers import add, states_of, tasks, wait_for


@pytest.fixture(params=["netns", "loopback"])
def bed(request: pytest.FixtureRequest, tmp_path: Path) -> NetBed:
    """Namespaces where they can be made (root), and the loopback fallback, which runs everywhere."""
    return bed_fixture(request, tmp_path, 3, force_loopback=request.param == "loopback")


def reach(bed: NetBed, i: int, address: str, port: int) -> bool:
    h = bed.host(i)
    return (
        subprocess.run(
            [*h.wrap(), "timeout", "2", "bash", "-c", f"exec 3<>/dev/tcp/{address}/{port}"], capture_output=True
        ).returncode
        == 0
    )


def test_hosts_reach_the_remote_over_ssh_and_run_work(bed: NetBed) -> None:
    assert len(bed.hosts) == 2 and all(h.clone.is_dir() for h in bed.hosts)
    assert all(h.url.startswith("ssh://") for h in bed.hosts)
    sshd = bed.servers[0]
    assert reach(bed, 1, sshd.address, sshd.port)
    if bed.netns:
        assert bed.host(1).address != bed.host(2).address
        assert not reach(bed, 1, "127.0.0.1", bed.host(2).server.port + 1)  # lo is the host's own
        # the root namespace has none of it: no 198.18 address, no route
        assert "198.18." not in subprocess.run(["ip", "addr"], capture_output=True, text=True).stdout
    add(bed.control, tasks(4))
    for h in bed.hosts:
        bed.start_worker(h.index)
    wait_for(lambda: set(states_of(bed.control).values()) == {"done"}, 60, what="tasks done over ssh")
    snap = bed.control.snapshot()
    ran_on = {snap.load(r).result.get("machine") for r in snap.all_refs()}
    assert ran_on <= {"h1", "h2"} and ran_on  # results came back over ssh from the worker hosts
    for h in bed.hosts:
        assert bed.stop_worker(h.index) == 0


def test_cut_and_heal(bed: NetBed) -> None:
    sshd = bed.servers[0] if bed.netns else bed.host(1).server
    assert reach(bed, 1, sshd.address, sshd.port)
    bed.cut(1)
    assert not reach(bed, 1, sshd.address, sshd.port)
    other = bed.servers[0] if bed.netns else bed.host(2).server
    assert reach(bed, 2, other.address, other.port)  # only h1 is cut off
    bed.heal(1)
    wait_for(lambda: reach(bed, 1, sshd.address, sshd.port), 10, what="h1 back on the network")
    res = bed.fleetq(bed.host(1), "--fleet", str(bed.host(1).clone), "status")
    assert res.returncode == 0, res.stderr
