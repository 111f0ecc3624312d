"""Git's own network legs (fetch, push, ls-remote) to an ssh remote, through a reused connection.

``git_ssh_env`` gives git a ``GIT_SSH_COMMAND`` that is fleetq's ssh argv (fleetq/git/ssh.py)
with a ControlPath of its own, so a claim's fetch and push ride one long-lived
connection instead of paying a handshake each. A user's own ``GIT_SSH_COMMAND``,
``GIT_SSH`` or ``core.sshCommand`` wins (fleetq then leaves ssh alone). Options come
from the environment only (``$FLEETQ_SSH_CONFIG``, ``$FLEETQ_SSH_REUSE``): git's
network legs run before any fleet config is read.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path

from fleetq.git.ssh import ENV_SSH_DIR, NO_ANSWER, Host, SshOptions, base_argv, close_master, ensure_master, socket_dir

GIT_ALIVE = 2  # ServerAliveInterval of git's master: a cut network drops it (and fails the git call) in ~6 s
_SSH_URL = re.compile(
    r"^(?:ssh|git\+ssh|ssh\+git)://(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]/]+\]|[^/:]+)(?::(?P<port>\d*))?(?:/.*)?$",
    re.I,
)
_LINK_DOWN = re.compile(
    NO_ANSWER.pattern + r"|control socket|mux_client|broken pipe|timeout, server|"
    r"connection to .* closed|could not read from remote|hung up",
    re.I,
)


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
    opts = SshOptions.from_env()
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
