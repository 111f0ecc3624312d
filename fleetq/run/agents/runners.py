"""Running an agent on a prompt: a command line (cli) under fleetq.run.procs, or one POST to an
OpenAI-compatible chat-completions API (http); then the reply, usage and usage limit read from it."""

from __future__ import annotations

import json
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetq.handlerapi import DONE, FAILED, NEEDS_HUMAN, HandlerResult, Stop, from_proc, last_line, resolve_dir
from fleetq.run.agents.argv import build_argv, can_resume, fill, placeholder_values
from fleetq.run.agents.diagnose import diagnose
from fleetq.run.agents.registry import Registry, Spec, default_agent, why_missing
from fleetq.run.agents.replies import Reply, codex_session_model, json_doc, parse_output
from fleetq.run.procs import redacted_tail, run_command
from fleetq.run.redact import redact

REPLY_LIMIT = 8000  # characters of the reply kept in a task's result (the log has all of it)


def run_agent(
    name: str | None,
    prompt: str,
    *,
    agents: Registry,
    cwd: str | Path | None,
    model: str | None,
    env: dict[str, str],
    timeout: float | None,
    log_path: Path,
    cancel: threading.Event | None = None,
    reply_limit: int | None = REPLY_LIMIT,
    echo: bool = False,
    session: str | None = None,
) -> HandlerResult:
    """Run one agent on one prompt in ``cwd`` (``~`` expanded; None -> HOME) and read its reply.

    Not installed, unknown, or a missing cwd -> needs_human; a non-zero exit or an
    error the agent reports -> failed (tails kept). ``extra`` carries ``reply``,
    ``agent`` and whatever usage the agent reports (cost_usd, tokens, session_id, model).
    ``echo`` copies the agent's output to this terminal as it comes (``fleetq run``). ``session``
    resumes that session of the agent (its ``resume_args``/``resume_argv``; ``fleetq reply``).
    """
    try:
        name = name or default_agent(agents, env)
        if not name:
            raise Stop(f"no agent is installed on this machine (known: {', '.join(agents) or 'none'})")
        spec = agents.get(name)
        if spec is None:
            raise Stop(f"unknown agent '{name}' (config/agents.yaml has: {', '.join(agents) or 'none'})")
        if session and not can_resume(spec):
            raise Stop(f"agent '{name}' cannot resume a session (no resume_args in config/agents.yaml)")
        wd = resolve_dir(cwd, env)
    except Stop as stop:
        return stop.result()
    why = why_missing(spec, env)
    if why:
        res = HandlerResult(NEEDS_HUMAN, error=f"agent '{name}' is not installed on this machine: {why}")
        res.extra.update(agent=name, not_installed=True)
        return res
    job = _Job(
        name=name,
        spec=spec,
        prompt=prompt,
        model=model or spec.get("default_model"),
        cwd=wd,
        env={**env, **{k: str(v) for k, v in (spec.get("env") or {}).items()}},
        timeout=timeout,
        log_path=log_path,
        cancel=cancel,
        echo=echo,
        session=session,
    )
    res, reply = _run_http(job) if spec["kind"] == "http" else _run_cli(job)
    if job.model:
        res.extra.setdefault("model", job.model)
    res.extra["agent"] = name
    diagnose(res, spec, reply, prompt, job.env)
    _bound_reply(res, reply_limit)
    return res


@dataclass
class _Job:
    """One agent run, resolved: the spec, the model, the directory and the child environment."""

    name: str
    spec: Spec
    prompt: str
    model: str | None
    cwd: Path
    env: dict[str, str]
    timeout: float | None
    log_path: Path
    cancel: threading.Event | None
    echo: bool
    session: str | None = None  # resume this session (fleetq reply)


def _run_cli(job: _Job) -> tuple[HandlerResult, Reply]:
    spec = job.spec
    with tempfile.TemporaryDirectory(prefix="fleetq-agent-") as tmp:
        out_file = Path(tmp) / "last-message.txt"
        argv = build_argv(spec, job.prompt, model=job.model, output_file=out_file, cwd=job.cwd, session=job.session)
        values = placeholder_values(job.prompt, job.model, out_file, job.cwd, job.session)
        stdin = fill(spec["stdin"], values) if spec.get("stdin") else None
        proc = run_command(
            argv,
            cwd=job.cwd,
            env=job.env,
            timeout=job.timeout,
            log_path=job.log_path,
            cancel=job.cancel,
            stdin_text=stdin,
            capture_stdout=True,
            echo_stderr=job.echo,
            echo_stdout=job.echo and spec["output"] == "text",
        )
        last = out_file.read_text(encoding="utf-8", errors="replace") if out_file.exists() else None
    res = from_proc(proc, job.name, job.timeout)
    reply = parse_output(spec["output"], proc.stdout, last_message=last, stderr=proc.stderr_tail)
    if spec["output"] == "codex-json" and reply.extra.get("session_id") and not job.model:
        home = Path(job.env.get("CODEX_HOME") or Path(job.env.get("HOME") or Path.home()) / ".codex")
        model = codex_session_model(home, str(reply.extra["session_id"]))
        if model:
            reply.extra["model"] = model
    res.extra.update(reply.extra, reply=reply.text)
    if last is not None:
        _append_log(job.log_path, f"\n# last message ({out_file.name}):\n{last}\n")
    if reply.error and res.outcome == DONE:
        res.outcome, res.error = FAILED, f"{job.name} reported an error: {reply.error}"
    elif reply.error and res.outcome == FAILED and not (proc.timed_out or proc.cancelled):
        res.error = f"{job.name} exited with code {proc.exit_code}: {reply.error}"
    return res, reply


