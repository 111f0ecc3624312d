"""The tree stays small by itself: workers archive done days older than keep_done_days, once fleet-wide."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from fleetq.core import archive as archiving
from fleetq.core import transitions
from fleetq.core.cas import Plan, transact
from fleetq.core.clone import Fleet
from fleetq.core.config import MachineSpec
from fleetq.core.matching import Seat
from fleetq.core.passplan import pass_plan
from fleetq.core.snapshot import Snapshot
from fleetq.core.task import now_utc
from fleetq.layout import ARCHIVED
from fleetq.trust import signing
from fleetq.trust.checks import diff_trees
from fleetq.trust.survey import survey
from support.fleets import Fleets, git, guarded_fleets
from support.workers import WorkerProc, run_to_end, set_file, tasks

TODAY = dt.date.today()
OLD = [(TODAY - dt.timedelta(days=n)).isoformat() for n in (40, 20)]  # older than the default 14 days
RECENT = [(TODAY - dt.timedelta(days=n)).isoformat() for n in (10, 1)]
ARCHIVED_ID = "8758c0de"  # finished on OLD[0]; `8758` is a unique prefix of it


@pytest.fixture
def guarded(tmp_path: Path) -> Fleets:
    """A fleet whose bare origin runs fleetq's pre-receive hook (as in tests/trust)."""
    return guarded_fleets(tmp_path)


def _finish_on(fleet: Fleet, days: dict[str, list[str]]) -> None:
    """Tasks created in pending, then moved (legally: pending->done) into the given day shards."""
    transitions.create(fleet, [{**d, "id": i} for ids in days.values() for i, d in zip(ids, tasks(len(ids), "x"))])

    def plan(snap: Snapshot) -> Plan:
        p = Plan(subject="test: finish on old days")
        for day, ids in days.items():
            for i in ids:
                ref = snap.locate(i)[0]
                p.changes[ref.loc.path] = None
                p.changes[f"queue/done/{day}/{i}.yaml"] = snap.repo.read_blob(ref.blob)
                p.trailers += [("Fleetq-Task", i), ("Fleetq-Transition", "pending->done")]
        return p

    transact(fleet, plan)


def _seed(fleet: Fleet) -> None:
    _finish_on(
        fleet,
        {
            OLD[0]: [ARCHIVED_ID, "o0b"],
            OLD[1]: ["o1a", "o1b"],
            RECENT[0]: ["r0a"],
            RECENT[1]: ["r1a"],
        },
    )


def _archive_commits(remote: str) -> list[str]:
    out = git(Path(remote), "log", "--format=%H %s", "--grep=^Fleetq-Transition: done->archived", "main")
    return out.splitlines()


def test_two_workers_archive_old_days_once_and_lookups_find_them(guarded: Fleets, cli) -> None:
    f = guarded.first
    _seed(f)
    transitions.create(f, tasks(2, "p"))  # ordinary work for the passes
    beta = guarded.clone("beta")
    ws = [WorkerProc(x, "--once", "--slots", "1") for x in (f, beta)]
    run_to_end(*ws, timeout=60)

    commits = _archive_commits(guarded.remote)
    assert len(commits) == 1, commits  # exactly once fleet-wide
    snap = f.snapshot()
    assert snap.done_days()[-2:] == sorted(RECENT, reverse=True)[-2:]
    assert not set(OLD) & set(snap.done_days())
    assert {ARCHIVED_ID, "o0b"} == snap.archived_ids(OLD[0]) and {"o1a", "o1b"} == snap.archived_ids(OLD[1])
    trailers = git(Path(guarded.remote), "show", "-s", "--format=%B", commits[0].split()[0])
    assert "Fleetq-Transition: done->archived 4 tasks" in trailers
    assert "archived 4 done tasks" in "".join(w.log for w in ws)  # the worker that won says so
    sha = commits[0].split()[0]
    old_tree, new_tree = f.repo.tree_of(f.repo.rev(f"{sha}^")), f.repo.tree_of(sha)
    paths = [c.path for c in diff_trees(f.repo, old_tree, new_tree)]
    assert any(p.startswith(f"{ARCHIVED}/") for p in paths)
    assert signing.needs_signature(f.repo, old_tree, new_tree, paths) is None  # under require_signed too

    res = cli("--fleet", f.root, "log", "8758", "--json")
    assert res.code == 0, res.err
    doc = json.loads(res.out)
    assert doc["id"] == ARCHIVED_ID and doc["events"][-1]["transition"] == "done->archived"

    res = cli("--fleet", f.root, "show", "8758")
    assert res.code == 0, res.err
    assert "archived" in res.out and sha[:10] in res.out
    assert f"git show {sha[:10]}^:queue/done/{OLD[0]}/{ARCHIVED_ID}.yaml" in res.out
    shown = json.loads(cli("--fleet", f.root, "show", "8758", "--json").out)
    assert shown["state"] == "archived" and shown["id"] == ARCHIVED_ID and shown["title"] == "x 0"
    assert shown["archived"]["commit"] == sha and shown["archived"]["day"] == OLD[0]
    last = git(f.root, "show", f"{sha}^:queue/done/{OLD[0]}/{ARCHIVED_ID}.yaml")
    assert "id: 8758c0de" in last
    assert json.loads(cli("--fleet", f.root, "show", "r0a", "--json").out)["state"] == "done"  # the tree first
    found = survey(f.repo, f.repo.rev("refs/remotes/origin/main")).findings
    assert not [x for x in found if x.path.startswith(f"{ARCHIVED}/")], found  # the index is no problem
    assert cli("--fleet", f.root, "show", "nosuch").code != 0


