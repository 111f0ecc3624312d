"""What a task is judged against beyond its own file: the tree around it and the machines of the fleet.

Two checks need that context, and every checker (validate, queue, fsck, the hooks, ``assign``)
runs them the same way:

* a dependency on a task that exists nowhere: not in the tree, and never done (archived
  tasks stay in git history), so the task would wait forever;
* a pending task that no machine could ever run (``Reach.never``). fleetq refuses only what
  is certain: a pin to a machine nobody declares, aliases or ever heard from (when the fleet
  knows any machine at all), a type or capability that neither such a machine nor a new
  undeclared worker (which gets the generic types) has, or an agent that neither the
  built-in registry nor config/agents.yaml defines. A fresh fleet, whose machines.yaml is
  still empty and whose workers never beat, knows no machine: only an unknown agent is
  certain there, and every ordinary task is accepted.

A change is judged against the fleet only when it makes a task ask for something new
(``decisive``: a new task, or a new type, pin, need, agent or dependency), so fleetq's own
moves of a task the fleet changed around still land (trust/receive.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fleetq import yamlio
from fleetq.core import states
from fleetq.core.config import GENERIC_TYPES, MACHINES, parse_machines
from fleetq.core.heartbeat import read_state
from fleetq.core.matching import AGENT_TYPES
from fleetq.core.snapshot import Snapshot
from fleetq.core.task import Task
from fleetq.errors import FleetqError
from fleetq.git.repo import GitRepo
from fleetq.layout import AGENTS, MACHINE_REFS
from fleetq.run.agents.registry import agents_from
from fleetq.trust.checks import Finding, tree_snapshot

GENERIC = frozenset(GENERIC_TYPES)
WAITING_STATES = (states.PENDING, states.NEEDS_HUMAN, states.FAILED)  # states a dependency still matters in


def _plain(raw: bytes | None, where: str) -> Any:
    try:
        return None if raw is None else yamlio.to_plain(yamlio.load_safe(raw, where))
    except FleetqError:
        return None


@dataclass(frozen=True)
class Reach:
    """The machines fleetq knows (name or alias -> capabilities) and the agents a worker could run."""

    machines: Mapping[str, frozenset[str]] | None  # None: config/machines.yaml does not load, so nothing is certain
    agents: frozenset[str]

    @classmethod
    def build(cls, machines_raw: bytes | None, agents_raw: bytes | None, beats: Mapping[str, dict[str, Any]]) -> Reach:
        """From machines.yaml and agents.yaml (bytes as committed) and heartbeat states by machine name."""
        known: dict[str, frozenset[str]] | None = {}
        try:
            specs = parse_machines(_plain(machines_raw, MACHINES))
        except FleetqError:
            specs, known = {}, None
        advertised = {
            n: frozenset(c for c in (b.get("capabilities") or []) if isinstance(c, str)) for n, b in beats.items()
        }
        if known is not None:
            for spec in specs.values():
                caps = frozenset(spec.capabilities).union(*(advertised.get(a, ()) for a in (spec.name, *spec.aliases)))
                known.update(dict.fromkeys((spec.name, *spec.aliases), caps))
            for name, caps in advertised.items():
                known.setdefault(name, caps | GENERIC)  # an undeclared worker runs the generic types
        try:  # a worker whose agents.yaml does not load runs the built-in agents, and so does this
            registry = agents_from(_plain(agents_raw, AGENTS))
        except FleetqError:
            registry = agents_from(None)
        return cls(known, frozenset(registry))

    @classmethod
    def at(cls, snap: Snapshot, beats: Mapping[str, dict[str, Any]] | None = None) -> Reach:
        """As of a snapshot's tree, with ``beats`` (default: the heartbeat refs as the repo holds them)."""
        return cls.build(
            snap.read(MACHINES), snap.read(AGENTS), heartbeat_states(snap.repo) if beats is None else beats
        )

    def never(self, t: Task) -> str | None:
        """Why no machine could ever run ``t``, in one phrase (None: one could, or it is not certain)."""
        if t.type in AGENT_TYPES and t.agent and t.agent not in self.agents:
            return f"agent {t.agent} is neither built in nor in {AGENTS} (agents: {', '.join(sorted(self.agents))})"
        if not self.machines:
            return None  # no machine known yet (or machines.yaml unreadable): a pin may name one still to join
        need = {t.type, *t.requires}
        if t.target:
            caps = self.machines.get(t.target)
            if caps is None:
                names = ", ".join(sorted(self.machines))
                return f"unknown machine '{t.target}' (config/machines.yaml and heartbeats know: {names})"
            if t.type not in caps:
                return (
                    f"{t.target} cannot run {t.type} tasks (capabilities: {', '.join(sorted(caps)) or 'none'}); "
                    f"add it with `fleetq skills add {t.target} {t.type}` or pick another machine"
                )
            missing = sorted(need - caps)
            return f"{t.target} lacks required capabilities: {', '.join(missing)}" if missing else None
        pool = [GENERIC, *self.machines.values()]
        if any(need <= caps for caps in pool):
            return None
        nobody = sorted(c for c in need if not any(c in caps for caps in pool))
        if nobody:
            what = "type" if nobody == [t.type] else "capability" if len(nobody) == 1 else "capabilities"
            return f"no machine declares (in {MACHINES}) or advertises the {what} {', '.join(nobody)}"
        return f"no one machine has all of {', '.join(sorted(need))}"


