"""`fleetq fsck`: find a damaged queue, and repair what is safe to repair.

What it finds (at the remote's head): a task in more than one place, an ``id``
that does not match its file name, files that do not parse or validate, files
outside the state directories, claims by machines that never sent a heartbeat,
dependencies on tasks that do not exist, and config files that do not parse.

What ``--fix`` does, each repair in its own commit that says why (through the
compare-and-swap loop, re-checked on the head it lands on):

* duplicate: keep the copy that parses and is furthest along (pending < claimed
  < needs_human < failed < done, so the removal is itself a legal move), remove
  the others; git history keeps them;
* id mismatch (and nothing else wrong): the file name is the id, so the ``id``
  field is set to it, with a note of what it said;
* a file that does not parse or validate, or sits outside a state directory:
  quarantined as a valid needs_human task (the original bytes stay in git
  history; the note says which commit holds them). A needs_human task never
  runs, so nothing runs by accident, and `fleetq review` shows it to a person.
  A bad file in done/ is history and is only reported;
* a claim by a machine that has no heartbeat ref at all, older than the lease:
  handed back to pending;
* a dependency on a task that is not in the tree: dropped with a note. When the
  task was done and archived the dependency was met; when it never existed, a
  pending task also moves to needs_human so a person decides whether it may run.

Reported only, since fleetq cannot know what a person meant: config files that
do not parse, protected files changed without the signature ``require_signed``
asks for (workers run nothing until a signed commit changes them again), and a
remote whose main was rewritten (force-pushed) under this clone.
"""
from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import checks, signing, states, task as taskmod, yamlio
from .cas import Plan, transact
from .errors import FleetqError
from .fleet import Fleet
from .gitrepo import BRANCH, MACHINE_REFS, TRACKING, GitRepo, blob_size, reflog_subjects
from .snapshot import Ref, Snapshot
from .states import CLAIMED, DONE, FAILED, NEEDS_HUMAN, PENDING
from .task import Task, fmt_time, now_utc, parse_time
from .transitions import _note, handback_plan, move, signs

RANK = {PENDING: 0, CLAIMED: 1, NEEDS_HUMAN: 2, FAILED: 3, DONE: 4}
QUARANTINE_TYPE = "invalid_file"
FIX_ORDER = ("id_mismatch", "invalid", "misplaced", "duplicate", "ghost_claim", "dangling_dep")


@dataclass
class Issue:
    kind: str  # duplicate id_mismatch invalid misplaced ghost_claim dangling_dep bad_config untrusted rewritten
    path: str
    detail: str
    task_id: str | None = None
    fix: str = ""  # what --fix would do; empty: report only
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "task_id": self.task_id, "detail": self.detail,
                "fix": self.fix or None}


@dataclass
class Report:
    issues: list[Issue]
    fixed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    remaining: list[Issue] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"issues": [i.to_json() for i in self.issues], "fixed": self.fixed, "failed": self.failed,
                "remaining": [i.to_json() for i in self.remaining]}


# -- finding --

def _examine(repo: Any, ref: Ref) -> tuple[Issue | None, Task | None]:
    """A task file's problem (invalid, or an id mismatch and nothing else), or its parsed task."""
    path, tid = ref.loc.path, ref.loc.task_id
    quarantine = "" if ref.loc.state == DONE else f"move it to {NEEDS_HUMAN}/ as a quarantined task"
    size = blob_size(repo, ref.blob)
    if size > yamlio.MAX_BYTES:
        return Issue("invalid", path, f"{path}: file is {size} bytes, over the {yamlio.MAX_BYTES} byte limit", tid,
                     quarantine, {"blob": ref.blob}), None
    raw = repo.read_blob(ref.blob)
    try:
        data = yamlio.to_plain(yamlio.load_safe(raw, path))
    except FleetqError as e:
        return Issue("invalid", path, str(e), tid, quarantine, {"blob": ref.blob}), None
    errs = taskmod.validate(data)
    if errs:
        return Issue("invalid", path, f"{path}: " + "; ".join(errs), tid, quarantine, {"blob": ref.blob}), None
    if data["id"] != tid:
        return Issue("id_mismatch", path, f"{path}: the id field says '{data['id']}' but the file name says '{tid}'",
                     tid, f"set id to '{tid}' (the file name is the id)", {"blob": ref.blob}), None
    return None, Task(data=data, state=ref.loc.state, path=path, blob=ref.blob, raw=raw)


