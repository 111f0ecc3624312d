"""`fleetq skills ...`: what machines declare, the registry, SSH-verified checks, install, add, create."""

from __future__ import annotations

import shlex
import sys
from typing import Any

import click

from fleetq.cli import output
from fleetq.cli.context import AppContext, pass_app
from fleetq.core.cas import transact
from fleetq.core.clone import Fleet
from fleetq.core.config import FleetConfig
from fleetq.core.transitions import signs
from fleetq.errors import FleetqError, Reported
from fleetq.fleet import remote
from fleetq.fleet import skills as skillmod
from fleetq.fleet.skills import Skill
from fleetq.fleet.view import open_view

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _is_here(fleet: Fleet, cfg: FleetConfig, machine: str) -> bool:
    return (cfg.canonical(machine) or machine) == (cfg.canonical(fleet.machine) or fleet.machine)


def _checks(fleet: Fleet, cfg: FleetConfig, machine: str, skills: list[Skill]) -> dict[str, bool | None]:
    """Run the skills' check commands on ``machine``: here directly, elsewhere in one SSH round trip."""
    if _is_here(fleet, cfg, machine):
        return skillmod.local_status({s.name: s for s in skills})
    res = remote.capture_on(
        cfg, remote.host_for(cfg, machine), f"sh -lc {shlex.quote(skillmod.check_script(skills))}", timeout=120
    )
    return skillmod.parse_checks(res.stdout)


def _yes(v: bool | None) -> str:
    return "?" if v is None else "yes" if v else "no"


def _declared(app: AppContext, as_json: bool) -> None:
    fleet = app.fleet()
    snap = fleet.snapshot(tolerate_offline=True)
    cfg = fleet.config(snap)
    rows = [m.to_json() for m in cfg.machines.values()]
    if as_json:
        output.emit_json({"machines": rows})
        return
    output.emit_table(
        [
            [m.name, m.os or "-", ", ".join(m.capabilities) or "-", ", ".join(m.agents) or "-"]
            for m in cfg.machines.values()
        ],
        ["Machine", "OS", "Capabilities", "Agents"],
        empty="(no machines declared)",
    )


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def skills(ctx: click.Context, as_json: bool) -> None:
    """Skills and capabilities: with no subcommand, what each machine declares."""
    if ctx.invoked_subcommand is None:
        _declared(ctx.find_object(AppContext) or AppContext(), as_json)


@skills.command("list")
@click.argument("machine", required=False)
@json_option
@pass_app
def list_(app: AppContext, machine: str | None, as_json: bool) -> None:
    """Without MACHINE: declared capabilities per machine. With MACHINE: what is really installed (SSH check)."""
    if machine is None:
        _declared(app, as_json)
        return
    fleet = app.fleet()
    snap = fleet.snapshot(tolerate_offline=True)
    cfg = fleet.config(snap)
    spec = cfg.machine(machine, strict=True)
    reg = skillmod.registry(snap)
    found = _checks(fleet, cfg, spec.name, list(reg.values()))
    rows: list[dict[str, Any]] = [
        {
            "skill": s.name,
            "category": s.category,
            "installed": found.get(s.name),
            "declared": s.declared_on(spec),
            "task_types": s.task_types,
        }
        for s in reg.values()
    ]
    if as_json:
        output.emit_json({"machine": spec.name, "skills": rows})
        return
    table = [
        [r["skill"], r["category"], _yes(r["installed"]), _yes(r["declared"]), ", ".join(r["task_types"]) or "-"]
        for r in rows
    ]
    output.emit_table(
        table, ["Skill", "Category", "Installed", "Declared", "Task types"], empty="(no skills in the registry)"
    )
    for r in rows:
        if r["installed"] and not r["declared"]:
            output.info(f"  {r['skill']} is installed but not declared: fleetq skills add {spec.name} {r['skill']}")
        elif r["installed"] is False and r["declared"]:
            output.info(f"  {r['skill']} is declared but missing: fleetq skills install {spec.name} {r['skill']}")


@skills.command()
@click.option("--category", metavar="C", help="Only skills of this category.")
@click.option(
    "--check", is_flag=True, help="Verify over SSH on every machine (else: the last heartbeat / declarations)."
)
@json_option
@pass_app
def available(app: AppContext, category: str | None, check: bool, as_json: bool) -> None:
    """The skill registry, with each machine's install status."""
    fleet = app.fleet()
    v = open_view(fleet)
    reg = {n: s for n, s in skillmod.registry(v.snap).items() if not category or s.category == category}
    names = list(v.cfg.machines)
    status: dict[str, dict[str, str]] = {}
    for name in names:
        spec, beat = v.cfg.machines[name], v.beats.get(name)
        status[name] = {s.name: skillmod.heartbeat_status(s, spec, beat) for s in reg.values()}
        if check and reg:
            try:
                found = _checks(fleet, v.cfg, name, list(reg.values()))
            except FleetqError as e:
                output.warn(f"{name}: not checked: {e}")
                continue
            status[name] = {s: "?" if ok is None else "installed" if ok else "missing" for s, ok in found.items()}
    if as_json:
        output.emit_json(
            {"skills": [{**s.to_json(), "machines": {m: status[m].get(s.name) for m in names}} for s in reg.values()]}
        )
        return
    rows = [
        [s.name, s.category, ", ".join(s.task_types) or "-", *(status[m].get(s.name, "?") for m in names)]
        for s in reg.values()
    ]
    output.emit_table(rows, ["Skill", "Category", "Task types", *names], empty="(no skills match)")
    if not check:
        output.info(
            "\n(declared: in machines.yaml; installed/missing: from the last heartbeat; --check verifies over SSH)"
        )


