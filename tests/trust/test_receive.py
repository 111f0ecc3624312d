"""The server-side pre-receive hook on a real bare repo: each illegal push refused, fleetq's own traffic accepted."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from fleetq.core import transitions
from fleetq.core.archive import archive
from fleetq.core.clone import Fleet
from fleetq.fleet import initfleet
from fleetq.git.repo import HookRejected
from fleetq.trust import hooks
from support.fleets import Fleets, git
from support.remotes import SEAT, done_task, raw_commit, raw_push
from support.workers import WorkerProc, add, run_to_end, states_of, tasks

GOOD = b"id: {tid}\ntype: run_script\ntitle: by hand\npayload:\n  script: 'true'\n"


# -- helpers shared with the other trust tests --


def rejected(fleet: Fleet, changes: dict[str, bytes | None], message: str = "hand edit") -> str:
    """Push a hand-made commit that the hook must refuse; the message the pusher saw."""
    before = fleet.repo.fetch()
    with pytest.raises(HookRejected) as err:
        raw_push(fleet, changes, message)
    assert fleet.repo.fetch() == before, "a refused push must not move main"
    return str(err.value)


# -- the bare remote itself --


def test_prepare_bare_sets_the_remote_up(tmp_path: Path) -> None:
    bare = tmp_path / "r.git"
    msgs = hooks.prepare_bare(bare)
    assert any("pre-receive: installed" in m for m in msgs)
    conf = {
        k: git(bare, "config", k).strip()
        for k in ("receive.denyNonFastForwards", "receive.denyDeletes", "gc.auto", "receive.autogc")
    }
    assert conf == {
        "receive.denyNonFastForwards": "true",
        "receive.denyDeletes": "true",
        "gc.auto": "0",
        "receive.autogc": "false",
    }
    hook = bare / "hooks" / "pre-receive"
    assert hook.stat().st_mode & 0o111 and "fleetq-hook" in hook.read_text()
    assert hooks.prepare_bare(bare)[-1].startswith("pre-receive: updated")  # idempotent


def test_init_bare_then_init_against_it(tmp_path: Path, cli) -> None:
    bare = tmp_path / "srv" / "fleet.git"
    res = cli("init", "--bare", bare)
    assert res.code == 0 and "pre-receive: installed" in res.out and "next, on each machine" in res.out, res.err
    assert cli("init", "--bare", bare, "--remote", "x").code == 2
    res = cli("init", tmp_path / "a", "--remote", bare, "--machine", "a")
    assert res.code == 0, res.err  # the new fleet's first push passed the hook
    fleet = Fleet(tmp_path / "a", "a")
    msg = rejected(fleet, {"queue/pending/x.yaml": b"id: y\n"})
    assert "does not match the file name" in msg


# -- each illegal case, refused with a message the pusher sees --


def test_bad_task_file_is_refused(guarded: Fleets) -> None:
    msg = rejected(guarded.first, {"queue/pending/x1.yaml": b"id: x1\ntype: run_script\npriorty: 2\n"})
    assert "queue/pending/x1.yaml" in msg and "unknown field 'priorty'" in msg and "did you mean 'priority'" in msg
    msg = rejected(guarded.first, {"queue/pending/x2.yaml": b"id: other\n"})
    assert "does not match the file name" in msg
    msg = rejected(guarded.first, {"queue/pending/x3.yaml": b"id: [unclosed\n"})
    assert "invalid YAML" in msg
    msg = rejected(guarded.first, {"queue/bogus/x4.yaml": GOOD.replace(b"{tid}", b"x4")})
    assert "'bogus' is not a state directory" in msg


def test_bad_config_file_is_refused(guarded: Fleets) -> None:
    msg = rejected(guarded.first, {"config/machines.yaml": b"machines:\n  alpha:\n    slots: lots\n"})
    assert "config/machines.yaml" in msg and "slots must be a positive integer" in msg


@pytest.mark.parametrize(
    "path,body,reason",
    [
        ("config/schedules.yaml", b"schedules:\n  n:\n    cron: '99 * * * *'\n", "bad cron expression '99 * * * *'"),
        ("config/machines.yaml", b"machines:\n  alpha:\n    capabilites: [x]\n", "did you mean 'capabilities'?"),
        ("queue/pending/d1.yaml", GOOD.replace(b"{tid}", b"d1") + b"depends_on: [nope]\n", "depends on nope"),
        ("queue/pending/q1.yaml", GOOD.replace(b"{tid}", b"q1") + b"requires: [quantum]\n", "capability quantum"),
        ("queue/pending/t1.yaml", GOOD.replace(b"{tid}", b"t1") + b"target: nosuchbox\n", "unknown machine"),
        ("queue/pending/a1.yaml", b"id: a1\ntype: agent_run\nagent: nosuchagent\n", "agent nosuchagent is neither"),
    ],
)
def test_what_validate_reports_is_refused(guarded: Fleets, path: str, body: bytes, reason: str) -> None:
    msg = rejected(guarded.first, {path: body})
    assert path in msg and reason in msg, msg


def test_dependencies_on_archived_or_pushed_together_tasks_are_accepted(guarded: Fleets) -> None:
    f = guarded.first
    done_task(f, "arch")
    assert archive(f, time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400)))
    raw_push(
        f,
        {
            "queue/pending/after.yaml": GOOD.replace(b"{tid}", b"after") + b"depends_on: [arch, first]\n",
            "queue/pending/first.yaml": GOOD.replace(b"{tid}", b"first"),
        },
    )
    assert states_of(f) == {"after": "pending", "first": "pending"}


def test_secrets_and_broken_trust_files_are_refused(guarded: Fleets) -> None:
    f = guarded.first
    body = (
        b"id: leak\ntype: run_script\npayload:\n  script: \"curl -H 'Authorization: Bearer abcdefghijklmnop1234' x\"\n"
    )
    msg = rejected(f, {"queue/pending/leak.yaml": body})
    assert "looks like it carries a secret (abcdef...)" in msg and "environment variable" in msg
    ok = b"id: ref\ntype: run_script\npayload:\n  script: 'curl -H \"Authorization: Bearer $API_TOKEN\" x'\n"
    raw_push(f, {"queue/pending/ref.yaml": ok})  # naming the variable is the way
    msg = rejected(f, {"config/allowed_signers": b"alice is trusted\n"})
    assert "config/allowed_signers:1: expected 'principal [options] KEYTYPE BASE64KEY'" in msg
    text = f.snapshot().read("config/fleet.yaml").replace(b"require_signed: false", b"require_signed: ture")
    msg = rejected(f, {"config/fleet.yaml": text})
    assert "require_signed must be true or false" in msg


def test_a_task_admitted_before_a_rule_still_moves(tmp_path: Path) -> None:
    """Only new problems are refused: fleetq's transitions of an old, now-refused task still land."""
    fleet, remote = initfleet.init(tmp_path / "fleet", machine="alpha")  # no hook yet
    body = b"id: old\ntype: run_script\npayload:\n  script: echo token=abcdefgh12345678\n"
    raw_push(fleet, {"queue/pending/old.yaml": body})
    hooks.prepare_bare(Path(remote))
    [t] = transitions.claim(fleet, SEAT, 1)
    transitions.complete(fleet, [transitions.Completion("old", t.attempts, "done", {"exit_code": 0})])
    assert states_of(fleet) == {"old": "done"}
    edited = fleet.snapshot().read(fleet.snapshot().locate("old")[0].loc.path)
    with pytest.raises(HookRejected, match="invalid YAML"):  # a new problem in the same file is still refused
        raw_push(fleet, {fleet.snapshot().locate("old")[0].loc.path: edited + b"x: [\n"})


