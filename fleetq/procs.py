"""Run one command as a supervised process tree.

Every command leads a process group (a session) of its own, under a supervisor that gives the worker
three guarantees:

* **timeout / cancel** kill the whole tree, grandchildren included: SIGTERM to the group, SIGKILL after
  ``KILL_GRACE`` seconds;
* **the worker dying** (even by SIGKILL) takes every tree down;
* **no stray processes**: when the command exits, whatever it left running in its group (``cmd &``) is
  killed, so nothing holds the output pipes open or lingers between tasks. A job that must leave a
  daemon behind has to detach it on purpose (``setsid``/``nohup setsid``).

The supervisor is normally the **zygote** (fleetq/zygote.py): one ``python -S -I`` process per worker
process, started on first use (and again if it died), that posix_spawns (vfork+exec) each command on
request, so a command costs a fork+exec instead of a Python start (~20 ms of CPU). The worker passes
the command's stdin/stdout/stderr with SCM_RIGHTS; a reader thread here hands the zygote's replies
(pid, exit status) to the waiting ``run_command`` calls, which signal the command's group themselves
on timeout/cancel. The zygote notices the worker's death by EOF on its socket (whichever thread
started it, and on macOS too), backed by PR_SET_PDEATHSIG: since that fires when the *thread* that
forked the zygote exits, the zygote is always forked from one dedicated thread that lives as long as
the process (``run_command`` itself runs in short-lived per-task threads). If the zygote dies, the
commands it was running are swept (SIGKILL to their groups) and report an unknown status.

If the zygote cannot start (no fd passing or no posix_spawn with setsid here, ``ZYGOTE = False``, or
it fails to say hello; retried after ``_RETRY_AFTER`` seconds), each command runs under its own tiny
supervisor (``python -S -I -c SUPERVISOR``) as before: it setsid()s, asks for PR_SET_PDEATHSIG(SIGTERM)
(elsewhere it polls ``getppid()``), runs the command in its group, reports the exit status on a private
pipe, and ends by SIGKILLing its group. There, PDEATHSIG is tied to the thread calling ``run_command``,
which blocks until the tree is gone, so it outlives the supervisor.

No ``preexec_fn`` anywhere: the worker is multithreaded.
"""
from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Protocol

from . import zygote
from .zygote import close_fds, recv_frame, send_frame

log = logging.getLogger("fleetq.procs")

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
_POLL = 0.05  # seconds between cancel/timeout checks
_READ_CHUNK = 65536
_DRAIN_WAIT = 2.0  # seconds to wait for the output pipes to close once the tree is gone

ZYGOTE = True  # False: a supervisor process per command (the fallback), e.g. to compare or debug
_HELLO_WAIT = 10.0  # seconds a new zygote has to say hello
_RETRY_AFTER = 60.0  # after a failed zygote start, use per-command supervisors this long before retrying
try:  # the zygote runs this source with `python -c`, so it never imports fleetq (nor needs it on sys.path)
    ZYGOTE_SRC: str | None = Path(zygote.__file__).read_text(encoding="utf-8")
except OSError:
    ZYGOTE_SRC = None
_CAN_ZYGOTE = hasattr(socket, "AF_UNIX") and hasattr(socket, "send_fds") and hasattr(os, "posix_spawn")

# The supervisor. argv: ppid status_fd grace cmd...   Keep it dependency-free and small.
SUPERVISOR = r"""
import os, signal, subprocess, sys, threading, time

ppid, sfd, grace = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
cmd = sys.argv[4:]
os.set_inheritable(sfd, False)

class Term(Exception):
    pass

state = {"term": False, "waiting": False}

def on_term(signum, frame):
    if not state["term"]:
        state["term"] = True
        if state["waiting"]:
            raise Term()

for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(s, on_term)

if sys.platform.startswith("linux"):
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass

def watch_parent():
    while True:
        if os.getppid() != ppid:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        time.sleep(0.5)

if os.getppid() != ppid:  # the parent died before PDEATHSIG was armed
    state["term"] = True
try:
    os.setsid()
except OSError:
    pass  # already a session leader (start_new_session=True)

def report(rc):
    try:
        os.write(sfd, ("%d\n" % rc).encode())
    except OSError:
        pass

def end():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(0, signal.SIGKILL)  # the leftovers of the command, and this supervisor
    os._exit(0)

def code(status):
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)

child = None
if not state["term"]:
    try:
        child = subprocess.Popen(cmd)
    except OSError as e:
        sys.stderr.write("fleetq: cannot run %r: %s\n" % (cmd[0], e.strerror or e))
        sys.stderr.flush()
        report(127 if isinstance(e, FileNotFoundError) else 126)
        end()
threading.Thread(target=watch_parent, daemon=True).start()
try:
    state["waiting"] = True
    if state["term"]:
        raise Term()
    _, status = os.waitpid(child.pid, 0)
    state["waiting"] = False
    report(code(status))
    end()
except Term:
    pass
signal.signal(signal.SIGTERM, signal.SIG_IGN)
os.killpg(0, signal.SIGTERM)
deadline = time.monotonic() + grace
while child is not None and time.monotonic() < deadline:
    try:
        pid, status = os.waitpid(child.pid, os.WNOHANG)
    except ChildProcessError:
        break
    if pid:
        break
    time.sleep(0.05)
end()
"""


