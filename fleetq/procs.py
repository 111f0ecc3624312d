"""Run one command as a supervised process tree.

Every command runs under a tiny supervisor (``python -S -I -c SUPERVISOR``, no
fleetq imports, so it starts in a few milliseconds) that leads a process group
of its own. That gives three guarantees the worker relies on:

* **timeout / cancel** kill the whole tree, grandchildren included: SIGTERM to
  the group, SIGKILL after ``KILL_GRACE`` seconds;
* **the worker dying** (even by SIGKILL) takes the tree down: on Linux the
  supervisor asks the kernel for PR_SET_PDEATHSIG(SIGTERM); elsewhere (macOS)
  it polls ``getppid()`` every 0.5 s. Note that PDEATHSIG fires when the
  *thread* that forked the supervisor exits, not the process: ``run_command``
  blocks in its calling thread until the tree is gone, so that thread outlives
  the supervisor by construction. Do not call it from a thread that may exit
  while the command still runs;
* **no stray processes**: when the command exits, whatever it left running in
  its group (``cmd &``) is killed, so nothing holds the output pipes open or
  lingers between tasks. A job that must leave a daemon behind has to detach
  it on purpose (``setsid``/``nohup setsid``).

The supervisor reports the command's exit status on a private pipe (it ends by
SIGKILLing its own group, itself included, so its own exit status is useless).
No ``preexec_fn`` anywhere: the worker is multithreaded.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
_POLL = 0.05  # seconds between cancel/timeout checks
_READ_CHUNK = 65536
_DRAIN_WAIT = 2.0  # seconds to wait for the output pipes to close once the tree is gone

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

    def __init__(self, pipe: BinaryIO, log: BinaryIO, lock: threading.Lock, *, tail_bytes: int,
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


def _feed(pipe: BinaryIO, text: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # the command may not read it all: fine
        pipe.write(text.encode("utf-8"))
    with contextlib.suppress(OSError):
        pipe.close()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the tree; the supervisor SIGKILLs it after the grace; we do if it is stuck."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(KILL_GRACE + 1.0)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait(proc: subprocess.Popen, deadline: float | None, cancel: threading.Event | None) -> tuple[bool, bool]:
    """Wait for the supervisor; returns (timed_out, cancelled) after killing the tree if needed."""
    while True:
        try:
            proc.wait(_POLL)
            return False, False
        except subprocess.TimeoutExpired:
            pass
        if cancel is not None and cancel.is_set():
            _stop(proc)
            return False, True
        if deadline is not None and time.monotonic() >= deadline:
            _stop(proc)
            return True, False


def _read_status(fd: int) -> int | None:
    try:
        data = os.read(fd, 64)
    except OSError:
        return None
    try:
        return int(data.decode().strip())
    except ValueError:
        return None


def run_command(argv: list[str] | str, *, cwd: Path | str | None, env: dict[str, str], timeout: float | None,
                log_path: Path, cancel: threading.Event | None = None, shell: bool = False,
                stdin_text: str | None = None, tail_bytes: int = 4000, capture_stdout: bool = False,
                echo_stdout: bool = False, echo_stderr: bool = False) -> ProcResult:
    """Run ``argv`` (or a ``/bin/sh -c`` string with ``shell=True``) under the supervisor.

    stdout and stderr are appended to ``log_path`` as they arrive, and their last
    ``tail_bytes`` kept. ``timeout`` None means no limit. ``echo_*`` also copies the
    stream live to this process's stdout/stderr (for interactive commands).
    Raises OSError only when the supervisor itself cannot start (e.g. a missing cwd).
    """
    if shell or isinstance(argv, str):
        cmd = ["/bin/sh", "-c", argv if isinstance(argv, str) else shlex.join(argv)]
    else:
        cmd = [str(a) for a in argv]
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    deadline = None if timeout is None else started + max(0.0, float(timeout))
    rfd, wfd = os.pipe()
    with open(log_path, "ab") as log:
        log.write(f"$ {describe(argv)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-S", "-I", "-c", SUPERVISOR, str(os.getpid()), str(wfd), str(KILL_GRACE), *cmd],
                cwd=cwd, env=env, stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(wfd,), start_new_session=True,
            )
        except BaseException:
            os.close(rfd)
            raise
        finally:
            os.close(wfd)
        try:
            lock = threading.Lock()
            out = _Stream(proc.stdout, log, lock, tail_bytes=tail_bytes, capture=capture_stdout,
                          echo=_binary(sys.stdout) if echo_stdout else None)
            err = _Stream(proc.stderr, log, lock, tail_bytes=tail_bytes, capture=False,
                          echo=_binary(sys.stderr) if echo_stderr else None)
            if stdin_text is not None:
                threading.Thread(target=_feed, args=(proc.stdin, stdin_text), daemon=True).start()
            try:
                timed_out, cancelled = _wait(proc, deadline, cancel)
            except BaseException:  # KeyboardInterrupt in `fleetq run`: never leave the tree behind
                _stop(proc)
                raise
            status = _read_status(rfd)
            if status is None and not (timed_out or cancelled):
                # The supervisor died without reporting (killed from outside): sweep its group.
                _signal_group(proc.pid, signal.SIGKILL)
            for s in (out, err):
                s.thread.join(_DRAIN_WAIT)
            duration = time.monotonic() - started
            code = None if (timed_out or cancelled) else status
            with lock:
                log.write(f"\n# {_footer(code, duration, timed_out, cancelled, timeout)}\n".encode())
        finally:
            os.close(rfd)
            for p in (proc.stdout, proc.stderr):
                p.close()
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
