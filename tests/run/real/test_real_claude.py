"""The real Claude Code CLI (pinned in tests/clis/) run through fleetq's agent code, against the fake
Anthropic API (support.providers.anthropic) on 127.0.0.1.

These pin what fleetq SHOULD make of what the real ``claude -p --output-format json`` prints: the
reply and usage, a prompt that looks like an option, and each way it fails (auth, no credit, root
without IS_SANDBOX=1, rate and subscription limits); the isolated edit is in test_real_isolated_edits.py.
We run as root, so every run but the root one sets IS_SANDBOX=1 (without it the CLI refuses
--dangerously-skip-permissions). Retries are off (CLAUDE_CODE_MAX_RETRIES=0), so each run takes
about half a second.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import time
from pathlib import Path

import pytest

from fleetq.core.task import fmt_time
from fleetq.run.agents.registry import load_agents
from fleetq.run.agents.runners import run_agent
from support import realclis
from support.providers import ProviderFake
from support.providers.anthropic import MAIN_USAGE, SIDE_USAGE, cli_env, main_calls, oauth_env, user_texts

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def claude() -> Path:
    return realclis.require("claude")


@pytest.fixture
def fake():
    with ProviderFake() as f:
        f.reply = "pong from the fake"
        yield f


@pytest.fixture
def env(fake: ProviderFake, claude: Path, tmp_path: Path) -> dict[str, str]:
    return cli_env(
        fake,
        tmp_path / "home",
        PATH=os.pathsep.join([str(claude.parent), os.environ.get("PATH", os.defpath)]),
        IS_SANDBOX="1",
        FLEETQ_TASK_ID="t1",
        FLEETQ_MACHINE="testbox",
        FLEETQ_ATTEMPT="1",
    )


def go(prompt: str, env: dict[str, str], cwd: Path, tmp_path: Path, model: str | None = None):
    return run_agent(
        "claude",
        prompt,
        agents=load_agents(None),
        cwd=cwd,
        model=model,
        env=env,
        timeout=60,
        log_path=tmp_path / "run.log",
    )


def one_line(text: str | None) -> bool:
    return bool(text) and "\n" not in text.strip() and len(text) < 300


# ---------------------------------------------------------------- success


def test_reply_model_and_usage(fake: ProviderFake, env: dict[str, str], proj: Path, tmp_path: Path) -> None:
    res = go("say pong", env, proj, tmp_path)
    assert res.outcome == "done" and res.exit_code == 0, res
    x = res.extra
    [call] = main_calls(fake)
    assert user_texts(call.body)[-1] == "say pong"
    assert x["reply"] == fake.reply and x["agent"] == "claude"
    assert x["model"] == call.body["model"]  # the CLI's default main model (claude-opus-5-5 in 2.1.332)
    assert x["session_id"] and isinstance(x["cost_usd"], float) and x["cost_usd"] > 0
    u = MAIN_USAGE
    assert x["input_tokens"] == u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
    assert x["cache_read_tokens"] == u["cache_read_input_tokens"]
    assert x["cache_creation_tokens"] == u["cache_creation_input_tokens"]
    assert x["output_tokens"] == u["output_tokens"]


def test_main_model_and_usage_leave_the_haiku_subagent_out(
    fake: ProviderFake, env: dict[str, str], proj: Path, tmp_path: Path
) -> None:
    """Two models in modelUsage (the main one and a Haiku subagent): model and tokens are the main
    conversation's (its two answers), the cost is the whole run's."""
    fake.mode = "subagent"
    res = go("ask a helper", env, proj, tmp_path, model="claude-sonnet-4-5")
    assert res.outcome == "done", res
    x = res.extra
    assert x["reply"] == fake.reply
    assert {r.body["model"] for r in fake.seen("/v1/messages")} == {"claude-sonnet-4-5", "claude-haiku-5-5"}
    assert x["model"] == "claude-sonnet-4-5"
    assert len(main_calls(fake)) == 2
    u = {k: 2 * v for k, v in MAIN_USAGE.items()}
    assert x["input_tokens"] == u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
    assert (x["cache_read_tokens"], x["cache_creation_tokens"]) == (
        u["cache_read_input_tokens"],
        u["cache_creation_input_tokens"],
    )
    assert x["output_tokens"] == u["output_tokens"]  # not + SIDE_USAGE's
    assert SIDE_USAGE["output_tokens"] != 0 and x["num_turns"] == 2


@pytest.mark.parametrize("prompt", ["--help me", "-v explain", "-x do it"])
def test_prompt_that_looks_like_an_option_reaches_the_model(
    prompt: str, fake: ProviderFake, env: dict[str, str], proj: Path, tmp_path: Path
) -> None:
    res = go(prompt, env, proj, tmp_path)
    assert res.outcome == "done", res
    assert res.extra["reply"] == fake.reply  # not claude's --version / --help output
    assert [user_texts(r.body)[-1] for r in main_calls(fake)] == [prompt]


# ---------------------------------------------------------------- failures a person must fix


def test_bad_api_key_needs_a_human(fake: ProviderFake, env: dict[str, str], proj: Path, tmp_path: Path) -> None:
    fake.mode = "auth"
    res = go("say pong", env, proj, tmp_path)
    # claude exits 1 with {"is_error": true, "api_error_status": 401,
    #                      "result": "Invalid API key · Fix external API key"}
    assert res.outcome == "needs_human", res
    assert one_line(res.error) and ("ANTHROPIC_API_KEY" in res.error or "/login" in res.error), res.error
    assert not res.extra.get("usage_limit")


def test_not_logged_in_needs_a_human(fake: ProviderFake, env: dict[str, str], proj: Path, tmp_path: Path) -> None:
    del env["ANTHROPIC_API_KEY"]
    res = go("say pong", env, proj, tmp_path)
    # claude exits 1 with {"is_error": true, "api_error_status": null, "result": "Not logged in · Please run /login"}
    assert fake.requests == []
    assert res.outcome == "needs_human", res
    assert one_line(res.error) and ("ANTHROPIC_API_KEY" in res.error or "/login" in res.error), res.error


def test_no_credit_needs_a_human_at_once(fake: ProviderFake, env: dict[str, str], proj: Path, tmp_path: Path) -> None:
    fake.mode = "credit"
    res = go("say pong", env, proj, tmp_path)
    # claude exits 1 with {"is_error": true, "api_error_status": 400, "result": "Credit balance is too low"}
    assert res.outcome == "needs_human", res
    assert one_line(res.error) and "credit" in res.error.lower(), res.error
    assert not res.extra.get("usage_limit")  # waiting does not bring credit back


def test_root_without_is_sandbox_needs_a_human(
    fake: ProviderFake, env: dict[str, str], proj: Path, tmp_path: Path
) -> None:
    if os.getuid() != 0:
        pytest.skip("the CLI refuses --dangerously-skip-permissions only for root")
    del env["IS_SANDBOX"]
    res = go("say pong", env, proj, tmp_path)
    # claude exits 1, stdout empty, stderr:
    # "--dangerously-skip-permissions cannot be used with root/sudo privileges for security reasons"
    assert fake.requests == []
    assert res.outcome == "needs_human", res
    assert one_line(res.error) and "IS_SANDBOX=1" in res.error, res.error


# ---------------------------------------------------------------- limits: the task waits


def test_rate_limit_is_a_usage_limit(fake: ProviderFake, env: dict[str, str], proj: Path, tmp_path: Path) -> None:
    fake.mode = "rate_limit"
    started = time.monotonic()
    res = go("say pong", env, proj, tmp_path)
    assert time.monotonic() - started < 30  # CLAUDE_CODE_MAX_RETRIES=0: no waiting out retry-after
    assert len(main_calls(fake)) == 1
    assert res.outcome == "failed" and res.extra.get("usage_limit") is True, res
    assert one_line(res.error), res.error


def _next_minute(seconds_ahead: int) -> int:
    """A unix time ``seconds_ahead`` from now, on a whole minute (the CLI prints no seconds)."""
    return (int(time.time()) + seconds_ahead) // 60 * 60


@pytest.mark.parametrize(
    "claim, ahead, tz",
    [("five_hour", 2 * 3600, "Europe/Berlin"), ("seven_day", 3 * 86400 + 600, "America/New_York")],
)
def test_subscription_limit_waits_until_its_reset(
    claim: str, ahead: int, tz: str, fake: ProviderFake, env: dict[str, str], proj: Path, tmp_path: Path
) -> None:
    """Logged in to a Claude.ai plan (an OAuth token), a 429 with the anthropic-ratelimit-unified-*
    headers makes claude print e.g. "You've hit your 5-hour limit · resets 4am (Europe/Berlin)"."""
    fake.mode = "usage_limit"
    fake.state.update(claim=claim, reset=_next_minute(ahead))
    res = go("say pong", oauth_env(fake, env, TZ=tz), proj, tmp_path)
    assert [r.headers.get("authorization") for r in main_calls(fake)] == [f"Bearer {fake.key}"]
    assert res.outcome == "failed" and res.extra.get("usage_limit") is True, res
    assert "You've hit your" in res.error and one_line(res.error), res.error
    reset = dt.datetime.fromtimestamp(fake.state["reset"], dt.timezone.utc)
    assert res.extra.get("usage_limit_reset") == fmt_time(reset), res.error


def test_overload_is_an_ordinary_failure(fake: ProviderFake, env: dict[str, str], proj: Path, tmp_path: Path) -> None:
    fake.mode = "overloaded"
    res = go("say pong", env, proj, tmp_path)
    assert res.outcome == "failed" and not res.extra.get("usage_limit"), res
    assert "529" in res.error and one_line(res.error), res.error


# ---------------------------------------------------------------- the offline "is it usable" check


def test_auth_status_is_a_cheap_offline_check(claude: Path, env: dict[str, str], fake: ProviderFake) -> None:
    """`claude auth status` (JSON by default) exits 0 when a key/token is configured, 1 when not; it
    makes no request (it does not check that the key works)."""
    ok = subprocess.run([str(claude), "auth", "status"], env=env, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and '"loggedIn": true' in ok.stdout and '"authMethod": "api_key"' in ok.stdout
    bare = {k: v for k, v in env.items() if k != "ANTHROPIC_API_KEY"}
    no = subprocess.run([str(claude), "auth", "status", "--text"], env=bare, capture_output=True, text=True, timeout=30)
    assert no.returncode == 1 and no.stdout.splitlines()[-1] == "Not logged in. Run claude auth login to authenticate."
    assert fake.requests == []