@dataclass
class ProcResult:
    exit_code: int | None  # None when the tree was killed (timeout, cancel) or the status was lost
    duration: float
    stdout_tail: str
    stderr_tail: str
    timed_out: bool
    cancelled: bool
    stdout: str  # the full stdout, only with capture_stdout=True


class _Stream:
    """Drains one pipe in a thread: appends to the log, keeps a bounded tail, optionally everything."""

    def __init__(self, pipe: IO[bytes], log: BinaryIO, lock: threading.Lock, *, tail_bytes: int,
                 capture: bool, echo: BinaryIO | None) -> None:
        self.pipe, self.log, self.lock = pipe, log, lock
        self.tail_bytes, self.capture, self.echo = tail_bytes, capture, echo
        self.tail = bytearray()
        self.full = bytearray()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        fd = self.pipe.fileno()
        while True:
            try:
                chunk = os.read(fd, _READ_CHUNK)
            except OSError:
                break
            if not chunk:
                break
            with self.lock:
                self.log.write(chunk)
                self.log.flush()
            if self.echo is not None:
                _echo(self.echo, chunk)
            if self.capture:
                self.full += chunk
            self.tail += chunk
            if len(self.tail) > 2 * self.tail_bytes:
                del self.tail[: len(self.tail) - self.tail_bytes]

    def text_tail(self) -> str:
        return tail_text(bytes(self.tail), self.tail_bytes)


def _echo(stream: BinaryIO, chunk: bytes) -> None:
    with contextlib.suppress(OSError, ValueError):
        stream.write(chunk)
        stream.flush()


def _binary(stream: object) -> BinaryIO | None:
    return getattr(stream, "buffer", None)


def tail_text(data: bytes, limit: int) -> str:
    """The last ``limit`` bytes as text, not starting in the middle of a UTF-8 character."""
    if limit <= 0:
        return ""
    cut = data[-limit:]
    skip = 0
    while skip < min(3, len(cut)) and 0x80 <= cut[skip] <= 0xBF and len(cut) < len(data):
        skip += 1
    return cut[skip:].decode("utf-8", errors="replace")


def describe(argv: list[str] | str) -> str:
    text = argv if isinstance(argv, str) else shlex.join(argv)
    return text if len(text) <= 300 else text[:299] + "…"


def _feed(pipe: IO[bytes], text: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # the command may not read it all: fine
        pipe.write(text.encode("utf-8"))
    with contextlib.suppress(OSError):
        pipe.close()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# ---------------------------------------------------------------- one running tree, either way

class _Tree(Protocol):
    """A started command, however it is supervised."""

    stdin: IO[bytes] | None
    stdout: IO[bytes]
    stderr: IO[bytes]

    def wait(self, timeout: float | None) -> bool:
        """True once the command is over (or its status lost)."""

    def signal(self, sig: int) -> None:
        """Signal the command's whole group, unless it is known to be over."""

    def grace(self) -> float:
        """How long to wait after SIGTERM before SIGKILLing the group ourselves."""

    def status(self) -> int | None:
        """The exit status once over; None if lost (supervisor/zygote killed from outside)."""

    def close(self) -> None: ...


def _stop(tree: _Tree) -> None:
    """SIGTERM the tree, SIGKILL it if it is still there after the grace."""
    tree.signal(signal.SIGTERM)
    if not tree.wait(tree.grace()):
        tree.signal(signal.SIGKILL)
        tree.wait(None)


def _wait(tree: _Tree, deadline: float | None, cancel: threading.Event | None) -> tuple[bool, bool]:
    """Wait for the command; returns (timed_out, cancelled) after killing the tree if needed."""
    while True:
        if tree.wait(_POLL):
            return False, False
        if cancel is not None and cancel.is_set():
            _stop(tree)
            return False, True
        if deadline is not None and time.monotonic() >= deadline:
            _stop(tree)
            return True, False


# ---------------------------------------------------------------- fallback: a supervisor per command

class _SupervisedTree:
    """The command under its own ``python -S -I -c SUPERVISOR`` (leader of the command's group)."""

    def __init__(self, cmd: list[str], cwd: Path | str | None, env: dict[str, str] | None, with_stdin: bool) -> None:
        self._rfd, wfd = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-S", "-I", "-c", SUPERVISOR, str(os.getpid()), str(wfd), str(KILL_GRACE), *cmd],
                cwd=cwd, env=env, stdin=subprocess.PIPE if with_stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(wfd,), start_new_session=True,
            )
        except BaseException:
            os.close(self._rfd)
            raise
        finally:
            os.close(wfd)
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self.stdin: IO[bytes] | None = self._proc.stdin
        self.stdout: IO[bytes] = self._proc.stdout
        self.stderr: IO[bytes] = self._proc.stderr

    def wait(self, timeout: float | None) -> bool:
        try:
            self._proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def signal(self, sig: int) -> None:
        _signal_group(self._proc.pid, sig)

    def grace(self) -> float:
        return KILL_GRACE + 1.0  # the supervisor SIGKILLs the group itself after KILL_GRACE

    def status(self) -> int | None:
        try:
            data = os.read(self._rfd, 64)
            return int(data.decode().strip())
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        os.close(self._rfd)
        for p in (self.stdout, self.stderr):
            p.close()


