"""agent_run: run an AI agent on a prompt, in payload.cwd.

payload: prompt (default: the task title), agent (default: the task's agent, else the
first agent installed here), cwd, model, and for isolated runs (fleetq/isolate.py):

``isolate``  true: always run in a fresh git worktree (needs_human when cwd is not in a
             git repo); false: never; absent: when ``cwd`` is given and inside a git work tree.
``base``     the ref the run's branch ``fleetq/<id>`` starts from (default: the repo's HEAD).
``push``     a remote (name or URL) to push the branch to when the run ends.

A reply (``fleetq reply ID MESSAGE``, fleetq/review/reply.py) is an agent_run with
``resume`` (the agent's session id: the agent's ``resume_args`` continue it), ``reply_to``
and ``chain_root``; isolated, it works on the chain's branch ``fleetq/<chain_root>`` from
``base`` (the last link's head), recording ``chain_base`` as its base.

An isolated run never touches the checkout at ``cwd`` (uncommitted edits stay as they
are, and the agent sees only committed code): the agent works in a worktree outside
the repository, whatever it changed is committed to ``fleetq/<id>`` (also when it
failed), and the result records ``repo``, ``branch``, ``base``, ``base_branch``,
``head``, ``files_changed``, ``insertions``, ``deletions`` and ``pushed`` /
``push_error``. Review it with ``fleetq diff|accept|reject ID``.
"""

from __future__ import annotations

from pathlib import Path

from fleetq.handlerapi import HandlerContext, HandlerResult, Stop, effective_timeout, guard, resolve_dir, text_field
from fleetq.run.agents.registry import AGENT_TIMEOUT
from fleetq.run.agents.runners import run_agent
from fleetq.run.isolate import run_isolated

DEFAULT_TIMEOUT = AGENT_TIMEOUT


def _run(ctx: HandlerContext) -> HandlerResult:
    prompt = text_field(ctx.payload, "prompt") or ctx.task.get("title")
    if not prompt:
        raise Stop("payload.prompt (or a task title) is required")
    agent = text_field(ctx.payload, "agent") or ctx.task.get("agent")
    cwd = resolve_dir(text_field(ctx.payload, "cwd"), ctx.env)

    def go(wd: Path) -> HandlerResult:
        return run_agent(
            None if agent == "-" else agent,
            str(prompt),
            agents=ctx.agents,
            cwd=wd,
            model=text_field(ctx.payload, "model"),
            env=ctx.env,
            timeout=effective_timeout(ctx, DEFAULT_TIMEOUT),
            log_path=ctx.log_path,
            cancel=ctx.cancel,
            session=text_field(ctx.payload, "resume"),
        )

    return run_isolated(ctx, cwd, go)


def run(ctx: HandlerContext) -> HandlerResult:
    return guard(_run, ctx)
