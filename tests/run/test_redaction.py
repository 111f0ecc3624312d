"""Secrets in output never reach a task's result, not even in part (issue 14, finding 8).

Redaction runs before any cut: a key that straddles the 4,000-byte tail (or the reply's 8,000
characters) is masked whole, and the usual cloud key shapes are recognised.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetq import yamlio
from fleetq.handlerapi import HandlerResult
from fleetq.run import redact
from fleetq.run.agents import runners
from fleetq.run.handlers import load_handler
from support.handlers import make_ctx

pytestmark = pytest.mark.timeout(30)

GITHUB = "ghp_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"  # 40 characters
AWS_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def fragments(secret: str, n: int = 8) -> list[str]:
    return [secret[i : i + n] for i in range(len(secret) - n + 1)]


def committed(tmp_path: Path, script: str, cfg: dict | None = None) -> str:
    """What the worker would write into the task file for a run_script run of ``script``."""
    ctx = make_ctx(tmp_path, {"PATH": "/usr/bin:/bin"}, "run_script", {"script": script, "cwd": str(tmp_path)})
    res = load_handler("run_script", None).run(ctx)
    assert res.outcome == "done", res
    return yamlio.dump_plain(redact.redact_result(res.to_dict(), cfg))


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_a_key_straddling_the_tail_cut_leaves_no_fragment(tmp_path: Path, stream: str) -> None:
    # 40 characters and a newline, then 3,969 bytes: the last 4,000 bytes hold the key's last 30
    redirect = ">&2" if stream == "stderr" else ""
    script = (
        f"{{ head -c 5000 /dev/zero | tr '\\0' a; printf ' %s\\n' {GITHUB}; "
        f"head -c 3969 /dev/zero | tr '\\0' y; }} {redirect}"
    )
    text = committed(tmp_path, script)
    leaked = [f for f in fragments(GITHUB) if f in text]
    assert not leaked, leaked
    assert redact.MASK in text and "yyyy" in text  # the tail is still there, its start masked


def test_a_redact_env_value_straddling_the_cut_leaves_no_fragment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = "plain-looking-deploy-value-0123456789"  # no pattern knows it: only redact_env names it
    monkeypatch.setenv("DEPLOY_NAME", value)
    script = f"printf '%s' {value}; head -c 3980 /dev/zero | tr '\\0' y"
    text = committed(tmp_path, script, {"redact_env": ["DEPLOY_NAME"]})
    leaked = [f for f in fragments(value) if f in text]
    assert not leaked, leaked


def test_an_agent_reply_is_redacted_before_it_is_cut() -> None:
    res = HandlerResult("done", extra={"reply": "r" * 7979 + " " + GITHUB + " and more"})
    runners._bound_reply(res, 8000)
    reply = res.extra["reply"]
    assert res.extra["reply_truncated"] and len(reply) <= 8000
    assert not [f for f in fragments(GITHUB) if f in reply], reply[-60:]


KEY_BLOCK = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACDExampleExampleExampleExampleExampleExampleAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----"
)
SHAPES = {
    "aws access key id": (f"aws_access_key_id = {AWS_ID}", AWS_ID),
    "aws temporary key id": ("export AWS_ACCESS_KEY_ID=ASIAY34FZKBOKMUTVV7A", "ASIAY34FZKBOKMUTVV7A"),
    "aws secret (ini)": (f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET),
    "aws secret (env)": (f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}", AWS_SECRET),
    "aws secret (sts json)": (f'"SecretAccessKey": "{AWS_SECRET}",', AWS_SECRET),
    "aws secret (flag)": (f"--aws-secret-access-key {AWS_SECRET}", AWS_SECRET),
    "github classic": (f"token is {GITHUB}", GITHUB),
    "github app": ("ghs_16C7e42F292c6912E7710c838347Ae178B4a", "ghs_16C7e42F292c6912E7710c838347Ae178B4a"),
    "github fine-grained": (
        "github_pat_11ABCDEFG0abcdefghijklmnop_qrstuvwxyz",
        "github_pat_11ABCDEFG0abcdefghijklmnop",
    ),
    "gitlab": ("glpat-xxxxxxxxxxxxxxxxxxxx1234", "glpat-xxxxxxxxxxxxxxxxxxxx1234"),
    "slack bot": ("xoxb-123456789012-1234567890123-AbCdEfGhIjKl", "xoxb-123456789012-1234567890123"),
    "slack user": ("xoxp-123456789012-1234567890123-AbCdEfGhIjKl", "xoxp-123456789012-1234567890123"),
    "slack app": ("xapp-1-A0123456789-0123456789012-abcdef0123", "xapp-1-A0123456789-0123456789012"),
    "private key block": (f"key:\n{KEY_BLOCK}\ndone", "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUA"),
    "pgp private key block": (
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBGExampleExample\n-----END PGP PRIVATE KEY BLOCK-----",
        "lQOYBGExampleExample",
    ),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_cloud_key_shapes_are_redacted(name: str) -> None:
    text, secret = SHAPES[name]
    out = redact.redact(text)
    assert secret not in out and redact.MASK in out, out
    assert redact.find_secret({"payload": {"note": text}}) is not None


def test_commit_ids_and_plain_text_are_left_alone() -> None:
    text = f"commit {COMMIT}\nhead: {COMMIT}\nbase={COMMIT}\nMerge {COMMIT[:12]} into main\nsecret sauce"
    assert redact.redact(text) == text
    assert redact.find_secret(text) is None
