"""Turning `fleetq assign` arguments into a checked task (the core behind the command)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fleetq import yamlio
from fleetq.core.config import FleetConfig
from fleetq.core.moves import MAX_NEW_BYTES, too_big
from fleetq.core.snapshot import Snapshot
from fleetq.core.task import DEFAULT_TYPE, SETTABLE, USER_FIELDS, fmt_time, new_id, now_utc, render_new, validate
from fleetq.errors import FleetqError, UsageError

LIST_FIELDS = ("requires", "depends_on")
# Keys whose values are always text: `--set script=false` means the command `false`.
TEXT_KEYS = frozenset(
    {
        "script",
        "command",
        "prompt",
        "cwd",
        "repo_path",
        "branch",
        "model",
        "title",
        "agent",
        "target",
        "prefer",
        "scheme",
        "runner",
    }
)


@dataclass
class Request:
    description: str
    machine: str | None = None
    agent: str | None = None
    type: str | None = None
    cwd: str | None = None
    priority: int | None = None
    prefer: str | None = None
    after: list[str] = field(default_factory=list)
    timeout: float | None = None
    sets: list[str] = field(default_factory=list)
    task_id: str | None = None


def parse_value(text: str) -> Any:
    """A --set value as a YAML scalar ('5' -> 5, 'true' -> True, 'make test' -> 'make test')."""
    try:
        value = yamlio.to_plain(yamlio.load_safe(text, "--set value"))
    except yamlio.YamlError:
        return text
    return text if value is None and text.strip() not in ("null", "~") else value


def apply_sets(data: dict[str, Any], sets: list[str]) -> None:
    """KEY=VALUE pairs: task fields by name, `payload.KEY` or any other KEY into payload."""
    for item in sets:
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UsageError(f"--set takes KEY=VALUE, not {item!r}")
        value = raw if key.split(".")[-1] in TEXT_KEYS else parse_value(raw)
        if key.startswith("payload."):
            data.setdefault("payload", {})[key[len("payload.") :]] = value
        elif key in SETTABLE:
            if key in LIST_FIELDS and isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            data[key] = value
        elif key in USER_FIELDS:
            raise UsageError(f"--set cannot change '{key}'")
        else:
            data.setdefault("payload", {})[key] = value


def build(req: Request, snap: Snapshot, cfg: FleetConfig, created_by: str) -> tuple[dict[str, Any], list[str]]:
    """The new task's data and any warnings; raises for what must block the submission."""
    warnings: list[str] = []
    now = now_utc()
    data: dict[str, Any] = {
        "id": req.task_id if req.task_id is not None else fresh_id(snap),
        "title": req.description.strip(),
    }
    if not data["title"]:
        raise UsageError("give the task a description")
    payload: dict[str, Any] = {}
    if req.cwd:
        payload["cwd"] = req.cwd
    data["payload"] = payload
    if req.priority is not None:
        data["priority"] = req.priority
    if req.timeout is not None:
        data["timeout"] = req.timeout
    if req.agent and req.agent != "-":
        data["agent"] = req.agent
    if req.type:
        data["type"] = req.type
    apply_sets(data, req.sets)
    if "type" not in data:
        data["type"] = "run_script" if "script" in data["payload"] and "agent" not in data else DEFAULT_TYPE
    if data["type"] == "agent_run":
        payload.setdefault("prompt", data["title"])
    if data["type"] == "run_script" and not data["payload"].get("script"):
        raise UsageError("a run_script task needs a script: --set script='make test'")
    if req.machine:
        # A machine that could never run it is refused by the caller's check (trust/reach.py), which
        # `assign --force` skips; here the pin only takes the machine's declared name.
        canon = cfg.canonical(req.machine)
        data["target"] = canon or req.machine
        spec = cfg.machines[canon] if canon else None
        if spec and data.get("agent") and spec.agents and data["agent"] not in spec.agents:
            warnings.append(f"agent {data['agent']} is not listed for {spec.name} (agents: {', '.join(spec.agents)})")
    if req.prefer:
        canon = cfg.canonical(req.prefer)
        if canon is None:
            warnings.append(f"--prefer {req.prefer}: no such machine in config/machines.yaml")
        data["prefer"] = canon or req.prefer
    deps = list(data.get("depends_on") or []) + list(req.after)
    if deps:
        data["depends_on"] = [snap.resolve(d).id for d in deps]
    data["created_at"] = fmt_time(now)
    data["created_by"] = created_by
    errs = validate(data)
    if errs:
        raise UsageError("; ".join(errs))
    size = len(render_new(data))
    if size > MAX_NEW_BYTES:  # room for the claim and the result under the file size limit
        raise UsageError(f"the task is too large: {too_big(size)}")
    return data, warnings


def fresh_id(snap: Snapshot) -> str:
    for _ in range(20):
        tid = new_id()
        if not snap.exists(tid):
            return tid
    raise FleetqError("could not find an unused task id")