def _walk_queue(snap: Snapshot, issues: list[Issue]) -> dict[str, list[Ref]]:
    """Every task file under queue/ by id; files that are not where a task may be become issues."""
    repo = snap.repo
    q = repo.lookup(snap.tree, states.QUEUE) if snap.tree else None
    by_id: dict[str, list[Ref]] = defaultdict(list)
    for path, blob in (repo.walk_blobs(q.sha, f"{states.QUEUE}/") if q is not None and q.is_tree else []):
        try:
            loc = states.parse_path(path)
            if loc is not None and not states.valid_id(loc.task_id):
                raise states.BadPath(f"{path}: file name is not a safe task id")
        except states.BadPath as e:
            issues.append(Issue("misplaced", path, str(e), None, f"move it to {NEEDS_HUMAN}/ as a quarantined task",
                                {"blob": blob}))
            continue
        if loc is not None:
            by_id[loc.task_id].append(Ref(loc, blob))
    return by_id


def _duplicates(by_id: dict[str, list[Ref]]) -> list[Issue]:
    out = []
    for tid, refs in sorted(by_id.items()):
        if len(refs) > 1:
            paths = sorted(r.loc.path for r in refs)
            out.append(Issue("duplicate", paths[0], f"task {tid} is in {len(refs)} places: {', '.join(paths)}", tid,
                             "keep the copy furthest along, remove the others"))
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
        out.append(Issue("ghost_claim", t.path, detail, t.id, fix,
                         {"machine": m, "attempt": t.claim.get("attempt"), "why": why}))
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
            fix = "drop the dependency" + ("" if archived or t.state != PENDING else f" and move the task to {NEEDS_HUMAN}")
            out.append(Issue("dangling_dep", t.path, f"{t.path}: depends on {dep}, which {what}", t.id, fix,
                             {"dep": dep, "archived": archived}))
    return out


def _configs(snap: Snapshot) -> list[Issue]:
    repo = snap.repo
    c = repo.lookup(snap.tree, "config") if snap.tree else None
    out = []
    for path, blob in (repo.walk_blobs(c.sha, "config/") if c is not None and c.is_tree else []):
        for f in checks.check_file(path, repo.read_blob(blob)):
            out.append(Issue("bad_config", path, str(f)))
    return out


def _untrusted(snap: Snapshot) -> list[Issue]:
    """Protected files changed without the signature the fleet's rule asks for (workers run nothing)."""
    if not snap.commit:
        return []
    trust = signing.trust_at(snap.repo, snap.commit)
    return [Issue("untrusted", path, f"{path}: changed by commit {c[:10]}, which is {why}, while signed commits are "
                  "required; workers run no task until a signed commit changes this file again")
            for path, (c, why) in sorted(trust.tainted.items())]


def rewritten(repo: GitRepo) -> str | None:
    """What happened, when the last fetch found the remote's main rewritten (force-pushed); else None."""
    entries = reflog_subjects(repo, TRACKING, 2)
    if not entries or not entries[0][1].endswith("forced-update"):
        return None
    new = entries[0][0][:10]
    old = entries[1][0][:10] if len(entries) > 1 else None
    if old is None:
        return f"the remote's {BRANCH} was rewritten (force-pushed) and now points to {new}"
    return (f"the remote's {BRANCH} was rewritten (force-pushed): it now points to {new}, which does not contain "
            f"{old}, the head this clone had; tasks only in the old history are out of the queue (this clone still "
            f"has them: `git log {old}`; put them back with `git push --force origin {old}:{BRANCH}` if that history "
            f"was the right one)")


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


