"""Reading a clone's objects: blobs, a commit's tree, tree entries and lookups (a mixin of ``GitRepo``).

Every read goes through ``_object``, so an object that is missing, damaged (a corrupt loose file) or of
the wrong kind (a heartbeat ref at a blob) is one FleetqError naming it, never gitdb's traceback.

Tree entries no reader can use (``Entry.odd``: a gitlink, a name that is not UTF-8 or that git refuses)
are left out of ``entries``, ``lookup`` and ``walk_blobs``, each noticed once, so one such entry stops no
tool; ``raw_entries`` keeps them, for writing a tree back unchanged and for the checkers (``odd_below``).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import git
from gitdb.exc import ODBError

from fleetq.errors import FleetqError
from fleetq.git.objects import Entry, commit_tree, parse_tree, shown

_SHA = re.compile(r"^[0-9a-f]{40}$")
_READ_ERRORS = (ValueError, OSError, zlib.error, ODBError, git.GitError, AssertionError)
CACHE = 4096  # trees kept parsed


class ObjectReader:
    """Blob, tree and commit reads of one clone (``GitRepo`` sets the attributes)."""

    repo: git.Repo
    git_dir: Path
    notice: Callable[[str], None]
    _trees: dict[str, list[Entry]]
    _names: dict[str, dict[str, Entry]]
    _odd: dict[str, dict[str, str]]
    _noticed: set[tuple[str, str]]

    def _object(self, sha: str, kind: bytes) -> bytes:
        """The bytes of object ``sha``, which must be a ``kind`` (blob, tree, commit)."""
        if not isinstance(sha, str) or not _SHA.match(sha):
            raise FleetqError(f"{shown(str(sha))[:60]!r} is not an object id")
        try:
            stream = self.repo.odb.stream(bytes.fromhex(sha))
            data = stream.read()
            found = stream.type
        except _READ_ERRORS as e:
            raise self._damaged(sha, e) from None
        if found != kind:
            raise FleetqError(f"object {sha[:10]} is a {found.decode(errors='replace')}, not a {kind.decode()}")
        return data

    def _damaged(self, sha: str, e: Exception) -> FleetqError:
        why = " ".join(str(e).split())[:200] or type(e).__name__
        return FleetqError(f"object {sha[:10]} is missing or damaged in {self.git_dir}: {why}")

    def read_blob(self, sha: str) -> bytes:
        return self._object(sha, b"blob")

    def object_size(self, sha: str) -> int:
        """A blob's size without reading it (a many-MB file is refused before it is loaded)."""
        try:
            return int(self.repo.odb.info(bytes.fromhex(sha)).size)
        except _READ_ERRORS as e:
            raise self._damaged(sha, e) from None

    def tree_of(self, commit: str) -> str:
        tree = commit_tree(self._object(commit, b"commit"))
        if tree is None or not _SHA.match(tree):
            raise FleetqError(f"{commit} is not a commit")
        return tree

    def raw_entries(self, tree: str) -> list[Entry]:
        """Every entry of a tree as stored, odd ones included; trees are immutable, so cached by sha."""
        hit = self._trees.get(tree)
        if hit is None:
            hit = parse_tree(self._object(tree, b"tree"))
            if len(self._trees) > CACHE:
                self._trees.clear()
            self._trees[tree] = hit
        return hit

    def entries(self, tree: str) -> list[Entry]:
        """A tree's files and subtrees; an entry no reader can use is left out, noticed once."""
        return list(self.names(tree).values())

    def names(self, tree: str) -> dict[str, Entry]:
        """A tree's usable entries by name (cached like ``raw_entries``): lookups in a 100,000-file shard stay O(1)."""
        hit, odd = self._index(tree)
        for name, why in odd.items():
            if (tree, name) not in self._noticed:
                self._noticed.add((tree, name))
                self.notice(f"skipping {shown(name)!r} in tree {tree[:10]}: {why}")
        return hit

    def _index(self, tree: str) -> tuple[dict[str, Entry], dict[str, str]]:
        """(usable entries by name, odd entry name -> why) of a tree, cached together."""
        hit = self._names.get(tree)
        if hit is None:
            raw = self.raw_entries(tree)
            hit = {e.name: e for e in raw if not e.odd}
            if len(self._names) > CACHE:
                self._names.clear()
                self._odd.clear()
            self._names[tree] = hit
            if len(hit) < len(raw):
                self._odd[tree] = {e.name: e.odd for e in raw if e.odd}
        return hit, self._odd.get(tree, {})

    def lookup(self, tree: str, path: str) -> Entry | None:
        """The entry at ``path`` below ``tree``, or None."""
        cur: Entry | None = Entry("", True, tree)
        for part in [p for p in path.split("/") if p]:
            if cur is None or not cur.is_tree:
                return None
            cur = self.names(cur.sha).get(part)
        return cur

    def odd_at(self, tree: str, path: str) -> str:
        """Why the entry at ``path`` (as stored, odd ones included) is unusable; "" when it is fine or absent."""
        *dirs, last = path.split("/")
        parent = self.lookup(tree, "/".join(dirs)) if dirs else Entry("", True, tree)
        if parent is None or not parent.is_tree:
            return ""
        return self._index(parent.sha)[1].get(last, "")

    def walk_blobs(self, tree: str, prefix: str = "") -> Iterator[tuple[str, str]]:
        """(path, blob sha) for every file below ``tree``."""
        for e in self.entries(tree):
            p = f"{prefix}{e.name}"
            if e.is_tree:
                yield from self.walk_blobs(e.sha, p + "/")
            else:
                yield p, e.sha

    def odd_below(self, tree: str, prefix: str = "", skip: frozenset[str] = frozenset()) -> Iterator[tuple[str, str]]:
        """(printable path, why) for every unusable entry below ``tree``, read without noticing; the trees
        in ``skip`` (done shards already checked) are not read."""
        for e in self.raw_entries(tree):
            p = f"{prefix}{e.name}"
            if e.odd:
                yield shown(p), e.odd
            elif e.is_tree and e.sha not in skip:
                yield from self.odd_below(e.sha, p + "/", skip)
