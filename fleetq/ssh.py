"""SSH and rsync to the fleet's machines: argv building, connection reuse, sync, exec, pre-task sync.

Hosts come from config/machines.yaml (``host:`` is the SSH target, e.g. a
Tailscale name or ``user@host``; ``port:`` optional; a machine without ``host``
is reached by its name). Every connection runs with ``BatchMode=yes`` (keys
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

Git's network legs (fetch, push, ls-remote) to an ssh remote go through the same
machinery (``git_ssh_env``): ``GIT_SSH_COMMAND`` is fleetq's ssh argv with a
ControlPath of its own, so a claim's fetch and push ride one long-lived
connection instead of paying a handshake each. A user's own ``GIT_SSH_COMMAND``,
``GIT_SSH`` or ``core.sshCommand`` wins (fleetq then leaves ssh alone).
"""
from __future__ import annotations

import hashlib
import os
import re
import shlex
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from .config import FleetConfig
from .errors import FleetqError, NotFound, RemoteError, UsageError
from .handlerapi import FAILED, NEEDS_HUMAN, HandlerContext, HandlerResult, home_dir, last_line
from .procs import ProcResult, run_command

ENV_SSH_CONFIG = "FLEETQ_SSH_CONFIG"
ENV_SSH_DIR = "FLEETQ_SSH_DIR"
ENV_SSH_REUSE = "FLEETQ_SSH_REUSE"
DEFAULT_EXCLUDES = ["node_modules", ".git", "dist", "build", "*.log", "__pycache__", ".venv"]
CONNECT_TIMEOUT = 5
PERSIST = 60
# A unix socket path is at most 104-108 bytes; ssh adds "/" + 40 hex (%C) + a 17-character temp suffix.
MAX_SOCKET_DIR = 48
SSH_FAILED = 255

_NO_ANSWER = re.compile(
    r"ssh: connect to host|could not resolve hostname|connection (refused|timed out|closed|reset)|"
    r"no route to host|network is unreachable|operation timed out|kex_exchange_identification|"
    r"banner exchange|name or service not known|temporary failure in name resolution", re.I)
_REFUSED = re.compile(r"permission denied|host key verification failed|too many authentication failures", re.I)


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


def host_for(cfg: FleetConfig, name: str) -> Host:
    """A machine name or alias -> its SSH target from config/machines.yaml."""
    canon = cfg.canonical(name)
    if canon is None:
        known = ", ".join(sorted(cfg.machines)) or "none declared"
        raise NotFound(f"unknown machine '{name}' (config/machines.yaml has: {known})")
    spec = cfg.machines[canon]
    port = spec.extra.get("port") or spec.extra.get("ssh_port")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool)):
        raise FleetqError(f"config/machines.yaml: machine '{canon}': port must be a number")
    return Host(canon, str(spec.host or canon), port)


@dataclass
class SshOptions:
    config_file: str | None = None
    connect_timeout: int = CONNECT_TIMEOUT
    persist: int = PERSIST
    reuse: bool = True
    extra: list[str] = field(default_factory=list)  # more -o options
    control_path: str | None = None  # a literal socket path instead of <socket_dir>/%C
    alive_interval: int = 15  # ServerAliveInterval: a dead peer is dropped after interval x 3

    @classmethod
    def from_config(cls, cfg: FleetConfig | None) -> SshOptions:
        get = (lambda k: cfg.get(k)) if cfg is not None else (lambda k: None)
        extra = get("ssh_options") or []
        if not isinstance(extra, list) or not all(isinstance(x, str) for x in extra):
            raise FleetqError("config/fleet.yaml: ssh_options must be a list of ssh -o values (e.g. 'Compression=yes')")
        reuse = get("ssh_reuse")
        return cls(
            config_file=os.environ.get(ENV_SSH_CONFIG) or None,
            connect_timeout=int(get("ssh_connect_timeout") or CONNECT_TIMEOUT),
            persist=int(get("ssh_persist") or PERSIST),
            reuse=(True if reuse is None else bool(reuse)) and reuse_from_env(),
            extra=list(extra),
        )


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


