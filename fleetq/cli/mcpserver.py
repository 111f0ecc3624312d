"""`fleetq mcp`: fleetq's commands as MCP tools over stdio, on the official `mcp` SDK's low-level Server.

Each tool call runs the fleetq CLI itself (``sys.executable -m fleetq ... CMD ... --json``, an argv list,
never a shell) and answers with its stdout JSON; a failed command is a tool error (isError) carrying
the one line the CLI printed. Why a subprocess and not the core in-process: docs/design.md, "MCP
server". The SDK is imported only here, and this module only when `fleetq mcp` runs. stdout belongs
to JSON-RPC: nothing here prints.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from fleetq.cli import mcptools
from fleetq.errors import FleetqError


def fleetq_argv() -> list[str]:
    """How to run this very fleetq: its interpreter with ``-m fleetq`` (works from a venv, a checkout, an install)."""
    return [sys.executable, "-m", "fleetq"]


def outcome(command: str, code: int, stdout: str, stderr: str) -> tuple[bool, str, Any, list[str]]:
    """(is_error, text, parsed JSON or None, warnings) of one finished CLI run.

    JSON on stdout is the answer even with a non-zero exit: `wait` exits 1 when a task failed and 124
    when it timed out, and says so in its JSON. Without JSON, a non-zero exit is an error.
    """
    doc: Any = None
    text = stdout.strip()
    if text:
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
    said = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if doc is None and code != 0:  # the one line the CLI printed for its failure, or how it ended
        return True, said[-1] if said else f"fleetq {command} exited {code}", None, []
    if doc is None:
        return True, f"fleetq {command} printed no JSON" + (f": {said[-1]}" if said else ""), None, []
    return False, text, doc, said


class Runner:
    """Runs one tool call as a fleetq subprocess, with the global options the server was started with."""

    def __init__(self, fleet_dir: str | None, machine: str | None) -> None:
        # resolved now: the server may be started from anywhere, the CLI child runs in its cwd
        self.fleet_dir = str(Path(fleet_dir).expanduser().resolve()) if fleet_dir else None
        self.machine = machine

    def command(self, spec: mcptools.ToolSpec, arguments: dict[str, Any]) -> list[str]:
        return [*fleetq_argv(), *mcptools.argv(spec, arguments, fleet_dir=self.fleet_dir, machine=self.machine)]

    async def call(self, name: str, arguments: dict[str, Any]) -> tuple[bool, str, Any, list[str]]:
        import anyio

        spec = mcptools.BY_NAME.get(name)
        if spec is None:
            return True, f"no such tool: {name}", None, []
        try:
            cmd = self.command(spec, arguments)
        except FleetqError as e:
            return True, f"fleetq: {e}", None, []
        limit = mcptools.call_limit(spec, arguments)
        with anyio.move_on_after(limit) as scope:
            proc = await anyio.run_process(cmd, stdin=subprocess.DEVNULL, check=False, start_new_session=True)
        if scope.cancelled_caught:
            return True, f"fleetq {spec.command} did not answer within {limit:g}s (stopped)", None, []
        out = proc.stdout.decode("utf-8", errors="replace")
        err = proc.stderr.decode("utf-8", errors="replace")
        return outcome(spec.command, proc.returncode, out, err)


def build(runner: Runner) -> Any:
    """The SDK's low-level Server with fleetq's tools (mcptools.TOOLS) wired to ``runner``."""
    from importlib.metadata import PackageNotFoundError, version

    import mcp_types as types
    from mcp.server.lowlevel import Server

    try:
        ours = version("fleetq")
    except PackageNotFoundError:
        ours = ""

    tools = [
        types.Tool(
            name=t.name,
            description=t.description,
            input_schema=t.input_schema(),
            annotations=types.ToolAnnotations(
                read_only_hint=t.read_only,
                destructive_hint=t.destructive,
                idempotent_hint=t.read_only,
                open_world_hint=True,  # it reaches the fleet's remote and other machines
            ),
        )
        for t in mcptools.TOOLS
    ]

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        is_error, text, doc, said = await runner.call(params.name, dict(params.arguments or {}))
        content: list[Any] = [types.TextContent(type="text", text=text)]
        if said:  # warnings the command wrote beside its JSON (an offline remote, a task nothing can run yet)
            content.append(types.TextContent(type="text", text="fleetq said: " + " | ".join(said)))
        return types.CallToolResult(
            content=content,
            structured_content=doc if isinstance(doc, dict) else None,
            is_error=is_error,
        )

    return Server(
        "fleetq",
        version=ours,
        instructions=mcptools.INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def serve(fleet_dir: str | None, machine: str | None) -> None:
    """Serve over stdin/stdout until the client closes them."""
    import anyio
    from mcp.server.stdio import stdio_server

    server = build(Runner(fleet_dir, machine))

    async def main() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(main)
