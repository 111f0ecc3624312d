"""npm_build: `npm run <payload.script or build>` in payload.cwd (payload.command overrides)."""

from __future__ import annotations

from fleetq.handlerapi import HandlerContext, HandlerResult, Recipe, has_any, run_project, text_field

DEFAULT_TIMEOUT = 120.0


def _npm_run(cwd, ctx: HandlerContext) -> list[str]:
    return ["npm", "run", text_field(ctx.payload, "script") or "build"]


RECIPES = (Recipe("npm", lambda cwd: has_any(cwd, "package.json"), _npm_run),)


def run(ctx: HandlerContext) -> HandlerResult:
    return run_project(ctx, RECIPES, what="run an npm build", default_timeout=DEFAULT_TIMEOUT)