def base_argv(opts: SshOptions, host: Host, *, batch: bool = True, master: str = "no") -> list[str]:
    """``ssh`` and its options, without the destination."""
    argv = ["ssh"]
    if opts.config_file:
        argv += ["-F", opts.config_file]
    if host.port:
        argv += ["-p", str(host.port)]
    if batch:
        argv += ["-o", "BatchMode=yes"]
    argv += ["-o", f"ConnectTimeout={opts.connect_timeout}", "-o", f"ServerAliveInterval={opts.alive_interval}",
             "-o", "ServerAliveCountMax=3"]
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
        return [*base_argv(opts, host, batch=False, master="auto"), host.target]
    return [*base_argv(opts, host), *(["-tt"] if tty else []), host.target, command]


def rsync_argv(opts: SshOptions, host: Host, src: str, dest: str, *, excludes: list[str], delete: bool,
               rsync_path: str | None = None) -> list[str]:
    argv = ["rsync", "-az", "--stats"]
    if delete:
        argv.append("--delete")
    for pattern in excludes:
        argv += ["--exclude", pattern]
    argv += ["-e", shlex.join(base_argv(opts, host))]
    if rsync_path:
        argv += ["--rsync-path", rsync_path]
    return [*argv, src, dest]


# ---------------------------------------------------------------- connections

def _diagnose(host: Host, code: int | None, stderr: str, *, silent_is_down: bool = True) -> HostDown | None:
    """ssh's own failure (exit 255 and its message), as a HostDown; None when the remote command failed.

    ``silent_is_down``: a bare 255 with nothing on stderr counts as ssh failing (not when a live master
    just answered: then it is the remote command's own exit code).
    """
    if code != SSH_FAILED:
        return None
    line = last_line(stderr) or "ssh exited with 255"
    if _REFUSED.search(stderr):
        return HostDown(host, line, refused=True)
    if _NO_ANSWER.search(stderr) or (silent_is_down and not stderr.strip()):
        return HostDown(host, line)
    return None


def ensure_master(opts: SshOptions, host: Host) -> bool:
    """Start the host's ControlMaster unless one runs; True when one was started. HostDown when it cannot."""
    if not opts.reuse:
        return False
    check = [*base_argv(opts, host), "-O", "check", host.target]
    lock = FileLock(str(socket_dir() / f".{re.sub(r'[^A-Za-z0-9_.-]', '_', host.target)}-{host.port or 22}.lock"))
    with lock:
        if subprocess.run(check, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
            return False
        if opts.control_path:  # a socket left by a killed master: a new master could not bind over it
            Path(opts.control_path).unlink(missing_ok=True)
        argv = [*base_argv(opts, host, master="yes"), "-f", "-N", host.target]
        with tempfile.TemporaryFile() as err:
            try:
                code = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                      timeout=opts.connect_timeout + 30).returncode
            except subprocess.TimeoutExpired:
                raise HostDown(host, f"no answer within {opts.connect_timeout + 30}s") from None
            except FileNotFoundError:
                raise FleetqError("ssh is not installed on this machine") from None
            err.seek(0)
            text = err.read().decode("utf-8", "replace")
        if code != 0:
            raise _diagnose(host, SSH_FAILED, text) or HostDown(host, last_line(text) or f"ssh exited with {code}")
        return True


