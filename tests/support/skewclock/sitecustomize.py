"""Steps the wall clock of a real `fleetq work` process, as NTP or a person would (tests/worker/test_clocks.py).

On PYTHONPATH with ``FLEETQ_TEST_SKEW_FILE`` set, ``time.time`` (and ``time.time_ns``) return the
real time plus the number of seconds in that file, re-read on every call; ``time.monotonic`` is left
alone, as a real clock step leaves it. libfaketime would do the same for the whole process tree, but
libfaketime 0.9.10 breaks Python's ``time.sleep`` (EINVAL) when the monotonic clock is not faked.
"""

import os
import time

_path = os.environ.get("FLEETQ_TEST_SKEW_FILE")
if _path:
    _real, _real_ns = time.time, time.time_ns

    def _skew() -> float:
        try:
            with open(_path) as f:
                return float(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0.0

    time.time = lambda: _real() + _skew()
    time.time_ns = lambda: _real_ns() + int(_skew() * 1e9)
