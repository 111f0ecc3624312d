"""SSH signing for the trust tests: real ssh-keygen keys, a clone that signs, a fleet that requires it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from fleetq.core.cas import Plan, transact
from fleetq.core.clone import Fleet
from fleetq.core.config import SETTINGS
from fleetq.core.task import Task
from fleetq.trust import signing
from support.fleets import git


def make_keys(d: Path, *names: str) -> dict[str, Path]:
    d.mkdir(exist_ok=True)
    out = {}
    for name in names:
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(d / name)], check=True)
        out[name] = d / name
    return out


def signers(keys: dict[str, Path], *names: str) -> bytes:
    return "".join(f"{n}@example.invalid {keys[n].with_suffix('.pub').read_text().strip()}\n" for n in names).encode()


def sign_as(fleet: Fleet, key: Path | None) -> None:
    """Set up (or switch off) commit signing in this clone only."""
    if key is None:
        git(fleet.root, "config", "commit.gpgsign", "false")
        return
    for k, v in (("gpg.format", "ssh"), ("user.signingkey", str(key)), ("commit.gpgsign", "true")):
        git(fleet.root, "config", k, v)


def lock_down(fleet: Fleet, keys: dict[str, Path], *names: str, require: bool = True) -> None:
    """Commit require_signed and the allowed signers (signed when the clone signs)."""

    def plan(snap) -> Plan:
        text = (snap.read(SETTINGS) or b"").decode()
        text = text.replace(f"require_signed: {str(not require).lower()}", f"require_signed: {str(require).lower()}")
        return Plan(
            changes={SETTINGS: text.encode(), signing.SIGNERS: signers(keys, *names)},
            subject="lock down",
            sign=fleet.repo.config_get("commit.gpgsign") == "true",
        )

    transact(fleet, plan)


def resign(fleet: Fleet) -> None:
    """A signed commit that touches every protected file: "I reviewed these"."""

    def plan(snap) -> Plan:
        paths = signing.protected_paths(snap.repo, snap.tree)
        return Plan(changes={p: snap.read(p) + b"\n# reviewed\n" for p in paths}, subject="trust: reviewed", sign=True)

    transact(fleet, plan)


def assign(cli: Any, fleet: Fleet, tid: str, script: str = "echo hi") -> Any:
    """`fleetq assign job TID` by ``fleet`` (signed when that clone signs)."""
    args = ["--fleet", fleet.root, "--machine", fleet.machine, "assign", "job", tid, "--id", tid]
    return cli(*args, "--set", f"script={script}")


def verdict(fleet: Fleet, tid: str, task: Task | None = None) -> str | None:
    """What the worker's check (runner.untrusted) says about ``tid`` at the head: None means it may run."""
    snap = fleet.snapshot()
    return signing.verify_task(fleet.repo, snap.commit, task or snap.get(tid))