# ---------------------------------------------------------------- the zygote, worker side

class _ZygoteGone(Exception):
    """The zygote died before it got the request: nothing ran, try again (or fall back)."""


class _Job:
    """One request to the zygote, filled in by the reader thread."""

    def __init__(self) -> None:
        self.started = threading.Event()  # set with pid, or error, or lost
        self.done = threading.Event()  # set with status, or error, or lost
        self.pid: int | None = None
        self.error: tuple[int, str] | None = None  # (errno, "cwd"): nothing ran
        self.status: int | None = None
        self.reaped = False  # the zygote reaped the command: its pid may be reused, never signal it again
        self.lost = False  # the zygote died: status unknown


class _ZygoteClient:
    def __init__(self, proc: subprocess.Popen, sock: socket.socket, pid: int) -> None:
        self.proc, self.sock, self.pid = proc, sock, pid
        self.alive = True
        self.closing = False  # close() was called: its end is expected
        self._lock = threading.Lock()  # alive, pending
        self._send_lock = threading.Lock()  # one request on the wire at a time (fds ride on its first byte)
        self._pending: dict[int, _Job] = {}
        self._ids = itertools.count(1)
        threading.Thread(target=self._read, name="fleetq-zygote-reader", daemon=True).start()

    def submit(self, cmd: list[str], cwd: str, env: dict[str, str], fds: tuple[int, int, int]) -> _Job:
        job = _Job()
        with self._lock:
            if not self.alive:
                raise _ZygoteGone()
            rid = next(self._ids)
            self._pending[rid] = job
        try:
            with self._send_lock:
                send_frame(self.sock, ("run", rid, cmd, cwd, env), fds)
        except OSError as e:
            with self._lock:
                self._pending.pop(rid, None)
                self.alive = False  # so the retry starts a new one, even before our reader sees the EOF
            raise _ZygoteGone() from e
        return job

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

    def _dispatch(self, msg: tuple) -> None:
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
            self.proc.wait(KILL_GRACE + 5.0)  # it may still be taking its trees down


def _spawn_zygote() -> _ZygoteClient:
    """Start a zygote and wait for its hello. Runs in the spawner thread (see _Spawner)."""
    if ZYGOTE_SRC is None:
        raise OSError("fleetq/zygote.py is not readable")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-S", "-I", "-c", ZYGOTE_SRC, str(os.getpid()), str(theirs.fileno()), str(KILL_GRACE)],
            pass_fds=(theirs.fileno(),), cwd="/",
            # Not the worker's stdout/stderr: it may outlive the worker a moment (killing trees), and must not
            # hold a pipe someone reads to EOF. Its errors come back as a "crash" message instead.
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
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
    return _ZygoteClient(proc, ours, got[0][1])


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

    def spawn(self) -> _ZygoteClient:
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


class _Box:
    def __init__(self) -> None:
        self.ready = threading.Event()
        self.client: _ZygoteClient | None = None
        self.error: Exception | None = None


_state_lock = threading.Lock()
_client: _ZygoteClient | None = None
_spawner: _Spawner | None = None
_retry_at = 0.0


def _zygote() -> _ZygoteClient | None:
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
            log.warning("cannot start the process zygote (%s): one supervisor process per command for %ds",
                        e, _RETRY_AFTER)
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


