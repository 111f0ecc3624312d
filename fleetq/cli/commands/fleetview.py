"""`fleetq status`, `fleetq load`, `fleetq monitor`: the fleet at a glance."""

from __future__ import annotations

import time

import click

from fleetq.cli import output
from fleetq.cli.context import AppContext, pass_app
from fleetq.errors import UsageError
from fleetq.fleet import view as fleetview
from fleetq.fleet.placement import weights_of
from fleetq.fleet.view import View, money, open_view
from fleetq.run import notify
from fleetq.trust import signing

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _warn(v: View) -> None:
    if v.warning:
        output.warn(v.warning)
    for p in v.problems:
        output.warn(str(p))


def _pct(x: object) -> str:
    return "-" if x is None else f"{x:g}%"


@click.command()
@json_option
@pass_app
def status(app: AppContext, as_json: bool) -> None:
    """Each machine: online/offline (heartbeat age), active tasks, done/failed counts, top agent, cost."""
    v = open_view(app.fleet())
    rows = fleetview.status(v)
    counts = fleetview.queue_counts(v)
    if as_json:
        output.emit_json(
            {
                "machines": rows,
                "online": v.online_count(),
                "declared": len(v.cfg.machines),
                "lease": v.lease,
                "queue": counts,
                "warning": v.warning,
            }
        )
        return
    table = [
        [
            r["machine"] + ("" if r["declared"] else " (undeclared)"),
            r["liveness"],
            f"{r['running']}/{r['slots']}",
            f"{r['lease']:g}s" + ("" if r["lease_from"] == "worker" else " (fleet)"),
            r["active"],
            r["pending_pinned"],
            r["done"],
            r["failed"],
            r["needs_human"],
            f"{r['top_agent']} ({r['top_agent_runs']})" if r["top_agent"] else "-",
            money(r["cost_usd"]),
        ]
        for r in rows
    ]
    output.emit_table(
        table,
        ["Machine", "Heartbeat", "Slots", "Lease", "Active", "Queued", "Done", "Failed", "Review", "Top agent", "Cost"],
        empty="(no machines declared)",
    )
    output.info("")
    output.info(
        f"{v.online_count()}/{len(rows)} workers online (fleet lease {v.lease:g}s) · "
        + " · ".join(f"{n} {s}" for s, n in counts.items())
    )
    _warn(v)


@click.command()
@json_option
@pass_app
def load(app: AppContext, as_json: bool) -> None:
    """CPU, memory and load average per machine, and the composite placement score (lower is better)."""
    v = open_view(app.fleet())
    rows = fleetview.load(v)
    w = weights_of(v.cfg)
    if as_json:
        output.emit_json({"weights": w, "lease": v.lease, "machines": rows, "warning": v.warning})
        return
    table = [
        [
            r["machine"],
            r["liveness"],
            _pct(r["cpu"]),
            _pct(r["memory"]),
            "-" if r["load1"] is None else f"{r['load1']:g}/{r['cpus']}",
            _pct(r["load_pct"]),
            "-" if r["score"] is None else f"{r['score']:.2f}" + ("" if r["fresh"] else " (stale)"),
        ]
        for r in rows
    ]
    output.emit_table(
        table, ["Machine", "Heartbeat", "CPU", "Memory", "Load1/CPUs", "Load", "Score"], empty="(no machines declared)"
    )
    output.info("")
    output.info(
        f"score = {w['cpu']:g}·cpu + {w['memory']:g}·memory + {w['load']:g}·load, /100; lower is better. "
        f"Metrics older than the lease ({v.lease:g}s) are stale and not used for placement."
    )
    _warn(v)


def _draw(v: View, width: int) -> None:
    entries = fleetview.monitor(v)
    busy = sum(len(e["running"]) for e in entries)
    output.info(
        f"fleet monitor · {v.online_count()}/{len(entries)} online · {busy} running · {time.strftime('%H:%M:%S')}"
    )
    for e in entries:
        title, lines = fleetview.monitor_lines(e)
        output.info(output.box(title, lines, width=width))
    _warn(v)


@click.command()
@click.option("--watch", is_flag=True, help="Redraw until Ctrl-C.")
@click.option("--interval", type=float, default=2.0, show_default=True, help="Seconds between redraws with --watch.")
@json_option
@pass_app
def monitor(app: AppContext, watch: bool, interval: float, as_json: bool) -> None:
    """What runs where right now: per machine, each running task, its agent, elapsed time, cost so far."""
    if watch and as_json:
        raise UsageError("--watch redraws a screen; use --json without --watch")
    fleet = app.fleet()
    if as_json:
        v = open_view(fleet)
        output.emit_json({"machines": fleetview.monitor(v), "warning": v.warning})
        return
    width = min(output.terminal_width(), 100)
    if not watch:
        _draw(open_view(fleet), width)
        return
    # tells this machine's user too (once, shared with the worker; not while a protected file is tainted)
    notifier = notify.Notifier(fleet, gate=signing.notify_gate(fleet.repo))
    events = fleetview.EventLog(fleet)
    try:
        while True:
            v = open_view(fleet)
            notifier.check(v.snap)
            events.update(v)
            output.clear_screen()
            _draw(v, min(output.terminal_width(), 100))
            for line in events.lines():
                output.info(line)
            time.sleep(max(0.2, interval))
    except KeyboardInterrupt:
        output.info("")
    finally:
        notifier.drain(5)


commands = [status, load, monitor]
