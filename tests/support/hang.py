"""A git remote that hangs: a TCP listener on 127.0.0.1 that accepts connections and never answers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psutil


@contextmanager
def silent_remote() -> Iterator[str]:
    """A ``git://`` URL whose server accepts and then says nothing (git waits for its ref advertisement)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.settimeout(0.2)
    held: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)  # kept open, never read or written

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield f"git://127.0.0.1:{srv.getsockname()[1]}/fleet.git"
    finally:
        done.set()
        t.join(2)
        for c in held:
            c.close()
        srv.close()


def gits_in(path: object) -> list[int]:
    """Pids of git processes working in ``path`` (or below it), but gitpython's long-lived readers."""
    root = str(path)
    found = []
    for p in psutil.process_iter(["pid", "name", "cwd", "cmdline"]):
        cwd = p.info.get("cwd") or ""
        reader = "cat-file" in (p.info.get("cmdline") or [])
        if (p.info.get("name") or "").startswith("git") and (cwd == root or cwd.startswith(root + "/")) and not reader:
            found.append(p.info["pid"])
    return found
