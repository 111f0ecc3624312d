"""SIGTERM and Ctrl-C for the worker: the first asks for a warm stop, the second for a forced one.

A signal handler runs in the main thread between two bytecodes, maybe while that
thread holds a lock (the worker's, a logging handler's, an Event's). So the
handler only records the signal and writes a byte to a pipe (async-signal-safe,
no Python lock); the worker acts on it outside the handler: a small thread
woken by the pipe, and the loop at each pass.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import weakref
from collections.abc import Callable
from types import FrameType

HANDLED = (signal.SIGTERM, signal.SIGINT)


class Signals:
    """Signals received, and the acting on them (``act(signum)`` once for each, in order)."""

    def __init__(self, act: Callable[[int], None]) -> None:
        self._act = act
        self.received: list[int] = []  # appended by the handler only
        self._acted = 0
        self._acting = threading.Lock()  # never taken by the handler
        self._done = threading.Event()
        self._r, self._w = os.pipe()
        for fd in (self._r, self._w):
            os.set_blocking(fd, False)
        # Closed when nothing refers to this any more (an installed handler does): never while a signal may write.
        weakref.finalize(self, _close, self._r, self._w)

    @property
    def stop_requested(self) -> bool:
        """A first signal: finish running tasks, then exit."""
        return len(self.received) >= 1

    @property
    def force_requested(self) -> bool:
        """A second signal: hand running tasks back, then exit."""
        return len(self.received) >= 2

    def handler(self, signum: int, _frame: FrameType | None) -> None:
        """The installed handler: it records, and nothing else."""
        self.received.append(signum)
        try:
            os.write(self._w, b"\0")
        except OSError:
            pass  # the pipe is full: the watcher is awake anyway

    def install(self) -> bool:
        """Install the handler for SIGTERM and SIGINT (the main thread only can); whether it did."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for sig in HANDLED:
            signal.signal(sig, self.handler)
        return True

    def act(self) -> None:
        """Act on the signals received since the last call (from any thread but inside a handler)."""
        with self._acting:
            while self._acted < len(self.received):
                signum = self.received[self._acted]
                self._acted += 1
                self._act(signum)

    # -- the watcher thread: acts at once, even while the loop sits in a slow git call --
    def start(self) -> None:
        threading.Thread(target=self._watch, name="signals", daemon=True).start()

    def stop(self) -> None:
        self._done.set()
        try:
            os.write(self._w, b"\0")
        except OSError:
            pass

    def _watch(self) -> None:
        while not self._done.is_set():
            select.select([self._r], [], [])
            try:
                while os.read(self._r, 512):
                    pass
            except BlockingIOError:
                pass
            if not self._done.is_set():
                self.act()


def _close(*fds: int) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
