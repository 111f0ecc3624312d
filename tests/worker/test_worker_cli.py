"""The worker-side commands: `reap`, `logs`, `schedule add|list|rm`, and `work --once` from the CLI."""

from __future__ import annotations

import json
import time

from fleetq.core import transitions
from fleetq.core.config import MachineSpec
from fleetq.core.heartbeat import beat
from fleetq.core.matching import Seat
from support.fleets import Fleets
from support.workers import add, set_file, tasks


def test_reap_hands_back_a_silent_machines_claims(fleets: Fleets, cli) -> None:
    ghost = fleets.clone("ghost")
    add(fleets.first, tasks(2, "z", max_attempts=1) + tasks(1, "y"))
    seat = Seat(MachineSpec("ghost", capabilities=["run_script"]))
    assert len(transitions.claim(ghost, seat, 3)) == 3
    beat(ghost, {"seq": 1, "running": []})  # one heartbeat, then silence
    # heartbeat stamps have one-second resolution: a 3 s lease leaves room for a slow test machine
    set_file(fleets.first, "config/fleet.yaml", "lease: 3\n")
    res = cli("--fleet", fleets.first.root, "reap")
    assert res.code == 0 and "no orphaned claims" in res.out  # just beat: alive
    time.sleep(3.5)
    res = cli("--fleet", fleets.first.root, "reap", "--json")
    moves = {m["id"]: m["to"] for m in json.loads(res.out)}
    assert moves == {"z000": "failed", "z001": "failed", "y000": "pending"}  # y has attempts left
    t = fleets.first.snapshot().get("y000")
    assert "orphaned: ghost silent for" in t.data["notes"][-1]["text"]


def test_reap_orphans_claims_of_a_machine_that_never_beat(fleets: Fleets, cli) -> None:
    ghost = fleets.clone("neverbeat")
    add(fleets.first, tasks(1, "n"))
    transitions.claim(ghost, Seat(MachineSpec("neverbeat", capabilities=["run_script"])), 1)
    set_file(fleets.first, "config/fleet.yaml", "lease: 1\n")
    assert "no orphaned claims" in cli("--fleet", fleets.first.root, "reap").out  # first sighting
    time.sleep(1.3)
    res = cli("--fleet", fleets.first.root, "reap")
    assert "n000: claimed -> pending" in res.out


def test_work_once_and_logs(fleets: Fleets, cli) -> None:
    root = fleets.first.root
    tid = cli("--fleet", root, "assign", "hello", "--set", "script=echo out-$FLEETQ_ATTEMPT; echo err >&2").out.strip()
    assert cli("--fleet", root, "work", "--once", "-q").code == 0
    shown = json.loads(cli("--fleet", root, "show", tid, "--json").out)
    assert shown["state"] == "done" and shown["result"]["stdout_tail"].strip() == "out-1"
    res = cli("--fleet", root, "logs", tid[:5])
    assert res.code == 0 and "out-1" in res.out and "err" in res.out
    other = fleets.clone("other")
    res = cli("--fleet", other.root, "logs", tid)  # elsewhere: the result's tails, and where the full log is
    assert res.code == 0 and "out-1" in res.out and "err" in res.out and "the full log is on alpha" in res.err


def test_schedule_add_list_rm(fleets: Fleets, cli) -> None:
    root = fleets.first.root
    (root / "config" / "schedules.yaml").exists()
    res = cli(
        "--fleet",
        root,
        "schedule",
        "add",
        "nightly",
        "0 3 * * *",
        "run",
        "tests",
        "--tz",
        "Europe/Copenhagen",
        "--type",
        "run_script",
        "--set",
        "script=make test",
    )
    assert res.code == 0 and "next fire" in res.out
    rows = json.loads(cli("--fleet", root, "schedule", "list", "--json").out)
    assert rows[0]["name"] == "nightly" and rows[0]["timezone"] == "Europe/Copenhagen"
    assert rows[0]["next"].endswith(("02:00Z", "01:00Z"))  # 03:00 in Copenhagen
    text = (root / "config" / "schedules.yaml").read_text()
    assert "# Cron-style schedules" in text and "make test" in text  # comments kept
    assert cli("--fleet", root, "schedule", "add", "nightly", "0 3 * * *", "x").code == 2  # exists
    assert "bad cron" in cli("--fleet", root, "schedule", "add", "bad", "not cron", "x").err
    assert (
        "unknown time zone" in cli("--fleet", root, "schedule", "add", "tz", "* * * * *", "x", "--tz", "Mars/Base").err
    )
    assert cli("--fleet", root, "schedule", "rm", "nightly").code == 0
    assert json.loads(cli("--fleet", root, "schedule", "list", "--json").out) == []
    assert cli("--fleet", root, "schedule", "rm", "nightly").code == 2


def test_a_change_seen_after_a_long_gap_is_dated_by_its_own_stamp(fleets: Fleets, monkeypatch) -> None:
    """Nobody looked for 10 minutes; a machine beat once 8 minutes ago and died: it is not fresh."""
    import datetime as dt

    from fleetq import yamlio
    from fleetq.core import clock, heartbeat

    ghost = fleets.clone("ghost")
    obs = heartbeat.Observer(fleets.first)
    beat(ghost, {"seq": 1})
    assert obs.read()["ghost"].age < 5  # a first sighting of a fresh beat
    seen = yamlio.read_file(obs.path)  # as if that look, and the beat it saw, were 10 and 11 minutes ago
    seen["#last_read"] = clock.Mark.now(ago=600).plain()
    seen["ghost"]["stamp"] -= 660
    yamlio.write_file(obs.path, seen)
    eight_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=8)
    monkeypatch.setattr(heartbeat, "now_utc", lambda: eight_ago)
    beat(ghost, {"seq": 2})
    b = obs.read()["ghost"]
    assert 470 < b.age < 500 and not b.alive(60)
    monkeypatch.undo()
    beat(ghost, {"seq": 3})  # watched change right after a recent look: our clock dates it
    b = obs.read()["ghost"]
    assert b.observed and b.age < 5
