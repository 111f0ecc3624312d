"""A claimer process for the race tests: claim and complete until the queue is empty.

usage: race_claimer.py CLONE MACHINE BATCH OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fleetq.core import cas, transitions
from fleetq.core.clone import Fleet
from fleetq.core.config import MachineSpec
from fleetq.core.matching import Seat
from fleetq.errors import Conflict


def main() -> None:
    clone, machine, batch, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    fleet = Fleet(Path(clone), machine)
    seat = Seat(MachineSpec(machine, capabilities=["run_script"]))
    claimed: list[str] = []
    idle = 0
    while idle < 2:
        try:
            got = transitions.claim(fleet, seat, batch)
        except Conflict:  # lost too many races in a row: a worker just tries again next pass
            continue
        if not got:
            idle += 1
            continue
        idle = 0
        claimed += [t.id for t in got]
        results = [transitions.Completion(t.id, t.attempts, "done", {"exit_code": 0}) for t in got]
        while True:  # a worker keeps results in its journal until they land
            try:
                transitions.complete(fleet, results)
                break
            except Conflict:
                continue
    out.write_text(json.dumps({"claimed": claimed, "pushes": cas.STATS.pushes, "rejected": cas.STATS.rejected}))


if __name__ == "__main__":
    main()
