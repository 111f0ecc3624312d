"""Git's own network legs over an ssh:// remote reuse one ControlMaster (fleetq/ssh.py git_ssh_env).

A real sshd on loopback (tests/sshd.py) serves the fleet's bare remote; clones reach it by
``ssh://fleet-git/<path>`` through the test's ssh_config ($FLEETQ_SSH_CONFIG).
"""
from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import time
from pathlib import Path

import pytest
from conftest import Fleets
from sshd import SshServer, sshd  # noqa: F401  (fixture)
from workers import WorkerProc, add, states_of, tasks, wait_for

from fleetq import initfleet, ssh, transitions
from fleetq.fleet import Fleet
from fleetq.matching import Seat


def ssh_url(server: SshServer, fleets: Fleets) -> str:
    return f"ssh://{server.alias('fleet-git')}{fleets.remote}"


@pytest.fixture
def ssh_fleet(fleets: Fleets, sshd: SshServer, tmp_path: Path) -> Fleet:  # noqa: F811
    """A clone whose origin is the fleet's bare repo reached over ssh://."""
    ssh._links.clear()  # links are per process and keyed by env; tests change the env
    return initfleet.join(ssh_url(sshd, fleets), tmp_path / "clone-sshy", "sshy")


def git_sockets(server: SshServer) -> list[Path]:
    return [p for p in server.sockets.glob("git-*") if p.is_socket()]


def master_pid(fleet: Fleet) -> int:
    link = ssh.git_link(fleet.repo.remote_url())
    assert link is not None and link.socket
    out = subprocess.run([*ssh.base_argv(link.opts, link.host), "-O", "check", link.host.target],
                         capture_output=True, text=True)
    m = re.search(r"pid=(\d+)", out.stderr)
    assert m, out.stderr
    return int(m.group(1))


def test_url_host_knows_git_url_forms() -> None:
    assert ssh.url_host("ssh://git@box:2222/srv/f.git") == ssh.Host(None, "git@box", 2222)
    assert ssh.url_host("git+ssh://box/srv/f.git") == ssh.Host(None, "box", None)
    assert ssh.url_host("ssh://[::1]:22/x") == ssh.Host(None, "::1", 22)
    assert ssh.url_host("me@box:fleet.git") == ssh.Host(None, "me@box", None)
    for local in ("/srv/f.git", "./a:b", "a/b:c", "file:///srv/f.git", "https://h/x.git", "", None):
        assert ssh.url_host(local) is None, local


def test_fleet_over_ssh_claims_completes_and_keeps_one_master(ssh_fleet: Fleet, sshd: SshServer) -> None:  # noqa: F811
    assert ssh_fleet.repo.remote_url().startswith("ssh://")
    assert len(git_sockets(sshd)) == 1  # join's fetch/push started it; the socket is in the fleetq dir
    pid = master_pid(ssh_fleet)
    add(ssh_fleet, tasks(4))
    w = WorkerProc(ssh_fleet, "--burst", env=sshd.env())
    assert w.wait(60) == 0, w.log
    w.stop()
    assert set(states_of(ssh_fleet).values()) == {"done"}
    assert master_pid(ssh_fleet) == pid  # the worker's many fetches and pushes rode the same master


def test_a_killed_master_does_not_break_the_next_fetch(ssh_fleet: Fleet, sshd: SshServer) -> None:  # noqa: F811
    pid = master_pid(ssh_fleet)
    os.kill(pid, signal.SIGKILL)  # leaves a dead socket file behind
    wait_for(lambda: subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0, 5, what="master gone")
    assert ssh_fleet.repo.fetch() is not None
    assert master_pid(ssh_fleet) != pid  # a new master took the socket over
    add(ssh_fleet, tasks(1, prefix="k"))  # and a push works through it
    assert states_of(ssh_fleet)["k000"] == "pending"


def test_the_users_ssh_command_wins_and_reuse_can_be_turned_off(ssh_fleet: Fleet, sshd: SshServer,  # noqa: F811
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    url = ssh_fleet.repo.remote_url()
    monkeypatch.setenv("GIT_SSH_COMMAND", f"ssh -F {sshd.config}")
    assert ssh.git_ssh_env(url) is None
    monkeypatch.delenv("GIT_SSH_COMMAND")
    monkeypatch.setenv("FLEETQ_SSH_REUSE", "0")
    env = ssh.git_ssh_env(url)
    assert env is not None and "ControlPath=none" in env["GIT_SSH_COMMAND"] and "BatchMode=yes" in env["GIT_SSH_COMMAND"]
    assert ssh.git_ssh_env(str(Path("/srv/f.git"))) is None


def claim_round_trips(fleet: Fleet, n: int, prefix: str) -> list[float]:
    """fetch + claim commit + push of one task, n times (the claim path a worker pays)."""
    add(fleet, tasks(n, prefix=prefix))
    seat = Seat(fleet.config(fleet.snapshot()).machine(fleet.machine), agents=set(), first_seen={})
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        got = transitions.claim(fleet, seat, 1, grace=0)
        times.append(time.perf_counter() - t0)
        assert len(got) == 1
    return times


def test_connection_reuse_makes_a_claim_cheaper(ssh_fleet: Fleet, sshd: SshServer, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
                                                capsys: pytest.CaptureFixture[str]) -> None:
    reused = statistics.median(claim_round_trips(ssh_fleet, 10, "re"))
    monkeypatch.setenv("FLEETQ_SSH_REUSE", "0")
    plain = statistics.median(claim_round_trips(ssh_fleet, 10, "pl"))
    with capsys.disabled():
        print(f"\nclaim round trip over ssh://: reused {reused * 1000:.0f} ms, new connection each {plain * 1000:.0f} ms")
    assert reused < plain
