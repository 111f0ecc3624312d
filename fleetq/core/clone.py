"""Finding the fleet clone and this machine's name; the Fleet handle commands work through."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

from fleetq import yamlio
from fleetq.core.config import FleetConfig
from fleetq.core.snapshot import Snapshot
from fleetq.errors import FleetqError, RemoteError, UsageError
from fleetq.git import checkout
from fleetq.git.repo import GitRepo, find_worktree_root
from fleetq.layout import MARKER, TRACKING

ENV_FLEET = "FLEETQ_FLEET"
ENV_MACHINE = "FLEETQ_MACHINE"
log = logging.getLogger("fleetq.clone")


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fleetq" / "config.yaml"


def user_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "fleetq"


def read_user_config() -> dict:
    data = yamlio.read_file(user_config_path())
    return data if isinstance(data, dict) else {}


def set_default_fleet(path: Path) -> Path | None:
    """Make ``path`` the default fleet (the newest init or join wins); the default it replaced, if any."""
    cfg = read_user_config()
    old = cfg.get("fleet")
    cfg["fleet"] = str(path)
    yamlio.write_file(user_config_path(), cfg)
    return Path(old) if old and Path(old) != path and (Path(old) / ".git").exists() else None


def is_fleet_dir(path: Path) -> bool:
    """A fleet clone, not just any repo with a queue/ folder (fleetq's own source tree has one)."""
    return (path / ".git").exists() and (path / MARKER).is_file()


def locate(explicit: str | Path | None = None) -> Path:
    """--fleet DIR, then $FLEETQ_FLEET, then the fleet repo around the cwd, then the user's default."""
    if explicit:
        p = Path(explicit).expanduser()
        if not (p / ".git").exists():
            raise UsageError(f"--fleet {explicit}: not a fleet clone (no .git there)")
        return p.resolve()
    env = os.environ.get(ENV_FLEET)
    if env:
        p = Path(env).expanduser()
        if not (p / ".git").exists():
            raise UsageError(f"${ENV_FLEET}={env}: not a fleet clone (no .git there)")
        return p.resolve()
    root = find_worktree_root(Path.cwd())
    if root is not None and is_fleet_dir(root):
        return root.resolve()
    default = read_user_config().get("fleet")
    if default and (Path(default) / ".git").exists():
        return Path(default).resolve()
    raise UsageError("no fleet found: run `fleetq init DIR` (or `fleetq join URL DIR`), or pass --fleet DIR")


def machine_name(explicit: str | None, repo: GitRepo | None) -> str:
    """--machine, then $FLEETQ_MACHINE, then the clone's `fleetq.machine`, then the host name."""
    name = explicit or os.environ.get(ENV_MACHINE) or (repo.config_get("fleetq.machine") if repo else None)
    name = name or socket.gethostname().split(".")[0].lower()
    from fleetq.core.states import valid_id

    if not valid_id(name):
        raise UsageError(f"machine name {name!r} is not a safe name (letters, digits, '.', '_', '-')")
    return name


class Fleet:
    """One clone of the fleet repo as used by this machine."""

    def __init__(self, root: Path, machine: str | None = None) -> None:
        self.root = root
        self.repo = GitRepo(root)
        self.machine = machine_name(machine, self.repo)
        self.state_dir = self.repo.git_dir / "fleetq"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock  # imported on use: it costs ~15 ms of every start-up

        # Serialises fetch-commit-push between the CLI and a worker sharing this clone.
        self.lock = FileLock(str(self.state_dir / "clone.lock"))
        self.offline = False
        # Warnings about the clone (a checkout left behind, a stale lock removed): logged, or printed
        # by the CLI (cli/context.py sets cli/output.warn).
        self.warn: Callable[[str], None] = log.warning
        self.repo.notice = lambda msg: self.warn(msg)
        self._behind_said = False

    @classmethod
    def open(cls, fleet: str | Path | None = None, machine: str | None = None) -> Fleet:
        return cls(locate(fleet), machine)

    def snapshot(
        self, *, fetch: bool = True, tolerate_offline: bool = False, machines: bool = False, live: bool = False
    ) -> Snapshot:
        """The queue as of the remote's head (fetched; a clean checkout follows it), or of the last fetch
        when offline is tolerated (a remote that timed out is not offline: the caller hears it).
        ``machines``/``live``: the heartbeat and live output refs come in the same fetch."""
        head: str | None
        if fetch:
            try:
                with self.lock:
                    head = self.repo.fetch(machines=machines, live=live)
                    self.follow()
            except RemoteError:  # a RemoteTimeout is no RemoteError: never tolerated (git/netcall.py)
                if not tolerate_offline:
                    raise
                self.offline = True
                head = self.repo.rev(TRACKING)
        else:
            head = self.repo.rev(TRACKING)
        return Snapshot(self.repo, head)

    def config(self, snap: Snapshot) -> FleetConfig:
        return FleetConfig(snap)

    def refresh_checkout(self) -> None:
        """Bring the person's checkout up to date when it is clean (never discards edits)."""
        with self.lock:
            self.follow()

    def follow(self) -> None:
        """Move a clean checkout to the tracking ref (free while it is there already); when local changes
        keep it behind, warn once until it catches up. Callers hold ``lock``."""
        try:
            behind = checkout.follow(self.repo)
        except FleetqError as e:  # a lock a running git holds, say: the queue is read all the same
            self.warn(f"checkout not moved forward: {e}")
            return
        if behind is not None and not self._behind_said:
            self.warn(behind.message)
        self._behind_said = behind is not None
