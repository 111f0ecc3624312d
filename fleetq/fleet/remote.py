"""Commands and code to the fleet's machines over SSH: exec, interactive logins, sync, and ``assign --sync``.

The transport (hosts, options, argv, the reused ControlMaster) is fleetq/git/ssh.py; this
module adds what needs the fleet's config (``ssh_options(cfg)``, ``host_for(cfg, name)``,
``sync_excludes``) and supervised processes (fleetq/run/procs.py). The pull a worker makes
before a task runs is fleetq/run/presync.py.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from fleetq.core.config import FleetConfig
from fleetq.errors import FleetqError, NotFound, RemoteError, UsageError
from fleetq.git.ssh import (
    CONNECT_TIMEOUT,
    DEFAULT_EXCLUDES,
    NO_ANSWER,
    PERSIST,
    REFUSED,
    SSH_FAILED,
    Host,
    SshOptions,
    SyncStats,
    base_argv,
    diagnose,
    ensure_master,
    parse_stats,
    parse_target,
    remote_form,
    rsync_argv,
    ssh_argv,
)
from fleetq.run.presync import rsync_reason
from fleetq.run.procs import ProcResult, run_command

# ---------------------------------------------------------------- hosts and options from the config


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
    try:  # parse_machines checked ``host:``; a machine reached by its name is checked here
        target, named_port = parse_target(spec.host or canon)
    except UsageError as e:
        raise UsageError(f"machine '{canon}': its SSH destination {e}: refusing") from None
    return Host(canon, target, port or named_port)


def ssh_options(cfg: FleetConfig | None) -> SshOptions:
    """The environment's options (``SshOptions.from_env``) with config/fleet.yaml's ``ssh_*`` settings."""
    base = SshOptions.from_env()
    if cfg is None:
        return base
    extra = cfg.get("ssh_options") or []
    if not isinstance(extra, list) or not all(isinstance(x, str) for x in extra):
        raise FleetqError("config/fleet.yaml: ssh_options must be a list of ssh -o values (e.g. 'Compression=yes')")
    reuse = cfg.get("ssh_reuse")
    return replace(
        base,
        connect_timeout=int(cfg.get("ssh_connect_timeout") or CONNECT_TIMEOUT),
        persist=int(cfg.get("ssh_persist") or PERSIST),
        reuse=(True if reuse is None else bool(reuse)) and base.reuse,
        extra=list(extra),
    )


# ---------------------------------------------------------------- commands


def _run(argv: list[str], *, timeout: float | None = None, echo: bool = False, capture: bool = False) -> ProcResult:
    """A supervised local process, its log in a throwaway file (the terminal gets the output when ``echo``)."""
    fd, name = tempfile.mkstemp(prefix="fleetq-ssh-", suffix=".log")
    os.close(fd)
    log_path = Path(name)
    try:
        return run_command(
            argv,
            cwd=None,
            env=dict(os.environ),
            timeout=timeout,
            log_path=log_path,
            capture_stdout=capture,
            echo_stdout=echo,
            echo_stderr=echo,
        )
    except FileNotFoundError as e:
        raise FleetqError(f"cannot run {argv[0]}: {e.strerror}") from None
    finally:
        log_path.unlink(missing_ok=True)


def run(
    opts: SshOptions,
    host: Host,
    command: str,
    *,
    echo: bool = True,
    capture: bool = False,
    timeout: float | None = None,
) -> ProcResult:
    """Run ``command`` (a shell line) on ``host``; output streamed when ``echo``. HostDown when it does not answer."""
    ensure_master(opts, host)
    res = _run(ssh_argv(opts, host, command), timeout=timeout, echo=echo, capture=capture)
    down = diagnose(host, res.exit_code, res.stderr_tail, silent_is_down=not opts.reuse)
    if down is not None:
        raise down
    return res


def capture_on(cfg: FleetConfig, host: Host, command: str, *, timeout: float) -> ProcResult:
    """Run ``command`` on ``host`` with the fleet's SSH options, its output captured, not echoed."""
    return run(ssh_options(cfg), host, command, echo=False, capture=True, timeout=timeout)


def run_local(command: str, *, echo: bool = True, capture: bool = False, timeout: float | None = None) -> ProcResult:
    """The same, on this machine (no SSH): for the machine this process runs on."""
    return _run(["/bin/sh", "-c", command], timeout=timeout, echo=echo, capture=capture)


def interactive(opts: SshOptions, host: Host, command: str | None = None) -> int:
    """A login (or a command with a terminal) on ``host``, with this terminal; returns ssh's exit code."""
    if command is None:
        argv = ssh_argv(opts, host, None)
    else:
        argv = [*base_argv(opts, host, batch=False, master="auto"), "-t", "--", host.target, command]
    try:
        return subprocess.call(argv)
    except FileNotFoundError:
        raise FleetqError("ssh is not installed on this machine") from None


# ---------------------------------------------------------------- sync


def portable_path(local: Path, home: Path | None = None) -> str:
    """A directory as another machine should name it: ``~/rel`` under HOME, else absolute."""
    home = (home or Path.home()).resolve()
    p = local.expanduser().resolve()
    try:
        rel = p.relative_to(home)
    except ValueError:
        return str(p)
    return "~" if str(rel) == "." else f"~/{rel}"


def push(
    opts: SshOptions,
    host: Host,
    local: Path,
    dest: str | None = None,
    *,
    excludes: list[str],
    delete: bool = False,
    timeout: float | None = None,
) -> tuple[str, SyncStats]:
    """Mirror the directory ``local`` to ``host`` (default: the same place relative to the home directory)."""
    if not local.is_dir():
        raise UsageError(f"{local} is not a directory")
    remote = remote_form(dest or portable_path(local))
    ensure_master(opts, host)
    argv = rsync_argv(
        opts,
        host,
        f"{local.resolve()}/",
        f"{host.target}:{remote}/",
        excludes=excludes,
        delete=delete,
        rsync_path=f"mkdir -p -- {shlex.quote(remote)} && rsync",
    )
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
    why = rsync_reason(err, res.stdout_tail)  # the cause, not rsync's last line ("Broken pipe")
    if res.exit_code in (SSH_FAILED, 12) and (NO_ANSWER.search(err) or REFUSED.search(err)):
        down = diagnose(host, SSH_FAILED, why)
        if down is not None:  # a match always diagnoses
            raise down
    if res.timed_out:
        raise RemoteError(f"rsync to {host.label} timed out")
    raise RemoteError(f"rsync to {host.label} failed (exit {res.exit_code}): {why}")


# ---------------------------------------------------------------- a task's sync before it runs (the request)


def sync_request(cfg: FleetConfig, machine: str, path: Path, excludes: list[str] | None = None) -> dict[str, Any]:
    """``payload.sync`` for ``assign --sync PATH``: where the worker pulls the code from before it runs
    (fleetq/run/presync.py)."""
    if not path.is_dir():
        raise UsageError(f"--sync {path}: not a directory")
    spec = cfg.machine(machine)
    if not spec.declared:
        raise UsageError(
            f"--sync: this machine ({machine}) is not in config/machines.yaml, so no other machine "
            f"knows how to reach it; add it with a host: entry"
        )
    host = host_for(cfg, machine)
    req: dict[str, Any] = {
        "path": portable_path(path),
        "from": host.target,
        "machine": machine,
        "excludes": list(excludes if excludes is not None else sync_excludes(cfg)),
    }
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