# -- repairing: each returns a plan function for cas.transact (None when the problem is gone) --

PlanFn = Callable[[Snapshot], Plan | None]


def _plan(subject: str, why: str, changes: dict[str, bytes | None], trailers: list[tuple[str, str]], sign: bool) -> Plan:
    return Plan(changes=changes, subject=f"{subject}\n\n{why}", trailers=trailers + [("Fleetq-Fsck", "repair")],
                value=subject, sign=sign)


def _blob_is(snap: Snapshot, path: str, blob: str) -> bool:
    e = snap.repo.lookup(snap.tree, path) if snap.tree else None
    return e is not None and e.sha == blob


def _parses(snap: Snapshot, ref: Ref) -> bool:
    try:
        snap.load(ref)
        return True
    except FleetqError:
        return False


def fix_duplicate(issue: Issue, machine: str, sign: bool) -> PlanFn:
    tid = issue.task_id or ""

    def plan(snap: Snapshot) -> Plan | None:
        refs = snap.locate(tid)
        if len(refs) < 2:
            return None
        keep = max(refs, key=lambda r: (_parses(snap, r), RANK[r.loc.state], r.loc.day or ""))
        drop = [r for r in refs if r is not keep]
        gone = ", ".join(r.loc.path for r in drop)
        why = (f"A task lives in exactly one state directory. {tid} was in {len(refs)}; fsck on {machine} kept "
               f"{keep.loc.path} (the copy furthest along) and removed {gone}. Git history keeps the removed copies.")
        trailers = [("Fleetq-Task", tid)] + [("Fleetq-Transition", f"{r.loc.state}->{keep.loc.state}") for r in drop]
        return _plan(f"fleetq fsck: {tid} was in {len(refs)} places; keep {keep.loc.state}", why,
                     {r.loc.path: None for r in drop}, trailers, sign)

    return plan


def fix_id(issue: Issue, machine: str, sign: bool) -> PlanFn:
    tid, path, blob = issue.task_id or "", issue.path, issue.extra["blob"]

    def plan(snap: Snapshot) -> Plan | None:
        if not _blob_is(snap, path, blob):
            return None
        raw = snap.repo.read_blob(blob)
        data = yamlio.to_plain(yamlio.load_safe(raw, path))
        loc = states.parse_path(path)
        t = Task(data=data, state=loc.state if loc else PENDING, path=path, blob=blob, raw=raw)
        text = f"fsck: the id field said '{data.get('id')}'; a task's id is its file name, '{tid}'"
        body = taskmod.edit(t, {"id": tid, "notes": _note(t, text, machine, now_utc())})
        why = f"The file {path} said id '{data.get('id')}'. The file name is the task's id, so fsck set the field to '{tid}'."
        return _plan(f"fleetq fsck: {tid}: id field set to the file name", why, {path: body},
                     [("Fleetq-Task", tid), ("Fleetq-Transition", f"{t.state}->{t.state}")], sign)

    return plan


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _quarantine_id(snap: Snapshot, path: str) -> str:
    stem = path.rsplit("/", 1)[-1].removesuffix(".yaml")
    base = _UNSAFE.sub("-", stem).replace("..", "-").lstrip("._-")[:80] or "file"
    loc = checks.location(path)
    if loc is not None and states.valid_id(loc.task_id):
        base = loc.task_id
    tid, n = base, 1
    while any(r.loc.path != path for r in snap.locate(tid)):
        tid, n = f"{base}-fsck{n}", n + 1
    return tid


