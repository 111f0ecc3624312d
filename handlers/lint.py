"""lint: payload.command, else the project's linter: ruff, eslint, ktlint or swiftlint.

payload.linter (or payload.runner) forces one of these names.
"""

from __future__ import annotations

from fleetq.handlerapi import (
    HandlerContext,
    HandlerResult,
    Recipe,
    has_any,
    is_gradle_project,
    is_python_project,
    npm_uses,
    python_tool,
    run_project,
)

DEFAULT_TIMEOUT = 120.0

RECIPES = (
    Recipe("ruff", is_python_project, lambda cwd, ctx: [*python_tool(cwd, ctx.env, "ruff"), "check", "."]),
    Recipe(
        "eslint",
        lambda cwd: npm_uses(cwd, "eslint") or has_any(cwd, ".eslintrc*", "eslint.config.*"),
        lambda cwd, ctx: ["npx", "--no-install", "eslint", "."],
    ),
    Recipe(
        "ktlint",
        lambda cwd: has_any(cwd, "*.kt", "*.kts", ".editorconfig") and is_gradle_project(cwd),
        lambda cwd, ctx: ["ktlint"],
    ),
    Recipe(
        "swiftlint",
        lambda cwd: has_any(cwd, ".swiftlint.yml", "Package.swift", "*.xcodeproj"),
        lambda cwd, ctx: ["swiftlint", "lint"],
    ),
)


def run(ctx: HandlerContext) -> HandlerResult:
    return run_project(ctx, RECIPES, what="lint", default_timeout=DEFAULT_TIMEOUT, choice_keys=("linter", "runner"))
