"""The environment for a Python child process of a test: this checkout's more_policy first on
PYTHONPATH (so the child imports the code under test, whatever is installed)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "more_policy"),
                                                      env.get("PYTHONPATH")]))
    return env
