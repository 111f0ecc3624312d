"""`fleetq init` and `fleetq join`: lay down a fleet repo, or clone and register with one."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fleetq import yamlio
from fleetq.core import liveness, states
from fleetq.core.cas import Plan, transact
from fleetq.core.clone import MARKER, Fleet, machine_name, set_default_fleet, user_data_dir
from fleetq.core.config import GENERIC_TYPES, MACHINES, local_os
from fleetq.core.heartbeat import Observer
from fleetq.core.snapshot import Snapshot
from fleetq.core.transitions import signs
from fleetq.errors import Conflict, FleetqError, UsageError
from fleetq.git.repo import GitRepo, checkout_tracking, init_bare, init_clone
from fleetq.layout import TRACKING, product_root
from fleetq.trust import signing

SKELETON_CONFIG = ("fleet.yaml", "agents.yaml", "skills.yaml", "schedules.yaml", "notify.yaml")
FLEET_README = """# fleet repo

This repository is a fleetq queue. Tasks are YAML files; their directory is their
state (queue/pending, claimed, done/<day>, failed, needs_human). Edit config/ to
declare machines, agents, skills and schedules; drop custom task types into
handlers/<type>.py. Everything is committed and pushed: `git log` is the history.
"""
GITIGNORE = "*.tmp\n.fleetq/\n"
Say = Callable[[str], None]  # where init and join tell the person what changed beyond the clone


def detect_capabilities() -> list[str]:
    caps = list(GENERIC_TYPES)
    if shutil.which("xcodebuild"):
        caps += ["ios_build", "xcode"]
    if shutil.which("gradle") or os.environ.get("ANDROID_HOME"):
        caps += ["android_build", "gradle"]
    if shutil.which("docker"):
        caps.append("docker")
    return caps


def detect_agents() -> list[str]:
    try:
        from fleetq.run.agents.registry import installed_agents, load_agents

        return sorted(installed_agents(load_agents(None)))
    except Exception:  # noqa: BLE001 - detection is best effort; the worker detects again
        return []


def machine_entry() -> dict[str, Any]:
    return {"os": local_os(), "capabilities": detect_capabilities(), "agents": detect_agents(), "slots": 2}


def layout_files(machine: str) -> dict[str, bytes]:
    """Every file of a new fleet repo."""
    root = product_root()
    files: dict[str, bytes] = {f"{states.QUEUE}/{s}/.gitkeep": b"" for s in states.STATES}
    for name in SKELETON_CONFIG:
        src = root / "config" / name
        if src.exists():
            files[f"config/{name}"] = src.read_bytes()
    header = "# Machines of this fleet: os, capabilities (task types and tools), agents, slots, aliases.\n"
    files[MACHINES] = (header + yamlio.dump_plain({"machines": {machine: machine_entry()}})).encode()
    files["handlers/README.md"] = b"Custom task types: handlers/<type>.py with `def run(ctx)`; found with no wiring.\n"
    files["README.md"] = FLEET_README.encode()
    files[".gitignore"] = GITIGNORE.encode()
    files[MARKER] = b"# This repository is a fleetq fleet (the queue is its queue/ directory).\nformat: 1\n"
    return files


def _empty_target(path: Path) -> None:
    if path.exists() and any(path.iterdir()):
        raise UsageError(f"{path} exists and is not empty")


def _register_plan(machine: str, sign: bool) -> Any:
    def plan(snap: Snapshot) -> Plan | None:
        doc = yamlio.load_rt_section(snap.read(MACHINES), MACHINES, "machines")
        names = set(doc["machines"])
        for spec in doc["machines"].values():
            names.update((spec or {}).get("aliases") or [])
        if machine in names:
            return None
        doc["machines"][machine] = yamlio.to_rt(machine_entry())
        return Plan(
            changes={MACHINES: yamlio.dump_rt(doc).encode()},
            subject=f"fleetq: register machine {machine}",
            trailers=[("Fleetq-Transition", f"join {machine}")],
            value=True,
            sign=sign,  # machines.yaml is protected: under require_signed this must be signed
        )

    return plan


def _register(fleet: Fleet, say: Say | None) -> None:
    """Declare this machine in config/machines.yaml, a protected file: under require_signed only by a signed
    commit (an unsigned one would be refused, or stop every task on a remote without the hook)."""
    sign = signs(fleet)
    if not sign and signing.policy_at(fleet.repo, fleet.snapshot().tree).require:
        if say:
            say(
                f"{fleet.machine} is not added to {MACHINES}: this fleet requires signed commits and this clone "
                "does not sign (git config commit.gpgsign true, gpg.format ssh, user.signingkey); until someone "
                "declares it, it runs the generic task types"
            )
        return
    transact(fleet, _register_plan(fleet.machine, sign))


def _finish(path: Path, machine: str) -> Fleet:
    repo = GitRepo(path)
    repo.config_set("fleetq.machine", machine)
    checkout_tracking(repo)
    return Fleet(path.resolve(), machine)


def _make_default(fleet: Fleet, say: Say | None) -> None:
    """The newest init or join becomes the default fleet (only once it worked), and says so."""
    was = set_default_fleet(fleet.root)
    if say is not None:
        say(f"default fleet is now {fleet.root}" + (f" (was {was})" if was else ""))


def init(
    path: Path, remote: str | None = None, machine: str | None = None, *, say: Say | None = None
) -> tuple[Fleet, str]:
    """A working clone at ``path``; with no remote, a local bare repo becomes its origin.

    It becomes the default fleet; ``say`` hears that in one line."""
    path = path.expanduser()
    _empty_target(path)
    name = machine_name(machine, None)
    if remote is None:
        bare = user_data_dir() / "remotes" / f"{path.resolve().name}-{secrets.token_hex(3)}.git"
        init_bare(bare)
        remote = str(bare)
    repo = init_clone(path, remote)
    try:
        head = repo.ls_remote_head()
    except FleetqError:
        shutil.rmtree(path, ignore_errors=True)
        raise
    if head is None:
        files = layout_files(name)
        tree = repo.apply(None, files)
        sha = repo.commit(tree, [], f"fleetq: new fleet\n\nFleetq-Machine: {name}\nFleetq-Transition: init\n", name)
        repo.push(sha)
        repo.fetch()
    else:
        repo.fetch()
        _require_fleet(repo, remote)
    fleet = _finish(path, name)
    _register(fleet, say)
    fleet.refresh_checkout()
    _make_default(fleet, say)
    return fleet, remote


def join(url: str, path: Path, machine: str | None = None, *, force: bool = False, say: Say | None = None) -> Fleet:
    """Clone an existing fleet and register this machine in config/machines.yaml; it becomes the default fleet.

    A name whose worker is live elsewhere is refused (``force``: the machine really moved here)."""
    path = path.expanduser()
    _empty_target(path)
    repo = init_clone(path, url)
    try:
        if repo.fetch() is None:
            raise UsageError(f"{url} holds no fleet yet: use `fleetq init DIR --remote {url}`")
        _require_fleet(repo, url)
    except FleetqError:
        shutil.rmtree(path, ignore_errors=True)
        raise
    fleet = _finish(path, machine_name(machine, None))
    if not force:
        b = Observer(fleet).read(fetch=True).get(fleet.machine)
        lease = float(fleet.config(fleet.snapshot()).get("lease"))
        clash = b and liveness.identity_clash(b.state, b.age, lease, host=socket.gethostname(), clone=str(fleet.root))
        if clash:
            shutil.rmtree(path, ignore_errors=True)
            raise Conflict(clash)
    _register(fleet, say)
    fleet.refresh_checkout()
    _make_default(fleet, say)
    return fleet


def _require_fleet(repo: GitRepo, url: str) -> None:
    snap = Snapshot(repo, repo.rev(TRACKING))
    if snap.tree is None or repo.lookup(snap.tree, states.QUEUE) is None:
        raise UsageError(f"{url} is a git repo but not a fleet (no queue/ directory)")
