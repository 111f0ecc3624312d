"""test_run: payload.command, else the project's test runner, found from its files.

pytest (Python project), jest (`npx jest`, when package.json uses jest), npm (`npm test`),
gradle (`./gradlew test` or `gradle test`), xcode (`xcodebuild test`, needs payload.scheme).
payload.runner forces one of these names.
"""

from __future__ import annotations

from fleetq.handlerapi import (
    HandlerContext,
    HandlerResult,
    Recipe,
    gradle,
    is_gradle_project,
    is_python_project,
    is_xcode_project,
    npm_uses,
    package_json,
    python_tool,
    run_project,
    xcodebuild,
)

DEFAULT_TIMEOUT = 120.0

RECIPES = (
    Recipe("pytest", is_python_project, lambda cwd, ctx: python_tool(cwd, ctx.env, "pytest")),
    Recipe("jest", lambda cwd: npm_uses(cwd, "jest"), lambda cwd, ctx: ["npx", "--no-install", "jest"]),
    Recipe("npm", lambda cwd: "test" in (package_json(cwd).get("scripts") or {}), lambda cwd, ctx: ["npm", "test"]),
    Recipe("gradle", is_gradle_project, lambda cwd, ctx: gradle(cwd, "test")),
    Recipe("xcode", is_xcode_project, lambda cwd, ctx: xcodebuild(cwd, ctx.payload, "test")),
)


def run(ctx: HandlerContext) -> HandlerResult:
    return run_project(ctx, RECIPES, what="run the tests", default_timeout=DEFAULT_TIMEOUT)
