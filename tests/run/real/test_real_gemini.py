"""fleetq's ``gemini`` agent against the real Gemini CLI (the version tests/clis pins), pointed at a fake
Gemini API on 127.0.0.1 (tests/support/providers/gemini.py).

Every run gets its own HOME (settings.json: auth type gemini-api-key, no telemetry or update checks,
``general.maxAttempts: 1`` so a 429 comes back at once instead of after minutes of retries) and a
project directory the CLI has never seen (gemini-cli 0.61 refuses to run headless in an untrusted
folder unless told to trust it). What the CLI prints in each case is quoted in the comments; the
assertions are what fleetq should make of it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import zoneinfo
from pathlib import Path

import pytest

from fleetq.core.task import fmt_time
from fleetq.handlerapi import HandlerResult
from fleetq.run.agents.registry import load_agents
from fleetq.run.agents.runners import run_agent
from support import realclis
from support.providers import ProviderFake
from support.providers import gemini as gm

pytestmark = pytest.mark.timeout(120)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
PACIFIC = zoneinfo.ZoneInfo("America/Los_Angeles")  # Google's daily quotas reset at midnight Pacific time


@pytest.fixture(scope="module")
def gemini() -> Path:
    return realclis.require("gemini")


@pytest.fixture
def fake():
    with ProviderFake(gm.ROUTES) as f:
        yield f


def gemini_env(fake: ProviderFake, tmp_path: Path, gemini: Path, **kw) -> dict[str, str]:
    env = gm.cli_env(fake, tmp_path / "home", **kw)
    env["PATH"] = f"{gemini.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def go(fake: ProviderFake, tmp_path: Path, gemini: Path, prompt: str = "say pong", **kw) -> HandlerResult:
    proj = tmp_path / "proj"  # a fresh directory: never trusted, no .gemini/ of its own
    proj.mkdir(exist_ok=True)
    return run_agent(
        "gemini",
        prompt,
        agents=load_agents(None),
        cwd=proj,
        model=None,
        env=gemini_env(fake, tmp_path, gemini, **kw),
        timeout=60,
        log_path=tmp_path / "run.log",
    )


def main_calls(fake: ProviderFake) -> list:
    """The main model's requests (the router's classifier call is a generateContent with a JSON schema)."""
    return fake.seen(":streamGenerateContent")


def main_model(fake: ProviderFake) -> str:
    models = {gm.model_of(r) for r in main_calls(fake)}
    assert len(models) == 1, models
    return models.pop()


def router_models(fake: ProviderFake) -> set[str]:
    return {gm.model_of(r) for r in fake.requests if isinstance(r.body, dict) and gm.is_router(r.body)}


def prompts_seen(fake: ProviderFake) -> list[str]:
    """The user's text of each main request's first turn (the session-context part left out)."""
    out = []
    for r in main_calls(fake):
        first = (r.body.get("contents") or [{}])[0]
        texts = [p.get("text", "") for p in first.get("parts") or [] if "text" in p]
        out += [t for t in texts if not t.startswith("<session_context>")]
    return out


def one_line(text: str | None) -> bool:
    return bool(text) and "\n" not in (text or "").strip()


def clean_error(res: HandlerResult) -> None:
    """The error fleetq shows is a real message: not the last line of a JSON document, no colour codes."""
    err = res.error or ""
    assert not err.rstrip().endswith(("}", "{")), f"a line of gemini's JSON instead of its message: {err!r}"
    assert not ANSI.search(err), f"ANSI codes in the error: {err!r}"


# ---------------------------------------------------------------- success


def test_success_in_a_fresh_untrusted_directory(fake: ProviderFake, tmp_path: Path, gemini: Path) -> None:
    # without --skip-trust (or GEMINI_CLI_TRUST_WORKSPACE=true) gemini 0.61 exits 55 before any request:
    #   "Gemini CLI is not running in a trusted directory. To proceed, either use `--skip-trust`, ..."
    fake.reply = "pong from the fake"
    res = go(fake, tmp_path, gemini)
    assert res.outcome == "done" and res.exit_code == 0, res
    x = res.extra
    assert x["reply"] == "pong from the fake"
    # stats.models has the router's model (roles.utility_router) and the main one (roles.main)
    assert router_models(fake), "expected the CLI's model router to make its classifier call"
    assert x.get("model") == main_model(fake), x
    assert x.get("model") not in router_models(fake), x
    u = gm.MAIN_USAGE  # the main model's usage only, not the router's added in
    assert x.get("input_tokens") == u["prompt"], x
    assert x.get("output_tokens") == u["candidates"], x
    assert x.get("thoughts_tokens") == u["thoughts"], x
    assert x.get("cache_read_tokens") == u["cached"], x
    assert UUID.match(str(x.get("session_id"))), x  # "session_id" in the JSON output


@pytest.mark.parametrize("prompt", ["--help me write a haiku", "-v explain the code", "-p=x -- -y"])
def test_prompt_beginning_with_a_dash_reaches_the_provider(
    fake: ProviderFake, tmp_path: Path, gemini: Path, prompt: str
) -> None:
    # `-p "--help me"` -> exit 1, "Not enough arguments following: p" and the usage text (yargs reads the
    # prompt as an option); `--prompt=--help me` passes it as text
    res = go(fake, tmp_path, gemini, prompt)
    assert res.outcome == "done", res
    assert prompts_seen(fake) == [prompt]


def test_edit_in_an_untrusted_directory_is_made(fake: ProviderFake, tmp_path: Path, gemini: Path) -> None:
    # in an untrusted folder 0.61 downgrades --yolo ("Approval mode overridden to "default" because the
    # current folder is not trusted.") and, headless, offers no write_file tool at all: the run "succeeds"
    # with "Error executing tool write_file: Tool "write_file" not found." on stderr and nothing written
    fake.mode, fake.reply = "edit", "wrote hello.txt"
    fake.edit = ("hello.txt", "hello from gemini\n")
    res = go(fake, tmp_path, gemini, "write hello.txt")
    assert res.outcome == "done", res
    assert (tmp_path / "proj" / "hello.txt").read_text() == "hello from gemini\n"
    assert res.extra["reply"] == "wrote hello.txt"
    [first, second] = main_calls(fake)
    responses = [p["functionResponse"] for c in second.body["contents"] for p in c.get("parts") or []
                 if "functionResponse" in p]  # fmt: skip
    assert responses and responses[0]["name"] == "write_file", responses
    # two main turns: their usage adds up
    assert res.extra.get("input_tokens") == 2 * gm.MAIN_USAGE["prompt"], res.extra


# ---------------------------------------------------------------- usage limits


def test_per_minute_quota_is_a_usage_limit_until_the_retry_delay(
    fake: ProviderFake, tmp_path: Path, gemini: Path
) -> None:
    # gemini prints (stderr, exit 173 = 429 & 0xff) {"session_id": ..., "error": {"type": "Error", "message":
    # "You exceeded your current quota, ... \n* Quota exceeded for metric: ..., limit: 10, model: ...\n
    # Please retry in 37.5s.\nSuggested retry after 37s.", "code": 429}}  -- no RESOURCE_EXHAUSTED anywhere
    fake.mode, fake.state["gemini_retry_delay"] = "rate_limit", 37.5
    started = dt.datetime.now(dt.timezone.utc)
    res = go(fake, tmp_path, gemini)
    ended = dt.datetime.now(dt.timezone.utc)
    assert res.outcome == "failed", res
    assert res.extra.get("usage_limit") is True, res
    reset = res.extra.get("usage_limit_reset")
    assert reset is not None, res
    assert fmt_time(started + dt.timedelta(seconds=36)) <= reset <= fmt_time(ended + dt.timedelta(seconds=39)), res
    assert len(main_calls(fake)) == 1  # general.maxAttempts: 1 -- no retries inside the CLI
    clean_error(res)


def test_daily_quota_waits_for_the_daily_reset(fake: ProviderFake, tmp_path: Path, gemini: Path) -> None:
    # the API says "Please retry in 37.5s." but the quota is per day (quotaId ...PerDay...); gemini prints
    # {"error": {"type": "Error", "message": "You have exhausted your daily quota on this model.", "code": 429}}
    # on stderr, after a util.inspect dump of the cause that still contains "Please retry in 37.5s."
    fake.mode = "daily_quota"
    res = go(fake, tmp_path, gemini)
    assert res.outcome == "failed", res
    assert res.extra.get("usage_limit") is True, res
    now = dt.datetime.now(PACIFIC)
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(0), tzinfo=PACIFIC)
    assert res.extra.get("usage_limit_reset") == fmt_time(midnight), res
    assert "daily quota" in (res.error or ""), res
    clean_error(res)


def test_no_free_tier_for_the_model_needs_a_human(fake: ProviderFake, tmp_path: Path, gemini: Path) -> None:
    # "limit: 0": the key has no quota at all for this model (e.g. a pro model on the free tier); the CLI
    # calls it terminal (googleQuotaErrors.js: /limit:\s*0(?!\d|\.\d)/) and prints Google's message as is,
    # "...\n* Quota exceeded for metric: ..., limit: 0, model: gemini-3.8-flash\nPlease retry in 37.5s."
    # (no "Suggested retry after"): waiting 37 s, again and again, will not help
    fake.mode = "zero_quota"
    res = go(fake, tmp_path, gemini)
    assert res.outcome == "needs_human", res
    assert one_line(res.error) and "limit: 0" in str(res.error), res.error
    assert not res.extra.get("usage_limit"), res
    clean_error(res)


# ---------------------------------------------------------------- a person must act


def test_rejected_key_needs_a_human(fake: ProviderFake, tmp_path: Path, gemini: Path) -> None:
    # gemini (stderr, exit 144 = 400 & 0xff): {"session_id": ..., "error": {"type": "Error", "message":
    # "{\"error\":{\"code\":400,\"message\":\"API key not valid. Please pass a valid API key.\", ...}}", "code": 400}}
    res = go(fake, tmp_path, gemini, GEMINI_API_KEY="wrong-key")
    assert res.outcome == "needs_human", res
    assert one_line(res.error), res.error
    assert "GEMINI_API_KEY" in str(res.error), res.error
    assert "API key not valid" in str(res.error), res.error
    assert not res.extra.get("usage_limit"), res
    clean_error(res)


def test_missing_key_needs_a_human(fake: ProviderFake, tmp_path: Path, gemini: Path) -> None:
    # auth type gemini-api-key and no key: exit 41, no request, on stderr {"error": {"type": "Error", "message":
    # "When using Gemini API, you must specify the GEMINI_API_KEY environment variable.\nUpdate your
    # environment and try again (no reload needed if using .env)!", "code": 41}}
    res = go(fake, tmp_path, gemini, key=None)
    assert res.outcome == "needs_human", res
    assert one_line(res.error) and "GEMINI_API_KEY" in str(res.error), res.error
    assert fake.requests == []
    clean_error(res)


def test_not_logged_in_needs_a_human(fake: ProviderFake, tmp_path: Path, gemini: Path) -> None:
    # no settings.json and no key: exit 41, no request, on stderr {"error": {"type": "Error", "message":
    # "Please set an Auth method in your <HOME>/.gemini/settings.json or specify one of the following
    # environment variables before running: GEMINI_API_KEY, GOOGLE_GENAI_USE_VERTEXAI, GOOGLE_GENAI_USE_GCA"}}
    res = go(fake, tmp_path, gemini, key=None, settings_doc={}, GOOGLE_GEMINI_BASE_URL=None)
    assert res.outcome == "needs_human", res
    assert one_line(res.error) and "GEMINI_API_KEY" in str(res.error), res.error
    assert fake.requests == []
    clean_error(res)


def test_google_login_missing_needs_a_human(fake: ProviderFake, tmp_path: Path, gemini: Path) -> None:
    # auth type oauth-personal ("Sign in with Google", the CLI's usual setup) and no ~/.gemini/oauth_creds.json:
    # exit 41, no request, no JSON at all; stderr ends with the message in red unless NO_COLOR is set:
    #   "\x1b[31mManual authorization is required but the current session is non-interactive. Please run the
    #   Gemini CLI in an interactive terminal to log in, provide a GEMINI_API_KEY, or ensure Application
    #   Default Credentials are configured.\x1b[0m"
    settings = gm.settings(security={"auth": {"selectedType": "oauth-personal"}})
    res = go(fake, tmp_path, gemini, key=None, settings_doc=settings, GOOGLE_GEMINI_BASE_URL=None)
    assert res.outcome == "needs_human", res
    assert one_line(res.error), res.error
    assert "log in" in str(res.error) or "login" in str(res.error), res.error
    assert fake.requests == []
    clean_error(res)
