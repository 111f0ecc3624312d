"""Auto-routing for `fleetq assign`: fill in machine, agent and task type, and say why.

With a router agent configured (``router: claude`` in config/fleet.yaml) and
installed here, that agent is asked for a JSON recommendation; its answer is
checked against the fleet (the machine exists and can run the type, the agent
is listed there) and anything the user gave on the command line wins. Without
one, or when its answer is unusable, rules decide: task-type and capability
keywords in the description (skills.yaml ``keywords`` included), the agents
listed per machine, and the load score (placement). The result is always a
hard pin to one machine.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fleetq.core import submit
from fleetq.core.config import GENERIC_TYPES, FleetConfig, MachineSpec
from fleetq.core.heartbeat import Beat
from fleetq.core.matching import AGENT_TYPES
from fleetq.core.snapshot import Snapshot
from fleetq.core.task import DEFAULT_TYPE
from fleetq.errors import FleetqError, UsageError
from fleetq.fleet import skills as skillmod
from fleetq.fleet.placement import Candidate, Need, Placer, Ranking
from fleetq.run.agents.registry import installed_agents, load_agents
from fleetq.run.agents.runners import run_agent

AUTO = "auto"
ANY = "any"  # `--machine any`: no pin, never routed
ROUTER_TIMEOUT = 90.0

# Task types a description names outright (a build verb is needed for the build types).
_BUILD = r"\b(build|archive|release|compile|ship)\b"
TYPE_HINTS: list[tuple[str, re.Pattern[str], re.Pattern[str] | None]] = [
    ("ios_build", re.compile(r"\b(ios|iphone|ipad|xcode|testflight)\b"), re.compile(_BUILD)),
    ("android_build", re.compile(r"\b(android|apk|aab|gradle)\b"), re.compile(_BUILD)),
    ("npm_build", re.compile(r"\bnpm (run )?build\b"), None),
    (
        "test_run",
        re.compile(r"\b(run|rerun|execute) (the |all )?(unit |integration |e2e )?(tests?|test suite|specs?)\b"),
        None,
    ),
    ("lint", re.compile(r"\b(lint|linting|linter)\b"), None),
    ("git_pull", re.compile(r"\bgit pull\b|\bpull (the )?latest\b"), None),
]
# Capability words beyond the capability's own name.
CAPABILITY_WORDS: dict[str, tuple[str, ...]] = {
    "ios_build": ("ios", "iphone", "ipad", "xcode", "testflight", "swiftui"),
    "xcode": ("xcode", "ios", "swiftui"),
    "swift": ("swift", "swiftui"),
    "android_build": ("android", "apk", "gradle", "kotlin"),
    "docker": ("docker", "container", "containers", "dockerfile", "compose"),
    "python_backend": ("python", "django", "flask", "fastapi", "backend"),
}


@dataclass
class Route:
    machine: str | None
    agent: str | None
    type: str
    reason: str
    source: str  # "rules" or "router:<agent>"
    ranking: Ranking | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "agent": self.agent,
            "type": self.type,
            "reason": self.reason,
            "source": self.source,
            "notes": self.notes,
        }


def wants_routing(req: submit.Request, *, interactive: bool) -> bool:
    """`--machine auto`; or, at a terminal, any of machine/agent/type left out (not `--machine any`)."""
    if req.machine == AUTO:
        return True
    if req.machine == ANY or not interactive:
        return False
    return req.machine is None or (req.agent is None and req.type in (None, "agent_run")) or req.type is None


def applied(req: submit.Request, route: Route) -> submit.Request:
    """The request with the route's choices filled in (a hard pin)."""
    agent = req.agent if req.agent else (route.agent if route.type in AGENT_TYPES else None)
    return replace(req, machine=route.machine, agent=agent, type=route.type)


