"""The shared body of the fake agent CLIs (claude, gemini, codex) used by the tests.

Each fake parses argv the way the real CLI does (unknown flags are an error, so a
wrong argv template fails loudly) and prints the real CLI's output shape.
Environment knobs:
  FAKE_AGENT_LOG    append one JSON line {agent, argv, cwd, stdin} to this file
  FAKE_AGENT_WRITE  "relpath=content": write that file under the cwd (an agent editing code)
  FAKE_AGENT_EXIT   fail with this exit code (after printing an error the real CLI's way)
  FAKE_AGENT_LIMIT  fail with the agent's usage-limit message
  FAKE_AGENT_LIMIT_RESET  with FAKE_AGENT_LIMIT: the limit resets in this many seconds, said the agent's own way
  FAKE_AGENT_LIMIT_ONCE   with FAKE_AGENT_LIMIT: a marker file; hit the limit only when it does not exist yet
  FAKE_AGENT_LOGGED_OUT  claude auth status says not logged in (exit 1)
  FAKE_AGENT_SLEEP  seconds to sleep before answering (timeouts, cancel)
  FAKE_AGENT_REPLY  the reply text (default: "pong" when the prompt asks for it, else an echo)
  FAKE_AGENT_SPANS  append one JSON line {cwd, start, end} (wall-clock seconds) per run: overlap checks
Prompt lines that edit files under the cwd (so each task can edit its own files):
  @write PATH TEXT    write TEXT ("\\n" = newline) to PATH;  @append PATH TEXT;  @delete PATH
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid

FLAGS = {  # agent -> (flags taking a value, boolean flags)
    "claude": ({"--output-format", "--model"}, {"-p", "--print", "--dangerously-skip-permissions"}),
    "gemini": ({"--output-format", "-o", "-m", "--model", "-p", "--prompt"}, {"--yolo", "-y", "--skip-trust"}),
    "codex": (
        {"--sandbox", "-s", "--output-last-message", "-o", "-m", "--model", "-C", "--cd", "-c", "--config"},
        {"--skip-git-repo-check", "--full-auto", "--dangerously-bypass-approvals-and-sandbox", "--json"},
    ),
}
LIMITS = {
    "claude": "Claude AI usage limit reached|1767225600",
    "gemini": "Error: Quota exceeded for quota metric 'Gemini 2.5 Pro Requests' (RESOURCE_EXHAUSTED)",
    "codex": "ERROR: You've hit your usage limit. Upgrade to Pro or try again later.",
}


def parse(agent: str, args: list[str]) -> tuple[dict[str, str], set[str], list[str]]:
    valued, booleans = FLAGS[agent]
    opts: dict[str, str] = {}
    flags: set[str] = set()
    positional: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            positional += args[i + 1 :]
            break
        name, eq, value = a.partition("=")
        if eq and name in valued:  # --prompt=TEXT
            opts[name] = value
            i += 1
            continue
        if a in valued:
            if i + 1 >= len(args):
                die(agent, f"error: option '{a}' argument missing", 2)
            opts[a] = args[i + 1]
            i += 2
            continue
        if a in booleans:
            flags.add(a)
        elif a.startswith("-"):
            die(agent, f"error: unknown option '{a}'", 2)
        else:
            positional.append(a)
        i += 1
    return opts, flags, positional


def die(agent: str, message: str, code: int) -> None:
    sys.stderr.write(f"{agent}: {message}\n")
    sys.exit(code)


def record(agent: str, args: list[str], stdin: str) -> None:
    log = os.environ.get("FAKE_AGENT_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"agent": agent, "argv": args, "cwd": os.getcwd(), "stdin": stdin}) + "\n")


def prompt_edits(prompt: str) -> None:
    """Apply the prompt's @write/@append/@delete lines to files under the cwd."""
    for line in prompt.splitlines():
        parts = line.strip().split(" ", 2)
        if len(parts) < 2 or parts[0] not in ("@write", "@append", "@delete"):
            continue
        path = os.path.join(os.getcwd(), parts[1])
        if parts[0] == "@delete":
            os.remove(path)
            continue
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "a" if parts[0] == "@append" else "w", encoding="utf-8") as f:
            f.write((parts[2] if len(parts) > 2 else "").replace("\\n", "\n"))


