"""`fleetq status` counts done tasks from per-day-shard totals cached by tree sha (listing.done_totals)."""

from __future__ import annotations

import json

from fleetq.core import listing, transitions
from fleetq.core.config import MachineSpec
from fleetq.core.matching import Seat
from fleetq.core.states import DONE
from fleetq.core.task import fmt_time, now_utc
from fleetq.fleet import view as fleetview


def _finish(fleet, ids: list[str], agent_cost: float) -> None:  # noqa: ANN001 - a Fleet
    transitions.create(
        fleet,
        [
            {
                "id": i,
                "type": "run_script",
                "title": i,
                "created_at": fmt_time(now_utc()),
                "payload": {"script": "true"},
            }
            for i in ids
        ],
    )
    got = transitions.claim(fleet, Seat(MachineSpec(fleet.machine, capabilities=["run_script"])), len(ids))
    assert sorted(t.id for t in got) == sorted(ids)
    transitions.complete(
        fleet,
        [transitions.Completion(i, 1, DONE, {"exit_code": 0, "agent": "claude", "cost_usd": agent_cost}) for i in ids],
    )


def _row(fleet, name: str, *, consistent: bool = True) -> dict:  # noqa: ANN001
    v = fleetview.open_view(fleet)
    rows = {r["machine"]: r for r in fleetview.status(v)}
    if consistent:
        assert fleetview.queue_counts(v)[DONE] == sum(r["done"] for r in rows.values())
    return rows[name]


def test_done_totals_are_cached_by_shard_and_recounted_when_it_changes(fleets) -> None:  # noqa: ANN001
    fleet = fleets.first
    _finish(fleet, ["a1", "a2", "a3"], 0.25)
    row = _row(fleet, fleet.machine)
    assert (row["done"], row["top_agent"], row["top_agent_runs"], row["cost_usd"]) == (3, "claude", 3, 0.75)

    cache = fleet.state_dir / fleetview.DONE_TOTALS
    data = json.loads(cache.read_text())
    [(sha, entry)] = data["shards"].items()
    assert entry["files"] == 3
    # the cache is what status reads: a doctored entry for the same tree shows through
    entry["totals"][fleet.machine]["n"] = 1000
    cache.write_text(json.dumps(data))
    assert _row(fleet, fleet.machine, consistent=False)["done"] == 1000

    # another task done today changes the shard's tree: recounted from the files
    _finish(fleet, ["a4"], 0.25)
    row = _row(fleet, fleet.machine)
    assert (row["done"], row["cost_usd"]) == (4, 1.0)
    assert sha not in json.loads(cache.read_text())["shards"]

    cache.write_text("{torn")  # a damaged cache only costs a recount
    assert _row(fleet, fleet.machine)["done"] == 4


def test_done_totals_without_a_cache_match_parsing_every_task(fleets) -> None:  # noqa: ANN001
    fleet = fleets.first
    _finish(fleet, ["b1", "b2"], 0.5)
    snap = fleet.snapshot()
    totals = listing.done_totals(snap)
    manual: listing.Totals = {}
    for t in snap.tasks([DONE]):
        listing.tally(manual, t)
    assert totals.machines == manual and totals.files == 2
