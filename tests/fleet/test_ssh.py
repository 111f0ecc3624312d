"""`fleetq sync` / `exec` and the pre-task sync against a real sshd on loopback (see tests/support/sshd.py)."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from fleetq.core.clone import Fleet
from fleetq.core.heartbeat import beat
from fleetq.fleet import remote
from fleetq.git import ssh
from fleetq.handlerapi import FAILED, HandlerContext
from fleetq.run.presync import presync
from support.fleets import Fleets
from support.sshd import SshServer, free_port, sshd  # noqa: F401  (fixture)
from support.workers import WorkerProc, add, set_machines, states_of, tasks, wait_for

GENERIC = ["agent_run", "run_script", "git_pull", "npm_build", "test_run", "lint"]


@pytest.fixture
def fleet(fleets: Fleets, sshd: SshServer):  # noqa: F811
    set_machines(
        fleets.first,
        {
            "alpha": {"capabilities": GENERIC, "host": sshd.alias("fleet-alpha")},
            "b": {"capabilities": GENERIC, "host": sshd.alias("fleet-b")},
            "down": {"capabilities": GENERIC, "host": sshd.alias("fleet-down", port=free_port())},
        },
    )
    beat(
        fleets.clone("b"),
        {"seq": 1, "slots": 2, "running": [], "load": {"cpu": 5, "memory": 10, "load_pct": 5, "load1": 0.1, "cpus": 4}},
    )
    return fleets.first


def _tree(base: Path) -> Path:
    src = base / "src"
    for rel, text in {
        "a.txt": "alpha",
        "sub/b.txt": "beta",
        "node_modules/x.js": "junk",
        "app.log": "log",
        "__pycache__/c.pyc": "x",
    }.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    return src


def test_argv_building(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    short = Path(tempfile.mkdtemp(prefix="fq-"))  # tmp_path is too long for a unix socket path
    monkeypatch.setenv("FLEETQ_SSH_DIR", str(short / "s"))
    opts = ssh.SshOptions(config_file="/x/cfg", extra=["Compression=yes"])
    argv = ssh.ssh_argv(opts, ssh.Host("m", "user@m.tail", 2222), "uptime")
    assert argv[:5] == ["ssh", "-F", "/x/cfg", "-p", "2222"]
    assert "BatchMode=yes" in argv and "ConnectTimeout=5" in argv and "ControlMaster=no" in argv
    assert (
        f"ControlPath={short / 's'}/%C" in argv and "Compression=yes" in argv and argv[-2:] == ["user@m.tail", "uptime"]
    )
    assert (short / "s").stat().st_mode & 0o777 == 0o700
    shutil.rmtree(short)
    off = ssh.ssh_argv(ssh.SshOptions(reuse=False), ssh.Host(None, "h"), "true")
    assert "ControlPath=none" in off
    rs = ssh.rsync_argv(opts, ssh.Host("m", "m"), "/src/", "m:dst/", excludes=["*.log"], delete=True)
    assert rs[:4] == ["rsync", "-az", "--stats", "--delete"] and rs[4:6] == ["--exclude", "*.log"]
    assert rs[rs.index("-e") + 1].startswith("ssh -F /x/cfg")
    monkeypatch.setenv("FLEETQ_SSH_DIR", "/tmp/" + "x" * 60)  # too long for a socket path: falls back
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    assert len(str(ssh.socket_dir())) <= 48 or str(ssh.socket_dir()).startswith("/tmp/fleetq-ssh-")
    assert ssh.parse_stats(
        "Number of files: 1,234 (reg: 3)\nNumber of regular files transferred: 2\n"
        "Total file size: 9,999 bytes\nTotal bytes sent: 1,500\n"
    ).to_json() == {
        "files_total": 1234,
        "files_sent": 2,
        "bytes_sent": 1500,
        "bytes_received": 0,
        "total_size": 9999,
        "duration": 0.0,
    }
    home = tmp_path / "home"
    assert remote.portable_path(home / "p", home) == "~/p" and remote.portable_path(Path("/opt/x"), home) == "/opt/x"
    assert ssh.remote_form("~/p") == "p" and ssh.remote_form("/opt/x") == "/opt/x"


def test_exec_streams_output_exit_code_and_reuses_the_master(fleet, cli) -> None:
    root = fleet.root
    res = cli("--fleet", root, "exec", "b", "echo", "hello-$((6*7))", "&&", "ls", "-d", "/")
    assert res.code == 0, res.err
    assert "hello-42\n/\n" in res.out
    assert cli("--fleet", root, "exec", "b", "echo oops >&2; exit 7").code == 7
    sockets = list(Path(ssh.socket_dir()).glob("*"))
    assert any(s.is_socket() for s in sockets), "no ControlMaster socket"
    opts, host = remote.ssh_options(None), ssh.Host("b", "fleet-b")
    assert ssh.ensure_master(opts, host) is False  # already running: reused
    # A timeout stops the local ssh (exit 124); as with plain ssh, a command without a tty ends on its own.
    assert cli("--fleet", root, "exec", "--timeout", "0.5", "b", "sleep 1").code == 124
    # This machine runs it here, without SSH.
    res = cli("--fleet", root, "exec", "alpha", "echo", "local:$FLEETQ_SSH_DIR")
    assert res.code == 0 and "local:" in res.out
    res = cli("--fleet", root, "exec", "b", "--", "echo", "hi", "--", "-n")  # only the first "--" is fleetq's
    assert res.code == 0 and res.out.startswith("hi -- -n"), (res.out, res.err)
    assert cli("--fleet", root, "exec", "b", "--").code == 2


def test_unreachable_host_is_named_with_the_next_best(fleet, cli) -> None:
    root = fleet.root
    res = cli("--fleet", root, "exec", "down", "true")
    assert res.code == 3
    assert "down (fleet-down) did not answer over SSH" in res.err and "Connection refused" in res.err
    assert "next best host: b (load score 0.07); add --fallback to use it" in res.err
    res = cli("--fleet", root, "exec", "--fallback", "down", "echo", "ran-on-b")
    assert res.code == 0 and "falling back to b" in res.err and "ran-on-b" in res.out
    assert cli("--fleet", root, "exec", "nosuch", "true").code == 2


def test_sync_mirrors_with_excludes_and_reports(fleet, cli, tmp_path: Path) -> None:
    root, src, dest = fleet.root, _tree(tmp_path), tmp_path / "remote" / "deep" / "copy"
    res = cli("--fleet", root, "sync", "b", src, "--dest", dest, "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["machine"] == "b" and doc["files_sent"] == 2 and doc["bytes_sent"] > 0 and doc["dest"] == str(dest)
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == ["a.txt", "sub/b.txt"]
    assert json.loads(cli("--fleet", root, "sync", "b", src, "--dest", dest, "--json").out)["files_sent"] == 0
    (src / "a.txt").unlink()
    text = cli("--fleet", root, "sync", "b", src, "--dest", dest).out
    assert "✓ synced" in text and "0 of" in text and "excluded: node_modules" in text
    assert (dest / "a.txt").exists()  # no --delete by default
    cli("--fleet", root, "sync", "b", src, "--dest", dest, "--delete")
    assert not (dest / "a.txt").exists()
    res = cli("--fleet", root, "sync", "down", src, "--dest", dest)
    assert res.code == 3 and "next best host: b" in res.err
    res = cli("--fleet", root, "sync", "--fallback", "down", src, "--dest", tmp_path / "other")
    assert res.code == 0 and (tmp_path / "other" / "sub" / "b.txt").read_text() == "beta"
    assert cli("--fleet", root, "sync", "alpha", src).code == 2  # this machine


def _ctx(tmp_path: Path, payload: dict, machine: str = "c") -> HandlerContext:
    return HandlerContext(
        task_id="t1",
        task={},
        payload=payload,
        machine=machine,
        attempt=1,
        fleet_dir=tmp_path,
        log_path=tmp_path / "t1.log",
        env={"HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"},
        agents={},
        cancel=threading.Event(),
        timeout=None,
    )


def test_assign_sync_and_presync_pull_the_code_before_the_run(fleet, cli, tmp_path: Path, sshd: SshServer) -> None:  # noqa: F811
    src = _tree(tmp_path)
    doc = json.loads(
        cli(
            "--fleet",
            fleet.root,
            "assign",
            "build it",
            "--machine",
            "b",
            "--sync",
            src,
            "--set",
            "script=make",
            "--json",
        ).out
    )
    sync = doc["payload"]["sync"]
    assert sync["from"] == "fleet-alpha" and sync["machine"] == "alpha" and sync["path"] == str(src)
    assert doc["payload"]["cwd"] == str(src) and "node_modules" in sync["excludes"]

    dest = tmp_path / "pulled"
    assert presync(_ctx(tmp_path, {"sync": {**sync, "dest": str(dest)}})) is None
    assert (dest / "sub" / "b.txt").read_text() == "beta" and not (dest / "node_modules").exists()
    assert "# synced alpha (fleet-alpha):" in (tmp_path / "t1.log").read_text()
    assert presync(_ctx(tmp_path, {"sync": sync}, machine="alpha")) is None  # submitted here: nothing to do
    assert presync(_ctx(tmp_path, {})) is None
    bad = presync(_ctx(tmp_path, {"sync": {**sync, "from": "fleet-down", "dest": str(dest)}}))
    assert bad is not None and bad.outcome == FAILED and "did not answer over SSH" in bad.error
    assert presync(_ctx(tmp_path, {"sync": {"path": 1}})).outcome == "needs_human"


def test_a_failed_sync_names_the_cause_not_rsyncs_last_line(fleet, cli, tmp_path: Path) -> None:
    """rsync ends with `rsync error: ... (code 12)` or `Broken pipe`; the one line says what went wrong."""
    src = _tree(tmp_path)
    res = cli("--fleet", fleet.root, "sync", "b", src, "--dest", "/proc/fleetq-nowhere/x")
    assert res.code == 3 and res.err.count("\n") == 1, res.err
    assert "rsync to b (fleet-b) failed" in res.err and "mkdir: cannot create directory" in res.err, res.err
    assert "rsync error" not in res.err and "connection unexpectedly closed" not in res.err
    gone = {"path": str(tmp_path / "gone"), "from": "fleet-alpha", "machine": "alpha", "dest": str(tmp_path / "here")}
    bad = presync(_ctx(tmp_path, {"sync": gone}))
    assert bad is not None and bad.outcome == FAILED
    assert "No such file or directory" in bad.error and "change_dir" in bad.error, bad.error
    assert "Broken pipe" not in bad.error and "rsync error" not in bad.error


def test_worker_pulls_the_code_before_it_runs(fleet, fleets: Fleets, tmp_path: Path) -> None:
    src, dest = _tree(tmp_path), tmp_path / "checkout-on-b"
    add(
        fleet,
        tasks(
            1,
            "syn",
            target="b",
            payload={
                "script": "cat a.txt sub/b.txt; ls -A",
                "cwd": str(dest),
                "sync": {
                    "path": str(src),
                    "from": "fleet-alpha",
                    "machine": "alpha",
                    "dest": str(dest),
                    "excludes": ["*.log"],
                },
            },
        ),
    )
    w = WorkerProc(Fleet(fleets.tmp / "clone-b", "b"))
    try:
        wait_for(lambda: states_of(fleet).get("syn000") in ("done", "failed", "needs_human"), 60, what="the synced run")
    finally:
        w.stop()
    t = fleet.snapshot().get("syn000")
    assert t.state == "done", (t.result, w.log)
    assert "alphabeta" in t.result["stdout_tail"] and "app.log" not in t.result["stdout_tail"]


@pytest.fixture
def accepted(sshd: SshServer) -> Callable[[], int]:  # noqa: F811
    """The sshd restarted to log at INFO: a callable counting the connections it has accepted so far."""
    cfg = sshd.dir / "sshd_config"
    cfg.write_text(cfg.read_text().replace("LogLevel ERROR", "LogLevel INFO"))
    sshd.stop_daemon()
    sshd.start_daemon()
    log = sshd.dir / "sshd.log"
    return lambda: len(re.findall(r"^Accepted publickey for ", log.read_text(), re.M))


def test_commands_ride_one_master_connection(accepted: Callable[[], int], fleet) -> None:
    """The mechanism, not a stopwatch: once the master runs, commands open no new connection to the sshd
    (all of them arrive over the same TCP connection); without reuse each one logs in anew."""
    host = ssh.Host("b", "fleet-b")
    opts = remote.ssh_options(None)
    assert opts.reuse
    remote.run(opts, host, "true", echo=False)  # starts the master
    start = accepted()
    assert start >= 1 and ssh.ensure_master(opts, host) is False
    ports = set()
    for _ in range(3):
        res = remote.run(opts, host, 'echo "$SSH_CONNECTION"', echo=False, capture=True)
        assert res.exit_code == 0
        ports.add(res.stdout.split()[1])  # the client's port of the connection that carried the session
    assert accepted() == start and len(ports) == 1
    off = replace(opts, reuse=False)
    for _ in range(3):
        assert remote.run(off, host, "true", echo=False).exit_code == 0
    assert accepted() == start + 3  # the counter sees connections: one login per command