def close_master(opts: SshOptions, host: Host) -> None:
    if opts.reuse:
        subprocess.run([*base_argv(opts, host), "-O", "exit", host.target], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _run(argv: list[str], *, timeout: float | None = None, echo: bool = False, capture: bool = False) -> ProcResult:
    """A supervised local process, its log in a throwaway file (the terminal gets the output when ``echo``)."""
    fd, name = tempfile.mkstemp(prefix="fleetq-ssh-", suffix=".log")
    os.close(fd)
    log_path = Path(name)
    try:
        return run_command(argv, cwd=None, env=dict(os.environ), timeout=timeout, log_path=log_path,
                           capture_stdout=capture, echo_stdout=echo, echo_stderr=echo)
    except FileNotFoundError as e:
        raise FleetqError(f"cannot run {argv[0]}: {e.strerror}") from None
    finally:
        log_path.unlink(missing_ok=True)


def run(opts: SshOptions, host: Host, command: str, *, echo: bool = True, capture: bool = False,
        timeout: float | None = None) -> ProcResult:
    """Run ``command`` (a shell line) on ``host``; output streamed when ``echo``. HostDown when it does not answer."""
    ensure_master(opts, host)
    res = _run(ssh_argv(opts, host, command), timeout=timeout, echo=echo, capture=capture)
    down = _diagnose(host, res.exit_code, res.stderr_tail, silent_is_down=not opts.reuse)
    if down is not None:
        raise down
    return res


def run_local(command: str, *, echo: bool = True, capture: bool = False, timeout: float | None = None) -> ProcResult:
    """The same, on this machine (no SSH): for the machine this process runs on."""
    return _run(["/bin/sh", "-c", command], timeout=timeout, echo=echo, capture=capture)


def interactive(opts: SshOptions, host: Host, command: str | None = None) -> int:
    """A login (or a command with a terminal) on ``host``, with this terminal; returns ssh's exit code."""
    argv = ssh_argv(opts, host, None) if command is None else [*base_argv(opts, host, batch=False, master="auto"),
                                                                "-t", host.target, command]
    try:
        return subprocess.call(argv)
    except FileNotFoundError:
        raise FleetqError("ssh is not installed on this machine") from None


# ---------------------------------------------------------------- sync

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


def portable_path(local: Path, home: Path | None = None) -> str:
    """A directory as another machine should name it: ``~/rel`` under HOME, else absolute."""
    home = (home or Path.home()).resolve()
    p = local.expanduser().resolve()
    try:
        rel = p.relative_to(home)
    except ValueError:
        return str(p)
    return "~" if str(rel) == "." else f"~/{rel}"


def remote_form(path: str) -> str:
    """``~/rel`` -> ``rel`` (ssh starts in the remote home); ``~`` -> ``.``; absolute paths as they are."""
    if path == "~":
        return "."
    return path[2:] if path.startswith("~/") else path


def local_form(path: str, env: dict[str, str] | None = None) -> Path:
    home = home_dir(env or dict(os.environ))
    if path == "~":
        return home
    return home / path[2:] if path.startswith("~/") else Path(path)


def push(opts: SshOptions, host: Host, local: Path, dest: str | None = None, *, excludes: list[str],
         delete: bool = False, timeout: float | None = None) -> tuple[str, SyncStats]:
    """Mirror the directory ``local`` to ``host`` (default: the same place relative to the home directory)."""
    if not local.is_dir():
        raise UsageError(f"{local} is not a directory")
    remote = remote_form(dest or portable_path(local))
    ensure_master(opts, host)
    argv = rsync_argv(opts, host, f"{local.resolve()}/", f"{host.target}:{remote}/", excludes=excludes,
                      delete=delete, rsync_path=f"mkdir -p {shlex.quote(remote)} && rsync")
    started = time.monotonic()
    res = _run(argv, timeout=timeout, capture=True)
    _rsync_check(host, res)
    stats = parse_stats(res.stdout)
    stats.duration = time.monotonic() - started
    return remote, stats


def _rsync_check(host: Host, res: ProcResult) -> None:
    if res.exit_code == 0:
        return
    err = res.stderr_tail
    if res.exit_code in (SSH_FAILED, 12) and (_NO_ANSWER.search(err) or _REFUSED.search(err)):
        raise _diagnose(host, SSH_FAILED, err)  # type: ignore[misc]  # a match always diagnoses
    if res.timed_out:
        raise RemoteError(f"rsync to {host.label} timed out")
    raise RemoteError(f"rsync to {host.label} failed (exit {res.exit_code}): {last_line(err, res.stdout_tail)}")


# ---------------------------------------------------------------- a task's sync before it runs

def sync_request(cfg: FleetConfig, machine: str, path: Path, excludes: list[str] | None = None) -> dict[str, Any]:
    """``payload.sync`` for ``assign --sync PATH``: where the worker pulls the code from before it runs."""
    if not path.is_dir():
        raise UsageError(f"--sync {path}: not a directory")
    spec = cfg.machine(machine)
    if not spec.declared:
        raise UsageError(f"--sync: this machine ({machine}) is not in config/machines.yaml, so no other machine "
                         f"knows how to reach it; add it with a host: entry")
    host = host_for(cfg, machine)
    req: dict[str, Any] = {"path": portable_path(path), "from": host.target, "machine": machine,
                           "excludes": list(excludes if excludes is not None else sync_excludes(cfg))}
    if host.port:
        req["port"] = host.port
    return req


def sync_excludes(cfg: FleetConfig | None) -> list[str]:
    raw = cfg.get("sync_excludes") if cfg is not None else None
    if raw is None:
        return list(DEFAULT_EXCLUDES)
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise FleetqError("config/fleet.yaml: sync_excludes must be a list of patterns")
    return list(raw)


def presync(ctx: HandlerContext) -> HandlerResult | None:
    """Pull ``payload.sync`` (the submitter's directory) into place before the handler runs.

    None: nothing to do, or the sync worked (the task runs next). A result: the
    sync failed and is the task's outcome (failed: the host may answer on a
    retry; needs_human: the request itself is wrong).
    """
    spec = ctx.payload.get("sync")
    if not spec:
        return None
    if not isinstance(spec, dict) or not isinstance(spec.get("path"), str) or not isinstance(spec.get("from"), str):
        return HandlerResult(NEEDS_HUMAN, error="payload.sync needs 'path' and 'from' (the submitting machine's host)")
    if spec.get("machine") == ctx.machine:
        return None  # submitted here: the code is already in place
    port = spec.get("port") if isinstance(spec.get("port"), int) else None
    host = Host(spec.get("machine"), spec["from"], port)
    dest = local_form(str(spec.get("dest") or spec["path"]), ctx.env)
    raw = spec.get("excludes")
    excludes: list[Any] = raw if isinstance(raw, list) else DEFAULT_EXCLUDES
    opts = SshOptions.from_config(None)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        ensure_master(opts, host)
    except (HostDown, FleetqError, OSError) as e:
        return HandlerResult(FAILED, error=f"sync before the run failed: {e}")
    argv = rsync_argv(opts, host, f"{host.target}:{remote_form(spec['path'])}/", f"{dest}/",
                      excludes=[str(x) for x in excludes], delete=bool(spec.get("delete")))
    res = run_command(argv, cwd=dest, env=ctx.env, timeout=ctx.timeout or 600, log_path=ctx.log_path,
                      cancel=ctx.cancel, capture_stdout=True)
    if res.exit_code != 0:
        why = last_line(res.stderr_tail, res.stdout_tail) or ("timed out" if res.timed_out else "rsync failed")
        return HandlerResult(FAILED, exit_code=res.exit_code, duration=res.duration, stderr_tail=res.stderr_tail,
                             error=f"sync from {host.label}:{spec['path']} failed: {why}")
    stats = parse_stats(res.stdout)
    with open(ctx.log_path, "a", encoding="utf-8") as f:
        f.write(f"# synced {host.label}:{spec['path']} -> {dest}: {stats.files_sent} files, "
                f"{human_bytes(stats.bytes_received)} received\n")
    return None


# ---------------------------------------------------------------- git's own connections to an ssh remote

GIT_ALIVE = 2  # ServerAliveInterval of git's master: a cut network drops it (and fails the git call) in ~6 s
_SSH_URL = re.compile(r"^(?:ssh|git\+ssh|ssh\+git)://(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]/]+\]|[^/:]+)"
                      r"(?::(?P<port>\d*))?(?:/.*)?$", re.I)
_LINK_DOWN = re.compile(_NO_ANSWER.pattern + r"|control socket|mux_client|broken pipe|timeout, server|"
                        r"connection to .* closed|could not read from remote|hung up", re.I)


def url_host(url: str | None) -> Host | None:
    """The SSH host of a git remote URL: ``ssh://[user@]host[:port]/path`` (and git+ssh://) or scp-like
    ``[user@]host:path``; None for local paths, ``file://`` and other transports (git's own rules)."""
    if not url:
        return None
    m = _SSH_URL.match(url)
    if m:
        host = m.group("host").strip("[]")
        port = int(m.group("port")) if m.group("port") else None
        return Host(None, f"{m.group('user')}@{host}" if m.group("user") else host, port)
    if "://" in url or url.startswith(("/", ".", "~")):
        return None
    colon, slash = url.find(":"), url.find("/")
    if colon <= 0 or 0 <= slash < colon:  # git: a colon before the first slash makes it scp-like
        return None
    return Host(None, url[:colon].replace("[", "").replace("]", ""), None)


@dataclass
class GitLink:
    """fleetq's reused connection for git to one ssh remote."""

    host: Host
    opts: SshOptions
    command: str  # the GIT_SSH_COMMAND value

    @property
    def socket(self) -> str | None:
        return self.opts.control_path if self.opts.reuse else None


_links: dict[tuple[str, int | None, str | None, str], GitLink] = {}


def user_ssh_command() -> bool:
    """The user chose git's ssh program in the environment (fleetq then leaves git's ssh alone)."""
    return bool(os.environ.get("GIT_SSH_COMMAND") or os.environ.get("GIT_SSH"))


def git_link(url: str | None) -> GitLink | None:
    """The link for ``url`` (None: not an ssh remote). Options come from the environment, since git's
    network legs run before any fleet config is read: ``$FLEETQ_SSH_CONFIG``, ``$FLEETQ_SSH_REUSE``."""
    host = url_host(url)
    if host is None:
        return None
    opts = SshOptions.from_config(None)
    key = (host.target, host.port, opts.config_file, f"{opts.reuse}:{os.environ.get(ENV_SSH_DIR, '')}")
    link = _links.get(key)
    if link is None:
        opts.alive_interval = GIT_ALIVE
        if opts.reuse:
            digest = hashlib.sha1(f"{host.target}|{host.port}|{opts.config_file}".encode()).hexdigest()[:16]
            opts.control_path = str(socket_dir() / f"git-{digest}")
        # git adds the port (-p) and the destination itself
        command = shlex.join(base_argv(opts, Host(None, host.target)))
        link = _links[key] = GitLink(host, opts, command)
    return link


def _listening(path: str) -> bool:
    """A master answers on its socket (a connect, no process spawned; a killed master leaves a dead file)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def git_ssh_env(url: str | None) -> dict[str, str] | None:
    """The environment for one git network call to ``url``: ``GIT_SSH_COMMAND`` through a live master.

    None when ``url`` is not ssh or the user set their own ssh program. The master is started when
    its socket does not answer (first use, killed, or timed out by ControlPersist/ServerAlive):
    a cheap in-process connect per call, a process spawn only when a master must start.
    HostDown when the remote does not answer at all.
    """
    if user_ssh_command():
        return None
    link = git_link(url)
    if link is None:
        return None
    if link.socket and not _listening(link.socket):
        ensure_master(link.opts, link.host)
    return {"GIT_SSH_COMMAND": link.command}


def git_failed(url: str | None, stderr: str) -> None:
    """A git network call failed: when the connection itself looks broken, close its master, so the
    next call starts a fresh one rather than riding a half-dead link (a lost push race keeps it)."""
    link = git_link(url) if not user_ssh_command() else None
    if link is not None and link.socket and _LINK_DOWN.search(stderr or ""):
        close_master(link.opts, link.host)
        Path(link.socket).unlink(missing_ok=True)
