"""Time for liveness: the monotonic clock, marks that survive between processes, and wall-clock jumps.

Leases, fences and heartbeat ages run on the monotonic clock, which a step of the wall clock
(NTP, a person, a suspended VM's catch-up) never moves. Linux's and macOS's monotonic clocks
count from boot for every process alike, so a mark written by one process (`work --once` from
cron, `fleetq reap`) is read by the next as long as the machine has not rebooted: a mark
from another boot is *unknown*, never old (docs/design.md, "Liveness and fencing").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JUMP = 2.0  # seconds: wall and monotonic time may drift apart this much between two looks before it is a jump
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_boot: str | None = None


def mono() -> float:
    return time.monotonic()


def wall() -> float:
    return time.time()


def boot_id() -> str:
    """This boot's identity: Linux's boot id, else the boot time (to 10 s)."""
    global _boot
    if _boot is None:
        try:
            _boot = _BOOT_ID.read_text().strip()
        except OSError:
            import psutil

            _boot = f"boot@{int(psutil.boot_time() // 10) * 10}"
    return _boot


@dataclass(frozen=True)
class Mark:
    """A moment, on both clocks, as kept in a state file."""

    wall: float
    mono: float
    boot: str

    @classmethod
    def now(cls, *, ago: float = 0.0) -> Mark:
        return cls(wall() - ago, mono() - ago, boot_id())

    def plain(self) -> dict[str, Any]:
        return {"at": self.wall, "mono": self.mono, "boot": self.boot}

    @classmethod
    def load(cls, data: Any) -> Mark | None:
        """A mark from a state file; None when it is not one this boot's clock can measure from."""
        if not isinstance(data, dict):
            return None
        try:
            m = cls(float(data["at"]), float(data["mono"]), str(data["boot"]))
        except (KeyError, TypeError, ValueError):
            return None
        if m.boot != boot_id() or m.mono > mono():
            return None  # another boot (or a monotonic clock that went back: the same)
        return m

    def age(self) -> float:
        return max(0.0, mono() - self.mono)

    def jumped(self) -> float:
        """How far the wall clock stepped since this mark (0 within :data:`JUMP`; + forward, - back)."""
        step = (wall() - self.wall) - (mono() - self.mono)
        return step if abs(step) > JUMP else 0.0
