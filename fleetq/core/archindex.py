"""The archive index: which task ids each archived done day shard held (docs/design.md, "The repo is the queue").

Archiving takes a whole day shard out of the tree (one tree entry, not one path per task)
and leaves one small text file in its place, ``archived/<YYYY-MM-DD>.ids``: a comment line,
then the shard's task ids, one per line, sorted. A prefix lookup (`fleetq show 8758`,
`fleetq log 8758`) reads these few blobs instead of walking history, and the tree keeps one
entry per archived day, not one per task: git's connectivity check, which walks the tree on
every fetch and push, stays cheap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fleetq import yamlio
from fleetq.core import states
from fleetq.layout import ARCHIVED

SUFFIX = ".ids"
NAME_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:\.[1-9][0-9]{0,5})?\.ids$")  # <day>.ids, <day>.<n>.ids
MAX_BYTES = yamlio.MAX_BYTES  # one index file: the limit every checked file has (trust/checks.check_blob)
_PARSED: dict[str, list[str]] = {}  # blob sha -> ids; blobs are immutable


def path(day: str, part: int = 0) -> str:
    """``archived/<day>.ids`` (``archived/<day>.<n>.ids`` for the rare day whose ids pass 1 MiB)."""
    return f"{ARCHIVED}/{day}{f'.{part}' if part else ''}{SUFFIX}"


def day_of(name: str) -> str | None:
    """The day an index file's name is for (its name under ``archived/``), None for a name that is not one."""
    m = NAME_RE.match(name)
    return m.group(1) if m else None


def render(day: str, ids: Iterable[str]) -> list[bytes]:
    """The index file(s) of one day: usually one, split so that none passes ``MAX_BYTES``."""
    head = f"# task ids archived out of {states.QUEUE}/{states.DONE}/{day}/ (fleetq show ID, fleetq log ID)\n"
    out: list[bytes] = []
    lines = [head]
    size = len(head)
    for i in sorted(set(ids)):
        if size + len(i) + 1 > MAX_BYTES:
            out.append("".join(lines).encode())
            lines, size = [head], len(head)
        lines.append(f"{i}\n")
        size += len(i) + 1
    out.append("".join(lines).encode())
    return out


def parse(raw: bytes, blob: str = "") -> list[str]:
    """The ids of an index file (comment and blank lines skipped; a line that is not an id is left out)."""
    hit = _PARSED.get(blob) if blob else None
    if hit is not None:
        return hit
    ids = [
        line
        for line in raw.decode("utf-8", "replace").splitlines()
        if line and not line.startswith("#") and states.valid_id(line)
    ]
    if blob:
        if len(_PARSED) > 5000:
            _PARSED.clear()
        _PARSED[blob] = ids
    return ids


def problems(file_path: str, raw: bytes) -> list[str]:
    """What is wrong with a file under ``archived/`` (the checkers' rule: validate, the hooks, fsck)."""
    parts = file_path.split("/")
    if len(parts) != 2 or day_of(parts[1]) is None:
        return [f"{file_path}: files under {ARCHIVED}/ are archive indexes named YYYY-MM-DD{SUFFIX}"]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return [f"{file_path}: not UTF-8 text"]
    for n, line in enumerate(text.splitlines(), 1):
        if line and not line.startswith("#") and not states.valid_id(line):
            shown = line if len(line) <= 40 else f"{line[:37]}..."
            return [f"{file_path}:{n}: expected one task id per line, not {shown!r}"]
    return []
