"""A test bed of hosts on this machine: network namespaces, a switch, an SSH fleet remote, workers.

Layout (root, with ``ip netns``)::

    fq<pid>-sw   the switch: a bridge br0 and one veth port v<i> per host (nothing in the root namespace)
    fq<pid>-h0   198.18.<run>.1   sshd serving the fleet's bare remote (``fleetq init --bare``, hook live)
    fq<pid>-h1.. 198.18.<run>.<i+1>   one ``fleetq work`` each: own HOME, git config, identity, clone,
                                  machine name h<i>, ssh_config and control-socket dir

198.18.0.0/15 is set aside for network benchmarks; the addresses exist only inside these
namespaces, so nothing is ever sent anywhere else. ``cut(i)`` pulls host i's cable at the switch
(its switch port goes down: packets are silently dropped, as on a dead link, so connections time
out rather than fail fast); ``heal(i)`` plugs it back. ``stop_sshd()``/``start_sshd()`` take the
remote's sshd down and up, live sessions included.

Without CAP_NET_ADMIN (not root) the bed falls back to one sshd per host on loopback ports, all
serving the same remote; ``cut(i)`` then stops that host's sshd and closes its control master
(``mode_note`` says so, and the pytest fixture prints it). A driver (the test, the chaos run) keeps
a control clone in this process that reaches the bare repo by path.

By hand::

    python tests/support/netbed.py up --hosts 4     # make it, print how to get in, Ctrl-C tears down
    python tests/support/netbed.py down             # remove leftovers of dead runs
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: the support package
from support.sshd import SshServer, require_tools  # noqa: E402

PREFIX_RE = re.compile(r"^fq(\d+)-(sw|h\d+|probe)$")
SSH_PORT = 2222
REMOTE_ALIAS = "fleet-remote"
WORKER_FLAGS = ["--poll", "0.5", "--heartbeat", "1", "--lease", "10"]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def netns_available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if not shutil.which("ip"):
        return "the ip command is missing (apt-get install iproute2)"
    probe = f"fq{os.getpid()}-probe"
    res = _ip("netns", "add", probe, check=False)
    if res.returncode != 0:
        return res.stderr.strip() or "ip netns add failed"
    _ip("netns", "del", probe, check=False)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _kill_netns(name: str) -> None:
    """Every process in a namespace, then the namespace."""
    pids = _ip("netns", "pids", name, check=False).stdout.split()
    for p in pids:
        try:
            os.kill(int(p), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    _ip("netns", "del", name, check=False)


def cleanup_stale(*, everything: bool = False) -> list[str]:
    """Namespaces left by runs whose process is gone (all of ours with ``everything``)."""
    gone = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = PREFIX_RE.match(name)
        if m and (everything or not _alive(int(m.group(1)))):
            _kill_netns(name)
            gone.append(name)
    return gone


@dataclass
class Host:
    index: int
    name: str  # machine name (h<i>)
    netns: str | None
    address: str
    dir: Path
    env: dict[str, str]
    clone: Path
    server: SshServer | None = None  # the sshd this host reaches the remote through
    url: str = ""  # the fleet remote as this host names it (ssh://...)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    kills: list[float] = field(default_factory=list)  # uptime clock of each SIGKILL

    def wrap(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns] if self.netns else []


def uptime() -> float:
    """The clock task scripts stamp with (/proc/uptime): one clock for every namespace on this machine."""
    return float(Path("/proc/uptime").read_text().split()[0])


class NetBed:
    """N hosts: h0 holds the remote behind sshd, h1..hN run workers (see the module docstring)."""

    def __init__(self, base: Path, *, force_loopback: bool = False) -> None:
        self.base = base
        self.base.mkdir(parents=True, exist_ok=True)
        self.pid = os.getpid()
        self.prefix = f"fq{self.pid}"
        self.run_octet = self.pid % 250 + 1
        why = "forced for this run" if force_loopback else netns_available()
        self.netns = why is None
        self.mode_note = "netbed: network namespaces " + (
            f"{self.prefix}-h0.. on 198.18.{self.run_octet}.0/24"
            if self.netns
            else f"unavailable ({why}); using loopback sshd ports"
        )
        self.short = Path(tempfile.mkdtemp(prefix="fqnb"))  # control sockets need short paths
        self.bare = self.base / "remote.git"
        self.hosts: list[Host] = []
        self.servers: list[SshServer] = []
        self.namespaces: list[str] = []  # every namespace this bed made, for teardown
        self.worker_flags = list(WORKER_FLAGS)
        self.extra_env: dict[str, str] = {}

    # -- building --
    def ns(self, i: int | str) -> str:
        return f"{self.prefix}-{i if isinstance(i, str) else f'h{i}'}"

    def address(self, i: int) -> str:
        return f"198.18.{self.run_octet}.{i + 1}" if self.netns else "127.0.0.1"

    def create(self, n_hosts: int) -> NetBed:
        """h0 (the remote) and n_hosts - 1 worker hosts, each with a clone; the remote holds a new fleet."""
        from fleetq.trust.hooks import prepare_bare

        require_tools()  # a missing sshd skips the test before anything is made, not halfway through
        cleanup_stale()
        if self.netns:
            self._make_network(n_hosts)
        prepare_bare(self.bare)
        if self.netns:
            self.servers.append(
                SshServer(
                    self.base,
                    address=self.address(0),
                    port=SSH_PORT,
                    wrap=["ip", "netns", "exec", self.ns(0)],
                    name="sshd-h0",
                )
            )
        for i in range(1, n_hosts):
            self.hosts.append(self._make_host(i))
        self._init_fleet()
        return self

    def _add_netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self.namespaces.append(name)  # once made: teardown removes what this bed made, and only that

    def _make_network(self, n: int) -> None:
        sw = self.ns("sw")
        self._add_netns(sw)
        _ip("-n", sw, "link", "add", "br0", "type", "bridge")
        _ip("-n", sw, "link", "set", "br0", "up")
        for i in range(n):
            h = self.ns(i)
            self._add_netns(h)
            _ip("-n", h, "link", "set", "lo", "up")
            _ip("-n", sw, "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0", "netns", h)
            _ip("-n", sw, "link", "set", f"v{i}", "master", "br0", "up")
            _ip("-n", h, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            _ip("-n", h, "link", "set", "eth0", "up")

    def _make_host(self, i: int) -> Host:
        d = self.base / f"h{i}"
        home = d / "home"
        home.mkdir(parents=True)
        (d / "gitconfig").write_text("[init]\n\tdefaultBranch = main\n")
        if self.netns:
            server = self.servers[0]
        else:  # one sshd per host, so one host can be cut off alone
            server = SshServer(self.base, name=f"sshd-h{i}")
            self.servers.append(server)
        server_alias = server.alias(f"{REMOTE_ALIAS}-h{i}")
        sockets = self.short / f"h{i}"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "USER": os.environ.get("USER", "root"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local/share"),
            "XDG_STATE_HOME": str(home / ".local/state"),
            "GIT_CONFIG_GLOBAL": str(d / "gitconfig"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "LANG": "C.UTF-8",
            "GIT_AUTHOR_NAME": f"h{i}",
            "GIT_AUTHOR_EMAIL": f"h{i}@netbed.invalid",
            "GIT_COMMITTER_NAME": f"h{i}",
            "GIT_COMMITTER_EMAIL": f"h{i}@netbed.invalid",
            "FLEETQ_SSH_CONFIG": str(server.config),
            "FLEETQ_SSH_DIR": str(sockets),
            "FLEETQ_MACHINE": f"h{i}",
            "CHAOS_LOG": str(d / "runs.log"),
            "PYTHONUNBUFFERED": "1",
        }
        return Host(
            i,
            f"h{i}",
            self.ns(i) if self.netns else None,
            self.address(i),
            d,
            env,
            d / "clone",
            server,
            url=f"ssh://{server_alias}{self.bare}",
        )

    def _init_fleet(self) -> None:
        """The control clone (by path, in this process) makes the fleet; each host joins over ssh."""
        from fleetq.fleet import initfleet

        self.control, _ = initfleet.init(self.base / "control", str(self.bare), machine="control")
        for h in self.hosts:
            res = self.fleetq(h, "init", str(h.clone), "--remote", h.url, timeout=120)  # type: ignore[attr-defined]
            if res.returncode != 0:
                raise RuntimeError(f"h{h.index} could not join over ssh: {res.stdout}{res.stderr}")

    # -- running things on a host --
    def command(self, h: Host, *args: str) -> list[str]:
        return [
            *h.wrap(),
            "env",
            "-i",
            *(f"{k}={v}" for k, v in {**h.env, **self.extra_env}.items()),
            sys.executable,
            "-m",
            "fleetq",
            *args,
        ]

    def fleetq(self, h: Host, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(h, *args), capture_output=True, text=True, timeout=timeout)

    def start_worker(self, i: int, *flags: str) -> Host:
        h = self.host(i)
        if h.proc is not None and h.proc.poll() is None:
            return h
        h.log_path = h.dir / "worker.log"
        log = open(h.log_path, "a")
        log.write(f"### netbed: worker started at uptime {uptime():.2f}\n")
        log.flush()
        h.proc = subprocess.Popen(
            self.command(h, "--fleet", str(h.clone), "work", *self.worker_flags, *flags),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return h

    def kill_worker(self, i: int, sig: int = signal.SIGKILL) -> None:
        h = self.host(i)
        if h.proc is None or h.proc.poll() is not None:
            return
        if sig == signal.SIGKILL:
            h.kills.append(uptime())
        h.proc.send_signal(sig)
        if sig == signal.SIGKILL:
            h.proc.wait(10)

    def stop_worker(self, i: int, timeout: float = 30) -> int | None:
        h = self.host(i)
        if h.proc is None:
            return None
        if h.proc.poll() is None:
            h.proc.send_signal(signal.SIGTERM)
            try:
                h.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_worker(i)
        return h.proc.returncode

    def host(self, i: int) -> Host:
        return self.hosts[i - 1]

    # -- failures --
    def cut(self, i: int) -> None:
        """Pull host i's cable (fallback: stop its sshd and drop its control master)."""
        if self.netns:
            _ip("-n", self.ns("sw"), "link", "set", f"v{i}", "down")
        else:
            self.host(i).server.stop_daemon()  # type: ignore[union-attr]
            self._drop_masters(self.host(i))

    def heal(self, i: int) -> None:
        if self.netns:
            _ip("-n", self.ns("sw"), "link", "set", f"v{i}", "up")
        else:
            self.host(i).server.start_daemon()  # type: ignore[union-attr]

    def stop_sshd(self) -> None:
        for s in self.servers:
            s.stop_daemon()

    def start_sshd(self) -> None:
        for s in self.servers:
            s.start_daemon()

    def _drop_masters(self, h: Host) -> None:
        for sock in Path(h.env["FLEETQ_SSH_DIR"]).glob("*"):
            if sock.is_socket():
                subprocess.run(["ssh", "-S", str(sock), "-O", "exit", "x"], capture_output=True)

    # -- the end --
    def teardown(self) -> None:
        """Stop what this bed started and remove what it made (a half-made bed included); safe to call twice.

        The namespaces go whatever fails before them: a leaked one outlives the test run."""
        try:
            for h in self.hosts:
                _quietly(self._stop_host, h)
            for s in self.servers:
                _quietly(s.stop)
        finally:
            while self.namespaces:
                _kill_netns(self.namespaces.pop())
            shutil.rmtree(self.short, ignore_errors=True)

    def _stop_host(self, h: Host) -> None:
        if h.proc is not None and h.proc.poll() is None:
            try:
                os.killpg(h.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            h.proc.wait(10)
        self._drop_masters(h)

    def describe(self) -> list[str]:
        lines = [self.mode_note, f"remote: {self.bare} (served by sshd on {self.address(0)}:{self.servers[0].port})"]
        for h in self.hosts:
            where = f"ip netns exec {h.netns} " if h.netns else ""
            lines.append(f"h{h.index}: {h.address}  clone {h.clone}  url {h.url}")
            env = " ".join(f"{k}={v}" for k, v in h.env.items() if k.startswith(("HOME", "FLEETQ", "GIT_CONFIG_G")))
            lines.append(f"    {where}env -i {env} {sys.executable} -m fleetq --fleet {h.clone} status")
        return lines


def _quietly(step: Any, *args: Any) -> None:
    try:
        step(*args)
    except Exception:  # noqa: BLE001 - tear down the rest anyway
        pass


def isolate_process(base: Path) -> None:
    """A private HOME and git identity for this (driver) process, as the tests' conftest gives them."""
    home = base / "home"
    home.mkdir(parents=True, exist_ok=True)
    (base / "gitconfig").write_text("[init]\n\tdefaultBranch = main\n")
    os.environ.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local/share"),
            "XDG_STATE_HOME": str(home / ".local/state"),
            "GIT_CONFIG_GLOBAL": str(base / "gitconfig"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "netbed",
            "GIT_AUTHOR_EMAIL": "netbed@example.invalid",
            "GIT_COMMITTER_NAME": "netbed",
            "GIT_COMMITTER_EMAIL": "netbed@example.invalid",
        }
    )
    for k in ("FLEETQ_FLEET", "FLEETQ_MACHINE"):
        os.environ.pop(k, None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python tests/support/netbed.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="make a bed and keep it until Ctrl-C")
    up.add_argument("--hosts", type=int, default=4, help="hosts including h0, the remote (default 4)")
    up.add_argument("--workers", action="store_true", help="start a worker on each host")
    up.add_argument("--loopback", action="store_true", help="use the loopback fallback even as root")
    sub.add_parser("down", help="remove the namespaces of dead runs")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE.parents[1]))  # the source tree
    if args.cmd == "down":
        gone = cleanup_stale(everything=False)
        print(f"removed {len(gone)} namespace(s): {' '.join(gone) or '-'}")
        return 0
    if args.hosts < 2:
        ap.error("--hosts must be at least 2 (h0 holds the remote)")
    base = Path(tempfile.mkdtemp(prefix="netbed-"))
    isolate_process(base)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # kill PID tears down too, like Ctrl-C
    bed = NetBed(base, force_loopback=args.loopback)
    try:
        bed.create(args.hosts)
        if args.workers:
            for h in bed.hosts:
                bed.start_worker(h.index)
        print("\n".join(bed.describe()))
        print(f"control clone (this machine, by path): {bed.base / 'control'}; Ctrl-C tears everything down")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        bed.teardown()
        shutil.rmtree(base, ignore_errors=True)
        print("netbed: torn down")
    return 0


def bed_fixture(request: Any, tmp_path: Path, n_hosts: int, *, force_loopback: bool = False) -> NetBed:
    """Shared by the tests: a bed with its mode printed in the test output and torn down always."""
    bed = NetBed(tmp_path / "bed", force_loopback=force_loopback)
    request.addfinalizer(bed.teardown)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"\n{bed.mode_note}")
    if not bed.netns:
        import warnings

        warnings.warn(bed.mode_note, stacklevel=2)
    return bed.create(n_hosts)


if __name__ == "__main__":
    sys.exit(main())
