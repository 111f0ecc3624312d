"""A handler's context as a worker builds it, for running handlers in-process."""

from __future__ import annotations

import threading
from pathlib import Path

from fleetq.handlerapi import HandlerContext
from fleetq.run.agents.registry import load_agents


def make_ctx(tmp_path: Path, env: dict[str, str], task_type: str, payload: dict, **task) -> HandlerContext:
    data = {"id": "t1", "type": task_type, "title": task.pop("title", "a task"), "payload": payload, **task}
    return HandlerContext(
        task_id="t1",
        task=data,
        payload=payload,
        machine="testbox",
        attempt=1,
        fleet_dir=tmp_path / "fleet",
        log_path=tmp_path / "logs" / "t1.log",
        env=env,
        agents=load_agents(None),
        cancel=threading.Event(),
        timeout=task.get("timeout"),
    )
