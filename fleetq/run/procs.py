"""Run one command as a supervised process tree.

Every command leads a process group (a session) of its own, under a supervisor that gives the worker
three guarantees:

* **timeout / cancel** kill the whole tree, grandchildren included: SIGTERM to the group, SIGKILL after
  ``fleetq.run.trees.KILL_GRACE`` seconds, a grace the whole group gets even when the leader exits first;
* **the worker dying** (even by SIGKILL) takes every tree down;
* **no stray processes**: when the command exits, whatever it left running in its group (``cmd &``) is
  killed, so nothing holds the output pipes open or lingers between tasks. A job that must leave a
  daemon behind has to detach it on purpose (``setsid``/``nohup setsid``).

The supervisor is normally the **zygote** (fleetq/run/zygote.py, driven by fleetq.run.zygote_client):
one process per worker process, run by path as ``python -S -I .../zygote.py PPID SOCK_FD GRACE``,
started on first use (and again if it died), that posix_spawns (vfork+exec) each command on request,
so a command costs a fork+exec instead of a Python start (~20 ms of CPU). The worker passes the
command's stdin/stdout/stderr with SCM_RIGHTS and, on timeout/cancel, asks the zygote to stop the
group (``term``: SIGTERM, and the whole group's grace even when the leader exits at once). The
zygote notices the worker's death by EOF on its socket (whichever thread started it, and on macOS
too), backed by PR_SET_PDEATHSIG: since that fires when the *thread* that forked the zygote exits,
the zygote is always forked from one dedicated thread that lives as long as the process
(``run_command`` itself runs in short-lived per-task threads). If the zygote dies, the commands it was
running are swept (SIGKILL to their groups) and report an unknown status.

If the zygote cannot start (no fd passing or no posix_spawn with setsid here, ``zygote_client.ZYGOTE =
False``, or it fails to say hello; retried after a while), each command runs under its own tiny
supervisor (fleetq/run/supervisor.py, run by path as ``python -S -I .../supervisor.py PPID STATUS_FD
GRACE CMD...``): it setsid()s, asks for PR_SET_PDEATHSIG(SIGTERM) (elsewhere it polls ``getppid()``),
runs the command in its group, reports the exit status on a private pipe, and ends by SIGKILLing its
group. There, PDEATHSIG is tied to the thread calling ``run_command``, which blocks until the tree is
gone, so it outlives the supervisor.

No ``preexec_fn`` anywhere: the worker is multithreaded. See docs/design.md, "Running tasks".
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from fleetq.run.redact import MARGIN, redact
from fleetq.run.trees import SupervisedTree, Tree, stop_tree, wait_tree
from fleetq.run.zygote_client import ZygoteGone, ZygoteTree, live_zygote

log = logging.getLogger("fleetq.run.procs")

_READ_CHUNK = 65536
_DRAIN_WAIT = 2.0  # seconds to wait for the output pipes to close once the tree is gone


@dataclass
class ProcResult:
    exit_code: int | None  # None when the tree was killed (timeout, cancel) or the status was lost
    duration: float
    stdout_tail: str
    stderr_tail: str
    timed_out: bool
    cancelled: bool
    stdout: str  # the full stdout, only with capture_stdout=True
    log_error: str | None = None  # the log could not be written (a full disk): the run was stopped


class _Log:
    """The run's log file. A write that fails (a full disk) stops the run, not the worker: the error is
    kept, ``failed`` is set (the run is stopped), and this run's output is cut from the file so the
    space is given back to the worker and the next runs; the pipes are still drained."""

    def __init__(self, path: Path, header: str) -> None:
        self.file = open(path, "ab", buffering=0)  # unbuffered: a failed write leaves nothing to retry
        self.lock = threading.Lock()
        self.error: str | None = None
        self.failed = threading.Event()
        self.start = self._end()  # what a failed write cuts the file back to: this run's output goes
        self.write(header.encode())
        self.start = self._end()  # the command line stays

    def _end(self) -> int:
        try:
            return self.file.seek(0, os.SEEK_END)
        except OSError:
            return self.start

    def write(self, data: bytes) -> None:
        with self.lock:
            if self.error is not None:
                return
            try:
                view = memoryview(data)
                while view:
                    n = self.file.write(view)
                    if not n:
                        raise OSError(errno.EIO, "the log took no bytes")
                    view = view[n:]
            except OSError as e:
                self.error = f"{(e.strerror or str(e)).lower()} while writing output"
                log.warning("%s: %s; the run is stopped and its output dropped from the log", self.file.name, e)
                with contextlib.suppress(OSError):
                    self.file.truncate(self.start)
                    self.file.write(f"# {self.error}: this run was stopped and its output dropped\n".encode())
                self.failed.set()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()


class _Stop(threading.Event):
    """What wait_tree polls: set by the run's cancel or by a log that cannot be written."""

    def __init__(self, *events: threading.Event | None) -> None:
        super().__init__()
        self.events = [e for e in events if e is not None]

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)