class _ZygoteTree:
    """The command started by the zygote; the worker signals its group directly."""

    def __init__(self, client: _ZygoteClient, cmd: list[str], cwd: str, env: dict[str, str], with_stdin: bool) -> None:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        in_r, in_w = os.pipe() if with_stdin else (os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), -1)
        ours = [out_r, err_r] + ([in_w] if with_stdin else [])
        job: _Job | None = None
        try:
            self._job = job = client.submit(cmd, cwd, env, (in_r, out_w, err_w))
            job.started.wait()
            if job.error is not None:
                err, what = job.error
                raise OSError(err, os.strerror(err), cwd if what == "cwd" else None)  # as Popen(cwd=...) would
        except BaseException:
            close_fds(ours)
            if job is not None and job.pid is not None and not job.reaped:  # interrupted (Ctrl-C) after the start
                _signal_group(job.pid, signal.SIGKILL)
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
        if job.pid is not None and not job.reaped:  # once reaped, the pid may belong to someone else
            _signal_group(job.pid, sig)

    def grace(self) -> float:
        return KILL_GRACE

    def status(self) -> int | None:
        return None if self._job.lost else self._job.status

    def close(self) -> None:
        for p in (self.stdout, self.stderr):
            p.close()


# ---------------------------------------------------------------- run_command

def _launch(cmd: list[str], cwd: Path | str | None, env: dict[str, str] | None, with_stdin: bool) -> _Tree:
    """Start the command under the zygote, else under a supervisor of its own."""
    for _ in range(2):  # the zygote may have died since the last command: one restart
        client = _zygote()
        if client is None:
            break
        try:
            where = os.path.abspath(os.fspath(cwd)) if cwd is not None else os.getcwd()
        except OSError:  # our own cwd is gone: a supervisor can still inherit it
            break
        env_ = {os.fsdecode(k): os.fsdecode(v) for k, v in (os.environ if env is None else env).items()}
        try:
            return _ZygoteTree(client, cmd, where, env_, with_stdin)
        except _ZygoteGone:
            continue
    return _SupervisedTree(cmd, cwd, env, with_stdin)


def run_command(argv: list[str] | str, *, cwd: Path | str | None, env: dict[str, str], timeout: float | None,
                log_path: Path, cancel: threading.Event | None = None, shell: bool = False,
                stdin_text: str | None = None, tail_bytes: int = 4000, capture_stdout: bool = False,
                echo_stdout: bool = False, echo_stderr: bool = False) -> ProcResult:
    """Run ``argv`` (or a ``/bin/sh -c`` string with ``shell=True``) as a supervised tree.

    stdout and stderr are appended to ``log_path`` as they arrive, and their last
    ``tail_bytes`` kept. ``timeout`` None means no limit. ``echo_*`` also copies the
    stream live to this process's stdout/stderr (for interactive commands).
    Raises OSError only when the command cannot be started at all (e.g. a missing cwd).
    """
    if shell or isinstance(argv, str):
        cmd = ["/bin/sh", "-c", argv if isinstance(argv, str) else shlex.join(argv)]
    else:
        cmd = [str(a) for a in argv]
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    deadline = None if timeout is None else started + max(0.0, float(timeout))
    with open(log_path, "ab") as log_file:
        log_file.write(f"$ {describe(argv)}\n".encode())
        log_file.flush()
        tree = _launch(cmd, cwd, env, stdin_text is not None)
        try:
            lock = threading.Lock()
            out = _Stream(tree.stdout, log_file, lock, tail_bytes=tail_bytes, capture=capture_stdout,
                          echo=_binary(sys.stdout) if echo_stdout else None)
            err = _Stream(tree.stderr, log_file, lock, tail_bytes=tail_bytes, capture=False,
                          echo=_binary(sys.stderr) if echo_stderr else None)
            if stdin_text is not None and tree.stdin is not None:
                threading.Thread(target=_feed, args=(tree.stdin, stdin_text), daemon=True).start()
            try:
                timed_out, cancelled = _wait(tree, deadline, cancel)
            except BaseException:  # KeyboardInterrupt in `fleetq run`: never leave the tree behind
                _stop(tree)
                raise
            status = tree.status()
            if status is None and not (timed_out or cancelled):
                # The supervisor died without reporting (killed from outside): sweep the group.
                tree.signal(signal.SIGKILL)
            for s in (out, err):
                s.thread.join(_DRAIN_WAIT)
            duration = time.monotonic() - started
            code = None if (timed_out or cancelled) else status
            with lock:
                log_file.write(f"\n# {_footer(code, duration, timed_out, cancelled, timeout)}\n".encode())
        finally:
            tree.close()
    return ProcResult(
        exit_code=code, duration=duration, stdout_tail=out.text_tail(), stderr_tail=err.text_tail(),
        timed_out=timed_out, cancelled=cancelled,
        stdout=bytes(out.full).decode("utf-8", errors="replace") if capture_stdout else "",
    )


def _footer(code: int | None, duration: float, timed_out: bool, cancelled: bool, timeout: float | None) -> str:
    if cancelled:
        return f"cancelled after {duration:.1f}s"
    if timed_out:
        return f"timed out after {timeout:g}s"
    return f"exit {code if code is not None else '?'} after {duration:.1f}s"