def heartbeat_states(repo: GitRepo) -> dict[str, dict[str, Any]]:
    """Each machine's last heartbeat state, as this repo holds the refs (a remote, or a clone's last fetch)."""
    # typed (heartbeat.read_state): anyone who can push writes these refs
    refs = repo.refs_under(MACHINE_REFS)
    return {ref[len(MACHINE_REFS) + 1 :]: read_state(repo, sha)[0] for ref, sha in refs.items()}


class Context:
    """The tree a task file is judged in: which ids it holds, its history, and what could run its tasks."""

    def __init__(
        self,
        repo: GitRepo,
        commit: str | None,
        *,
        tree: str | None = None,
        read: Callable[[str], bytes | None] | None = None,
        exists: Callable[[str], bool] | None = None,
        beats: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        """``commit`` holds the history (archived tasks); ``tree`` (default: the commit's) the files,
        unless ``read`` and ``exists`` say what the files are (a working tree over a fetched head)."""
        self.repo, self.commit = repo, commit
        snap = tree_snapshot(repo, tree if tree is not None else repo.tree_of(commit) if commit else None)
        self.read = read or snap.read
        self.exists = exists or snap.exists
        self._beats = beats
        self._reach: Reach | None = None

    @property
    def reach(self) -> Reach:
        if self._reach is None:
            beats = self._beats if self._beats is not None else heartbeat_states(self.repo)
            self._reach = Reach.build(self.read(MACHINES), self.read(AGENTS), beats)
        return self._reach

    def was_done(self, task_id: str) -> bool:
        """Whether ``task_id`` was ever done (and archived out of the tree since): git history knows."""
        if not self.commit:
            return False
        glob = f":(glob){states.QUEUE}/{states.DONE}/**/{task_id}.yaml"
        return bool(self.repo.log([glob], rev=self.commit))

    @staticmethod
    def concerns(t: Task) -> bool:
        """Whether ``findings`` can find anything in ``t`` (a pending task, or one with dependencies left)."""
        return t.state == states.PENDING or (t.state in WAITING_STATES and bool(t.depends_on))

    def findings(self, t: Task, *, archived: bool = False) -> list[Finding]:
        """A valid task's problems in this tree: dependencies that exist nowhere (with ``archived``, also
        those met by a task archived since: fsck offers to drop them), and a pending task nothing could run."""
        out = []
        for dep in t.depends_on if t.state in WAITING_STATES else []:
            if self.exists(dep):
                continue
            gone = self.was_done(dep)
            if gone and not archived:
                continue
            what = "was done and archived (the dependency is met)" if gone else "does not exist"
            out.append(
                Finding(
                    t.path,
                    f"{t.path}: depends on {dep}, which {what}",
                    "dangling_dep",
                    t.id,
                    {"dep": dep, "archived": gone},
                )
            )
        why = self.reach.never(t) if t.state == states.PENDING else None
        if why:
            out.append(Finding(t.path, f"{t.path}: no machine could ever run it: {why}", "never_runs", t.id))
        return out


def decisive(t: Task) -> tuple[Any, ...]:
    """The fields that decide where and whether a task can run (a change to anything else is not judged again)."""
    return (t.type, t.target, tuple(t.requires), t.agent, tuple(t.depends_on))
