"""Watchdog wake-ups for the worker: the local remote's refs moved, or a file was dropped into queue/pending/."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

from watchdog.events import (
    DirModifiedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from fleetq.core.clone import Fleet


def local_remote_path(url: str | None) -> Path | None:
    """The directory of a local-path remote (a path or file:// URL), else None."""
    if not url:
        return None
    if url.startswith("file://"):
        p = Path(urlparse(url).path)
    elif "://" in url or (":" in url.split("/")[0] and not url.startswith("/")):
        return None  # ssh://, https://, or scp-like host:path
    else:
        p = Path(url)
    return p if p.is_dir() else None


class _Wake(FileSystemEventHandler):
    def __init__(self, wake: threading.Event, on_dropped: Callable[[], None] | None = None) -> None:
        self.wake = wake
        self.on_dropped = on_dropped  # None: any event wakes; else only YAML files, which it is told of

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if self.on_dropped is not None:
            path = str(getattr(event, "dest_path", "") or event.src_path)
            if not path.endswith(".yaml") or "/." in path:
                return
            self.on_dropped()
        self.wake.set()


# What a ref update or a dropped file does. Not opens and reads: every git that reads the remote (each
# worker's ls-remote and fetch) opens HEAD, config and refs/heads/main, thousands of events a second in a
# busy fleet, each handled in Python; with this filter the kernel never queues them (inotify's mask).
CHANGES = [FileCreatedEvent, FileMovedEvent, FileModifiedEvent, FileDeletedEvent, FileClosedEvent, DirModifiedEvent]


def start_watch(fleet: Fleet, wake: threading.Event, on_dropped: Callable[[], None]) -> BaseObserver:
    """Set ``wake`` when the local remote's refs move, or (calling ``on_dropped`` first) a YAML file is dropped."""
    obs = Observer()
    remote = local_remote_path(fleet.repo.remote_url())
    if remote is not None:
        for sub in (remote / "refs" / "heads", remote):
            if sub.is_dir():
                obs.schedule(_Wake(wake), str(sub), recursive=False, event_filter=CHANGES)
    pending = fleet.root / "queue" / "pending"
    if pending.is_dir():
        obs.schedule(_Wake(wake, on_dropped), str(pending), recursive=False, event_filter=CHANGES)
    obs.daemon = True
    obs.start()
    return obs
