"""What a fleet repo accepts: the checks behind the server-side pre-receive hook.

A push to ``refs/heads/main`` is accepted only when it

* keeps history (no deletion of main, no non-fast-forward: the queue's history
  is the history of record),
* leaves every changed task, config and archive index file valid (``checks.check_file``), and every task it
  creates or re-aims sensible in the new tree: no dependency on a task that exists nowhere, and
  a pending task some machine could run (``reach.Context``, the checks validate and queue run),
* makes only legal transitions, commit by commit (``states.LEGAL``): a task file
  may not vanish except by archiving a done shard, a new task starts in pending/
  (or needs_human/, where fsck quarantines a file), and no task sits in two places,
* and, when signing is required, carries a good signature on every commit that
  creates a task, changes what a task runs, sends a finished task back to run (a
  re-run is a new order), or changes a protected file, anything under config/ or
  handlers/ (``signing.needs_signature``). A merge is judged by its diff against
  its first parent, as the worker's chain of trust judges it.

Heartbeat refs (``refs/fleetq/machines/*``) and live output refs (``refs/fleetq/live/*``)
are force-pushed by design and always accepted. Only changed paths are examined, so fleetq's own one-commit pushes
cost a few tree lookups. The same change checks guard the client pre-commit hook.
"""

from __future__ import annotations

from collections.abc import Iterable

from fleetq.core import states
from fleetq.core.snapshot import Ref
from fleetq.core.task import Task
from fleetq.git.inspect import ZERO_SHA, new_commits, parents_of
from fleetq.git.repo import GitRepo
from fleetq.layout import ARCHIVED, BRANCH, MAIN_REF
from fleetq.trust import checks, signatures, signing
from fleetq.trust.checks import Change, Finding, check_blob, diff_trees, touched_ids, tree_snapshot
from fleetq.trust.reach import Context, decisive

MAIN = MAIN_REF
ENTRY_STATES = frozenset({states.PENDING, states.NEEDS_HUMAN})  # where a task may first appear
CHECKED_DIRS = (f"{states.QUEUE}/", "config/", f"{ARCHIVED}/")  # archived/: the archive index
MAX_MESSAGES = 20


# -- the checks --


def _known(repo: GitRepo, old_tree: str | None, path: str) -> set[str]:
    """The problems the file's previous version (at any location of the same task) already had."""
    loc = checks.location(path)
    if loc is not None:
        refs = tree_snapshot(repo, old_tree).locate(loc.task_id) if old_tree else []
        before = [(r.loc.path, r.blob) for r in refs]
    else:
        e = repo.lookup(old_tree, path) if old_tree else None
        before = [(path, e.sha)] if e is not None and not e.is_tree else []
    return {_bare(f) for p, b in before for f in check_blob(repo, p, b)[0]}


def _bare(f: Finding) -> str:
    return f.reason.removeprefix(f"{f.path}: ")


def _asks_anew(repo: GitRepo, old_tree: str | None, t: Task) -> bool:
    """Whether a change makes ``t`` ask for something it did not (a new task, or new type, pin, needs or
    dependencies): only then is it judged against the fleet again, so a hand-back or a report of a task the
    fleet changed around (a capability dropped from machines.yaml since) still lands."""
    for ref in tree_snapshot(repo, old_tree).locate(t.id) if old_tree else []:
        old = check_blob(repo, ref.loc.path, ref.blob)[1]
        if old is not None:
            return decisive(old) != decisive(t)
    return True


def check_content(
    repo: GitRepo, tree: str | None, paths: Iterable[str], old_tree: str | None = None, history: str | None = None
) -> list[Finding]:
    """Every task or config file among ``paths`` that exists in ``tree`` must be valid, and a task must make
    sense in ``tree`` (``reach.Context``; ``history`` is the commit whose log knows archived tasks).

    With ``old_tree``, a problem the file already had there is not held against
    the change: fleetq's own transitions of a task admitted before a rule existed
    must still land (only new problems are refused).
    """
    found: list[Finding] = []
    ctx = Context(repo, history, tree=tree)
    for path in sorted(set(paths)):
        odd = repo.odd_at(tree, path) if tree is not None else ""
        if odd:  # a gitlink or a name no reader can use, anywhere (handlers/ too)
            found.append(checks.odd_entry(path, odd))
            continue
        if not path.startswith(CHECKED_DIRS) or tree is None:
            continue
        entry = repo.lookup(tree, path)
        if entry is None:
            continue
        if entry.is_tree:
            found.append(Finding(path, f"{path}: a directory where a file belongs"))
            continue
        problems, t = check_blob(repo, path, entry.sha)
        if t is not None and ctx.concerns(t) and _asks_anew(repo, old_tree, t):
            problems += ctx.findings(t)
        if problems and old_tree:
            known = _known(repo, old_tree, path)
            problems = [f for f in problems if _bare(f) not in known]
        found += problems
    return found


