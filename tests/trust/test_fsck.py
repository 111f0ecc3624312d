"""fsck finds seeded corruption (pushed with git plumbing to a remote with no hook) and repairs what is safe."""

from __future__ import annotations

import json
import time
from pathlib import Path

from fleetq.core import transitions
from fleetq.core.archive import archive
from fleetq.trust import hooks
from support.fleets import Fleets, git
from support.remotes import done_task, raw_push
from support.workers import states_of

TASK = "id: {tid}\ntype: run_script\ntitle: {tid}\npayload:\n  script: 'true'\n"
OLD_CLAIM = (
    "id: {tid}\ntype: run_script\nattempts: 1\npayload:\n  script: 'true'\n"
    "claim:\n  machine: phantom\n  at: '{at}'\n  attempt: 1\n"
)


def seed(fleets: Fleets) -> None:
    """Every kind of damage fsck knows, on the remote's main."""
    f = fleets.first
    done_task(f, "arch")
    tomorrow = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86400))
    assert archive(f, tomorrow)
    transitions.create(f, [{"id": "dup", "type": "run_script", "payload": {"script": "true"}}])
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    raw_push(
        f,
        {
            "queue/done/2024-01-01/dup.yaml": TASK.format(tid="dup").encode(),
            "queue/pending/idm.yaml": TASK.format(tid="wrong").encode(),
            "queue/pending/bad.yaml": b"id: [bad\n",
            "queue/pending/sub/mis.yaml": TASK.format(tid="mis").encode(),
            "queue/bogus/notes.txt": b"\xff\xfe not even text",
            "queue/claimed/ghost1.yaml": OLD_CLAIM.format(tid="ghost1", at="2020-01-01T00:00:00Z").encode(),
            "queue/claimed/ghost2.yaml": OLD_CLAIM.format(tid="ghost2", at=now).encode(),
            "queue/pending/dang.yaml": (TASK.format(tid="dang") + "depends_on: [nope]\n").encode(),
            "queue/pending/dep2.yaml": (TASK.format(tid="dep2") + "depends_on: [arch]\n").encode(),
            "queue/done/2024-01-03/olddone.yaml": b"id: olddone\n\tbroken: yaml\n",
            "config/schedules.yaml": b"schedules: [unclosed\n",
        },
        "seed damage",
    )


def test_fsck_finds_every_seeded_problem(fleets: Fleets, cli) -> None:
    seed(fleets)
    root = fleets.first.root
    res = cli("--fleet", root, "fsck")
    assert res.code == 1
    for needle in (
        "duplicate",
        "task dup is in 2 places",
        "id_mismatch",
        "id 'wrong' does not match the file name 'idm.yaml'",
        "invalid",
        "queue/pending/bad.yaml",
        "misplaced",
        "queue/pending/sub/mis.yaml",
        "queue/bogus/notes.txt",
        "ghost_claim",
        "claimed by phantom, which has never sent a heartbeat",
        "dangling_dep",
        "depends on nope, which does not exist",
        "depends on arch, which was done and archived",
        "bad_config",
        "config/schedules.yaml",
        "queue/done/2024-01-03/olddone.yaml",
    ):
        assert needle in res.out, needle
    data = json.loads(cli("--fleet", root, "fsck", "--json").out)
    kinds = {i["kind"] for i in data["issues"]}
    assert kinds == {"duplicate", "id_mismatch", "invalid", "misplaced", "ghost_claim", "dangling_dep", "bad_config"}
    assert data["fixed"] == [] and len(data["remaining"]) == len(data["issues"])
    by_path = {i["path"]: i for i in data["issues"]}
    assert by_path["queue/claimed/ghost2.yaml"]["fix"] is None  # too fresh to be sure
    assert by_path["queue/done/2024-01-03/olddone.yaml"]["fix"] is None  # done is history: report only


def test_fsck_fix_repairs_each_in_its_own_commit_through_the_hook(fleets: Fleets, cli) -> None:
    seed(fleets)
    f = fleets.first
    hooks.prepare_bare(Path(fleets.remote))  # from now on every repair must also pass the server's checks
    before = f.repo.fetch()
    res = cli("--fleet", f.root, "fsck", "--fix", "--json")
    assert res.code == 1, res.err  # what cannot be repaired safely remains
    data = json.loads(res.out)
    assert data["failed"] == [], data["failed"]
    remaining = {(i["kind"], i["path"]) for i in data["remaining"]}
    assert remaining == {
        ("bad_config", "config/schedules.yaml"),
        ("ghost_claim", "queue/claimed/ghost2.yaml"),
        ("invalid", "queue/done/2024-01-03/olddone.yaml"),
    }
    commits = git(f.root, "log", "--format=%H", f"{before}..origin/main").split()
    assert len(commits) == len(data["fixed"]) == 8
    for sha in commits:
        body = git(f.root, "log", "-1", "--format=%B", sha)
        assert body.startswith("fleetq fsck:") and "Fleetq-Fsck: repair" in body and len(body.splitlines()) > 4
    states = states_of(f)
    assert states["dup"] == "done" and states["idm"] == "pending" and states["ghost1"] == "pending"
    assert states["bad"] == "needs_human" and states["mis"] == "needs_human" and states["notes.txt"] == "needs_human"
    assert states["dang"] == "needs_human" and states["dep2"] == "pending"
    snap = f.snapshot()
    assert snap.get("idm").data["id"] == "idm" and "said 'wrong'" in snap.get("idm").data["notes"][0]["text"]
    assert snap.get("dep2").depends_on == [] and snap.get("dang").depends_on == []
    bad = snap.get("bad")
    assert bad.type == "invalid_file" and "invalid YAML" in bad.result["error"]
    assert "git show" in bad.data["notes"][0]["text"]
    assert snap.get("mis").payload == {"script": "true"}  # a valid task in the wrong place keeps its content
    log = git(f.root, "log", "--format=%B", "-1", "--grep", "dup was in 2 places", "origin/main")
    assert "pending->done" in log and "kept queue/done/" in log
    # the person fixes the config; a second fsck finds only what needs a person
    res = cli("--fleet", f.root, "fsck", "--fix")
    assert res.code == 1 and "config/schedules.yaml" in res.out and "fixed:" not in res.out


def test_clean_queue_exits_zero(fleets: Fleets, cli) -> None:
    transitions.create(fleets.first, [{"id": "fine", "type": "run_script", "payload": {"script": "true"}}])
    res = cli("--fleet", fleets.first.root, "fsck")
    assert res.code == 0 and "queue is consistent" in res.out


def test_maintenance_runs_gc_and_commit_graph(fleets: Fleets, cli, tmp_path: Path) -> None:
    res = cli("--fleet", fleets.first.root, "maintenance", "--remote")
    assert res.code == 0 and "commit-graph write" in res.out, res.err
    assert (Path(fleets.remote) / "objects" / "info" / "commit-graph").exists() or (
        Path(fleets.remote) / "objects" / "info" / "commit-graphs"
    ).exists()
    assert cli("--fleet", fleets.first.root, "maintenance").code == 0
    res = cli("maintenance", str(tmp_path))
    assert res.code == 1 and "not a git repository" in res.err
