"""android_build: payload.command, else `./gradlew assemble<Variant>` (payload.variant, default Debug)."""

from __future__ import annotations

from fleetq.handlerapi import HandlerContext, HandlerResult, Recipe, gradle, is_gradle_project, run_project, text_field

DEFAULT_TIMEOUT = 120.0


def _assemble(cwd, ctx: HandlerContext) -> list[str]:
    variant = text_field(ctx.payload, "variant") or "debug"
    return gradle(cwd, "assemble" + variant[:1].upper() + variant[1:])


RECIPES = (Recipe("gradle", is_gradle_project, _assemble),)


def run(ctx: HandlerContext) -> HandlerResult:
    return run_project(ctx, RECIPES, what="build for Android", default_timeout=DEFAULT_TIMEOUT)
