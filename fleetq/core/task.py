"""The task model: fields, validation, and the round-trip document behind a task file."""

from __future__ import annotations

import datetime as dt
import difflib
import secrets
from dataclasses import dataclass, field
from typing import Any

from fleetq import yamlio
from fleetq.core.states import valid_id
from fleetq.errors import InvalidTask

# Fields a person (or `assign --set`) may write.
USER_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "type": str,
    "title": str,
    "priority": int,
    "created_at": str,
    "created_by": str,
    "target": str,
    "prefer": str,
    "requires": list,
    "agent": str,
    "depends_on": list,
    "max_attempts": int,
    "timeout": (int, float),
    "not_before": str,
    "payload": dict,
}
# Fields fleetq writes.
SYSTEM_FIELDS: dict[str, type | tuple[type, ...]] = {
    "attempts": int,
    "claim": dict,
    "result": dict,
    "notes": list,
}
FIELDS = {**USER_FIELDS, **SYSTEM_FIELDS}
SETTABLE = frozenset(USER_FIELDS) - {"id", "payload", "created_at", "created_by"}

DEFAULT_TYPE = "agent_run"
DEFAULT_MAX_ATTEMPTS = 3
TYPE_RE_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def fmt_time(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> dt.datetime | None:
    """ISO-8601 text (or a YAML timestamp) -> aware datetime; None when absent or unreadable."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    try:
        t = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def new_id() -> str:
    return secrets.token_hex(4)


def _typename(t: type | tuple[type, ...]) -> str:
    names = {str: "text", int: "an integer", float: "a number", list: "a list", dict: "a mapping"}
    if isinstance(t, tuple):
        return " or ".join(names.get(x, x.__name__) for x in t)
    return names.get(t, t.__name__)


def validate(data: Any, *, file_id: str | None = None) -> list[str]:
    """Every problem with a task's data, as readable phrases (empty = valid)."""
    if not isinstance(data, dict):
        return [f"a task file holds a mapping of fields, not {type(data).__name__}"]
    errs: list[str] = []
    for key, value in data.items():
        if not isinstance(key, str) or key not in FIELDS:
            near = difflib.get_close_matches(str(key), FIELDS, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            errs.append(f"unknown field {str(key)!r}{hint}")
            continue
        want = FIELDS[key]
        if value is None and key not in ("id", "type"):
            continue
        if isinstance(value, bool) or not isinstance(value, want):
            if key in ("created_at", "not_before") and parse_time(value):
                continue
            errs.append(f"'{key}' must be {_typename(want)}, not {type(value).__name__}")
    tid = data.get("id")
    if tid is None:
        errs.append("missing 'id'")
    elif not valid_id(tid):
        errs.append(f"id {tid!r} is not a safe slug (letters, digits, '.', '_', '-'; no '/' or '..')")
    elif file_id is not None and tid != file_id:
        errs.append(f"id '{tid}' does not match the file name '{file_id}.yaml'")
    ttype = data.get("type", DEFAULT_TYPE)
    if not isinstance(ttype, str) or not ttype or not set(ttype) <= TYPE_RE_CHARS:
        errs.append(f"type {ttype!r} is not a task type name (lowercase letters, digits, '_')")
    for key in ("requires", "depends_on"):
        items = data.get(key)
        if isinstance(items, list) and not all(isinstance(x, str) for x in items):
            errs.append(f"'{key}' must be a list of names")
    for key in ("depends_on",):
        deps = data.get(key)
        for dep in deps if isinstance(deps, list) else []:
            if isinstance(dep, str) and not valid_id(dep):
                errs.append(f"'{key}' names {dep!r}, which is not a task id")
    for key in ("max_attempts",):
        v = data.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v < 1:
            errs.append(f"'{key}' must be at least 1")
    v = data.get("timeout")
    if isinstance(v, int | float) and not isinstance(v, bool) and v <= 0:
        errs.append("'timeout' must be a positive number of seconds")
    payload = data.get("payload")
    if isinstance(payload, dict):
        for k in ("_target_machine", "_preferred_machine"):
            if k in payload and payload[k] is not None and not isinstance(payload[k], str):
                errs.append(f"payload.{k} must be a machine name")
    return errs


@dataclass
class Task:
    """A task read from the repo: its plain data, and where it came from."""

    data: dict[str, Any]
    state: str
    path: str
    blob: str = ""  # git blob sha the data came from (empty for new tasks)
    raw: bytes | None = field(default=None, repr=False)
    # For a file with no created_at (written by hand): when the commit that added it to the queue
    # was made (core/history.py date_undated); listings sort and age it by that.
    added_at: dt.datetime | None = field(default=None, repr=False, compare=False)

    # -- fields, with defaults and the older payload keys folded in --
    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def type(self) -> str:
        return self.data.get("type") or DEFAULT_TYPE

    @property
    def title(self) -> str:
        return self.data.get("title") or self.payload.get("prompt") or ""

    @property
    def payload(self) -> dict[str, Any]:
        return self.data.get("payload") or {}

    @property
    def priority(self) -> int:
        return self.data.get("priority") or 0

    @property
    def target(self) -> str | None:
        return self.data.get("target") or self.payload.get("_target_machine") or None

    @property
    def prefer(self) -> str | None:
        return self.data.get("prefer") or self.payload.get("_preferred_machine") or None

    @property
    def requires(self) -> list[str]:
        return list(self.data.get("requires") or [])

    @property
    def agent(self) -> str | None:
        a = self.data.get("agent") or self.payload.get("agent")
        return None if a in (None, "", "-") else a

    @property
    def depends_on(self) -> list[str]:
        return list(self.data.get("depends_on") or [])

    @property
    def max_attempts(self) -> int:
        return self.data.get("max_attempts") or DEFAULT_MAX_ATTEMPTS

    @property
    def attempts(self) -> int:
        return self.data.get("attempts") or 0

    @property
    def claim(self) -> dict[str, Any]:
        return self.data.get("claim") or {}

    @property
    def result(self) -> dict[str, Any]:
        return self.data.get("result") or {}

    @property
    def created_at(self) -> dt.datetime | None:
        return parse_time(self.data.get("created_at")) or self.added_at

    @property
    def not_before(self) -> dt.datetime | None:
        return parse_time(self.data.get("not_before"))

    @property
    def timeout(self) -> float | None:
        t = self.data.get("timeout") or self.payload.get("timeout")
        return float(t) if isinstance(t, int | float) and not isinstance(t, bool) else None

    def machine_column(self) -> str:
        """The queue's Machine column: the claimer once claimed, ``→target`` while pending."""
        by = self.claim.get("machine")
        if by and self.state != "pending":
            return str(by)
        if self.target:
            return f"→{self.target}"
        if self.prefer:
            return f"~{self.prefer}"
        return ""

    def summary(self) -> str:
        err = self.result.get("error")
        if err and self.state in ("failed", "needs_human"):
            return str(err)
        return self.title

    def to_json(self) -> dict[str, Any]:
        out = {"id": self.id, "state": self.state, "path": self.path}
        out.update({k: v for k, v in self.data.items() if k != "id"})
        return out


def parse(raw: bytes, *, state: str, path: str, file_id: str, blob: str = "") -> Task:
    """Bytes of a task file -> Task, or InvalidTask naming the file and every reason."""
    try:
        data = yamlio.to_plain(yamlio.load_safe(raw, path))
    except yamlio.YamlError as e:
        raise InvalidTask(str(e)) from None
    errs = validate(data, file_id=file_id)
    if errs:
        raise InvalidTask(f"{path}: " + "; ".join(errs))
    return Task(data=data, state=state, path=path, blob=blob, raw=raw)


def edit(task: Task, changes: dict[str, Any], drop: tuple[str, ...] = ()) -> bytes:
    """Apply field changes to the task's own document, keeping comments and key order.

    A file with no comment in it takes the fast path (plain data, libyaml):
    key order is kept either way; only a person's comments need round-trip YAML.
    """
    if task.raw is None or b"#" not in task.raw:
        data = {k: v for k, v in task.data.items() if k not in drop}
        for key, value in changes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        return yamlio.dump_plain(data).encode("utf-8")
    doc = yamlio.load_rt(task.raw, task.path)
    for key in drop:
        if key in doc:
            del doc[key]
    for key, value in changes.items():
        if value is None:
            if key in doc:
                del doc[key]
        else:
            doc[key] = yamlio.to_rt(value)
    return yamlio.dump_rt(doc).encode("utf-8")


def render_new(data: dict[str, Any]) -> bytes:
    order = list(USER_FIELDS) + list(SYSTEM_FIELDS)
    ordered = {k: data[k] for k in order if k in data and data[k] not in (None, [], {})}
    return yamlio.dump_plain(yamlio.to_plain(ordered)).encode("utf-8")
