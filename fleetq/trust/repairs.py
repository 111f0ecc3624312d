"""`fleetq fsck --fix`: the repairs, each a plan for the compare-and-swap loop.

Each repair lands in its own commit that says why, re-checked on the head it
lands on (a plan returns None when the problem is gone):

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
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fleetq import yamlio
from fleetq.core import states
from fleetq.core import task as taskmod
from fleetq.core.cas import Plan
from fleetq.core.snapshot import Ref, Snapshot
from fleetq.core.states import CLAIMED, DONE, FAILED, NEEDS_HUMAN, PENDING
from fleetq.core.task import Task, fmt_time, now_utc
from fleetq.core.transitions import _note, handback_plan, move
from fleetq.errors import FleetqError
from fleetq.git.inspect import blob_size
from fleetq.trust import checks
from fleetq.trust.issues import Issue

RANK = {PENDING: 0, CLAIMED: 1, NEEDS_HUMAN: 2, FAILED: 3, DONE: 4}
QUARANTINE_TYPE = "invalid_file"
FIX_ORDER = ("id_mismatch", "invalid", "misplaced", "duplicate", "ghost_claim", "dangling_dep")

PlanFn = Callable[[Snapshot], Plan | None]


def _plan(
    subject: str, why: str, changes: dict[str, bytes | None], trailers: list[tuple[str, str]], sign: bool
) -> Plan:
    return Plan(
        changes=changes,
        subject=f"{subject}\n\n{why}",
        trailers=trailers + [("Fleetq-Fsck", "repair")],
        value=subject,
        sign=sign,
    )


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
        why = (
            f"A task lives in exactly one state directory. {tid} was in {len(refs)}; fsck on {machine} kept "
            f"{keep.loc.path} (the copy furthest along) and removed {gone}. Git history keeps the removed copies."
        )
        trailers = [("Fleetq-Task", tid)] + [("Fleetq-Transition", f"{r.loc.state}->{keep.loc.state}") for r in drop]
        return _plan(
            f"fleetq fsck: {tid} was in {len(refs)} places; keep {keep.loc.state}",
            why,
            {r.loc.path: None for r in drop},
            trailers,
            sign,
        )

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
        why = (
            f"The file {path} said id '{data.get('id')}'. "
            f"The file name is the task's id, so fsck set the field to '{tid}'."
        )
        return _plan(
            f"fleetq fsck: {tid}: id field set to the file name",
            why,
            {path: body},
            [("Fleetq-Task", tid), ("Fleetq-Transition", f"{t.state}->{t.state}")],
            sign,
        )

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
            body = taskmod.render_new(
                {
                    "id": tid,
                    "type": QUARANTINE_TYPE,
                    "title": f"unreadable task file {path}",
                    "created_at": fmt_time(now),
                    "created_by": f"fsck on {machine}",
                    "result": {"error": issue.detail[:500]},
                    "notes": [{"at": fmt_time(now), "by": machine, "text": text}],
                }
            )
        changes: dict[str, bytes | None] = {path: None, target: body} if path != target else {target: body}
        loc = checks.location(path)
        src = loc.state if loc is not None and states.valid_id(loc.task_id) else "new"
        why = (
            f"{issue.detail}\n\nWorkers skip a file they cannot read; fsck on {machine} quarantined it as "
            f"{target}, a needs_human task that never runs, so a person sees it in `fleetq review`. "
            f"{keep[0].upper()}{keep[1:]}."
        )
        return _plan(
            f"fleetq fsck: quarantine {path}",
            why,
            changes,
            [("Fleetq-Task", tid), ("Fleetq-Transition", f"{src}->{NEEDS_HUMAN}")],
            sign,
        )

    return plan


def fix_ghost(issue: Issue, machine: str, sign: bool) -> PlanFn:
    tid, by, attempt = issue.task_id or "", issue.extra["machine"], issue.extra["attempt"]

    def plan(snap: Snapshot) -> Plan | None:
        p = handback_plan(snap, {tid: (by, attempt)}, machine, f"fsck: {issue.extra['why']}", now_utc(), spend=False)
        if not p.changes:
            return None
        why = (
            f"{tid} was {issue.extra['why']} (no refs/fleetq/machines/{by or '?'}), so nothing will ever report "
            f"it or reap it; fsck on {machine} handed it back to pending."
        )
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
        fields: dict[str, Any] = {
            "depends_on": [d for d in t.depends_on if d != dep] or None,
            "notes": _note(t, f"fsck: dropped the dependency on {dep}, which {what}", machine, now),
        }
        dst = t.state
        if not archived and t.state == PENDING:
            dst = NEEDS_HUMAN
            fields["result"] = {
                **t.result,
                "error": f"depended on {dep}, which does not exist; "
                f"`fleetq resolve {tid} pending` runs it without that dependency",
            }
        why = f"{tid} depended on {dep}, which {what}. fsck on {machine} dropped the dependency" + (
            f" and moved the task to {NEEDS_HUMAN} so a person decides whether it may run." if dst != t.state else "."
        )
        return _plan(
            f"fleetq fsck: {tid}: drop dependency on {dep}",
            why,
            move(t, dst, fields, now=now),
            [("Fleetq-Task", tid), ("Fleetq-Transition", f"{t.state}->{dst}")],
            sign,
        )

    return plan


FIXERS: dict[str, Callable[[Issue, str, bool], PlanFn]] = {
    "duplicate": fix_duplicate,
    "id_mismatch": fix_id,
    "invalid": fix_quarantine,
    "misplaced": fix_quarantine,
    "ghost_claim": fix_ghost,
    "dangling_dep": fix_dangling,
}
