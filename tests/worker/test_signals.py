"""SIGTERM/Ctrl-C: the handler only records; a signal that lands while the worker's lock is held never hangs it."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import pytest

from fleetq.worker.daemon import Worker
from support.fleets import ROOT, Fleets


@pytest.fixture
def restore_signals() -> Iterator[None]:
    """The worker installs its handlers in this (pytest's) process: put pytest's back afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_the_handler_returns_at_once_while_the_lock_is_held(fleets: Fleets, restore_signals: None) -> None:
    w = Worker(fleets.clone("w"), watch=False)
    assert w.signals.install()
    handler = signal.getsignal(signal.SIGTERM)
    assert callable(handler)
    with w.lock:  # as the loop does in every pass
        for n in (1, 2):  # the second signal is the one that used to take the lock (hand back)
            t = threading.Thread(target=handler, args=(signal.SIGTERM, None), daemon=True)
            t.start()
            t.join(5)
            assert not t.is_alive(), f"signal {n} blocked on the worker's lock"
        assert w.signals.stop_requested and w.signals.force_requested
        assert not w.stopping and not w.handback  # the handler only records: the worker acts outside it
    w.signals.act()  # what the loop (or the signal watcher) does next
    assert w.stopping and w.handback
    w.signals.act()  # acted on once each
    assert w.signals.received == [signal.SIGTERM, signal.SIGTERM]


def test_the_worker_acts_on_signals_in_order(fleets: Fleets) -> None:
    w = Worker(fleets.clone("w"), watch=False)
    w.signals.handler(signal.SIGINT, None)
    assert w.signals.stop_requested and not w.signals.force_requested
    w.signals.act()
    assert w.stopping and not w.handback and w.wake.is_set()  # first: warm stop
    w.signals.handler(signal.SIGINT, None)
    w.signals.act()
    assert w.handback  # second: forced, running tasks are handed back


SCRIPT = """
import os, signal, sys, threading
from pathlib import Path
from fleetq.core.clone import Fleet
from fleetq.worker.daemon import Worker

w = Worker(Fleet(Path(sys.argv[1]), "w"), watch=False)
w.signals.install()
with w.lock:  # the main thread holds the lock, as the loop does, when both signals land
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)
    threading.Event().wait(0.2)
    print("received", len(w.signals.received), flush=True)
w.signals.act()
print("stopping", w.stopping, "handback", w.handback, flush=True)
"""


def test_two_real_signals_while_the_main_thread_holds_the_lock(fleets: Fleets) -> None:
    """The real case: the handler runs in the main thread, which holds the worker's lock."""
    w = fleets.clone("w")
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), str(w.root)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,  # the old handler took the lock here and hung for good
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["received 2", "stopping True handback True"], proc.stdout
