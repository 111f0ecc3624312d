"""Notifications: the notifier command gets needs_human / failed / done events of this machine's tasks,
exactly once each; a failing notifier never stops the worker; `wait` and `monitor --watch` print events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleetq.core import transitions
from fleetq.core.config import GENERIC_TYPES, MachineSpec
from fleetq.core.matching import Seat
from fleetq.errors import FleetqError
from fleetq.run import notify
from support.fleets import Fleets
from support.workers import WorkerProc, add, set_file, states_of, tasks, wait_for

RECORDER = """#!/bin/sh
# one JSON-ish line per call: argv, then the FLEETQ_EVENT_* environment
printf '%s|%s|%s|%s|%s\\n' "$1" "$2" "$3" "$FLEETQ_EVENT_MACHINE" "$FLEETQ_EVENT_FROM" >> "$(dirname "$0")/events.txt"
"""


def _recorder(tmp_path: Path) -> Path:
    script = tmp_path / "recorder.sh"
    script.write_text(RECORDER)
    script.chmod(0o755)
    return script


def _events(tmp_path: Path) -> list[list[str]]:
    f = tmp_path / "events.txt"
    return [line.split("|") for line in f.read_text().splitlines()] if f.exists() else []


def _finish(fleet, outcomes: dict[str, str]) -> None:
    """Claim every pending task and complete each with its outcome, in-process (no worker: fast)."""
    seat = Seat(MachineSpec("alpha", capabilities=list(GENERIC_TYPES)), agents=set())
    claimed = {t.id: t.attempts for t in transitions.claim(fleet, seat, 50)}
    assert set(claimed) == set(outcomes), claimed
    transitions.complete(
        fleet,
        [
            transitions.Completion(tid, claimed[tid], out, {"error": "boom"} if out != "done" else {})
            for tid, out in outcomes.items()
        ],
    )


# ---------------------------------------------------------------- configuration


def test_config_shapes_and_placeholders_after_the_split() -> None:
    cfg = notify.parse_config(
        {
            "command": "notify-send 'fleetq: {id} {state}' '{title}'",
            "on": {"done": None, "failed": ["logger", "-t", "fleetq", "{error}"]},
            "machines": {"mini": {"timeout": 5}},
        },
        "config/notify.yaml",
        "mini",
    )
    assert cfg is not None and cfg.timeout == 5 and set(cfg.on) == {"needs_human", "failed"}
    e = notify.Event(
        id="fix-login",
        state="needs_human",
        attempt=2,
        title='it\'s "quoted" {id}',
        machine="mini",
        by="laptop",
        error="",
    )
    # the title stays one argument whatever its quotes; braces in a value are not templates
    assert cfg.argv(e) == ["notify-send", "fleetq: fix-login needs_human", 'it\'s "quoted" {id}']
    assert e.env()["FLEETQ_EVENT_TITLE"] == 'it\'s "quoted" {id}' and e.env()["FLEETQ_EVENT_FROM"] == "laptop"
    failed = notify.Event(id="x", state="failed", attempt=1, error="exit 2")
    assert cfg.argv(failed) == ["logger", "-t", "fleetq", "exit 2"]
    assert cfg.argv(notify.Event(id="x", state="done", attempt=1)) is None
    assert notify.parse_config(None, "f", "m") is None
    assert notify.parse_config({"timeout": 3}, "f", "m") is None  # nothing to run


@pytest.mark.parametrize(
    "data,message",
    [
        ([1], "expected a mapping"),
        ({"comand": "x"}, "unknown key(s) comand"),
        ({"on": {"started": "x"}}, "on maps needs_human, failed, done"),
        ({"command": "x 'unclosed"}, "cannot split"),
        ({"command": {"a": 1}}, "a string or a list"),
        ({"command": "x", "timeout": 0}, "timeout must be a positive"),
        ({"command": "x", "machines": {"m": "y"}}, "machines.m must be a mapping"),
    ],
)
def test_bad_config_is_one_clear_line(data: object, message: str) -> None:
    with pytest.raises(FleetqError, match=message.replace("(", r"\(").replace(")", r"\)")):
        notify.parse_config(data, "config/notify.yaml", "m")


def test_event_line() -> None:
    e = notify.Event(
        id="fix-login", state="failed", attempt=1, machine="mini", error="exit 1\nmore", at="2026-01-01T12:03:04Z"
    )
    line = e.line()
    assert line.endswith("fix-login failed on mini: exit 1 more") and line[2] == ":" and line[5] == ":"


# ---------------------------------------------------------------- dedupe across processes


def test_notifier_starts_from_now_and_tells_each_event_once(fleets: Fleets, tmp_path: Path) -> None:
    f = fleets.first
    rec = _recorder(tmp_path)
    set_file(f, "config/notify.yaml", f"command: [{rec}, '{{id}}', '{{state}}', '{{title}}']\n")
    add(f, tasks(1, "old", created_by="alpha"))
    _finish(f, {"old000": "done"})
    first = notify.Notifier(f)
    assert first.check(f.snapshot()) == []  # the history before the first run is not told
    add(f, tasks(2, "new", created_by="alpha") + tasks(1, "theirs", created_by="beta"))
    _finish(f, {"new000": "done", "new001": "done", "theirs000": "done"})
    snap = f.snapshot()
    got = first.check(snap)
    assert [(e.id, e.state) for e in got] == [("new000", "done"), ("new001", "done")]
    again = notify.Notifier(f)  # a restart, or `fleetq wait` next to the worker
    assert again.check(snap) == [] and first.check(f.snapshot()) == []
    first.drain(10)
    assert sorted(_events(tmp_path)) == [
        ["new000", "done", "new 0", "alpha", "alpha"],
        ["new001", "done", "new 1", "alpha", "alpha"],
    ]


# ---------------------------------------------------------------- the worker


def test_worker_tells_needs_human_failed_and_done_once(fleets: Fleets, tmp_path: Path) -> None:
    f = fleets.first
    rec = _recorder(tmp_path)
    set_file(f, "config/notify.yaml", f"command: [{rec}, '{{id}}', '{{state}}', '{{title}}']\n")
    w = WorkerProc(f)
    try:
        add(
            f,
            tasks(1, "ok", created_by="alpha")
            + tasks(1, "bad", created_by="alpha", max_attempts=1, payload={"script": "exit 3"})
            + tasks(1, "ask", created_by="alpha", payload={"cwd": str(tmp_path / "no-such-dir")})
            + tasks(1, "other", created_by="beta"),
        )
        wait_for(lambda: len(_events(tmp_path)) >= 3, 30, what="three notifications")
        wait_for(lambda: states_of(f).get("other000") == "done", 30, what="the other machine's task")
        time.sleep(1.0)  # several more passes: nothing is told twice
    finally:
        w.stop()
    w2 = WorkerProc(f, "--once")  # a restarted worker does not tell again
    assert w2.wait(30) == 0
    w2.stop()
    got = sorted((e[0], e[1]) for e in _events(tmp_path))
    assert got == [("ask000", "needs_human"), ("bad000", "failed"), ("ok000", "done")], got
    assert {e[3] for e in _events(tmp_path)} == {"alpha"}  # FLEETQ_EVENT_MACHINE: where it ran


def test_failing_notifiers_never_stop_the_worker(fleets: Fleets, tmp_path: Path) -> None:
    f = fleets.first
    hang = tmp_path / "hang.sh"
    hang.write_text("#!/bin/sh\nsleep 30\n")
    hang.chmod(0o755)
    set_file(
        f,
        "config/notify.yaml",
        f"timeout: 1\non:\n  failed: [sh, -c, 'exit 1']\n  done: [/no/such/notifier]\n  needs_human: [{hang}]\n",
    )
    w = WorkerProc(f)
    try:
        add(
            f,
            tasks(1, "ok", created_by="alpha")
            + tasks(1, "bad", created_by="alpha", max_attempts=1, payload={"script": "exit 3"})
            + tasks(1, "ask", created_by="alpha", payload={"cwd": str(tmp_path / "nowhere")}),
        )
        wait_for(lambda: sorted(states_of(f).values()) == ["done", "failed", "needs_human"], 30, what="first tasks")
        add(f, tasks(3, "more", created_by="alpha"))  # the worker goes on while notifiers fail or hang
        wait_for(
            lambda: [s for i, s in states_of(f).items() if i.startswith("more")] == ["done"] * 3,
            30,
            what="the next tasks to run",
        )
        wait_for(lambda: "timed out after 1s" in w.log, 10, what="the hanging notifier to be killed and logged")
    finally:
        w.stop()
    assert w.proc.returncode == 0
    assert "notifier sh (bad000 failed) did not work: exit 1" in w.log
    assert "/no/such/notifier" in w.log
    assert w.log.count("notifier /no/such/notifier") == 1  # logged once, not for every event


# ---------------------------------------------------------------- commands


def test_notify_test_command(fleets: Fleets, tmp_path: Path, cli) -> None:
    f = fleets.first
    res = cli("--fleet", f.root, "notify", "test")
    assert res.code == 2 and "no notifier for needs_human" in res.err
    rec = _recorder(tmp_path)
    set_file(
        f,
        "config/notify.yaml",
        f"on:\n  failed: [{rec}, '{{id}}', '{{state}}', '{{title}}']\n  done: [sh, -c, 'echo nope >&2; exit 4']\n",
    )
    f.refresh_checkout()
    res = cli("--fleet", f.root, "notify", "test", "failed", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["ok"] is True
    assert _events(tmp_path) == [["notify-test", "failed", 'fleetq notification test "quoted" title', "alpha", "alpha"]]
    res = cli("--fleet", f.root, "notify", "test", "done")
    assert res.code == 1 and "failed: exit 4: nope" in res.out


def test_wait_prints_events_and_notifies(fleets: Fleets, tmp_path: Path, cli) -> None:
    f = fleets.first
    rec = _recorder(tmp_path)
    set_file(f, "config/notify.yaml", f"command: [{rec}, '{{id}}', '{{state}}', '{{title}}']\n")
    notify.Notifier(f).check(f.snapshot())  # this clone's notifier has run before: it tells what is new
    add(f, tasks(2, "wt", created_by="alpha"))
    _finish(f, {"wt000": "done", "wt001": "failed"})
    res = cli("--fleet", f.root, "wait", "wt000", "wt001")
    assert res.code == 1
    lines = res.out.splitlines()
    assert any(line.endswith("wt000 done on alpha") for line in lines), res.out
    assert any(line.endswith("wt001 failed on alpha: boom") for line in lines), res.out
    assert sorted(e[:2] for e in _events(tmp_path)) == [["wt000", "done"], ["wt001", "failed"]]


def test_monitor_watch_prints_events(fleets: Fleets, tmp_path: Path) -> None:
    f = fleets.first
    add(f, tasks(1, "mw", created_by="alpha") + tasks(1, "nm", created_by="beta"))
    env = {**os.environ, "COLUMNS": "100"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleetq", "--fleet", str(f.root), "monitor", "--watch", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        time.sleep(1.5)  # it has drawn the fleet once: what happens from now on is an event
        _finish(f, {"mw000": "done", "nm000": "done"})
        time.sleep(1.5)
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
    assert "mw000 done on alpha" in out and "events:" in out
    assert "nm000 done" not in out  # created by another machine


def test_a_bad_notify_file_is_logged_not_raised(fleets: Fleets, caplog: pytest.LogCaptureFixture) -> None:
    f = fleets.first
    set_file(f, "config/notify.yaml", "on: {started: x}\n")
    n = notify.Notifier(f)
    assert n.check(f.snapshot()) == []
    assert "config/notify.yaml: on maps needs_human, failed, done to a command" in caplog.text
