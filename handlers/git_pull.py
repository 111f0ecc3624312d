"""git_pull: `git -C repo_path pull --ff-only [origin branch]` (never a merge commit on a worker)."""

from __future__ import annotations

from fleetq.handlerapi import HandlerContext, HandlerResult, guard, payload_dir, require_tool, run_in, text_field

DEFAULT_TIMEOUT = 120.0


def _run(ctx: HandlerContext) -> HandlerResult:
    repo = payload_dir(ctx, "repo_path")
    require_tool("git", ctx.env)
    branch = text_field(ctx.payload, "branch")
    remote = text_field(ctx.payload, "remote") or "origin"
    argv = ["git", "-C", str(repo), "pull", "--ff-only"] + ([remote, branch] if branch else [])
    return run_in(ctx, argv, repo, DEFAULT_TIMEOUT, what="git pull")


def run(ctx: HandlerContext) -> HandlerResult:
    return guard(_run, ctx)
