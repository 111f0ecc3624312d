"""An agent's argv: its template with the placeholders filled in.

Placeholders ``{prompt}``, ``{model}``, ``{output_file}``, ``{cwd}`` and ``{session}`` are replaced inside
elements, in one pass (so a prompt may contain braces); ``model_args`` go in only when a model is set.

Resuming a session (``fleetq reply``, docs/design.md "Replies"): ``resume_argv``, when the agent has one,
is the whole command; else ``resume_args`` go where an element ``{resume_args}`` stands (or, with no
such element, just before the first ``--``, else at the end). A run that resumes nothing drops the
``{resume_args}`` element.
"""

from __future__ import annotations

import re
from pathlib import Path

from fleetq.run.agents.registry import Spec

_PLACEHOLDER = re.compile(r"\{(prompt|model|output_file|cwd|session)\}")


def fill(template: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def placeholder_values(
    prompt: str, model: str | None, output_file: Path | None, cwd: Path, session: str | None = None
) -> dict[str, str]:
    return {
        "prompt": prompt,
        "model": model or "",
        "output_file": str(output_file or ""),
        "cwd": str(cwd),
        "session": session or "",
    }


def can_resume(spec: Spec) -> bool:
    """The agent says how to resume a session (resume_args or resume_argv)."""
    return bool(spec.get("resume_args") or spec.get("resume_argv"))


def build_argv(
    spec: Spec,
    prompt: str,
    *,
    model: str | None,
    output_file: Path | None,
    cwd: Path,
    session: str | None = None,
) -> list[str]:
    values = placeholder_values(prompt, model, output_file, cwd, session)
    model_args = [fill(a, values) for a in spec.get("model_args") or []] if model else []
    whole = bool(session and spec.get("resume_argv"))  # a whole resumed argv takes no resume_args
    template = spec["resume_argv"] if whole else spec["argv"]
    resume_args = [fill(a, values) for a in spec.get("resume_args") or []] if session and not whole else []
    out: list[str] = []
    for element in template:
        if element == "{model_args}":
            out += model_args
        elif element == "{resume_args}":
            out += resume_args
        elif "{model}" in element and not model:
            if out and out[-1].startswith("-"):
                out.pop()  # its flag goes too
        else:
            out.append(fill(element, values))
    if "{model_args}" not in template:
        out += model_args
    if resume_args and "{resume_args}" not in template:
        at = out.index("--") if "--" in out else len(out)
        out[at:at] = resume_args
    return out
