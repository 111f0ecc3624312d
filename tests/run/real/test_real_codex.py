"""fleetq's ``codex`` agent against the real Codex CLI (the version tests/clis pins), pointed at a fake
OpenAI Responses API on 127.0.0.1 (tests/support/providers/openai_responses.py).

Every run gets its own HOME and CODEX_HOME (config.toml: a model provider at the fake, one retry, so
errors come back in about a second). What codex prints in each case is in the module docstring of
openai_responses.py and in the findings this file was written from; the assertions are what fleetq
should make of it.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import pytest

from fleetq.core.task import fmt_time
from fleetq.handlerapi import HandlerResult
from fleetq.run.agents.registry import load_agents
from fleetq.run.agents.runners import run_agent
from support import realclis
from support.providers import ProviderFake
from support.providers import openai_responses as oa

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def codex() -> Path:
    return realclis.require("codex")


@pytest.fixture
def fake():
    # only this API's routes: another module's catch-all (anthropic's "^/(api|v1)/") would answer
    # /v1/responses first with an empty object
    with ProviderFake(oa.ROUTES) as f:
        yield f


def codex_env(fake: ProviderFake, tmp_path: Path, codex: Path, **extra: str | None) -> dict[str, str]:
    env = oa.cli_env(fake, tmp_path / "codex-home", **extra)
    env["PATH"] = f"{codex.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def go(fake: ProviderFake, tmp_path: Path, codex: Path, prompt: str = "say pong", *, timeout: float = 60,
       **extra: str | None) -> HandlerResult:  # fmt: skip
    proj = tmp_path / "proj"
    proj.mkdir(exist_ok=True)
    return run_agent(
        "codex",
        prompt,
        agents=load_agents(None),
        cwd=proj,
        model=None,
        env=codex_env(fake, tmp_path, codex, **extra),
        timeout=timeout,
        log_path=tmp_path / "run.log",
    )


def prompts_seen(fake: ProviderFake) -> list[str]:
    """The text of the last user message of each /v1/responses request (the prompt codex sent)."""
    out = []
    for r in fake.seen("/responses"):
        if r.method != "POST" or not isinstance(r.body, dict):
            continue
        users = [i for i in r.body.get("input") or [] if isinstance(i, dict) and i.get("role") == "user"]
        if users:
            out.append("".join(c.get("text", "") for c in users[-1].get("content") or []))
    return out


def one_line(text: str | None) -> bool:
    return bool(text) and "\n" not in (text or "").strip()


# ---------------------------------------------------------------- success


def test_success_reply_session_model_and_usage(fake: ProviderFake, tmp_path: Path, codex: Path) -> None:
    fake.reply = "pong from the fake"
    res = go(fake, tmp_path, codex)
    assert res.outcome == "done" and res.exit_code == 0, res
    x = res.extra
    assert x["reply"] == "pong from the fake"
    [req] = fake.seen("/responses")
    assert req.headers["authorization"] == f"Bearer {fake.key}"
    # codex's session id: "session id: <uuid>" in its stderr header, "thread_id" in --json's thread.started,
    # and the session-id header of its requests
    assert x.get("session_id") == req.headers["session-id"], x
    assert x.get("model") == oa.MODEL, x  # "model: gpt-5.5" in the header (the config's model: none was asked for)
    usage = oa.DEFAULT_USAGE
    assert x.get("input_tokens") == usage["input_tokens"], x
    assert x.get("output_tokens") == usage["output_tokens"], x
    assert x.get("cache_read_tokens") == usage["input_tokens_details"]["cached_tokens"], x


def test_prompt_beginning_with_a_dash_reaches_the_provider(fake: ProviderFake, tmp_path: Path, codex: Path) -> None:
    prompt = "-v --help: list every flag you know"
    res = go(fake, tmp_path, codex, prompt)
    assert res.outcome == "done", res
    assert prompts_seen(fake) == [prompt]


# ---------------------------------------------------------------- failures that are not limits


def test_failed_run_whose_prompt_talks_of_rate_limits_is_not_a_usage_limit(
    fake: ProviderFake, tmp_path: Path, codex: Path
) -> None:
    # codex echoes the prompt on stderr ("user\n<prompt>"): fleetq must not read it as the error
    fake.mode = "bad_request"
    prompt = "Handle the API error 'rate limit exceeded' (HTTP 429): you've hit your usage limit, try again in 5m."
    res = go(fake, tmp_path, codex, prompt)
    assert res.outcome == "failed", res
    assert not res.extra.get("usage_limit"), res
    assert "usage_limit_reset" not in res.extra, res
    assert "Invalid value for 'input'" in (res.error or ""), res


def test_unreachable_provider_fails_instead_of_waiting_for_the_network(
    fake: ProviderFake, tmp_path: Path, codex: Path
) -> None:
    # codex 0.171 retries a refused connection without end ("Reconnecting... waiting for network", every
    # 5, 10, 20, 40, 60, 60... s) unless features.unbounded_connection_retries is off
    with ProviderFake(oa.ROUTES) as gone:
        url = gone.url
    config = oa.config_toml(url)
    started = time.monotonic()
    res = go(fake, tmp_path, codex, timeout=15, config=config)
    assert res.outcome == "failed", res
    assert not res.extra.get("timed_out"), f"codex kept reconnecting until fleetq's timeout: {res.error}"
    assert time.monotonic() - started < 15
    assert "Connection failed" in (res.error or ""), res


# ---------------------------------------------------------------- usage limits


def test_http_429_is_a_usage_limit(fake: ProviderFake, tmp_path: Path, codex: Path) -> None:
    fake.mode = "rate_limit"
    res = go(fake, tmp_path, codex)
    # codex: "ERROR: exceeded retry limit, last status: 429 Too Many Requests, request id: req_..."
    assert res.outcome == "failed", res
    assert res.extra.get("usage_limit") is True, res
    assert "429" in (res.error or ""), res


@pytest.mark.parametrize("ahead", [dt.timedelta(hours=2), dt.timedelta(days=3)], ids=["today", "in-3-days"])
def test_usage_limit_with_its_reset_time(fake: ProviderFake, tmp_path: Path, codex: Path, ahead: dt.timedelta) -> None:
    # codex: "You’ve hit your usage limit. Upgrade to Pro (...) or try again at 2:25 AM." (later days:
    # "... try again at Dec 5th, 2026 2:25 AM."), in codex's local time, to the minute
    resets_at = (int(time.time() + ahead.total_seconds()) // 60) * 60
    fake.mode, fake.state["resets_at"] = "usage_limit", resets_at
    res = go(fake, tmp_path, codex)
    assert res.outcome == "failed", res
    assert res.extra.get("usage_limit") is True, res
    assert res.extra.get("usage_limit_reset") == fmt_time(dt.datetime.fromtimestamp(resets_at, dt.timezone.utc)), res
    assert len(fake.seen("/responses")) == 1  # codex does not retry it


# ---------------------------------------------------------------- a person must act


def test_insufficient_quota_needs_a_human_at_once(fake: ProviderFake, tmp_path: Path, codex: Path) -> None:
    fake.mode = "insufficient_quota"
    res = go(fake, tmp_path, codex)
    # codex: "ERROR: Quota exceeded. Check your plan and billing details."
    assert res.outcome == "needs_human", res
    assert one_line(res.error) and "billing" in str(res.error), res.error
    assert not res.extra.get("usage_limit"), res
    assert len(fake.seen("/responses")) == 1


def test_rejected_key_needs_a_human(fake: ProviderFake, tmp_path: Path, codex: Path) -> None:
    res = go(fake, tmp_path, codex, OPENAI_API_KEY="wrong-key")
    # codex: "ERROR: unexpected status 401 Unauthorized: Incorrect API key provided: ..., url: ..., request id: ..."
    assert res.outcome == "needs_human", res
    assert one_line(res.error), res.error
    assert "OPENAI_API_KEY" in str(res.error) or "codex login" in str(res.error), res.error
    assert not res.extra.get("usage_limit"), res


def test_missing_key_needs_a_human(fake: ProviderFake, tmp_path: Path, codex: Path) -> None:
    res = go(fake, tmp_path, codex, OPENAI_API_KEY=None)
    # codex: "ERROR: Missing environment variable: `OPENAI_API_KEY`." (no request is made)
    assert res.outcome == "needs_human", res
    assert one_line(res.error) and "OPENAI_API_KEY" in str(res.error), res.error
    assert fake.seen("/responses") == []
