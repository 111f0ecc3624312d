"""A child environment for each real agent CLI, pointed at the provider fake, the binary first on PATH.

    with ProviderFake(ROUTES["codex"]) as fake:
        env = agent_env("codex", fake, tmp_path)

claude gets ``IS_SANDBOX=1`` (the tests run as root; README: Agents) unless ``extra`` says otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from support import realclis
from support.providers import ProviderFake, Route
from support.providers import anthropic as an
from support.providers import gemini as gm
from support.providers import openai_responses as oa

ROUTES: dict[str, list[Route]] = {"claude": an.ROUTES, "gemini": gm.ROUTES, "codex": oa.ROUTES}


def agent_env(cli: str, fake: ProviderFake, tmp: Path, **extra: Any) -> dict[str, str]:
    home = tmp / f"{cli}-home"
    if cli == "claude":
        env = an.cli_env(fake, home, **{"IS_SANDBOX": "1", **extra})
    elif cli == "gemini":
        env = gm.cli_env(fake, home, **extra)
    else:
        env = oa.cli_env(fake, home, **extra)
    env["PATH"] = f"{realclis.require(cli).parent}{os.pathsep}{env.get('PATH') or os.environ['PATH']}"
    return env
