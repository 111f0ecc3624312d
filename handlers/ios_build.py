"""ios_build: payload.command, else `flutter build ios` (pubspec.yaml) or xcodebuild.

xcodebuild takes payload.scheme (required), payload.workspace / payload.project (found
in cwd when not given), payload.configuration, payload.destination, payload.sdk.
payload.codesign: false adds --no-codesign to flutter. payload.runner forces flutter|xcode.
"""

from __future__ import annotations

from fleetq.handlerapi import HandlerContext, HandlerResult, Recipe, has_any, is_xcode_project, run_project, xcodebuild

DEFAULT_TIMEOUT = 120.0


def _flutter(cwd, ctx: HandlerContext) -> list[str]:
    return ["flutter", "build", "ios"] + (["--no-codesign"] if ctx.payload.get("codesign") is False else [])


RECIPES = (
    Recipe("flutter", lambda cwd: has_any(cwd, "pubspec.yaml"), _flutter),
    Recipe("xcode", is_xcode_project, lambda cwd, ctx: xcodebuild(cwd, ctx.payload, "build")),
)


def run(ctx: HandlerContext) -> HandlerResult:
    return run_project(ctx, RECIPES, what="build for iOS", default_timeout=DEFAULT_TIMEOUT)