class _Stream:
    """Drains one pipe in a thread: appends to the log, keeps a bounded tail, optionally everything.

    The tail kept is ``tail_bytes`` plus ``redact.MARGIN``, so a secret that straddles the final cut is
    still whole when the tail is redacted (:func:`redacted_tail`)."""

    def __init__(self, pipe: IO[bytes], log: _Log, *, tail_bytes: int, capture: bool, echo: BinaryIO | None) -> None:
        self.pipe, self.log = pipe, log
        self.tail_bytes, self.capture, self.echo = tail_bytes, capture, echo
        self.keep = tail_bytes + MARGIN
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
            self.log.write(chunk)
            if self.echo is not None:
                _echo(self.echo, chunk)
            if self.capture:
                self.full += chunk
            self.tail += chunk
            if len(self.tail) > 2 * self.keep:
                del self.tail[: len(self.tail) - self.keep]

    def text_tail(self) -> str:
        return redacted_tail(bytes(self.tail), self.tail_bytes)


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


def redacted_tail(data: bytes, limit: int) -> str:
    """The last ``limit`` bytes as text, redacted *before* the cut (``redact.MARGIN`` more bytes are
    looked at), so a key that straddles the cut is masked whole instead of leaving its end."""
    if limit <= 0:
        return ""
    return tail_text(redact(tail_text(data, limit + MARGIN)).encode("utf-8"), limit)


def describe(argv: list[str] | str) -> str:
    text = argv if isinstance(argv, str) else shlex.join(argv)
    return text if len(text) <= 300 else text[:299] + "…"


def _feed(pipe: IO[bytes], text: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # the command may not read it all: fine
        pipe.write(text.encode("utf-8"))
    with contextlib.suppress(OSError):
        pipe.close()


def _launch(cmd: list[str], cwd: Path | str | None, env: dict[str, str] | None, with_stdin: bool) -> Tree:
    """Start the command under the zygote, else under a supervisor of its own."""
    for _ in range(2):  # the zygote may have died since the last command: one restart
        client = live_zygote()
        if client is None:
            break
        try:
            where = os.path.abspath(os.fspath(cwd)) if cwd is not None else os.getcwd()
        except OSError:  # our own cwd is gone: a supervisor can still inherit it
            break
        env_ = {os.fsdecode(k): os.fsdecode(v) for k, v in (os.environ if env is None else env).items()}
        try:
            return ZygoteTree(client, cmd, where, env_, with_stdin)
        except ZygoteGone:
            continue
    return SupervisedTree(cmd, cwd, env, with_stdin)


def run_command(
    argv: list[str] | str,
    *,
    cwd: Path | str | None,
    env: dict[str, str],
    timeout: float | None,
    log_path: Path,
    cancel: threading.Event | None = None,
    shell: bool = False,
    stdin_text: str | None = None,
    tail_bytes: int = 4000,
    capture_stdout: bool = False,
    echo_stdout: bool = False,
    echo_stderr: bool = False,
) -> ProcResult:
    """Run ``argv`` (or a ``/bin/sh -c`` string with ``shell=True``) as a supervised tree.

    stdout and stderr are appended to ``log_path`` as they arrive, and their last
    ``tail_bytes`` kept, redacted. ``timeout`` None means no limit. ``echo_*`` also copies the
    stream live to this process's stdout/stderr (for interactive commands). When the log cannot
    be written (a full disk), the tree is stopped and ``log_error`` says why.
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
    log_file = _Log(log_path, f"$ {describe(argv)}\n")
    try:
        if log_file.error is not None:  # no room for even the command line: do not start what would be lost
            return ProcResult(None, 0.0, "", "", False, False, "", log_error=log_file.error)
        tree = _launch(cmd, cwd, env, stdin_text is not None)
        try:
            out = _Stream(
                tree.stdout,
                log_file,
                tail_bytes=tail_bytes,
                capture=capture_stdout,
                echo=_binary(sys.stdout) if echo_stdout else None,
            )
            err = _Stream(
                tree.stderr,
                log_file,
                tail_bytes=tail_bytes,
                capture=False,
                echo=_binary(sys.stderr) if echo_stderr else None,
            )
            if stdin_text is not None and tree.stdin is not None:
                threading.Thread(target=_feed, args=(tree.stdin, stdin_text), daemon=True).start()
            try:
                timed_out, cancelled = wait_tree(tree, deadline, _Stop(cancel, log_file.failed))
            except BaseException:  # KeyboardInterrupt in `fleetq run`: never leave the tree behind
                stop_tree(tree)
                raise
            cancelled = cancelled and (cancel is not None and cancel.is_set())  # not a full disk
            status = tree.status()
            if status is None and not (timed_out or cancelled or log_file.error):
                # The supervisor died without reporting (killed from outside): sweep the group.
                tree.signal(signal.SIGKILL)
            for s in (out, err):
                s.thread.join(_DRAIN_WAIT)
            duration = time.monotonic() - started
            code = None if (timed_out or cancelled or log_file.error) else status
            log_file.write(f"\n# {_footer(code, duration, timed_out, cancelled, timeout)}\n".encode())
        finally:
            tree.close()
    finally:
        log_file.close()
    return ProcResult(
        exit_code=code,
        duration=duration,
        stdout_tail=out.text_tail(),
        stderr_tail=err.text_tail(),
        timed_out=timed_out,
        cancelled=cancelled,
        stdout=bytes(out.full).decode("utf-8", errors="replace") if capture_stdout else "",
        log_error=log_file.error,
    )


def _footer(code: int | None, duration: float, timed_out: bool, cancelled: bool, timeout: float | None) -> str:
    if cancelled:
        return f"cancelled after {duration:.1f}s"
    if timed_out:
        return f"timed out after {timeout:g}s"
    return f"exit {code if code is not None else '?'} after {duration:.1f}s"
