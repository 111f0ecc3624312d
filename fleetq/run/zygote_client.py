"""The worker's side of the zygote (fleetq/run/zygote.py): start it, talk to it, replace it, stop it.

The zygote runs by path, ``python -S -I .../zygote.py PPID SOCK_FD GRACE``, once per worker process
(again if it died), from one dedicated thread that lives as long as the process (see :class:`_Spawner`).
Requests go out on a socketpair with the command's stdin/stdout/stderr as SCM_RIGHTS; a reader thread
hands the replies (pid, exit status) to the waiting :class:`ZygoteTree`. If the zygote dies, the
commands it was running are swept (SIGKILL to their groups) and report an unknown status. After a
failed start, :func:`live_zygote` says "use a supervisor per command" for ``_RETRY_AFTER`` seconds.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from fleetq.run import trees
from fleetq.run.trees import signal_group
from fleetq.run.zygote import close_fds, recv_frame, send_frame

log = logging.getLogger("fleetq.run.procs")  # the process trees' logger, whichever module speaks

ZYGOTE = True  # False: a supervisor process per command (the fallback), e.g. to compare or debug
ZYGOTE_PATH = Path(__file__).with_name("zygote.py")  # run by path: it never imports fleetq
_HELLO_WAIT = 10.0  # seconds a new zygote has to say hello
_RETRY_AFTER = 60.0  # after a failed zygote start, use per-command supervisors this long before retrying
_CAN_ZYGOTE = hasattr(socket, "AF_UNIX") and hasattr(socket, "send_fds") and hasattr(os, "posix_spawn")


class ZygoteGone(Exception):
    """The zygote died before it got the request: nothing ran, try again (or fall back)."""


class _Job:
    """One request to the zygote, filled in by the reader thread."""

    def __init__(self, rid: int) -> None:
        self.rid = rid
        self.started = threading.Event()  # set with pid, or error, or lost
        self.done = threading.Event()  # set with status, or error, or lost
        self.pid: int | None = None
        self.error: tuple[int, str] | None = None  # (errno, "cwd"): nothing ran
        self.status: int | None = None
        self.reaped = False  # the zygote reaped the command: its pid may be reused, never signal it again
        self.lost = False  # the zygote died: status unknown


class ZygoteClient:
    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket, pid: int) -> None:
        self.proc, self.sock, self.pid = proc, sock, pid
        self.alive = True
        self.closing = False  # close() was called: its end is expected
        self._lock = threading.Lock()  # alive, pending
        self._send_lock = threading.Lock()  # one request on the wire at a time (fds ride on its first byte)
        self._pending: dict[int, _Job] = {}
        self._ids = itertools.count(1)
        threading.Thread(target=self._read, name="fleetq-zygote-reader", daemon=True).start()

    def submit(self, cmd: list[str], cwd: str, env: dict[str, str], fds: tuple[int, int, int]) -> _Job:
        with self._lock:
            if not self.alive:
                raise ZygoteGone()
            rid = next(self._ids)
            self._pending[rid] = job = _Job(rid)
        try:
            with self._send_lock:
                send_frame(self.sock, ("run", rid, cmd, cwd, env), fds)
        except OSError as e:
            with self._lock:
                self._pending.pop(rid, None)
                self.alive = False  # so the retry starts a new one, even before our reader sees the EOF
            raise ZygoteGone() from e
        return job

    def terminate(self, job: _Job) -> bool:
        """Ask the zygote to stop a command's group (SIGTERM, SIGKILL after the grace, even once the leader
        has exited); False when it cannot be asked (it is gone)."""
        try:
            with self._send_lock:
                send_frame(self.sock, ("term", job.rid))
        except OSError:
            return False
        return True

    def close(self) -> None:
        """EOF to the zygote: it takes down whatever still runs and exits; the reader thread reaps it."""
        self.closing = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # also wakes our reader thread (close() would not)

    def _read(self) -> None:
        try:
            while (got := recv_frame(self.sock)) is not None:
                self._dispatch(got[0])
        except Exception:  # noqa: BLE001 - a dead or confused zygote: same outcome
            pass
        finally:
            self._die()

    def _dispatch(self, msg: tuple[Any, ...]) -> None:
        kind, rid = msg[0], msg[1]
        if kind == "crash":
            log.error("the process zygote crashed: %s", msg[1])
            return
        with self._lock:
            job = self._pending.get(rid) if kind == "started" else self._pending.pop(rid, None)
        if job is None:
            return
        if kind == "started":
            job.pid = msg[2]
            job.started.set()
        elif kind == "failed":
            job.error = (msg[2], msg[3])
            job.started.set()
            job.done.set()
        elif kind == "exit":
            job.status, job.reaped = msg[2], True
            job.done.set()

    def _die(self) -> None:
        with self._lock:
            self.alive = False
            jobs = list(self._pending.values())
            self._pending.clear()
        for job in jobs:
            job.lost = True
            job.started.set()
            job.done.set()
        if not self.closing:
            log.warning("the process zygote (pid %d) died; %d running command(s) lost", self.pid, len(jobs))
        with contextlib.suppress(OSError):
            self.sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(trees.KILL_GRACE + 5.0)  # it may still be taking its trees down


def _spawn_zygote() -> ZygoteClient:
    """Start a zygote and wait for its hello. Runs in the spawner thread (see _Spawner)."""
    script = ZYGOTE_PATH
    if not os.access(script, os.R_OK):
        raise OSError(f"{script} is not readable")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-S",
                "-I",
                os.path.abspath(script),
                str(os.getpid()),
                str(theirs.fileno()),
                str(trees.KILL_GRACE),
            ],
            pass_fds=(theirs.fileno(),),
            cwd="/",
            # Not the worker's stdout/stderr: it may outlive the worker a moment (killing trees), and must not
            # hold a pipe someone reads to EOF. Its errors come back as a "crash" message instead.
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own session: a Ctrl-C meant for the worker does not reach it
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    try:
        ours.settimeout(_HELLO_WAIT)
        got = recv_frame(ours)
        if got is None or got[0][0] != "hello":
            raise OSError("the zygote exited before saying hello")
        ours.settimeout(None)
    except BaseException:
        ours.close()
        proc.kill()
        proc.wait()
        raise
    return ZygoteClient(proc, ours, got[0][1])


class _Box:
    def __init__(self) -> None:
        self.ready = threading.Event()
        self.client: ZygoteClient | None = None
        self.error: Exception | None = None


class _Spawner:
    """The one thread every zygote is forked from.

    Linux's PR_SET_PDEATHSIG fires when the *thread* that forked a process exits, not the process. The
    zygote arms it, and ``run_command`` runs in short-lived per-task threads: forking from those would
    make the zygote take every running command down when the task that happened to start it ends. This
    thread never returns, so it lives exactly as long as the process.
    """

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[_Box] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="fleetq-zygote-spawner", daemon=True).start()

    def spawn(self) -> ZygoteClient:
        box = _Box()
        self._requests.put(box)
        box.ready.wait()
        if box.error is not None:
            raise box.error
        assert box.client is not None
        return box.client

    def _serve(self) -> None:
        while True:
            box = self._requests.get()
            try:
                box.client = _spawn_zygote()
            except Exception as e:  # noqa: BLE001 - handed to the caller
                box.error = e
            box.ready.set()


_state_lock = threading.Lock()
_client: ZygoteClient | None = None
_spawner: _Spawner | None = None
_retry_at = 0.0


def live_zygote() -> ZygoteClient | None:
    """The live zygote, started if needed; None means: use a supervisor per command."""
    global _client, _spawner, _retry_at
    if not (ZYGOTE and _CAN_ZYGOTE):
        return None
    with _state_lock:
        if _client is not None and _client.alive:
            return _client
        if time.monotonic() < _retry_at:
            return None
        try:
            _spawner = _spawner or _Spawner()
            _client = _spawner.spawn()
        except Exception as e:  # noqa: BLE001 - any failure: fall back, retry later
            _client, _retry_at = None, time.monotonic() + _RETRY_AFTER
            log.warning(
                "cannot start the process zygote (%s): one supervisor process per command for %ds", e, _RETRY_AFTER
            )
        return _client


def shutdown_zygote(wait: float | None = None) -> None:
    """Stop the zygote (any command still running is killed); the next run_command starts a new one."""
    global _client
    with _state_lock:
        client, _client = _client, None
    if client is None:
        return
    client.close()
    if wait is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            client.proc.wait(wait)


def _forget_zygote_in_child() -> None:
    """After os.fork(): the zygote and our threads belong to the parent; start afresh if needed."""
    global _client, _spawner, _state_lock
    if _client is not None:
        with contextlib.suppress(OSError):
            _client.sock.close()  # our copy would keep the parent's zygote from seeing EOF
    _client, _spawner, _state_lock = None, None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_zygote_in_child)
atexit.register(shutdown_zygote)


class ZygoteTree:
    """The command started by the zygote; the worker signals its group directly."""

    def __init__(self, client: ZygoteClient, cmd: list[str], cwd: str, env: dict[str, str], with_stdin: bool) -> None:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        in_r, in_w = os.pipe() if with_stdin else (os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), -1)
        ours = [out_r, err_r] + ([in_w] if with_stdin else [])
        job: _Job | None = None
        self._client = client
        try:
            self._job = job = client.submit(cmd, cwd, env, (in_r, out_w, err_w))
            job.started.wait()
            if job.error is not None:
                err, what = job.error
                raise OSError(err, os.strerror(err), cwd if what == "cwd" else None)  # as Popen(cwd=...) would
        except BaseException:
            close_fds(ours)
            if job is not None and job.pid is not None and not job.reaped:  # interrupted (Ctrl-C) after the start
                signal_group(job.pid, signal.SIGKILL)
            raise
        finally:
            close_fds((in_r, out_w, err_w))  # the command's ends: it (and only it) holds them now
        self.stdin: IO[bytes] | None = os.fdopen(in_w, "wb") if with_stdin else None
        self.stdout: IO[bytes] = os.fdopen(out_r, "rb", buffering=0)
        self.stderr: IO[bytes] = os.fdopen(err_r, "rb", buffering=0)

    def wait(self, timeout: float | None) -> bool:
        return self._job.done.wait(timeout)

    def signal(self, sig: int) -> None:
        job = self._job
        if job.pid is None or job.reaped:  # once reaped, the pid may belong to someone else
            return
        if sig == signal.SIGTERM and self._client.terminate(job):
            return  # the zygote gives the whole group the grace, then SIGKILLs it
        signal_group(job.pid, sig)

    def grace(self) -> float:
        return trees.KILL_GRACE + 1.0  # the zygote SIGKILLs the group itself after KILL_GRACE

    def status(self) -> int | None:
        return None if self._job.lost else self._job.status

    def close(self) -> None:
        for p in (self.stdout, self.stderr):
            p.close()
