"""Git's own network legs over an ssh:// remote reuse one ControlMaster (fleetq/git/link.py git_ssh_env).

A real sshd on loopback (tests/support/sshd.py) serves the fleet's bare remote; clones reach it by
``ssh://fleet-git/<path>`` through the test's ssh_config ($FLEETQ_SSH_CONFIG).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from fleetq.core import transitions
from fleetq.core.clone import Fleet
from fleetq.core.matching import Seat
from fleetq.fleet import initfleet
from fleetq.git import link, ssh
from support.fleets import Fleets
from support.sshd import SshServer, sshd  # noqa: F401  (fixture)
from support.workers import WorkerProc, add, states_of, tasks, wait_for


def ssh_url(server: SshServer, fleets: Fleets) -> str:
    return f"ssh://{server.alias('fleet-git')}{fleets.remote}"


@pytest.fixture
def accepted(sshd: SshServer) -> Callable[[], int]:  # noqa: F811
    """The sshd restarted to log at INFO: a callable counting the connections it has accepted so far.

    Requested before ``ssh_fleet``, so the fleet joins (and starts its master) after the restart.
    """
    cfg = sshd.dir / "sshd_config"
    cfg.write_text(cfg.read_text().replace("LogLevel ERROR", "LogLevel INFO"))
    sshd.stop_daemon()
    sshd.start_daemon()
    log = sshd.dir / "sshd.log"
    return lambda: len(re.findall(r"^Accepted publickey for ", log.read_text(), re.M))


@pytest.fixture
def ssh_fleet(fleets: Fleets, sshd: SshServer, tmp_path: Path) -> Fleet:  # noqa: F811
    """A clone whose origin is the fleet's bare repo reached over ssh://."""
    link._links.clear()  # links are per process and keyed by env; tests change the env
    return initfleet.join(ssh_url(sshd, fleets), tmp_path / "clone-sshy", "sshy")


def git_sockets(server: SshServer) -> list[Path]:
    return [p for p in server.sockets.glob("git-*") if p.is_socket()]


def master_pid(fleet: Fleet) -> int:
    gl = link.git_link(fleet.repo.remote_url())
    assert gl is not None and gl.socket
    out = subprocess.run(
        [*ssh.base_argv(gl.opts, gl.host), "-O", "check", gl.host.target], capture_output=True, text=True
    )
    m = re.search(r"pid=(\d+)", out.stderr)
    assert m, out.stderr
    return int(m.group(1))


def test_url_host_knows_git_url_forms() -> None:
    assert link.url_host("ssh://git@box:2222/srv/f.git") == ssh.Host(None, "git@box", 2222)
    assert link.url_host("git+ssh://box/srv/f.git") == ssh.Host(None, "box", None)
    assert link.url_host("ssh://[::1]:22/x") == ssh.Host(None, "::1", 22)
    assert link.url_host("me@box:fleet.git") == ssh.Host(None, "me@box", None)
    for local in ("/srv/f.git", "./a:b", "a/b:c", "file:///srv/f.git", "https://h/x.git", "", None):
        assert link.url_host(local) is None, local


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
    wait_for(
        lambda: subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0, 5, what="master gone"
    )
    assert ssh_fleet.repo.fetch() is not None
    assert master_pid(ssh_fleet) != pid  # a new master took the socket over
    add(ssh_fleet, tasks(1, prefix="k"))  # and a push works through it
    assert states_of(ssh_fleet)["k000"] == "pending"


def test_the_users_ssh_command_wins_and_reuse_can_be_turned_off(
    ssh_fleet: Fleet,
    sshd: SshServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = ssh_fleet.repo.remote_url()
    monkeypatch.setenv("GIT_SSH_COMMAND", f"ssh -F {sshd.config}")
    assert link.git_ssh_env(url) is None
    monkeypatch.delenv("GIT_SSH_COMMAND")
    monkeypatch.setenv("FLEETQ_SSH_REUSE", "0")
    env = link.git_ssh_env(url)
    assert (
        env is not None and "ControlPath=none" in env["GIT_SSH_COMMAND"] and "BatchMode=yes" in env["GIT_SSH_COMMAND"]
    )
    assert link.git_ssh_env(str(Path("/srv/f.git"))) is None


def claim_round_trips(fleet: Fleet, n: int, prefix: str) -> None:
    """fetch + claim commit + push of one task, n times (the claim path a worker pays)."""
    add(fleet, tasks(n, prefix=prefix))
    seat = Seat(fleet.config(fleet.snapshot()).machine(fleet.machine), agents=set(), first_seen={})
    for _ in range(n):
        assert len(transitions.claim(fleet, seat, 1, grace=0)) == 1


def test_claims_ride_one_connection(
    accepted: Callable[[], int],
    ssh_fleet: Fleet,
    sshd: SshServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The mechanism, not a stopwatch: with reuse, ten claims (each a fetch and a push) open no new
    connection to the sshd and keep one master; with FLEETQ_SSH_REUSE=0 every network leg logs in anew."""
    sock = git_sockets(sshd)
    assert len(sock) == 1  # join started the master
    pid, before = master_pid(ssh_fleet), accepted()
    assert before >= 1
    claim_round_trips(ssh_fleet, 10, "re")
    assert accepted() == before  # every fetch and push went through the master's one connection
    assert master_pid(ssh_fleet) == pid and git_sockets(sshd) == sock
    monkeypatch.setenv("FLEETQ_SSH_REUSE", "0")
    claim_round_trips(ssh_fleet, 10, "pl")
    assert accepted() >= before + 20  # the counter sees connections: a fetch and a push per claim
