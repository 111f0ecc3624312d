"""SSH and rsync transport primitives: hosts, options, argv building, the reused ControlMaster.

The ground floor (docs/design.md, "Layout"): of fleetq it imports only fleetq.errors, so fleetq/git/link.py
and fleetq/git/repo.py use it at module level without a cycle. Nothing here reads the fleet's config or runs
supervised processes (that is fleetq/fleet/remote.py: ``ssh_options(cfg)``,
``host_for(cfg, name)``, exec and sync; the pre-task sync is fleetq/run/presync.py;
git's own connections are fleetq/git/link.py).

Hosts come from config/machines.yaml (``host:`` is the SSH target, e.g. a
Tailscale name or ``user@host``; ``port:`` optional; a machine without ``host``
is reached by its name). A destination is checked to be a host name before any
ssh or rsync is built for it (``parse_target``: never an option such as
``-oProxyCommand=…``, no spaces or shell characters), and ``--`` comes before it
on every ssh command line. Every connection runs with ``BatchMode=yes`` (keys
only: a prompt would hang a worker) and a ``ConnectTimeout``, and is reused
through one ControlMaster per host whose socket lives in a fleetq-owned
directory (``$FLEETQ_SSH_DIR``, else ``$XDG_RUNTIME_DIR/fleetq-ssh``, else
``$XDG_STATE_HOME/fleetq/ssh``; a short ``/tmp/fleetq-ssh-<uid>`` when those
paths are too long for a unix socket). The master is started explicitly
(``ssh -fN`` with its stderr in a file, never a pipe, so nothing waits on a
pipe the background master holds open) under a file lock, and torn down by
``ControlPersist`` after it idles.

``$FLEETQ_SSH_CONFIG`` names an ssh_config file passed with ``-F`` (tests and
unusual setups); config/fleet.yaml may set ``ssh_options`` (extra ``-o`` values),
``ssh_connect_timeout``, ``ssh_persist`` (seconds) and ``ssh_reuse`` (false turns
the ControlMaster off; ``FLEETQ_SSH_REUSE=0`` in the environment does the same, and is
the switch for git's own connections, which run before any config is read).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from fleetq.errors import FleetqError, RemoteError, UsageError, last_line

ENV_SSH_CONFIG = "FLEETQ_SSH_CONFIG"
ENV_SSH_DIR = "FLEETQ_SSH_DIR"
ENV_SSH_REUSE = "FLEETQ_SSH_REUSE"
DEFAULT_EXCLUDES = ["node_modules", ".git", "dist", "build", "*.log", "__pycache__", ".venv"]
CONNECT_TIMEOUT = 5
CONTROL_TIMEOUT = 10  # seconds for `ssh -O check|exit`, which only talk to the local master's socket
PERSIST = 60
# A unix socket path is at most 104-108 bytes; ssh adds "/" + 40 hex (%C) + a 17-character temp suffix.
MAX_SOCKET_DIR = 48
SSH_FAILED = 255

NO_ANSWER = re.compile(
    r"ssh: connect to host|could not resolve hostname|connection (refused|timed out|closed|reset)|"
    r"no route to host|network is unreachable|operation timed out|kex_exchange_identification|"
    r"banner exchange|name or service not known|temporary failure in name resolution",
    re.I,
)
REFUSED = re.compile(r"permission denied|host key verification failed|too many authentication failures", re.I)


class HostDown(RemoteError):
    """A machine that did not answer over SSH (or refused the login)."""

    def __init__(self, host: Host, detail: str, *, refused: bool = False) -> None:
        self.host = host
        self.detail = detail
        self.refused = refused
        what = "refused the SSH login" if refused else "did not answer over SSH"
        super().__init__(f"{host.label} {what}: {detail}")


# ---------------------------------------------------------------- hosts and options


@dataclass(frozen=True)
class Host:
    machine: str | None  # the declared machine name (None: a raw target)
    target: str  # ssh destination: host, user@host, or an ssh_config alias
    port: int | None = None

    @property
    def label(self) -> str:
        if self.machine and self.machine != self.target:
            return f"{self.machine} ({self.target})"
        return self.target


@dataclass
class SshOptions:
    """How to run ssh. ``from_env()`` reads only the environment; fleetq/fleet/remote.py ``ssh_options(cfg)``
    adds config/fleet.yaml's settings."""

    config_file: str | None = None
    connect_timeout: int = CONNECT_TIMEOUT
    persist: int = PERSIST
    reuse: bool = True
    extra: list[str] = field(default_factory=list)  # more -o options
    control_path: str | None = None  # a literal socket path instead of <socket_dir>/%C
    alive_interval: int = 15  # ServerAliveInterval: a dead peer is dropped after interval x 3

    @classmethod
    def from_env(cls) -> SshOptions:
        """The options when no fleet config applies: ``$FLEETQ_SSH_CONFIG`` and ``$FLEETQ_SSH_REUSE``."""
        return cls(config_file=os.environ.get(ENV_SSH_CONFIG) or None, reuse=reuse_from_env())


