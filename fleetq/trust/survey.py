"""The one problem list of a fleet tree: what `validate`, `queue` (its warnings) and `fsck` report.

Every file under queue/ and config/ is checked (``checks.check_blob``: task files, bad paths,
secrets, machines.yaml keys, schedules with their cron expressions and time zones, agents,
allowed signers), then the tree as a whole: ids in two places (``checks.duplicates``), and,
in the context of the tree (``reach.Context``), dependencies that exist nowhere and pending
tasks that no machine could ever run. The hooks run the same checks on the files a change
touches (trust/receive.py).

The tree is a commit's (the fetched head), optionally overlaid with local bytes (a person's
uncommitted files, for `validate`). Done shards never change once their day is over, so
their findings are kept in ``cache`` (a JSON file in the clone's state dir) by the shard's
tree sha: 100,000 done tasks are read once per clone and fleetq version, not on every `queue`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fleetq
from fleetq.core import states
from fleetq.core.listing import read_shard_cache, write_shard_cache
from fleetq.core.task import Task
from fleetq.git.repo import GitRepo
from fleetq.layout import ARCHIVED, CONFIG_DIR, QUEUE
from fleetq.trust import checks
from fleetq.trust.checks import Finding
from fleetq.trust.reach import Context

CACHE_FILE = "checked-shards.json"
CACHE_FORMAT = 1
DONE_DIR = f"{QUEUE}/{states.DONE}/"


@dataclass
class Survey:
    findings: list[Finding]
    tasks: list[Task]  # every valid task file outside done/
    checked: int  # files looked at (or taken from the cache)


def _layout(repo: GitRepo, tree: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """(path -> blob of every file under queue/ and config/ outside done's day shards, shard -> tree sha)."""
    files: dict[str, str] = {}
    shards: dict[str, str] = {}
    for top in (QUEUE, CONFIG_DIR, ARCHIVED):  # archived/: the archive index (core/archindex.py)
        e = repo.lookup(tree, top) if tree else None
        for x in repo.entries(e.sha) if e is not None and e.is_tree else []:
            path = f"{top}/{x.name}"
            if not x.is_tree:
                files[path] = x.sha
            elif path != DONE_DIR.rstrip("/"):
                files.update(repo.walk_blobs(x.sha, f"{path}/"))
            else:
                for d in repo.entries(x.sha):
                    day = f"{path}/{d.name}"
                    if d.is_tree and states.DAY_RE.match(d.name):
                        shards[day] = d.sha
                    else:
                        files.update(repo.walk_blobs(d.sha, f"{day}/") if d.is_tree else [(day, d.sha)])
    return files, shards


def _shard(path: str) -> str | None:
    """The done day shard holding ``path`` (``queue/done/2026-01-02``), if any."""
    parts = path.split("/")
    if path.startswith(DONE_DIR) and len(parts) >= 4 and states.DAY_RE.match(parts[2]):
        return "/".join(parts[:3])
    return None


def survey(
    repo: GitRepo,
    commit: str | None,
    *,
    overlay: Mapping[str, bytes | None] | None = None,
    beats: Mapping[str, dict[str, Any]] | None = None,
    cache: Path | None = None,
    archived: bool = False,
    done: bool = True,
) -> Survey:
    """Every problem of the tree at ``commit`` with ``overlay`` (path -> bytes, None: deleted) laid over it.

    ``beats`` are the heartbeat states (default: the repo's heartbeat refs); with ``archived``,
    dependencies met by archived tasks are findings too (fsck offers to drop them). Without
    ``done``, no done shard is read at all: only what the cache holds of them counts (`queue`:
    reading 100,000 finished tasks, even their names, is `validate`'s and `fsck`'s job, not every
    listing's; an id both done and pending is still no claim: ``claim_plan`` skips it). A dependency
    that is nowhere else is then looked up by name in the done shards, not in history (``was_done``)."""
    tree = repo.tree_of(commit) if commit else None
    files, shards = _layout(repo, tree)
    files_in: dict[str, str | bytes] = dict(files)
    dirty = {_shard(p) for p in overlay or {}}
    stored = read_shard_cache(cache, _stamp())
    if not done:
        cache = None  # nothing read here may go into the cache as checked
        stored = {**{sha: [] for sha in shards.values()}, **stored}
    cached = {day: sha for day, sha in shards.items() if day not in dirty and sha in stored}
    fresh: dict[str, list[Finding]] = {day: [] for day in shards if day not in cached and day not in dirty}
    for day in shards.keys() - cached.keys():
        files_in.update(repo.walk_blobs(shards[day], f"{day}/"))
    for path, raw in (overlay or {}).items():
        if raw is None:
            files_in.pop(path, None)
        else:
            files_in[path] = raw
    found = [_unpack(x) for sha in cached.values() for x in stored[sha]]
    # gitlinks and unreadable names anywhere (the readers skip them); a checked shard's are in its findings
    for f in checks.odd_entries(repo, tree, skip=frozenset(cached.values())):
        found.append(f)
        if _shard(f.path) in fresh:
            fresh[str(_shard(f.path))].append(f)
    where = checks.places(files_in)
    for day, sha in cached.items() if done else ():  # their ids, from the file names (findings name the bad)
        for e in repo.entries(sha):
            if not e.is_tree and e.name.endswith(".yaml") and not e.name.startswith("."):
                where[e.name[: -len(".yaml")]].append(f"{day}/{e.name}")
    tasks: list[Task] = []
    for path, v in sorted(files_in.items()):
        fs, t = checks.check_blob(repo, path, v) if isinstance(v, str) else checks.examine(path, v)
        found += fs
        shard = _shard(path)
        if shard in fresh:
            fresh[shard] += fs
        if t is not None and t.state != states.DONE:
            tasks.append(t)
    keep = {sha: stored[sha] for sha in cached.values()}
    keep.update({shards[day]: [_pack(f) for f in fs] for day, fs in fresh.items()})
    if cache is not None and keep.keys() != stored.keys():
        write_shard_cache(cache, _stamp(), keep)
    found += checks.duplicated(where)

    def read(path: str) -> bytes | None:
        v = files_in.get(path)
        return repo.read_blob(v) if isinstance(v, str) else v

    def exists(tid: str) -> bool:  # without ``done``: a dependency's name in a done shard, before history
        found = tid in where
        if not found and not done:
            found = any((e := repo.lookup(sha, f"{tid}.yaml")) is not None and not e.is_tree for sha in shards.values())
        return found

    ctx = Context(repo, commit, read=read, exists=exists, beats=beats)
    for t in tasks:
        found += ctx.findings(t, archived=archived)
    checked = len(files_in) + (sum(len(repo.entries(sha)) for sha in cached.values()) if done else 0)
    return Survey(sorted(found, key=lambda f: (f.path, f.kind, f.reason)), tasks, checked)


# -- the done-shard cache --


def _stamp() -> dict[str, Any]:
    return {"format": CACHE_FORMAT, "version": fleetq.__version__}  # a new fleetq may find more


def _pack(f: Finding) -> list[Any]:
    return [f.path, f.reason, f.kind, f.task_id, f.extra.get("blob")]


def _unpack(x: list[Any]) -> Finding:
    path, reason, kind, task_id, blob = x
    return Finding(path, reason, kind, task_id, {"blob": blob} if blob else {})
