"""The fleet's shared configuration, read from the committed tree (every machine sees the same)."""

from __future__ import annotations

import difflib
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fleetq.core.snapshot import Snapshot
from fleetq.errors import FleetqError, NotFound, UsageError
from fleetq.git.ssh import parse_target
from fleetq.layout import MACHINES, SETTINGS

# What a machine can run when machines.yaml does not say (the portable types).
GENERIC_TYPES = ("agent_run", "run_script", "git_pull", "npm_build", "test_run", "lint")

DEFAULT_SETTINGS: dict[str, Any] = {
    "lease": 60,  # seconds without a heartbeat before a claim is orphaned
    "heartbeat": 10,  # seconds between heartbeats
    "prefer_grace": 20,  # seconds a `prefer`red task waits for its machine
    "poll": 5,  # worker timer, seconds
    "retry_backoff": 30,  # seconds before a failed task with attempts left runs again
    "usage_limit_backoff": 900,  # seconds a usage-limited task waits when the agent names no reset time
    "usage_limit_max_waits": 10,  # usage-limit waits in a row before the task fails like any error
    "load_weights": {"cpu": 0.4, "memory": 0.3, "load": 0.3},
    "require_signed": False,
    "keep_done_days": 14,  # done day shards older than this are archived out of the tree by a worker pass (0: never)
}


def _number(low: float, *, above: bool = True, whole: bool = False) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, int if whole else int | float) or v != v:  # v != v: NaN
            return False
        return v > low if above else v >= low

    return ok


def _names(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _weights(v: Any) -> bool:
    return isinstance(v, dict) and all(_number(0, above=False)(x) for x in v.values())


_SECONDS = (_number(0), "a number of seconds above 0")
_WAIT = (_number(0, above=False), "a number of seconds, 0 or more")
# What each setting of config/fleet.yaml must be. A wrong value is a problem for the checkers (validate,
# the hooks, fsck: trust/checks.py) and, for the readers (FleetConfig), as good as unset: its default.
SETTING_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "lease": _SECONDS,
    "heartbeat": _SECONDS,
    "poll": _SECONDS,
    "prefer_grace": _WAIT,
    "retry_backoff": _WAIT,
    "usage_limit_backoff": _SECONDS,
    "usage_limit_max_waits": (_number(0, whole=True), "a whole number above 0"),
    "load_weights": (_weights, "a mapping of cpu, memory and load to numbers, 0 or more"),
    "require_signed": (lambda v: isinstance(v, bool), "true or false"),
    "redact_env": (_names, "a list of environment variable names"),
    "router": (lambda v: isinstance(v, str), "an agent name"),
    "router_timeout": _SECONDS,
    "placement_penalty": (_number(0, above=False), "a number, 0 or more"),
    "ssh_options": (_names, "a list of ssh -o values (e.g. 'Compression=yes')"),
    "ssh_reuse": (lambda v: isinstance(v, bool), "true or false"),
    "ssh_connect_timeout": _SECONDS,
    "ssh_persist": _SECONDS,
    "sync_excludes": (_names, "a list of patterns"),
    "live_output": (_number(0, above=False), "a number of seconds between live output publishes, 0 or more (0: off)"),
    "keep_done_days": (_number(0, above=False, whole=True), "a whole number of days, 0 or more (0: never archive)"),
}


def settings_problems(data: Any) -> list[str]:
    """One line per wrong value in a parsed config/fleet.yaml (null means unset: the default)."""
    if data is None:
        return []
    if not isinstance(data, dict):
        return [f"{SETTINGS}: expected a mapping of settings, not {type(data).__name__}"]
    out = []
    for key, value in data.items():
        rule = SETTING_RULES.get(str(key))
        if rule is not None and value is not None and not rule[0](value):
            shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:37]}..."
            out.append(f"{SETTINGS}: {key} must be {rule[1]}, not {shown}")
    return out


def usable_settings(data: Any) -> dict[str, Any]:
    """The settings of a parsed fleet.yaml that a reader may use: a wrong or null value is left to its default."""
    if not isinstance(data, dict):
        return dict(DEFAULT_SETTINGS)
    good = {
        str(k): v
        for k, v in data.items()
        if v is not None and (str(k) not in SETTING_RULES or SETTING_RULES[str(k)][0](v))
    }
    return {**DEFAULT_SETTINGS, **good}


@dataclass
class MachineSpec:
    name: str
    os: str = ""
    capabilities: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    slots: int = 2
    aliases: list[str] = field(default_factory=list)
    host: str | None = None  # SSH target
    declared: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def can_run(self, task_type: str) -> bool:
        return task_type in self.capabilities

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "os": self.os,
            "capabilities": self.capabilities,
            "agents": self.agents,
            "slots": self.slots,
            "aliases": self.aliases,
            "host": self.host,
            "declared": self.declared,
        }


