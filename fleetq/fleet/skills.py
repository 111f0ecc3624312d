"""Skills: the registry in config/skills.yaml, what machines declare, check/install over SSH, add, create.

A skill is an installable tool: a ``check`` command (exit 0 = installed), an
``install`` command per OS, the task types it enables, a category, and
optional ``keywords`` that auto-routing looks for in a task's description.
``skills add`` writes the skill and its task types into a machine's
capabilities in config/machines.yaml (round-trip YAML: comments stay);
``skills create`` registers a new skill and scaffolds ``handlers/<type>.py``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fleetq import yamlio
from fleetq.core.cas import Plan
from fleetq.core.config import MACHINES, FleetConfig, MachineSpec, names_list
from fleetq.core.heartbeat import Beat
from fleetq.core.snapshot import Snapshot
from fleetq.errors import Conflict, FleetqError, NotFound, UsageError
from fleetq.layout import SKILLS

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*")
TYPE_RE = re.compile(r"[a-z][a-z0-9_]*")
OS_NAMES = ("macos", "linux")


@dataclass
class Skill:
    name: str
    category: str = "custom"
    description: str = ""
    check: str | None = None
    install: dict[str, str] = field(default_factory=dict)
    task_types: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    handler: str | None = None

    @property
    def enables(self) -> list[str]:
        """The capabilities `skills add` gives a machine: the skill itself and its task types."""
        return [self.name] + [t for t in self.task_types if t != self.name]

    def declared_on(self, spec: MachineSpec) -> bool:
        return (
            self.name in spec.capabilities
            or bool(self.task_types)
            and all(t in spec.capabilities for t in self.task_types)
        )

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def parse_registry(data: Any) -> dict[str, Skill]:
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("skills") or {}, dict):
        raise FleetqError(f"{SKILLS}: expected a top-level 'skills:' mapping")
    out: dict[str, Skill] = {}
    for name, spec in (data.get("skills") or {}).items():
        spec = spec or {}
        if not isinstance(spec, dict):
            raise FleetqError(f"{SKILLS}: skill '{name}' must be a mapping")
        install = spec.get("install") or {}
        if isinstance(install, str):
            install = {os_: install for os_ in OS_NAMES}
        if not isinstance(install, dict):
            raise FleetqError(f"{SKILLS}: skill '{name}': install must map an OS (macos, linux) to a command")
        out[str(name)] = Skill(
            name=str(name),
            category=str(spec.get("category") or "custom"),
            description=str(spec.get("description") or ""),
            check=str(spec["check"]) if spec.get("check") else None,
            install={str(k): str(v) for k, v in install.items() if v},
            task_types=names_list(spec.get("task_types"), f"'{name}'.task_types", SKILLS),
            keywords=names_list(spec.get("keywords"), f"'{name}'.keywords", SKILLS),
            handler=str(spec["handler"]) if spec.get("handler") else None,
        )
    return out


def registry(snap: Snapshot) -> dict[str, Skill]:
    return parse_registry(snap.read_yaml(SKILLS))


def get(reg: dict[str, Skill], name: str) -> Skill:
    if name not in reg:
        known = ", ".join(sorted(reg)) or "none"
        raise NotFound(f"no skill '{name}' in {SKILLS} (known: {known}); `fleetq skills create {name}` makes one")
    return reg[name]


# ---------------------------------------------------------------- status


def heartbeat_status(skill: Skill, spec: MachineSpec, beat: Beat | None) -> str:
    """installed / missing from the machine's last heartbeat when it reports skill checks, else declared / -."""
    reported = beat.state.get("skills") if beat is not None else None
    if isinstance(reported, dict) and skill.name in reported:
        return "installed" if reported[skill.name] else "missing"
    return "declared" if skill.declared_on(spec) else "-"


def check_script(skills: list[Skill]) -> str:
    """One shell script that runs every check and prints ``name ok|missing|unknown`` per skill."""
    lines = []
    for s in skills:
        if not s.check:
            lines.append(f"echo {shlex.quote(s.name)} unknown")
            continue
        lines.append(
            f"if ( {s.check} ) >/dev/null 2>&1 </dev/null; then echo {shlex.quote(s.name)} ok; "
            f"else echo {shlex.quote(s.name)} missing; fi"
        )
    return "\n".join(lines) + "\n"


def parse_checks(stdout: str) -> dict[str, bool | None]:
    out: dict[str, bool | None] = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] in ("ok", "missing", "unknown"):
            out[parts[0]] = {"ok": True, "missing": False, "unknown": None}[parts[1]]
    return out


def local_status(reg: dict[str, Skill], timeout: float = 30) -> dict[str, bool | None]:
    """Run every check on this machine (for a worker's heartbeat, or `skills list` of this machine)."""
    from fleetq.fleet.remote import run_local

    res = run_local(check_script(list(reg.values())), echo=False, capture=True, timeout=timeout)
    return parse_checks(res.stdout)