def _bound_reply(res: HandlerResult, reply_limit: int | None) -> None:
    """The reply kept in the task file is bounded (the log has all of it)."""
    reply = str(res.extra.get("reply") or "")
    if reply_limit is not None and len(reply) > reply_limit:
        res.extra["reply"] = redact(reply)[:reply_limit]  # redacted before the cut: no half key is kept
        res.extra["reply_truncated"] = True


def _append_log(log_path: Path, text: str) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8", errors="replace") as f:
        f.write(text)


# ---------------------------------------------------------------- http (OpenAI-compatible chat completions)


def _post(url: str, key: str | None, body: dict[str, Any], timeout: float | None, box: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "fleetq"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout or 600) as resp:
            box["status"], box["body"] = resp.status, resp.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as e:
        box["status"], box["body"] = e.code, e.read().decode("utf-8", errors="replace")
        box["retry_after"] = e.headers.get("Retry-After") if e.headers else None
    except (urllib.error.URLError, OSError, ValueError) as e:
        box["exc"] = getattr(e, "reason", None) or e


def _wait_thread(worker: threading.Thread, timeout: float | None, cancel: threading.Event | None) -> str | None:
    """Wait for ``worker``; the reason it was abandoned (cancelled, timed out), or None when it finished."""
    started = time.monotonic()
    while True:
        worker.join(0.05)
        if not worker.is_alive():
            return None
        if cancel is not None and cancel.is_set():
            return "cancelled"
        if timeout is not None and time.monotonic() - started >= timeout:
            return f"timed out after {timeout:g}s"


def _run_http(job: _Job) -> tuple[HandlerResult, Reply]:
    """One POST in a helper thread, so cancel and timeout take effect at once (the thread is left to end)."""
    spec = job.spec
    base = (job.env.get(spec.get("base_url_env") or "") or spec.get("base_url") or "").rstrip("/")
    url = f"{base}/chat/completions"
    body = {"model": job.model, "messages": [{"role": "user", "content": job.prompt}]}
    key = job.env.get(spec.get("api_key_env") or "")
    _append_log(job.log_path, f"$ POST {url} (model {job.model})\n")
    box: dict[str, Any] = {}
    started = time.monotonic()
    worker = threading.Thread(target=_post, args=(url, key, body, job.timeout, box), daemon=True)
    worker.start()
    stopped = _wait_thread(worker, job.timeout, job.cancel)
    if isinstance(box.get("exc"), TimeoutError) and job.timeout is not None:  # urllib's own deadline hit first
        stopped = f"timed out after {job.timeout:g}s"
    res = HandlerResult(outcome=FAILED, duration=time.monotonic() - started)
    reply = Reply(structured=True)
    text = "" if stopped else box.get("body", "")
    res.stdout_tail = redacted_tail(text.encode(), 4000)
    if stopped:
        res.error = stopped
        if stopped != "cancelled":
            res.extra["timed_out"] = True
    elif "exc" in box:
        res.error = f"cannot reach {url}: {box['exc']}"
    elif box.get("status") != 200:
        res.error = f"HTTP {box.get('status')} from {url}: {_api_error(text)}"
        if box.get("retry_after"):  # read by usage_limit_reset when the agent's patterns call this a limit
            res.error += f" (Retry-After: {box['retry_after']})"
        reply = Reply(error=res.error, structured=True, status=box.get("status"))
    else:
        reply = parse_output(spec["output"], text)
        res.outcome = DONE
        res.extra.update(reply.extra, reply=reply.text)
        if not reply.text and not isinstance(json_doc(text), dict):
            res.outcome, res.error = FAILED, "the API answered with something that is not a chat completion"
    _append_log(job.log_path, f"{res.extra.get('reply') or text}\n# {res.error or 'done'} after {res.duration:.1f}s\n")
    return res, reply


def _api_error(body: str) -> str:
    doc = json_doc(body) if body.strip() else None
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        err = doc["error"]
        return str(err.get("message") or err.get("code") or err)
    return last_line(body) or "(no body)"
