"""`fleetq fsck`: find a damaged queue, and repair what is safe to repair.

What it finds (at the remote's head): the problem list `validate` and `queue`
report (trust/survey.py: a task in more than one place, an ``id`` that does not
match its file name, files that do not parse or validate, files outside the state
directories, secrets, dependencies on tasks that do not exist or were archived,
pending tasks no machine could run, config files that are wrong), and claims by
machines that never sent a heartbeat.

With ``--fix``, each safe repair lands in its own commit that says why, through
the compare-and-swap loop and re-checked on the head it lands on (the repairs,
and why each is safe, are fleetq/trust/repairs.py).

Reported only, since fleetq cannot know what a person meant: config files that
are wrong, secrets, tasks nothing could run, protected files (anything under config/ or
handlers/) changed, by a commit or a merge, without the signature ``require_signed`` asks
for (workers run nothing until a signed commit changes them again: ``signing.trust_at``),
and a remote whose main was rewritten (force-pushed) under this clone.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetq.core import states
from fleetq.core.cas import transact
from fleetq.core.clone import Fleet
from fleetq.core.snapshot import Snapshot
from fleetq.core.states import CLAIMED, DONE, NEEDS_HUMAN, PENDING
from fleetq.core.task import Task, now_utc, parse_time
from fleetq.core.transitions import signs
from fleetq.errors import FleetqError
from fleetq.git.inspect import reflog_subjects
from fleetq.git.repo import GitRepo
from fleetq.layout import BRANCH, MACHINE_REFS, TRACKING
from fleetq.trust import signing
from fleetq.trust.checks import Finding
from fleetq.trust.issues import Issue
from fleetq.trust.repairs import FIX_ORDER, FIXERS
from fleetq.trust.survey import CACHE_FILE, survey

__all__ = ["Issue", "Report", "fsck", "rewritten", "scan"]


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

QUARANTINE = f"move it to {NEEDS_HUMAN}/ as a quarantined task"


def _issue(f: Finding) -> Issue:
    """A problem of the shared list (trust/survey.py), with what --fix would do about it."""
    loc = states.location(f.path)
    fix = ""
    if f.kind == "misplaced" or f.kind == "invalid" and loc is not None and loc.state != DONE:
        fix = QUARANTINE  # a bad file in done/ is history: report only
    elif f.kind == "id_mismatch":
        fix = f"set id to '{f.task_id}' (the file name is the id)"
    elif f.kind == "duplicate":
        fix = "keep the copy furthest along, remove the others"
    elif f.kind == "dangling_dep":
        held = not f.extra.get("archived") and loc is not None and loc.state == PENDING
        fix = "drop the dependency" + (f" and move the task to {NEEDS_HUMAN}" if held else "")
    return Issue(f.kind, f.path, str(f), f.task_id, fix, dict(f.extra))


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


def scan(snap: Snapshot, *, lease: float, now: dt.datetime | None = None, cache: Path | None = None) -> list[Issue]:
    """Everything wrong with the queue at ``snap`` (heartbeat refs as last fetched): the problem list
    validate and queue report (with dependencies met by archived tasks, which --fix drops), and what
    only the repository shows (claims by machines that never beat, unsigned changes, a rewritten main)."""
    found = survey(snap.repo, snap.commit, cache=cache, archived=True)
    issues = [_issue(f) for f in found.findings]
    issues += _ghost_claims(snap, found.tasks, lease, now or now_utc())
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
    return snap, scan(snap, lease=lease, cache=fleet.state_dir / CACHE_FILE)


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
