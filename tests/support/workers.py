"""Helpers for worker tests: real `fleetq work` processes on real clones of one bare remote."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from fleetq import yamlio
from fleetq.core import transitions
from fleetq.core.cas import Plan, transact
from fleetq.core.clone import Fleet
from fleetq.core.snapshot import Snapshot
from fleetq.core.task import fmt_time, now_utc

FAST = ["--poll", "0.2", "--heartbeat", "0.5"]


class WorkerProc:
    """A `fleetq work` subprocess with its log in a file."""

    def __init__(self, fleet: Fleet, *args: str, env: dict[str, str] | None = None) -> None:
        self.fleet = fleet
        self.log_path = fleet.root.parent / f"worker-{fleet.machine}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")
        full_env = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fleetq",
                "--fleet",
                str(fleet.root),
                "--machine",
                fleet.machine,
                "work",
                *FAST,
                *args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
        )

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout)

    @property
    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def run_to_end(*procs: WorkerProc, timeout: float = 60) -> None:
    """Wait for `--burst`/`--once` workers to exit 0; stop them whatever happens."""
    try:
        for p in procs:
            assert p.wait(timeout) == 0, p.log
    finally:
        for p in procs:
            p.stop()


def tasks(n: int, prefix: str = "t", **fields: Any) -> list[dict[str, Any]]:
    now = fmt_time(now_utc())
    base = {"type": "run_script", "created_at": now, "payload": {"script": "true"}}
    out = []
    for i in range(n):
        d = {**base, "id": f"{prefix}{i:03d}", "title": f"{prefix} {i}"}
        for k, v in fields.items():
            d[k] = {**d.get(k, {}), **v} if isinstance(v, dict) else v
        out.append(d)
    return out


def wait_for(pred: Callable[[], Any], timeout: float = 60, every: float = 0.2, what: str = "condition") -> Any:
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def states_of(fleet: Fleet) -> dict[str, str]:
    snap = fleet.snapshot()
    return {r.id: r.loc.state for r in snap.all_refs()}


def set_machines(fleet: Fleet, machines: dict[str, dict[str, Any]]) -> None:
    """Replace config/machines.yaml on the remote."""
    body = yamlio.dump_plain({"machines": machines}).encode()
    transact(fleet, lambda s: Plan(changes={"config/machines.yaml": body}, subject="test: machines"))


def set_file(fleet: Fleet, path: str, text: str) -> None:
    transact(fleet, lambda s: Plan(changes={path: text.encode()}, subject=f"test: {path}"))


def add(fleet: Fleet, datas: list[dict[str, Any]]) -> None:
    transitions.create(fleet, datas)


def snap(fleet: Fleet) -> Snapshot:
    return fleet.snapshot()