def judge(task_id: str, old: list[Ref], new: list[Ref]) -> str | None:
    """Why moving a task from its ``old`` locations to its ``new`` ones is illegal (None: it is legal).

    A task already in two places before the change (corruption that predates the
    hook) may still move, as long as the change adds no copy: fleetq's own
    transitions of it must land, and ``fleetq fsck --fix`` repairs it.
    """
    if len(new) > max(1, len(old)):
        return f"task {task_id} would be in {len(new)} places: " + ", ".join(sorted(r.loc.path for r in new))
    if not new:
        kept = [r for r in old if r.loc.state != states.DONE]
        if kept:
            return (
                f"{kept[0].loc.path} deleted: a task leaves the queue by a transition "
                f"(fleetq cancel/resolve), never by deleting its file"
            )
        return None  # archiving done tasks out of the tree is legal
    if not old:
        dst = new[0].loc.state
        return (
            None if dst in ENTRY_STATES else f"task {task_id} appears in {dst}/: a new task starts in {states.PENDING}/"
        )
    was, now = {r.loc.path for r in old}, {r.loc.path for r in new}
    removed = [r.loc.state for r in old if r.loc.path not in now]
    for a in (r.loc.state for r in new if r.loc.path not in was):
        if not any(states.is_legal(src, a) for src in removed):
            return f"task {task_id}: {removed[0] if removed else 'nowhere'} -> {a} is not a legal transition"
    for src in removed:
        if not any(states.is_legal(src, r.loc.state) for r in new):
            return f"task {task_id}: {src} -> {new[0].loc.state} is not a legal transition"
    return None


def check_transitions(
    repo: GitRepo, old_tree: str | None, new_tree: str | None, changes: list[Change]
) -> list[Finding]:
    """Each task a change set touches must make a legal move and end up in exactly one place."""
    before, after = tree_snapshot(repo, old_tree), tree_snapshot(repo, new_tree)
    found = []
    for tid in sorted(touched_ids(c.path for c in changes)):
        old, new = before.locate(tid), after.locate(tid)
        why = judge(tid, old, new)
        if why:
            found.append(Finding((new or old)[0].loc.path, why))
    return found


def check_change(
    repo: GitRepo, old_tree: str | None, new_tree: str | None, history: str | None = None
) -> list[Finding]:
    """Content and transitions of one step (a commit, or HEAD -> the index; ``history``: HEAD)."""
    changes = diff_trees(repo, old_tree, new_tree)
    return check_content(repo, new_tree, [c.path for c in changes if c.new], old_tree, history) + check_transitions(
        repo, old_tree, new_tree, changes
    )


def check_range(repo: GitRepo, commits: list[str], tip: str, base: str | None = None) -> list[str]:
    """Problems with the commits a push adds to main (oldest first), as one line each."""
    msgs: list[str] = []
    written: set[str] = set()
    needs_sig: list[tuple[str, str, signing.Policy]] = []
    for c in commits:
        parents = parents_of(repo, c)
        old_tree = repo.tree_of(parents[0]) if parents else None
        new_tree = repo.tree_of(c)
        changes = diff_trees(repo, old_tree, new_tree)
        written.update(ch.path for ch in changes if ch.new)
        msgs += [f"{c[:10]}: {f}" for f in check_transitions(repo, old_tree, new_tree, changes)]
        policy = signing.policy_at(repo, old_tree)
        if policy.require:
            what = signing.needs_signature(repo, old_tree, new_tree, [ch.path for ch in changes])
            if what:
                needs_sig.append((c, what, policy))
    base_tree = repo.tree_of(base) if base else None
    msgs += [str(f) for f in check_content(repo, repo.tree_of(tip), written, base_tree, tip)]
    bad = signatures.verify_commits(repo, [(c, p.signers) for c, _, p in needs_sig])
    for c, what, _ in needs_sig:
        if c in bad:
            msgs.append(f"{c[:10]}: {what}, so it must be signed by a key in {checks.SIGNERS}, but it is {bad[c]}")
    return msgs


def check_update(repo: GitRepo, old: str, new: str, ref: str) -> list[str]:
    """Problems with one ref update of a push (empty: accept)."""
    if ref != MAIN:
        return []  # heartbeats and live output (force-pushed by design), and refs the queue does not read
    if new == ZERO_SHA:
        return [f"deleting {BRANCH} would erase the queue and its history; refused"]
    if old != ZERO_SHA and not repo.is_ancestor(old, new):
        return [
            f"this push rewrites {BRANCH}'s history (not a fast-forward of {old[:10]}): the queue's history "
            f"is append-only; fetch, build on the remote's {BRANCH}, and push again"
        ]
    base = None if old == ZERO_SHA else old
    return check_range(repo, new_commits(repo, new, base), new, base)


def pre_receive(repo: GitRepo, lines: Iterable[str]) -> list[str]:
    """The hook's verdict on a push (git's ``old new ref`` lines); empty = accept."""
    msgs: list[str] = []
    for line in lines:
        parts = line.split()
        if len(parts) != 3:
            continue
        old, new, ref = parts
        msgs += check_update(repo, old, new, ref)
    return msgs
