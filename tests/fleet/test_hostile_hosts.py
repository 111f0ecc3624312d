"""A machine's ``host:`` reaches ssh as its destination: it must be a host name, never an option (issue 14, finding 4).

``host: "-oProxyCommand=…"`` would run a local command on `fleetq exec` with connection reuse off.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from fleetq.core.config import parse_machines
from fleetq.errors import FleetqError, UsageError
from fleetq.fleet import remote
from fleetq.git import ssh
from fleetq.handlerapi import FAILED, HandlerContext
from fleetq.run.presync import presync
from support.fleets import Fleets, git
from support.workers import set_machines

pytestmark = pytest.mark.timeout(60)


def test_a_host_that_is_an_ssh_option_is_a_problem_and_never_reaches_ssh(
    fleets: Fleets, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEETQ_SSH_REUSE", "0")  # no ControlMaster: ssh itself would run the ProxyCommand
    pwned = tmp_path / "pwned"
    hostile = f"-oProxyCommand=touch {pwned}"
    root = fleets.first.root
    assert cli("--fleet", root, "hooks", "install").code == 0
    (root / "config" / "machines.yaml").write_text(f'machines:\n  b:\n    host: "{hostile}"\n')
    git(root, "add", "config/machines.yaml")
    commit = subprocess.run(["git", "commit", "-q", "-m", "b"], cwd=root, capture_output=True, text=True)
    assert commit.returncode != 0 and f"machine 'b': host '{hostile}' is not a host name" in commit.stderr
    git(root, "reset", "-q", "--hard")

    set_machines(fleets.first, {"alpha": {"capabilities": ["run_script"]}, "b": {"host": hostile}})  # pushed anyway
    fleets.first.refresh_checkout()
    res = cli("--fleet", root, "validate")
    assert res.code == 1 and f"machine 'b': host '{hostile}' is not a host name" in res.err, res.err
    res = cli("--fleet", root, "exec", "b", "true")
    assert res.code == 1 and "is not a host name" in res.err and len(res.err.strip().splitlines()) == 1, res.err
    assert not pwned.exists()

    # whatever builds the Host (a task's payload.sync.from, a machine reached by its name), ssh never gets it
    host = ssh.Host("b", hostile)
    with pytest.raises(UsageError, match="is not a host name"):
        remote.run(ssh.SshOptions(reuse=False), host, "true", echo=False)
    with pytest.raises(UsageError, match="is not a host name"):
        ssh.rsync_argv(ssh.SshOptions(reuse=False), host, "/src/", f"{hostile}:dst/", excludes=[], delete=False)
    sync = {"path": str(tmp_path), "from": hostile, "machine": "b", "dest": str(tmp_path / "dest")}
    ctx = HandlerContext(
        "t1", {}, {"sync": sync}, "c", 1, tmp_path, tmp_path / "t1.log", {}, {}, threading.Event(), None
    )
    res = presync(ctx)  # a task's payload.sync.from: the run fails with the reason, nothing is started
    assert res is not None and res.outcome == FAILED and "is not a host name" in str(res.error)
    assert not pwned.exists()


@pytest.mark.parametrize(
    "value,target,port",
    [
        ("box", "box", None),
        ("me@box.tail1234.ts.net", "me@box.tail1234.ts.net", None),
        ("box:2222", "box", 2222),
        ("fd7a:115c:a1e0::1", "fd7a:115c:a1e0::1", None),
        ("me@[fd7a::1]:22", "me@fd7a::1", 22),
        ("100.64.0.7", "100.64.0.7", None),
    ],
)
def test_host_names_that_are_fine(value: str, target: str, port: int | None) -> None:
    assert ssh.parse_target(value) == (target, port)
    assert parse_machines({"machines": {"m": {"host": value}}})["m"].host == value


@pytest.mark.parametrize("value", ["-oProxyCommand=x", "me@-p", "a b", "box;id", "$(id)", "box\n", "box:70000", 7])
def test_host_values_that_are_refused(value: object) -> None:
    with pytest.raises(FleetqError, match="is not a host name"):
        parse_machines({"machines": {"m": {"host": value}}})
    if isinstance(value, str):
        with pytest.raises(FleetqError, match="is not a host name"):
            ssh.ssh_argv(ssh.SshOptions(reuse=False), ssh.Host("m", value), "true")


def test_ssh_puts_the_destination_after_its_options() -> None:
    argv = ssh.ssh_argv(ssh.SshOptions(reuse=False), ssh.Host("m", "box"), "uptime")
    assert argv[-3:] == ["--", "box", "uptime"]