def side_effects(prompt: str = "") -> None:
    start = time.time()
    prompt_edits(prompt)
    spec = os.environ.get("FAKE_AGENT_WRITE")
    if spec:
        rel, _, content = spec.partition("=")
        path = os.path.join(os.getcwd(), rel)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(content)
    time.sleep(float(os.environ.get("FAKE_AGENT_SLEEP") or 0))
    spans = os.environ.get("FAKE_AGENT_SPANS")
    if spans:
        with open(spans, "a", encoding="utf-8") as f:
            f.write(json.dumps({"cwd": os.getcwd(), "start": start, "end": time.time()}) + "\n")


def reply_for(agent: str, prompt: str) -> str:
    if os.environ.get("FAKE_AGENT_REPLY"):
        return os.environ["FAKE_AGENT_REPLY"]
    return "pong" if "pong" in prompt.lower() else f"{agent} did: {prompt}"


def main(agent: str) -> None:
    args = sys.argv[1:]
    if agent == "claude" and args[:2] == ["auth", "status"]:  # the offline "am I logged in" check
        out = os.environ.get("FAKE_AGENT_LOGGED_OUT")
        print(json.dumps({"loggedIn": not out, "authMethod": "none" if out else "api_key"}, indent=2))
        sys.exit(1 if out else 0)
    if agent == "codex":
        if not args or args[0] not in ("exec", "e"):
            die(agent, "this fake only knows `codex exec`", 2)
        args = args[1:]
    opts, flags, positional = parse(agent, args)
    stdin = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    record(agent, sys.argv[1:], stdin)
    {"claude": claude, "gemini": gemini, "codex": codex}[agent](opts, flags, positional, stdin)


def _limit_message(agent: str) -> str | None:
    """The usage-limit message (None: no limit this run), with a reset time in the real CLI's shape."""
    once = os.environ.get("FAKE_AGENT_LIMIT_ONCE")
    if not os.environ.get("FAKE_AGENT_LIMIT") or (once and os.path.exists(once)):
        return None
    if once:
        open(once, "w").close()
    reset = os.environ.get("FAKE_AGENT_LIMIT_RESET")
    if not reset:
        return LIMITS[agent]
    secs = float(reset)
    return {
        "claude": f"Claude AI usage limit reached|{int(time.time() + secs)}",
        "gemini": "Quota exceeded for quota metric 'Gemini 2.5 Pro Requests' (RESOURCE_EXHAUSTED). "
        f"Please retry in {secs:g}s.",
        "codex": "ERROR: You've hit your usage limit. Upgrade to Pro (https://openai.com/chatgpt/pricing) "
        f"or try again in {secs:g}s.",
    }[agent]


def _failure(agent: str) -> tuple[int, str] | None:
    limit = _limit_message(agent)
    if limit:
        return 1, limit
    code = int(os.environ.get("FAKE_AGENT_EXIT") or 0)
    return (code, f"fake {agent} failed on purpose") if code else None


def claude(opts: dict, flags: set, positional: list, stdin: str) -> None:
    if not flags & {"-p", "--print"}:
        die("claude", "interactive mode needs a terminal (use -p)", 1)
    fmt = opts.get("--output-format", "text")
    if fmt not in ("text", "json", "stream-json"):
        die("claude", f"error: invalid output format '{fmt}'", 1)
    prompt = " ".join(positional) or stdin
    side_effects(prompt)
    failure = _failure("claude")
    text = failure[1] if failure else reply_for("claude", prompt)
    model = opts.get("--model", "claude-sonnet-4-5")
    if fmt == "text":
        print(text)
    else:
        print(
            json.dumps(
                {
                    "type": "result",
                    "subtype": "success" if not failure else "error_during_execution",
                    "is_error": bool(failure),
                    "duration_ms": 1234,
                    "num_turns": 1,
                    "result": text,
                    "session_id": str(uuid.uuid4()),
                    "total_cost_usd": 0.0123,
                    "usage": {"input_tokens": 11, "output_tokens": 7, "cache_read_input_tokens": 0},
                    "modelUsage": {model: {"inputTokens": 11, "outputTokens": 7, "costUSD": 0.0123}},
                }
            )
        )
    sys.exit(failure[0] if failure else 0)