def reuse_from_env() -> bool:
    """False when ``$FLEETQ_SSH_REUSE`` turns connection reuse off (0, no, false, off)."""
    return os.environ.get(ENV_SSH_REUSE, "").strip().lower() not in ("0", "no", "false", "off")


def socket_dir() -> Path:
    """The fleetq-owned directory for ControlMaster sockets (created 0700, checked to be ours)."""
    candidates: list[Path] = []
    if os.environ.get(ENV_SSH_DIR):
        candidates.append(Path(os.environ[ENV_SSH_DIR]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        candidates.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "fleetq-ssh")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    candidates.append(Path(state) / "fleetq" / "ssh")
    candidates.append(Path(tempfile.gettempdir()) / f"fleetq-ssh-{os.getuid()}")
    for d in candidates:
        if len(str(d)) <= MAX_SOCKET_DIR or d == candidates[-1]:
            return _private_dir(d)
    raise AssertionError("unreachable")


def _private_dir(d: Path) -> Path:
    try:
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = d.stat()
    except OSError as e:
        raise FleetqError(f"cannot create the SSH socket directory {d}: {e.strerror}") from None
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise FleetqError(f"{d} must be a directory owned by you with mode 0700 (it holds SSH control sockets)")
    return d


# ---------------------------------------------------------------- destinations

_USER = r"[A-Za-z0-9_][A-Za-z0-9_.+-]*"
_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"  # a host name, an IPv4 address or an ssh_config alias
_IPV6 = r"[0-9A-Fa-f]*:[0-9A-Fa-f]*:[0-9A-Fa-f:.]*(?:%[A-Za-z0-9_.-]+)?"
_TARGET = re.compile(
    rf"(?P<user>{_USER}@)?(?:\[(?P<v6b>{_IPV6})\](?::(?P<bport>\d{{1,5}}))?|(?P<v6>{_IPV6})"
    rf"|(?P<name>{_NAME})(?::(?P<port>\d{{1,5}}))?)"
)
TARGET_FORMS = "[user@]host, [user@]ipv6 or [user@][ipv6], optionally :port"


def parse_target(value: object) -> tuple[str, int | None]:
    """A ``host:`` value -> (ssh destination, the port a ``:port`` suffix names); UsageError when it is not
    a host name. A value starting with ``-`` would reach ssh as an option (``-oProxyCommand=…`` runs a
    local command), and spaces or shell characters have no place in a host name: both are refused."""
    text = value if isinstance(value, str) else ""
    m = _TARGET.fullmatch(text) if len(text) <= 255 else None
    port = int(m.group("port") or m.group("bport") or 0) if m else 0
    if m is None or port > 65535:
        raise UsageError(f"{value!r} is not a host name ({TARGET_FORMS})")
    host = m.group("v6b") or m.group("v6") or m.group("name")
    return f"{m.group('user') or ''}{host}", port or None


def destination(host: Host) -> str:
    """``host.target`` once checked to be a bare destination (no port, no brackets): what ssh may receive."""
    if parse_target(host.target) != (host.target, None):
        raise UsageError(f"{host.target!r} is not a host name ({TARGET_FORMS})")
    return host.target


# ---------------------------------------------------------------- argv


def base_argv(opts: SshOptions, host: Host, *, batch: bool = True, master: str = "no") -> list[str]:
    """``ssh`` and its options, without the destination (which is checked here: every ssh and rsync
    command line is built on this, so none is made for a destination that is not a host name)."""
    destination(host)
    argv = ["ssh"]
    if opts.config_file:
        argv += ["-F", opts.config_file]
    if host.port:
        argv += ["-p", str(host.port)]
    if batch:
        argv += ["-o", "BatchMode=yes"]
    argv += ["-o", f"ConnectTimeout={opts.connect_timeout}", "-o", f"ServerAliveInterval={opts.alive_interval}"]
    argv += ["-o", "ServerAliveCountMax=3"]
    if opts.reuse:
        argv += ["-o", f"ControlPath={opts.control_path or f'{socket_dir()}/%C'}", "-o", f"ControlMaster={master}"]
        if master != "no":
            argv += ["-o", f"ControlPersist={opts.persist}"]
    else:
        argv += ["-o", "ControlPath=none", "-o", "ControlMaster=no"]
    for o in opts.extra:
        argv += ["-o", o]
    return argv


def ssh_argv(opts: SshOptions, host: Host, command: str | None, *, tty: bool = False) -> list[str]:
    """A command run on ``host`` through its master (None: an interactive login)."""
    if command is None:
        return [*base_argv(opts, host, batch=False, master="auto"), "--", host.target]
    return [*base_argv(opts, host), *(["-tt"] if tty else []), "--", host.target, command]


def rsync_argv(
    opts: SshOptions,
    host: Host,
    src: str,
    dest: str,
    *,
    excludes: list[str],
    delete: bool,
    rsync_path: str | None = None,
) -> list[str]:
    argv = ["rsync", "-az", "--stats"]
    if delete:
        argv.append("--delete")
    for pattern in excludes:
        argv += ["--exclude", pattern]
    argv += ["-e", shlex.join(base_argv(opts, host))]
    if rsync_path:
        argv += ["--rsync-path", rsync_path]
    return [*argv, src, dest]


def remote_form(path: str) -> str:
    """``~/rel`` -> ``rel`` (ssh starts in the remote home); ``~`` -> ``.``; absolute paths as they are."""
    if path == "~":
        return "."
    return path[2:] if path.startswith("~/") else path


# ---------------------------------------------------------------- rsync's report


@dataclass
class SyncStats:
    files_total: int = 0
    files_sent: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    total_size: int = 0
    duration: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__, duration=round(self.duration, 3))


