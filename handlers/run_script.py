"""run_script: payload.script run with /bin/sh -c in payload.cwd (default: HOME)."""

from __future__ import annotations

from fleetq.handlerapi import HandlerContext, HandlerResult, guard, payload_dir, run_in, text_field

DEFAULT_TIMEOUT = 120.0


def _run(ctx: HandlerContext) -> HandlerResult:
    script = text_field(ctx.payload, "script", required=True)
    return run_in(ctx, script, payload_dir(ctx, required=False), DEFAULT_TIMEOUT, what="script")


def run(ctx: HandlerContext) -> HandlerResult:
    return guard(_run, ctx)
