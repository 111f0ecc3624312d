"""One checker, one view: validate, queue, fsck, pre-commit and pre-receive report the same problems."""

from __future__ import annotations

import json
from pathlib import Path

from fleetq.core import transitions
from fleetq.fleet import initfleet
from fleetq.trust import hooks
from support.fleets import Fleets, git
from support.remotes import raw_push
from support.workers import states_of

TASK = "id: {tid}\ntype: run_script\ntitle: {tid}\npayload:\n  script: 'true'\n"
CRON = (
    "schedules:\n  nightly:\n    cron: '99 * * * *'\n    task:\n      type: run_script\n"
    "      payload:\n        script: 'true'\n"
)
TYPO = "machines:\n  alpha:\n    capabilites: [run_script]\n"
# What the other checkers must find after someone pushed all of it past no hook, by a phrase of each.
DAMAGE = {
    "config/schedules.yaml": (CRON, "schedule 'nightly': bad cron expression '99 * * * *'"),
    "config/machines.yaml": (TYPO, "machine 'alpha': unknown key 'capabilites' (did you mean 'capabilities'?)"),
    "queue/pending/dang.yaml": (TASK.format(tid="dang") + "depends_on: [nope]\n", "depends on nope, which does not"),
    "queue/bad_path.yaml": (TASK.format(tid="bad_path"), "queue/bad_path.yaml: 'bad_path.yaml' is not a state"),
    "queue/pending/theirs.yaml": ("id: theirs\ntype: run_script\nprioritty: 1\n", "unknown field 'prioritty'"),
}


def _paths(doc: dict) -> set[str]:
    return {p["path"] for p in doc["problems"]}


def test_every_checker_reports_what_someone_else_pushed(fleets: Fleets, cli) -> None:
    """alpha's checkout is stale: the files are only on the remote, as a colleague pushed them."""
    alpha, beta = fleets.first, fleets.clone("beta")
    raw_push(beta, {path: text.encode() for path, (text, _) in DAMAGE.items()})
    assert not (alpha.root / "queue" / "pending" / "theirs.yaml").exists()
    queue, validate = cli("--fleet", alpha.root, "queue"), cli("--fleet", alpha.root, "validate")
    assert queue.code == 0 and validate.code == 1
    fsck = cli("--fleet", alpha.root, "fsck")
    for path, (_, phrase) in DAMAGE.items():
        for name, res in (("queue", queue.err), ("validate", validate.err), ("fsck", fsck.out)):
            assert phrase in res and path in res, f"{name} misses {path}: {res}"
    q = json.loads(cli("--fleet", alpha.root, "queue", "--json").out)
    v = json.loads(cli("--fleet", alpha.root, "validate", "--json").out)
    assert _paths(q) == _paths(v) == set(DAMAGE)
    assert {p["kind"] for p in v["problems"]} == {"bad_config", "dangling_dep", "misplaced", "invalid"}
    # the person's own uncommitted version of a file overrides the remote's
    (alpha.root / "queue" / "pending" / "theirs.yaml").write_text(TASK.format(tid="theirs"))
    v = json.loads(cli("--fleet", alpha.root, "validate", "--json").out)
    assert _paths(v) == set(DAMAGE) - {"queue/pending/theirs.yaml"}
    # given paths, validate reports only those (in the context of the remote's head)
    res = cli("--fleet", alpha.root, "validate", str(alpha.root / "queue" / "pending" / "theirs.yaml"))
    assert res.code == 0 and "1 files checked, 0 problems" in res.out, res.err


def test_validate_with_the_remote_unreachable_checks_the_last_fetch(fleets: Fleets, cli) -> None:
    root = fleets.first.root
    (root / "queue" / "pending" / "mine.yaml").write_text("id: mine\nbogus: 1\n")
    git(root, "remote", "set-url", "origin", str(root.parent / "gone.git"))
    res = cli("--fleet", root, "validate")
    assert res.code == 1 and "remote unreachable: checked against the last fetch" in res.err
    assert "queue/pending/mine.yaml: unknown field 'bogus'" in res.err


def test_a_task_admitted_before_the_fleet_changed_still_moves(tmp_path: Path, cli) -> None:
    """A pending task nothing can run (pushed before the hook) is still cancelled and re-queued through it:
    only a change that asks for something new is judged against the fleet."""
    fleet, remote = initfleet.init(tmp_path / "fleet", machine="alpha")  # no hook yet
    body = TASK.format(tid="old") + "requires: [quantum]\ndepends_on: [nowhere]\n"
    raw_push(fleet, {"queue/pending/old.yaml": body.encode()})
    hooks.prepare_bare(Path(remote))
    assert cli("--fleet", fleet.root, "cancel", "old").code == 0
    assert states_of(fleet) == {"old": "failed"}
    res = cli("--fleet", fleet.root, "validate")
    assert "depends on nowhere, which does not exist" in res.err
    assert cli("--fleet", fleet.root, "resolve", "old", "pending").code == 0
    assert states_of(fleet) == {"old": "pending"}
    transitions.create(fleet, [{"id": "new", "type": "run_script", "payload": {"script": "true"}}])
    assert states_of(fleet)["new"] == "pending"  # an ordinary new task lands


def test_done_shards_are_read_once_and_again_when_they_change(fleets: Fleets, cli) -> None:
    f = fleets.first
    bad = "queue/done/2024-01-01/old.yaml"
    raw_push(
        f, {bad: b"id: old\n\tbroken: yaml\n", "queue/done/2024-01-02/fine.yaml": TASK.format(tid="fine").encode()}
    )
    assert bad in cli("--fleet", f.root, "validate").err
    cache = f.state_dir / "checked-shards.json"
    doc = json.loads(cache.read_text())
    assert len(doc["shards"]) == 2
    doc["shards"] = {sha: [] for sha in doc["shards"]}  # doctored: what the cache says is what is reported
    cache.write_text(json.dumps(doc))
    assert bad not in cli("--fleet", f.root, "queue").err
    raw_push(f, {"queue/done/2024-01-01/other.yaml": TASK.format(tid="other").encode()})  # a new shard sha
    assert bad not in cli("--fleet", f.root, "queue").err  # queue reads no done shard: names only
    assert bad in cli("--fleet", f.root, "validate").err  # validate reads the changed shard again ...
    assert bad in cli("--fleet", f.root, "queue").err  # ... and queue reports what validate found