def names_list(value: Any, where: str, file: str = MACHINES) -> list[str]:
    """A YAML list of names, or a clear error naming the file and the key."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise FleetqError(f"{file}: {where} must be a list of names")
    return list(value)


# The keys a machine's entry may have (``port``/``ssh_port`` and ``tailscale_ip`` are read by `fleetq ssh`).
MACHINE_KEYS = ("os", "capabilities", "agents", "slots", "aliases", "host", "ssh", "tailscale_ip", "port", "ssh_port")


def unknown_machine_keys(data: Any) -> list[str]:
    """One phrase per key of a machine entry that fleetq does not read (a typo like ``capabilites``), with a hint.

    Not an error for the readers (a worker keeps running on a typo); the checkers report it.
    """
    machines = data.get("machines") if isinstance(data, dict) else None
    out = []
    for name, spec in (machines or {}).items() if isinstance(machines, dict) else []:
        for key in spec if isinstance(spec, dict) else []:
            if key not in MACHINE_KEYS:
                near = difflib.get_close_matches(str(key), MACHINE_KEYS, n=1)
                hint = f" (did you mean '{near[0]}'?)" if near else f" (known: {', '.join(MACHINE_KEYS)})"
                out.append(f"machine '{name}': unknown key '{key}'{hint}")
    return out


HOST_KEYS = ("host", "ssh", "tailscale_ip")  # where a machine's SSH destination may come from


def parse_machines(data: Any) -> dict[str, MachineSpec]:
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("machines", {}), dict | None):
        raise FleetqError(f"{MACHINES}: expected a top-level 'machines:' mapping")
    out: dict[str, MachineSpec] = {}
    for name, spec in (data.get("machines") or {}).items():
        spec = spec or {}
        if not isinstance(spec, dict):
            raise FleetqError(f"{MACHINES}: machine '{name}' must be a mapping")
        slots = spec.get("slots", 2)
        if not isinstance(slots, int) or isinstance(slots, bool) or slots < 1:
            raise FleetqError(f"{MACHINES}: machine '{name}': slots must be a positive integer")
        for key in HOST_KEYS:  # each reaches ssh as its destination: a host name, never an option
            if spec.get(key) not in (None, ""):
                try:
                    parse_target(spec[key])
                except UsageError as e:
                    raise FleetqError(f"{MACHINES}: machine '{name}': {key} {e}") from None
        known = {"os", "capabilities", "agents", "slots", "aliases", "host", "ssh"}  # the rest: extra
        out[str(name)] = MachineSpec(
            name=str(name),
            os=str(spec.get("os") or ""),
            capabilities=names_list(spec.get("capabilities"), f"'{name}'.capabilities"),
            agents=names_list(spec.get("agents"), f"'{name}'.agents"),
            slots=slots,
            aliases=names_list(spec.get("aliases"), f"'{name}'.aliases"),
            host=next((spec[k] for k in HOST_KEYS if spec.get(k)), None),
            extra={k: v for k, v in spec.items() if k not in known},
        )
    return out


class FleetConfig:
    """machines.yaml and fleet.yaml as of one snapshot."""

    def __init__(self, snap: Snapshot) -> None:
        self.machines = parse_machines(snap.read_yaml(MACHINES))
        try:
            raw = snap.read_yaml(SETTINGS)
            self.problems = settings_problems(raw)  # what the defaults stand in for (the worker logs them once)
        except FleetqError as e:  # a fleet.yaml that does not parse: every setting at its default
            raw, self.problems = None, [str(e)]
        self.settings = usable_settings(raw)

    def get(self, key: str) -> Any:
        return self.settings.get(key, DEFAULT_SETTINGS.get(key))

    def canonical(self, name: str) -> str | None:
        """A machine name or alias -> the declared name."""
        if name in self.machines:
            return name
        for m in self.machines.values():
            if name in m.aliases:
                return m.name
        return None

    def names_of(self, name: str) -> set[str]:
        """Every name a machine goes by (its declared name and aliases); just ``name`` when undeclared."""
        canon = self.canonical(name)
        return {canon, *self.machines[canon].aliases} if canon else {name}

    def machine(self, name: str, *, strict: bool = False) -> MachineSpec:
        """This machine's spec; an undeclared machine gets the generic types."""
        canon = self.canonical(name)
        if canon:
            return self.machines[canon]
        if strict:
            known = ", ".join(sorted(self.machines)) or "none declared"
            raise NotFound(f"unknown machine '{name}' (config/machines.yaml has: {known})")
        return MachineSpec(name=name, os=local_os(), capabilities=list(GENERIC_TYPES), declared=False)


def local_os() -> str:
    return {"Darwin": "macos", "Linux": "linux", "Windows": "windows"}.get(platform.system(), platform.system().lower())
