"""An isolated agent_run by each real CLI: the agent's own file-writing tool (claude's Write,
gemini's write_file, codex's sandboxed shell) edits fleetq's worktree, and fleetq commits the edit
on ``fleetq/<id>`` while the person's checkout stays untouched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fleetq.run.handlers import load_handler
from support.fleets import git
from support.handlers import make_ctx
from support.projects import files_in, make_project
from support.providers import ProviderFake
from support.realagents import ROUTES, agent_env

pytestmark = pytest.mark.timeout(120)


def _tool_result_went_back(cli: str, fake: ProviderFake) -> bool:
    """The tool's result reached the model in a second turn (the edit really went through the CLI's tool)."""
    posts = [r for r in fake.requests if r.method == "POST" and isinstance(r.body, dict)]
    kinds = {"claude": '"tool_result"', "gemini": '"functionResponse"', "codex": '"function_call_output"'}
    return any(kinds[cli] in r.text() for r in posts)


@pytest.mark.parametrize("cli", ["claude", "gemini", "codex"])
def test_isolated_edit_is_committed_on_its_branch(cli: str, tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    with ProviderFake(ROUTES[cli]) as fake:
        fake.mode, fake.reply = "edit", "wrote the note"
        fake.edit = ("notes/hello.txt", f"hello from {cli}\n")
        env = agent_env(cli, fake, tmp_path)
        payload = {"agent": cli, "prompt": "write the note", "cwd": str(project)}
        ctx = make_ctx(tmp_path, env, "agent_run", payload, title="write the note")
        (tmp_path / "fleet" / ".git").mkdir(parents=True, exist_ok=True)  # the worker's state area lives here
        res = load_handler("agent_run", ctx.fleet_dir).run(ctx)
    assert res.outcome == "done", res
    assert res.extra["branch"] == "fleetq/t1" and res.extra["reply"] == "wrote the note", res
    assert files_in(project, "fleetq/t1")["notes/hello.txt"] == f"hello from {cli}\n"
    assert (res.extra["files_changed"], res.extra["insertions"], res.extra["deletions"]) == (1, 1, 0)
    assert f"Fleetq-Agent: {cli}" in git(project, "log", "-1", "--format=%B", "fleetq/t1")
    assert "notes" not in os.listdir(project)  # written in the worktree, not the checkout
    assert _tool_result_went_back(cli, fake)
