"""One racing claimer for the throughput benchmark: claim (no run) until the backlog is gone.

usage: claim_racer.py CLONE MACHINE BATCH START_AT OUT
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from fleetq.core import cas, transitions
from fleetq.core.clone import Fleet
from fleetq.core.config import MachineSpec
from fleetq.core.matching import Seat
from fleetq.errors import Conflict


def main() -> None:
    clone, machine, batch, start_at, out = (
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        float(sys.argv[4]),
        Path(sys.argv[5]),
    )
    fleet = Fleet(Path(clone), machine)
    seat = Seat(MachineSpec(machine, capabilities=["run_script"]))
    while time.time() < start_at:
        time.sleep(0.001)
    n = 0
    while True:
        try:
            got = transitions.claim(fleet, seat, batch)
        except Conflict:
            continue
        if not got:
            break
        n += len(got)
    out.write_text(
        json.dumps({"claimed": n, "end": time.time(), "pushes": cas.STATS.pushes, "rejected": cas.STATS.rejected})
    )


if __name__ == "__main__":
    main()
