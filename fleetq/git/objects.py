"""Tree and blob objects: parsing a raw tree, serialising one, and the nested rewrite behind
``GitRepo.apply`` (only the subtrees on changed paths are rewritten).

Pure functions over object bytes and callables: the object database itself is reached
through :class:`fleetq.git.repo.GitRepo`, which delegates here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Union

from fleetq.errors import FleetqError

TREE_MODE = 0o40000
BLOB_MODE = 0o100644
LINK_MODE = 0o160000  # a gitlink: a submodule's commit, an object this repo does not hold
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

# path part -> a subtree's changes, new file bytes, or None (remove)
Nested = dict[str, Union["Nested", bytes, None]]


@dataclass(frozen=True)
class Entry:
    name: str
    is_tree: bool
    sha: str
    link: bool = False  # a gitlink (mode 160000): neither a file nor a tree of this repo

    @property
    def odd(self) -> str:
        """Why no reader can use this entry ("" for a plain file or tree): kept only to write its tree back."""
        if self.link:
            return "a submodule (gitlink) entry, not a file: the fleet repo holds plain files only"
        if not self.name or self.name in (".", "..") or "/" in self.name:
            return "a file name git itself refuses"
        try:
            self.name.encode("utf-8")
        except UnicodeEncodeError:
            return "a file name that is not UTF-8"
        return ""


def shown(path: str) -> str:
    """A path as text that prints (bytes that are not UTF-8 become U+FFFD)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def parse_tree(data: bytes) -> list[Entry]:
    """A raw tree object's entries (``<mode> <name>\\0<20-byte sha>`` each).

    gitpython's tree_entries_from_data validates every name through its path checks and
    costs ~8 µs an entry; a 100,000-task done/ history made that seconds per process.
    Names are only ever used as paths inside the repo (fleetq checks task paths itself).
    """
    out: list[Entry] = []
    i, n, find = 0, len(data), data.find
    while i < n:
        sp = find(b" ", i)
        nul = find(b"\0", sp)
        if sp < 0 or nul < 0 or nul + 21 > n:
            raise FleetqError("a damaged tree object in the fleet repo")
        mode = data[i:sp]
        out.append(
            Entry(
                data[sp + 1 : nul].decode("utf-8", "surrogateescape"),  # round-trips: tree_data writes it back
                mode == b"40000",
                data[nul + 1 : nul + 21].hex(),
                mode == b"160000",
            )
        )
        i = nul + 21
    return out


def tree_data(entries: list[Entry]) -> bytes:
    """A tree object's bytes for ``entries`` (in git's order: by name bytes, a tree as if its name ended in '/')."""
    named = [(e.name.encode("utf-8", "surrogateescape"), e) for e in entries]
    named.sort(key=lambda x: x[0] + (b"/" if x[1].is_tree else b""))
    out = []
    for name, e in named:
        mode = TREE_MODE if e.is_tree else LINK_MODE if e.link else BLOB_MODE
        out.append(b"%o %s\0%s" % (mode, name, bytes.fromhex(e.sha)))
    return b"".join(out)


def nest(changes: Mapping[str, bytes | None]) -> Nested:
    """``{"a/b/c": data}`` -> ``{"a": {"b": {"c": data}}}``; FleetqError when a file stands where a directory must."""
    nested: Nested = {}
    for path, data in changes.items():
        node = nested
        parts = path.split("/")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise FleetqError(f"{path}: a file stands where a directory should")
            node = child
        node[parts[-1]] = data
    return nested


def apply_nested(
    tree: str | None,
    nested: Nested,
    *,
    entries: Callable[[str], list[Entry]],
    write_blob: Callable[[bytes], str],
    write_tree: Callable[[list[Entry]], str],
) -> str | None:
    """``tree`` with ``nested`` applied; None when nothing is left (an empty directory vanishes)."""
    current = {e.name: e for e in entries(tree)} if tree else {}
    for name, change in nested.items():
        if isinstance(change, dict):
            old = current.get(name)
            sub = apply_nested(
                old.sha if old is not None and old.is_tree else None,
                change,
                entries=entries,
                write_blob=write_blob,
                write_tree=write_tree,
            )
            if sub is None:
                current.pop(name, None)
            else:
                current[name] = Entry(name, True, sub)
        elif change is None:
            current.pop(name, None)
        else:
            current[name] = Entry(name, False, write_blob(change))
    if not current:
        return None
    return write_tree(list(current.values()))


def commit_data(tree: str, parents: list[str], message: str, who: tuple[str, str], when: int) -> bytes:
    """A commit object's bytes: ``who`` (name, email) authors and commits it at ``when`` (UTC seconds)."""
    name, email = who
    stamp = f"{when} +0000"
    lines = [f"tree {tree}"] + [f"parent {p}" for p in parents]
    lines += [f"author {name} <{email}> {stamp}", f"committer {name} <{email}> {stamp}", "", message]
    text = "\n".join(lines)
    if not text.endswith("\n"):
        text += "\n"
    return text.encode("utf-8")


def commit_tree(data: bytes) -> str | None:
    """The tree sha of a raw commit object (None: not a commit)."""
    first = data.split(b"\n", 1)[0]
    return first[5:].decode() if first.startswith(b"tree ") else None


def commit_parents(data: bytes) -> list[str]:
    """The parent shas of a raw commit object, in order."""
    head = data.split(b"\n\n", 1)[0]
    return [line[7:].decode() for line in head.split(b"\n") if line.startswith(b"parent ")]
