"""The claim protocol under real races: several processes, one bare remote."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from fleetq.core import cas, transitions
from fleetq.core.config import MachineSpec
from fleetq.core.matching import Seat
from fleetq.core.snapshot import Snapshot
from fleetq.core.task import fmt_time, now_utc
from fleetq.git.repo import PushRejected
from support.fleets import Fleets, git

HERE = Path(__file__).parent


def _tasks(n: int, prefix: str = "t") -> list[dict]:
    now = fmt_time(now_utc())
    return [
        {
            "id": f"{prefix}{i:03d}",
            "type": "run_script",
            "title": f"task {i}",
            "created_at": now,
            "payload": {"script": "true"},
        }
        for i in range(n)
    ]


def _transitions(root: Path) -> Counter:
    git(root, "fetch", "-q", "origin")
    log = git(root, "log", "origin/main", "--format=%B%x00")
    counts: Counter = Counter()
    for msg in log.split("\x00"):
        lines = [ln for ln in msg.splitlines() if ln.startswith(("Fleetq-Task:", "Fleetq-Transition:"))]
        for task_line, move_line in zip(lines[::2], lines[1::2]):
            counts[(task_line.split(": ", 1)[1], move_line.split(": ", 1)[1])] += 1
    return counts


@pytest.mark.parametrize("workers,batch", [(4, 1), (5, 3)])
def test_racing_claimers_claim_each_task_exactly_once(fleets: Fleets, tmp_path: Path, workers: int, batch: int) -> None:
    n = 60
    transitions.create(fleets.first, _tasks(n))
    clones = [fleets.clone(f"m{i}") for i in range(workers)]
    procs = []
    for i, c in enumerate(clones):
        out = tmp_path / f"out{i}.json"
        procs.append(
            (
                subprocess.Popen(
                    [
                        sys.executable,
                        str(HERE.parent / "support" / "race_claimer.py"),
                        str(c.root),
                        c.machine,
                        str(batch),
                        str(out),
                    ]
                ),
                out,
            )
        )
    results = []
    for p, out in procs:
        assert p.wait(timeout=180) == 0
        results.append(json.loads(out.read_text()))
    claimed = [tid for r in results for tid in r["claimed"]]
    assert len(claimed) == n, "a task was lost or claimed twice"
    assert sorted(claimed) == sorted(t["id"] for t in _tasks(n))
    assert sum(r["rejected"] for r in results) > 0, "the processes never raced"
    # every transition is in the git log, once
    counts = _transitions(fleets.first.root)
    for t in _tasks(n):
        assert counts[(t["id"], "pending->claimed")] == 1
        assert counts[(t["id"], "claimed->done")] == 1
    snap = fleets.first.snapshot()
    assert len(snap.tasks(["done"])) == n and not snap.tasks(["pending", "claimed"])


def test_a_lost_race_is_replanned_never_rebased(fleets: Fleets) -> None:
    """Two machines plan a claim of the same task on the same head: one lands, the other re-plans."""
    transitions.create(fleets.first, _tasks(1, "x"))
    a, b = fleets.clone("a"), fleets.clone("b")
    seat_a = Seat(MachineSpec("a", capabilities=["run_script"]))
    seat_b = Seat(MachineSpec("b", capabilities=["run_script"]))
    head = a.repo.fetch()
    assert b.repo.fetch() == head
    # b builds its claim commit on the shared head, exactly as a racing worker would ...
    plan_b = transitions.claim_plan(Snapshot(b.repo, head), seat_b, 1, now=now_utc(), grace=0, machine="b")
    assert plan_b is not None
    sha_b = b.repo.commit(b.repo.apply(Snapshot(b.repo, head).tree, plan_b.changes), [head], plan_b.message("b"), "b")
    # ... but a pushes first
    assert [t.id for t in transitions.claim(a, seat_a, 1)] == ["x000"]
    with pytest.raises(PushRejected):
        b.repo.push(sha_b)
    # A rebase of b's commit would replay "pending/x000 -> claimed/x000" onto a head where a already
    # claimed it. fleetq instead re-plans on the new head, where x000 is no longer pending:
    assert transitions.claim(b, seat_b, 1) == []
    counts = _transitions(fleets.first.root)
    assert counts[("x000", "pending->claimed")] == 1
    snap = b.snapshot()
    assert snap.get("x000").claim["machine"] == "a"


def test_batch_claim_is_one_commit(fleets: Fleets) -> None:
    transitions.create(fleets.first, _tasks(5, "b"))
    f = fleets.first
    before = git(f.root, "rev-list", "--count", "origin/main")
    got = transitions.claim(f, Seat(MachineSpec("alpha", capabilities=["run_script"])), 4)
    assert len(got) == 4
    f.repo.fetch()
    assert int(git(f.root, "rev-list", "--count", "origin/main")) == int(before) + 1
    transitions.complete(f, [transitions.Completion(t.id, 1, "done") for t in got])
    assert int(git(f.root, "rev-list", "--count", "origin/main")) == int(before) + 2


def test_completion_is_fenced_by_attempt(fleets: Fleets) -> None:
    """A late result of an earlier attempt is kept as a note and never overrides the live attempt."""
    f = fleets.first
    transitions.create(f, _tasks(1, "f"))
    seat = Seat(MachineSpec("alpha", capabilities=["run_script"]))
    [t] = transitions.claim(f, seat, 1)
    # the claim is orphaned and handed back, then claimed again (attempt 2)
    transitions.transact(
        f, lambda s: transitions.handback_plan(s, {"f000": ("alpha", 1)}, "alpha", "lease expired", now_utc())
    )
    [t2] = transitions.claim(f, seat, 1)
    assert t2.attempts == 2
    [late] = transitions.complete(f, [transitions.Completion("f000", 1, "done", {"exit_code": 0})])
    assert late.status == "stale"
    live = f.snapshot().get("f000")
    assert live.state == "claimed" and live.claim["attempt"] == 2
    assert "late result of attempt 1" in live.data["notes"][-1]["text"]
    [ok] = transitions.complete(f, [transitions.Completion("f000", 2, "done", {"exit_code": 0})])
    assert ok.status == "applied" and f.snapshot().get("f000").state == "done"


def test_person_checkout_is_never_discarded(fleets: Fleets) -> None:
    f = fleets.first
    notes = f.root / "config" / "machines.yaml"
    notes.write_text(notes.read_text() + "# my uncommitted edit\n")
    transitions.create(f, _tasks(2, "p"))
    f.refresh_checkout()
    assert "# my uncommitted edit" in notes.read_text()
    assert not (f.root / "queue" / "pending" / "p000.yaml").exists()  # dirty: not moved
    git(f.root, "checkout", "--", "config/machines.yaml")
    f.refresh_checkout()
    assert (f.root / "queue" / "pending" / "p000.yaml").exists()


def test_unreachable_remote_is_one_clear_error(fleets: Fleets, cli, tmp_path: Path) -> None:
    f = fleets.first
    git(f.root, "remote", "set-url", "origin", str(tmp_path / "gone.git"))
    res = cli("--fleet", f.root, "assign", "x", "--set", "script=true")
    assert res.code == 3 and res.err.count("\n") == 1 and "cannot fetch" in res.err
    res = cli("--fleet", f.root, "queue")
    assert res.code == 0 and "remote unreachable" in res.err


def test_cas_retries_after_rejection(fleets: Fleets) -> None:
    """transact re-plans after a push is rejected and lands on the new head."""
    f = fleets.first
    other = fleets.clone("o")
    calls = []

    def plan(snap):
        calls.append(snap.commit)
        if len(calls) == 1:  # someone else moves the remote between our fetch and our push
            transitions.create(other, _tasks(1, "race"))
        return cas.Plan(changes={"notes.txt": f"after {len(calls)}".encode()}, subject="test")

    cas.transact(f, plan)
    assert len(calls) == 2 and calls[0] != calls[1]
    assert git(f.root, "show", "origin/main:notes.txt") == "after 2"
