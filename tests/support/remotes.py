"""Hand-made pushes that bypass fleetq's own checks, as a hostile or careless pusher would make them."""

from __future__ import annotations

from fleetq.core import transitions
from fleetq.core.clone import Fleet
from fleetq.core.config import MachineSpec
from fleetq.core.matching import Seat

SEAT = Seat(MachineSpec("alpha", capabilities=["run_script"]))


def raw_commit(
    fleet: Fleet, changes: dict[str, bytes | None], message: str = "hand edit", *, parent: str | None = "head"
) -> str:
    """A commit made with git plumbing on the remote's head (or on ``parent``), not through fleetq's checks."""
    repo = fleet.repo
    head = repo.fetch() if parent == "head" else parent
    tree = repo.apply(repo.tree_of(head) if head else None, changes)
    return repo.commit(tree, [head] if head else [], message + "\n", fleet.machine)


def raw_push(fleet: Fleet, changes: dict[str, bytes | None], message: str = "hand edit") -> str:
    sha = raw_commit(fleet, changes, message)
    fleet.repo.push(sha)
    return sha


def done_task(fleet: Fleet, tid: str) -> str:
    """A task taken through pending -> claimed -> done by fleetq's own calls; its done path."""
    transitions.create(fleet, [{"id": tid, "type": "run_script", "payload": {"script": "true"}}])
    [t] = [t for t in transitions.claim(fleet, SEAT, 5) if t.id == tid]
    transitions.complete(fleet, [transitions.Completion(tid, t.attempts, "done", {"exit_code": 0})])
    return fleet.snapshot().locate(tid)[0].loc.path