@skills.command()
@click.argument("machine")
@click.argument("skill")
@pass_app
def install(app: AppContext, machine: str, skill: str) -> None:
    """Run SKILL's install recipe on MACHINE (over SSH; locally for this machine), then check it."""
    fleet = app.fleet()
    snap = fleet.snapshot(tolerate_offline=True)
    cfg = fleet.config(snap)
    spec = cfg.machine(machine, strict=True)
    s = skillmod.get(skillmod.registry(snap), skill)
    here = _is_here(fleet, cfg, spec.name)
    opts, host = remote.ssh_options(cfg), None if here else remote.host_for(cfg, spec.name)
    os_name = spec.os
    if not os_name:
        probe = (
            remote.run_local("uname -s", echo=False, capture=True)
            if host is None
            else remote.run(opts, host, "uname -s", echo=False, capture=True)
        )
        os_name = skillmod.os_of_uname(probe.stdout)
    cmd = skillmod.install_command(s, os_name)
    output.info(f"→ installing {s.name} on {spec.name} ({os_name}): {cmd}")
    if host is None:
        code = remote.run_local(cmd, echo=True).exit_code
    elif sys.stdin.isatty():
        code = remote.interactive(opts, host, f"sh -lc {shlex.quote(cmd)}")  # sudo may ask for a password
    else:
        code = remote.run(opts, host, f"sh -lc {shlex.quote(cmd)}", echo=True).exit_code
    ok = _checks(fleet, cfg, spec.name, [s]).get(s.name) if s.check else None
    if code != 0 or ok is False:
        output.error(
            f"{s.name} on {spec.name}: install exited with {code}" + ("; its check still fails" if ok is False else "")
        )
        raise Reported(1)
    output.info(f"✓ {s.name} installed on {spec.name}" + ("" if ok else " (no check command to verify it)"))
    if not s.declared_on(spec):
        output.info(f"  declare it so tasks are routed there: fleetq skills add {spec.name} {s.name}")


@skills.command()
@click.argument("machine")
@click.argument("skill")
@pass_app
def add(app: AppContext, machine: str, skill: str) -> None:
    """Declare SKILL (and the task types it enables) in MACHINE's capabilities in config/machines.yaml."""
    fleet = app.fleet()
    snap = fleet.snapshot()
    cfg = fleet.config(snap)
    reg = skillmod.registry(snap)
    canon = cfg.machine(machine, strict=True).name
    if skill not in reg:
        output.warn(f"'{skill}' is not in {skillmod.SKILLS}: adding it as a plain capability")
    landed = transact(fleet, skillmod.add_plan(cfg, canon, skill, reg, sign=signs(fleet)))
    fleet.refresh_checkout()
    added = landed.value if landed else []
    if added:
        output.info(
            f"✓ {canon}: added {', '.join(added)} to its capabilities (config/machines.yaml, committed and pushed)"
        )
    else:
        output.info(f"{canon} already declares {skill}")


@skills.command()
@click.argument("name")
@click.option("--description", prompt="Description", help="What the skill does.")
@click.option(
    "--category", prompt="Category", default="custom", show_default=True, help="Category (core, web, mobile, ...)."
)
@click.option(
    "--check",
    "check_cmd",
    prompt="Check command",
    default="",
    show_default=False,
    help="Command that exits 0 when the tool is installed.",
)
@click.option(
    "--install-macos", prompt="Install (macos)", default="", show_default=False, help="Install command on macOS."
)
@click.option(
    "--install-linux", prompt="Install (linux)", default="", show_default=False, help="Install command on Linux."
)
@click.option("--type", "task_type", help="The task type it adds (asked for; default: NAME as a type name).")
@pass_app
def create(
    app: AppContext,
    name: str,
    description: str,
    category: str,
    check_cmd: str,
    install_macos: str,
    install_linux: str,
    task_type: str | None,
) -> None:
    """Register a new skill in config/skills.yaml and scaffold handlers/<type>.py for its task type."""
    fleet = app.fleet()
    if task_type is None:
        task_type = click.prompt("Task type", default=skillmod.default_type(name))
    new = skillmod.NewSkill(
        name,
        description.strip(),
        category.strip() or "custom",
        check_cmd.strip(),
        {"macos": install_macos.strip(), "linux": install_linux.strip()},
        task_type.strip() or skillmod.default_type(name),
    )
    transact(fleet, skillmod.create_plan(new, sign=signs(fleet)))
    fleet.refresh_checkout()
    output.info(f"✓ Created handler: {new.handler_path}")
    output.info(f"✓ Registered in {skillmod.SKILLS}")
    output.info("")
    output.info("Next steps:")
    output.info(f"  1. Implement {new.handler_path} in the fleet repo ({fleet.root / new.handler_path})")
    output.info(f"  2. Declare it where it runs: fleetq skills add <machine> {new.name}")


commands = [skills]
