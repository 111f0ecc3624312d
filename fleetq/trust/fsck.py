"""`fleetq fsck`: find a damaged queue, and repair what is safe to repair.

What it finds (at the remote's head): a task in more than one place, an ``id``
that does not match its file name, files that do not parse or validate, files
outside the state directories, claims by machines that never sent a heartbeat,
dependencies on tasks that do not exist, and config files that do not parse.

With ``--fix``, each safe repair lands in its own commit that says why, through
the compare-and-swap loop and re-checked on the head it lands on (the repairs,
and why each is safe, are fleetq/trust/repairs.py).

Reported only, since fleetq cannot know what a person meant: config files that
do not parse, protected files changed without the signature ``require_signed``
asks for (workers run nothing until a signed commit changes them again), and a
remote whose main was rewritten (force-pushed) under this clone.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from fleetq import yamlio
from fleetq.core import states
from fleetq.core import task as taskmod
from fleetq.core.cas import transact
from fleetq.core.clone import Fleet
from fleetq.core.snapshot import Ref, Snapshot
from fleetq.core.states import CLAIMED, DONE, FAILED, NEEDS_HUMAN, PENDING
from fleetq.core.task import Task, now_utc, parse_time
from fleetq.core.transitions import signs
from fleetq.errors import FleetqError
from fleetq.git.inspect import blob_size, reflog_subjects
from fleetq.git.repo import GitRepo
from fleetq.layout import BRANCH, MACHINE_REFS, TRACKING
from fleetq.trust import checks, signing
from fleetq.trust.issues import Issue
from fleetq.trust.repairs import FIX_ORDER, FIXERS

__all__ = ["Issue", "Report", "fsck", "rewritten", "scan", "was_done"]


@dataclass
class Report:
    issues: list[Issue]
    fixed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    remaining: list[Issue] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "issues": [i.to_json() for i in self.issues],
            "fixed": self.fixed,
            "failed": self.failed,
            "remaining": [i.to_json() for i in self.remaining],
        }


# -- finding --


def _examine(repo: Any, ref: Ref) -> tuple[Issue | None, Task | None]:
    """A task file's problem (invalid, or an id mismatch and nothing else), or its parsed task."""
    path, tid = ref.loc.path, ref.loc.task_id
    quarantine = "" if ref.loc.state == DONE else f"move it to {NEEDS_HUMAN}/ as a quarantined task"
    size = blob_size(repo, ref.blob)
    if size > yamlio.MAX_BYTES:
        return Issue(
            "invalid",
            path,
            f"{path}: file is {size} bytes, over the {yamlio.MAX_BYTES} byte limit",
            tid,
            quarantine,
            {"blob": ref.blob},
        ), None
    raw = repo.read_blob(ref.blob)
    try:
        data = yamlio.to_plain(yamlio.load_safe(raw, path))
    except FleetqError as e:
        return Issue("invalid", path, str(e), tid, quarantine, {"blob": ref.blob}), None
    errs = taskmod.validate(data)
    if errs:
        return Issue("invalid", path, f"{path}: " + "; ".join(errs), tid, quarantine, {"blob": ref.blob}), None
    if data["id"] != tid:
        return Issue(
            "id_mismatch",
            path,
            f"{path}: the id field says '{data['id']}' but the file name says '{tid}'",
            tid,
            f"set id to '{tid}' (the file name is the id)",
            {"blob": ref.blob},
        ), None
    return None, Task(data=data, state=ref.loc.state, path=path, blob=ref.blob, raw=raw)


def _walk_queue(snap: Snapshot, issues: list[Issue]) -> dict[str, list[Ref]]:
    """Every task file under queue/ by id; files that are not where a task may be become issues."""
    repo = snap.repo
    q = repo.lookup(snap.tree, states.QUEUE) if snap.tree else None
    by_id: dict[str, list[Ref]] = defaultdict(list)
    for path, blob in repo.walk_blobs(q.sha, f"{states.QUEUE}/") if q is not None and q.is_tree else []:
        try:
            loc = states.parse_path(path)
            if loc is not None and not states.valid_id(loc.task_id):
                raise states.BadPath(f"{path}: file name is not a safe task id")
        except states.BadPath as e:
            issues.append(
                Issue(
                    "misplaced", path, str(e), None, f"move it to {NEEDS_HUMAN}/ as a quarantined task", {"blob": blob}
                )
            )
            continue
        if loc is not None:
            by_id[loc.task_id].append(Ref(loc, blob))
    return by_id


def _duplicates(by_id: dict[str, list[Ref]]) -> list[Issue]:
    out = []
    for tid, refs in sorted(by_id.items()):
        if len(refs) > 1:
            paths = sorted(r.loc.path for r in refs)
            out.append(
                Issue(
                    "duplicate",
                    paths[0],
                    f"task {tid} is in {len(refs)} places: {', '.join(paths)}",
                    tid,
                    "keep the copy furthest along, remove the others",
                )
            )
    return out


def _ghost_claims(snap: Snapshot, tasks: list[Task], lease: float, now: dt.datetime) -> list[Issue]:
    beating = {ref.rsplit("/", 1)[-1] for ref in snap.repo.refs_under(MACHINE_REFS)}
    out = []
    for t in tasks:
        if t.state != CLAIMED:
            continue
        m = t.claim.get("machine")
        if m and m in beating:
            continue  # a silent machine's claims are the reaper's business (fleetq reap)
        at = parse_time(t.claim.get("at"))
        age = (now - at).total_seconds() if at else None
        why = f"claimed by {m}, which has never sent a heartbeat" if m else "claimed, but with no claim record"
        ripe = age is None or age > lease
        fix = "hand it back to pending" if ripe else ""
        detail = f"{t.path}: {why}" + ("" if ripe else f" (claimed {age:.0f}s ago; fixable after the {lease:g}s lease)")
        out.append(
            Issue(
                "ghost_claim", t.path, detail, t.id, fix, {"machine": m, "attempt": t.claim.get("attempt"), "why": why}
            )
        )
    return out