# ---------------------------------------------------------------- what the description says


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9][a-z0-9+#.-]*", text.lower()))


def guess_type(text: str) -> str | None:
    low = text.lower()
    for type_, rx, also in TYPE_HINTS:
        if rx.search(low) and (also is None or also.search(low)):
            return type_
    return None


def capability_hints(text: str, cfg: FleetConfig, reg: dict[str, skillmod.Skill]) -> list[str]:
    """Declared capabilities (beyond the generic types) that the description mentions."""
    toks = words(text)
    found: list[str] = []
    declared = {c for m in cfg.machines.values() for c in m.capabilities} - set(GENERIC_TYPES)
    for cap in sorted(declared):
        names = {cap, *CAPABILITY_WORDS.get(cap, ())}
        parts = [p for p in cap.split("_") if p not in ("build", "run")]
        if names & toks or (parts and all(p in toks for p in parts)) or cap in reg and set(reg[cap].keywords) & toks:
            found.append(cap)
    return found


def mentioned_agent(text: str, known: list[str]) -> str | None:
    toks = words(text)
    return next((a for a in known if a in toks), None)


# ---------------------------------------------------------------- rules


def _scratch(req: submit.Request) -> dict[str, Any]:
    """What `--set` already fixes (type, agent, requires, payload keys)."""
    data: dict[str, Any] = {"payload": {}}
    submit.apply_sets(data, req.sets)
    return data


def _agent_for(spec: MachineSpec, beat: Beat | None, text: str, agents: list[str]) -> tuple[str | None, str]:
    installed = beat.state.get("agents") if beat is not None and isinstance(beat.state.get("agents"), list) else None
    usable = [a for a in spec.agents if installed is None or a in installed] or list(installed or [])
    named = mentioned_agent(text, agents)
    if named and named in usable:
        return named, f"the description names {named}"
    if usable:
        return usable[0], f"{usable[0]} is {spec.name}'s first listed agent" + (
            " that is installed" if installed else ""
        )
    return None, f"{spec.name} lists no agents: its worker uses its default"


def by_rules(
    req: submit.Request, cfg: FleetConfig, placer: Placer, reg: dict[str, skillmod.Skill], agent_names: list[str]
) -> Route:
    fixed = _scratch(req)
    text = req.description
    type_ = req.type or fixed.get("type")
    why: list[str] = []
    if not type_:
        if "script" in fixed["payload"] and not (req.agent or fixed.get("agent")):
            type_ = "run_script"
        else:
            type_ = guess_type(text) or DEFAULT_TYPE
            why.append(
                f"type {type_} " + ("from the description" if type_ != DEFAULT_TYPE else "(agent work by default)")
            )
    hints = [c for c in capability_hints(text, cfg, reg) if c != type_]
    agent = req.agent if req.agent and req.agent != "-" else fixed.get("agent")
    need = Need(type_, list(fixed.get("requires") or []), agent if type_ in AGENT_TYPES else None)
    chosen: Candidate | None
    if req.machine and req.machine not in (AUTO, ANY):
        chosen, ranking = _fixed_machine(cfg, placer, req.machine, need)
    else:
        ranking = placer.pick(need)
        chosen = _prefer_hints(ranking, hints)
        if chosen is None:
            raise FleetqError(f"cannot route this task: {ranking.why}")
        why.append(_machine_why(chosen, ranking, hints))
    if type_ in AGENT_TYPES and not agent:
        agent, agent_why = _agent_for(chosen.spec, chosen.m.beat, text, agent_names)
        why.append(agent_why)
    return Route(
        chosen.name, agent if type_ in AGENT_TYPES else None, type_, "; ".join(why) or "as given", "rules", ranking
    )


def _fixed_machine(cfg: FleetConfig, placer: Placer, machine: str, need: Need) -> tuple[Candidate, Ranking]:
    spec = cfg.machine(machine, strict=True)
    ranking = placer.rank(need)
    cand = next((c for c in ranking.ranked + ranking.excluded if c.name == spec.name), None)
    if cand is None:
        raise FleetqError(f"machine {spec.name} is not declared")
    return cand, ranking


def _prefer_hints(ranking: Ranking, hints: list[str]) -> Candidate | None:
    """The best-ranked machine among those having the most of the capabilities the description mentions."""
    if not ranking.ranked:
        return None
    if not hints:
        return ranking.ranked[0]
    best = max(sum(h in c.spec.capabilities for h in hints) for c in ranking.ranked)
    return next(c for c in ranking.ranked if sum(h in c.spec.capabilities for h in hints) == best)


def _machine_why(c: Candidate, ranking: Ranking, hints: list[str]) -> str:
    has = [h for h in hints if h in c.spec.capabilities]
    parts = []
    if has:
        parts.append(f"the description mentions {', '.join(has)}, which {c.name} has")
    if ranking.mode == "score" and c.m.fresh:
        parts.append(f"load score {c.effective:.2f}" + (" (lowest)" if c is ranking.ranked[0] else ""))
    elif ranking.mode == "round-robin":
        parts.append("no fresh load metrics: round-robin")
    if not c.m.online:
        parts.append(f"{c.name} has no live worker right now")
    return ", ".join(parts) or ranking.why


# ---------------------------------------------------------------- the router agent


def router_prompt(req: submit.Request, cfg: FleetConfig, placer: Placer) -> str:
    lines = [
        "You route one task to a machine of a small fleet. Reply with ONLY a JSON object:",
        '{"machine": "<name>", "agent": "<agent or null>", "type": "<task type>", "reason": "<one short sentence>"}',
        "",
        "Machines:",
    ]
    ranking = placer.rank(Need())
    for c in ranking.ranked + ranking.excluded:
        load = f"load score {c.m.score:.2f}" if c.m.fresh and c.m.score is not None else "no fresh load metrics"
        lines.append(
            f"- {c.name}: os {c.spec.os or '?'}; task types/capabilities: {', '.join(c.spec.capabilities) or 'none'}; "
            f"agents: {', '.join(c.spec.agents) or 'none'}; {'online' if c.m.online else 'offline'}, {load}"
        )
    lines += [
        "",
        "Task types: agent_run (an AI agent works on the prompt), run_script (a shell script), "
        "and the build/test types above. Prefer online machines with a low load score.",
        "",
    ]
    fixed = {
        k: v
        for k, v in (
            ("machine", req.machine if req.machine not in (AUTO, ANY) else None),
            ("agent", req.agent),
            ("type", req.type),
        )
        if v
    }
    if fixed:
        lines.append("Already fixed by the user (keep these): " + json.dumps(fixed))
    lines.append(f"Task: {req.description}")
    return "\n".join(lines)


def parse_reply(reply: str) -> dict[str, Any]:
    """The first JSON object in an agent's reply (code fences and prose around it tolerated)."""
    text = re.sub(r"```(?:json)?", "", reply or "")
    start = text.find("{")
    while start != -1:
        depth = 0
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                try:
                    doc = json.loads(text[start : i + 1])
                except ValueError:
                    break
                if isinstance(doc, dict):
                    return doc
                break
        start = text.find("{", start + 1)
    raise FleetqError("the router's reply holds no JSON object")


def check_answer(doc: dict[str, Any], req: submit.Request, cfg: FleetConfig) -> Route:
    """A router answer made safe: the user's own flags win; machine, type and agent must fit the fleet."""
    machine = req.machine if req.machine not in (None, AUTO, ANY) else doc.get("machine")
    if not isinstance(machine, str) or cfg.canonical(machine) is None:
        raise FleetqError(f"it named machine {machine!r}, which is not declared")
    spec = cfg.machines[cfg.canonical(machine)]  # type: ignore[index]
    type_ = req.type or doc.get("type") or DEFAULT_TYPE
    if not isinstance(type_, str) or not spec.can_run(type_):
        raise FleetqError(f"{spec.name} cannot run type {type_!r}")
    agent = req.agent or doc.get("agent")
    if type_ not in AGENT_TYPES or agent in ("", "-", "none", "null"):
        agent = None
    if agent is not None and (not isinstance(agent, str) or (spec.agents and agent not in spec.agents)):
        raise FleetqError(f"agent {agent!r} is not listed for {spec.name}")
    reason = str(doc.get("reason") or "the router's recommendation").strip()
    return Route(spec.name, agent, type_, reason, "")


def ask_router(
    name: str, registry: dict[str, dict], req: submit.Request, cfg: FleetConfig, placer: Placer, timeout: float
) -> Route:
    """Ask the router agent; FleetqError when it cannot answer usably."""
    with tempfile.TemporaryDirectory(prefix="fleetq-route-") as tmp:
        res = run_agent(
            name,
            router_prompt(req, cfg, placer),
            agents=registry,
            cwd=tmp,
            model=None,
            env=dict(os.environ),
            timeout=timeout,
            log_path=Path(tmp) / "router.log",
        )
    if res.outcome != "done":
        raise FleetqError(res.error or f"{name} exited with {res.exit_code}")
    route = check_answer(parse_reply(str(res.extra.get("reply") or res.stdout_tail)), req, cfg)
    route.source = f"router:{name}"
    return route


# ---------------------------------------------------------------- entry point


def route(
    req: submit.Request,
    snap: Snapshot,
    cfg: FleetConfig,
    beats: dict[str, Beat],
    *,
    fleet_dir: Path | None,
    state_dir: Path | None,
    say: Any = None,
) -> Route:
    """Fill in what ``req`` leaves open. ``say`` gets progress lines (``→ Asking claude …``)."""
    if not req.description.strip():
        raise UsageError("give the task a description")
    placer = Placer(cfg, beats, snap=snap, state_dir=state_dir)
    reg = skillmod.registry(snap)
    try:
        registry = load_agents(fleet_dir)
    except FleetqError:
        registry = load_agents(None)
    notes: list[str] = []
    router = cfg.get("router")
    if router:
        if router not in registry:
            notes.append(f"router '{router}' is not in config/agents.yaml; routed by rules")
        elif router not in installed_agents({router: registry[router]}):
            notes.append(f"router '{router}' is not installed here; routed by rules")
        else:
            if say:
                say(f"→ Asking {router} for a routing recommendation…")
            timeout = float(cfg.get("router_timeout") or ROUTER_TIMEOUT)
            try:
                r = ask_router(router, registry, req, cfg, placer, timeout)
                r.notes = notes
                if say:
                    say(f"→ Suggested: {r.machine} / {r.agent or '-'} ({r.reason})")
                return r
            except FleetqError as e:
                notes.append(f"router {router} gave no usable answer ({e}); routed by rules")
    r = by_rules(req, cfg, placer, reg, list(registry))
    r.notes = notes
    return r
