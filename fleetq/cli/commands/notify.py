"""`fleetq notify test [STATE]`: fire the configured notifier with a sample event."""

from __future__ import annotations

import click

from fleetq.cli import output
from fleetq.cli.context import AppContext, pass_app
from fleetq.core.task import fmt_time, now_utc
from fleetq.errors import FleetqError, Reported, UsageError
from fleetq.run import notify


@click.group("notify")
def notify_group() -> None:
    """Notifications for tasks this machine created (config/notify.yaml)."""


@notify_group.command("test")
@click.argument("state", type=click.Choice(notify.EVENT_STATES), default="needs_human")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def test(app: AppContext, state: str, as_json: bool) -> None:
    """Run the notifier for STATE (default needs_human) with a sample event, here and now; exit 1 if it fails."""
    fleet = app.fleet()
    snap = fleet.snapshot(tolerate_offline=True)
    cfg = notify.load_config(snap, fleet.machine)
    if cfg is None or state not in cfg.on:
        raise UsageError(
            f"no notifier for {state} on {fleet.machine}: set `command` or `on.{state}` in {notify.NOTIFY_FILE}"
        )
    event = notify.Event(
        id="notify-test",
        state=state,
        attempt=1,
        title='fleetq notification test "quoted" title',
        type="run_script",
        machine=fleet.machine,
        by=fleet.machine,
        at=fmt_time(now_utc()),
        error="" if state == "done" else "a sample error",
    )
    sent = notify.run_notifier(cfg, event, fleet.state_dir / "logs" / "notify.log")
    if sent is None:  # not reached: cfg.on has the state
        raise FleetqError(f"no notifier for {state}")
    if as_json:
        output.emit_json({"event": event.to_json(), "argv": sent.argv, "ok": sent.ok, "detail": sent.detail})
    else:
        output.info(f"$ {' '.join(sent.argv)}")
        output.info(f"{'ok' if sent.ok else 'failed'}: {sent.detail}")
    if not sent.ok:
        raise Reported(1)


commands = [notify_group]