_STATS = {
    "files_total": re.compile(r"^Number of files: ([\d,.']+)", re.M),
    "files_sent": re.compile(r"^Number of (?:regular )?files transferred: ([\d,.']+)", re.M),
    "bytes_sent": re.compile(r"^Total bytes sent: ([\d,.']+)", re.M),
    "bytes_received": re.compile(r"^Total bytes received: ([\d,.']+)", re.M),
    "total_size": re.compile(r"^Total file size: ([\d,.']+)", re.M),
}


def parse_stats(text: str) -> SyncStats:
    """rsync ``--stats`` output (3.x and the 2.6 that macOS ships) -> counts."""
    s = SyncStats()
    for key, rx in _STATS.items():
        m = rx.search(text)
        if m:
            setattr(s, key, int(re.sub(r"[,.']", "", m.group(1)) or 0))
    return s


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


# ---------------------------------------------------------------- connections


def diagnose(host: Host, code: int | None, stderr: str, *, silent_is_down: bool = True) -> HostDown | None:
    """ssh's own failure (exit 255 and its message), as a HostDown; None when the remote command failed.

    ``silent_is_down``: a bare 255 with nothing on stderr counts as ssh failing (not when a live master
    just answered: then it is the remote command's own exit code).
    """
    if code != SSH_FAILED:
        return None
    line = last_line(stderr) or "ssh exited with 255"
    if REFUSED.search(stderr):
        return HostDown(host, line, refused=True)
    if NO_ANSWER.search(stderr) or (silent_is_down and not stderr.strip()):
        return HostDown(host, line)
    return None


def ensure_master(opts: SshOptions, host: Host) -> bool:
    """Start the host's ControlMaster unless one runs; True when one was started. HostDown when it cannot
    (UsageError, even with reuse off, when the destination is not a host name: callers check here first)."""
    destination(host)
    if not opts.reuse:
        return False
    check = [*base_argv(opts, host), "-O", "check", "--", host.target]
    lock = FileLock(str(socket_dir() / f".{re.sub(r'[^A-Za-z0-9_.-]', '_', host.target)}-{host.port or 22}.lock"))
    with lock:
        quiet: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL}
        try:  # a wedged master must not hang the check: it is replaced like a dead one
            if subprocess.run(check, stderr=subprocess.DEVNULL, timeout=CONTROL_TIMEOUT, **quiet).returncode == 0:
                return False
        except subprocess.TimeoutExpired:
            pass
        if opts.control_path:  # a socket left by a killed master: a new master could not bind over it
            Path(opts.control_path).unlink(missing_ok=True)
        argv = [*base_argv(opts, host, master="yes"), "-f", "-N", "--", host.target]
        limit = opts.connect_timeout + 30
        with tempfile.TemporaryFile() as err:
            try:
                code = subprocess.run(argv, stderr=err, timeout=limit, **quiet).returncode
            except subprocess.TimeoutExpired:
                raise HostDown(host, f"no answer within {limit}s") from None
            except FileNotFoundError:
                raise FleetqError("ssh is not installed on this machine") from None
            err.seek(0)
            text = err.read().decode("utf-8", "replace")
        if code != 0:
            raise diagnose(host, SSH_FAILED, text) or HostDown(host, last_line(text) or f"ssh exited with {code}")
        return True


def close_master(opts: SshOptions, host: Host) -> None:
    if opts.reuse:
        try:
            subprocess.run(
                [*base_argv(opts, host), "-O", "exit", "--", host.target],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=CONTROL_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            pass  # a master that does not answer on its socket: ControlPersist ends it
