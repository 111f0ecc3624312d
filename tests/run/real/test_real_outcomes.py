"""What a worker makes of a real agent CLI's failure, end to end: `fleetq work --once` claims an
agent_run, runs the real binary against the provider fake, and the task lands where a user expects:
back in pending with `not_before` at the reset for each limit shape the CLIs print (no attempt
spent), needs_human at once with one line saying what to do for a setup or billing problem."""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from fleetq.core.task import parse_time
from support.fleets import Fleets, run_fleetq
from support.providers import ProviderFake
from support.providers import anthropic as an
from support.realagents import ROUTES, agent_env
from support.workers import add, tasks

pytestmark = pytest.mark.timeout(180)
UTC = dt.timezone.utc


claude_env, gemini_env, codex_env = (partial(agent_env, cli) for cli in ("claude", "gemini", "codex"))


def claude_plan_env(fake: ProviderFake, tmp: Path) -> dict[str, str]:
    """Logged in to a Claude.ai plan: only then does claude print its "You've hit your … limit"."""
    return an.oauth_env(fake, claude_env(fake, tmp), TZ="Europe/Berlin")


def _work_once(fleets: Fleets, tmp: Path, agent: str, env: dict[str, str]) -> Any:
    """One agent_run task for ``agent``, one `fleetq work --once`; the task as it is after."""
    proj = tmp / "proj"
    proj.mkdir(exist_ok=True)
    task = {**tasks(1, "a")[0], "type": "agent_run", "agent": agent, "max_attempts": 3}
    task["payload"] = {"prompt": "say pong", "cwd": str(proj)}
    add(fleets.first, [task])
    proc = run_fleetq("--fleet", str(fleets.first.root), "work", "--once", env=env, timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return fleets.first.snapshot().get("a000")


def _whole_minute(ahead: float) -> int:
    return int((time.time() + ahead) // 60 * 60)  # the CLIs print resets to the minute


def _next_pacific_midnight() -> dt.datetime:
    la = zoneinfo.ZoneInfo("America/Los_Angeles")
    day = dt.datetime.now(la).date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(0), la).astimezone(UTC)


Reset = Callable[[ProviderFake], "dt.datetime | float"]  # an instant, or seconds after the run ended

LIMITS: dict[str, tuple[str, Callable[..., dict[str, str]], str, dict[str, Any], Reset]] = {
    # claude 2.1.332 on a plan: "You've hit your 5-hour limit · resets 4am (Europe/Berlin)"
    "claude-5-hour": ("claude", claude_plan_env, "usage_limit", {"claim": "five_hour"},
                      lambda f: dt.datetime.fromtimestamp(f.state["reset"], UTC)),
    # claude with an API key: "API Error: Request rejected (429)", api_error_status 429, no reset said
    "claude-429": ("claude", claude_env, "rate_limit", {}, lambda f: 900),
    # gemini 0.61 per-minute quota: code 429, "Please retry in 37.5s"
    "gemini-per-minute": ("gemini", gemini_env, "rate_limit", {}, lambda f: 37.5),
    # gemini daily quota: "You have exhausted your daily quota on this model." -> midnight Pacific
    "gemini-daily": ("gemini", gemini_env, "daily_quota", {}, lambda f: _next_pacific_midnight()),
    # codex 0.171: "You’ve hit your usage limit. ... try again at 2:25 AM."
    "codex-usage-limit": ("codex", codex_env, "usage_limit", {},
                          lambda f: dt.datetime.fromtimestamp(f.state["resets_at"], UTC)),
    # codex: "exceeded retry limit, last status: 429 Too Many Requests"
    "codex-429": ("codex", codex_env, "rate_limit", {}, lambda f: 900),
}  # fmt: skip


@pytest.mark.parametrize("case", list(LIMITS))
def test_each_limit_shape_sends_the_task_back_to_pending_until_its_reset(
    fleets: Fleets, tmp_path: Path, case: str
) -> None:
    agent, env_for, mode, state, reset = LIMITS[case]
    with ProviderFake(ROUTES[agent]) as fake:
        fake.mode = mode
        fake.state.update(state, reset=_whole_minute(7200), resets_at=_whole_minute(7200))
        t = _work_once(fleets, tmp_path, agent, env_for(fake, tmp_path))
    r = t.result
    assert t.state == "pending" and r.get("usage_limit") is True and r["limit_waits"] == 1, r
    nb = parse_time(t.data["not_before"])
    want = reset(fake)
    if isinstance(want, dt.datetime):
        assert nb == want.replace(microsecond=0), (nb, want, r["error"])
    else:
        waited = (nb - parse_time(r["finished_at"])).total_seconds()
        assert want - 3 <= waited <= want + 3, (waited, r["error"])
    assert t.data["max_attempts"] == 4 and t.attempts == 1  # the limit spent no attempt


NEEDS_HUMAN: dict[str, tuple[str, Callable[..., dict[str, str]], str, dict[str, Any], str]] = {
    "claude-no-credit": ("claude", claude_env, "credit", {}, "credit balance is too low"),
    "claude-bad-key": ("claude", claude_env, "ok", {"ANTHROPIC_API_KEY": "revoked"}, "claude /login"),
    "claude-root": ("claude", claude_env, "ok", {"IS_SANDBOX": ""}, "IS_SANDBOX=1"),
    "gemini-no-key": ("gemini", gemini_env, "ok", {"key": None}, "GEMINI_API_KEY"),
    "codex-no-quota": ("codex", codex_env, "insufficient_quota", {}, "billing"),
    "codex-bad-key": ("codex", codex_env, "ok", {"OPENAI_API_KEY": "revoked"}, "codex login"),
}


@pytest.mark.parametrize("case", list(NEEDS_HUMAN))
def test_a_setup_or_billing_problem_needs_a_person_at_once(fleets: Fleets, tmp_path: Path, case: str) -> None:
    agent, env_for, mode, extra, says = NEEDS_HUMAN[case]
    with ProviderFake(ROUTES[agent]) as fake:
        fake.mode = mode
        t = _work_once(fleets, tmp_path, agent, env_for(fake, tmp_path, **extra))
        main_requests = len([r for r in fake.requests if r.method == "POST"])
    assert t.state == "needs_human", t.result
    error = t.result["error"]
    assert says in error and "\n" not in error, error
    assert t.attempts == 1 and not t.result.get("usage_limit")
    assert main_requests <= 6, "retried what no retry fixes"
