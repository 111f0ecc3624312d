"""The test bed itself (tests/support/netbed.py): hosts reach h0's sshd, not each other; a cut is a cut."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import support.sshd as sshd_support
from support import netbed
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


def _our_namespaces() -> set[str]:
    """This process's namespaces (fq<pid>-...), as `ip netns list` shows them."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines()
    return {line.split()[0] for line in listed if line.startswith(f"fq{os.getpid()}-")}


def _watch_netns_adds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    made: list[str] = []
    real = netbed._ip

    def spy(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = real(*args, check=check)
        if args[:2] == ("netns", "add") and res.returncode == 0 and not args[2].endswith("-probe"):
            made.append(args[2])
        return res

    monkeypatch.setattr(netbed, "_ip", spy)
    return made


@pytest.mark.parametrize("mode", ["netns", "loopback"])
def test_a_missing_sshd_skips_before_anything_is_made(
    mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    if mode == "netns" and netbed.netns_available() is not None:
        pytest.skip(f"no network namespaces here: {netbed.netns_available()}")
    before = _our_namespaces()
    made = _watch_netns_adds(monkeypatch)
    monkeypatch.setattr(sshd_support, "SSHD", None)  # as on a machine without openssh-server
    bed = NetBed(tmp_path / "bed", force_loopback=mode == "loopback")
    request.addfinalizer(bed.teardown)  # whatever the asserts say, nothing outlives the test
    with pytest.raises(pytest.skip.Exception, match="needs sshd"):
        bed.create(3)
    assert made == [] and bed.namespaces == [] and bed.hosts == [] and bed.servers == []
    bed.teardown()  # the finalizer tears down again: twice is harmless
    assert _our_namespaces() == before


def test_teardown_removes_only_what_the_bed_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A create that fails halfway (here: a namespace of its name already exists) leaves nothing of its
    own behind and does not take what it did not make."""
    if netbed.netns_available() is not None:
        pytest.skip(f"no network namespaces here: {netbed.netns_available()}")
    bed = NetBed(tmp_path / "bed")
    squatter = bed.ns(1)
    subprocess.run(["ip", "netns", "add", squatter], check=True)
    try:
        with pytest.raises(subprocess.CalledProcessError):
            bed.create(3)
        assert bed.namespaces == [bed.ns("sw"), bed.ns(0)]
        bed.teardown()
        assert _our_namespaces() == {squatter}
    finally:
        subprocess.run(["ip", "netns", "del", squatter], capture_output=True)
        bed.teardown()
    assert _our_namespaces() == set()
