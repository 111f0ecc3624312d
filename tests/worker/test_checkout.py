"""The checkout follows the queue (fleetq/git/checkout.py): a command that fetched moves a clean checkout
forward, and one with local edits stays where it is and says it is behind."""

from __future__ import annotations

from pathlib import Path

from fleetq.core.clone import Fleet
from support.fleets import Fleets, git
from support.workers import WorkerProc, add, run_to_end, tasks, wait_for


def _done_elsewhere(fleets: Fleets, person: Fleet) -> tuple[Path, Path]:
    """A task the person's checkout shows pending, then done by a worker on another machine;
    (its pending file, the done shard it went to) in the person's checkout."""
    add(fleets.first, tasks(1, "c"))
    person.snapshot()
    person.refresh_checkout()
    pending = person.root / "queue" / "pending" / "c000.yaml"
    assert pending.exists()
    run_to_end(WorkerProc(fleets.clone("w"), "--burst"))
    return pending, person.root / "queue" / "done"


def test_a_clean_checkout_is_current_after_queue(fleets: Fleets, cli) -> None:
    person = fleets.clone("p")
    pending, done = _done_elsewhere(fleets, person)
    r = cli("--fleet", person.root, "--machine", "p", "queue")
    assert r.code == 0, r.err
    assert not pending.exists()
    assert list(done.glob("*/c000.yaml"))
    assert "behind" not in r.err


def test_local_edits_keep_the_checkout_and_it_says_it_is_behind(fleets: Fleets, cli) -> None:
    person = fleets.clone("p")
    pending, done = _done_elsewhere(fleets, person)
    machines = person.root / "config" / "machines.yaml"
    edited = machines.read_text() + "# a hand edit, not committed yet\n"
    machines.write_text(edited)
    r = cli("--fleet", person.root, "--machine", "p", "queue")
    assert r.code == 0, r.err
    assert pending.exists() and not list(done.glob("*/c000.yaml"))
    assert machines.read_text() == edited
    [line] = [ln for ln in r.err.splitlines() if "behind" in ln]
    assert line.startswith("warning: your checkout is behind the queue by ")
    assert "local changes: commit or stash them, then `git pull --rebase`" in line
    r = cli("--fleet", person.root, "--machine", "p", "status")  # said again by the next command
    assert "behind the queue" in r.err


def test_a_local_commit_keeps_the_checkout_and_it_says_so(fleets: Fleets, cli) -> None:
    person = fleets.clone("p")
    machines = person.root / "config" / "machines.yaml"
    machines.write_text(machines.read_text() + "# a hand edit, committed, not pushed\n")
    git(person.root, "commit", "-qam", "hand edit")
    add(fleets.first, tasks(2, "l"))
    r = cli("--fleet", person.root, "--machine", "p", "queue")
    assert r.code == 0, r.err
    assert "warning: your checkout is behind the queue by 1 commit and has local commits: `git pull --rebase`" in r.err
    assert not (person.root / "queue" / "pending" / "l000.yaml").exists()


def test_a_running_worker_keeps_its_clean_checkout_current(fleets: Fleets) -> None:
    w = fleets.clone("w")
    p = WorkerProc(w, "--slots", "1")
    try:
        wait_for(lambda: "starting" in p.log, 30, what="the worker to start")
        add(fleets.first, tasks(1, "o", target="elsewhere"))  # not for w: only its checkout sees it
        wait_for((w.root / "queue" / "pending" / "o000.yaml").exists, 5, what="w's checkout to show o000")
    finally:
        p.stop()