def fix_quarantine(issue: Issue, machine: str, sign: bool) -> PlanFn:
    path, blob = issue.path, issue.extra["blob"]

    def plan(snap: Snapshot) -> Plan | None:
        if not _blob_is(snap, path, blob):
            return None
        tid = _quarantine_id(snap, path)
        target = states.task_path(NEEDS_HUMAN, tid)
        now = now_utc()
        keep = f"the original bytes are in git: git show {snap.commit[:12] if snap.commit else ''}:{path}"
        text = f"fsck moved {path} here: {issue.detail}; {keep}"
        raw = snap.repo.read_blob(blob) if blob_size(snap.repo, blob) <= yamlio.MAX_BYTES else b""
        try:  # a valid task in the wrong place keeps its content
            t = taskmod.parse(raw, state=NEEDS_HUMAN, path=target, file_id=tid)
            body = taskmod.edit(t, {"notes": _note(t, text, machine, now)})
        except FleetqError:
            body = taskmod.render_new({
                "id": tid, "type": QUARANTINE_TYPE, "title": f"unreadable task file {path}", "created_at": fmt_time(now),
                "created_by": f"fsck on {machine}", "result": {"error": issue.detail[:500]},
                "notes": [{"at": fmt_time(now), "by": machine, "text": text}],
            })
        changes: dict[str, bytes | None] = {path: None, target: body} if path != target else {target: body}
        loc = checks.location(path)
        src = loc.state if loc is not None and states.valid_id(loc.task_id) else "new"
        why = (f"{issue.detail}\n\nWorkers skip a file they cannot read; fsck on {machine} quarantined it as "
               f"{target}, a needs_human task that never runs, so a person sees it in `fleetq review`. {keep[0].upper()}{keep[1:]}.")
        return _plan(f"fleetq fsck: quarantine {path}", why, changes,
                     [("Fleetq-Task", tid), ("Fleetq-Transition", f"{src}->{NEEDS_HUMAN}")], sign)

    return plan


def fix_ghost(issue: Issue, machine: str, sign: bool) -> PlanFn:
    tid, by, attempt = issue.task_id or "", issue.extra["machine"], issue.extra["attempt"]

    def plan(snap: Snapshot) -> Plan | None:
        p = handback_plan(snap, {tid: (by, attempt)}, machine, f"fsck: {issue.extra['why']}", now_utc(), spend=False)
        if not p.changes:
            return None
        why = (f"{tid} was {issue.extra['why']} (no refs/fleetq/machines/{by or '?'}), so nothing will ever report "
               f"it or reap it; fsck on {machine} handed it back to pending.")
        return _plan(f"fleetq fsck: hand back {tid}", why, p.changes, p.trailers, sign)

    return plan


def fix_dangling(issue: Issue, machine: str, sign: bool) -> PlanFn:
    tid, dep, archived = issue.task_id or "", issue.extra["dep"], issue.extra["archived"]

    def plan(snap: Snapshot) -> Plan | None:
        refs = snap.locate(tid)
        if len(refs) != 1 or snap.exists(dep):
            return None
        t = snap.load(refs[0])
        if dep not in t.depends_on:
            return None
        now = now_utc()
        what = "was done and archived" if archived else "does not exist"
        fields: dict[str, Any] = {"depends_on": [d for d in t.depends_on if d != dep] or None,
                                  "notes": _note(t, f"fsck: dropped the dependency on {dep}, which {what}", machine, now)}
        dst = t.state
        if not archived and t.state == PENDING:
            dst = NEEDS_HUMAN
            fields["result"] = {**t.result, "error": f"depended on {dep}, which does not exist; "
                                f"`fleetq resolve {tid} pending` runs it without that dependency"}
        why = (f"{tid} depended on {dep}, which {what}. fsck on {machine} dropped the dependency"
               + (f" and moved the task to {NEEDS_HUMAN} so a person decides whether it may run." if dst != t.state else "."))
        return _plan(f"fleetq fsck: {tid}: drop dependency on {dep}", why, move(t, dst, fields, now=now),
                     [("Fleetq-Task", tid), ("Fleetq-Transition", f"{t.state}->{dst}")], sign)

    return plan


FIXERS: dict[str, Callable[[Issue, str, bool], PlanFn]] = {
    "duplicate": fix_duplicate, "id_mismatch": fix_id, "invalid": fix_quarantine, "misplaced": fix_quarantine,
    "ghost_claim": fix_ghost, "dangling_dep": fix_dangling,
}


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
