"""Built-in task-type handlers, one module per type (installed as ``fleetq.handlers``).

Each module defines ``DEFAULT_TIMEOUT`` (seconds) and ``run(ctx: HandlerContext) -> HandlerResult``
(see fleetq/handlerapi.py). A fleet repo adds its own types as ``handlers/<type>.py`` with
the same two names; fleetq/handlers_loader.py finds either kind.
"""

BUILTIN = ("agent_run", "run_script", "git_pull", "npm_build", "test_run", "lint", "ios_build", "android_build")