def test_the_hook_checks_the_index(guarded: Fleets) -> None:
    """The remote's hook reads archived/: a worker's index lands, a file that is not one is refused."""
    f = guarded.first
    _seed(f)
    assert archiving.archive(f, OLD[1]) == [OLD[0]]  # by hand: the same change set, with its index
    assert f.snapshot().archived_ids(OLD[0]) == {ARCHIVED_ID, "o0b"}
    with pytest.raises(Exception, match="archive indexes named"):
        set_file(f, f"{ARCHIVED}/notes.txt", "hello\n")
    with pytest.raises(Exception, match="one task id per line"):
        set_file(f, f"{ARCHIVED}/{OLD[1]}.ids", "../../etc/passwd\n")


def test_validate_and_fsck_report_a_bad_index_on_a_remote_without_hooks(fleets: Fleets) -> None:
    f = fleets.first
    set_file(f, f"{ARCHIVED}/{OLD[0]}.ids", "# ok\nabc\nnot an id\n")
    set_file(f, f"{ARCHIVED}/README", "hi\n")
    found = survey(f.repo, f.repo.rev("refs/remotes/origin/main")).findings
    assert sorted(x.path for x in found) == [f"{ARCHIVED}/{OLD[0]}.ids", f"{ARCHIVED}/README"]
    assert f.snapshot().find_archived("ab") == ("abc", OLD[0])  # the good lines still count


def test_keep_done_days_zero_archives_nothing_and_the_setting_is_read(guarded: Fleets) -> None:
    f = guarded.first
    _seed(f)
    set_file(f, "config/fleet.yaml", "lease: 60\nkeep_done_days: 0\n")
    run_to_end(WorkerProc(f, "--once"), timeout=30)
    assert _archive_commits(guarded.remote) == []
    assert set(OLD) <= set(f.snapshot().done_days())
    set_file(f, "config/fleet.yaml", "lease: 60\nkeep_done_days: 30\n")  # only the 40-day-old shard is older
    run_to_end(WorkerProc(f, "--once"), timeout=30)
    assert len(_archive_commits(guarded.remote)) == 1
    days = f.snapshot().done_days()
    assert OLD[0] not in days and OLD[1] in days


def test_a_pass_on_a_fresh_head_finds_nothing_left_to_archive(guarded: Fleets) -> None:
    """The compare-and-swap re-plan: a second worker that lost the race archives nothing again."""
    f = guarded.first
    _seed(f)
    stale = f.snapshot()
    auto = archiving.AutoArchive()
    before = auto.due(stale, 14, now_utc())
    assert before == archiving.cutoff(14, now_utc()) and auto.due(stale, 14, now_utc()) is None  # once per 10 min
    seat = Seat(MachineSpec("alpha", capabilities=["run_script"]))
    kw = dict(machine="alpha", results=[], handbacks={}, orphans={}, seat=seat, free=1, grace=0.0)
    p = pass_plan(stale, **kw, shutdown=False, problems=[], now=now_utc(), archive_before=before)
    assert {f"queue/done/{d}" for d in OLD} <= p.changes.keys() and "archives 4 done tasks" in p.subject
    assert set(archiving.archive(f, before)) == set(OLD)  # another worker got there first
    fresh = f.snapshot()
    again = pass_plan(fresh, **kw, shutdown=False, problems=[], now=now_utc(), archive_before=before)
    assert not again.changes and archiving.landed_count(again) is None
    assert archiving.AutoArchive().due(fresh, 14, now_utc()) is None  # the names alone say: nothing old


def test_a_day_archived_twice_keeps_every_id(guarded: Fleets) -> None:
    """A day archived twice (it grew again after a hand archive) keeps every id in its index."""
    f = guarded.first
    _finish_on(f, {OLD[0]: ["a1"]})
    archiving.archive(f, OLD[1])
    _finish_on(f, {OLD[0]: ["a2"]})
    archiving.archive(f, OLD[1])
    assert f.snapshot().archived_ids(OLD[0]) == {"a1", "a2"}
    assert git(f.root, "ls-tree", "--name-only", "origin/main", f"{ARCHIVED}/").split() == [f"{ARCHIVED}/{OLD[0]}.ids"]
