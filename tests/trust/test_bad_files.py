"""A bad file is that file's problem (issue 14, finding 7): it goes to needs_human or is skipped, with a note
or one log line, and the rest of the pass lands; config values of the wrong type are problems for every
checker and defaults for the worker."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fleetq import yamlio
from fleetq.core import transitions
from fleetq.core.moves import MAX_NEW_BYTES
from fleetq.errors import InvalidTask
from fleetq.git.repo import GitRepo
from fleetq.trust import hooks
from support.fleets import Fleets, git
from support.remotes import SEAT, raw_push
from support.workers import WorkerProc, add, states_of, tasks

BIG = yamlio.MAX_BYTES - 40  # valid as it is; its claim would push it over the limit


def big_task(tid: str, size: int) -> bytes:
    head = f"id: {tid}\ntype: run_script\ntitle: big\npayload:\n  script: 'true'\n  blob: '".encode()
    return head + b"x" * (size - len(head) - 2) + b"'\n"


def test_a_task_near_the_size_limit_is_refused_at_submit_and_by_the_hook(guarded: Fleets, cli) -> None:
    from test_receive import rejected

    data = {**tasks(1, "near")[0], "payload": {"script": "true", "blob": "x" * MAX_NEW_BYTES}}
    with pytest.raises(InvalidTask, match="a new task may be at most"):
        transitions.create(guarded.first, [data])
    res = cli("--fleet", guarded.first.root, "assign", "big", "--set", "script=true", "--set", "blob=" + "x" * BIG)
    assert res.code == 2 and "a new task may be at most" in res.err
    msg = rejected(guarded.first, {"queue/pending/near.yaml": big_task("near", MAX_NEW_BYTES + 100)})
    assert "queue/pending/near.yaml: file is" in msg and "a new task may be at most" in msg
    raw_push(guarded.first, {"queue/pending/fits.yaml": big_task("fits", MAX_NEW_BYTES - 100)})  # room to spare


def test_a_task_whose_claim_cannot_be_written_wedges_no_worker(fleets: Fleets) -> None:
    raw_push(fleets.first, {"queue/pending/big.yaml": big_task("big", BIG)}, "in before the rule")
    hooks.install(GitRepo(fleets.remote), hooks.SERVER_HOOKS)  # then the remote got the hook
    add(fleets.first, tasks(2, "ok", priority=-1))  # the big one comes first
    w = WorkerProc(fleets.clone("w"), "--burst")
    try:
        assert w.wait(60) == 0, w.log
    finally:
        w.stop()
    assert "Traceback" not in w.log and "refused" not in w.log, w.log
    assert states_of(fleets.first) == {"big": "needs_human", "ok000": "done", "ok001": "done"}
    assert w.log.count("its claim cannot be written") == 1, w.log


def test_a_mistyped_field_in_a_running_task_wedges_no_report(fleets: Fleets) -> None:
    f = fleets.first
    add(f, tasks(2, "run"))
    claimed = {t.id: t for t in transitions.claim(f, SEAT, 5)}
    raw = f.snapshot().read("queue/claimed/run000.yaml")
    assert raw is not None
    raw_push(f, {"queue/claimed/run000.yaml": raw + b"priority: high\n"}, "a hand edit, hook-less")
    done = [transitions.Completion(tid, t.attempts, "done", {"exit_code": 0}) for tid, t in claimed.items()]
    transitions.complete(f, done)
    assert {c.task_id: c.status for c in done} == {"run000": "set_aside", "run001": "applied"}
    assert states_of(f) == {"run000": "needs_human", "run001": "done"}
    aside = yamlio.load_safe(f.snapshot().read("queue/needs_human/run000.yaml"))
    assert "the result of attempt 1 on alpha: done, exit 0 cannot be written" in aside["notes"][-1]["text"]
    assert "'priority' must be an integer" in aside["notes"][-1]["text"]
    add(f, tasks(1, "next"))
    assert [t.id for t in transitions.claim(f, SEAT, 5)] == ["next000"]  # and it claims again


FLEET_YAML = "lease: 1m\npoll: fast\nrequire_signed: false\n"
SCHEDULES = (
    "schedules:\n  nightly: run the tests\n  nocron:\n    task: {type: run_script}\n"
    "  good:\n    cron: '* * * * *'\n    task:\n      type: run_script\n      payload: {script: 'true'}\n"
)
EXPECTED = (
    "config/fleet.yaml: lease must be a number of seconds above 0, not '1m'",
    "config/fleet.yaml: poll must be a number of seconds above 0, not 'fast'",
    "config/schedules.yaml: schedule 'nightly' needs a 'cron' expression",
    "config/schedules.yaml: schedule 'nocron' needs a 'cron' expression",
)


def test_wrong_typed_settings_and_odd_schedules_are_problems_for_every_checker(guarded: Fleets, cli) -> None:
    from test_receive import rejected

    msg = rejected(
        guarded.first, {"config/fleet.yaml": FLEET_YAML.encode(), "config/schedules.yaml": SCHEDULES.encode()}
    )
    for line in EXPECTED:
        assert line in msg, msg
    assert "expected a top-level 'schedules:' mapping" in rejected(
        guarded.first, {"config/schedules.yaml": b"schedules: [nightly]\n"}
    )
    root = guarded.first.root
    (root / "config" / "fleet.yaml").write_text(FLEET_YAML)
    (root / "config" / "schedules.yaml").write_text(SCHEDULES)
    res = cli("--fleet", root, "validate", root / "config" / "fleet.yaml", root / "config" / "schedules.yaml")
    assert res.code == 1 and "Traceback" not in res.err
    for line in EXPECTED:
        assert line in res.err + res.out, res.err
    assert cli("--fleet", root, "hooks", "install").code == 0
    git(root, "add", "config/fleet.yaml", "config/schedules.yaml")
    out = subprocess.run(["git", "commit", "-q", "-m", "bad config"], cwd=root, capture_output=True, text=True)
    assert out.returncode != 0
    for line in EXPECTED:
        assert line in out.stderr, out.stderr


def test_a_worker_runs_on_defaults_and_good_schedules_past_bad_config(fleets: Fleets, tmp_path: Path) -> None:
    raw_push(fleets.first, {"config/fleet.yaml": FLEET_YAML.encode(), "config/schedules.yaml": SCHEDULES.encode()})
    add(fleets.first, tasks(1, "t"))
    w = WorkerProc(fleets.clone("w"), "--burst")
    try:
        assert w.wait(60) == 0, w.log
    finally:
        w.stop()
    assert "Traceback" not in w.log, w.log
    assert states_of(fleets.first)["t000"] == "done"
    for line in EXPECTED:
        assert w.log.count(line) == 1, (line, w.log)
