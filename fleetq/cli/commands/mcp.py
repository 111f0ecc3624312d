"""`fleetq mcp` (serve fleetq's commands as MCP tools over stdio) and `fleetq mcp install claude|gemini|codex`.

The MCP SDK is imported only when the server starts (fleetq/cli/mcpserver.py), so `fleetq --help` and
the command table stay fast.
"""

from __future__ import annotations

import click

from fleetq.cli import mcpinstall, output
from fleetq.cli.context import AppContext, pass_app


@click.group("mcp", invoke_without_command=True)
@click.pass_context
def mcp(ctx: click.Context) -> None:
    """Serve fleetq to your own agent as MCP tools over stdio (`fleetq mcp install claude` registers it).

    Tools: assign, parallel, queue, show, wait, logs, status, monitor, pick, review, diff, accept,
    reject, reply, cancel; each answers with the JSON of that command's --json, and a failure is a
    tool error with the command's one-line message. The global --fleet and --machine pass on.
    """
    if ctx.invoked_subcommand is not None:
        return
    from fleetq.cli import mcpserver  # the SDK (anyio, pydantic, ...) only for the server

    app = ctx.ensure_object(AppContext)
    mcpserver.serve(app.fleet_dir, app.machine)


@mcp.command("install")
@click.argument("cli", type=click.Choice(mcpinstall.CLIS))
@click.option(
    "--scope",
    type=click.Choice(mcpinstall.SCOPES),
    default="user",
    show_default=True,
    help="The CLI's user config (every project) or this project's (claude, gemini).",
)
@click.option("--name", default="fleetq", show_default=True, help="The server's name in the CLI's config.")
@click.option("--print", "dry", is_flag=True, help="Only show the command; change nothing.")
@pass_app
def install(app: AppContext, cli: str, scope: str, name: str, dry: bool) -> None:
    """Register `fleetq mcp` for this fleet with claude, gemini or codex, through that CLI's own `mcp add`."""
    from fleetq.cli.mcpserver import fleetq_argv

    fleet = app.fleet()  # the fleet must exist; its absolute path goes into the registration
    server = [*fleetq_argv(), "--fleet", str(fleet.root.resolve())]
    server += ["--machine", app.machine] if app.machine else []
    server.append("mcp")
    if dry:
        p = mcpinstall.plan(cli, server, name=name, scope=scope)
        output.info(mcpinstall.show(p.add))
        output.info(f"# would write {p.config}")
        return
    p, ran, said = mcpinstall.install(cli, server, name=name, scope=scope)
    for argv in ran:
        output.info(f"ran: {mcpinstall.show(argv)}")
    for line in said:
        output.info(f"  {cli}: {line}")
    output.info(f"{cli} now starts fleetq's MCP server as '{name}' (config: {p.config})")


commands = [mcp]
