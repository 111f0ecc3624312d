"""`fleetq parallel COMMAND --machines a,b | --all [--wait]` and `fleetq wait ID...`."""

from __future__ import annotations

import click

from fleetq.cli import output
from fleetq.cli.context import AppContext, pass_app
from fleetq.core.clone import Fleet
from fleetq.errors import Reported
from fleetq.fleet import parallel as par
from fleetq.fleet.view import open_view
from fleetq.run.notify import Event, Notifier
from fleetq.trust import signing


def _wait_and_report(fleet: Fleet, ids: list[str], timeout: float | None, interval: float, as_json: bool) -> None:
    live = not as_json and output.is_tty()

    def on_event(e: Event) -> None:  # `12:03:04 fix-login done on mini` as each one finishes
        if live:
            output.progress_end()
        (output.note if as_json else output.info)(e.line())

    # tells this machine's user too, once, even with no worker here (not while a protected file is tainted)
    notifier = Notifier(fleet, gate=signing.notify_gate(fleet.repo))
    try:
        outs, timed_out = par.wait(
            fleet,
            ids,
            timeout=timeout,
            interval=par.check_interval(interval),
            on_poll=(lambda o, e: output.progress(par.progress_text(o, e))) if live else None,
            on_event=on_event,
            notifier=notifier,
        )
    finally:
        notifier.drain()
    if live:
        output.progress_end()
    code = par.exit_code(outs, timed_out)
    if as_json:
        output.emit_json({"tasks": [o.to_json() for o in outs], "timed_out": timed_out, "exit_code": code})
    else:
        rows, headers = par.table(outs)
        output.emit_table(rows, headers)
        bad = [o for o in outs if o.finished and o.state != par.DONE]
        if timed_out:
            waiting = [o.id for o in outs if not o.finished]
            output.error(f"timed out after {timeout:g}s; still unfinished: {', '.join(waiting)}")
        if bad:
            output.error(
                f"{len(bad)} of {len(outs)} did not succeed: " + ", ".join(f"{o.machine} ({o.state})" for o in bad)
            )
    if code:
        raise Reported(code)


@click.command()
@click.argument("command", nargs=-1, required=True)
@click.option("--machines", metavar="A,B", help="Comma-separated machines to run on.")
@click.option(
    "--all", "all_", is_flag=True, help="Every declared machine that can run it (the online ones when any are)."
)
@click.option(
    "--type",
    "type_",
    default="run_script",
    show_default=True,
    metavar="T",
    help="Task type: run_script runs COMMAND as a script; other types get it as payload.command "
    "(agent_run: the prompt).",
)
@click.option("--cwd", metavar="DIR", help="Working directory on each machine.")
@click.option("--task-timeout", type=float, metavar="S", help="Kill each run after S seconds.")
@click.option(
    "--attempts",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Attempts per machine (a failed run is retried after the fleet's retry_backoff).",
)
@click.option("--wait", "wait_", is_flag=True, help="Wait for all of them and print one table.")
@click.option("--timeout", type=float, metavar="S", help="With --wait: give up waiting after S seconds (exit 124).")
@click.option("--interval", type=float, default=1.0, show_default=True, help="With --wait: seconds between polls.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def parallel(
    app: AppContext,
    command: tuple[str, ...],
    machines: str | None,
    all_: bool,
    type_: str,
    cwd: str | None,
    task_timeout: float | None,
    attempts: int,
    wait_: bool,
    timeout: float | None,
    interval: float,
    as_json: bool,
) -> None:
    """Queue COMMAND once per machine (each task pinned to its machine)."""
    fleet = app.fleet()
    v = open_view(fleet)
    names = [n.strip() for n in (machines or "").split(",") if n.strip()]
    tg = par.targets(v.cfg, v.beats, names=names, all_=all_, task_type=type_)
    ids = par.queue_on(
        fleet, tg.machines, " ".join(command), task_type=type_, cwd=cwd, timeout=task_timeout, attempts=attempts
    )
    fleet.refresh_checkout()
    say = output.note if as_json else output.info
    say(f"queued {len(ids)} task(s) on {', '.join(tg.machines)}")
    for n, why in tg.skipped.items():
        say(f"  skipped {n}: {why}")
    if tg.offline:
        say(f"  no worker online on {', '.join(tg.offline)}: those wait until one runs there")
    if wait_:
        _wait_and_report(fleet, ids, timeout, interval, as_json)
    elif as_json:
        output.emit_json({"ids": ids, "machines": tg.machines, "skipped": tg.skipped, "offline": tg.offline})
    else:
        for tid in ids:
            output.info(tid)
        output.info(f"wait for them: fleetq wait {' '.join(ids)}")


@click.command("wait")
@click.argument("ids", nargs=-1, required=True)
@click.option("--timeout", type=float, metavar="S", help="Give up after S seconds (exit 124).")
@click.option(
    "--interval", type=float, default=1.0, show_default=True, help="Seconds between polls (each one fetches)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def wait_cmd(app: AppContext, ids: tuple[str, ...], timeout: float | None, interval: float, as_json: bool) -> None:
    """Block until the tasks are done, failed or need a human; one table; exit non-zero if any did not succeed."""
    fleet = app.fleet()
    full = par.resolve_ids(fleet.snapshot(), list(ids))
    _wait_and_report(fleet, full, timeout, interval, as_json)


commands = [parallel, wait_cmd]
