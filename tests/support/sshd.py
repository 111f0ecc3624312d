"""A real sshd for tests: loopback port, keys made here, a private sshd_config and ssh_config.

Nothing touches the user's ~/.ssh: the client gets `-F <config>` through $FLEETQ_SSH_CONFIG,
with its own identity and known_hosts; control sockets go to a short private directory.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)


def require_tools() -> None:
    missing = [
        t
        for t, p in (
            ("sshd", SSHD),
            ("ssh", shutil.which("ssh")),
            ("ssh-keygen", shutil.which("ssh-keygen")),
            ("rsync", shutil.which("rsync")),
        )
        if not p
    ]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install openssh-server openssh-client rsync)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SshServer:
    """sshd -D on 127.0.0.1:<port>; `alias(name)` gives ssh_config Host entries that reach it.

    ``address``/``port``/``wrap`` run it elsewhere: tests/support/netbed.py starts one inside a network
    namespace (``wrap=["ip", "netns", "exec", NS]``, its address there). ``stop_daemon()`` and
    ``start_daemon()`` take it down and up again (keys and configs kept), sessions included.
    """

    def __init__(
        self,
        base: Path,
        *,
        address: str = "127.0.0.1",
        port: int | None = None,
        wrap: list[str] | None = None,
        name: str = "sshd",
    ) -> None:
        require_tools()
        self.dir = base / name
        self.dir.mkdir()
        self.address = address
        self.wrap = list(wrap or [])
        self.port = port or free_port()
        self.user = getpass.getuser()
        for key in ("host_key", "user_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.dir / key)], check=True)
        (self.dir / "authorized_keys").write_text((self.dir / "user_key.pub").read_text())
        host_pub = (self.dir / "host_key.pub").read_text().split()[:2]
        (self.dir / "known_hosts").write_text(f"[{address}]:{self.port} {' '.join(host_pub)}\n")
        (self.dir / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress {address}\nHostKey {self.dir / 'host_key'}\n"
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
            f"PidFile {self.dir / 'sshd.pid'}\nLogLevel ERROR\nMaxStartups 50\nMaxSessions 50\n"
            # bash sources ~/.bashrc for commands run by sshd only at shell level 1: skip the test user's
            # start-up files (e.g. a pyenv rehash under a lock), which would time every session, not fleetq
            "SetEnv SHLVL=5\n"
        )
        self.config = self.dir / "ssh_config"
        self.config.write_text("")
        if os.getuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
        self.log = open(self.dir / "sshd.log", "a")
        self.proc: subprocess.Popen | None = None
        self.start_daemon()
        self.sockets = Path(tempfile.mkdtemp(prefix="fq-ssh-"))  # short: unix socket paths are limited

    def start_daemon(self) -> None:
        self.proc = subprocess.Popen(
            [*self.wrap, SSHD, "-D", "-e", "-f", str(self.dir / "sshd_config")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    def stop_daemon(self) -> None:
        """The listener and every session it forked (a stopped server drops live connections too)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        import psutil

        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            kids = []
        # SIGTERM, not SIGKILL: a login shell killed mid-way can leave a lock of the user's shell
        # start-up files behind (pyenv's rehash lock stalls every later login for a minute).
        self.proc.terminate()
        for k in kids:
            try:
                k.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(kids, timeout=3)
        for k in alive:
            k.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def _listening(self) -> bool:
        if self.wrap:  # inside a namespace: probe from there
            return (
                subprocess.run(
                    [*self.wrap, "bash", "-c", f"exec 3<>/dev/tcp/{self.address}/{self.port}"], capture_output=True
                ).returncode
                == 0
            )
        try:
            with socket.create_connection((self.address, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def _wait_ready(self) -> None:
        end = time.time() + 10
        while time.time() < end:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.dir / 'sshd.log').read_text()}")
            if self._listening():
                return
            time.sleep(0.05)
        raise RuntimeError("sshd did not start listening")

    def alias(self, name: str, *, port: int | None = None) -> str:
        """Add `Host <name>` reaching this sshd (or a dead port) to the client config; returns the name."""
        with open(self.config, "a") as f:
            f.write(
                f"Host {name}\n  HostName {self.address}\n  Port {port or self.port}\n  User {self.user}\n"
                f"  IdentityFile {self.dir / 'user_key'}\n  IdentitiesOnly yes\n"
                f"  UserKnownHostsFile {self.dir / 'known_hosts'}\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n"
            )
        return name

    def env(self) -> dict[str, str]:
        return {"FLEETQ_SSH_CONFIG": str(self.config), "FLEETQ_SSH_DIR": str(self.sockets)}

    def stop(self) -> None:
        for sock in self.sockets.glob("*"):
            if sock.is_socket():
                subprocess.run(["ssh", "-S", str(sock), "-O", "exit", "x"], capture_output=True)
        self.stop_daemon()
        self.log.close()
        shutil.rmtree(self.sockets, ignore_errors=True)


@pytest.fixture
def sshd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    server = SshServer(tmp_path)
    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    try:
        yield server
    finally:
        server.stop()
