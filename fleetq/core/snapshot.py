"""A read-only view of the queue at one commit: tasks by state, lookups, config files."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from fleetq import yamlio
from fleetq.core import archindex, states
from fleetq.core import task as taskmod
from fleetq.core.states import DONE, STATES, TaskLocation
from fleetq.errors import Ambiguous, FleetqError, InvalidTask, NotFound, UsageError
from fleetq.git.repo import GitRepo
from fleetq.layout import ARCHIVED

_PARSED: dict[tuple[str, str], taskmod.Task] = {}  # (blob, path) -> Task; blobs are immutable


@dataclass(frozen=True)
class Problem:
    """A file in the tree that is not a valid task: its path and one readable reason."""

    path: str
    reason: str

    def __str__(self) -> str:
        return self.reason if self.reason.startswith(self.path) else f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class Ref:
    """A task file in the tree, not yet parsed."""

    loc: TaskLocation
    blob: str

    @property
    def id(self) -> str:
        return self.loc.task_id


class Snapshot:
    def __init__(self, repo: GitRepo, commit: str | None) -> None:
        self.repo = repo
        self.commit = commit
        self.tree = repo.tree_of(commit) if commit else None

    # -- tree walking --
    def _dir(self, path: str) -> list:
        if not self.tree:
            return []
        e = self.repo.lookup(self.tree, path)
        return self.repo.entries(e.sha) if e is not None and e.is_tree else []

    def done_shards(self) -> list[tuple[str, str]]:
        """(day, tree sha) of each day shard of done/, newest first; a shard's sha changes only when it does."""
        return sorted(((e.name, e.sha) for e in self._dir(f"{states.QUEUE}/{DONE}") if e.is_tree), reverse=True)

    def done_days(self) -> list[str]:
        """Day shards of done/, newest first."""
        return [day for day, _ in self.done_shards()]

    def refs(
        self, state: str, *, problems: list[Problem] | None = None, days: Iterable[str] | None = None
    ) -> Iterator[Ref]:
        """Task files in one state directory (done: every day shard, newest first)."""
        base = f"{states.QUEUE}/{state}"
        entries = self._dir(base)
        for e in entries:
            if e.is_tree and state == DONE:
                continue
            yield from self._ref(f"{base}/{e.name}", e.is_tree, e.sha, problems)
        if state == DONE:
            for day in days if days is not None else self.done_days():
                yield from self.shard(day, problems)

    def shard(self, day: str, problems: list[Problem] | None = None) -> Iterator[Ref]:
        """Task files of one day shard of done/."""
        base = f"{states.QUEUE}/{DONE}/{day}"
        for e in self._dir(base):
            yield from self._ref(f"{base}/{e.name}", e.is_tree, e.sha, problems)

    @staticmethod
    def _ref(path: str, is_tree: bool, blob: str, problems: list[Problem] | None) -> Iterator[Ref]:
        try:
            if is_tree:
                raise states.BadPath(f"{path}: a directory where task files belong")
            loc = states.parse_path(path)
            if loc is not None and not states.valid_id(loc.task_id):
                raise states.BadPath(f"{path}: file name is not a safe task id")
        except states.BadPath as e:
            if problems is not None:
                problems.append(Problem(path, str(e)))
            return
        if loc is not None:
            yield Ref(loc, blob)

    def all_refs(self, state_list: Iterable[str] = STATES, problems: list[Problem] | None = None) -> list[Ref]:
        return [r for s in state_list for r in self.refs(s, problems=problems)]

    # -- parsing --
    def load(self, ref: Ref) -> taskmod.Task:
        key = (ref.blob, ref.loc.path)
        hit = _PARSED.get(key)
        if hit is not None:
            return hit
        try:
            raw = self.repo.read_blob(ref.blob)
        except FleetqError as e:  # a corrupt object is that file's problem, like a file that does not parse
            raise InvalidTask(f"{ref.loc.path}: {e}") from None
        t = taskmod.parse(raw, state=ref.loc.state, path=ref.loc.path, file_id=ref.loc.task_id, blob=ref.blob)
        if len(_PARSED) > 20000:
            _PARSED.clear()
        _PARSED[key] = t
        return t

    def tasks(self, state_list: Iterable[str], problems: list[Problem] | None = None) -> list[taskmod.Task]:
        """Parsed tasks; a file that does not parse is reported in ``problems``, never raised."""
        return self.load_all(self.all_refs(state_list, problems), problems)

    def recent_done(self, days: int, problems: list[Problem] | None = None) -> list[taskmod.Task]:
        """Parsed tasks of the newest ``days`` day shards of done/ (and any unsharded done file).

        For views of recent work (events, review, today's spend): they never parse
        the whole done history, which may hold 100,000 tasks.
        """
        return self.load_all(self.refs(DONE, problems=problems, days=self.done_days()[:days]), problems)

    def load_all(self, refs: Iterable[Ref], problems: list[Problem] | None = None) -> list[taskmod.Task]:
        """``load`` of each ref; a file that does not parse is reported in ``problems``, never raised."""
        out = []
        for ref in refs:
            try:
                out.append(self.load(ref))
            except InvalidTask as e:
                if problems is not None:
                    problems.append(Problem(ref.loc.path, str(e)))
        return out

    # -- lookups --
    def locate(self, task_id: str) -> list[Ref]:
        """Every file holding this exact id (more than one means corruption)."""
        tree = self.tree
        if not tree:  # an empty queue: no commit yet
            return []
        found = []
        for state in STATES:
            if state == DONE:
                continue
            e = self.repo.lookup(tree, f"{states.QUEUE}/{state}/{task_id}.yaml")
            if e is not None and not e.is_tree:
                found.append(Ref(TaskLocation(state, task_id), e.sha))
        for day in self.done_days():
            e = self.repo.lookup(tree, f"{states.QUEUE}/{DONE}/{day}/{task_id}.yaml")
            if e is not None and not e.is_tree:
                found.append(Ref(TaskLocation(DONE, task_id, day), e.sha))
        e = self.repo.lookup(tree, f"{states.QUEUE}/{DONE}/{task_id}.yaml")
        if e is not None and not e.is_tree:
            found.append(Ref(TaskLocation(DONE, task_id), e.sha))
        return found

    def exists(self, task_id: str) -> bool:
        return bool(self.locate(task_id))

    def resolve(self, given: str) -> Ref:
        """An exact id or a unique prefix of one (as with git hashes)."""
        if not given or "/" in given or "\\" in given or ".." in given:
            raise UsageError(f"{given!r} is not a task id")
        exact = self.locate(given) if states.valid_id(given) else []
        if exact:
            return exact[0]
        matches = {r.id: r for r in self.all_refs() if r.id.startswith(given)}
        if not matches:
            raise NotFound(f"no task with id or prefix '{given}'")
        if len(matches) > 1:
            raise _ambiguous(given, matches, "tasks")
        return next(iter(matches.values()))

    def get(self, given: str) -> taskmod.Task:
        return self.load(self.resolve(given))

    # -- archived tasks (core/archindex.py) --
    def archive_index(self) -> list[tuple[str, str, str]]:
        """(day, file name, blob sha) of each archive index file under ``archived/``, oldest day first."""
        out = []
        for e in self._dir(ARCHIVED):
            day = archindex.day_of(e.name) if not e.is_tree else None
            if day is not None:
                out.append((day, e.name, e.sha))
        return sorted(out)

    def archived_ids(self, day: str) -> set[str]:
        """The ids the index says were archived out of ``day``'s shard (empty: none recorded)."""
        return {i for d, _, sha in self.archive_index() if d == day for i in self._index_ids(sha)}

    def _index_ids(self, sha: str) -> list[str]:
        try:
            return archindex.parse(self.repo.read_blob(sha), sha)
        except FleetqError:  # a damaged index blob: those ids are not found by prefix, history still has them
            return []

    def find_archived(self, given: str) -> tuple[str, str]:
        """(id, day) of the archived task whose id is ``given`` or uniquely starts with it (the index only:
        a few small blobs, no history walk). NotFound or Ambiguous like ``resolve``."""
        matches: dict[str, str] = {}
        for day, _, sha in self.archive_index():
            for i in self._index_ids(sha):
                if i == given:
                    return i, day
                if i.startswith(given):
                    matches[i] = day
        if not matches:
            raise NotFound(f"no task with id or prefix '{given}' (in the tree or archived)")
        if len(matches) > 1:
            raise _ambiguous(given, matches, "archived tasks")
        return next(iter(matches.items()))

    def state_of(self, task_id: str) -> str | None:
        found = self.locate(task_id)
        return found[0].loc.state if found else None

    # -- files --
    def read(self, path: str) -> bytes | None:
        if not self.tree:
            return None
        e = self.repo.lookup(self.tree, path)
        return self.repo.read_blob(e.sha) if e is not None and not e.is_tree else None

    def read_yaml(self, path: str) -> Any:
        raw = self.read(path)
        return None if raw is None else yamlio.to_plain(yamlio.load_safe(raw, path))


def _ambiguous(given: str, matches: Iterable[str], what: str) -> Ambiguous:
    names = sorted(matches)
    more = ", ..." if len(names) > 5 else ""
    return Ambiguous(f"'{given}' matches {len(names)} {what} ({', '.join(names[:5])}{more}); give more characters")
