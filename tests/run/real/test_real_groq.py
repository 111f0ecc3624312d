"""groq (fleetq's own HTTP client, kind http) against the provider fake's chat completions, Groq's shapes:
the reply and its accounting, a per-minute and a per-day 429 read as limits with their resets, a
refused key ending needs_human with what to do, and `fleetq run` / `fleetq test` exit codes via main()."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from fleetq.cli.app import main
from fleetq.core.task import now_utc, parse_time
from fleetq.run.agents.registry import load_agents
from fleetq.run.agents.runners import run_agent
from support.providers import ProviderFake
from support.providers.openai_chat import MODEL, cli_env

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def fake():
    with ProviderFake() as f:
        yield f


def go(fake: ProviderFake, tmp_path: Path, prompt: str = "say pong", **extra: str):
    env = cli_env(fake, tmp_path / "home", PATH="/usr/bin:/bin", **extra)
    return run_agent(
        "groq", prompt, agents=load_agents(None), cwd=tmp_path, model=None, env=env, timeout=20, log_path=tmp_path / "l"
    )


def test_reply_and_accounting(fake: ProviderFake, tmp_path: Path) -> None:
    fake.reply = "pong from groq"
    res = go(fake, tmp_path, "-v tell me")
    assert res.outcome == "done", res
    assert res.extra["reply"] == "pong from groq" and res.extra["model"] == MODEL
    assert res.extra["input_tokens"] == 17 and res.extra["output_tokens"] == 3 and res.extra["session_id"]
    (req,) = fake.seen("/chat/completions")
    assert req.body["messages"][-1]["content"] == "-v tell me" and req.body["model"] == MODEL


@pytest.mark.parametrize("mode,wait", [("rate_limit", 5), ("daily", 87)])
def test_429_is_a_usage_limit_with_its_reset(fake: ProviderFake, tmp_path: Path, mode: str, wait: int) -> None:
    fake.mode = mode
    before = now_utc()
    res = go(fake, tmp_path)
    assert res.outcome == "failed" and res.extra["usage_limit"] is True, res
    waited = (parse_time(res.extra["usage_limit_reset"]) - before).total_seconds()
    assert wait - 2 <= waited <= wait + 2, res.extra


def test_a_prompt_about_rate_limits_that_fails_is_no_limit(fake: ProviderFake, tmp_path: Path) -> None:
    fake.mode = "server"
    res = go(fake, tmp_path, "why do we hit the rate limit? HTTP 429 everywhere")
    assert res.outcome == "failed" and not res.extra.get("usage_limit"), res


def test_refused_key_needs_a_person(fake: ProviderFake, tmp_path: Path) -> None:
    res = go(fake, tmp_path, GROQ_API_KEY="a-revoked-key")
    assert res.outcome == "needs_human", res
    assert "GROQ_API_KEY" in res.error and "\n" not in res.error, res.error


def test_exit_codes_through_main(
    fake: ProviderFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a shell sees: 0 for a reply, non-zero for a failed run or a failed smoke test."""
    for k, v in cli_env(fake, tmp_path / "home", FLEETQ_FLEET="").items():
        monkeypatch.setenv(k, v)
    assert main(["run", "groq", "hi"]) == 0
    fake.mode = "server"
    assert main(["run", "groq", "hi"]) == 1
    assert main(["test", "groq"]) == 1
    capsys.readouterr()
    fake.mode, fake.reply = "ok", "pong"
    assert main(["test", "groq", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["agents"][0]["status"] == "pass"
    fake.mode = "auth"
    assert main(["test", "groq"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_request_shape_and_model_override(fake: ProviderFake, tmp_path: Path) -> None:
    assert go(fake, tmp_path, "say pong").outcome == "done"
    res = run_agent(
        "groq",
        "x",
        agents=load_agents(None),
        cwd=tmp_path,
        model="llama-3.1-8b-instant",
        env=cli_env(fake, tmp_path / "home"),
        timeout=20,
        log_path=tmp_path / "l",
    )
    assert res.extra["model"] == "llama-3.1-8b-instant"
    first, second = fake.seen("/chat/completions")
    assert first.headers["authorization"] == f"Bearer {fake.key}"
    assert first.body == {"model": MODEL, "messages": [{"role": "user", "content": "say pong"}]}
    assert second.body["model"] == "llama-3.1-8b-instant"


def test_timeout_cancel_and_unreachable(fake: ProviderFake, tmp_path: Path) -> None:
    env = cli_env(fake, tmp_path / "home")

    def run(**kw):
        kw.setdefault("timeout", 20)
        return run_agent(
            "groq", "x", agents=load_agents(None), cwd=tmp_path, model=None, env=env, log_path=tmp_path / "l", **kw
        )

    fake.delay = 3
    t0 = time.monotonic()
    assert run(timeout=0.3).error == "timed out after 0.3s" and time.monotonic() - t0 < 1.5
    cancel = threading.Event()
    cancel.set()
    assert run(cancel=cancel).error == "cancelled"
    env["GROQ_BASE_URL"] = "http://127.0.0.1:9/v1"  # nothing listens on the discard port
    res = run(timeout=5)
    assert res.outcome == "failed" and "cannot reach" in res.error