def gemini(opts: dict, flags: set, positional: list, stdin: str) -> None:
    prompt = opts.get("-p") or opts.get("--prompt") or " ".join(positional)
    if not prompt:
        die("gemini", "no prompt given (use -p)", 42)
    fmt = opts.get("--output-format") or opts.get("-o") or "text"
    model = opts.get("-m") or opts.get("--model") or "gemini-2.5-pro"
    side_effects(prompt)
    failure = _failure("gemini")
    if "--skip-trust" not in flags:  # gemini-cli 0.61: no folder is trusted by default
        die("gemini", "Gemini CLI is not running in a trusted directory. To proceed, either use `--skip-trust`", 55)
    if failure:
        if fmt == "json":  # to stderr, pretty-printed, as gemini-cli 0.61 does
            code = 429 if os.environ.get("FAKE_AGENT_LIMIT") else failure[0]
            doc = {"session_id": str(uuid.uuid4()), "error": {"type": "Error", "message": failure[1], "code": code}}
            sys.stderr.write(json.dumps(doc, indent=2) + "\n")
        else:
            sys.stderr.write(failure[1] + "\n")
        sys.exit(failure[0])
    text = reply_for("gemini", prompt)
    if fmt == "json":
        tokens = {"prompt": 21, "candidates": 5, "total": 26, "cached": 0, "thoughts": 0, "tool": 0}
        print(
            json.dumps(
                {
                    "session_id": str(uuid.uuid4()),
                    "response": text,
                    "stats": {
                        "models": {
                            model: {
                                "api": {"totalRequests": 1, "totalErrors": 0, "totalLatencyMs": 300},
                                "tokens": tokens,
                            }
                        },
                        "tools": {"totalCalls": 0, "totalSuccess": 0, "totalFail": 0, "byName": {}},
                        "files": {"totalLinesAdded": 0, "totalLinesRemoved": 0},
                    },
                },
                indent=2,
            )
        )
    else:
        print(text)


def codex(opts: dict, flags: set, positional: list, stdin: str) -> None:
    prompt = " ".join(positional)
    if not prompt or prompt == "-":
        prompt = stdin
    if not prompt:
        die("codex", "no prompt provided", 1)
    if not flags & {"--skip-git-repo-check"} and not os.path.isdir(".git"):
        die("codex", "Not inside a trusted directory and --skip-git-repo-check was not specified.", 1)
    model = opts.get("-m") or opts.get("--model") or "gpt-5-codex"
    sys.stderr.write(
        f"OpenAI Codex (fake)\n--------\nworkdir: {os.getcwd()}\nmodel: {model}\n"
        f"sandbox: {opts.get('--sandbox') or opts.get('-s') or 'read-only'}\n--------\n"
    )
    side_effects(prompt)
    failure = _failure("codex")
    if "--json" in flags:  # codex exec --json: JSON lines on stdout, as codex 0.171 prints them
        _codex_events(failure, reply_for("codex", prompt), opts)
        return
    if failure:
        die("codex", failure[1], failure[0])
    text = reply_for("codex", prompt)
    out = opts.get("--output-last-message") or opts.get("-o")
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
    sys.stderr.write("tokens used: 1,234\n")
    print(text)


def _codex_events(failure: tuple[int, str] | None, text: str, opts: dict) -> None:
    def emit(ev: dict) -> None:
        print(json.dumps(ev), flush=True)

    emit({"type": "thread.started", "thread_id": str(uuid.uuid4())})
    emit({"type": "turn.started"})
    if failure:
        message = failure[1].removeprefix("ERROR: ")
        emit({"type": "error", "message": message})
        emit({"type": "turn.failed", "error": {"message": message}})
        sys.exit(failure[0])
    emit({"type": "item.completed", "item": {"id": "item_0", "type": "agent_message", "text": text}})
    usage = {"input_tokens": 1234, "cached_input_tokens": 1000, "output_tokens": 56, "reasoning_output_tokens": 7}
    emit({"type": "turn.completed", "usage": usage})
    out = opts.get("--output-last-message") or opts.get("-o")
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
