"""One started command, however it is supervised, and how a tree is waited for and stopped.

A :class:`Tree` is a command leading a process group of its own. Two kinds exist: the command under
the worker's zygote (:class:`fleetq.run.zygote_client.ZygoteTree`, the normal path) and, as the
fallback, the command under a supervisor process of its own (:class:`SupervisedTree`, which runs
fleetq/run/supervisor.py by path: ``python -S -I .../supervisor.py PPID STATUS_FD GRACE CMD...``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Protocol

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
POLL = 0.05  # seconds between cancel/timeout checks

SUPERVISOR_PATH = Path(__file__).with_name("supervisor.py")  # run by path: it never imports fleetq


class Tree(Protocol):
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


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_tree(tree: Tree) -> None:
    """SIGTERM the tree, SIGKILL it if it is still there after the grace."""
    tree.signal(signal.SIGTERM)
    if not tree.wait(tree.grace()):
        tree.signal(signal.SIGKILL)
        tree.wait(None)


def wait_tree(tree: Tree, deadline: float | None, cancel: threading.Event | None) -> tuple[bool, bool]:
    """Wait for the command; returns (timed_out, cancelled) after killing the tree if needed."""
    while True:
        if tree.wait(POLL):
            return False, False
        if cancel is not None and cancel.is_set():
            stop_tree(tree)
            return False, True
        if deadline is not None and time.monotonic() >= deadline:
            stop_tree(tree)
            return True, False


class SupervisedTree:
    """The command under its own supervisor process (the leader of the command's group)."""

    def __init__(self, cmd: list[str], cwd: Path | str | None, env: dict[str, str] | None, with_stdin: bool) -> None:
        self._rfd, wfd = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-S", "-I", str(SUPERVISOR_PATH), str(os.getpid()), str(wfd), str(KILL_GRACE), *cmd],
                cwd=cwd,
                env=env,
                stdin=subprocess.PIPE if with_stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(wfd,),
                start_new_session=True,
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
        signal_group(self._proc.pid, sig)

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
