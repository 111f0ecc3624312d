"""An agent's argv: its template with the placeholders filled in.

Placeholders ``{prompt}``, ``{model}``, ``{output_file}`` and ``{cwd}`` are replaced inside elements, in
one pass (so a prompt may contain braces); ``model_args`` go in only when a model is set.
"""

from __future__ import annotations

import re
from pathlib import Path

from fleetq.run.agents.registry import Spec

_PLACEHOLDER = re.compile(r"\{(prompt|model|output_file|cwd)\}")


def fill(template: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def placeholder_values(prompt: str, model: str | None, output_file: Path | None, cwd: Path) -> dict[str, str]:
    return {"prompt": prompt, "model": model or "", "output_file": str(output_file or ""), "cwd": str(cwd)}


def build_argv(spec: Spec, prompt: str, *, model: str | None, output_file: Path | None, cwd: Path) -> list[str]:
    values = placeholder_values(prompt, model, output_file, cwd)
    model_args = [fill(a, values) for a in spec.get("model_args") or []] if model else []
    out: list[str] = []
    for element in spec["argv"]:
        if element == "{model_args}":
            out += model_args
        elif "{model}" in element and not model:
            if out and out[-1].startswith("-"):
                out.pop()  # its flag goes too
        else:
            out.append(fill(element, values))
    if "{model_args}" not in spec["argv"]:
        out += model_args
    return out
