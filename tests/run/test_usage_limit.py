"""Usage limits: the reset time read from the agents' real messages, the task waits for it (no attempt
spent), no worker claims it before, and `fleetq queue` shows the wait."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from fleetq.core import transitions
from fleetq.core.config import GENERIC_TYPES, MachineSpec
from fleetq.core.matching import Seat
from fleetq.core.task import fmt_time, now_utc, parse_time
from fleetq.errors import FleetqError
from fleetq.run.agents.limits import limit_wait, usage_limit_reset
from fleetq.run.agents.registry import load_agents
from fleetq.run.agents.runners import run_agent
from support.fleets import Fleets
from support.workers import WorkerProc, add, states_of, tasks, wait_for

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=UTC)  # a Thursday, noon UTC


def _at(h: int, m: int = 0, day: int = 1) -> dt.datetime:
    return dt.datetime(2026, 1, day, h, m, tzinfo=UTC)


@pytest.mark.parametrize(
    "text,expected",
    [
        # claude
        ("Claude AI usage limit reached|1767272400", _at(13)),
        ("5-hour limit reached ∙ resets 3pm", _at(15)),
        ("You've hit your session limit · resets 3:30pm (Europe/Berlin)", _at(14, 30)),  # CET = UTC+1
        ("Claude usage limit reached. Your limit will reset at 1pm (Etc/GMT+5).", _at(18)),  # Etc/GMT+5 = UTC-5
        (
            "You’ve hit your limit for Claude messages. Limits will reset at 9:30 AM.",
            _at(9, 30, day=2),
        ),  # passed: tomorrow
        # codex
        (
            "■ You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) or try again in "
            "2 hours 5 minutes.",
            _at(14, 5),
        ),
        ("stream error: rate limited. Try again in 37s.", NOW + dt.timedelta(seconds=37)),
        ("try again in 1m30s", NOW + dt.timedelta(seconds=90)),
        ('{"error":{"type":"usage_limit_reached","resets_at":1767276000,"resets_in_seconds":7200}}', _at(14)),
        # gemini
        ("Quota exceeded (RESOURCE_EXHAUSTED). Please retry in 37.5s.", NOW + dt.timedelta(seconds=37)),
        ('{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "20s"}', NOW + dt.timedelta(seconds=20)),
        # http agents (the 429's Retry-After header, as run_agent puts it into the error)
        (
            "HTTP 429 from http://x/v1/chat/completions: Rate limit reached (Retry-After: 20)",
            NOW + dt.timedelta(seconds=20),
        ),
        ("Rate limit reached for model llama. Please try again in 7.66s.", NOW + dt.timedelta(seconds=7)),
    ],
)
def test_reset_time_from_the_real_message_shapes(text: str, expected: dt.datetime) -> None:
    assert usage_limit_reset(text, now=NOW, local=UTC) == expected


def test_reset_time_edges() -> None:
    local = dt.timezone(dt.timedelta(hours=-8))
    # no zone in the message: this machine's zone (here UTC-8: 3pm there is 23:00 UTC)
    assert usage_limit_reset("resets 3pm", now=NOW, local=local) == _at(23)
    # a time printed just before it passed is that moment (clamped to now), not tomorrow's
    assert usage_limit_reset("resets 11:58am", now=NOW, local=UTC) == NOW
    # absurd waits are clamped to 7 days; a dated reset far away too
    week = NOW + dt.timedelta(days=7)
    assert usage_limit_reset("try again in 40 days", now=NOW, local=UTC) == week
    assert usage_limit_reset("try again at Jul 5th, 2026 8:19 PM.", now=NOW, local=UTC) == week
    assert usage_limit_reset("try again at Jan 2, 2026 8:19 PM.", now=NOW, local=UTC) == _at(20, 19, day=2)
    # an epoch in the past (clock skew, an old message) means now
    assert usage_limit_reset("usage limit reached|1700000000", now=NOW) == NOW
    # nothing that says when, or nonsense times
    assert usage_limit_reset("usage limit reached, try later", now=NOW) is None
    assert usage_limit_reset("resets 25:99", now=NOW) is None


def test_agent_reset_patterns_are_data(tmp_path: Path) -> None:
    fleet = tmp_path / "f"
    (fleet / "config").mkdir(parents=True)
    (fleet / "config" / "agents.yaml").write_text(
        "agents:\n  mine:\n    argv: [mine, '{prompt}']\n    usage_limit_patterns: [quota gone]\n"
        "    usage_limit_reset: ['back at (?P<epoch>\\d+)', 'cool down (?P<seconds>\\d+)']\n"
    )
    spec = load_agents(fleet)["mine"]
    assert usage_limit_reset(
        "quota gone; cool down 60", now=NOW, patterns=spec["usage_limit_reset"]
    ) == NOW + dt.timedelta(seconds=60)
    (fleet / "config" / "agents.yaml").write_text(
        "agents:\n  mine:\n    argv: [mine]\n    usage_limit_reset: ['x(\\d+)']\n"
    )
    with pytest.raises(FleetqError, match="needs exactly one named group"):
        load_agents(fleet)


def test_limit_wait_backoff_grows_and_gives_up() -> None:
    reset = NOW + dt.timedelta(minutes=5)
    assert limit_wait(reset, {}, now=NOW, backoff=900, max_waits=3) == (reset, 1)
    # no reset in the output: the backoff, doubled for each limit in a row
    assert limit_wait(None, {}, now=NOW, backoff=900, max_waits=3) == (NOW + dt.timedelta(seconds=900), 1)
    prev = {"usage_limit": True, "limit_waits": 2}
    assert limit_wait(None, prev, now=NOW, backoff=900, max_waits=3) == (NOW + dt.timedelta(seconds=3600), 3)
    assert limit_wait(None, {"usage_limit": True, "limit_waits": 3}, now=NOW, backoff=900, max_waits=3) is None
    # an ordinary failure in between starts the count again
    assert limit_wait(None, {"limit_waits": 3}, now=NOW, backoff=900, max_waits=3)[1] == 1


@pytest.mark.parametrize("agent", ["claude", "gemini", "codex"])
def test_fake_agents_say_when_the_limit_resets(tmp_path: Path, env: dict[str, str], proj: Path, agent: str) -> None:
    env.update(FAKE_AGENT_LIMIT="1", FAKE_AGENT_LIMIT_RESET="120")
    before = now_utc()
    res = run_agent(
        agent, "hi", agents=load_agents(None), cwd=proj, model=None, env=env, timeout=30, log_path=tmp_path / "log"
    )
    assert res.outcome == "failed" and res.extra["usage_limit"] is True, res
    reset = parse_time(res.extra["usage_limit_reset"])
    assert before + dt.timedelta(seconds=118) <= reset <= now_utc() + dt.timedelta(seconds=121)


def test_a_limited_result_waits_whatever_its_attempts(fleets: Fleets) -> None:
    f = fleets.first
    add(f, tasks(1, "lim", type="agent_run", agent="claude", max_attempts=1, payload={"prompt": "x"}))
    seat = Seat(MachineSpec("alpha", capabilities=list(GENERIC_TYPES)), agents={"claude"})
    [t] = transitions.claim(f, seat, 1)
    until = fmt_time(now_utc() + dt.timedelta(hours=1))
    result = {
        "outcome": "failed",
        "error": "usage limit reached: claude exited with code 1",
        "usage_limit": True,
        "agent": "claude",
        "usage_limit_reset": until,
        "wait_until": until,
        "limit_waits": 1,
    }
    [c] = transitions.complete(f, [transitions.Completion(t.id, 1, "failed", result, retry_after=30)])
    assert c.status == "waiting"
    got = f.snapshot().get("lim000")
    assert got.state == "pending" and got.data["not_before"] == until
    assert got.attempts == 1 and got.max_attempts == 2  # the attempt is given back; its number is never reused
    assert got.result["usage_limit"] is True and got.result["error"].startswith("usage limit")
    assert f"usage limit (agent claude) until {until}" in got.data["notes"][-1]["text"]
    assert transitions.claim(f, seat, 1) == []  # matching waits for not_before


def test_queue_shows_the_wait(fleets: Fleets, cli) -> None:
    f = fleets.first
    later = fmt_time(now_utc() + dt.timedelta(hours=1, minutes=5))
    add(f, tasks(1, "w", not_before=later) + tasks(1, "n"))
    res = cli("--fleet", f.root, "queue")
    assert res.code == 0, res.err
    row = next(line for line in res.out.splitlines() if line.startswith("w000"))
    assert "pending (waits 1h)" in row
    assert "pending (waits" not in next(line for line in res.out.splitlines() if line.startswith("n000"))
    res = cli("--fleet", f.root, "queue", "--json")
    assert {t["id"]: t.get("not_before") for t in json.loads(res.out)["tasks"]}["w000"] == later


def test_worker_waits_for_the_reset_then_runs_it(fleets: Fleets, tmp_path: Path) -> None:
    """A fake claude hits its limit once with a reset 4 s ahead: pending with not_before, not claimed
    before it (by this worker or another), claimed and done after, with no attempt spent."""
    from support.agents import fake_env

    w1, w2 = fleets.clone("w1"), fleets.clone("w2")
    proj = tmp_path / "proj"
    proj.mkdir()
    env = fake_env(
        tmp_path, FAKE_AGENT_LIMIT="1", FAKE_AGENT_LIMIT_RESET="4", FAKE_AGENT_LIMIT_ONCE=str(tmp_path / "limited-once")
    )
    env["HOME"] = os.environ["HOME"]
    add(
        fleets.first,
        [
            {
                **tasks(1, "cl")[0],
                "type": "agent_run",
                "agent": "claude",
                "max_attempts": 1,
                "payload": {"prompt": "fix it", "cwd": str(proj)},
            }
        ],
    )
    workers = [WorkerProc(w1, env=env)]
    try:

        def waiting():
            t = fleets.first.snapshot().get("cl000")
            return t if t.state == "pending" and t.data.get("not_before") else None

        t = wait_for(waiting, 30, 0.1, what="the limited task back in pending with not_before")
        workers.append(WorkerProc(w2, env=env))  # a second worker must wait too
        nb = parse_time(t.data["not_before"])
        assert t.result["usage_limit"] is True and t.attempts == 1 and t.max_attempts == 2
        assert abs((nb - parse_time(t.result["finished_at"])).total_seconds() - 4) <= 2
        while now_utc() < nb - dt.timedelta(seconds=0.5):
            assert states_of(fleets.first)["cl000"] == "pending", "claimed before its not_before"
        wait_for(lambda: states_of(fleets.first)["cl000"] == "done", 30, what="the task to run after the reset")
    finally:
        for w in workers:
            w.stop()
    done = fleets.first.snapshot().get("cl000")
    assert parse_time(done.claim["at"]) >= nb
    assert done.attempts == 2 and done.result["attempt"] == 2 and not done.result.get("usage_limit")
    assert "usage limit (agent claude) until" in workers[0].log


def test_worker_holds_back_a_limited_agent_until_its_reset(fleets: Fleets) -> None:
    """Other tasks for the same agent would hit the same limit: this worker leaves them until the reset."""
    from fleetq.core.task import Task
    from fleetq.handlerapi import HandlerResult
    from fleetq.worker.daemon import Worker

    w = Worker(fleets.first, once=True, watch=False)
    w.installed = {"claude", "gemini"}
    task = Task(data={"id": "t", "result": {}}, state="claimed", path="queue/claimed/t.yaml")
    soon = fmt_time(now_utc() + dt.timedelta(seconds=2))
    res = HandlerResult(
        "failed", error="usage limit reached", extra={"usage_limit": True, "agent": "claude", "usage_limit_reset": soon}
    )
    w._limit_wait(task, res)
    assert res.extra["wait_until"] == soon and res.extra["limit_waits"] == 1
    assert w._usable_agents() == {"gemini"}
    wait_for(lambda: w._usable_agents() == {"claude", "gemini"}, 5, 0.1, what="the limit to lift")


def test_a_limit_is_read_from_the_agents_error_never_from_its_prompt_or_reply() -> None:
    """codex (human mode) echoes the prompt on stderr; an agent's reply may quote any error text."""
    from fleetq.handlerapi import HandlerResult
    from fleetq.run.agents.diagnose import diagnose
    from fleetq.run.agents.replies import Reply

    spec = load_agents(None)["codex"]
    prompt = "Fix the handler for 'You've hit your usage limit'\nand the 'rate limit' retries (HTTP 429)"
    echo = f"OpenAI Codex\n--------\nuser\n{prompt}\nERROR: stream disconnected before completion\n"

    def judged(reply: Reply, stderr: str = echo) -> HandlerResult:
        res = HandlerResult("failed", exit_code=1, stderr_tail=stderr, stdout_tail=reply.text, error="codex failed")
        diagnose(res, spec, reply, prompt, {})
        return res

    assert not judged(Reply(structured=True)).extra.get("usage_limit")
    assert not judged(Reply("I hit your usage limit handling, see 429", structured=True)).extra.get("usage_limit")
    limited = judged(Reply(error="You’ve hit your usage limit. Try again in 2 hours.", structured=True))
    assert limited.extra["usage_limit"] is True and limited.error.startswith("usage limit reached")
    assert judged(Reply(structured=True, status=429)).extra["usage_limit"] is True
    billing = judged(Reply(error="Quota exceeded. Check your plan and billing details.", structured=True, status=429))
    assert billing.outcome == "needs_human" and "billing" in billing.error and not billing.extra.get("usage_limit")
    timed_out = HandlerResult("failed", error="timed out after 5s", extra={"timed_out": True}, stderr_tail="429")
    diagnose(timed_out, spec, Reply(status=429), prompt, {})
    assert timed_out.outcome == "failed" and not timed_out.extra.get("usage_limit")
