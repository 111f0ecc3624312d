"""Watchdog wake-ups for the worker: the local remote's refs moved, or a file was dropped into queue/pending/."""
from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer


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
    def __init__(self, worker: Any, *, dropped: bool) -> None:
        self.worker = worker
        self.dropped = dropped

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if self.dropped:
            path = str(getattr(event, "dest_path", "") or event.src_path)
            if not path.endswith(".yaml") or "/." in path:
                return
            self.worker.dropped = True
        self.worker.wake.set()


def start_watch(worker: Any) -> Observer:
    obs = Observer()
    remote = local_remote_path(worker.fleet.repo.remote_url())
    if remote is not None:
        for sub in (remote / "refs" / "heads", remote):
            if sub.is_dir():
                obs.schedule(_Wake(worker, dropped=False), str(sub), recursive=False)
    pending = worker.fleet.root / "queue" / "pending"
    if pending.is_dir():
        obs.schedule(_Wake(worker, dropped=True), str(pending), recursive=False)
    obs.daemon = True
    obs.start()
    return obs
