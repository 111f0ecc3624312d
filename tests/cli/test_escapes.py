"""Terminal control sequences in what anyone can push (titles, notes, results) are never printed raw (issue 14, 9)."""

from __future__ import annotations

import datetime as dt
import json

from fleetq.cli import output
from fleetq.core import transitions
from fleetq.core.config import MachineSpec
from fleetq.core.matching import Seat
from fleetq.core.task import fmt_time, now_utc
from support.fleets import Fleets
from support.workers import tasks

TITLE = "\x1b]0;pwned\x07deploy \x1b[2Jnow\x9b1;1H\x1b[31m!"
CONTROLS = ("\x1b", "\x07", "\x9b", "\r")


def test_queue_show_failures_print_no_escape_bytes(fleets: Fleets, cli) -> None:
    f = fleets.first
    later = fmt_time(now_utc() + dt.timedelta(hours=1))  # not claimable: the claim below takes bad000
    transitions.create(f, tasks(1, "esc", title=TITLE, not_before=later))
    transitions.create(f, tasks(1, "bad", title="fails"))
    [t] = transitions.claim(f, Seat(MachineSpec("alpha", capabilities=["run_script"])), 1)
    error = "boom\x1b]0;owned\x07\r\x1b[1Aover\x1b[Kwritten"
    transitions.complete(f, [transitions.Completion(t.id, t.attempts, "failed", {"error": error})])
    for args in (("queue",), ("show", "esc000"), ("failures",), ("show", t.id)):
        res = cli("--fleet", f.root, *args)
        assert res.code == 0, res.err
        assert not any(c in res.out + res.err for c in CONTROLS), (args, res.out)
    assert "deploy now!" in cli("--fleet", f.root, "show", "esc000").out
    assert "deploy now!" in cli("--fleet", f.root, "queue").out
    assert "boomoverwritten" in cli("--fleet", f.root, "show", t.id).out
    # JSON stays exact: the title as written, its controls escaped by the encoder
    shown = json.loads(cli("--fleet", f.root, "show", "esc000", "--json").out)
    assert shown["title"] == TITLE


def test_clean_keeps_text_newlines_and_tabs() -> None:
    assert output.clean("a\tb\nc é 日本") == "a\tb\nc é 日本"
    assert output.clean("x\x1b]8;;http://e\x1b\\link\x1b]8;;\x1b\\ \x1bP1|dcs\x1b\\y\x00\x7f") == "xlink y"
    assert output.clean("unended \x1b]0;title\nnext line") == "unended \nnext line"