def was_done(snap: Snapshot, task_id: str) -> bool:
    """Whether ``task_id`` was ever done (archived out of the tree since): git history knows."""
    if not snap.commit:
        return False
    return bool(snap.repo.log([f":(glob){states.QUEUE}/{DONE}/**/{task_id}.yaml"], rev=snap.commit))


def _dangling(snap: Snapshot, tasks: list[Task], ids: set[str]) -> list[Issue]:
    out = []
    for t in tasks:
        if t.state not in (PENDING, NEEDS_HUMAN, FAILED):
            continue
        for dep in t.depends_on:
            if dep in ids:
                continue
            archived = was_done(snap, dep)
            what = "was done and archived (the dependency is met)" if archived else "does not exist"
            fix = "drop the dependency" + (
                "" if archived or t.state != PENDING else f" and move the task to {NEEDS_HUMAN}"
            )
            out.append(
                Issue(
                    "dangling_dep",
                    t.path,
                    f"{t.path}: depends on {dep}, which {what}",
                    t.id,
                    fix,
                    {"dep": dep, "archived": archived},
                )
            )
    return out


def _configs(snap: Snapshot) -> list[Issue]:
    repo = snap.repo
    c = repo.lookup(snap.tree, "config") if snap.tree else None
    out = []
    for path, blob in repo.walk_blobs(c.sha, "config/") if c is not None and c.is_tree else []:
        for f in checks.check_file(path, repo.read_blob(blob)):
            out.append(Issue("bad_config", path, str(f)))
    return out


def _untrusted(snap: Snapshot) -> list[Issue]:
    """Protected files changed without the signature the fleet's rule asks for (workers run nothing)."""
    if not snap.commit:
        return []
    trust = signing.trust_at(snap.repo, snap.commit)
    return [
        Issue(
            "untrusted",
            path,
            f"{path}: changed by commit {c[:10]}, which is {why}, while signed commits are "
            "required; workers run no task until a signed commit changes this file again",
        )
        for path, (c, why) in sorted(trust.tainted.items())
    ]


def rewritten(repo: GitRepo) -> str | None:
    """What happened, when the last fetch found the remote's main rewritten (force-pushed); else None."""
    entries = reflog_subjects(repo, TRACKING, 2)
    if not entries or not entries[0][1].endswith("forced-update"):
        return None
    new = entries[0][0][:10]
    old = entries[1][0][:10] if len(entries) > 1 else None
    if old is None:
        return f"the remote's {BRANCH} was rewritten (force-pushed) and now points to {new}"
    return (
        f"the remote's {BRANCH} was rewritten (force-pushed): it now points to {new}, which does not contain "
        f"{old}, the head this clone had; tasks only in the old history are out of the queue (this clone still "
        f"has them: `git log {old}`; put them back with `git push --force origin {old}:{BRANCH}` if that history "
        f"was the right one)"
    )


def _rewritten(snap: Snapshot) -> list[Issue]:
    why = rewritten(snap.repo)
    return [Issue("rewritten", f"refs/heads/{BRANCH}", why)] if why else []


def scan(snap: Snapshot, *, lease: float, now: dt.datetime | None = None) -> list[Issue]:
    """Everything wrong with the queue at ``snap`` (heartbeat refs as last fetched)."""
    now = now or now_utc()
    issues: list[Issue] = []
    by_id = _walk_queue(snap, issues)
    tasks = []
    for refs in by_id.values():
        for ref in refs:
            issue, t = _examine(snap.repo, ref)
            if issue:
                issues.append(issue)
            if t:
                tasks.append(t)
    issues += _duplicates(by_id)
    issues += _ghost_claims(snap, tasks, lease, now)
    issues += _dangling(snap, tasks, set(by_id))
    issues += _configs(snap)
    issues += _untrusted(snap)
    issues += _rewritten(snap)
    return sorted(issues, key=lambda i: (i.kind, i.path))


# -- the command: scan, repair, scan again --


def _scan_head(fleet: Fleet, lease: float | None) -> tuple[Snapshot, list[Issue]]:
    with fleet.lock:
        head = fleet.repo.fetch(machines=True)
    snap = Snapshot(fleet.repo, head)
    if lease is None:
        try:
            lease = float(fleet.config(snap).get("lease"))
        except (FleetqError, TypeError, ValueError):
            lease = 60.0
    return snap, scan(snap, lease=lease)


def fsck(fleet: Fleet, *, fix: bool = False, lease: float | None = None) -> Report:
    """Check the queue at the remote's head; with ``fix``, repair each safe issue in its own commit."""
    _, issues = _scan_head(fleet, lease)
    report = Report(issues)
    if not fix:
        report.remaining = issues
        return report
    sign = signs(fleet)
    seen: set[tuple[str, str]] = set()
    for issue in sorted(issues, key=lambda i: FIX_ORDER.index(i.kind) if i.kind in FIX_ORDER else 99):
        key = (issue.kind, issue.task_id or issue.path)
        if not issue.fix or key in seen:
            continue
        seen.add(key)
        try:
            landed = transact(fleet, FIXERS[issue.kind](issue, fleet.machine, sign))
        except FleetqError as e:
            report.failed.append(f"{issue.path}: could not fix ({issue.kind}): {e}")
            continue
        if landed is not None and landed.value:
            report.fixed.append(str(landed.value))
    if report.fixed:
        fleet.refresh_checkout()
    _, report.remaining = _scan_head(fleet, lease)
    return report