def test_a_task_already_in_two_places_can_still_move(tmp_path: Path) -> None:
    fleet, remote = initfleet.init(tmp_path / "fleet", machine="alpha")  # no hook yet
    raw_push(
        fleet,
        {
            "queue/pending/twin.yaml": GOOD.replace(b"{tid}", b"twin"),
            "queue/failed/twin.yaml": GOOD.replace(b"{tid}", b"twin"),
        },
    )
    hooks.prepare_bare(Path(remote))
    assert transitions.claim(fleet, SEAT, 1) == []  # a duplicated task is never run again
    # ... but a legal move of one copy still lands through the hook
    body = fleet.snapshot().read("queue/pending/twin.yaml")
    raw_push(fleet, {"queue/pending/twin.yaml": None, "queue/needs_human/twin.yaml": body})
    assert set(fleet.snapshot().refs("needs_human")) and fleet.snapshot().read("queue/pending/twin.yaml") is None
    with pytest.raises(HookRejected, match="would be in 3 places"):
        raw_push(fleet, {"queue/pending/twin.yaml": body})


def test_done_to_claimed_is_refused(guarded: Fleets) -> None:
    f = guarded.first
    path = done_task(f, "d1")
    body = f.snapshot().read(path)
    msg = rejected(f, {path: None, "queue/claimed/d1.yaml": body})
    assert "done -> claimed is not a legal transition" in msg
    # done -> pending (a re-run) is legal
    raw_push(f, {path: None, "queue/pending/d1.yaml": body})
    assert states_of(f)["d1"] == "pending"


