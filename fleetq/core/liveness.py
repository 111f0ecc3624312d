"""The liveness model in one place: the lease, the heartbeat that follows it, and the fence point.

A worker's claims are orphaned once nobody saw its heartbeat change for a ``lease``. Its own
fence kills its running tasks after ``fence_after`` seconds without a landed heartbeat, which
must come before any reaper may act, with room for one more heartbeat before it. So the
heartbeat follows the lease (``lease / 6`` unless set) and a heartbeat over a quarter of the
lease is refused: with it the worker could never hold its lease (``--lease 4`` with the old
fixed 10 s heartbeat never claimed anything).

Each heartbeat announces its worker's lease; a reaper honours the longer of its own and that.
A worker's last heartbeat says ``stopped`` when it exits with nothing running: it is offline
at once, and nobody picks it or waits a lease for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetq.errors import UsageError

HEARTBEAT_SHARE = 6  # the default heartbeat: lease / 6 (60 s lease: every 10 s)
MAX_HEARTBEAT_SHARE = 4  # the longest heartbeat a lease allows: lease / 4
MAX_ANNOUNCED_LEASE = 86400.0  # a heartbeat's own lease is believed up to a day
STOPPED = "stopped"


@dataclass(frozen=True)
class Timing:
    lease: float
    heartbeat: float

    @property
    def fence_after(self) -> float:
        """Seconds without a landed heartbeat after which a worker kills its runs (before anyone may reap)."""
        return self.lease - max(2 * self.heartbeat, self.lease / 4)


def timing(lease: float, heartbeat: float | None = None, *, where: str = "") -> Timing:
    """The lease with its heartbeat (``lease / 6`` when None); a pair that cannot fence is a UsageError."""
    if lease <= 0:
        raise UsageError(f"{where}lease must be more than 0 seconds, not {lease:g}")
    hb = lease / HEARTBEAT_SHARE if heartbeat is None else float(heartbeat)
    if hb <= 0:
        raise UsageError(f"{where}heartbeat must be more than 0 seconds, not {hb:g}")
    if hb > lease / MAX_HEARTBEAT_SHARE:
        raise UsageError(
            f"{where}a {hb:g}s heartbeat cannot hold a {lease:g}s lease: the worker would fence itself before its "
            f"next beat; use a heartbeat of at most {lease / MAX_HEARTBEAT_SHARE:g}s (lease / 4), or leave it out "
            f"(it follows the lease)"
        )
    return Timing(float(lease), hb)


def effective(
    lease_flag: float | None, heartbeat_flag: float | None, settings: dict[str, Any], default_lease: float
) -> Timing:
    """A worker's timing: its flags first, then the fleet's settings (``config/fleet.yaml``).

    A heartbeat from fleet.yaml goes with fleet.yaml's lease: a ``--lease`` flag alone gets the
    heartbeat that follows it. A pair that cannot fence is a UsageError, wherever it comes from
    (the worker refuses bad flags at start, and falls back to ``lease / 6`` for a bad fleet.yaml)."""
    if lease_flag is not None:
        return timing(lease_flag, heartbeat_flag, where="--lease/--heartbeat: ")
    lease = float(settings.get("lease") or default_lease)
    hb = heartbeat_flag if heartbeat_flag is not None else settings.get("heartbeat")
    return timing(lease, None if hb is None else float(hb), where="" if heartbeat_flag is not None else "fleet.yaml: ")


def announced_lease(state: dict[str, Any]) -> float | None:
    """The lease a heartbeat says its worker runs with (None: it says none, or nonsense)."""
    v = state.get("lease")
    if isinstance(v, int | float) and not isinstance(v, bool) and v > 0:
        return min(float(v), MAX_ANNOUNCED_LEASE)
    return None


def alive(state: dict[str, Any], age: float, lease: float, *, own_lease: bool = True) -> bool:
    """Whether a worker whose heartbeat ``state`` is ``age`` seconds old still holds its lease
    (the longer of ``lease`` and the one it announces, unless not ``own_lease``: `reap --force`)."""
    if state.get("state") == STOPPED:
        return False
    return age <= max(lease, (announced_lease(state) or 0.0) if own_lease else 0.0)


def identity_clash(state: dict[str, Any], age: float, lease: float, *, host: str, clone: str) -> str | None:
    """Why this machine name is taken: its live heartbeat comes from another host or clone (None: it is ours)."""
    if not alive(state, age, lease):
        return None
    theirs = (str(state.get("host") or "?"), str(state.get("clone") or "?"))
    if theirs == (host, clone) or (theirs[0] == host and state.get("clone") is None):
        return None
    return (
        f"{state.get('machine') or 'this machine name'} is live on {theirs[0]} ({theirs[1]}), heartbeat {age:.0f}s "
        "ago: pick another --machine name, or pass --force if that machine really moved here"
    )
