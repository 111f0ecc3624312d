"""Live output: the recent output of a worker's running tasks, on a ref of its own (docs/design.md, "Live output").

``refs/fleetq/live/<machine>`` is a parentless commit, force-pushed by that machine's worker only
(``worker/live.py``), whose tree holds one ``<id>.yaml`` per running task: its attempt, when it was
read, the publish's ``seq``, the last complete lines of the attempt's output (redacted, at most
``MAX_LINES`` lines and ``MAX_BYTES`` bytes), the number of the last of them (``line``: lines since the
attempt started, so a reader prints only what is new) and the unfinished last line (``partial``).
Like the heartbeat refs it never touches main's history, and anyone who can push may write it, so
every field is read typed and bounded: a bad entry is left out, never a crash.

Readers fetch these refs with main (``fetch_snapshot``) and trust an entry only while the queue
says its task is claimed by that machine with that attempt (``for_task``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from fleetq import yamlio
from fleetq.core.clone import Fleet
from fleetq.core.snapshot import Snapshot
from fleetq.core.states import valid_id
from fleetq.core.task import Task
from fleetq.errors import FleetqError
from fleetq.git.objects import Entry
from fleetq.git.repo import GitRepo
from fleetq.layout import LIVE_REFS

MAX_BYTES = 4096  # of one task's output shown live
MAX_LINES = 40
MAX_ENTRY = 64 * 1024  # a blob larger than this is not read (a hand-pushed ref may hold anything)
MAX_LINE = 1000  # characters of one line kept by a reader
DEFAULT_INTERVAL = 2.0  # seconds between a worker's publishes (config/fleet.yaml `live_output`; 0: off)
SUFFIX = ".yaml"


@dataclass
class LiveEntry:
    """One running task's recent output as its worker last published it."""

    id: str
    attempt: int
    line: int  # the number of the last complete line in ``lines`` (1 = the attempt's first line)
    lines: list[str] = field(default_factory=list)
    partial: str = ""  # the last line, not yet ended by a newline
    at: str = ""  # when the worker read it (the worker's clock)
    seq: int = 0  # the publish that wrote it
    machine: str = ""

    def numbered(self) -> list[tuple[int, str]]:
        """``(line number, text)`` of each complete line."""
        first = self.line - len(self.lines) + 1
        return [(first + i, text) for i, text in enumerate(self.lines)]

    def last_line(self) -> str:
        """The last non-empty line (the unfinished one first), for one-line views."""
        for text in [self.partial, *reversed(self.lines)]:
            if text.strip():
                return text.strip()
        return ""

    def doc(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("machine")
        return d


def ref_of(machine: str) -> str:
    return f"{LIVE_REFS}/{machine}"


def header(task_id: str, attempt: int | None) -> bytes:
    """How an attempt's section of a task's log starts (worker/runner.py writes it, then the machine and time)."""
    return f"=== {task_id} attempt {attempt} on ".encode()


def interval_of(value: Any) -> float:
    """Seconds between publishes from config/fleet.yaml's ``live_output`` (0 or false: off)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        return DEFAULT_INTERVAL  # unset (the reader's config leaves a wrong value unset)
    return float(value)


# -- writing (the worker) --


def publish(fleet: Fleet, entries: list[LiveEntry], seq: int) -> str:
    """Force-push ``entries`` (an empty list: an empty tree) as this machine's live ref; returns the commit."""
    repo = fleet.repo
    files = {f"{e.id}{SUFFIX}": yamlio.dump_plain(e.doc()).encode() for e in entries}
    tree = repo.apply(None, files)
    sha = repo.commit(tree, [], f"live output {fleet.machine} #{seq}\n", fleet.machine)
    ref = ref_of(fleet.machine)
    repo.push_refs([f"+{sha}:{ref}"])
    try:
        repo.set_ref(ref, sha)
    except FleetqError:
        pass  # the local copy is a cache; the push is what counts
    return sha


# -- reading --


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _text(v: Any) -> str | None:
    return v[:MAX_LINE] if isinstance(v, str) else None


def parse_entry(data: Any, task_id: str, machine: str) -> LiveEntry | None:
    """A typed entry, or None when it is not one (wrong types, a name that is not its id)."""
    if not isinstance(data, dict):
        return None
    attempt: Any = data.get("attempt")
    line: Any = data.get("line")
    seq: Any = data.get("seq", 0)
    if not (_whole(attempt) and _whole(line) and _whole(seq)):
        return None
    raw = data.get("lines")
    if data.get("id") != task_id or not isinstance(raw, list):
        return None
    lines = [t for t in (_text(x) for x in raw[-MAX_LINES:]) if t is not None]
    return LiveEntry(
        task_id,
        int(attempt),
        int(line),
        lines,
        _text(data.get("partial")) or "",
        _text(data.get("at")) or "",
        int(seq),
        machine,
    )


def _entry(repo: GitRepo, e: Entry | None, task_id: str, machine: str) -> LiveEntry | None:
    """The typed entry in blob ``e`` (``<task_id>.yaml``), or None when it is missing, too big or no entry."""
    if e is None or e.is_tree or repo.object_size(e.sha) > MAX_ENTRY:
        return None
    return parse_entry(yamlio.to_plain(yamlio.load_safe(repo.read_blob(e.sha), e.name)), task_id, machine)


def read(repo: GitRepo, machine: str) -> dict[str, LiveEntry]:
    """The entries of ``machine``'s live ref as last fetched (empty when it has none or it is unreadable)."""
    sha = repo.rev(ref_of(machine))
    if sha is None:
        return {}
    out: dict[str, LiveEntry] = {}
    try:
        for e in repo.entries(repo.tree_of(sha)):
            tid = e.name.removesuffix(SUFFIX)
            if not e.name.endswith(SUFFIX) or not valid_id(tid):
                continue
            try:
                entry = _entry(repo, e, tid, machine)
            except FleetqError:
                continue
            if entry is not None:
                out[tid] = entry
    except FleetqError:
        return out
    return out


def for_task(repo: GitRepo, t: Task) -> LiveEntry | None:
    """The live output of ``t``'s current run: only while it is claimed, by the machine and attempt the
    queue names (an entry of an earlier attempt, or a stale ref, is no run of it). Reads only its own
    entry: `wait` and `monitor` ask this for every running task on every look."""
    claim = t.claim
    by = claim.get("machine")
    if t.state != "claimed" or not isinstance(by, str) or not valid_id(by):
        return None
    sha = repo.rev(ref_of(by))
    if sha is None:
        return None
    try:
        entry = _entry(repo, repo.lookup(repo.tree_of(sha), f"{t.id}{SUFFIX}"), t.id, by)
    except FleetqError:
        return None
    if entry is None or entry.attempt != claim.get("attempt"):
        return None
    return entry


def fetch_snapshot(fleet: Fleet, *, machines: bool = False, tolerate_offline: bool = False) -> Snapshot:
    """``Fleet.snapshot`` that fetches the live output refs (and, if asked, the heartbeats) in the same call."""
    return fleet.snapshot(tolerate_offline=tolerate_offline, machines=machines, live=True)
