"""The client pre-commit hook in a real clone: real `git commit`, chaining, uninstall, the CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from fleetq.errors import FleetqError, UsageError
from fleetq.trust import hooks
from support.fleets import Fleets, git

GOOD = "# written by hand\nid: {tid}\ntype: run_script\ntitle: by hand\npayload:\n  script: 'true'\n"
SCHEDULE = (
    "schedules:\n  nightly:\n    cron: '{cron}'\n    timezone: {tz}\n    task:\n      type: run_script\n"
    "      payload:\n        script: 'true'\n"
)
FOREIGN = '#!/bin/sh\necho foreign-ran >> "$(git rev-parse --git-dir)/foreign.log"\nexit 0\n'


def commit(root: Path, message: str = "hand edit") -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "commit", "-q", "-m", message], cwd=root, capture_output=True, text=True)


def stage(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    git(root, "add", "--", rel)


@pytest.fixture
def clone(fleets: Fleets, cli) -> Path:
    root = fleets.first.root
    res = cli("--fleet", root, "hooks", "install")
    assert res.code == 0 and "pre-commit: installed" in res.out, res.err
    return root


def test_install_embeds_this_python(clone: Path, cli) -> None:
    hook = clone / ".git" / "hooks" / "pre-commit"
    text = hook.read_text()
    assert hook.stat().st_mode & 0o111 and hooks.MARK in text and "@PYTHON@" not in text
    [st] = json.loads(cli("--fleet", clone, "hooks", "status", "--json").out)
    assert st["state"] == "fleetq" and Path(st["python"]).exists() and st["chained"] is None
    assert "updated" in cli("--fleet", clone, "hooks", "install").out  # idempotent


def test_blocks_a_bad_hand_written_task_and_passes_a_good_one(clone: Path) -> None:
    stage(clone, "queue/pending/bad1.yaml", "id: bad1\ntype: run_script\nprioritty: 3\n")
    out = commit(clone)
    assert out.returncode != 0
    assert "fleetq: queue/pending/bad1.yaml: unknown field 'prioritty' (did you mean 'priority'?)" in out.stderr
    assert "commit blocked: 1 problem(s)" in out.stderr
    assert "Traceback" not in out.stderr
    stage(clone, "queue/pending/bad1.yaml", GOOD.format(tid="bad1"))
    out = commit(clone)
    assert out.returncode == 0, out.stderr
    assert "queue/pending/bad1.yaml" in git(clone, "show", "--name-only", "--format=", "HEAD")


@pytest.mark.parametrize(
    "rel,text,reason",
    [
        ("queue/pending/m1.yaml", "id: other\n", "does not match the file name"),
        ("queue/pending/m2.yaml", "id: m2\ntimeout: -1\n", "'timeout' must be a positive number"),
        ("queue/pending/m3.yaml", "id: [m3\n", "invalid YAML"),
        ("queue/pending/sub/m4.yaml", "id: m4\n", "task files sit directly in queue/pending/"),
        ("queue/claimed/m5.yaml", "id: m5\n", "a new task starts in pending/"),
        ("config/machines.yaml", "machines: [a, b]\n", "expected a top-level 'machines:' mapping"),
        ("queue/pending/m6.yaml", "id: m6\npayload:\n  key: sk-ant-abcdefghijklmnopqrstuvwx\n", "carries a secret"),
        ("config/allowed_signers", "bob ssh-ed25519\n", "config/allowed_signers:1: expected"),
        # the problems validate and queue report (trust/survey.py), refused here alike
        ("config/schedules.yaml", SCHEDULE.format(cron="99 * * * *", tz="UTC"), "bad cron expression '99 * * * *'"),
        ("config/schedules.yaml", SCHEDULE.format(cron="0 3 * * *", tz="Mars/Base"), "unknown time zone 'Mars/Base'"),
        ("config/machines.yaml", "machines:\n  alpha:\n    capabilites: [run_script]\n", "unknown key 'capabilites'"),
        ("config/agents.yaml", "agents:\n  mine:\n    kind: cli\n", "agent 'mine': argv is required"),
        ("queue/pending/d1.yaml", GOOD.format(tid="d1") + "depends_on: [nope]\n", "depends on nope, which does not"),
        ("queue/pending/q1.yaml", GOOD.format(tid="q1") + "requires: [quantum]\n", "capability quantum"),
        ("queue/pending/t1.yaml", GOOD.format(tid="t1") + "target: nosuchbox\n", "unknown machine 'nosuchbox'"),
        ("queue/pending/a1.yaml", "id: a1\ntype: agent_run\nagent: nosuchagent\n", "agent nosuchagent is neither"),
    ],
)
def test_blocks_each_kind_of_bad_file(clone: Path, rel: str, text: str, reason: str) -> None:
    stage(clone, rel, text)
    out = commit(clone)
    assert out.returncode != 0 and reason in out.stderr, out.stderr


def test_blocks_deletes_and_duplicates(clone: Path) -> None:
    stage(clone, "queue/pending/dup.yaml", GOOD.format(tid="dup"))
    assert commit(clone).returncode == 0
    stage(clone, "queue/done/2024-01-02/dup.yaml", GOOD.format(tid="dup"))
    out = commit(clone)
    assert out.returncode != 0 and "task dup would be in 2 places" in out.stderr
    git(clone, "reset", "-q", "HEAD", "--", "queue/done")
    git(clone, "rm", "-q", "queue/pending/dup.yaml")
    out = commit(clone)
    assert out.returncode != 0 and "queue/pending/dup.yaml deleted" in out.stderr


def test_checks_the_index_not_the_work_tree(clone: Path) -> None:
    rel = "queue/pending/idx.yaml"
    stage(clone, rel, "id: idx\nbogus: 1\n")
    (clone / rel).write_text(GOOD.format(tid="idx"))  # fixed on disk, but not staged
    assert commit(clone).returncode != 0
    git(clone, "add", rel)
    (clone / rel).write_text("id: idx\nbogus: 1\n")  # broken on disk, good in the index
    assert commit(clone).returncode == 0


def test_a_foreign_hook_is_chained_and_restored(fleets: Fleets, cli) -> None:
    root = fleets.first.root
    hook_dir = root / ".git" / "hooks"
    hook_dir.mkdir(exist_ok=True)
    (hook_dir / "pre-commit").write_text(FOREIGN)
    (hook_dir / "pre-commit").chmod(0o755)
    res = cli("--fleet", root, "hooks", "install")
    assert "kept as pre-commit.fleetq-chained" in res.out
    assert (hook_dir / "pre-commit.fleetq-chained").read_text() == FOREIGN
    log = root / ".git" / "foreign.log"
    stage(root, "queue/pending/c1.yaml", "id: c1\nwat: 1\n")
    assert commit(root).returncode != 0 and not log.exists()  # fleetq blocks before the chained hook runs
    stage(root, "queue/pending/c1.yaml", GOOD.format(tid="c1"))
    assert commit(root).returncode == 0 and log.read_text() == "foreign-ran\n"
    assert "then pre-commit.fleetq-chained" in cli("--fleet", root, "hooks", "status").out
    res = cli("--fleet", root, "hooks", "uninstall")
    assert "previous hook is back" in res.out
    assert (hook_dir / "pre-commit").read_text() == FOREIGN
    assert not (hook_dir / "pre-commit.fleetq-chained").exists()
    assert "not fleetq's; left alone" in cli("--fleet", root, "hooks", "uninstall").out
    assert (hook_dir / "pre-commit").read_text() == FOREIGN


def test_install_refuses_when_both_slots_are_taken(fleets: Fleets, cli) -> None:
    hook_dir = fleets.first.root / ".git" / "hooks"
    hook_dir.mkdir(exist_ok=True)
    for name in ("pre-commit", "pre-commit.fleetq-chained"):
        (hook_dir / name).write_text(FOREIGN)
    res = cli("--fleet", fleets.first.root, "hooks", "install")
    assert res.code == 1 and "move one of them aside" in res.err
    assert (hook_dir / "pre-commit").read_text() == FOREIGN


def test_uninstall_without_a_chained_hook_removes_ours(clone: Path, cli) -> None:
    assert cli("--fleet", clone, "hooks", "uninstall").out.strip() == "pre-commit: removed"
    assert not (clone / ".git" / "hooks" / "pre-commit").exists()
    assert "no hook" in cli("--fleet", clone, "hooks", "status").out


def test_hooks_path_config_is_honoured(fleets: Fleets, cli) -> None:
    root = fleets.first.root
    git(root, "config", "core.hooksPath", ".githooks")
    assert cli("--fleet", root, "hooks", "install").code == 0
    assert (root / ".githooks" / "pre-commit").exists()
    stage(root, "queue/pending/hp.yaml", "id: hp\nnope: 1\n")
    assert commit(root).returncode != 0


def test_bare_install_through_the_cli(tmp_path: Path, cli) -> None:
    bare = tmp_path / "srv.git"
    res = cli("hooks", "install", "--bare", bare)
    assert res.code == 0 and "pre-receive: installed" in res.out, res.err
    assert "pre-receive: fleetq's hook" in cli("hooks", "status", "--bare", bare).out
    assert "pre-receive: removed" in cli("hooks", "uninstall", "--bare", bare).out


def test_prepare_bare_refuses_what_is_not_a_bare_repo(fleets: Fleets, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="working clone"):
        hooks.prepare_bare(fleets.first.root)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "file").write_text("x")
    with pytest.raises(UsageError, match="not a bare git repository"):
        hooks.prepare_bare(junk)


def test_a_chained_pre_receive_gets_the_same_input(tmp_path: Path) -> None:
    bare = tmp_path / "srv.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    seen = tmp_path / "seen"
    (bare / "hooks" / "pre-receive").write_text(f"#!/bin/sh\ncat > {seen}\necho 'remote says no' >&2\nexit 1\n")
    (bare / "hooks" / "pre-receive").chmod(0o755)
    hooks.prepare_bare(bare)
    work = tmp_path / "w"
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True)
    (work / "README.md").write_text("hi\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "first")
    out = subprocess.run(["git", "push", "origin", "HEAD:main"], cwd=work, capture_output=True, text=True)
    assert out.returncode != 0 and "remote says no" in out.stderr  # fleetq accepted; the chained hook refused
    assert seen.read_text().split()[2] == "refs/heads/main"


def test_hook_entry_point_errors_are_one_line(tmp_path: Path) -> None:
    assert hooks.main([]) == 2
    assert hooks.main(["post-nothing"]) == 2
    with pytest.raises(FleetqError):
        hooks.run_pre_commit(tmp_path)  # not a git repo: a FleetqError, which `run` turns into one line
    assert hooks.run("pre-commit", cwd=tmp_path) == 1