def test_deleting_a_task_file_is_refused(guarded: Fleets) -> None:
    f = guarded.first
    transitions.create(f, [{"id": "del1", "type": "run_script", "payload": {"script": "true"}}])
    msg = rejected(f, {"queue/pending/del1.yaml": None})
    assert "queue/pending/del1.yaml deleted" in msg and "fleetq cancel" in msg


def test_task_in_two_states_is_refused(guarded: Fleets) -> None:
    f = guarded.first
    transitions.create(f, [{"id": "two", "type": "run_script", "payload": {"script": "true"}}])
    body = f.snapshot().read("queue/pending/two.yaml")
    msg = rejected(f, {"queue/failed/two.yaml": body})
    assert "task two would be in 2 places" in msg
    msg = rejected(f, {"queue/claimed/new1.yaml": GOOD.replace(b"{tid}", b"new1")})
    assert "a new task starts in pending/" in msg


def test_history_rewrite_and_deletion_are_refused(guarded: Fleets) -> None:
    f = guarded.first
    transitions.create(f, [{"id": "keep", "type": "run_script", "payload": {"script": "true"}}])
    head = f.repo.fetch()
    # a commit beside the head (its parent is the head's parent): pushing it rewrites history
    parent = f.repo.log([], rev=head)[-2].sha
    side = raw_commit(f, {"queue/pending/side.yaml": GOOD.replace(b"{tid}", b"side")}, parent=parent)
    with pytest.raises(HookRejected) as err:
        f.repo.push(side, force=True)
    assert "rewrites main's history" in str(err.value)
    unrelated = raw_commit(f, {"README.md": b"a different history\n"}, parent=None)
    with pytest.raises(HookRejected):
        f.repo.push(unrelated, force=True)
    out = subprocess.run(["git", "push", "origin", ":main"], cwd=f.root, capture_output=True, text=True)
    assert out.returncode != 0
    assert f.repo.fetch() == head


def test_the_pusher_sees_the_reason_on_a_real_git_push(guarded: Fleets) -> None:
    root = guarded.first.root
    (root / "queue" / "pending" / "hand.yaml").write_text("id: hand\ntype: run_script\npriority: high\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "a hand-written task")
    out = subprocess.run(["git", "push", "origin", "main"], cwd=root, capture_output=True, text=True)
    assert out.returncode != 0
    assert "remote: fleetq: queue/pending/hand.yaml: 'priority' must be an integer, not str" in out.stderr
    assert "remote: fleetq: push rejected: 1 problem(s)" in out.stderr
    assert "pre-receive hook declined" in out.stderr


def test_heartbeat_refs_are_force_pushed_freely(guarded: Fleets) -> None:
    f = guarded.first
    a = raw_commit(f, {"state.yaml": b"seq: 1\n"}, parent=None)
    b = raw_commit(f, {"state.yaml": b"seq: 2\n"}, parent=None)
    f.repo.push_refs([f"+{a}:refs/fleetq/machines/alpha"])
    f.repo.push_refs([f"+{b}:refs/fleetq/machines/alpha"])  # not a fast-forward: fine for heartbeats
    assert git(Path(guarded.remote), "rev-parse", "refs/fleetq/machines/alpha").strip() == b


# -- fleetq's own traffic lands --


def test_fleetq_traffic_passes_the_hook(guarded: Fleets, cli) -> None:
    f = guarded.first
    root = f.root
    w1, w2 = guarded.clone("w1"), guarded.clone("w2")
    add(f, tasks(8, "ok"))
    procs = [WorkerProc(c, "--burst", "--slots", "2") for c in (w1, w2)]
    run_to_end(*procs, timeout=90)
    for p in procs:
        assert "hook" not in p.log and "refused" not in p.log, p.log
    states = states_of(f)
    assert all(states[f"ok{i:03d}"] == "done" for i in range(8)), states
    # a person's commands: assign, cancel, resolve, archive
    a = cli("--fleet", root, "assign", "later", "--set", "script=true")
    assert a.code == 0, a.err
    tid = a.out.strip()
    assert cli("--fleet", root, "cancel", tid).code == 0
    assert cli("--fleet", root, "resolve", tid, "pending").code == 0
    r = cli("--fleet", root, "resolve", tid, "done", "--json")
    assert r.code == 0 and json.loads(r.out)[0]["to"] == "done", r.err
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
    r = cli("--fleet", root, "archive", "--before", tomorrow)
    assert r.code == 0 and "archived 1 day" in r.out, r.err
    assert states_of(f) == {}
    # every one of those commits is on the guarded remote
    subjects = git(Path(guarded.remote), "log", "--format=%s", "main")
    assert "archive done before" in subjects and "claims" in subjects and "reports" in subjects
