"""Lock files a killed git left in a clone (``refs/remotes/origin/main.lock``, ``index.lock``,
``packed-refs.lock``, ``shallow.lock``...): found from git's complaint, removed when stale.

git takes ``<file>.lock`` to change ``<file>`` and removes it when done, even on SIGTERM; a
SIGKILL (or a crash, a full disk, a power cut) leaves it, and every later git that needs the
file then fails with "Unable to create '...lock': File exists" — a worker's fetches fail for
ever while its heartbeats (other refs) still land. :func:`clear` waits a moment for a live
owner to finish; a lock that no running git in the clone can own and that is a few seconds old
is removed, so the caller can retry once. Only locks inside the clone's own git directory are
touched, never the remote's.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from fleetq.errors import FleetqError

STALE_AGE = 3.0  # seconds: an ownerless lock younger than this may belong to a git just starting or ending
WAIT = STALE_AGE + 2.0  # seconds to wait for a lock to go before reporting it
_EVERY = 0.25
_LOCKED = re.compile(r"Unable to create '([^']+\.lock)': File exists|could not lock config file (\S+): File exists")
_NOT_OWNERS = ("cat-file", "fsmonitor--daemon", "credential-cache--daemon")  # long-lived, lock nothing


class CloneLocked(FleetqError):
    """A lock file in the clone stops git: a running git holds it, or a stale one could not be removed."""


def locked_path(stderr: str, git_dir: Path) -> Path | None:
    """The lock file in ``git_dir`` that git's ``stderr`` says stopped it (None: no such complaint)."""
    for m in _LOCKED.finditer(stderr or ""):
        raw = Path(m.group(1) or m.group(2))
        path = raw if raw.is_absolute() else git_dir.parent / raw
        try:
            path.resolve().relative_to(git_dir.resolve())
        except ValueError:
            continue  # the remote's lock (a local bare remote): not ours to touch
        return path
    return None


def owner(clone: Path, git_dir: Path, made: float) -> int | None:
    """The pid of a running git working in this clone (its cwd or its arguments) that started before
    ``made`` (the lock's time: a git started later cannot hold it), or None."""
    import psutil

    places = {str(p.resolve()) for p in (clone, git_dir)}
    me = os.getpid()
    for p in psutil.process_iter(["pid", "name", "cmdline", "cwd", "create_time"]):
        info = p.info
        name = info.get("name") or ""
        cmd = info.get("cmdline") or []
        if info["pid"] == me or not (name.startswith("git") or (cmd and Path(cmd[0]).name.startswith("git"))):
            continue
        if (info.get("create_time") or 0.0) > made + 1.0:
            continue
        if any(word in arg for arg in cmd for word in _NOT_OWNERS):
            continue
        # its cwd, or a path in its arguments (`git -C DIR`, `--git-dir=DIR`)
        here = [info.get("cwd") or "", *cmd, *(a.partition("=")[2] for a in cmd)]
        if any(x == d or x.startswith(d + os.sep) for x in here for d in places):
            return int(info["pid"])
    return None


def clear(path: Path, clone: Path, git_dir: Path) -> bool:
    """Wait for ``path`` to go, removing it once it is stale. True when this removed it, False when its
    owner did; CloneLocked when a running git keeps it, or a stale lock cannot be removed."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            made = path.stat().st_mtime
        except FileNotFoundError:
            return False  # its owner finished: try again
        age = time.time() - made
        pid = owner(clone, git_dir, made)
        if pid is None and age >= STALE_AGE:
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            except OSError as e:
                raise CloneLocked(f"stale lock {path}: cannot remove it ({e.strerror}); remove it by hand") from None
            return True
        if time.monotonic() >= deadline:
            if pid is not None:
                raise CloneLocked(f"{path} is locked by a running git (pid {pid}); try again when it ends")
            raise CloneLocked(f"stale lock {path} (dated in the future); no git runs here: remove it by hand")
        time.sleep(_EVERY)


def unlocked(
    call: Callable[[], tuple[int, str, str]], clone: Path, git_dir: Path, notice: Callable[[str], None]
) -> tuple[int, str, str]:
    """Run a git ``call`` (status, stdout, stderr); when a lock file in the clone stopped it, wait for the
    lock to go (:func:`clear` removes a stale one, and ``notice`` says so), then run it once more."""
    status, out, err = call()
    path = locked_path(err, git_dir) if status != 0 else None
    if path is None:
        return status, out, err
    if clear(path, clone, git_dir):
        notice(f"removed a stale lock {path} (left by a git that was killed)")
    status, out, err = call()
    again = locked_path(err, git_dir) if status != 0 else None
    if again is not None:
        raise CloneLocked(f"{again} is locked again at once: another git in this clone keeps taking it")
    return status, out, err
