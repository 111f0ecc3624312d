"""The worker's loop while the remote is down (or the clone is locked): back off, and say so sparingly.

A pass that fails to reach the remote waits 1 s before the next, then 2, 4, 8... up to a cap
(a quarter of the lease, at least the poll interval, at most 30 s: back within that of the
network, so heartbeats resume well inside the fence). A wake-up still runs a pass at once (a run
that ended, a file dropped), without growing the wait. One log line when the outage starts, one
per backoff step, and one when the remote answers again, rather than one per attempt: a worker
cut off for a day logs a handful of lines, not one every 50 ms.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fleetq.errors import FleetqError, RemoteError
from fleetq.git.netcall import RemoteTimeout

log = logging.getLogger("fleetq.worker.outage")

FIRST = 1.0  # seconds before the pass after the first failure
CAP = 30.0  # the longest wait between two passes while the remote is down


class Outage:
    """Whether the remote answered the last pass, and how long the loop waits before the next."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.delay = 0.0  # seconds the loop sleeps before the next pass; 0 while the remote answers
        self.since: float | None = None  # monotonic time of the first failed pass
        self._stepped = 0.0  # when the delay last grew
        self.failures = 0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, e: FleetqError, *, cap: float = CAP) -> None:
        """A pass could not reach the remote (or use the clone): once a whole wait went by without an
        answer, the next is twice as long, up to ``cap`` (a pass a wake-up ran does not count)."""
        now = self._clock()
        self.failures += 1
        if self.since is None:
            self.since = self._stepped = now
            self.delay = min(FIRST, cap)
            what = "remote unreachable: " if isinstance(e, RemoteError | RemoteTimeout) else ""
            log.warning("%s%s (results stay in the journal); next try in %gs", what, e, self.delay)
        elif self.delay < cap and now - self._stepped >= self.delay:
            self.delay, self._stepped = min(cap, self.delay * 2), now
            log.warning("still failing after %d tries (%s); next try in %gs", self.failures, e, self.delay)

    def answered(self) -> None:
        """A pass reached the remote: back to the normal timer."""
        if self.since is not None:
            down = self._clock() - self.since
            log.info("the remote answers again (down %.0fs, %d failed passes)", down, self.failures)
        self.delay, self.since, self.failures = 0.0, None, 0
