"""`fleetq sync HOST [PATH]`, `fleetq exec HOST COMMAND...`, `fleetq ssh HOST`: code and commands to a machine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from fleetq.cli import output
from fleetq.cli.context import AppContext, pass_app
from fleetq.core.clone import Fleet
from fleetq.core.config import FleetConfig
from fleetq.errors import Reported, UsageError
from fleetq.fleet import remote as fleet_remote
from fleetq.fleet.parallel import TIMED_OUT
from fleetq.fleet.placement import Need, Placer
from fleetq.fleet.view import open_view
from fleetq.git.ssh import HostDown, SyncStats, human_bytes

T = TypeVar("T")


def _config(fleet: Fleet) -> FleetConfig:
    return fleet.config(fleet.snapshot(tolerate_offline=True))


def _is_here(fleet: Fleet, cfg: FleetConfig, name: str) -> bool:
    return (cfg.canonical(name) or name) == (cfg.canonical(fleet.machine) or fleet.machine)


def next_best(fleet: Fleet, failed: str, *, allow_here: bool) -> tuple[str, str] | None:
    """The best-ranked online machine other than ``failed`` (placement's order), and why."""
    v = open_view(fleet)
    skip = [failed] + ([] if allow_here else [fleet.machine])
    r = Placer(v.cfg, v.beats, snap=v.snap).rank(Need(), exclude=skip)
    for c in r.ranked:
        if c.m.online:
            why = f"load score {c.effective:.2f}" if c.effective is not None else "online"
            return c.name, why
    return None


def with_fallback(
    fleet: Fleet, cfg: FleetConfig, name: str, fallback: bool, allow_here: bool, act: Callable[[str], T]
) -> T:
    """Run ``act(machine)``; a machine that does not answer is named, with the next best host suggested (or used)."""
    try:
        return act(name)
    except HostDown as e:
        alt = next_best(fleet, cfg.canonical(name) or name, allow_here=allow_here)
        if alt is None:
            output.error(f"{e}; no other machine is online to fall back to")
            raise Reported(e.exit_code) from None
        if not fallback:
            output.error(f"{e}; next best host: {alt[0]} ({alt[1]}); add --fallback to use it")
            raise Reported(e.exit_code) from None
        output.warn(f"{e}; falling back to {alt[0]} ({alt[1]})")
        return act(alt[0])


@click.command()
@click.argument("host")
@click.argument("path", required=False, default=".", type=click.Path(exists=True, file_okay=False))
@click.option("--dest", metavar="DIR", help="Where on HOST (default: the same place relative to the home directory).")
@click.option("--delete", is_flag=True, help="Also delete files on HOST that are gone here (rsync --delete).")
@click.option(
    "--exclude",
    "excludes",
    multiple=True,
    metavar="PATTERN",
    help="Exclude this too (repeatable; config/fleet.yaml sync_excludes are always excluded).",
)
@click.option("--fallback", is_flag=True, help="If HOST does not answer, sync to the next best host instead.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def sync(
    app: AppContext,
    host: str,
    path: str,
    dest: str | None,
    delete: bool,
    excludes: tuple[str, ...],
    fallback: bool,
    as_json: bool,
) -> None:
    """Mirror directory PATH (default: here) to machine HOST with rsync over SSH."""
    fleet = app.fleet()
    cfg = _config(fleet)
    opts = fleet_remote.ssh_options(cfg)
    patterns = fleet_remote.sync_excludes(cfg) + list(excludes)
    local = Path(path)
    if _is_here(fleet, cfg, host):
        raise click.UsageError(f"{host} is this machine: nothing to sync")
    cfg.machine(host, strict=True)

    def go(name: str) -> tuple[str, str, SyncStats]:
        target = fleet_remote.host_for(cfg, name)
        remote, stats = fleet_remote.push(opts, target, local, dest, excludes=patterns, delete=delete)
        return name, remote, stats

    name, remote, stats = with_fallback(fleet, cfg, host, fallback, False, go)
    if as_json:
        output.emit_json(
            {
                "machine": name,
                "source": str(local.resolve()),
                "dest": remote,
                "excludes": patterns,
                "delete": delete,
                **stats.to_json(),
            }
        )
        return
    output.info(f"✓ synced {local.resolve()} → {name}:{remote}")
    output.info(
        f"  {stats.files_sent} of {stats.files_total} files sent, {human_bytes(stats.bytes_sent)} sent "
        f"(total size {human_bytes(stats.total_size)}) in {stats.duration:.1f}s"
    )
    output.info(f"  excluded: {', '.join(patterns)}")


@click.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--fallback", is_flag=True, help="If HOST does not answer, run on the next best host instead.")
@click.option("--timeout", type=float, metavar="S", help="Kill the command after S seconds (exit 124).")
@click.argument("host")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_app
def exec_(app: AppContext, fallback: bool, timeout: float | None, host: str, command: tuple[str, ...]) -> None:
    """Run COMMAND on machine HOST over SSH (locally for this machine); output streams; exits with its code."""
    if command[0] == "--":  # `exec HOST -- CMD`: the "--" ends fleetq's options, it is not part of CMD
        command = command[1:]
    if not command:
        raise UsageError("exec: no command after --")
    fleet = app.fleet()
    cfg = _config(fleet)
    opts = fleet_remote.ssh_options(cfg)
    line = " ".join(command)
    cfg.machine(host, strict=True)

    def go(name: str) -> int | None:
        if _is_here(fleet, cfg, name):
            return fleet_remote.run_local(line, timeout=timeout).exit_code
        return fleet_remote.run(opts, fleet_remote.host_for(cfg, name), line, timeout=timeout).exit_code

    code = with_fallback(fleet, cfg, host, fallback, True, go)
    if code is None:
        output.error(f"timed out after {timeout:g}s" if timeout else "the command was killed")
        raise Reported(TIMED_OUT)
    if code:
        raise Reported(code)


@click.command("ssh")
@click.argument("host")
@pass_app
def ssh_cmd(app: AppContext, host: str) -> None:
    """Open an SSH session to machine HOST (its target from config/machines.yaml)."""
    fleet = app.fleet()
    cfg = _config(fleet)
    code = fleet_remote.interactive(fleet_remote.ssh_options(cfg), fleet_remote.host_for(cfg, host))
    if code:
        raise Reported(code)


commands = [sync, exec_, ssh_cmd]