def install_command(skill: Skill, os_name: str) -> str:
    cmd = skill.install.get(os_name)
    if not cmd:
        have = ", ".join(sorted(skill.install)) or "none"
        raise FleetqError(
            f"skill '{skill.name}' has no install recipe for {os_name or 'an unknown OS'} (recipes: {have})"
        )
    return cmd


def os_of_uname(text: str) -> str:
    word = text.strip().splitlines()[-1].strip().lower() if text.strip() else ""
    return {"darwin": "macos", "linux": "linux"}.get(word, word)


# ---------------------------------------------------------------- add: a machine's capabilities


def add_plan(
    cfg: FleetConfig, machine: str, name: str, reg: dict[str, Skill], *, sign: bool = False
) -> Callable[[Snapshot], Plan]:
    """The transact plan that adds skill ``name`` (or a plain capability) to ``machine`` in machines.yaml."""
    canon = cfg.machine(machine, strict=True).name
    wanted = reg[name].enables if name in reg else [name]

    def plan(snap: Snapshot) -> Plan:
        raw = snap.read(MACHINES)
        if raw is None:
            raise NotFound(f"{MACHINES} is missing from the fleet repo")
        doc = yamlio.load_rt(raw, MACHINES)
        entry = (doc.get("machines") or {}).get(canon)
        if entry is None:
            raise NotFound(f"machine '{canon}' is no longer in {MACHINES}")
        caps = entry.get("capabilities")
        if caps is None:
            caps = entry["capabilities"] = yamlio.to_rt([])
        new = [c for c in wanted if c not in caps]
        if not new:
            return Plan(value=[])
        caps.extend(new)
        return Plan(
            changes={MACHINES: yamlio.dump_rt(doc).encode()},
            subject=f"fleetq: skills add {canon} {name}",
            trailers=[("Fleetq-Transition", f"skills add {canon} {name}")],
            value=new,
            sign=sign,  # config/ and handlers/ are protected: signed when this clone's git signs
        )

    return plan


# ---------------------------------------------------------------- create: a new skill and its handler

HANDLER_STUB = '''"""{type}: {description}

Scaffolded by `fleetq skills create {name}`. Workers find this file with no wiring:
a task of type {type} runs ``run(ctx)``. Read ``ctx.payload``, run commands with
``fleetq.handlerapi.run_in(ctx, ...)``, return a HandlerResult (done / failed /
needs_human).
"""
from __future__ import annotations

from fleetq.handlerapi import NEEDS_HUMAN, HandlerContext, HandlerResult

DEFAULT_TIMEOUT = 600.0


def run(ctx: HandlerContext) -> HandlerResult:
    return HandlerResult(NEEDS_HUMAN, error="{type} is not implemented yet: edit handlers/{type}.py in the fleet repo")
'''


@dataclass
class NewSkill:
    name: str
    description: str
    category: str
    check: str
    install: dict[str, str]
    task_type: str

    def validate(self) -> None:
        if not NAME_RE.fullmatch(self.name):
            raise UsageError(f"skill name {self.name!r}: use lowercase letters, digits, '-', '_', '.'")
        if not TYPE_RE.fullmatch(self.task_type):
            raise UsageError(
                f"task type {self.task_type!r}: use lowercase letters, digits and '_', starting with a letter"
            )

    @property
    def handler_path(self) -> str:
        return f"handlers/{self.task_type}.py"

    def entry(self) -> dict[str, Any]:
        out: dict[str, Any] = {"description": self.description, "category": self.category}
        if self.check:
            out["check"] = self.check
        install = {k: v for k, v in self.install.items() if v}
        if install:
            out["install"] = install
        out["task_types"] = [self.task_type]
        out["handler"] = self.handler_path
        return out


def default_type(name: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", name.lower()).strip("_") or "custom"


def create_plan(new: NewSkill, *, sign: bool = False) -> Callable[[Snapshot], Plan]:
    new.validate()

    def plan(snap: Snapshot) -> Plan:
        doc = yamlio.load_rt_section(snap.read(SKILLS), SKILLS, "skills")
        if new.name in doc["skills"]:
            raise Conflict(f"skill '{new.name}' is already in {SKILLS}")
        if snap.read(new.handler_path) is not None:
            raise Conflict(f"{new.handler_path} already exists in the fleet repo")
        doc["skills"][new.name] = yamlio.to_rt(new.entry())
        stub = HANDLER_STUB.format(type=new.task_type, name=new.name, description=new.description or new.name)
        return Plan(
            changes={SKILLS: yamlio.dump_rt(doc).encode(), new.handler_path: stub.encode()},
            subject=f"fleetq: skills create {new.name}",
            trailers=[("Fleetq-Transition", f"skills create {new.name}")],
            value=new.handler_path,
            sign=sign,
        )

    return plan
