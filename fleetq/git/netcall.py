"""Running git's network legs (fetch, push, ls-remote) so that none can hang a command or a worker.

Each runs as a child in its own process group under a time limit: ``$FLEETQ_GIT_TIMEOUT``
seconds, else the clone's ``git config fleetq.gitTimeout``, else :data:`DEFAULT_TIMEOUT`. (An
environment variable or the clone's config, not config/fleet.yaml: the first fetch runs before
any fleet config is read.) A remote that accepts the connection and never answers is then a
:class:`RemoteTimeout` (exit 3) saying how long it waited. At the limit the group gets SIGTERM
(git removes its lock files on it), then SIGKILL. Over http(s), git's own low-speed limit
fails a stalled transfer first with git's own message; over ssh, fleetq's options
(fleetq/git/ssh.py) bound the connect and drop a dead peer.

:meth:`NetCalls.hurry` is for a worker asked to stop: the calls under way are cut at once and
later ones get a short limit, so SIGTERM is never stuck behind a remote that does not answer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence

from fleetq.errors import FleetqError, UsageError

ENV_TIMEOUT = "FLEETQ_GIT_TIMEOUT"
CONFIG_TIMEOUT = "fleetq.gittimeout"  # git config keys are case-insensitive; git prints them lower-case
DEFAULT_TIMEOUT = 60.0
STOP_LIMIT = 5.0  # seconds a network call may take once a stop was asked
TERM_GRACE = 1.0  # seconds between SIGTERM and SIGKILL
_STEP = 0.2  # how often a running call checks its deadline and a stop


class RemoteTimeout(FleetqError):
    """A git network call that got no answer within its time limit (exit 3, like a RemoteError).

    Deliberately not a RemoteError: commands that show the last fetch when the remote is unreachable
    (``queue``, ``status``) do not do so after a timeout. The remote was reached and did not answer,
    the wait is spent, and the person hears it in one line."""

    exit_code = 3


def timeout(configured: str | None = None) -> float:
    """The limit for one network call: ``$FLEETQ_GIT_TIMEOUT``, else ``configured`` (the clone's
    ``fleetq.gitTimeout``), else 60 s."""
    for where, raw in ((f"${ENV_TIMEOUT}", os.environ.get(ENV_TIMEOUT)), ("git config fleetq.gitTimeout", configured)):
        if raw is None or not raw.strip():
            continue
        try:
            value = float(raw)
        except ValueError:
            value = 0.0
        if not value > 0:
            raise UsageError(f"{where}={raw!r}: expected a positive number of seconds")
        return value
    return DEFAULT_TIMEOUT


def http_env(env: Mapping[str, str], limit: float) -> dict[str, str]:
    """git's low-speed limit for http(s) remotes (under 1 byte/s for half the limit), unless set."""
    out = dict(env)
    if "GIT_HTTP_LOW_SPEED_LIMIT" not in os.environ:
        out.setdefault("GIT_HTTP_LOW_SPEED_LIMIT", "1")
        out.setdefault("GIT_HTTP_LOW_SPEED_TIME", str(max(1, int(limit / 2))))
    return out


class NetCalls:
    """The network calls of one clone, and whether its worker was asked to stop."""

    def __init__(self) -> None:
        self.stop_asked: float | None = None  # monotonic time of hurry()

    def hurry(self) -> None:
        """A stop was asked: cut the calls under way, and give later ones :data:`STOP_LIMIT`."""
        if self.stop_asked is None:
            self.stop_asked = time.monotonic()

    def _deadline(self, started: float, limit: float) -> tuple[float, bool]:
        """When a call started at ``started`` must end, and whether a stop set that time."""
        own = started + limit
        stop = self.stop_asked
        if stop is None:
            return own, False
        cut = started + STOP_LIMIT if started >= stop else stop
        return (cut, True) if cut < own else (own, False)

    def run(
        self, argv: Sequence[str], *, cwd: str, env: Mapping[str, str] | None, limit: float, what: str
    ) -> tuple[int, str, str]:
        """Run ``git argv`` in ``cwd``: (status, stdout, stderr). RemoteTimeout when it outlives ``limit``
        (or a stop); ``what`` names the call in that message (``fetch from URL``)."""
        full = {**os.environ, "LANGUAGE": "C", "LC_ALL": "C", **http_env(env or {}, limit)}
        started = time.monotonic()
        proc = subprocess.Popen(
            ["git", *argv],
            cwd=cwd,
            env=full,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # one group: git, ssh, git-remote-http... all go at the limit
        )
        try:
            while True:
                end, stopping = self._deadline(started, limit)
                try:
                    out, err = proc.communicate(timeout=max(0.0, min(_STEP, end - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() < end:
                        continue
                    _end_group(proc)
                    if stopping:
                        raise RemoteTimeout(f"git {what}: cut short, the worker is stopping") from None
                    raise RemoteTimeout(
                        f"git {what} timed out after {limit:g}s: the remote did not answer "
                        f"(${ENV_TIMEOUT} or `git config fleetq.gitTimeout` sets the limit)"
                    ) from None
        finally:
            if proc.poll() is None:  # an exception (Ctrl-C) while it ran: leave no git behind
                _end_group(proc)
        return proc.returncode, _text(out), _text(err)


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the call's process group (git removes its locks), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, TERM_GRACE), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.communicate(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _text(data: bytes | None) -> str:
    """Decoded, less one trailing newline (as gitpython's execute gives it)."""
    text = (data or b"").decode("utf-8", "replace")
    return text[:-1] if text.endswith("\n") else text
