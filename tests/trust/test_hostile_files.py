"""Files a hostile (or careless) pusher makes to stop the fleet: each is one problem line, never a crash or a hang.

Issue 14, finding 6: an alias bomb under the alias limit, deep nesting, a gitlink, a file name that is not
UTF-8, a heartbeat ref holding garbage, a corrupt loose object.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from fleetq import yamlio
from fleetq.git.repo import HookRejected
from support.fleets import Fleets, git
from support.remotes import raw_push
from support.workers import WorkerProc, add, states_of, tasks

# 63 aliases (under the 64-alias guard), 9^8 = 43 million nodes once expanded
LOL = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefg", "bcdefgh")
)
BOMB = (
    b"id: lol\ntype: run_script\npayload:\n  script: 'true'\n  lol:\n"
    + "".join(f"    {line}\n" for line in LOL.splitlines()).encode()
)
DEEP = b"id: deep\ntype: run_script\npayload:\n  script: 'true'\n  x: " + b"[" * 5000 + b"]" * 5000 + b"\n"


def no_traceback(*texts: str) -> None:
    for t in texts:
        assert "Traceback" not in t, t


def warnings(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.strip()]


def test_a_billion_laughs_under_the_alias_limit_is_refused_fast(guarded: Fleets) -> None:
    assert LOL.count("*") == 63
    start = time.monotonic()
    with pytest.raises(yamlio.YamlError, match="expands to over 100000 nodes"):
        yamlio.load_safe(BOMB)
    with pytest.raises(yamlio.YamlError, match="expands to over"):
        yamlio.load_rt(BOMB)
    assert time.monotonic() - start < 1.0
    from test_receive import rejected

    start = time.monotonic()
    msg = rejected(guarded.first, {"queue/pending/lol.yaml": BOMB})
    assert time.monotonic() - start < 5.0  # a push, a hook process and a fetch; the check itself is microseconds
    assert "queue/pending/lol.yaml" in msg and "refusing a possible alias bomb" in msg


def test_deep_nesting_is_one_problem_line(fleets: Fleets, cli) -> None:
    with pytest.raises(yamlio.YamlError, match="nested deeper than 64 levels"):
        yamlio.load_safe(DEEP)
    raw_push(fleets.first, {"queue/pending/deep.yaml": DEEP})
    add(fleets.first, tasks(1, "ok"))
    root = fleets.first.root
    res = cli("--fleet", root, "queue", "--json")
    assert res.code == 0, res.err
    [problem] = json.loads(res.out)["problems"]
    assert problem["path"] == "queue/pending/deep.yaml" and "nested deeper than 64" in problem["reason"]
    res = cli("--fleet", root, "show", "deep")
    assert res.code == 1 and len(warnings(res.err)) == 1 and "nested deeper" in res.err
    no_traceback(res.err)


def _ls(root: Path, tree: str | None) -> list[bytes]:
    if tree is None:
        return []
    out = subprocess.run(["git", "ls-tree", "-z", tree], cwd=root, capture_output=True, check=True).stdout
    return [e for e in out.split(b"\0") if e]


def _with(root: Path, tree: str | None, dirs: list[str], line: bytes) -> str:
    """``tree`` with the raw ls-tree ``line`` added under ``dirs`` (git plumbing: no fleetq code involved)."""
    entries = _ls(root, tree)
    if dirs:
        name = dirs[0].encode()
        old = next((e.split(b" ")[2][:40].decode() for e in entries if e.split(b"\t", 1)[1] == name), None)
        sub = _with(root, old, dirs[1:], line).encode()
        entries = [e for e in entries if e.split(b"\t", 1)[1] != name] + [b"040000 tree " + sub + b"\t" + name]
    else:
        entries.append(line)
    made = subprocess.run(
        ["git", "mktree", "-z", "--missing"], cwd=root, input=b"\0".join(entries) + b"\0", capture_output=True
    )
    assert made.returncode == 0, made.stderr
    return made.stdout.decode().strip()


def _push_odd(fleets: Fleets, *additions: tuple[list[str], bytes]) -> None:
    """Push (plain git, no fleetq checks on the pushing side) a commit adding raw tree entries."""
    root = fleets.first.root
    head = fleets.first.repo.fetch()
    tree = git(root, "rev-parse", f"{head}^{{tree}}").strip()
    for dirs, line in additions:
        tree = _with(root, tree, dirs, line)
    commit = git(root, "commit-tree", tree, "-p", head, "-m", "odd entries").strip()
    fleets.first.repo.push(commit)


GITLINK = (["handlers"], b"160000 commit " + b"12" * 20 + b"\tevil.py")


def test_a_gitlink_under_handlers_is_refused_by_the_hook(guarded: Fleets) -> None:
    before = guarded.first.repo.fetch()
    with pytest.raises(HookRejected) as err:
        _push_odd(guarded, GITLINK)
    assert guarded.first.repo.fetch() == before
    assert "handlers/evil.py: a submodule (gitlink) entry" in str(err.value)


def test_gitlinks_and_odd_names_stop_no_worker_and_no_fsck(fleets: Fleets, cli) -> None:
    add(fleets.first, tasks(2, "good"))
    blob = fleets.first.repo.write_blob(b"id: x\n")
    _push_odd(fleets, GITLINK, (["queue", "pending"], b"100644 blob " + blob.encode() + b"\tcaf\xe9.yaml"))
    w = WorkerProc(fleets.clone("w"), "--burst")
    try:
        assert w.wait(60) == 0, w.log
    finally:
        w.stop()
    no_traceback(w.log)
    assert {states_of(fleets.first)[t] for t in ("good000", "good001")} == {"done"}
    root = fleets.first.root
    res = cli("--fleet", root, "fsck", "--json")
    no_traceback(res.err)
    kinds = {(i["kind"], i["path"]) for i in json.loads(res.out)["issues"]}
    assert ("odd_entry", "handlers/evil.py") in kinds
    assert ("odd_entry", "queue/pending/caf\ufffd.yaml") in kinds
    res = cli("--fleet", root, "fsck", "--fix")
    no_traceback(res.out, res.err)
    assert res.code in (0, 1), res.err
    res = cli("--fleet", root, "queue")
    assert res.code == 0
    no_traceback(res.err)


def _ref_at(fleets: Fleets, name: bytes, sha: str) -> None:
    ref = b"refs/fleetq/machines/" + name
    subprocess.run([b"git", b"update-ref", ref, sha.encode()], cwd=fleets.remote, check=True)


def test_hostile_heartbeat_refs_are_one_warning_each(fleets: Fleets, cli) -> None:
    repo = fleets.first.repo
    head = repo.fetch()
    blob = repo.write_blob(b"tree 1234\n")
    no_state = repo.commit(repo.apply(None, {"other.yaml": b"x: 1\n"}), [], "hb\n", "alpha")
    listed = repo.commit(repo.apply(None, {"state.yaml": b"- 1\n- 2\n"}), [], "hb\n", "alpha")
    odd = b"time: [1]\nslots: many\nrunning: 5\nload: {cpu: hot}\nlease: -1\nstate: {a: 1}\ncapabilities: 7\n"
    typed = repo.commit(repo.apply(None, {"state.yaml": odd}), [], "hb\n", "alpha")
    repo.push_refs([f"{no_state}:refs/fleetq/machines/nostate", f"{listed}:refs/fleetq/machines/listed"])
    repo.push_refs([f"{typed}:refs/fleetq/machines/typed", f"{head}:refs/fleetq/machines/main"])
    subprocess.run(["git", "push", "-q", "origin", f"{blob}:refs/fleetq/machines/blob"], cwd=fleets.first.root)
    _ref_at(fleets, b"caf\xe9", head)  # a name that is not UTF-8
    add(fleets.first, tasks(1, "t"))
    root = fleets.first.root
    for cmd in (["status"], ["monitor"], ["load"], ["status", "--json"], ["queue"]):
        res = cli("--fleet", root, *cmd)
        assert res.code == 0, (cmd, res.err)
        no_traceback(res.err)
    res = cli("--fleet", root, "status")
    lines = warnings(res.err)
    for name in ("nostate", "listed", "typed", "blob", "main"):
        assert sum(f"refs/fleetq/machines/{name}:" in ln for ln in lines) == 1, (name, lines)
    assert any("caf" in ln and "not a machine name" in ln for ln in lines), lines


def test_a_corrupt_loose_object_is_one_line(fleets: Fleets, cli) -> None:
    add(fleets.first, tasks(2, "c"))
    root = fleets.first.root
    blob = fleets.first.snapshot().locate("c000")[0].blob
    obj = Path(fleets.first.repo.git_dir) / "objects" / blob[:2] / blob[2:]
    obj.chmod(0o644)
    obj.write_bytes(b"not zlib at all")
    for cmd in (["show", "c000"], ["queue"], ["status"]):
        res = cli("--fleet", root, *cmd)
        no_traceback(res.out, res.err)
        if res.code != 0:
            assert len(warnings(res.err)) == 1, (cmd, res.err)
    res = cli("--fleet", root, "fsck")  # the damaged file is one of the problems it lists
    no_traceback(res.out, res.err)
    assert res.code == 1 and f"queue/pending/c000.yaml: object {blob[:10]} is missing or damaged" in res.out
    res = cli("--fleet", root, "show", "c000")
    assert res.code == 1 and f"object {blob[:10]} is missing or damaged" in res.err
