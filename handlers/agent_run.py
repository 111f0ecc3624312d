"""agent_run: run an AI agent on a prompt, in payload.cwd.

payload: prompt (default: the task title), agent (default: the task's agent, else the
first agent installed here), cwd, model.
"""
from __future__ import annotations

from fleetq.agents import run_agent
from fleetq.handlerapi import HandlerContext, HandlerResult, Stop, effective_timeout, guard, text_field

DEFAULT_TIMEOUT = 1800.0


def _run(ctx: HandlerContext) -> HandlerResult:
    prompt = text_field(ctx.payload, "prompt") or ctx.task.get("title")
    if not prompt:
        raise Stop("payload.prompt (or a task title) is required")
    agent = text_field(ctx.payload, "agent") or ctx.task.get("agent")
    return run_agent(None if agent == "-" else agent, str(prompt), agents=ctx.agents,
                     cwd=text_field(ctx.payload, "cwd"), model=text_field(ctx.payload, "model"), env=ctx.env,
                     timeout=effective_timeout(ctx, DEFAULT_TIMEOUT), log_path=ctx.log_path, cancel=ctx.cancel)


def run(ctx: HandlerContext) -> HandlerResult:
    return guard(_run, ctx)
